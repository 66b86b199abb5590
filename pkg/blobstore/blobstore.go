// Package blobstore keeps encrypted media blobs, addressed by the lowercase
// hex SHA-256 of their bytes, behind one interface ([Backend]) with two
// implementations: a directory on the local disk ([Store]) and a JetStream
// Object Store bucket ([ObjectStore], see objectstore.go) that several
// servers can share.
//
// In the directory store, blobs are streamed to a temporary file while their
// digest is computed, flushed to disk and then renamed into place, so a blob
// is either absent or complete. The layout is dir/ab/abcdef... (the first two
// hex characters fan the blobs out over 256 subdirectories); temporary files
// live in dir/tmp and leftovers older than an hour are removed by New.
//
// Identifiers are validated strictly (64 lowercase hex characters) before
// any path or subject is built, so a caller-supplied id can never escape the
// store.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Backend is what every blob store offers. Both [*Store] and [*ObjectStore]
// implement it with the same behaviour, checked by the shared suite in
// package blobtest.
type Backend interface {
	// Put streams r into the store and returns the blob's id (hex SHA-256)
	// and size. It reads at most maxBytes bytes (which must be positive); a
	// longer stream fails with ErrTooLarge. When wantSHA256 is not empty the
	// content must hash to it, or Put fails with ErrDigestMismatch. Nothing
	// is stored when Put fails, and content that is already stored is still
	// read and verified in full before Put succeeds.
	Put(ctx context.Context, r io.Reader, maxBytes int64, wantSHA256 string) (id string, size int64, err error)
	// Open returns the blob's content and size; the caller must close it.
	// It fails with ErrInvalidID or ErrNotFound.
	Open(ctx context.Context, id string) (io.ReadCloser, int64, error)
	// Delete removes the blob; a missing blob gives ErrNotFound.
	Delete(ctx context.Context, id string) error
	// Has reports whether the blob is stored.
	Has(ctx context.Context, id string) (bool, error)
	// List returns the ids of all stored blobs in ascending order.
	List(ctx context.Context) ([]string, error)
}

var (
	_ Backend = (*Store)(nil)
	_ Backend = (*ObjectStore)(nil)
)

// The sentinel errors below are matched with errors.Is. Each also has a
// BlobErrorCode method returning a stable code ("not_found", "too_large",
// "invalid_id", "digest_mismatch"), so that consumers can classify errors
// through a small interface without importing this package.
var (
	// ErrNotFound reports that no blob has the requested id.
	ErrNotFound error = &codedError{code: "not_found", msg: "blobstore: blob not found"}
	// ErrTooLarge reports that a blob exceeds the size limit given to Put.
	ErrTooLarge error = &codedError{code: "too_large", msg: "blobstore: blob too large"}
	// ErrInvalidID reports an id that is not 64 lowercase hex characters.
	ErrInvalidID error = &codedError{code: "invalid_id", msg: "blobstore: invalid blob id; want 64 lowercase hex characters"}
	// ErrDigestMismatch reports that a blob's SHA-256 differs from the one
	// the caller announced.
	ErrDigestMismatch error = &codedError{code: "digest_mismatch", msg: "blobstore: blob sha256 does not match the announced digest"}
)

// codedError is a sentinel error with a machine-readable code.
type codedError struct {
	code string
	msg  string
}

// Error returns the error text.
func (e *codedError) Error() string { return e.msg }

// BlobErrorCode returns the stable code of the error.
func (e *codedError) BlobErrorCode() string { return e.code }

const (
	// tmpDirName is the subdirectory holding uploads in progress.
	tmpDirName = "tmp"
	// staleTempAge is how old a leftover temporary file must be before New
	// removes it; younger ones may belong to a Put still running.
	staleTempAge = time.Hour
	// copyBufSize is the buffer used to stream blobs to disk.
	copyBufSize = 64 << 10
)

