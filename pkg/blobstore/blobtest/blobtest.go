// Package blobtest is the behaviour suite every blobstore.Backend passes:
// the directory store and the JetStream Object Store run the same tests.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/enmanuel/unibus/pkg/blobstore"
)

// Harness is one fresh, empty backend under test.
type Harness struct {
	// Store is the backend.
	Store blobstore.Backend
	// Leftovers lists what uploads and reads left behind besides the stored
	// blobs (temporary files, unreferenced chunks, server-side consumers).
	// It must be empty whenever no Put is running and every reader is
	// closed. Nil skips the check.
	Leftovers func(t testing.TB) []string
	// SkipMemory, when not empty, skips LargeStreamMemory with this reason:
	// set it when the backend's server runs in the test process, whose
	// caches the heap would count as the store's. Run LargeStreamMemory
	// against an out-of-process server instead.
	SkipMemory string
}

// Run runs the suite; open returns a fresh, empty backend for each test.
func Run(t *testing.T, open func(t testing.TB) Harness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"RoundTrip", testRoundTrip},
		{"ChunkBoundaries", testChunkBoundaries},
		{"PutWithoutDigestAndEmpty", testPutWithoutDigestAndEmpty},
		{"PutIdempotent", testPutIdempotent},
		{"PutTooLarge", testPutTooLarge},
		{"PutDigestMismatch", testPutDigestMismatch},
		{"PutCanceled", testPutCanceled},
		{"PutReaderError", testPutReaderError},
		{"InvalidIDs", testInvalidIDs},
		{"ConcurrentPutsSameContent", testConcurrentPutsSameContent},
		{"ConcurrentPutsDifferentContent", testConcurrentPutsDifferentContent},
		{"DeleteWhileReading", testDeleteWhileReading},
		{"CloseEarly", testCloseEarly},
		{"List", testList},
		{"ErrorCodes", testErrorCodes},
		{"LargeStreamMemory", LargeStreamMemory},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// Digest returns the blob id of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func noLeftovers(t *testing.T, h Harness) {
	t.Helper()
	if h.Leftovers == nil {
		return
	}
	if left := h.Leftovers(t); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// ReadBlob opens id, failing the test if it cannot, and reads it to the
// end: it returns the content, the size Open announced and the read error.
func ReadBlob(t testing.TB, s blobstore.Backend, id string) ([]byte, int64, error) {
	t.Helper()
	rc, n, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	return got, n, err
}

// readAll is ReadBlob failing the test on a read error.
func readAll(t *testing.T, s blobstore.Backend, id string) ([]byte, int64) {
	t.Helper()
	got, n, err := ReadBlob(t, s, id)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return got, n
}

// randomBytes returns n bytes from rng.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// concurrently runs fn(0) to fn(n-1) at the same time and fails the test
// if any returns an error.
func concurrently(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- fn(i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func testRoundTrip(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	data := []byte("ciphertext bytes")
	want := Digest(data)

	id, size, err := s.Put(ctx, bytes.NewReader(data), 1024, want)
	if err != nil {
		t.Fatal(err)
	}
	if id != want || size != int64(len(data)) {
		t.Fatalf("put = %s/%d, want %s/%d", id, size, want, len(data))
	}
	if ok, err := s.Has(ctx, id); err != nil || !ok {
		t.Fatalf("has = %v, %v", ok, err)
	}
	got, n := readAll(t, s, id)
	if n != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("open = %q (%d), want %q", got, n, data)
	}
	noLeftovers(t, h)

	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Has(ctx, id); err != nil || ok {
		t.Fatalf("has after delete = %v, %v", ok, err)
	}
	if _, _, err := s.Open(ctx, id); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("open after delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, id); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	// Stored again after a delete.
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 1024, want); err != nil {
		t.Fatalf("put after delete: %v", err)
	}
	if got, _ := readAll(t, s, id); !bytes.Equal(got, data) {
		t.Fatalf("content after re-put = %q", got)
	}
	noLeftovers(t, h)
}

// testChunkBoundaries stores sizes around the object store's chunk size,
// fed in small reads, and reads them back with every read pattern
// iotest.TestReader tries.
func testChunkBoundaries(t *testing.T, h Harness) {
	ctx := context.Background()
	const chunk = 128 << 10
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 1000, chunk - 1, chunk, chunk + 1, 3*chunk + 17} {
		data := randomBytes(rng, n)
		id, size, err := h.Store.Put(ctx, iotest.HalfReader(bytes.NewReader(data)), int64(n), "")
		if err != nil {
			t.Fatalf("put %d bytes: %v", n, err)
		}
		if id != Digest(data) || size != int64(n) {
			t.Fatalf("put %d bytes = %s/%d", n, id, size)
		}
		rc, sz, err := h.Store.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if sz != int64(n) {
			t.Fatalf("open size %d, want %d", sz, n)
		}
		if err := iotest.TestReader(rc, data); err != nil {
			t.Fatalf("read back %d bytes: %v", n, err)
		}
		rc.Close()
	}
	noLeftovers(t, h)
}

