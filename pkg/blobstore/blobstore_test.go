package blobstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/blobstore"
)

func newStore(t *testing.T) (*blobstore.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := blobstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// tmpFiles lists the files left in the store's temporary directory.
func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestNewCreatesPrivateDir(t *testing.T) {
	_, dir := newStore(t)
	info, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Fatalf("store dir mode %o, want 700", perm)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	data := []byte("ciphertext bytes")
	want := digest(data)

	id, size, err := s.Put(ctx, bytes.NewReader(data), 1024, want)
	if err != nil {
		t.Fatal(err)
	}
	if id != want || size != int64(len(data)) {
		t.Fatalf("put = %s/%d, want %s/%d", id, size, want, len(data))
	}
	if _, err := os.Stat(filepath.Join(dir, id[:2], id)); err != nil {
		t.Fatalf("blob not in fan-out layout: %v", err)
	}
	if ok, err := s.Has(ctx, id); err != nil || !ok {
		t.Fatalf("has = %v, %v", ok, err)
	}
	rc, n, err := s.Open(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("open = %q (%d), want %q", got, n, data)
	}

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
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestPutWithoutDigestAndEmpty(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	id, size, err := s.Put(ctx, strings.NewReader(""), 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if id != digest(nil) || size != 0 {
		t.Fatalf("empty blob = %s/%d", id, size)
	}
}

func TestPutIdempotent(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	data := []byte("same content")
	id1, _, err := s.Put(ctx, bytes.NewReader(data), 100, "")
	if err != nil {
		t.Fatal(err)
	}
	id2, size, err := s.Put(ctx, bytes.NewReader(data), 100, digest(data))
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 || size != int64(len(data)) {
		t.Fatalf("second put = %s/%d, want %s/%d", id2, size, id1, len(data))
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestPutTooLarge(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	data := bytes.Repeat([]byte("x"), 101)
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 100, ""); !errors.Is(err, blobstore.ErrTooLarge) {
		t.Fatalf("put: %v, want ErrTooLarge", err)
	}
	if ok, _ := s.Has(ctx, digest(data)); ok {
		t.Fatal("oversized blob stored")
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// Exactly at the limit is fine.
	if _, _, err := s.Put(ctx, bytes.NewReader(data[:100]), 100, ""); err != nil {
		t.Fatalf("put at limit: %v", err)
	}
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 0, ""); err == nil {
		t.Fatal("zero size limit accepted")
	}
}

func TestPutDigestMismatch(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	data := []byte("tampered")
	other := digest([]byte("original"))
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 100, other); !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("put: %v, want ErrDigestMismatch", err)
	}
	for _, id := range []string{other, digest(data)} {
		if ok, _ := s.Has(ctx, id); ok {
			t.Fatalf("mismatched blob stored as %s", id)
		}
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 100, "../../etc/passwd"); !errors.Is(err, blobstore.ErrInvalidID) {
		t.Fatalf("put with a malformed digest: %v, want ErrInvalidID", err)
	}
}

func TestPutCanceled(t *testing.T) {
	s, dir := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{n: 3, cancel: cancel}
	if _, _, err := s.Put(ctx, r, 1<<20, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("put: %v, want context.Canceled", err)
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// cancelAfter yields n small chunks, then cancels its context.
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
	return copy(p, "chunk"), nil
}

func TestInvalidIDs(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	valid := digest([]byte("x"))
	bad := []string{
		"",
		"../../etc/passwd",
		strings.ToUpper(valid),
		valid[:63],
		valid + "0",
		"../" + valid[3:],
		valid[:62] + "/a",
		valid[:63] + "g",
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
	}
	if !blobstore.ValidID(valid) {
		t.Errorf("ValidID(%q) = false", valid)
	}
}

func TestConcurrentPutsSameContent(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	data := bytes.Repeat([]byte("concurrent "), 10000)
	want := digest(data)
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), want)
			if err == nil && id != want {
				err = errors.New("wrong id " + id)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rc, _, err := s.Open(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("stored content differs")
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestLargeStream(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	const size = 20 << 20
	// stream returns the same deterministic pseudo-random bytes each call.
	stream := func() io.Reader {
		return io.LimitReader(&rngReader{rng: rand.New(rand.NewPCG(1, 2))}, size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, stream()); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	id, n, err := s.Put(ctx, stream(), size, want)
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
	h.Reset()
	copied, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || copied != size || hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatal("large blob read back differs")
	}
}

// rngReader is an endless deterministic pseudo-random stream.
type rngReader struct{ rng *rand.Rand }

func (r *rngReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.rng.Uint32())
	}
	return len(p), nil
}

func TestNewRemovesStaleTemps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blobs")
	if _, err := blobstore.New(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", "put-stale")
	fresh := filepath.Join(dir, "tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := blobstore.New(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp still present: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("fresh temp removed: %v", err)
	}
}

func TestErrorCodes(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	code := func(err error) string {
		var ce interface{ BlobErrorCode() string }
		if !errors.As(err, &ce) {
			return ""
		}
		return ce.BlobErrorCode()
	}
	_, _, errLarge := s.Put(ctx, strings.NewReader("abc"), 2, "")
	_, _, errDigest := s.Put(ctx, strings.NewReader("abc"), 10, digest([]byte("other")))
	_, _, errMissing := s.Open(ctx, digest([]byte("missing")))
	_, _, errID := s.Open(ctx, "nope")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errLarge, "too_large"},
		{errDigest, "digest_mismatch"},
		{errMissing, "not_found"},
		{errID, "invalid_id"},
	} {
		if got := code(tc.err); got != tc.want {
			t.Errorf("error %v has code %q, want %q", tc.err, got, tc.want)
		}
	}
}
