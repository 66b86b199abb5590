package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/metrics"
)

// revocationPoll is how often the data plane looks for users revoked
// behind the API's back (the host's `membershipd user revoke`, another node).
const revocationPoll = 250 * time.Millisecond

// dataPlane follows revocations, whatever their source (the API, the
// host's `membershipd user revoke`, another node, the KV store): it closes
// the user's history readers and tells the user's rooms, so that their
// senders rekey the user out before their next message.
//
// Under enforce with the embedded NATS server it also enforces who may
// connect and to which subjects (busauth.RoomPermissions), from the store.
// NATS fixes a connection's permissions when it connects, so when a user's
// rooms change or the user is revoked, dataPlane closes every connection
// of that user on this node: the SDK reconnects with the new set (or,
// revoked, is refused).
//
// It keeps no state a second node would need: permissions are read from
// the store at each connect, and every node applies the room events and
// revocations it sees to its own connections.
type dataPlane struct {
	ns         *server.Server // nil: no connections to police here
	serviceKey string
	log        *slog.Logger
	readers    readerCloser // nil: none to close
	metrics    kickCounter  // nil: nobody counts
	// maxConns bounds the connections one user holds to this node; 0:
	// no bound.
	maxConns int
	// store is set once the store is open (the KV store opens after NATS):
	// until then only the service key is admitted.
	store atomic.Pointer[storeRef]

	// revoked holds the users already seen revoked, and pollFailing
	// whether the last look at them failed; only run's goroutine touches
	// them.
	revoked     map[string]bool
	pollFailing bool
}

type storeRef struct{ membership.Store }

// kickCounter counts the connections closed (metrics.Metrics), for
// reason metrics.ClosedAfterMembership or metrics.ClosedAfterRevocation.
type kickCounter interface {
	ConnectionsClosed(reason string, n int)
}

// counted tells d's counter of n connections closed for reason.
func (d *dataPlane) counted(reason string, n int) int {
	if n > 0 && d.metrics != nil {
		d.metrics.ConnectionsClosed(reason, n)
	}
	return n
}

// readerCloser closes a user's history readers, and the readers and
// history of a deleted room (readers.Manager).
type readerCloser interface {
	CloseFor(ctx context.Context, user, room string) (int, error)
	DeleteRoom(ctx context.Context, room string) (int, error)
}

func (d *dataPlane) setStore(s membership.Store) {
	if s != nil {
		d.store.Store(&storeRef{s})
	}
}

// authorized admits membershipd's own service key and active users that
// hold fewer than maxConns connections to this node.
func (d *dataPlane) authorized(userKey string) bool {
	if userKey == d.serviceKey {
		return true
	}
	s := d.store.Load()
	if s == nil || !s.IsAuthorized(userKey) {
		return false
	}
	if d.maxConns > 0 && d.ns != nil {
		// The connection being admitted is listed among the user's.
		cz, err := d.ns.Connz(&server.ConnzOptions{User: userKey, Username: true, Limit: d.maxConns + 1})
		if err == nil && len(cz.Conns) > d.maxConns {
			d.log.Warn("connection refused: the user holds the most connections this node allows (--max-connections-per-user)", "user", userKey, "connections", d.maxConns)
			return false
		}
	}
	return true
}

// permissions gives the service key everything and a user its rooms.
func (d *dataPlane) permissions(userKey string) *server.Permissions {
	if userKey == d.serviceKey {
		return nil
	}
	s := d.store.Load()
	if s == nil {
		return busauth.RoomPermissions(userKey, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rooms, err := s.RoomsOf(ctx, userKey)
	if err != nil {
		d.log.Warn("cannot read rooms for NATS permissions: the connection gets no room access until it reconnects; check the store", "user", userKey, "err", err)
	}
	ids := make([]string, len(rooms))
	for i, r := range rooms {
		ids[i] = r.ID
	}
	return busauth.RoomPermissions(userKey, ids)
}

// kickPage is how many connections one look at a user's connections
// lists; a user with more is listed page after page.
const kickPage = 1024

// kick closes every connection of the given users on this node, however
// many each has.
func (d *dataPlane) kick(users ...string) int {
	if d.ns == nil {
		return 0
	}
	n := 0
	for _, u := range users {
		if u == "" || u == d.serviceKey {
			continue
		}
		n += d.kickUser(u)
	}
	return n
}

// kickUser closes every connection of user u. Closing a connection takes
// it off the list, so each round lists from the start again, until a
// round finds none left (or closes none: then nothing more can be done).
func (d *dataPlane) kickUser(u string) int {
	n := 0
	for {
		cz, err := d.ns.Connz(&server.ConnzOptions{User: u, Username: true, Limit: kickPage})
		if err != nil {
			d.log.Warn("cannot list a user's connections to close them: they keep their permissions until they reconnect", "user", u, "err", err)
			return n
		}
		closed := 0
		for _, ci := range cz.Conns {
			if ci.AuthorizedUser != u {
				continue
			}
			if err := d.ns.DisconnectClientByID(ci.Cid); err == nil {
				closed++
			}
		}
		n += closed
		if closed == 0 || len(cz.Conns) < kickPage {
			return n
		}
	}
}

// run applies room events and revocations until ctx ends.
func (d *dataPlane) run(ctx context.Context, nc *nats.Conn) {
	sub, err := nc.Subscribe(api.SubjectPrefix+"*.event", func(m *nats.Msg) {
		var ev api.RoomEvent
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		if ev.Deleted {
			go d.roomDeleted(ctx, ev)
			return
		}
		if n := d.counted(metrics.ClosedAfterMembership, d.kick(ev.Users...)); n > 0 {
			d.log.Info("closed connections after a membership change", "room", ev.Room, "connections", n)
		}
	})
	if err != nil {
		d.log.Error("cannot follow room events: permissions change only at reconnect", "err", err)
	} else {
		defer sub.Unsubscribe()
	}
	d.revoked = map[string]bool{}
	d.pollRevocations(ctx, nc, true)
	t := time.NewTicker(revocationPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.pollRevocations(ctx, nc, false)
		}
	}
}

// deletedKickDelay is how long the data plane lets a room's deletion
// event reach its members before it closes their connections.
const deletedKickDelay = 250 * time.Millisecond

// roomDeleted applies the announced deletion of a room: after
// deletedKickDelay (the members' SDKs learn of the deletion from the
// event), it closes the members' connections, so that they reconnect
// without the room's subjects, then purges the room's history once more:
// what a member published between the API's purge and the close goes
// too. A room event is only a hint: nothing is purged while the store
// knows the room.
func (d *dataPlane) roomDeleted(ctx context.Context, ev api.RoomEvent) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(deletedKickDelay):
	}
	if n := d.kick(ev.Users...); n > 0 {
		d.log.Info("closed connections after a room's deletion", "room", ev.Room, "connections", n)
	}
	s := d.store.Load()
	if s == nil || d.readers == nil || !api.ValidRoomID(ev.Room) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.GetRoom(ctx, ev.Room); !api.IsCode(err, api.CodeNotFound) {
		return
	}
	if _, err := d.readers.DeleteRoom(ctx, ev.Room); err != nil && ctx.Err() == nil {
		d.log.Warn("cannot purge a deleted room's history", "room", ev.Room, "err", err)
	}
}

