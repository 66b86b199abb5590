// Package storetest is the conformance suite of [membership.Store]. Every
// backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) membership.Store { … })
//	}
//
// The suite uses only the Store interface, so it checks what the interface
// promises, not how a backend keeps it. Every refused change is also
// checked to have left the store exactly as it was.
package storetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
)

// Run runs the whole suite, each subtest on a fresh store from open. open
// must return a new, empty store and arrange for it to be closed when the
// test ends (t.Cleanup). Subtests run one at a time; the large-room test is
// skipped with -short.
func Run(t *testing.T, open func(t testing.TB) membership.Store) {
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"users", userCases},
		{"rooms", roomCases},
		{"members", memberCases},
		{"rekey", rekeyCases},
		{"sealed_keys", sealedKeyCases},
		{"blobs", blobCases},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) { c.run(newFixture(t, open)) })
			}
		})
	}
	t.Run("large_room", func(t *testing.T) {
		if testing.Short() {
			t.Skip("large room: skipped in -short mode")
		}
		testLargeRoom(newFixture(t, open), 2000)
	})
}

type testCase struct {
	name string
	run  func(f *fixture)
}

// fixture is one test's store and helpers around it.
type fixture struct {
	testing.TB
	s     membership.Store
	ctx   context.Context
	clock time.Time
}

func newFixture(t testing.TB, open func(t testing.TB) membership.Store) *fixture {
	t.Helper()
	return &fixture{
		TB:    t,
		s:     open(t),
		ctx:   context.Background(),
		clock: time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC),
	}
}

// now returns a new time each call, one second after the last, so that
// "oldest first" has a well-defined answer.
func (f *fixture) now() time.Time {
	f.clock = f.clock.Add(time.Second)
	return f.clock
}

// newIdentity makes a fresh identity named name.
func (f *fixture) newIdentity(name string) *identity.Identity {
	f.Helper()
	id, err := identity.Generate(name, nil)
	if err != nil {
		f.Fatalf("generate identity %q: %v", name, err)
	}
	return id
}

// user registers a new active member named name.
func (f *fixture) user(name string) api.User {
	f.Helper()
	return f.create(f.newIdentity(name).Public(), api.RoleMember)
}

func (f *fixture) create(p identity.Public, role string) api.User {
	f.Helper()
	u := api.User{Public: p, Role: role, Status: api.StatusActive, CreatedAt: f.now()}
	if err := f.s.CreateUser(f.ctx, u); err != nil {
		f.Fatalf("CreateUser %s: %v", u.Name, err)
	}
	return u
}

// revoked registers a user and revokes it.
func (f *fixture) revoked(name string) api.User {
	f.Helper()
	u := f.user(name)
	r, err := f.s.RevokeUser(f.ctx, u.User, f.now())
	if err != nil {
		f.Fatalf("RevokeUser %s: %v", name, err)
	}
	return r
}

// key is the (fake, but distinct) sealed key of member at epoch.
func key(room string, epoch uint64, member, sealer api.User) api.SealedKey {
	return api.SealedKey{
		Room:      room,
		Epoch:     epoch,
		Member:    member.User,
		Sealer:    sealer.Public,
		SealedKey: []byte(fmt.Sprintf("sealed %s/%d for %s by %s", room, epoch, member.Name, sealer.Name)),
	}
}

// room creates a room by creator.
func (f *fixture) room(creator api.User, encrypted bool) api.Room {
	f.Helper()
	r := api.Room{ID: api.NewRoomID(), Name: "room " + creator.Name, Encrypted: encrypted, Epoch: 1, Creator: creator.User, CreatedAt: f.now()}
	var k *api.SealedKey
	if encrypted {
		kk := key(r.ID, 1, creator, creator)
		k = &kk
	}
	if err := f.s.CreateRoom(f.ctx, r, k); err != nil {
		f.Fatalf("CreateRoom: %v", err)
	}
	return r
}

// add adds u to room at its current epoch, the key sealed by sealer.
func (f *fixture) add(room string, u, sealer api.User) api.Room {
	f.Helper()
	r := f.getRoom(room)
	var k *api.SealedKey
	if r.Encrypted {
		kk := key(room, r.Epoch, u, sealer)
		k = &kk
	}
	got, err := f.s.AddMember(f.ctx, room, u.User, r.Epoch, k)
	if err != nil {
		f.Fatalf("AddMember %s: %v", u.Name, err)
	}
	return got
}

func (f *fixture) getRoom(id string) api.Room {
	f.Helper()
	r, err := f.s.GetRoom(f.ctx, id)
	if err != nil {
		f.Fatalf("GetRoom %s: %v", id, err)
	}
	return r
}

// change builds the rekey of room from epoch from that removes remove and
// seals the new key to keep, sealed by sealer.
func change(room string, from uint64, sealer api.User, remove []api.User, keep ...api.User) membership.Rekey {
	c := membership.Rekey{Room: room, FromEpoch: from}
	for _, u := range remove {
		c.Remove = append(c.Remove, u.User)
	}
	for _, u := range keep {
		c.Keys = append(c.Keys, key(room, from+1, u, sealer))
	}
	return c
}