// Store is a content-addressed blob directory. It is safe for concurrent
// use, also by several processes sharing the directory.
type Store struct {
	dir string
	tmp string
	log *slog.Logger
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger for housekeeping messages; nil discards them.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// New opens the store in dir, creating it (mode 0700) if needed, and removes
// temporary files left over for more than an hour by interrupted writes.
func New(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("blobstore: directory is empty; set a storage directory")
	}
	s := &Store{
		dir: dir,
		tmp: filepath.Join(dir, tmpDirName),
		log: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(s.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("blobstore: create %s: %w; check the directory is writable", s.tmp, err)
	}
	s.removeStaleTemps(time.Now().Add(-staleTempAge))
	return s, nil
}

// removeStaleTemps deletes temporary files last modified before cutoff.
func (s *Store) removeStaleTemps(cutoff time.Time) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		s.log.Warn("blobstore: cannot list temporary files; check the directory's permissions", slog.String("dir", s.tmp), slog.Any("err", err))
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		p := filepath.Join(s.tmp, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("blobstore: cannot remove stale temporary file; check its permissions, or remove it by hand", slog.String("path", p), slog.Any("err", err))
			continue
		}
		s.log.Info("blobstore: removed stale temporary file", slog.String("path", p))
	}
}

// ValidID reports whether id is a well-formed blob id: 64 lowercase hex
// characters.
func ValidID(id string) bool {
	if len(id) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isLowerHex(id[i]) {
			return false
		}
	}
	return true
}

// putSource checks the arguments of a Put and returns r bounded to one byte
// past maxBytes (to tell "exactly maxBytes" from "more") and stopped once
// ctx is done.
func putSource(ctx context.Context, r io.Reader, maxBytes int64, wantSHA256 string) (io.Reader, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("blobstore: size limit %d is not positive; pass the largest accepted blob size", maxBytes)
	}
	if wantSHA256 != "" && !ValidID(wantSHA256) {
		return nil, fmt.Errorf("%w (announced digest)", ErrInvalidID)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return io.LimitReader(ctxReader{ctx: ctx, r: r}, maxBytes+1), nil
}

// hashCopy copies src (from putSource) to w and returns the content's id
// and size, failing with ErrTooLarge past maxBytes and with
// ErrDigestMismatch when wantSHA256 is set and differs.
func hashCopy(w io.Writer, src io.Reader, maxBytes int64, wantSHA256 string) (id string, size int64, err error) {
	h := sha256.New()
	size, err = io.CopyBuffer(io.MultiWriter(w, h), src, make([]byte, copyBufSize))
	if err != nil {
		return "", 0, fmt.Errorf("blobstore: copy blob: %w", err)
	}
	if size > maxBytes {
		return "", 0, errTooLarge(maxBytes)
	}
	id = hex.EncodeToString(h.Sum(nil))
	if wantSHA256 != "" && id != wantSHA256 {
		return "", 0, errDigestMismatch(id, wantSHA256)
	}
	return id, size, nil
}

func errTooLarge(maxBytes int64) error {
	return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
}

func errDigestMismatch(got, want string) error {
	return fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, got, want)
}

// checkID checks the id and the context of a read or a deletion.
func checkID(ctx context.Context, id string) error {
	if !ValidID(id) {
		return ErrInvalidID
	}
	return ctx.Err()
}

// path returns the fan-out directory and file path of a valid id.
func (s *Store) path(id string) (dir, file string) {
	dir = filepath.Join(s.dir, id[:2])
	return dir, filepath.Join(dir, id)
}

