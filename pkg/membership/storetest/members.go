package storetest

import (
	"fmt"
	"slices"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

var memberCases = []testCase{
	{"add", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		r := f.room(alice, true)
		k := key(r.ID, 1, bob, alice)
		st := f.addStatement(r.ID, alice, bob.Public, roomchain.RoleMember)
		got, err := AddOne(f.ctx, f.s, r.ID, bob.User, 1, &k, st)
		if err != nil {
			f.Fatal(err)
		}
		f.accept(r.ID, st)
		f.wantRoom(got, r, "AddMember's room")
		if got.HeadSeq != 2 || got.HeadHash != st.HashHex() {
			f.Fatalf("AddMember's room has head %d/%s, want 2/%s", got.HeadSeq, got.HeadHash, st.HashHex())
		}
		f.wantRoom(f.getRoom(r.ID), r, "GetRoom after AddMember")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(bob, 1, 0)}, "Members")
		wantKeys(f, f.keys(r.ID, bob, 0), []api.SealedKey{k}, "SealedKeys of the new member")
		f.wantRoomIDs(f.roomsOf(bob), []string{r.ID}, "RoomsOf(new member)")
		if !f.isMember(r.ID, bob) {
			f.Fatal("IsMember of the new member is false")
		}
	}},

	{"add_cleartext", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.user("carol")
		r := f.room(alice, false)
		before := f.snapshot(r.ID, alice, bob, carol)
		k := key(r.ID, 1, bob, alice)
		st := f.addStatement(r.ID, alice, bob.Public, roomchain.RoleMember)
		_, err := AddOne(f.ctx, f.s, r.ID, bob.User, 1, &k, st)
		wantCode(f, err, api.CodeInvalid, "AddMember with a key to a cleartext room")
		f.unchanged(before, "AddMember with a key to a cleartext room")
		got, err := AddOne(f.ctx, f.s, r.ID, bob.User, 1, nil, st)
		if err != nil {
			f.Fatal(err)
		}
		f.accept(r.ID, st)
		f.wantRoom(got, r, "AddMember's room")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(bob, 1, 0)}, "Members")
		wantKeys(f, f.keys(r.ID, bob, 0), nil, "SealedKeys in a cleartext room")
	}},

	{"refused_adds", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.revoked("carol")
		dave := f.user("dave")
		stranger := f.newIdentity("eve").Public()
		r := f.room(alice, true)
		f.add(r.ID, bob, alice)
		f.rekey(f.change(r.ID, 1, alice, nil, alice, bob)) // now at epoch 2
		before := f.snapshot(r.ID, alice, bob, carol, dave)
		good := key(r.ID, 2, dave, alice)
		with := func(mod func(k *api.SealedKey)) *api.SealedKey {
			k := good
			mod(&k)
			return &k
		}
		for _, c := range []struct {
			what  string
			room  string
			user  identity.Public
			epoch uint64
			key   *api.SealedKey
			code  string
		}{
			{"a revoked user", r.ID, carol.Public, 2, &api.SealedKey{Room: r.ID, Epoch: 2, Member: carol.User, Sealer: alice.Public, SealedKey: []byte("k")}, api.CodeInvalid},
			{"an unknown user", r.ID, stranger, 2, &api.SealedKey{Room: r.ID, Epoch: 2, Member: stranger.User, Sealer: alice.Public, SealedKey: []byte("k")}, api.CodeNotFound},
			{"an unknown room", api.NewRoomID(), dave.Public, 2, &good, api.CodeNotFound},
			{"a current member", r.ID, bob.Public, 2, &api.SealedKey{Room: r.ID, Epoch: 2, Member: bob.User, Sealer: alice.Public, SealedKey: []byte("k")}, api.CodeConflict},
			{"a stale epoch", r.ID, dave.Public, 1, with(func(k *api.SealedKey) { k.Epoch = 1 }), api.CodeConflict},
			{"a future epoch", r.ID, dave.Public, 3, with(func(k *api.SealedKey) { k.Epoch = 3 }), api.CodeConflict},
			{"no key", r.ID, dave.Public, 2, nil, api.CodeInvalid},
			{"a key for another member", r.ID, dave.Public, 2, with(func(k *api.SealedKey) { k.Member = bob.User }), api.CodeInvalid},
			{"a key for another epoch", r.ID, dave.Public, 2, with(func(k *api.SealedKey) { k.Epoch = 1 }), api.CodeInvalid},
			{"a key for another room", r.ID, dave.Public, 2, with(func(k *api.SealedKey) { k.Room = api.NewRoomID() }), api.CodeInvalid},
			{"an empty key", r.ID, dave.Public, 2, with(func(k *api.SealedKey) { k.SealedKey = []byte{} }), api.CodeInvalid},
			{"a key sealed by an unknown user", r.ID, dave.Public, 2, with(func(k *api.SealedKey) { k.Sealer = stranger }), api.CodeInvalid},
		} {
			st := f.addStatement(c.room, alice, c.user, roomchain.RoleMember)
			_, err := AddOne(f.ctx, f.s, c.room, c.user.User, c.epoch, c.key, st)
			wantCode(f, err, c.code, "AddMember of "+c.what)
			if c.what == "a revoked user" {
				wantMention(f, err, carol.User, "AddMember of a revoked user")
			}
			f.unchanged(before, "AddMember of "+c.what)
		}
		// The valid add then succeeds.
		st := f.addStatement(r.ID, alice, dave.Public, roomchain.RoleMember)
		got, err := AddOne(f.ctx, f.s, r.ID, dave.User, 2, &good, st)
		if err != nil {
			f.Fatalf("AddMember after the refused ones: %v", err)
		}
		f.accept(r.ID, st)
		if got.Epoch != 2 {
			f.Fatalf("AddMember returned epoch %d, want 2 (adding does not rekey)", got.Epoch)
		}
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(bob, 1, 0), member(dave, 2, 0)}, "Members")
	}},

	{"history_and_readd", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.user("carol")
		r := f.room(alice, true)
		f.add(r.ID, bob, alice)
		f.addAs(r.ID, carol, alice, roomchain.RoleAdmin) // so that she may add bob again
		f.rekey(f.change(r.ID, 1, alice, []api.User{bob}, alice, carol))
		if f.isMember(r.ID, bob) {
			f.Fatal("IsMember of a removed member is true")
		}
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(carol, 1, 0)}, "Members after removing bob")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 2), member(carol, 1, 0)}, "Members with history after removing bob")
		f.wantRoomIDs(f.roomsOf(bob), nil, "RoomsOf(bob) after his removal")

		// Removed members can be added again, in a rekeying add: from the
		// next epoch (readd_rekeys has its rules).
		f.addMembers(f.readd(r.ID, bob, carol, alice, carol))
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(carol, 1, 0), member(bob, 3, 0)}, "Members after re-adding bob")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 2), member(carol, 1, 0), member(bob, 3, 0)}, "history after re-adding bob")
		f.wantRoomIDs(f.roomsOf(bob), []string{r.ID}, "RoomsOf(bob) after re-adding him")
		if !f.isMember(r.ID, bob) {
			f.Fatal("IsMember of a re-added member is false")
		}
		wantKeys(f, f.keys(r.ID, bob, 0), []api.SealedKey{key(r.ID, 1, bob, alice), key(r.ID, 3, bob, carol)}, "bob's keys")
		before := f.snapshot(r.ID, alice, bob, carol)
		_, err := AddOne(f.ctx, f.s, r.ID, bob.User, 3, &api.SealedKey{Room: r.ID, Epoch: 3, Member: bob.User, Sealer: alice.Public, SealedKey: []byte("k")},
			f.addStatement(r.ID, alice, bob.Public, roomchain.RoleMember))
		wantCode(f, err, api.CodeConflict, "AddMember of a re-added member")
		f.unchanged(before, "AddMember of a re-added member")

		// Removed twice, added three times.
		f.rekey(f.change(r.ID, 3, alice, []api.User{bob}, alice, carol))
		f.addMembers(f.readd(r.ID, bob, alice, alice, carol))
		wantMembers(f, f.members(r.ID, true), []api.Member{
			member(alice, 1, 0), member(bob, 1, 2), member(carol, 1, 0), member(bob, 3, 4), member(bob, 5, 0),
		}, "history after three adds")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(carol, 1, 0), member(bob, 5, 0)}, "Members after three adds")
	}},

	{"readd_rekeys", func(f *fixture) {
		// Re-adding a former member moves the room to the next epoch in
		// the same change, its key sealed to every member and to him: he
		// gets no key of the epochs he was out for.
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.user("carol")
		dave := f.user("dave")
		r := f.room(alice, true)
		f.add(r.ID, bob, alice)
		f.add(r.ID, carol, alice)
		f.rekey(f.change(r.ID, 1, alice, []api.User{bob}, alice, carol)) // bob out at epoch 2
		f.rekey(f.change(r.ID, 2, carol, nil, alice, carol))             // and at epoch 3
		before := f.snapshot(r.ID, alice, bob, carol, dave)

		// A plain add of a former member is refused, whatever its form.
		k3 := key(r.ID, 3, bob, alice)
		_, err := AddOne(f.ctx, f.s, r.ID, bob.User, 3, &k3, f.addStatement(r.ID, alice, bob.Public, roomchain.RoleMember))
		wantCode(f, err, api.CodeInvalid, "a plain re-add of bob")
		wantMention(f, err, "re-adding a former member rekeys", "a plain re-add of bob")
		wantMention(f, err, bob.User, "a plain re-add of bob")
		f.unchanged(before, "a plain re-add of bob")

		for _, c := range []struct {
			what string
			mod  func(a *store.Add)
			code string
		}{
			{"without a key for carol", func(a *store.Add) {
				a.Keys = slices.DeleteFunc(a.Keys, func(k api.SealedKey) bool { return k.Member == carol.User })
			}, api.CodeInvalid},
			{"without a key for bob", func(a *store.Add) {
				a.Keys = slices.DeleteFunc(a.Keys, func(k api.SealedKey) bool { return k.Member == bob.User })
			}, api.CodeInvalid},
			{"with a key for a non-member", func(a *store.Add) { a.Keys = append(a.Keys, key(r.ID, 4, dave, alice)) }, api.CodeInvalid},
			{"with bob's key twice", func(a *store.Add) { a.Keys = append(a.Keys, key(r.ID, 4, bob, alice)) }, api.CodeInvalid},
			{"with the current epoch's keys", func(a *store.Add) {
				for i := range a.Keys {
					a.Keys[i].Epoch = 3
				}
			}, api.CodeInvalid},
			{"with a statement of the current epoch", func(a *store.Add) {
				a.Statement = f.addStatement(r.ID, alice, bob.Public, roomchain.RoleMember)
			}, api.CodeInvalid},
			{"from a stale epoch", func(a *store.Add) { a.Epoch = 2 }, api.CodeConflict},
		} {
			a := f.readd(r.ID, bob, alice, alice, carol)
			c.mod(&a)
			_, err := f.s.AddMembers(f.ctx, a)
			wantCode(f, err, c.code, "a rekeying re-add of bob "+c.what)
			f.unchanged(before, "a rekeying re-add of bob "+c.what)
		}

		got := f.addMembers(f.readd(r.ID, bob, alice, alice, carol))
		if got.Epoch != 4 {
			f.Fatalf("the rekeying re-add left the room at epoch %d, want 4", got.Epoch)
		}
		f.wantRoom(f.getRoom(r.ID), api.Room{ID: r.ID, Name: r.Name, Encrypted: true, Epoch: 4, Creator: r.Creator, CreatedAt: r.CreatedAt}, "GetRoom after the rekeying re-add")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 2), member(carol, 1, 0), member(bob, 4, 0)}, "history after the rekeying re-add")
		wantKeys(f, f.keys(r.ID, bob, 0), []api.SealedKey{key(r.ID, 1, bob, alice), key(r.ID, 4, bob, alice)}, "bob's keys: none of epochs 2 and 3, when he was out")
		for _, e := range []uint64{2, 3} {
			wantKeys(f, f.keys(r.ID, bob, e), nil, fmt.Sprintf("bob's key of epoch %d", e))
		}
		wantKeys(f, f.keys(r.ID, alice, 4), []api.SealedKey{key(r.ID, 4, alice, alice)}, "alice's key of epoch 4")
		wantKeys(f, f.keys(r.ID, carol, 0), []api.SealedKey{key(r.ID, 1, carol, alice), key(r.ID, 2, carol, alice), key(r.ID, 3, carol, carol), key(r.ID, 4, carol, alice)}, "carol's keys")
		f.wantStatements(r.ID, 0, f.rooms[r.ID].chain, "the history after the rekeying re-add")

		// A rekeying add leaves no revoked member in the room.
		f.add(r.ID, dave, alice)
		f.rekey(f.change(r.ID, 4, alice, []api.User{carol}, alice, bob, dave)) // carol out at epoch 5
		if _, err := f.s.RevokeUser(f.ctx, dave.User, f.now()); err != nil {
			f.Fatal(err)
		}
		before = f.snapshot(r.ID, alice, bob, carol, dave)
		_, err = f.s.AddMembers(f.ctx, f.readd(r.ID, carol, alice, alice, bob, dave))
		wantCode(f, err, api.CodeInvalid, "a rekeying re-add that keeps a revoked member")
		wantMention(f, err, dave.User, "a rekeying re-add that keeps a revoked member")
		f.unchanged(before, "a rekeying re-add that keeps a revoked member")
		f.rekey(f.change(r.ID, 5, alice, []api.User{dave}, alice, bob))
		f.addMembers(f.readd(r.ID, carol, alice, alice, bob))
		wantKeys(f, f.keys(r.ID, carol, 0), []api.SealedKey{key(r.ID, 1, carol, alice), key(r.ID, 2, carol, alice), key(r.ID, 3, carol, carol), key(r.ID, 4, carol, alice), key(r.ID, 7, carol, alice)},
			"carol's keys after her re-add: none of epochs 5 and 6")

		// In a cleartext room too, a former member comes back with a new
		// epoch; and a rekeying add may add a user new to the room.
		lab := f.room(alice, false)
		f.add(lab.ID, bob, alice)
		f.rekey(f.change(lab.ID, 1, alice, []api.User{bob}))
		before = f.snapshot(lab.ID, alice, bob)
		_, err = AddOne(f.ctx, f.s, lab.ID, bob.User, 2, nil, f.addStatement(lab.ID, alice, bob.Public, roomchain.RoleMember))
		wantCode(f, err, api.CodeInvalid, "a plain re-add to a cleartext room")
		f.unchanged(before, "a plain re-add to a cleartext room")
		f.addMembers(f.readd(lab.ID, bob, alice))
		f.addMembers(f.readd(lab.ID, carol, alice))
		wantMembers(f, f.members(lab.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 2), member(bob, 3, 0), member(carol, 4, 0)}, "the cleartext room's history")
	}},

	{"revoked_member_stays_listed", func(f *fixture) {
		// Revoking a user does not change the rooms it is in; the next
		// rekey must remove it.
		alice := f.user("alice")
		bob := f.user("bob")
		r := f.room(alice, true)
		f.add(r.ID, bob, alice)
		if _, err := f.s.RevokeUser(f.ctx, bob.User, f.now()); err != nil {
			f.Fatal(err)
		}
		revokedBob := member(bob, 1, 0)
		revokedBob.Revoked = true
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), revokedBob}, "Members after revoking bob (flagged revoked)")
	}},
}
