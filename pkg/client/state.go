package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// minRefreshGap bounds how often a room is refreshed because a message
// named an unknown sender or epoch, so that bogus messages cannot turn into
// a storm of control-plane calls.
const minRefreshGap = 500 * time.Millisecond

// roomSnapshot is what the client knows of a room at one moment: the
// membership the room's signed history proves, and the keys opened for it.
// It is never changed after it is built; a refresh swaps in a new one.
type roomSnapshot struct {
	room    api.Room
	chain   *roomchain.State
	keys    map[uint64]*e2ee.RoomKey
	senders map[[32]byte]senderKey // parsed once per member key
	hashes  map[uint64]string      // statement hashes verified in this process, by seq
	at      time.Time
	// listed is when the server's member list was last read and checked
	// against the history (room.Members is that list).
	listed time.Time

	revokedOnce sync.Once
	revokedSet  map[string]bool
}

// senderKey is a member's key in the forms the receive path needs, made
// once per refresh: the user key, and the Ed25519 key expanded for
// verification (about twice as fast as crypto/ed25519.Verify, which
// decodes the key on every call; see BENCHMARKS.md).
type senderKey struct {
	e2ee.SenderKey
	user string
}

// revoked returns the verified members the server reports revoked.
// It is worked out once per snapshot: every send asks, and a big room's
// member list is long. The map must not be changed.
func (s *roomSnapshot) revoked() map[string]bool {
	s.revokedOnce.Do(func() {
		s.revokedSet = map[string]bool{}
		for _, m := range s.room.Members {
			if _, ok := s.chain.Member(m.User); ok && m.Revoked {
				s.revokedSet[m.User] = true
			}
		}
	})
	return s.revokedSet
}

// mustRekey reports whether the room's current epoch may not be used
// before a rekey: a revoked member holds its key, or (encrypted) a member
// that left made it (roomchain.State.LeftBy).
func (s *roomSnapshot) mustRekey() bool {
	return len(s.revoked()) > 0 || s.room.Encrypted && s.chain.LeftBy != ""
}

// senderAt returns the verified member record of the sender of a message
// at epoch e, with its key ready to verify.
func (s *roomSnapshot) senderAt(pk [32]byte, epoch uint64) (roomchain.Member, senderKey, bool) {
	k, ok := s.senders[pk]
	if !ok {
		return roomchain.Member{}, senderKey{}, false
	}
	m, ok := s.chain.MemberAt(k.user, epoch)
	return m, k, ok
}

