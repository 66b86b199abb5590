// Package storetest is the conformance suite of [store.Store]. Every
// backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) store.Store { … })
//	}
//
// The suite uses only the Store interface, so it checks what the interface
// promises, not how a backend keeps it. Every refused change is also
// checked to have left the store exactly as it was, its membership history
// included.
//
// Every change carries a signed statement (pkg/roomchain) made the way an
// honest client makes it: the fixture keeps the private keys of the
// identities it generates and, per room, the state of the history the
// store accepted, and signs the next statement after it.
package storetest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// Run runs the whole suite, each subtest on a fresh store from open. open
// must return a new, empty store and arrange for it to be closed when the
// test ends (t.Cleanup). Subtests run one at a time; the large-room test is
// skipped with -short.
func Run(t *testing.T, open func(t testing.TB) store.Store) {
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
		{"nonces", nonceCases},
		{"history", historyCases},
		{"delete", deleteCases},
		{"counts", countCases},
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
	s     store.Store
	ctx   context.Context
	clock time.Time
	// ids holds, by user key, every identity the fixture generated: the
	// private keys that sign statements.
	ids map[string]*identity.Identity
	// rooms holds, by room id, the verified state of the history the store
	// accepted and that history, as the fixture sent it.
	rooms map[string]*history
}

// history is what the fixture knows of one room's membership history.
type history struct {
	state *roomchain.State
	chain []roomchain.Signed
}

func newFixture(t testing.TB, open func(t testing.TB) store.Store) *fixture {
	t.Helper()
	return &fixture{
		TB:    t,
		s:     open(t),
		ctx:   context.Background(),
		clock: time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC),
		ids:   map[string]*identity.Identity{},
		rooms: map[string]*history{},
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
	f.ids[id.UserKey()] = id
	return id
}

