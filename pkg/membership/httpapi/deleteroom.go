package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/enmanuel/unibus/pkg/api"
)

// deleteRoom is DELETE /v1/rooms/{room}: a room admin (or the room's last
// member) deletes the room. The store removes the room, its members, keys,
// history and blob records in one change, after checking who asks; then
// every reader of the room is closed and its messages purged from the
// history stream, its blobs deleted from the blob store, and the room's
// members told with a room event (which also makes every node close their
// NATS connections, so that they reconnect without the room, and purge its
// history once more).
//
// What fails after the store's change is logged, not answered: the room
// is gone. The purge runs again when each node applies the room event,
// and the readers' sweep closes any reader left.
func (s *Server) deleteRoom(ctx context.Context, c *call) (int, any, error) {
	id, err := s.memberOf(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	d, err := s.store.DeleteRoom(ctx, id, c.user.User)
	if err != nil {
		return 0, nil, err
	}
	// The room is gone: finish the job even if the caller goes away.
	ctx = context.WithoutCancel(ctx)
	readers := 0
	if s.Readers != nil {
		if readers, err = s.Readers.DeleteRoom(ctx, id); err != nil {
			s.log().Warn("purge a deleted room's history: each node purges it again when told of the deletion", "room", id, "err", err)
		}
	}
	blobs := 0
	for _, b := range d.Blobs {
		if s.blobs == nil {
			break
		}
		if err := s.blobs.Delete(ctx, b); err != nil && !isBlobNotFound(err) {
			s.log().Warn("delete a deleted room's blob: it stays in the blob store, unreadable (its key went with the room)", "room", id, "blob", b, "err", err)
			continue
		}
		blobs++
	}
	s.log().Info("room deleted", "room", id, "by", c.user.User, "members", len(d.Members), "readers", readers, "blobs", blobs)
	s.announceDeleted(d.Room, d.Members)
	return http.StatusOK, d.Room, nil
}

// isBlobNotFound reports a blob store's "no such blob": a blob already
// gone is deleted.
func isBlobNotFound(err error) bool {
	var ce interface{ BlobErrorCode() string }
	return errors.As(err, &ce) && ce.BlobErrorCode() == "not_found"
}

// announceDeleted tells the deleted room's members, by a room event
// naming them, so that their SDKs forget the room and every node closes
// their connections (they reconnect without the room's subjects).
func (s *Server) announceDeleted(room api.Room, members []string) {
	s.publishEvent(api.RoomEvent{Room: room.ID, Epoch: room.Epoch, Seq: room.HeadSeq, Users: members, Deleted: true}, "announce a room's deletion")
}
