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
	"sync"
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

	mu      sync.Mutex
	revoked map[string]bool
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s := d.store.Load()
	if s == nil {
		return busauth.RoomPermissions(userKey, nil)
	}
	rooms, err := s.RoomsOf(ctx, userKey)
	if err != nil {
		d.log.Warn("cannot read rooms for NATS permissions: no room access", "user", userKey, "err", err)
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
			d.log.Warn("list connections", "user", u, "err", err)
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
// look (and, on the first look, of every revoked user).
func (d *dataPlane) pollRevocations(ctx context.Context, first bool) {
	s := d.store.Load()
	if s == nil {
		return
	}
	var revoked []string
	if rl, ok := s.Store.(revokedLister); ok {
		keys, err := rl.RevokedUsers(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("cannot read revoked users", "err", err)
			}
			return
		}
		revoked = keys
	} else {
		users, err := s.ListUsers(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("cannot read users for revocations", "err", err)
			}
			return
		}
		for _, u := range users {
			if !u.Active() {
				revoked = append(revoked, u.User)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
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

// loadOrCreateServiceKey reads membershipd's service nkey seed from path,
// or makes one there (0600). Host tools with access to the file act with
// membershipd's own rights, like the host's `membershipd user` commands.
func loadOrCreateServiceKey(path string) (nkeys.KeyPair, error) {
	if b, err := os.ReadFile(path); err == nil {
		kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
		if err != nil {
			return nil, fmt.Errorf("service key %s is not an nkey seed: move it away to make a new one", path)
		}
		return kp, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read service key: %w", err)
	}
	kp, err := nkeys.CreateUser()
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