func testPutWithoutDigestAndEmpty(t *testing.T, h Harness) {
	ctx := context.Background()
	id, size, err := h.Store.Put(ctx, strings.NewReader(""), 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if id != Digest(nil) || size != 0 {
		t.Fatalf("empty blob = %s/%d", id, size)
	}
	got, n := readAll(t, h.Store, id)
	if n != 0 || len(got) != 0 {
		t.Fatalf("empty blob read back as %q (%d)", got, n)
	}
	noLeftovers(t, h)
}

func testPutIdempotent(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	data := bytes.Repeat([]byte("same content "), 30000) // several chunks
	want := Digest(data)
	for i, announced := range []string{"", want, want, ""} {
		id, size, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), announced)
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if id != want || size != int64(len(data)) {
			t.Fatalf("put %d = %s/%d, want %s/%d", i, id, size, want, len(data))
		}
	}
	if ids, err := s.List(ctx); err != nil || !slices.Equal(ids, []string{want}) {
		t.Fatalf("list = %v, %v", ids, err)
	}
	if got, _ := readAll(t, s, want); !bytes.Equal(got, data) {
		t.Fatal("content differs after repeated puts")
	}
	noLeftovers(t, h)
}

func testPutTooLarge(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	for _, n := range []int{101, 300 << 10} {
		data := bytes.Repeat([]byte("x"), n)
		if _, _, err := s.Put(ctx, bytes.NewReader(data), int64(n-1), ""); !errors.Is(err, blobstore.ErrTooLarge) {
			t.Fatalf("put %d bytes over a limit of %d: %v, want ErrTooLarge", n, n-1, err)
		}
		if ok, _ := s.Has(ctx, Digest(data)); ok {
			t.Fatal("oversized blob stored")
		}
		noLeftovers(t, h)
		// Exactly at the limit is fine.
		if _, _, err := s.Put(ctx, bytes.NewReader(data[:n-1]), int64(n-1), ""); err != nil {
			t.Fatalf("put at limit: %v", err)
		}
	}
	data := bytes.Repeat([]byte("x"), 101)
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 0, ""); err == nil {
		t.Fatal("zero size limit accepted")
	}
	// Over the limit while announcing a stored blob's digest.
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 100, Digest(data[:100])); !errors.Is(err, blobstore.ErrTooLarge) {
		t.Fatalf("oversized put of a stored digest: %v, want ErrTooLarge", err)
	}
	noLeftovers(t, h)
}

