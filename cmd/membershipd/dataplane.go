package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/membership"
)

// revocationPoll is how often the data plane looks for users revoked
// behind the API's back (the host's `membershipd user revoke`, another node).
const revocationPoll = 250 * time.Millisecond

// dataPlane enforces, on the embedded NATS server, who may connect and to
// which subjects (busauth.RoomPermissions), from the store. NATS fixes a
// connection's permissions when it connects, so when a user's rooms change
// or the user is revoked, dataPlane closes that user's connections: the
// SDK reconnects with the new set (or, revoked, is refused).
//
// It keeps no state a second node would need: permissions are read from
// the store at each connect, and every node applies the room events and
// revocations it sees to its own connections.
type dataPlane struct {
	ns         *server.Server
	serviceKey string
	log        *slog.Logger
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

func (d *dataPlane) setStore(s membership.Store) {
	if s != nil {
		d.store.Store(&storeRef{s})
	}
}

// authorized admits membershipd's own service key and active users.
func (d *dataPlane) authorized(userKey string) bool {
	if userKey == d.serviceKey {
		return true
	}
	s := d.store.Load()
	return s != nil && s.IsAuthorized(userKey)
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

// kick closes every connection of the given users on this node.
func (d *dataPlane) kick(users ...string) int {
	n := 0
	for _, u := range users {
		if u == "" || u == d.serviceKey {
			continue
		}
		cz, err := d.ns.Connz(&server.ConnzOptions{User: u, Username: true, Limit: 1024})
		if err != nil {
			d.log.Warn("cannot list a user's connections to close them: they keep their permissions until they reconnect", "user", u, "err", err)
			continue
		}
		for _, ci := range cz.Conns {
			if ci.AuthorizedUser != u {
				continue
			}
			if err := d.ns.DisconnectClientByID(ci.Cid); err == nil {
				n++
			}
		}
	}
	return n
}

// run applies room events and revocations until ctx ends.
func (d *dataPlane) run(ctx context.Context, nc *nats.Conn) {
	sub, err := nc.Subscribe(api.SubjectPrefix+"*.event", func(m *nats.Msg) {
		var ev api.RoomEvent
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		if n := d.kick(ev.Users...); n > 0 {
			d.log.Info("closed connections after a membership change", "room", ev.Room, "connections", n)
		}
	})
	if err != nil {
		d.log.Error("cannot follow room events: permissions change only at reconnect", "err", err)
	} else {
		defer sub.Unsubscribe()
	}
	d.revoked = map[string]bool{}
	d.pollRevocations(ctx, true)
	t := time.NewTicker(revocationPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.pollRevocations(ctx, false)
		}
	}
}

// revokedLister is what a store offers to list revoked users cheaply.
type revokedLister interface {
	RevokedUsers(ctx context.Context) ([]string, error)
}

// pollRevocations closes the connections of users revoked since the last
// look (and, on the first look, of every revoked user). A failure to read
// them is logged once, not at every poll, until a read succeeds again.
func (d *dataPlane) pollRevocations(ctx context.Context, first bool) {
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
		if n := d.kick(u); n > 0 || !first {
			d.log.Info("revoked user disconnected", "user", u, "connections", n)
		}
	}
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

// serviceKeyFile is the service key's file in the --nats-store directory,
// and defaultServiceKeyPath where it is with the default --nats-store: the
// host tools look there when given no --nkey.
const (
	serviceKeyFile        = "service.nk"
	defaultServiceKeyPath = defaultNATSStore + "/" + serviceKeyFile
)

// loadOrCreateServiceKey reads membershipd's service nkey seed from path,
// or makes one there (0600). Host tools with access to the file act with
// membershipd's own rights, like the host's `membershipd user` commands.
func loadOrCreateServiceKey(path string) (nkeys.KeyPair, error) {
	kp, err := readSeed(path)
	if err == nil {
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("service key: %w: fix it, or move it away to make a new one", err)
	}
	kp, err = nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create service nkey: %w", err)
	}
	seed, _ := kp.Seed()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("service key directory: %w", err)
	}
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write service key: %w", err)
	}
	return kp, nil
}

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
