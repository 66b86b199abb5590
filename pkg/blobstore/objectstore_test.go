package blobstore_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/blobstore/blobtest"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// serverEnv, when set in the environment of this test binary, makes it a
// NATS server with JetStream in that store directory instead of running
// tests: it prints its client URL and serves until its stdin closes. The
// memory test uses it to keep the server's caches out of the heap it
// measures.
const serverEnv = "BLOBSTORE_TEST_NATS_STORE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(serverEnv); dir != "" {
		ns, err := embeddednats.StartServer(embeddednats.ServerConfig{StoreDir: dir, Host: "127.0.0.1", Port: -1})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(embeddednats.ClientURL(ns))
		_, _ = io.Copy(io.Discard, os.Stdin)
		ns.Shutdown()
		ns.WaitForShutdown()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startNATSProcess runs a NATS server with JetStream in a child process and
// returns its client URL.
func startNATSProcess(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serverEnv+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("NATS server process: %v", err)
	}
	return strings.TrimSpace(url)
}

// startNATS starts an in-process NATS server with JetStream.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	return testnats.Start(t, embeddednats.ServerConfig{})
}

// connectJS opens a client connection to ns.
func connectJS(t testing.TB, ns *server.Server) jetstream.JetStream {
	t.Helper()
	return dialJS(t, "", nats.InProcessServer(ns))
}

