package storetest

import (
	"fmt"
	"sync"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

var sealedKeyCases = []testCase{
	{"per_epoch_and_all", func(f *fixture) {
		alice, bob, carol := f.user("alice"), f.user("bob"), f.user("carol")
		r := f.room(alice, true)
		f.add(r.ID, bob, alice)
		f.rekey(f.change(r.ID, 1, bob, nil, alice, bob))   // epoch 2, sealed by bob
		f.rekey(f.change(r.ID, 2, alice, nil, alice, bob)) // epoch 3, sealed by alice
		aliceKeys := []api.SealedKey{key(r.ID, 1, alice, alice), key(r.ID, 2, alice, bob), key(r.ID, 3, alice, alice)}
		wantKeys(f, f.keys(r.ID, alice, 0), aliceKeys, "all of alice's keys")
		for i, k := range aliceKeys {
			wantKeys(f, f.keys(r.ID, alice, uint64(i+1)), []api.SealedKey{k}, fmt.Sprintf("alice's key of epoch %d", i+1))
		}
		wantKeys(f, f.keys(r.ID, bob, 0), []api.SealedKey{key(r.ID, 1, bob, alice), key(r.ID, 2, bob, bob), key(r.ID, 3, bob, alice)}, "all of bob's keys")
		wantKeys(f, f.keys(r.ID, alice, 4), nil, "a key of a future epoch")
		wantKeys(f, f.keys(r.ID, carol, 0), nil, "keys of a non-member")
		wantKeys(f, f.keys(r.ID, carol, 1), nil, "a key of a non-member")
		other := f.room(bob, true)
		wantKeys(f, f.keys(other.ID, alice, 0), nil, "alice's keys in a room she is not in")
		wantKeys(f, f.keys(other.ID, bob, 0), []api.SealedKey{key(other.ID, 1, bob, bob)}, "bob's keys in his own room")
	}},

	{"sealer_identity", func(f *fixture) {
		// Sealer is filled from the registered user, whatever else the
		// caller put in it, and it stays after the sealer is revoked.
		alice, bob := f.user("alice"), f.user("bob")
		r := f.room(alice, true)
		k := key(r.ID, 1, bob, alice)
		k.Sealer = identity.Public{User: alice.User}
		st := f.addStatement(r.ID, alice, bob.Public, roomchain.RoleMember)
		if _, err := AddOne(f.ctx, f.s, r.ID, bob.User, 1, &k, st); err != nil {
			f.Fatal(err)
		}
		f.accept(r.ID, st)
		if _, err := f.s.RevokeUser(f.ctx, alice.User, f.now()); err != nil {
			f.Fatal(err)
		}
		wantKeys(f, f.keys(r.ID, bob, 1), []api.SealedKey{key(r.ID, 1, bob, alice)}, "bob's key sealed by a revoked alice")
	}},

	{"no_aliasing", func(f *fixture) {
		alice := f.user("alice")
		r := f.room(alice, true)
		ks := f.keys(r.ID, alice, 0)
		ks[0].SealedKey[0] ^= 0xff
		ks[0].Sealer.Binding[0] ^= 0xff
		wantKeys(f, f.keys(r.ID, alice, 0), []api.SealedKey{key(r.ID, 1, alice, alice)}, "keys after changing returned values")
	}},
}

var blobCases = []testCase{
	{"add_and_get", func(f *fixture) {
		alice := f.user("alice")
		r := f.room(alice, true)
		other := f.room(alice, false)
		b := api.Blob{ID: fmt.Sprintf("%064x", 42), Room: r.ID, Size: 1234, Uploader: alice.User, CreatedAt: f.now()}
		if err := f.s.AddBlob(f.ctx, b); err != nil {
			f.Fatal(err)
		}
		wantBlob(f, b)
		if err := f.s.AddBlob(f.ctx, b); err != nil {
			f.Fatalf("AddBlob again: %v", err)
		}
		wantBlob(f, b)
		_, err := f.s.GetBlob(f.ctx, other.ID, b.ID)
		wantCode(f, err, api.CodeNotFound, "GetBlob in another room")
		_, err = f.s.GetBlob(f.ctx, r.ID, fmt.Sprintf("%064x", 43))
		wantCode(f, err, api.CodeNotFound, "GetBlob of an unknown blob")
		_, err = f.s.GetBlob(f.ctx, api.NewRoomID(), b.ID)
		wantCode(f, err, api.CodeNotFound, "GetBlob in an unknown room")
		// The same blob may belong to two rooms.
		b2 := b
		b2.Room = other.ID
		b2.CreatedAt = f.now()
		if err := f.s.AddBlob(f.ctx, b2); err != nil {
			f.Fatal(err)
		}
		wantBlob(f, b2)
		wantBlob(f, b)
	}},

	{"unknown_room", func(f *fixture) {
		alice := f.user("alice")
		b := api.Blob{ID: fmt.Sprintf("%064x", 1), Room: api.NewRoomID(), Size: 1, Uploader: alice.User, CreatedAt: f.now()}
		wantCode(f, f.s.AddBlob(f.ctx, b), api.CodeNotFound, "AddBlob to an unknown room")
		_, err := f.s.GetBlob(f.ctx, b.Room, b.ID)
		wantCode(f, err, api.CodeNotFound, "GetBlob after the refused AddBlob")
	}},
}

func wantBlob(f *fixture, want api.Blob) {
	f.Helper()
	got, err := f.s.GetBlob(f.ctx, want.Room, want.ID)
	if err != nil {
		f.Fatalf("GetBlob %s in %s: %v", want.ID, want.Room, err)
	}
	if got.ID != want.ID || got.Room != want.Room || got.Size != want.Size || got.Uploader != want.Uploader || !got.CreatedAt.Equal(want.CreatedAt) {
		f.Fatalf("GetBlob:\n got %+v\nwant %+v", got, want)
	}
}

// testLargeRoom rekeys a room of n members. It checks only correctness;
// a backend that queries once per member shows up as a slow test.
func testLargeRoom(f *fixture, n int) {
	users := make([]api.User, n)
	ids := make([]*identity.Identity, n)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				id, err := identity.Generate(fmt.Sprintf("user%05d", i), nil)
				if err != nil {
					panic(err)
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		f.ids[id.UserKey()] = id
		users[i] = f.create(id.Public(), api.RoleMember)
	}
	owner := users[0]
	r := f.room(owner, true)
	// One bulk add: one statement, one transaction.
	f.addAll(r.ID, users[1:], owner)
	if ms := f.members(r.ID, false); len(ms) != n {
		f.Fatalf("%d members, want %d", len(ms), n)
	}
	gone, last := users[n/2], users[n-1]
	sample := []api.User{owner, users[1], gone, last}
	before := f.snapshot(r.ID, sample...)

	var keep []api.User
	for _, u := range users {
		if u.User != gone.User {
			keep = append(keep, u)
		}
	}
	// Refused: the last member is left out; nothing changes.
	short := f.change(r.ID, 1, owner, []api.User{gone}, keep[:len(keep)-1]...)
	_, err := f.s.Rekey(f.ctx, short)
	wantCode(f, err, api.CodeInvalid, "large Rekey leaving out a member")
	wantMention(f, err, last.User, "large Rekey leaving out a member")
	f.unchanged(before, "large Rekey leaving out a member")
	// Refused: the keys are right, the statement still lists the removed
	// member.
	stale := f.change(r.ID, 1, owner, []api.User{gone}, keep...)
	stale.Statement = f.rekeyStatement(r.ID, owner, 2, nil)
	_, err = f.s.Rekey(f.ctx, stale)
	wantCode(f, err, api.CodeInvalid, "large Rekey whose statement keeps the removed member")
	f.unchanged(before, "large Rekey whose statement keeps the removed member")

	c := f.change(r.ID, 1, owner, []api.User{gone}, keep...)
	got := f.rekey(c)
	if got.Epoch != 2 {
		f.Fatalf("epoch %d, want 2", got.Epoch)
	}
	if got.HeadSeq != 3 {
		f.Fatalf("head %d after the creation, one bulk add and a rekey, want 3", got.HeadSeq)
	}
	f.wantStatements(r.ID, 2, []roomchain.Signed{c.Statement}, "the large rekey's statement")
	ms := f.members(r.ID, false)
	if len(ms) != n-1 {
		f.Fatalf("%d members after removing one, want %d", len(ms), n-1)
	}
	for _, m := range ms {
		if m.User == gone.User {
			f.Fatal("the removed member is still a member")
		}
	}
	hist := f.members(r.ID, true)
	if len(hist) != n {
		f.Fatalf("%d rows of history, want %d", len(hist), n)
	}
	for _, u := range []api.User{owner, users[1], last} {
		wantKeys(f, f.keys(r.ID, u, 2), []api.SealedKey{key(r.ID, 2, u, owner)}, u.Name+"'s new key")
	}
	wantKeys(f, f.keys(r.ID, gone, 2), nil, "the removed member's new key")
}
