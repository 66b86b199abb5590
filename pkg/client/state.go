package client

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
)

// minRefreshGap bounds how often a room is refreshed because a message
// named an unknown sender or epoch, so that bogus messages cannot turn into
// a storm of control-plane calls.
const minRefreshGap = 500 * time.Millisecond

// roomSnapshot is what the client knows of a room at one moment. It is
// never changed after it is built; a refresh swaps in a new one.
type roomSnapshot struct {
	room    api.Room
	current []api.Member
	keys    map[uint64]*e2ee.RoomKey
	senders map[[32]byte][]sender
	at      time.Time
}

// sender is one span of membership of a user, parsed once for verifying.
type sender struct {
	name  string
	user  string
	pub   ed25519.PublicKey
	since uint64
	until uint64
}

func (s *roomSnapshot) senderAt(pk [32]byte, epoch uint64) (sender, bool) {
	for _, sp := range s.senders[pk] {
		if epoch >= sp.since && (sp.until == 0 || epoch < sp.until) {
			return sp, true
		}
	}
	return sender{}, false
}

// roomState caches one room for the client's lifetime.
type roomState struct {
	snap      atomic.Pointer[roomSnapshot]
	stale     atomic.Bool
	refreshMu sync.Mutex
	sub       *nats.Subscription
}

func (c *Client) roomState(id string) *roomState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.rooms[id]
	if st == nil {
		st = &roomState{}
		c.rooms[id] = st
	}
	return st
}

func (c *Client) markStale(id string) { c.roomState(id).stale.Store(true) }

// snapshot returns the room's cached state, refreshing it first when it
// was never loaded or a change was announced.
func (c *Client) snapshot(ctx context.Context, id string) (*roomSnapshot, error) {
	st := c.roomState(id)
	if s := st.snap.Load(); s != nil && !st.stale.Load() {
		return s, nil
	}
	return c.refreshRoom(ctx, id)
}

// refreshRoom reloads the room's members, member history and keys.
func (c *Client) refreshRoom(ctx context.Context, id string) (*roomSnapshot, error) {
	st := c.roomState(id)
	st.refreshMu.Lock()
	defer st.refreshMu.Unlock()
	st.stale.Store(false)
	var room api.Room
	if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+id, nil, nil, &room); err != nil {
		return nil, err
	}
	var history []api.Member
	if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+id+"/members", url.Values{"history": {"true"}}, nil, &history); err != nil {
		return nil, err
	}
	var sealed []api.SealedKey
	if room.Encrypted {
		if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+id+"/keys", nil, nil, &sealed); err != nil {
			return nil, err
		}
	}
	snap := &roomSnapshot{room: room, current: room.Members, keys: map[uint64]*e2ee.RoomKey{}, senders: map[[32]byte][]sender{}, at: time.Now()}
	for _, m := range history {
		pub, err := identity.ParseUserKey(m.User)
		if err != nil {
			c.log.Warn("skipping member with a malformed key", "room", id, "user", m.User)
			continue
		}
		pk := [32]byte(pub)
		snap.senders[pk] = append(snap.senders[pk], sender{name: m.Name, user: m.User, pub: pub, since: m.Since, until: m.Until})
	}
	old := st.snap.Load()
	for _, k := range sealed {
		if old != nil {
			if key, ok := old.keys[k.Epoch]; ok {
				snap.keys[k.Epoch] = key
				continue
			}
		}
		key, err := c.openSealed(id, k)
		if err != nil {
			c.log.Warn("cannot open a sealed room key", "room", id, "epoch", k.Epoch, "err", err)
			continue
		}
		snap.keys[k.Epoch] = &key
	}
	st.snap.Store(snap)
	c.watchRoom(id, st)
	return snap, nil
}

// openSealed opens a room key sealed to the caller.
func (c *Client) openSealed(room string, k api.SealedKey) (e2ee.RoomKey, error) {
	if k.Room != room || k.Member != c.id.UserKey() {
		return e2ee.RoomKey{}, fmt.Errorf("sealed key names room %s member %s, not this room and caller", k.Room, k.Member)
	}
	if err := k.Sealer.Verify(); err != nil {
		return e2ee.RoomKey{}, fmt.Errorf("sealer identity: %w", err)
	}
	x, _ := identity.ParseXKey(k.Sealer.XKey)
	sc := e2ee.SealedKeyContext{Room: room, Epoch: k.Epoch, Recipient: c.selfPK}
	return e2ee.OpenRoomKey(k.SealedKey, sc, c.id.XPrivate(), x)
}

// watchRoom subscribes once to the room's change announcements, when a
// NATS connection exists, so the next send or receive refreshes first.
func (c *Client) watchRoom(id string, st *roomState) {
	if c.nc == nil || st.sub != nil {
		return
	}
	sub, err := c.nc.Subscribe(api.RoomEventSubject(id), func(m *nats.Msg) {
		var ev api.RoomEvent
		if json.Unmarshal(m.Data, &ev) == nil && ev.Room == id {
			st.stale.Store(true)
		}
	})
	if err != nil {
		c.log.Warn("cannot watch room changes", "room", id, "err", err)
		return
	}
	st.sub = sub
}

// senderAndKey finds the verified sender of a message and the key of its
// epoch, refreshing the room at most every minRefreshGap when either is
// unknown.
func (c *Client) senderAndKey(ctx context.Context, id string, pk [32]byte, epoch uint64, encrypted bool) (sender, *e2ee.RoomKey, error) {
	snap, err := c.snapshot(ctx, id)
	if err != nil {
		return sender{}, nil, err
	}
	for attempt := 0; ; attempt++ {
		s, okSender := snap.senderAt(pk, epoch)
		key, okKey := snap.keys[epoch]
		if okSender && (okKey || !encrypted) {
			return s, key, nil
		}
		if attempt == 0 && (epoch > snap.room.Epoch || time.Since(snap.at) >= minRefreshGap) {
			if snap, err = c.refreshRoom(ctx, id); err != nil {
				return sender{}, nil, err
			}
			continue
		}
		if !okSender {
			return sender{}, nil, fmt.Errorf("sender %s was not a member of the room at epoch %d", shortKey(pk), epoch)
		}
		return s, nil, fmt.Errorf("no key for epoch %d: you were not a member then, or were removed", epoch)
	}
}

func shortKey(pk [32]byte) string {
	s, err := identity.UserKeyString(pk[:])
	if err != nil {
		return "?"
	}
	return s
}
