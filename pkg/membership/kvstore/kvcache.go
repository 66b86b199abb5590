package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// kvCache is the in-memory view of the users and rooms buckets that the
// hot reads are served from. It holds no state of its own: it is rebuilt
// from the buckets at open and kept current by one KV watch per bucket,
// so a change written through any node shows here within milliseconds.
// A change made through this store is also applied directly when it
// commits, so that its caller reads its own write.
//
// Every entry carries the revision it was read at, and an entry is only
// ever replaced by a newer revision, whichever way (watch or local write)
// it arrives. The users watch alone moves the users watermark, which
// follows the stream in order: once it reaches the stream's last
// sequence, read from the leader, the cache holds every user write made
// before that read (see syncUsers).
type kvCache struct {
	s *jetstreamStore

	mu   sync.Mutex
	cond *sync.Cond // signalled when a watermark moves or a watch ends

	users    map[string]cachedUser // by user key
	names    map[string][]string   // identity.FoldName(name) → the user keys of that name, in any case (several only in data older than that rule)
	usersSeq uint64                // last users stream sequence the watch applied

	rooms    map[string]*roomEntry      // by room id
	memberOf map[string]map[string]bool // user key → rooms it is a current member of
	// gone holds, by room id, the revision at which a deleted room was
	// dropped: no document of that revision or older comes back.
	gone map[string]uint64

	stopped bool // the watches ended
}

type cachedUser struct {
	rev uint64
	u   api.User
}

// roomEntry is one room document and, if loaded, the state it commits.
type roomEntry struct {
	rev   uint64
	doc   roomDoc
	state *roomState // nil until loaded, or if loading failed
	// stateRev is the revision state belongs to; the room's memberOf
	// entries follow state.
	stateRev uint64
}

func newKVCache(s *jetstreamStore) *kvCache {
	c := &kvCache{
		s:        s,
		users:    map[string]cachedUser{},
		names:    map[string][]string{},
		rooms:    map[string]*roomEntry{},
		memberOf: map[string]map[string]bool{},
		gone:     map[string]uint64{},
	}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// start starts the watches and returns once both have delivered every
// value present when they started (or ctx ended). The watches run until
// wctx ends; done is closed when both have stopped.
func (c *kvCache) start(ctx, wctx context.Context, done chan struct{}) error {
	uw, err := c.s.users.WatchAll(wctx)
	if err != nil {
		close(done)
		return err
	}
	rw, err := c.s.rooms.WatchAll(wctx)
	if err != nil {
		uw.Stop()
		drain(uw)
		close(done)
		return err
	}
	ready := make(chan string, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.run(wctx, c.s.users, uw, c.applyUser, ready) }()
	go func() { defer wg.Done(); c.run(wctx, c.s.rooms, rw, c.applyRoom, ready) }()
	go func() {
		wg.Wait()
		c.mu.Lock()
		c.stopped = true
		c.cond.Broadcast()
		c.mu.Unlock()
		close(done)
	}()
	for range 2 {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return fmt.Errorf("watch ended before the initial load")
		}
	}
	return nil
}

// watchRetry bounds the wait between attempts to restart a watch.
const watchRetry = 5 * time.Second

// run applies the updates of the watch w of kv until wctx ends, sending
// the bucket's name on ready once the initial values are applied. If the
// watch ends early (its subscription failed), it starts a new one, which
// delivers every current value again: those the cache already has are
// skipped by revision.
func (c *kvCache) run(wctx context.Context, kv jetstream.KeyValue, w jetstream.KeyWatcher, apply func(context.Context, jetstream.KeyValueEntry), ready chan<- string) {
	loaded := false
	for {
		c.follow(wctx, w, apply, func() {
			if !loaded {
				loaded = true
				ready <- kv.Bucket()
			}
		})
		w.Stop()
		drain(w)
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, watchRetry) {
			if wctx.Err() != nil {
				return
			}
			c.s.log.Error("kv cache: watch ended; restarting it", "bucket", kv.Bucket(), "retry_in", wait)
			select {
			case <-wctx.Done():
				return
			case <-time.After(wait):
			}
			var err error
			if w, err = kv.WatchAll(wctx); err == nil {
				break
			}
			c.s.log.Error("kv cache: restart watch", "bucket", kv.Bucket(), "err", err)
		}
	}
}

// follow applies w's updates until it ends or wctx does, calling loaded at
// each end of initial values.
func (c *kvCache) follow(wctx context.Context, w jetstream.KeyWatcher, apply func(context.Context, jetstream.KeyValueEntry), loaded func()) {
	for {
		select {
		case <-wctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				loaded()
				continue
			}
			apply(wctx, e)
		}
	}
}

