package httpapi

import (
	"context"
	"net/http"

	"github.com/enmanuel/unibus/pkg/api"
)

// Readers opens and closes the history readers through which members read
// their rooms' messages (package readers): the server never hands a member
// a way to read JetStream of its own choosing.
type Readers interface {
	// Open makes a reader of room for user delivering to deliver from
	// startSeq, after checking that user is an active member now.
	Open(ctx context.Context, user, room, deliver string, startSeq uint64) (api.Reader, error)
	// Close deletes the reader name of user in room.
	Close(ctx context.Context, user, room, name string) error
	// CloseFor deletes every reader of user in room, or in every room
	// when room is empty.
	CloseFor(ctx context.Context, user, room string) (int, error)
	// DeleteRoom deletes every reader of room and purges its messages
	// from the history: the room was deleted.
	DeleteRoom(ctx context.Context, room string) (int, error)
}

// openReader is POST /v1/rooms/{room}/readers.
func (s *Server) openReader(ctx context.Context, c *call) (int, any, error) {
	room, err := s.memberOf(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	var req api.ReaderRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	if s.Readers == nil {
		return 0, nil, api.Errorf(api.CodeUnavailable, "this server serves no message history: ask its operator")
	}
	rd, err := s.Readers.Open(ctx, c.user.User, room, req.Deliver, req.StartSeq)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, rd, nil
}

// closeReader is DELETE /v1/rooms/{room}/readers/{reader}. A former
// member may close what it still holds, so membership is not asked.
func (s *Server) closeReader(ctx context.Context, c *call) (int, any, error) {
	room := c.r.PathValue("room")
	if !api.ValidRoomID(room) {
		return 0, nil, notYourRoom(room)
	}
	if s.Readers == nil {
		return 0, nil, api.Errorf(api.CodeUnavailable, "this server serves no message history: ask its operator")
	}
	if err := s.Readers.Close(ctx, c.user.User, room, c.r.PathValue("reader")); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, struct{}{}, nil
}

// closeReaders deletes the readers of users who just lost the right to
// read (room empty: every room). A failure is logged: every node's sweep
// deletes them within seconds anyway.
func (s *Server) closeReaders(ctx context.Context, room string, users ...string) {
	if s.Readers == nil {
		return
	}
	for _, u := range users {
		if _, err := s.Readers.CloseFor(ctx, u, room); err != nil {
			s.log().Warn("close the history readers of a user who lost access: the sweep will", "user", u, "room", room, "err", err)
		}
	}
}
