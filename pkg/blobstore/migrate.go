package blobstore

import (
	"context"
	"errors"
	"fmt"
)

// CopyDirToObjectStore copies every blob of the directory store dir into the
// Object Store obj and returns how many it copied. Each blob is streamed and
// its SHA-256 checked against its id as it is written, so a damaged file is
// never copied. Blobs already in obj are skipped, so a re-run copies only
// what is missing and a finished copy copies nothing.
//
// A blob whose content does not match its id is reported, with its id, in
// the returned error after the other blobs have been copied; any other
// failure (the context, the connection, the disk) stops the copy at once.
// progress, when not nil, is called after each blob with the number of
// blobs handled so far (copied or skipped) and the total.
func CopyDirToObjectStore(ctx context.Context, dir *Store, obj *ObjectStore, progress func(done, total int)) (copied int, err error) {
	if dir == nil || obj == nil {
		return 0, errors.New("blobstore: copy needs both a directory store and an object store")
	}
	ids, err := dir.List(ctx)
	if err != nil {
		return 0, err
	}
	var damaged []error
	for i, id := range ids {
		did, err := copyOne(ctx, dir, obj, id)
		switch {
		case errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrNotFound):
			// Damaged, or deleted since the listing: the others still go.
			damaged = append(damaged, fmt.Errorf("blob %s: %w", id, err))
		case err != nil:
			return copied, fmt.Errorf("blobstore: copy blob %s: %w", id, err)
		case did:
			copied++
		}
		if progress != nil {
			progress(i+1, len(ids))
		}
	}
	if len(damaged) > 0 {
		return copied, fmt.Errorf("blobstore: %d of %d blobs not copied: %w", len(damaged), len(ids), errors.Join(damaged...))
	}
	return copied, nil
}

// copyOne copies one blob unless obj already has it, and reports whether
// it copied.
func copyOne(ctx context.Context, dir *Store, obj *ObjectStore, id string) (bool, error) {
	ok, err := obj.Has(ctx, id)
	if err != nil || ok {
		return false, err
	}
	rc, size, err := dir.Open(ctx, id)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	if _, _, err := obj.Put(ctx, rc, max(size, 1), id); err != nil {
		if errors.Is(err, ErrTooLarge) {
			// The file grew while it was read: it is not the blob it names.
			err = fmt.Errorf("%w: file is larger than when opened", ErrDigestMismatch)
		}
		return false, err
	}
	return true, nil
}