func (f *fixture) rekey(c membership.Rekey) api.Room {
	f.Helper()
	r, err := f.s.Rekey(f.ctx, c)
	if err != nil {
		f.Fatalf("Rekey %s from %d: %v", c.Room, c.FromEpoch, err)
	}
	if r.Epoch != c.FromEpoch+1 {
		f.Fatalf("Rekey returned epoch %d, want %d", r.Epoch, c.FromEpoch+1)
	}
	return r
}

func (f *fixture) members(room string, history bool) []api.Member {
	f.Helper()
	ms, err := f.s.Members(f.ctx, room, history)
	if err != nil {
		f.Fatalf("Members %s: %v", room, err)
	}
	return ms
}

func (f *fixture) keys(room string, member api.User, epoch uint64) []api.SealedKey {
	f.Helper()
	ks, err := f.s.SealedKeys(f.ctx, room, member.User, epoch)
	if err != nil {
		f.Fatalf("SealedKeys %s %s %d: %v", room, member.Name, epoch, err)
	}
	return ks
}

func (f *fixture) roomsOf(u api.User) []api.Room {
	f.Helper()
	rs, err := f.s.RoomsOf(f.ctx, u.User)
	if err != nil {
		f.Fatalf("RoomsOf %s: %v", u.Name, err)
	}
	return rs
}

// wantCode fails unless err is an *api.Error with code.
func wantCode(t testing.TB, err error, code, what string) {
	t.Helper()
	if got := api.ErrorCode(err); got != code {
		t.Fatalf("%s: got error %v (code %q), want code %q", what, err, got, code)
	}
}

// wantMention fails unless err's message names s (a user key, say).
func wantMention(t testing.TB, err error, s, what string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), s) {
		t.Fatalf("%s: error %q does not name %s", what, err, s)
	}
}

// member is the expected Member of u.
func member(u api.User, since, until uint64) api.Member {
	return api.Member{Public: u.Public, Since: since, Until: until}
}

// sortMembers orders ms as Members does: by Since, then user key.
func sortMembers(ms []api.Member) []api.Member {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b api.Member) int {
		if a.Since != b.Since {
			if a.Since < b.Since {
				return -1
			}
			return 1
		}
		return strings.Compare(a.User, b.User)
	})
	return ms
}

func wantMembers(t testing.TB, got, want []api.Member, what string) {
	t.Helper()
	want = sortMembers(want)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, fmtMembers(got), fmtMembers(want))
	}
}

func fmtMembers(ms []api.Member) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "[%s %d..%d] ", m.Name, m.Since, m.Until)
	}
	return b.String()
}

func wantUser(t testing.TB, got, want api.User, what string) {
	t.Helper()
	if !reflect.DeepEqual(got.Public, want.Public) || got.Role != want.Role || got.Status != want.Status ||
		!got.CreatedAt.Equal(want.CreatedAt) || (got.RevokedAt == nil) != (want.RevokedAt == nil) ||
		(got.RevokedAt != nil && !got.RevokedAt.Equal(*want.RevokedAt)) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func wantRoom(t testing.TB, got, want api.Room, what string) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Encrypted != want.Encrypted || got.Epoch != want.Epoch ||
		got.Creator != want.Creator || !got.CreatedAt.Equal(want.CreatedAt) || len(got.Members) != 0 {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func wantRoomIDs(t testing.TB, got []api.Room, want []string, what string) {
	t.Helper()
	ids := []string{}
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("%s: got rooms %v, want %v", what, ids, want)
	}
}

func wantKeys(t testing.TB, got, want []api.SealedKey, what string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		var b strings.Builder
		for _, k := range got {
			fmt.Fprintf(&b, "\n got %s/%d for %s by %s: %q", k.Room, k.Epoch, k.Member, k.Sealer.Name, k.SealedKey)
		}
		for _, k := range want {
			fmt.Fprintf(&b, "\nwant %s/%d for %s by %s: %q", k.Room, k.Epoch, k.Member, k.Sealer.Name, k.SealedKey)
		}
		t.Fatalf("%s:%s", what, b.String())
	}
}

// state is what a refused change must leave untouched: the users, and for
// one room its record, full member history, the given users' keys in it
// and the given users' rooms.
type state struct {
	Users   []api.User
	Room    api.Room
	Members []api.Member
	Keys    map[string][]api.SealedKey
	RoomsOf map[string][]api.Room

	room  string
	users []api.User
}

// snapshot reads the state of room (none if "") as seen by users.
func (f *fixture) snapshot(room string, users ...api.User) state {
	f.Helper()
	st := state{Keys: map[string][]api.SealedKey{}, RoomsOf: map[string][]api.Room{}, room: room, users: users}
	var err error
	if st.Users, err = f.s.ListUsers(f.ctx); err != nil {
		f.Fatalf("ListUsers: %v", err)
	}
	if room != "" {
		st.Room = f.getRoom(room)
		st.Members = f.members(room, true)
		for _, u := range users {
			st.Keys[u.User] = f.keys(room, u, 0)
		}
	}
	for _, u := range users {
		st.RoomsOf[u.User] = f.roomsOf(u)
	}
	return st
}

// unchanged fails unless the store still is as before, after the refused
// change what.
func (f *fixture) unchanged(before state, what string) {
	f.Helper()
	after := f.snapshot(before.room, before.users...)
	if !reflect.DeepEqual(before, after) {
		f.Fatalf("%s was refused but changed the store:\nbefore %+v\n after %+v", what, before, after)
	}
}