// roomState caches one room for the client's lifetime.
type roomState struct {
	snap  atomic.Pointer[roomSnapshot]
	stale atomic.Bool
	// rekeyed is the highest epoch a room event announced for a rekey
	// (no member added or removed): a snapshot at an older epoch is
	// stale, unless a key delivery brought it there first.
	rekeyed atomic.Uint64
	// listMembers asks the next refresh to read the server's member list
	// (a member was revoked).
	listMembers atomic.Bool
	// deleted is set when membershipd announced the room's deletion: the
	// room's refusals then say so.
	deleted   atomic.Bool
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

// maxSnapshotAge bounds how long a room's state is trusted without asking
// the server, in case a change announcement was lost (a reconnect, a
// subscription refused while permissions were being updated).
const maxSnapshotAge = 5 * time.Second

// maxMemberListAge bounds how long the server's member list of a room goes
// unread. A refresh in between reads the room's head and what is new in
// its history only (a 10,000-member list is about 2.5 MB): members added or
// removed are proved by the history itself. The list is read at once when
// a member is revoked (room events), and for the client's own membership
// changes, rekeys and Verify (readRoom).
const maxMemberListAge = time.Minute

// snapshot returns the room's cached state, refreshing it first when it
// was never loaded, a change was announced, or it is older than
// maxSnapshotAge.
func (c *Client) snapshot(ctx context.Context, id string) (*roomSnapshot, error) {
	return c.snapshotOf(ctx, c.roomState(id), id)
}

// snapshotOf is snapshot for a caller that holds the room's state already
// (the receive path, which asks for every message).
func (c *Client) snapshotOf(ctx context.Context, st *roomState, id string) (*roomSnapshot, error) {
	if s := st.snap.Load(); s != nil && !st.stale.Load() && time.Since(s.at) < maxSnapshotAge && s.room.Epoch >= st.rekeyed.Load() {
		return s, nil
	}
	return c.refreshRoom(ctx, id)
}

// HistoryError reports a room whose membership history, as the server
// serves it, does not verify or does not match what the server claims.
type HistoryError struct {
	Room string
	Err  error
}

func (e *HistoryError) Error() string {
	return fmt.Sprintf("room %s: refusing to trust it: %v", e.Room, e.Err)
}

func (e *HistoryError) Unwrap() error { return e.Err }

// readRoom is refreshRoom with the server's member list read and checked
// against the history, whatever its age: for membership changes, rekeys
// and Verify, which act on or report the member set.
func (c *Client) readRoom(ctx context.Context, id string) (*roomSnapshot, error) {
	c.roomState(id).listMembers.Store(true)
	return c.refreshRoom(ctx, id)
}

// refreshRoom reloads the room, verifies what is new in its membership
// history, checks the server's view against it (its member list when that
// is due: maxMemberListAge), and opens new keys.
func (c *Client) refreshRoom(ctx context.Context, id string) (*roomSnapshot, error) {
	st := c.roomState(id)
	st.refreshMu.Lock()
	defer st.refreshMu.Unlock()
	st.stale.Store(false)
	old := st.snap.Load()
	full := old == nil || st.listMembers.Swap(false) || time.Since(old.listed) >= maxMemberListAge
	var before uint64 // the head verified before this refresh
	if old != nil {
		before = old.chain.Seq
	} else if p := c.pins.room(id); p != nil {
		before = p.Seq
	}
	var (
		room   api.Room
		chain  *roomchain.State
		hashes map[uint64]string
	)
	for attempt := 0; ; attempt++ {
		room = api.Room{}
		var q url.Values
		if !full {
			q = url.Values{"members": {"none"}}
		}
		if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+id, q, nil, &room); err != nil {
			return nil, c.roomGone(id, err)
		}
		if room.HeadSeq < before {
			return nil, &HistoryError{Room: id, Err: fmt.Errorf("the server's history ends at statement %d, but statement %d was verified before: it was rolled back", room.HeadSeq, before)}
		}
		var err error
		if chain, hashes, err = c.verifyHistory(ctx, id, old); err != nil {
			return nil, &HistoryError{Room: id, Err: err}
		}
		if full {
			err = checkServerView(room, chain)
		} else {
			// Members added or removed since are proved by the history;
			// the server's list of them is read at the next full read.
			err = checkServerHead(room, chain)
			room.Members = currentOf(old.room.Members, chain)
		}
		if err == nil {
			break
		}
		// The room and its history are two reads: a change committed
		// between them shows as heads that differ. Read again; a server
		// that keeps disagreeing with itself is not trusted.
		if room.HeadSeq != chain.Seq && attempt < 2 {
			continue
		}
		return nil, &HistoryError{Room: id, Err: err}
	}
	snap := &roomSnapshot{room: room, chain: chain, keys: map[uint64]*e2ee.RoomKey{}, senders: map[[32]byte]senderKey{}, hashes: hashes, at: time.Now(), listed: time.Now()}
	if !full {
		snap.listed = old.listed
	}
	for _, sp := range chain.Spans() {
		pub, err := identity.ParseUserKey(sp.User)
		if err != nil {
			continue
		}
		if old != nil {
			// Expanding a key costs a point decompression: keep those
			// of the members already known.
			if k, ok := old.senders[[32]byte(pub)]; ok {
				snap.senders[[32]byte(pub)] = k
				continue
			}
		}
		snap.senders[[32]byte(pub)] = senderKey{SenderKey: e2ee.NewSenderKey(pub), user: sp.User}
	}
	if room.Encrypted {
		var sealed []api.SealedKey
		switch {
		case full || room.Epoch > old.room.Epoch+1:
			if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+id+"/keys", nil, nil, &sealed); err != nil {
				return nil, err
			}
		case room.Epoch == old.room.Epoch+1:
			// One new epoch: its key alone.
			q := url.Values{"epoch": {strconv.FormatUint(room.Epoch, 10)}}
			if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+id+"/keys", q, nil, &sealed); err != nil {
				return nil, err
			}
		}
		if !full {
			for e, k := range old.keys {
				snap.keys[e] = k
			}
		}
		for _, k := range sealed {
			if old != nil {
				if key, ok := old.keys[k.Epoch]; ok {
					snap.keys[k.Epoch] = key
					continue
				}
			}
			key, err := c.openSealed(id, chain, k)
			if err != nil {
				c.log.Warn("cannot open a sealed room key", "room", id, "epoch", k.Epoch, "err", err)
				continue
			}
			snap.keys[k.Epoch] = &key
		}
	}
	st.snap.Store(snap)
	// An announced rekey the server does not know of was not one (room
	// events are hints anyone in the room can publish): forget it rather
	// than read the room again on every use.
	for {
		r := st.rekeyed.Load()
		if r <= room.Epoch || st.rekeyed.CompareAndSwap(r, room.Epoch) {
			break
		}
	}
	c.watchRoom(id, st)
	return snap, nil
}

