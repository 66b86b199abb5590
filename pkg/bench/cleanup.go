package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
)

// cleanup deletes the scratch room, with its messages, keys and members,
// and revokes the throwaway users (users are never deleted). It runs even
// when the run failed or was interrupted. A bus that cannot delete rooms
// (a membershipd older than room deletion) gets the room's messages
// purged where it allows it, and keeps the room.
func (r *run) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(r.o.Timeout, cleanupTimeout))
	defer cancel()
	if r.rep.Room != "" {
		if _, err := r.c.DeleteRoom(ctx, r.rep.Room); err != nil {
			r.warn("cleanup: could not delete the scratch room %s (%s): %v; delete it with `unibus room delete %s`", r.rep.RoomName, r.rep.Room, err, r.rep.Room)
			r.purgeInstead(ctx)
		} else {
			r.rep.Cleanup = append(r.rep.Cleanup, fmt.Sprintf("deleted the scratch room %s (%s), with its messages, keys and members", r.rep.RoomName, r.rep.Room))
		}
	}
	if len(r.created) > 0 {
		r.say("cleanup: revoking %d throwaway users…", len(r.created))
		var revoked atomic.Int64
		err := r.each(ctx, len(r.created), "users revoked", func(ctx context.Context, i int) error {
			if _, err := r.c.RevokeUser(ctx, r.created[i]); err != nil {
				return err
			}
			revoked.Add(1)
			return nil
		})
		r.rep.Cleanup = append(r.rep.Cleanup, fmt.Sprintf("revoked %d of %d throwaway users (bench-*): users are never deleted, they stay listed as revoked", revoked.Load(), len(r.created)))
		if err != nil {
			r.warn("cleanup: could not revoke every throwaway user: %v; revoke the rest with `unibus user revoke USER`", err)
		}
	}
}

// purgeInstead purges the scratch room's messages from the history
// stream where the bus lets the user, for a room that could not be
// deleted.
func (r *run) purgeInstead(ctx context.Context) {
	switch {
	case r.skips(PartE2E):
	case r.info.AuthMode == "enforce":
		// Users of an enforcing bus get their rooms' subjects, not
		// stream management: a purge would only time out.
		r.warn("cleanup: the scratch room's messages stay in %s: an enforcing bus lets users read and write rooms, not manage streams; an operator can purge them with `nats stream purge %s --subject %s`", api.HistoryStream, api.HistoryStream, api.RoomSubject(r.rep.Room))
	default:
		if err := r.purge(ctx, r.rep.Room); err != nil {
			r.warn("cleanup: could not purge the scratch room's messages from %s (%v): an operator can, with `nats stream purge %s --subject %s`", api.HistoryStream, err, api.HistoryStream, api.RoomSubject(r.rep.Room))
		} else {
			r.rep.Cleanup = append(r.rep.Cleanup, fmt.Sprintf("purged the scratch room's messages from the %s stream", api.HistoryStream))
		}
	}
	r.rep.Cleanup = append(r.rep.Cleanup, fmt.Sprintf("the scratch room %s (%s) stays", r.rep.RoomName, r.rep.Room))
}

// purge removes the room's messages from the history stream. A bus that
// gives users only their rooms' subjects refuses it.
func (r *run) purge(ctx context.Context, room string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var asyncErr firstError
	nc, err := r.connectNATS("cleanup", &asyncErr)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, api.HistoryStream)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(api.RoomSubject(room)))
}