// drain reads a stopped watch's updates until it closes them, so that its
// delivery goroutine is never left blocked; it gives up after a while.
func drain(w jetstream.KeyWatcher) {
	timeout := time.After(2 * time.Second)
	for {
		select {
		case _, ok := <-w.Updates():
			if !ok {
				return
			}
		case <-timeout:
			return
		}
	}
}

// ---- users ----

// kvUser is a user as stored under u.<user key>.
type kvUser struct {
	Name    string `json:"name"`
	User    string `json:"user"`
	XKey    string `json:"xkey"`
	Binding []byte `json:"binding"`
	Role    string `json:"role"`
	Status  string `json:"status"`
	Created int64  `json:"created"`           // unix ns
	Revoked int64  `json:"revoked,omitempty"` // unix ns; 0 while active
	// Registration is the admin-signed registration, kept verbatim.
	Registration *identity.SignedRegistration `json:"registration,omitempty"`
}

func toKVUser(u api.User) kvUser {
	k := kvUser{Name: u.Name, User: u.User, XKey: u.XKey, Binding: u.Binding, Role: u.Role, Status: u.Status, Created: nanos(u.CreatedAt),
		Registration: u.Registration}
	if u.RevokedAt != nil {
		k.Revoked = nanos(*u.RevokedAt)
	}
	return k
}

func (k kvUser) user() api.User {
	u := api.User{Role: k.Role, Status: k.Status, CreatedAt: fromNanos(k.Created), Registration: k.Registration}
	u.Name, u.User, u.XKey, u.Binding = k.Name, k.User, k.XKey, k.Binding
	if k.Revoked != 0 {
		t := fromNanos(k.Revoked)
		u.RevokedAt = &t
	}
	return u
}

func decodeUser(b []byte) (api.User, error) {
	var k kvUser
	if err := json.Unmarshal(b, &k); err != nil {
		return api.User{}, err
	}
	return k.user(), nil
}

// cloneUser returns u sharing no memory with the cache.
func cloneUser(u api.User) api.User {
	u.Binding = slices.Clone(u.Binding)
	if r := u.Registration; r != nil {
		u.Registration = &identity.SignedRegistration{Body: slices.Clone(r.Body), Sig: slices.Clone(r.Sig)}
	}
	if u.RevokedAt != nil {
		t := *u.RevokedAt
		u.RevokedAt = &t
	}
	return u
}

func (c *kvCache) applyUser(_ context.Context, e jetstream.KeyValueEntry) {
	var (
		u   api.User
		err error
		ok  = strings.HasPrefix(e.Key(), "u.") && e.Operation() == jetstream.KeyValuePut
	)
	if ok {
		if u, err = decodeUser(e.Value()); err != nil {
			c.s.log.Error("kv cache: undecodable user", "key", e.Key(), "err", err)
			ok = false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.putUserLocked(e.Revision(), u)
	}
	c.usersSeq = max(c.usersSeq, e.Revision())
	c.cond.Broadcast()
}

// putUser records u, read or written at revision rev, unless the cache
// has a newer one.
func (c *kvCache) putUser(rev uint64, u api.User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putUserLocked(rev, u)
}

func (c *kvCache) putUserLocked(rev uint64, u api.User) {
	if old, ok := c.users[u.User]; ok && old.rev >= rev {
		return
	}
	c.users[u.User] = cachedUser{rev: rev, u: u}
	if n := identity.FoldName(u.Name); !slices.Contains(c.names[n], u.User) {
		c.names[n] = append(c.names[n], u.User)
	}
}

// user returns the cached user with key k (shared: clone before handing
// it out).
func (c *kvCache) user(k string) (api.User, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cu, ok := c.users[k]
	return cu.u, ok
}

// lookup finds a user by key in the cache, else the cached users named
// keyOrName in any case (see named); store.MatchName picks among them.
func (c *kvCache) lookup(keyOrName string) (byKey api.User, ok bool, named []api.User) {
	if store.LooksLikeUserKey(keyOrName) {
		if u, ok := c.user(keyOrName); ok {
			return u, true, nil
		}
	}
	return api.User{}, false, c.named(keyOrName)
}

// named returns the cached users whose name is name in any case, oldest
// first (shared: clone before handing them out).
func (c *kvCache) named(name string) []api.User {
	c.mu.Lock()
	defer c.mu.Unlock()
	var users []api.User
	for _, k := range c.names[identity.FoldName(name)] {
		users = append(users, c.users[k].u)
	}
	slices.SortFunc(users, store.CompareUsers)
	return users
}

// allUsers returns every cached user, oldest first (ties by user key).
func (c *kvCache) allUsers() []api.User {
	c.mu.Lock()
	users := make([]api.User, 0, len(c.users))
	for _, cu := range c.users {
		users = append(users, cloneUser(cu.u))
	}
	c.mu.Unlock()
	slices.SortFunc(users, store.CompareUsers)
	return users
}

// revokedUsers returns the keys of the cached users that are revoked.
func (c *kvCache) revokedUsers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []string{}
	for k, cu := range c.users {
		if cu.u.Status == api.StatusRevoked {
			out = append(out, k)
		}
	}
	return out
}