// revokedLister is what a store offers to list revoked users cheaply.
type revokedLister interface {
	RevokedUsers(ctx context.Context) ([]string, error)
}

// pollRevocations closes the connections of users revoked since the last
// look (and, on the first look, of every revoked user). A failure to read
// them is logged once, not at every poll, until a read succeeds again.
func (d *dataPlane) pollRevocations(ctx context.Context, nc *nats.Conn, first bool) {
	s := d.store.Load()
	if s == nil {
		return
	}
	revoked, err := revokedUsers(ctx, s.Store)
	if err != nil {
		if ctx.Err() == nil && !d.pollFailing {
			d.log.Warn("cannot read revoked users: revoked users keep their bus connections until it works again; check the store", "err", err)
			d.pollFailing = true
		}
		return
	}
	if d.pollFailing {
		d.log.Info("reading revoked users again")
		d.pollFailing = false
	}
	for _, u := range revoked {
		if d.revoked[u] {
			continue
		}
		d.revoked[u] = true
		if first {
			// Revoked before this node started: their rooms were told
			// long ago, and the readers' sweep closes what they hold.
			d.counted(metrics.ClosedAfterRevocation, d.kick(u))
			continue
		}
		n := d.counted(metrics.ClosedAfterRevocation, d.kick(u))
		readers := d.closeReaders(ctx, u)
		rooms := d.announceRevoked(ctx, nc, u)
		d.log.Info("revoked user cut off", "user", u, "connections", n, "readers", readers, "rooms_told", rooms)
	}
}

// closeReaders closes every history reader of user u.
func (d *dataPlane) closeReaders(ctx context.Context, u string) int {
	if d.readers == nil {
		return 0
	}
	n, err := d.readers.CloseFor(ctx, u, "")
	if err != nil && ctx.Err() == nil {
		d.log.Warn("cannot close a revoked user's history readers: the sweep will", "user", u, "err", err)
	}
	return n
}

// announceRevoked tells every room of the revoked user u, with a room
// event naming it, so that the next member to send rekeys u out. Every
// node that sees the revocation tells them; members ignore repeats.
func (d *dataPlane) announceRevoked(ctx context.Context, nc *nats.Conn, u string) int {
	s := d.store.Load()
	if s == nil || nc == nil {
		return 0
	}
	rooms, err := s.RoomsOf(ctx, u)
	if err != nil {
		d.log.Warn("cannot tell a revoked user's rooms: their members learn of it at their next member list read", "user", u, "err", err)
		return 0
	}
	for _, r := range rooms {
		b, _ := json.Marshal(api.RoomEvent{Room: r.ID, Epoch: r.Epoch, Seq: r.HeadSeq, Revoked: []string{u}})
		if err := nc.Publish(api.RoomEventSubject(r.ID), b); err != nil {
			d.log.Warn("cannot tell a room of a revocation", "room", r.ID, "err", err)
		}
	}
	return len(rooms)
}

// revokedUsers lists the keys of the revoked users, with the store's
// narrow query when it has one.
func revokedUsers(ctx context.Context, s membership.Store) ([]string, error) {
	if rl, ok := s.(revokedLister); ok {
		return rl.RevokedUsers(ctx)
	}
	users, err := s.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	var revoked []string
	for _, u := range users {
		if !u.Active() {
			revoked = append(revoked, u.User)
		}
	}
	return revoked, nil
}

// serviceKeyFile is the service key's file in the --nats-store directory:
// membershipd's own nkey on the bus account under enforce.
const serviceKeyFile = "service.nk"

// readSeed reads the nkey seed file at path. The error of a missing file
// matches fs.ErrNotExist.
func readSeed(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("%s is not an nkey seed", path)
	}
	return kp, nil
}