// verifyHistory extends the verified chain of room id with what the server
// has after it: from the state verified earlier in this process, else the
// one pinned on disk, else from the creation statement.
func (c *Client) verifyHistory(ctx context.Context, id string, old *roomSnapshot) (*roomchain.State, map[uint64]string, error) {
	var chain *roomchain.State
	hashes := map[uint64]string{}
	if old != nil {
		chain = old.chain
		for k, v := range old.hashes {
			hashes[k] = v
		}
	} else {
		chain = c.pins.room(id)
	}
	var after uint64
	if chain != nil {
		after = chain.Seq
		hashes[chain.Seq] = chain.Head
	}
	var sts []roomchain.Signed
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	if err := c.do(ctx, http.MethodGet, "/v1/rooms/"+id+"/statements", q, nil, &sts); err != nil {
		return nil, nil, err
	}
	for _, s := range sts {
		next, err := chain.Apply(id, s)
		if err != nil {
			return nil, nil, err
		}
		chain = next
		hashes[chain.Seq] = chain.Head
	}
	if chain == nil {
		return nil, nil, fmt.Errorf("the server serves no membership history for it")
	}
	// Members are pinned when the history is first read in this process or
	// grows; a refresh with nothing new has nothing new to pin.
	if old == nil || len(sts) > 0 {
		names := make([]pinnedName, len(chain.Members))
		for i, m := range chain.Members {
			names[i] = pinnedName{m.Name, pinnedUser{User: m.User, XKey: m.XKey}}
		}
		if err := c.pins.checkUsers(names); err != nil {
			return nil, nil, err
		}
	}
	if len(sts) > 0 {
		if err := c.pins.setRoom(chain); err != nil {
			c.log.Warn("cannot save the verified room head", "room", id, "err", err)
		}
	}
	return chain, hashes, nil
}

// currentOf returns the entries of the server's member list ms that are
// still members by the verified history: the list read last, less those
// removed since (members added since are listed at the next full read).
func currentOf(ms []api.Member, chain *roomchain.State) []api.Member {
	var out []api.Member
	removed := false
	for i, m := range ms {
		_, ok := chain.Member(m.User)
		switch {
		case !ok && !removed:
			removed = true
			out = append(make([]api.Member, 0, len(ms)), ms[:i]...)
		case ok && removed:
			out = append(out, m)
		}
	}
	if !removed {
		return ms
	}
	return out
}