func testPutDigestMismatch(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	data := bytes.Repeat([]byte("tampered "), 40000) // several chunks
	other := Digest([]byte("original"))
	if _, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), other); !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("put: %v, want ErrDigestMismatch", err)
	}
	for _, id := range []string{other, Digest(data)} {
		if ok, _ := s.Has(ctx, id); ok {
			t.Fatalf("mismatched blob stored as %s", id)
		}
	}
	noLeftovers(t, h)

	// Announcing the digest of a stored blob does not make other bytes it.
	if _, _, err := s.Put(ctx, strings.NewReader("original"), 100, other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), other); !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("put over a stored blob: %v, want ErrDigestMismatch", err)
	}
	if got, _ := readAll(t, s, other); string(got) != "original" {
		t.Fatalf("stored blob changed to %q", got)
	}
	noLeftovers(t, h)

	for _, bad := range []string{"../../etc/passwd", strings.ToUpper(other), other[:63]} {
		if _, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), bad); !errors.Is(err, blobstore.ErrInvalidID) {
			t.Fatalf("put with malformed digest %q: %v, want ErrInvalidID", bad, err)
		}
	}
}

func testPutCanceled(t *testing.T, h Harness) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{n: 40, cancel: cancel}
	if _, _, err := h.Store.Put(ctx, r, 64<<20, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("put: %v, want context.Canceled", err)
	}
	if ids, err := h.Store.List(context.Background()); err != nil || len(ids) != 0 {
		t.Fatalf("list after canceled put = %v, %v", ids, err)
	}
	noLeftovers(t, h)
}

// cancelAfter yields n chunks of 16 KiB, then cancels its context.
type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n == 0 {
		c.cancel()
		return copy(p, "z"), nil
	}
	c.n--
	return len(p[:min(len(p), 16<<10)]), nil
}

var errBroken = errors.New("connection broke")

// brokenReader yields n bytes, then fails.
type brokenReader struct{ n int }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errBroken
	}
	k := min(len(p), b.n)
	b.n -= k
	return k, nil
}

func testPutReaderError(t *testing.T, h Harness) {
	ctx := context.Background()
	for _, n := range []int{0, 10, 700 << 10} {
		_, _, err := h.Store.Put(ctx, &brokenReader{n: n}, 64<<20, "")
		if !errors.Is(err, errBroken) {
			t.Fatalf("put failing after %d bytes: %v, want the reader's error", n, err)
		}
	}
	if ids, err := h.Store.List(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("list after failed puts = %v, %v", ids, err)
	}
	noLeftovers(t, h)
}

func testInvalidIDs(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	valid := Digest([]byte("x"))
	bad := []string{
		"",
		"../../etc/passwd",
		strings.ToUpper(valid),
		valid[:63],
		valid + "0",
		"../" + valid[3:],
		valid[:62] + "/a",
		valid[:63] + "g",
		valid[:60] + ".>*",
		valid[:62] + " a",
	}
	for _, id := range bad {
		if blobstore.ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
		if _, _, err := s.Open(ctx, id); !errors.Is(err, blobstore.ErrInvalidID) {
			t.Errorf("Open(%q): %v, want ErrInvalidID", id, err)
		}
		if _, err := s.Has(ctx, id); !errors.Is(err, blobstore.ErrInvalidID) {
			t.Errorf("Has(%q): %v, want ErrInvalidID", id, err)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, blobstore.ErrInvalidID) {
			t.Errorf("Delete(%q): %v, want ErrInvalidID", id, err)
		}
		if id != "" {
			if _, _, err := s.Put(ctx, strings.NewReader("x"), 10, id); !errors.Is(err, blobstore.ErrInvalidID) {
				t.Errorf("Put(want %q): %v, want ErrInvalidID", id, err)
			}
		}
	}
	if !blobstore.ValidID(valid) {
		t.Errorf("ValidID(%q) = false", valid)
	}
}

// testConcurrentPutsSameContent races uploads of one blob, half announcing
// its digest and half not: all succeed, one copy is stored, nothing is left
// behind.
func testConcurrentPutsSameContent(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	data := bytes.Repeat([]byte("concurrent "), 50000) // several chunks
	want := Digest(data)
	concurrently(t, 16, func(i int) error {
		announced := ""
		if i%2 == 0 {
			announced = want
		}
		id, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), announced)
		if err == nil && id != want {
			err = errors.New("wrong id " + id)
		}
		return err
	})
	if got, _ := readAll(t, s, want); !bytes.Equal(got, data) {
		t.Fatal("stored content differs")
	}
	if ids, err := s.List(ctx); err != nil || !slices.Equal(ids, []string{want}) {
		t.Fatalf("list = %v, %v", ids, err)
	}
	noLeftovers(t, h)
}

