package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// The fixtures below are for the backends' own tests and benchmarks,
// beside the suite: users and rooms made the way an honest client makes
// them.

// NewUser is a fresh active member named name, its keys just made.
func NewUser(t testing.TB, name string) api.User {
	t.Helper()
	_, u := NewIdentity(t, name)
	return u
}

// NewIdentity is NewUser with its identity, which signs its statements.
func NewIdentity(t testing.TB, name string) (*identity.Identity, api.User) {
	t.Helper()
	id, err := identity.Generate(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id, api.User{Public: id.Public(), Role: api.RoleMember, Status: api.StatusActive, CreatedAt: time.Now()}
}

// NewIdentities is NewIdentity of n users named user00000, user00001…,
// made on a few goroutines: key generation is the slow part.
func NewIdentities(t testing.TB, n int) ([]*identity.Identity, []api.User) {
	t.Helper()
	ids := make([]*identity.Identity, n)
	users := make([]api.User, n)
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				ids[i], users[i] = NewIdentity(t, fmt.Sprintf("user%05d", i))
			}
		})
	}
	wg.Wait()
	return ids, users
}

// CreateUsers registers users in s.
func CreateUsers(t testing.TB, s store.Store, users ...api.User) {
	t.Helper()
	for _, u := range users {
		if err := s.CreateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
}

// Chain makes a room's statements as an honest client does, after the
// last one the store accepted.
type Chain struct {
	Room  string
	State *roomchain.State // nil before the creation statement

	tb  testing.TB
	all []roomchain.Signed
}

// NewChain returns the Chain of a room not created yet.
func NewChain(tb testing.TB) *Chain { return &Chain{tb: tb} }

// Sign signs the next statement of kind by actor, adding add and removing
// remove, with the admins that change leaves.
func (c *Chain) Sign(actor *identity.Identity, kind string, epoch uint64, add []roomchain.Member, remove []string, name string, encrypted bool) roomchain.Signed {
	c.tb.Helper()
	st := roomchain.Statement{Version: roomchain.Version, Room: c.Room, Seq: 1, Kind: kind, Actor: actor.UserKey(), Epoch: epoch,
		Name: name, Encrypted: encrypted, Add: add, Remove: remove, Admins: c.State.AdminsAfter(add, remove), Time: time.Now().UnixMilli()}
	if c.State != nil {
		st.Seq, st.Prev = c.State.Seq+1, c.State.Head
	}
	s, err := roomchain.Sign(st, actor.SigningKey())
	if err != nil {
		c.tb.Fatal(err)
	}
	return s
}

// Create is the creation statement of r by creator.
func (c *Chain) Create(creator *identity.Identity, r api.Room) roomchain.Signed {
	c.tb.Helper()
	c.Room = r.ID
	return c.Sign(creator, roomchain.KindCreate, 1, []roomchain.Member{{Public: creator.Public(), Role: roomchain.RoleAdmin}}, nil, r.Name, r.Encrypted)
}

// Add is actor's statement adding u as a plain member.
func (c *Chain) Add(actor *identity.Identity, u identity.Public) roomchain.Signed {
	c.tb.Helper()
	return c.Sign(actor, roomchain.KindAdd, c.State.Epoch, []roomchain.Member{{Public: u, Role: roomchain.RoleMember}}, nil, "", false)
}

// Rekey is actor's statement of the next epoch without the users remove.
func (c *Chain) Rekey(actor *identity.Identity, remove ...string) roomchain.Signed {
	c.tb.Helper()
	kind := roomchain.KindRekey
	if len(remove) > 0 {
		kind = roomchain.KindRemove
	}
	return c.Sign(actor, kind, c.State.Epoch+1, nil, remove, "", false)
}

// AddOne adds u to the room as a plain member through s, by actor, who
// seals its key if the room is encrypted, accepts the statement and
// returns it.
func (c *Chain) AddOne(s store.Store, actor *identity.Identity, u api.User) roomchain.Signed {
	c.tb.Helper()
	st := c.Add(actor, u.Public)
	var k *api.SealedKey
	if c.State.Encrypted {
		kk := Sealed(c.Room, c.State.Epoch, u, api.User{Public: actor.Public()})
		k = &kk
	}
	if _, err := AddOne(context.Background(), s, c.Room, u.User, c.State.Epoch, k, st); err != nil {
		c.tb.Fatalf("add %s: %v", u.Name, err)
	}
	c.Accept(st)
	return st
}

// NextRekey is actor's rekey of the room from its epoch to the next,
// without the users remove, with the new key Sealed by actor to each of
// keep.
func (c *Chain) NextRekey(actor *identity.Identity, keep []api.User, remove ...string) store.Rekey {
	c.tb.Helper()
	from := c.State.Epoch
	rk := store.Rekey{Room: c.Room, FromEpoch: from, Remove: remove, Statement: c.Rekey(actor, remove...)}
	sealer := api.User{Public: actor.Public()}
	for _, u := range keep {
		rk.Keys = append(rk.Keys, Sealed(c.Room, from+1, u, sealer))
	}
	return rk
}

// AddAll adds users to the room, encrypted, through s in one bulk add by
// actor, who seals their keys, and accepts its statement.
func (c *Chain) AddAll(s store.Store, actor *identity.Identity, users []api.User) {
	c.tb.Helper()
	epoch := c.State.Epoch
	sealer := api.User{Public: actor.Public()}
	added := make([]roomchain.Member, 0, len(users))
	a := store.Add{Room: c.Room, Epoch: epoch}
	for _, u := range users {
		added = append(added, roomchain.Member{Public: u.Public, Role: roomchain.RoleMember})
		a.Users = append(a.Users, u.User)
		a.Keys = append(a.Keys, Sealed(c.Room, epoch, u, sealer))
	}
	a.Statement = c.Sign(actor, roomchain.KindAdd, epoch, added, nil, "", false)
	if _, err := s.AddMembers(context.Background(), a); err != nil {
		c.tb.Fatal(err)
	}
	c.Accept(a.Statement)
}

// Stored fails unless s holds the room's history as accepted, byte for
// byte, and returns it.
func (c *Chain) Stored(s store.Store, what string) []roomchain.Signed {
	c.tb.Helper()
	sts, err := s.Statements(context.Background(), c.Room, 0)
	same := slices.EqualFunc(sts, c.all, func(a, b roomchain.Signed) bool { return bytes.Equal(a.Body, b.Body) && bytes.Equal(a.Sig, b.Sig) })
	if err != nil || !same {
		c.tb.Fatalf("%s: %d statements, %v; want the %d accepted", what, len(sts), err, len(c.all))
	}
	return sts
}

// Accept records st, accepted by the store.
func (c *Chain) Accept(st roomchain.Signed) {
	c.tb.Helper()
	next, err := c.State.Apply(c.Room, st)
	if err != nil {
		c.tb.Fatalf("accepted statement does not verify: %v", err)
	}
	c.State = next
	c.all = append(c.all, st)
}

// CreateRoom creates r, by creator, in s.
func CreateRoom(t testing.TB, s store.Store, creator *identity.Identity, r api.Room) *Chain {
	t.Helper()
	c := NewChain(t)
	st := c.Create(creator, r)
	var k *api.SealedKey
	if r.Encrypted {
		kk := Sealed(r.ID, 1, api.User{Public: creator.Public()}, api.User{Public: creator.Public()})
		k = &kk
	}
	if err := s.CreateRoom(context.Background(), r, k, st); err != nil {
		t.Fatal(err)
	}
	c.Accept(st)
	return c
}

// Sealed is a stand-in sealed key of room at epoch for member, by sealer:
// the store keeps sealed keys as opaque bytes.
func Sealed(room string, epoch uint64, member, sealer api.User) api.SealedKey {
	return api.SealedKey{Room: room, Epoch: epoch, Member: member.User, Sealer: sealer.Public, SealedKey: []byte("sealed for " + member.Name)}
}

// BenchIsAuthorized measures IsAuthorized of an active user of s.
func BenchIsAuthorized(b *testing.B, s store.Store) {
	alice := NewUser(b, "alice")
	CreateUsers(b, s, alice)
	for b.Loop() {
		if !s.IsAuthorized(alice.User) {
			b.Fatal("not authorized")
		}
	}
}

// BenchRekey measures rekeys of the room of ch through s, one at a time,
// each by owner with the new key Sealed to every one of users; preparing
// each request is outside the timer. It returns the size of the first
// statement.
func BenchRekey(b *testing.B, s store.Store, ch *Chain, owner *identity.Identity, users []api.User) int {
	ctx := context.Background()
	c := ch.NextRekey(owner, users)
	size := len(c.Statement.Body)
	for b.Loop() {
		if _, err := s.Rekey(ctx, c); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		ch.Accept(c.Statement)
		c = ch.NextRekey(owner, users)
		b.StartTimer()
	}
	return size
}