// checkServerView compares what the server says of the room with what the
// verified history proves: a member, epoch or head the history does not
// show is the server's doing, and the room is not to be trusted.
func checkServerView(room api.Room, chain *roomchain.State) error {
	if err := checkServerHead(room, chain); err != nil {
		return err
	}
	return checkServerMembers(room, chain)
}

// checkServerHead compares the server's head, epoch and mode of the room
// with the verified history's.
func checkServerHead(room api.Room, chain *roomchain.State) error {
	if room.HeadSeq != chain.Seq || room.HeadHash != chain.Head {
		return fmt.Errorf("the server names head %d/%.12s… but serves history up to %d/%.12s…", room.HeadSeq, room.HeadHash, chain.Seq, chain.Head)
	}
	if room.Epoch != chain.Epoch {
		return fmt.Errorf("the server says epoch %d, the signed history proves epoch %d", room.Epoch, chain.Epoch)
	}
	if room.Encrypted != chain.Encrypted && chain.Seq >= 1 {
		return fmt.Errorf("the server says encrypted=%v, the creation statement says %v", room.Encrypted, chain.Encrypted)
	}
	return nil
}

// checkServerMembers compares the server's member list with the verified
// history's members.
func checkServerMembers(room api.Room, chain *roomchain.State) error {
	server := map[string]api.Member{}
	for _, m := range room.Members {
		server[m.User] = m
	}
	for _, m := range chain.Members {
		sm, ok := server[m.User]
		if !ok {
			return fmt.Errorf("member %s (%s) of the signed history is missing from the server's member list", m.Name, m.User)
		}
		if sm.XKey != m.XKey || sm.Name != m.Name {
			return fmt.Errorf("the server lists member %s with other keys or name than the signed history", m.User)
		}
		delete(server, m.User)
	}
	for u, m := range server {
		return fmt.Errorf("the server lists member %s (%s), who is not in the signed history: nothing will be sealed to it", m.Name, u)
	}
	return nil
}

// openSealed opens a room key sealed to the caller, by a sealer who was a
// member at that epoch according to the verified history, with the
// sealer's xkey from that history (not from the server's directory).
func (c *Client) openSealed(room string, chain *roomchain.State, k api.SealedKey) (e2ee.RoomKey, error) {
	if k.Room != room || k.Member != c.id.UserKey() {
		return e2ee.RoomKey{}, fmt.Errorf("sealed key names room %s member %s, not this room and caller", k.Room, k.Member)
	}
	if _, ok := chain.MemberAt(c.id.UserKey(), k.Epoch); !ok {
		return e2ee.RoomKey{}, fmt.Errorf("the signed history does not make you a member at epoch %d", k.Epoch)
	}
	sealer, ok := chain.MemberAt(k.Sealer.User, k.Epoch)
	if !ok {
		return e2ee.RoomKey{}, fmt.Errorf("sealer %s was not a member at epoch %d", k.Sealer.User, k.Epoch)
	}
	x, err := identity.ParseXKey(sealer.XKey)
	if err != nil {
		return e2ee.RoomKey{}, err
	}
	sc := e2ee.SealedKeyContext{Room: room, Epoch: k.Epoch, Recipient: c.selfPK}
	pair, err := c.xkeys().OpeningPairKey(x)
	if err != nil {
		return e2ee.RoomKey{}, err
	}
	return pair.Open(k.SealedKey, sc)
}

// forgetRoom drops what the client holds of a room it left or deleted:
// its state and its subscription to the room's events. The room's pinned
// history head stays, so that a room served again later must extend it.
func (c *Client) forgetRoom(id string, deleted bool) {
	st := c.roomState(id)
	st.refreshMu.Lock()
	defer st.refreshMu.Unlock()
	if st.sub != nil {
		st.sub.Unsubscribe()
		st.sub = nil
	}
	st.snap.Store(nil)
	st.stale.Store(true)
	st.deleted.Store(deleted)
}

