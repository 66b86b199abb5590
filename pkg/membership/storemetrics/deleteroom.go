package storemetrics

import (
	"context"

	"github.com/enmanuel/unibus/pkg/membership/store"
)

// DeleteRoom forwards to the wrapped store, untimed: the wrapper of the
// Store method that the room deletion adds (to be timed under its own op
// when that work lands).
func (w *Store) DeleteRoom(ctx context.Context, room, by string) (store.Deleted, error) {
	return w.s.DeleteRoom(ctx, room, by)
}