// waitUsers waits until the users watch has applied stream sequence seq.
func (c *kvCache) waitUsers(ctx context.Context, seq uint64) error {
	return c.wait(ctx, func() bool { return c.usersSeq >= seq })
}

func (c *kvCache) wait(ctx context.Context, cond func() bool) error {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c.stopped {
			return api.Errorf(api.CodeUnavailable, "the membership store is closed: restart membershipd and try again")
		}
		c.cond.Wait()
	}
	return nil
}

// ---- rooms ----

func (c *kvCache) applyRoom(ctx context.Context, e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		// A deleted room (DeleteRoom purges its document).
		c.dropRoom(e.Key(), e.Revision())
		return
	}
	var doc roomDoc
	if err := json.Unmarshal(e.Value(), &doc); err != nil {
		c.s.log.Error("kv cache: undecodable room", "room", e.Key(), "err", err)
		return
	}
	c.mu.Lock()
	old := c.rooms[doc.ID]
	c.mu.Unlock()
	if old != nil && old.rev >= e.Revision() {
		return
	}
	state := doc.State
	if state == nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		state, err = c.s.loadState(lctx, doc)
		cancel()
		if err != nil {
			// A later change may have removed it already; readers load
			// the room again when they need it.
			c.s.log.Debug("kv cache: room state not loaded", "room", doc.ID, "err", err)
			state = nil
		}
	}
	c.putRoom(e.Revision(), doc, state)
}

// putRoom records doc, read or written at revision rev, with its state
// (nil if not loaded), unless the cache has a newer revision.
func (c *kvCache) putRoom(rev uint64, doc roomDoc, state *roomState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.rooms[doc.ID]
	if old != nil && old.rev >= rev || rev <= c.gone[doc.ID] {
		return
	}
	doc.State = nil
	e := &roomEntry{rev: rev, doc: doc}
	if old != nil {
		e.state, e.stateRev = old.state, old.stateRev
	}
	if state != nil {
		if old != nil && old.state != nil {
			for _, sp := range old.state.Spans {
				if sp.Until == 0 {
					delete(c.memberOf[sp.User], doc.ID)
				}
			}
		}
		for _, sp := range state.Spans {
			if sp.Until == 0 {
				m := c.memberOf[sp.User]
				if m == nil {
					m = map[string]bool{}
					c.memberOf[sp.User] = m
				}
				m[doc.ID] = true
			}
		}
		e.state, e.stateRev = state, rev
	}
	c.rooms[doc.ID] = e
}

// dropRoom forgets room id, deleted at revision rev (or after it), and
// every membership of it, unless the cache holds a newer revision of it.
func (c *kvCache) dropRoom(id string, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev <= c.gone[id] {
		return
	}
	e := c.rooms[id]
	if e != nil && e.rev > rev {
		return
	}
	c.gone[id] = rev
	if e == nil {
		return
	}
	if e.state != nil {
		for _, sp := range e.state.Spans {
			if sp.Until == 0 {
				delete(c.memberOf[sp.User], id)
			}
		}
	}
	delete(c.rooms, id)
}

// room returns the cached room id: its document, and its state if that
// is of the same revision.
func (c *kvCache) room(id string) (rev uint64, doc roomDoc, state *roomState, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.rooms[id]
	if !ok {
		return 0, roomDoc{}, nil, false
	}
	if e.stateRev == e.rev {
		state = e.state
	}
	return e.rev, e.doc, state, true
}

// roomsOf returns the ids of the rooms userKey is a current member of, as
// far as the cache knows, and the ids of the rooms whose state it has not
// loaded at their current revision.
func (c *kvCache) roomsOf(userKey string) (member, stale []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.memberOf[userKey] {
		member = append(member, id)
	}
	for id, e := range c.rooms {
		if e.stateRev != e.rev {
			stale = append(stale, id)
		}
	}
	return member, stale
}

// isMember reports, if the cache has room id's state at its current
// revision, whether userKey is a current member.
func (c *kvCache) isMember(id, userKey string) (member, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.rooms[id]
	if !ok || e.stateRev != e.rev {
		return false, false
	}
	return c.memberOf[userKey][id], true
}