// Put streams r into the store and returns the blob's id (hex SHA-256) and
// size. It reads at most maxBytes bytes (which must be positive); a longer
// stream fails with ErrTooLarge. When wantSHA256 is not empty the content
// must hash to it, or Put fails with ErrDigestMismatch. Nothing is stored
// when Put fails. Storing content that is already present succeeds and
// leaves the existing blob in place.
func (s *Store) Put(ctx context.Context, r io.Reader, maxBytes int64, wantSHA256 string) (id string, size int64, err error) {
	src, err := putSource(ctx, r, maxBytes, wantSHA256)
	if err != nil {
		return "", 0, err
	}

	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return "", 0, fmt.Errorf("blobstore: create temporary file: %w; check %s is writable", err, s.tmp)
	}
	tmpName := f.Name()
	keep := false
	defer func() {
		if !keep {
			_ = f.Close()
			_ = os.Remove(tmpName)
		}
	}()

	id, size, err = hashCopy(f, src, maxBytes, wantSHA256)
	if err != nil {
		return "", 0, err
	}
	if err := f.Sync(); err != nil {
		return "", 0, fmt.Errorf("blobstore: flush blob: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("blobstore: close blob: %w", err)
	}

	dir, final := s.path(id)
	if info, err := os.Stat(final); err == nil && info.Mode().IsRegular() && info.Size() == size {
		// Same digest and size: the content is already stored.
		_ = os.Remove(tmpName)
		keep = true
		return id, size, nil
	}
	if err := s.ensureDir(dir); err != nil {
		return "", 0, err
	}
	if err := os.Rename(tmpName, final); err != nil {
		return "", 0, fmt.Errorf("blobstore: move blob into place: %w", err)
	}
	keep = true
	if err := syncDir(dir); err != nil {
		return "", 0, fmt.Errorf("blobstore: flush directory %s: %w", dir, err)
	}
	return id, size, nil
}

// ensureDir creates a fan-out directory and makes its entry durable.
func (s *Store) ensureDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("blobstore: create %s: %w", dir, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("blobstore: flush directory %s: %w", s.dir, err)
	}
	return nil
}

// Open returns the blob's content and size. The caller must close it.
func (s *Store) Open(ctx context.Context, id string) (io.ReadCloser, int64, error) {
	if err := checkID(ctx, id); err != nil {
		return nil, 0, err
	}
	_, p := s.path(id)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blobstore: open blob: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("blobstore: stat blob: %w", err)
	}
	if !info.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, ErrNotFound
	}
	return f, info.Size(), nil
}

// Delete removes the blob. Deleting a missing blob returns ErrNotFound.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := checkID(ctx, id); err != nil {
		return err
	}
	dir, p := s.path(id)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return fmt.Errorf("blobstore: delete blob: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("blobstore: flush directory %s: %w", dir, err)
	}
	return nil
}

// Has reports whether the blob is stored.
func (s *Store) Has(ctx context.Context, id string) (bool, error) {
	if err := checkID(ctx, id); err != nil {
		return false, err
	}
	_, p := s.path(id)
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blobstore: stat blob: %w", err)
	}
	return info.Mode().IsRegular(), nil
}

// List returns the ids of all blobs in the store, in ascending order. Files
// that do not follow the store's layout are ignored.
func (s *Store) List(ctx context.Context) ([]string, error) {
	fanout, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("blobstore: list %s: %w", s.dir, err)
	}
	var ids []string
	for _, d := range fanout {
		name := d.Name()
		if !d.IsDir() || !isFanoutDir(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sub := filepath.Join(s.dir, name)
		entries, err := os.ReadDir(sub)
		if err != nil {
			return nil, fmt.Errorf("blobstore: list %s: %w", sub, err)
		}
		for _, e := range entries {
			if id := e.Name(); e.Type().IsRegular() && ValidID(id) && id[:2] == name {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// isFanoutDir reports whether name is a fan-out directory name: two
// lowercase hex characters.
func isFanoutDir(name string) bool {
	return len(name) == 2 && isLowerHex(name[0]) && isLowerHex(name[1])
}

// isLowerHex reports whether c is a lowercase hex digit.
func isLowerHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f')
}

// syncDir flushes a directory so that entries created, renamed or removed
// in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ctxReader stops a copy once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