// dialJS opens a client connection to url, closed at the end of the test.
func dialJS(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func newObjectStore(t testing.TB, js jetstream.JetStream) *blobstore.ObjectStore {
	t.Helper()
	s, err := blobstore.NewObjectStore(context.Background(), js, blobstore.ObjectConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// objectLeftovers lists unreferenced chunk subjects and consumers left on
// the bucket's stream.
func objectLeftovers(t testing.TB, js jetstream.JetStream, s *blobstore.ObjectStore) []string {
	t.Helper()
	ctx := context.Background()
	var left []string
	orphans, err := s.UnreferencedChunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range orphans {
		left = append(left, "chunks "+n)
	}
	stream, err := js.Stream(ctx, blobstore.StreamName(s.Bucket()))
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	for n := range names.Name() {
		left = append(left, "consumer "+n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	return left
}

// noObjectLeftovers fails the test if objectLeftovers finds anything.
func noObjectLeftovers(t testing.TB, js jetstream.JetStream, s *blobstore.ObjectStore) {
	t.Helper()
	if left := objectLeftovers(t, js, s); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// TestObjectStoreBehaviour runs the shared suite on the Object Store, each
// test against its own in-process NATS server.
func TestObjectStoreBehaviour(t *testing.T) {
	blobtest.Run(t, func(t testing.TB) blobtest.Harness {
		js := connectJS(t, startNATS(t))
		s := newObjectStore(t, js)
		return blobtest.Harness{
			Store:      s,
			Leftovers:  func(t testing.TB) []string { return objectLeftovers(t, js, s) },
			SkipMemory: "the NATS server runs in this process; see TestObjectStoreMemory",
		}
	})
}

// TestObjectStoreMemory runs the suite's memory test with the NATS server
// in another process, so that the heap measured is the client's: what Put
// and Open hold, not the server's block caches (which grow to two 16 MiB
// buffers when served from the same process).
func TestObjectStoreMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("20 MiB stream in -short mode")
	}
	js := dialJS(t, startNATSProcess(t))
	s := newObjectStore(t, js)
	blobtest.LargeStreamMemory(t, blobtest.Harness{
		Store:     s,
		Leftovers: func(t testing.TB) []string { return objectLeftovers(t, js, s) },
	})
}

func TestNewObjectStoreCreatesBucket(t *testing.T) {
	ctx := context.Background()
	js := connectJS(t, startNATS(t))
	s := newObjectStore(t, js)
	if s.Bucket() != blobstore.DefaultBucket {
		t.Fatalf("bucket %q, want %q", s.Bucket(), blobstore.DefaultBucket)
	}
	stream, err := js.Stream(ctx, "OBJ_"+blobstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.Replicas != 1 {
		t.Fatalf("bucket storage %v, replicas %d; want file, 1", cfg.Storage, cfg.Replicas)
	}

	// Opening again keeps what is stored.
	id, _, err := s.Put(ctx, strings.NewReader("kept"), 10, "")
	if err != nil {
		t.Fatal(err)
	}
	again := newObjectStore(t, js)
	if ok, err := again.Has(ctx, id); err != nil || !ok {
		t.Fatalf("has through a second store = %v, %v", ok, err)
	}

	named, err := blobstore.NewObjectStore(ctx, js, blobstore.ObjectConfig{Bucket: "other_blobs", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := named.Has(ctx, id); err != nil || ok {
		t.Fatalf("blob visible in another bucket: %v, %v", ok, err)
	}
	for _, cfg := range []blobstore.ObjectConfig{{Bucket: "bad.name"}, {Replicas: -1}} {
		if _, err := blobstore.NewObjectStore(ctx, js, cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	if _, err := blobstore.NewObjectStore(ctx, nil, blobstore.ObjectConfig{}); err == nil {
		t.Error("nil JetStream accepted")
	}
}

// TestObjectStoreInterop checks that blobs are ordinary Object Store
// objects: nats.go reads what Put wrote, and Open reads what nats.go wrote.
func TestObjectStoreInterop(t *testing.T) {
	ctx := context.Background()
	js := connectJS(t, startNATS(t))
	s := newObjectStore(t, js)
	obs, err := js.ObjectStore(ctx, blobstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}

	data := bytes.Repeat([]byte("interop "), 70000) // 560000 bytes, 5 chunks
	id, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), "")
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != uint64(len(data)) || info.Chunks != 5 || info.Bucket != blobstore.DefaultBucket {
		t.Fatalf("metadata %+v", info)
	}
	got, err := obs.GetBytes(ctx, id) // nats.go verifies the digest too
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("nats.go read of a blob: %d bytes, %v", len(got), err)
	}

	other := []byte("written by another client")
	otherID := blobtest.Digest(other)
	if _, err := obs.PutBytes(ctx, otherID, other); err != nil {
		t.Fatal(err)
	}
	got, n, err := blobtest.ReadBlob(t, s, otherID)
	if err != nil || n != int64(len(other)) || !bytes.Equal(got, other) {
		t.Fatalf("read of an object nats.go wrote = %q (%d), %v", got, n, err)
	}
	if ids, err := s.List(ctx); err != nil || len(ids) != 2 {
		t.Fatalf("list = %v, %v", ids, err)
	}
}

// TestObjectStoreForeignObjectReplaced stores, under a blob id, an object
// whose bytes do not hash to it: it is not a blob, and the real content
// replaces it.
func TestObjectStoreForeignObjectReplaced(t *testing.T) {
	ctx := context.Background()
	js := connectJS(t, startNATS(t))
	s := newObjectStore(t, js)
	obs, err := js.ObjectStore(ctx, blobstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("the real content")
	id := blobtest.Digest(data)
	if _, err := obs.PutBytes(ctx, id, []byte("something else")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Has(ctx, id); err != nil || ok {
		t.Fatalf("has of a foreign object = %v, %v", ok, err)
	}
	if _, _, err := s.Open(ctx, id); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("open of a foreign object: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Put(ctx, bytes.NewReader(data), 100, id); err != nil {
		t.Fatal(err)
	}
	if got, _, err := blobtest.ReadBlob(t, s, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read = %q, %v", got, err)
	}
	noObjectLeftovers(t, js, s)
}

// rawMeta reads the metadata message of an object.
func rawMeta(t *testing.T, js jetstream.JetStream, id string) jetstream.ObjectInfo {
	t.Helper()
	stream, err := js.Stream(context.Background(), "OBJ_"+blobstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(context.Background(), metaSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func metaSubject(id string) string {
	return "$O." + blobstore.DefaultBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(id))
}

// TestObjectStoreDamage checks that damaged objects are never passed off as
// complete: extra or missing chunks are refused at Open, and bytes that do
// not hash to the id fail the read at its end instead of returning io.EOF.
func TestObjectStoreDamage(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	js := connectJS(t, ns)
	s := newObjectStore(t, js)
	a := bytes.Repeat([]byte("a"), 300<<10)
	b := bytes.Repeat([]byte("b"), 300<<10)
	idA, _, err := s.Put(ctx, bytes.NewReader(a), int64(len(a)), "")
	if err != nil {
		t.Fatal(err)
	}
	idB, _, err := s.Put(ctx, bytes.NewReader(b), int64(len(b)), "")
	if err != nil {
		t.Fatal(err)
	}

	// A's metadata pointing at B's chunks: same size and count, other bytes.
	metaA, metaB := rawMeta(t, js, idA), rawMeta(t, js, idB)
	forged := metaA
	forged.NUID = metaB.NUID
	data, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, metaSubject(idA), data); err != nil {
		t.Fatal(err)
	}
	got, _, err := blobtest.ReadBlob(t, s, idA)
	if !errors.Is(err, blobstore.ErrCorrupt) {
		t.Fatalf("read of mismatching bytes: %d bytes, %v; want ErrCorrupt", len(got), err)
	}

	// An extra chunk on B's subject.
	if _, err := js.Publish(ctx, s.ChunkSubject(metaB.NUID), []byte("extra")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(ctx, idB); !errors.Is(err, blobstore.ErrCorrupt) {
		t.Fatalf("open with an extra chunk: %v, want ErrCorrupt", err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+blobstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	// No chunks at all.
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(s.ChunkSubject(metaB.NUID))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Open(ctx, idB); !errors.Is(err, blobstore.ErrCorrupt) {
		t.Fatalf("open without chunks: %v, want ErrCorrupt", err)
	}
}

// TestObjectStoreAbandonedUpload simulates a crash in the middle of an
// upload (chunks written, no metadata): nothing is visible, and Sweep
// removes the chunks once they are old enough.
func TestObjectStoreAbandonedUpload(t *testing.T) {
	ctx := context.Background()
	js := connectJS(t, startNATS(t))
	s := newObjectStore(t, js)
	kept, _, err := s.Put(ctx, strings.NewReader("kept"), 10, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, s.ChunkSubject("crashed"), []byte(fmt.Sprintf("chunk %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := s.List(ctx); err != nil || !slices.Equal(ids, []string{kept}) {
		t.Fatalf("list = %v, %v", ids, err)
	}
	if orphans, err := s.UnreferencedChunks(ctx); err != nil || !slices.Equal(orphans, []string{"crashed"}) {
		t.Fatalf("unreferenced = %v, %v", orphans, err)
	}
	if n, err := s.Sweep(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("sweep of a fresh upload removed %d, %v", n, err)
	}
	if n, err := s.Sweep(ctx, 0); err != nil || n != 1 {
		t.Fatalf("sweep removed %d, %v; want 1", n, err)
	}
	if orphans, err := s.UnreferencedChunks(ctx); err != nil || len(orphans) != 0 {
		t.Fatalf("unreferenced after sweep = %v, %v", orphans, err)
	}
	if ok, err := s.Has(ctx, kept); err != nil || !ok {
		t.Fatalf("sweep removed a stored blob: %v, %v", ok, err)
	}
}

// sweepingReader runs a sweep in the middle of the stream, as another
// server would if this upload looked abandoned.
type sweepingReader struct {
	r     io.Reader
	n     int
	sweep func()
}

func (s *sweepingReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if s.n += n; s.n > 400<<10 && s.sweep != nil {
		s.sweep()
		s.sweep = nil
	}
	return n, err
}

// TestObjectStoreUploadSweptMeanwhile checks that an upload whose chunks a
// sweep removed fails instead of storing a partial blob.
func TestObjectStoreUploadSweptMeanwhile(t *testing.T) {
	ctx := context.Background()
	js := connectJS(t, startNATS(t))
	s := newObjectStore(t, js)
	data := bytes.Repeat([]byte("slow "), 200000)
	r := &sweepingReader{r: bytes.NewReader(data), sweep: func() {
		// The chunks sent so far may still be on their way to the
		// stream: sweep until one is removed. The upload waits in Read.
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := s.Sweep(ctx, 0)
			if err != nil {
				t.Error(err)
				return
			}
			if n > 0 || time.Now().After(deadline) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}}
	if _, _, err := s.Put(ctx, r, int64(len(data)), ""); err == nil {
		t.Fatal("put succeeded although its chunks were removed")
	}
	if ok, _ := s.Has(ctx, blobtest.Digest(data)); ok {
		t.Fatal("partial blob stored")
	}
	noObjectLeftovers(t, js, s)
}

// TestObjectStorePutLosesRace makes another Put of the same content commit
// between this Put's read of the name and its conditional publish: the
// publish is refused, the retry finds the stored blob, and this Put
// succeeds without leaving its chunks behind.
func TestObjectStorePutLosesRace(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	js := connectJS(t, ns)
	s, other := newObjectStore(t, js), newObjectStore(t, connectJS(t, ns))
	data := bytes.Repeat([]byte("raced "), 100000)
	calls := 0
	s.SetBeforeMeta(func(id string) {
		calls++
		if calls == 1 {
			if _, _, err := other.Put(ctx, bytes.NewReader(data), int64(len(data)), ""); err != nil {
				t.Error(err)
			}
		}
	})
	id, size, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), "")
	if err != nil || id != blobtest.Digest(data) || size != int64(len(data)) {
		t.Fatalf("put = %s/%d, %v", id, size, err)
	}
	if calls != 1 {
		t.Fatalf("metadata publish attempted %d times, want 1 (then the stored copy found)", calls)
	}
	if got, _, err := blobtest.ReadBlob(t, s, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read = %d bytes, %v", len(got), err)
	}
	noObjectLeftovers(t, js, s)

	// The same race on a re-upload after a delete: the condition is the
	// deletion marker's sequence.
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	calls = 0
	if _, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), ""); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("metadata publish attempted %d times after a delete, want 1", calls)
	}
	if ids, err := s.List(ctx); err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("list = %v, %v", ids, err)
	}
	noObjectLeftovers(t, js, s)
}

// TestObjectStoreCanceledAtCommit cancels a Put just before its metadata
// is published: the publish fails without saying whether it was stored, the
// store finds out it was not, and drops the chunks.
func TestObjectStoreCanceledAtCommit(t *testing.T) {
	js := connectJS(t, startNATS(t))
	s := newObjectStore(t, js)
	ctx, cancel := context.WithCancel(context.Background())
	s.SetBeforeMeta(func(string) { cancel() })
	data := bytes.Repeat([]byte("late "), 100000)
	if _, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("put: %v, want context.Canceled", err)
	}
	if ok, err := s.Has(context.Background(), blobtest.Digest(data)); err != nil || ok {
		t.Fatalf("has = %v, %v", ok, err)
	}
	noObjectLeftovers(t, js, s)
}

// TestObjectStoreSharedBucket checks two stores on two connections sharing
// one bucket, as two servers do.
func TestObjectStoreSharedBucket(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	js1, js2 := connectJS(t, ns), connectJS(t, ns)
	s1, s2 := newObjectStore(t, js1), newObjectStore(t, js2)
	data := bytes.Repeat([]byte("shared "), 60000)
	id := blobtest.Digest(data)
	errs := make(chan error, 2)
	for _, s := range []*blobstore.ObjectStore{s1, s2} {
		go func() {
			_, _, err := s.Put(ctx, bytes.NewReader(data), int64(len(data)), "")
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*blobstore.ObjectStore{s2, s1} {
		if got, _, err := blobtest.ReadBlob(t, s, id); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read = %d bytes, %v", len(got), err)
		}
	}
	if err := s2.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ok, err := s1.Has(ctx, id); err != nil || ok {
		t.Fatalf("deleted through one store, still in the other: %v, %v", ok, err)
	}
	noObjectLeftovers(t, js1, s1)
}

func TestCopyDirToObjectStore(t *testing.T) {
	ctx := context.Background()
	dir, dirPath := newStore(t)
	js := connectJS(t, startNATS(t))
	obj := newObjectStore(t, js)

	var blobs [][]byte
	for i := range 20 {
		b := bytes.Repeat([]byte(fmt.Sprintf("blob %02d ", i)), i*9000) // 0 to ~1.5 MiB
		blobs = append(blobs, b)
		if _, _, err := dir.Put(ctx, bytes.NewReader(b), int64(len(b))+1, ""); err != nil {
			t.Fatal(err)
		}
	}
	var calls [][2]int
	progress := func(done, total int) { calls = append(calls, [2]int{done, total}) }
	n, err := blobstore.CopyDirToObjectStore(ctx, dir, obj, progress)
	if err != nil || n != len(blobs) {
		t.Fatalf("copy = %d, %v; want %d", n, err, len(blobs))
	}
	if len(calls) != len(blobs) || calls[len(calls)-1] != [2]int{len(blobs), len(blobs)} {
		t.Fatalf("progress calls %v", calls)
	}
	dirIDs, _ := dir.List(ctx)
	objIDs, err := obj.List(ctx)
	if err != nil || !slices.Equal(dirIDs, objIDs) {
		t.Fatalf("object store holds %v, %v; want %v", objIDs, err, dirIDs)
	}
	for _, b := range blobs {
		if got, _, err := blobtest.ReadBlob(t, obj, blobtest.Digest(b)); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("copied blob differs: %d bytes, %v", len(got), err)
		}
	}

	// A re-run converges: nothing left to copy.
	calls = nil
	if n, err := blobstore.CopyDirToObjectStore(ctx, dir, obj, progress); err != nil || n != 0 {
		t.Fatalf("re-run = %d, %v; want 0", n, err)
	}
	if len(calls) != len(blobs) {
		t.Fatalf("re-run progress calls %v", calls)
	}

	// A new blob and a damaged one: the new one is copied, the damaged one
	// reported by id and not copied.
	fresh := []byte("added later")
	if _, _, err := dir.Put(ctx, bytes.NewReader(fresh), 100, ""); err != nil {
		t.Fatal(err)
	}
	damaged := []byte("damaged on disk")
	badID, _, err := dir.Put(ctx, bytes.NewReader(damaged), 100, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirPath, badID[:2], badID), []byte("bit rot on disk"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err = blobstore.CopyDirToObjectStore(ctx, dir, obj, nil)
	if n != 1 || !errors.Is(err, blobstore.ErrDigestMismatch) || !strings.Contains(err.Error(), badID) {
		t.Fatalf("copy with a damaged blob = %d, %v", n, err)
	}
	if ok, _ := obj.Has(ctx, blobtest.Digest(fresh)); !ok {
		t.Fatal("new blob not copied")
	}
	if ok, _ := obj.Has(ctx, badID); ok {
		t.Fatal("damaged blob copied")
	}
	noObjectLeftovers(t, js, obj)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := blobstore.CopyDirToObjectStore(cctx, dir, obj, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("copy with a canceled context: %v", err)
	}
}