// ErrRoomDeleted ends what a client was doing in a room that a room admin
// deleted.
var ErrRoomDeleted = errors.New("room deleted")

// roomGone words a not_found of room id as its deletion when membershipd
// announced one; any other error is returned as it is.
func (c *Client) roomGone(id string, err error) error {
	if !api.IsCode(err, api.CodeNotFound) {
		return err
	}
	c.mu.Lock()
	st := c.rooms[id]
	c.mu.Unlock()
	if st == nil || !st.deleted.Load() {
		return err
	}
	return fmt.Errorf("room %s was deleted by a room admin, with its messages, keys and files: %w", id, ErrRoomDeleted)
}

// watchRoom subscribes once to the room's change announcements, when a
// NATS connection exists, so the next send or receive refreshes first.
func (c *Client) watchRoom(id string, st *roomState) {
	if c.nc == nil || st.sub != nil {
		return
	}
	sub, err := c.nc.Subscribe(api.RoomEventSubject(id), func(m *nats.Msg) {
		var ev api.RoomEvent
		if json.Unmarshal(m.Data, &ev) != nil || ev.Room != id {
			return
		}
		if ev.Deleted {
			// A hint like any event: it only words the refusals the
			// server makes from now on.
			st.deleted.Store(true)
			st.stale.Store(true)
			return
		}
		if len(ev.Revoked) > 0 {
			st.listMembers.Store(true) // read who is revoked now
			st.stale.Store(true)
			return
		}
		s := st.snap.Load()
		if s != nil && ev.Seq != 0 && s.chain.Seq >= ev.Seq {
			return // a change this client has verified already (its own, often)
		}
		if s == nil || ev.Epoch <= s.room.Epoch {
			st.stale.Store(true) // members added: read what is new
			return
		}
		// A rekey or a removal: the key delivery may already have brought
		// the new epoch; if not, the next use reads the room.
		for {
			seen := st.rekeyed.Load()
			if ev.Epoch <= seen || st.rekeyed.CompareAndSwap(seen, ev.Epoch) {
				break
			}
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
func (c *Client) senderAndKey(ctx context.Context, st *roomState, id string, pk [32]byte, epoch uint64, encrypted bool) (roomchain.Member, senderKey, *e2ee.RoomKey, error) {
	snap, err := c.snapshotOf(ctx, st, id)
	if err != nil {
		return roomchain.Member{}, senderKey{}, nil, err
	}
	for attempt := 0; ; attempt++ {
		m, pub, okSender := snap.senderAt(pk, epoch)
		key, okKey := snap.keys[epoch]
		if okSender && (okKey || !encrypted) {
			return m, pub, key, nil
		}
		if attempt == 0 && (epoch > snap.room.Epoch || time.Since(snap.at) >= minRefreshGap) {
			if snap, err = c.refreshRoom(ctx, id); err != nil {
				return roomchain.Member{}, senderKey{}, nil, err
			}
			continue
		}
		if !okSender {
			return roomchain.Member{}, senderKey{}, nil, fmt.Errorf("sender %s was not a member of the room at epoch %d according to its signed history", shortKey(pk), epoch)
		}
		return m, pub, nil, fmt.Errorf("no key for epoch %d: you were not a member then, or were removed", epoch)
	}
}

func shortKey(pk [32]byte) string {
	s, err := identity.UserKeyString(pk[:])
	if err != nil {
		return "?"
	}
	return s
}

// Verified is a room as its signed membership history proves it.
type Verified struct {
	Room      string
	Name      string
	Encrypted bool
	Epoch     uint64
	HeadSeq   uint64
	HeadHash  string
	Members   []roomchain.Member
}

// Verify refreshes the room now, verifying what is new in its membership
// history and checking the server's view against it, and returns what the
// history proves. Two members comparing HeadSeq and HeadHash out of band
// know they see the same membership.
func (c *Client) Verify(ctx context.Context, roomRef string) (Verified, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return Verified{}, err
	}
	snap, err := c.readRoom(ctx, id)
	if err != nil {
		return Verified{}, err
	}
	ch := snap.chain
	// A copy: the verified state's list is shared with the states after it.
	return Verified{Room: ch.Room, Name: ch.Name, Encrypted: ch.Encrypted, Epoch: ch.Epoch, HeadSeq: ch.Seq, HeadHash: ch.Head, Members: slices.Clone(ch.Members)}, nil
}

// xkeys returns the caller's X25519 key pair, the public half taken from
// the identity rather than computed again for every pair key.
func (c *Client) xkeys() e2ee.XKeyPair {
	return e2ee.XKeyPair{Private: c.id.XPrivate(), Public: c.id.XPublic()}
}

// onKeyDelivery takes a rekey's statement and this client's new sealed key
// as membershipd delivers them (api.KeyDelivery): when the statement is
// the next of the room's verified history, the history is extended with
// it and the key opened, with no request to the API. Anything else is
// ignored: the room event of the rekey then makes the next use read the
// room from the API.
func (c *Client) onKeyDelivery(m *nats.Msg) {
	var d api.KeyDelivery
	if err := json.Unmarshal(m.Data, &d); err != nil {
		c.log.Debug("ignoring a malformed key delivery", "err", err)
		return
	}
	c.mu.Lock()
	st := c.rooms[d.Room]
	c.mu.Unlock()
	if st == nil {
		return // a room this client has not loaded: it reads it when used
	}
	if err := c.applyKeyDelivery(st, d); err != nil {
		c.log.Debug("ignoring a key delivery", "room", d.Room, "err", err)
	}
}

func (c *Client) applyKeyDelivery(st *roomState, d api.KeyDelivery) error {
	st.refreshMu.Lock()
	defer st.refreshMu.Unlock()
	old := st.snap.Load()
	if old == nil {
		return errors.New("room not loaded")
	}
	chain, s, err := old.chain.ApplyStatement(d.Room, d.Statement)
	if err != nil {
		return err
	}
	if chain.Epoch != old.chain.Epoch+1 {
		return fmt.Errorf("a %s statement of the same epoch brings no new key", s.Kind)
	}
	k := d.Key
	if k.Epoch != chain.Epoch || k.Sealer.User != s.Actor {
		return fmt.Errorf("key of epoch %d sealed by %s, not of epoch %d by the rekey's actor %s", k.Epoch, k.Sealer.User, chain.Epoch, s.Actor)
	}
	var key *e2ee.RoomKey
	if old.room.Encrypted {
		opened, err := c.openSealed(d.Room, chain, k)
		if err != nil {
			return err
		}
		key = &opened
	}
	senders := old.senders
	if len(s.Add) > 0 {
		// A rekeying add: the members it adds send from this epoch.
		senders = maps.Clone(old.senders)
		for _, m := range s.Add {
			if pub, err := identity.ParseUserKey(m.User); err == nil {
				senders[[32]byte(pub)] = senderKey{SenderKey: e2ee.NewSenderKey(pub), user: m.User}
			}
		}
	}
	snap := &roomSnapshot{room: old.room, chain: chain, keys: make(map[uint64]*e2ee.RoomKey, len(old.keys)+1), senders: senders, hashes: make(map[uint64]string, len(old.hashes)+1), at: old.at, listed: old.listed}
	snap.room.Epoch, snap.room.HeadSeq, snap.room.HeadHash = chain.Epoch, chain.Seq, chain.Head
	snap.room.Members = currentOf(old.room.Members, chain)
	for e, k := range old.keys {
		snap.keys[e] = k
	}
	if key != nil {
		snap.keys[chain.Epoch] = key
	}
	for seq, h := range old.hashes {
		snap.hashes[seq] = h
	}
	snap.hashes[chain.Seq] = chain.Head
	st.snap.Store(snap)
	if err := c.pins.setRoom(chain); err != nil {
		c.log.Warn("cannot save the verified room head", "room", d.Room, "err", err)
	}
	return nil
}