func testConcurrentPutsDifferentContent(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	const workers = 8
	blobs := make([][]byte, workers)
	var want []string
	for i := range blobs {
		blobs[i] = bytes.Repeat([]byte(fmt.Sprintf("blob %d ", i)), 30000)
		want = append(want, Digest(blobs[i]))
	}
	slices.Sort(want)
	concurrently(t, workers, func(i int) error {
		_, _, err := s.Put(ctx, bytes.NewReader(blobs[i]), int64(len(blobs[i])), Digest(blobs[i]))
		return err
	})
	if ids, err := s.List(ctx); err != nil || !slices.Equal(ids, want) {
		t.Fatalf("list = %v, %v; want %v", ids, err, want)
	}
	for _, b := range blobs {
		if got, _ := readAll(t, s, Digest(b)); !bytes.Equal(got, b) {
			t.Fatal("stored content differs")
		}
	}
	noLeftovers(t, h)
}

// testDeleteWhileReading deletes a blob during a read: the reader returns
// either the whole content or an error, never other bytes and io.EOF.
func testDeleteWhileReading(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	data := randomBytes(rand.New(rand.NewPCG(5, 6)), 2<<20)
	id, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), "")
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 10)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var rest []byte
	go func() {
		defer close(done)
		rest, err = io.ReadAll(rc)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("read of a deleted blob hangs")
	}
	rc.Close()
	if err == nil && !bytes.Equal(append(head, rest...), data) {
		t.Fatal("read of a deleted blob returned other bytes without an error")
	}
	t.Logf("read after delete: %d bytes, err %v", len(rest), err)
	noLeftovers(t, h)
}

// testCloseEarly closes readers before the end of the content: a read
// after Close fails, and nothing is left behind.
func testCloseEarly(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	data := bytes.Repeat([]byte("early "), 200000)
	id, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 300 << 10} {
		rc, _, err := s.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if _, err := rc.Read(make([]byte, 10)); err == nil {
			t.Fatal("read after close succeeded")
		}
	}
	noLeftovers(t, h)
}

func testList(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	if ids, err := s.List(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("list of an empty store = %v, %v", ids, err)
	}
	var want []string
	for _, c := range []string{"a", "b", "c", ""} {
		id, _, err := s.Put(ctx, strings.NewReader(c), 10, "")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	slices.Sort(want)
	if ids, err := s.List(ctx); err != nil || !slices.Equal(ids, want) {
		t.Fatalf("list = %v, %v; want %v", ids, err, want)
	}
	if err := s.Delete(ctx, want[1]); err != nil {
		t.Fatal(err)
	}
	want = slices.Delete(want, 1, 2)
	if ids, err := s.List(ctx); err != nil || !slices.Equal(ids, want) {
		t.Fatalf("list after delete = %v, %v; want %v", ids, err, want)
	}
}

func testErrorCodes(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.Store
	code := func(err error) string {
		var ce interface{ BlobErrorCode() string }
		if !errors.As(err, &ce) {
			return ""
		}
		return ce.BlobErrorCode()
	}
	_, _, errLarge := s.Put(ctx, strings.NewReader("abc"), 2, "")
	_, _, errDigest := s.Put(ctx, strings.NewReader("abc"), 10, Digest([]byte("other")))
	_, _, errMissing := s.Open(ctx, Digest([]byte("missing")))
	_, _, errID := s.Open(ctx, "nope")
	errDelete := s.Delete(ctx, Digest([]byte("missing")))
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errLarge, "too_large"},
		{errDigest, "digest_mismatch"},
		{errMissing, "not_found"},
		{errID, "invalid_id"},
		{errDelete, "not_found"},
	} {
		if got := code(tc.err); got != tc.want {
			t.Errorf("error %v has code %q, want %q", tc.err, got, tc.want)
		}
	}
}