// identity returns the identity, private keys included, of user key u.
func (f *fixture) identity(u string) *identity.Identity {
	f.Helper()
	id, ok := f.ids[u]
	if !ok {
		f.Fatalf("no identity generated for %s", u)
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

// ---- statements ----

// state returns the verified state of room's history (nil before its
// creation).
func (f *fixture) state(room string) *roomchain.State {
	if h := f.rooms[room]; h != nil {
		return h.state
	}
	return nil
}

// sign signs st by actor as the next statement of st.Room: version, actor
// and time filled in, Seq and Prev following the fixture's state of the
// room (a creation statement is always the first), and, unless st names
// them, the admins an honest client names: the room's admins, plus those
// st adds as admins, minus those it removes.
func (f *fixture) sign(actor string, st roomchain.Statement) roomchain.Signed {
	f.Helper()
	return f.signWith(f.identity(actor), actor, st)
}

// signWith is sign with the signature made by signer, who may not be the
// actor.
func (f *fixture) signWith(signer *identity.Identity, actor string, st roomchain.Statement) roomchain.Signed {
	f.Helper()
	st.Version, st.Actor, st.Time = roomchain.Version, actor, f.clock.UnixMilli()
	st.Seq, st.Prev = 1, ""
	s := f.state(st.Room)
	if st.Kind == roomchain.KindCreate {
		s = nil
	}
	if s != nil {
		st.Seq, st.Prev = s.Seq+1, s.Head
	}
	if st.Admins == nil {
		st.Admins = s.AdminsAfter(st.Add, st.Remove)
	}
	return f.signRaw(signer, st)
}

// signRaw signs st as it is.
func (f *fixture) signRaw(signer *identity.Identity, st roomchain.Statement) roomchain.Signed {
	f.Helper()
	signed, err := roomchain.Sign(st, signer.SigningKey())
	if err != nil {
		f.Fatalf("sign statement: %v", err)
	}
	return signed
}

// createStatement is the creation statement of r, by its creator.
func (f *fixture) createStatement(r api.Room) roomchain.Signed {
	f.Helper()
	creator := f.identity(r.Creator)
	return f.sign(r.Creator, roomchain.Statement{Room: r.ID, Kind: roomchain.KindCreate, Epoch: 1, Name: r.Name, Encrypted: r.Encrypted,
		Add: []roomchain.Member{{Public: creator.Public(), Role: roomchain.RoleAdmin}}})
}

// addStatement is actor's statement adding u to room with role, at the
// room's current epoch.
func (f *fixture) addStatement(room string, actor api.User, u identity.Public, role string) roomchain.Signed {
	f.Helper()
	var epoch uint64
	if s := f.state(room); s != nil {
		epoch = s.Epoch
	}
	return f.sign(actor.User, roomchain.Statement{Room: room, Kind: roomchain.KindAdd, Epoch: epoch, Add: []roomchain.Member{{Public: u, Role: role}}})
}

// rekeyStatement is actor's statement of the rekey of room to epoch that
// removes remove: a remove statement, or a rekey one if remove is empty.
func (f *fixture) rekeyStatement(room string, actor api.User, epoch uint64, remove []string) roomchain.Signed {
	f.Helper()
	kind := roomchain.KindRekey
	if len(remove) > 0 {
		kind = roomchain.KindRemove
	}
	return f.sign(actor.User, roomchain.Statement{Room: room, Kind: kind, Epoch: epoch, Remove: slices.Clone(remove)})
}

// accept records st, which the store just accepted, as the next statement
// of room's history; it must verify after the fixture's state.
func (f *fixture) accept(room string, st roomchain.Signed) {
	f.Helper()
	h := f.rooms[room]
	if h == nil {
		h = &history{}
		f.rooms[room] = h
	}
	next, err := h.state.Apply(room, st)
	if err != nil {
		f.Fatalf("the store accepted statement %d of room %s, which does not verify: %v", len(h.chain)+1, room, err)
	}
	h.state = next
	h.chain = append(h.chain, st)
}

// withHead is r with the head of the fixture's history of it.
func (f *fixture) withHead(r api.Room) api.Room {
	if s := f.state(r.ID); s != nil {
		r.HeadSeq, r.HeadHash = s.Seq, s.Head
	}
	return r
}

// ---- changes ----

// room creates a room by creator.
func (f *fixture) room(creator api.User, encrypted bool) api.Room {
	f.Helper()
	return f.roomAt(creator, encrypted, f.now())
}

// roomAt creates a room by creator, created at at.
func (f *fixture) roomAt(creator api.User, encrypted bool, at time.Time) api.Room {
	f.Helper()
	r := api.Room{ID: api.NewRoomID(), Name: "room " + creator.Name, Encrypted: encrypted, Epoch: 1, Creator: creator.User, CreatedAt: at}
	var k *api.SealedKey
	if encrypted {
		kk := key(r.ID, 1, creator, creator)
		k = &kk
	}
	f.createRoom(r, k)
	return f.withHead(r)
}

// createRoom creates r with the creator's key k and a valid creation
// statement.
func (f *fixture) createRoom(r api.Room, k *api.SealedKey) {
	f.Helper()
	st := f.createStatement(r)
	if err := f.s.CreateRoom(f.ctx, r, k, st); err != nil {
		f.Fatalf("CreateRoom: %v", err)
	}
	f.accept(r.ID, st)
}

// add adds u to room as a plain member at its current epoch, the key
// sealed and the statement signed by actor, a room admin.
func (f *fixture) add(room string, u, actor api.User) api.Room {
	f.Helper()
	return f.addAs(room, u, actor, roomchain.RoleMember)
}

// addAs is add with the room role of u.
func (f *fixture) addAs(room string, u, actor api.User, role string) api.Room {
	f.Helper()
	r := f.getRoom(room)
	var k *api.SealedKey
	if r.Encrypted {
		kk := key(room, r.Epoch, u, actor)
		k = &kk
	}
	st := f.addStatement(room, actor, u.Public, role)
	got, err := AddOne(f.ctx, f.s, room, u.User, r.Epoch, k, st)
	if err != nil {
		f.Fatalf("AddMember %s: %v", u.Name, err)
	}
	f.accept(room, st)
	f.wantRoom(got, r, "AddMember's room")
	return got
}

// readd builds actor's rekeying add of u, a former member, to room: the
// room moves from its epoch to the next, whose key actor seals to keep
// (every current member) and to u, and actor signs an add statement of
// that epoch.
func (f *fixture) readd(room string, u, actor api.User, keep ...api.User) store.Add {
	f.Helper()
	r := f.getRoom(room)
	a := store.Add{Room: room, Epoch: r.Epoch, Users: []string{u.User}, Rekey: true}
	if r.Encrypted {
		for _, m := range append(slices.Clone(keep), u) {
			a.Keys = append(a.Keys, key(room, r.Epoch+1, m, actor))
		}
	}
	a.Statement = f.sign(actor.User, roomchain.Statement{Room: room, Kind: roomchain.KindAdd, Epoch: r.Epoch + 1, Add: []roomchain.Member{{Public: u.Public, Role: roomchain.RoleMember}}})
	return a
}

// addMembers makes the add a, which must succeed, and records its
// statement.
func (f *fixture) addMembers(a store.Add) api.Room {
	f.Helper()
	got, err := f.s.AddMembers(f.ctx, a)
	if err != nil {
		f.Fatalf("AddMembers %v to %s (rekey: %v): %v", a.Users, a.Room, a.Rekey, err)
	}
	if got.Epoch != a.After() {
		f.Fatalf("AddMembers returned epoch %d, want %d", got.Epoch, a.After())
	}
	f.accept(a.Room, a.Statement)
	f.wantHead(got, "AddMembers' room")
	return got
}

// addAll adds users to room in one bulk add (one statement) by actor.
func (f *fixture) addAll(room string, users []api.User, actor api.User) api.Room {
	f.Helper()
	r := f.getRoom(room)
	var added []roomchain.Member
	a := store.Add{Room: room, Epoch: r.Epoch}
	for _, u := range users {
		added = append(added, roomchain.Member{Public: u.Public, Role: roomchain.RoleMember})
		a.Users = append(a.Users, u.User)
		if r.Encrypted {
			a.Keys = append(a.Keys, key(room, r.Epoch, u, actor))
		}
	}
	a.Statement = f.sign(actor.User, roomchain.Statement{Room: room, Kind: roomchain.KindAdd, Epoch: r.Epoch, Add: added})
	got, err := f.s.AddMembers(f.ctx, a)
	if err != nil {
		f.Fatalf("AddMembers of %d: %v", len(users), err)
	}
	f.accept(room, a.Statement)
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
// seals the new key to keep, the keys sealed and the statement (to epoch
// from+1, after the fixture's head of the room) signed by actor.
func (f *fixture) change(room string, from uint64, actor api.User, remove []api.User, keep ...api.User) store.Rekey {
	f.Helper()
	c := store.Rekey{Room: room, FromEpoch: from}
	for _, u := range remove {
		c.Remove = append(c.Remove, u.User)
	}
	for _, u := range keep {
		c.Keys = append(c.Keys, key(room, from+1, u, actor))
	}
	c.Statement = f.rekeyStatement(room, actor, from+1, c.Remove)
	return c
}

func (f *fixture) rekey(c store.Rekey) api.Room {
	f.Helper()
	r, err := f.s.Rekey(f.ctx, c)
	if err != nil {
		f.Fatalf("Rekey %s from %d: %v", c.Room, c.FromEpoch, err)
	}
	if r.Epoch != c.FromEpoch+1 {
		f.Fatalf("Rekey returned epoch %d, want %d", r.Epoch, c.FromEpoch+1)
	}
	f.accept(c.Room, c.Statement)
	f.wantHead(r, "Rekey's room")
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

func (f *fixture) statements(room string, after uint64) []roomchain.Signed {
	f.Helper()
	sts, err := f.s.Statements(f.ctx, room, after)
	if err != nil {
		f.Fatalf("Statements %s after %d: %v", room, after, err)
	}
	return sts
}

// wantStatements fails unless Statements(room, after) returns want, byte
// for byte, in order.
func (f *fixture) wantStatements(room string, after uint64, want []roomchain.Signed, what string) {
	f.Helper()
	got := f.statements(room, after)
	if got == nil {
		f.Fatalf("%s: Statements returned nil, want an empty list", what)
	}
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		same = bytes.Equal(got[i].Body, want[i].Body) && bytes.Equal(got[i].Sig, want[i].Sig)
	}
	if !same {
		var b strings.Builder
		for _, st := range got {
			fmt.Fprintf(&b, "\n got %.100s… sig %x", st.Body, st.Sig)
		}
		for _, st := range want {
			fmt.Fprintf(&b, "\nwant %.100s… sig %x", st.Body, st.Sig)
		}
		f.Fatalf("%s: %d statements, want %d:%s", what, len(got), len(want), b.String())
	}
}

func (f *fixture) isMember(room string, u api.User) bool {
	f.Helper()
	ok, err := f.s.IsMember(f.ctx, room, u.User)
	if err != nil {
		f.Fatalf("IsMember %s %s: %v", room, u.Name, err)
	}
	return ok
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
		return cmp.Or(cmp.Compare(a.Since, b.Since), strings.Compare(a.User, b.User))
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

// wantRoom fails unless got is want, without members and with the head of
// the fixture's history of the room (want's head is not looked at).
func (f *fixture) wantRoom(got, want api.Room, what string) {
	f.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Encrypted != want.Encrypted || got.Epoch != want.Epoch ||
		got.Creator != want.Creator || !got.CreatedAt.Equal(want.CreatedAt) || len(got.Members) != 0 {
		f.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
	f.wantHead(got, what)
}

// wantHead fails unless r names the last statement of the fixture's
// history of it.
func (f *fixture) wantHead(r api.Room, what string) {
	f.Helper()
	want := f.withHead(api.Room{ID: r.ID})
	if r.HeadSeq != want.HeadSeq || r.HeadHash != want.HeadHash {
		f.Fatalf("%s: head %d/%q, want %d/%q (the last statement)", what, r.HeadSeq, r.HeadHash, want.HeadSeq, want.HeadHash)
	}
}

// wantRoomIDs fails unless got are the rooms want, in order, each with
// the head of the fixture's history of it.
func (f *fixture) wantRoomIDs(got []api.Room, want []string, what string) {
	f.Helper()
	ids := []string{}
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(ids, want) {
		f.Fatalf("%s: got rooms %v, want %v", what, ids, want)
	}
	for _, r := range got {
		f.wantHead(r, what)
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
// one room its record (head included), full member history, the last
// statements of its membership history (at most snapshotStatements: with
// the head, enough to see that nothing was appended or replaced, without
// reading the whole history of a large room), the given users' keys in it
// and the given users' rooms and membership.
type state struct {
	Users      []api.User
	Room       api.Room
	Members    []api.Member
	Statements []roomchain.Signed
	Keys       map[string][]api.SealedKey
	RoomsOf    map[string][]api.Room
	IsMember   map[string]bool

	room  string
	users []api.User
}

// snapshotStatements is how many of a room's last statements a snapshot
// keeps.
const snapshotStatements = 8

// snapshot reads the state of room (none if "") as seen by users.
func (f *fixture) snapshot(room string, users ...api.User) state {
	f.Helper()
	st := state{Keys: map[string][]api.SealedKey{}, RoomsOf: map[string][]api.Room{}, IsMember: map[string]bool{}, room: room, users: users}
	var err error
	if st.Users, err = f.s.ListUsers(f.ctx); err != nil {
		f.Fatalf("ListUsers: %v", err)
	}
	if room != "" {
		st.Room = f.getRoom(room)
		st.Members = f.members(room, true)
		st.Statements = f.statements(room, st.Room.HeadSeq-min(st.Room.HeadSeq, snapshotStatements))
		for _, u := range users {
			st.Keys[u.User] = f.keys(room, u, 0)
			st.IsMember[u.User] = f.isMember(room, u)
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

// Race runs fn(0) … fn(n-1) at once, each in its own goroutine released
// by one signal, and returns their errors by index.
func Race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// OneWinner fails unless exactly one of the errors of concurrent changes
// (see [Race]) is nil and every other is a conflict, and returns the
// index of the one that won.
func OneWinner(t testing.TB, errs []error, what string) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch api.ErrorCode(err) {
		case "":
			if winner >= 0 {
				t.Fatalf("%s: two succeeded, %d and %d", what, winner, i)
			}
			winner = i
		case api.CodeConflict:
		default:
			t.Fatalf("%s: %d failed with %v (code %s), want success or conflict", what, i, err, api.ErrorCode(err))
		}
	}
	if winner < 0 {
		t.Fatalf("%s: none succeeded", what)
	}
	return winner
}

// AddOne adds one member through [store.Store.AddMembers], with key
// as its sealed key (nil for a cleartext room).
func AddOne(ctx context.Context, s store.Store, room, user string, epoch uint64, key *api.SealedKey, st roomchain.Signed) (api.Room, error) {
	a := store.Add{Room: room, Epoch: epoch, Users: []string{user}, Statement: st}
	if key != nil {
		a.Keys = []api.SealedKey{*key}
	}
	return s.AddMembers(ctx, a)
}
