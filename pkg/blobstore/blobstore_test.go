package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/blobstore/blobtest"
)

func newStore(t testing.TB) (*blobstore.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := blobstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// tmpFiles lists the files left in the store's temporary directory.
func tmpFiles(t testing.TB, dir string) []string {
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

// TestStoreBehaviour runs the shared suite on the directory store.
func TestStoreBehaviour(t *testing.T) {
	blobtest.Run(t, func(t testing.TB) blobtest.Harness {
		s, dir := newStore(t)
		return blobtest.Harness{
			Store:     s,
			Leftovers: func(t testing.TB) []string { return tmpFiles(t, dir) },
		}
	})
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

func TestFanOutLayout(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	data := []byte("ciphertext bytes")
	id, _, err := s.Put(ctx, bytes.NewReader(data), 1024, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, id[:2], id)); err != nil {
		t.Fatalf("blob not in fan-out layout: %v", err)
	}
}

// TestListIgnoresForeignFiles checks that List reports only files that
// follow the layout.
func TestListIgnoresForeignFiles(t *testing.T) {
	ctx := context.Background()
	s, dir := newStore(t)
	id, _, err := s.Put(ctx, bytes.NewReader([]byte("kept")), 100, "")
	if err != nil {
		t.Fatal(err)
	}
	other := blobtest.Digest([]byte("elsewhere"))
	for _, p := range []string{
		filepath.Join(dir, "tmp", other),               // upload in progress
		filepath.Join(dir, id[:2], "notes.txt"),        // not an id
		filepath.Join(dir, id[:2], other),              // id in the wrong fan-out directory
		filepath.Join(dir, "zz", blobtest.Digest(nil)), // not a fan-out directory
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := s.List(ctx)
	if err != nil || !slices.Equal(ids, []string{id}) {
		t.Fatalf("list = %v, %v; want [%s]", ids, err, id)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.List(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("list with a canceled context: %v", err)
	}
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