// rngReader is an endless deterministic pseudo-random stream.
type rngReader struct {
	rng    *rand.Rand
	sample func()
	n      int
}

func (r *rngReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.rng.Uint32())
	}
	if r.sample != nil {
		if r.n += len(p); r.n >= 256<<10 {
			r.n = 0
			r.sample()
		}
	}
	return len(p), nil
}

// sampleWriter calls sample every 256 KiB written.
type sampleWriter struct {
	w      io.Writer
	sample func()
	n      int
}

func (s *sampleWriter) Write(p []byte) (int, error) {
	if s.n += len(p); s.n >= 256<<10 {
		s.n = 0
		s.sample()
	}
	return s.w.Write(p)
}

// heapAlloc returns the bytes of allocated heap objects.
func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// maxHeapGrowth bounds how much the heap may grow while a 20 MiB blob is
// stored and read back: a few chunks in flight, never the blob.
const maxHeapGrowth = 8 << 20

// LargeStreamMemory stores a generated 20 MiB blob and reads it back,
// sampling the heap throughout: its peak growth stays far below the size of
// the blob, so neither direction holds the blob in memory. The collector
// runs at GOGC=10 meanwhile so that the heap tracks live memory instead of
// garbage. A first blob of the same size is stored and read before the
// baseline is taken, so that buffers kept between uploads exist already and
// only what one upload holds is measured. It is part of Run and is exported
// to run on its own against a backend whose server is not in this process.
func LargeStreamMemory(t *testing.T, h Harness) {
	if testing.Short() {
		t.Skip("20 MiB stream in -short mode")
	}
	if h.SkipMemory != "" {
		t.Skip(h.SkipMemory)
	}
	ctx := context.Background()
	s := h.Store
	const size = 20 << 20
	stream := func(seed uint64, sample func()) io.Reader {
		return io.LimitReader(&rngReader{rng: rand.New(rand.NewPCG(seed, 2)), sample: sample}, size)
	}
	digest := func(seed uint64) string {
		hs := sha256.New()
		if _, err := io.Copy(hs, stream(seed, nil)); err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(hs.Sum(nil))
	}
	roundTrip := func(seed uint64, sample func()) {
		want := digest(seed)
		id, n, err := s.Put(ctx, stream(seed, sample), size, want)
		if err != nil {
			t.Fatal(err)
		}
		if id != want || n != size {
			t.Fatalf("put = %s/%d, want %s/%d", id, n, want, size)
		}
		rc, n, err := s.Open(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		hs := sha256.New()
		var w io.Writer = hs
		if sample != nil {
			w = &sampleWriter{w: hs, sample: sample}
		}
		copied, err := io.CopyBuffer(w, rc, make([]byte, 32<<10))
		if err != nil {
			t.Fatal(err)
		}
		if n != size || copied != size || hex.EncodeToString(hs.Sum(nil)) != want {
			t.Fatal("large blob read back differs")
		}
	}

	roundTrip(1, nil) // warm-up

	old := debug.SetGCPercent(10)
	defer debug.SetGCPercent(old)
	runtime.GC()
	base := heapAlloc()
	var peak atomic.Uint64
	peak.Store(base)
	sample := func() {
		a := heapAlloc()
		for {
			p := peak.Load()
			if a <= p || peak.CompareAndSwap(p, a) {
				return
			}
		}
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	start := time.Now()
	roundTrip(7, sample)
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(base)
	t.Logf("20 MiB stored and read back in %s; heap %d KiB before, peak growth %d KiB (limit %d KiB)",
		time.Since(start).Round(time.Millisecond), base>>10, growth>>10, maxHeapGrowth>>10)
	if growth > maxHeapGrowth {
		t.Fatalf("heap grew by %d KiB while streaming a 20 MiB blob; want under %d KiB", growth>>10, maxHeapGrowth>>10)
	}
	noLeftovers(t, h)
}
