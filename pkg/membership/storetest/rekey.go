package storetest

import (
	"bytes"
	"fmt"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// trio makes alice, bob and carol and an encrypted room of all three, made
// by alice, at epoch 1. alice is the room's admin, bob has role bobRole
// (a plain member if none), carol is a plain member.
func (f *fixture) trio(bobRole ...string) (r api.Room, alice, bob, carol api.User) {
	f.Helper()
	alice, bob, carol = f.user("alice"), f.user("bob"), f.user("carol")
	r = f.room(alice, true)
	role := roomchain.RoleMember
	if len(bobRole) > 0 {
		role = bobRole[0]
	}
	f.addAs(r.ID, bob, alice, role)
	f.add(r.ID, carol, alice)
	return r, alice, bob, carol
}

var rekeyCases = []testCase{
	{"with_removal", func(f *fixture) {
		// By a room admin other than the creator.
		r, alice, bob, carol := f.trio(roomchain.RoleAdmin)
		c := f.change(r.ID, 1, bob, []api.User{carol}, alice, bob)
		got := f.rekey(c)
		want := r
		want.Epoch = 2
		f.wantRoom(got, want, "Rekey's room")
		f.wantRoom(f.getRoom(r.ID), want, "GetRoom after Rekey")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(bob, 1, 0)}, "Members after Rekey")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 0), member(carol, 1, 2)}, "history after Rekey")
		wantKeys(f, f.keys(r.ID, alice, 2), []api.SealedKey{key(r.ID, 2, alice, bob)}, "alice's new key")
		wantKeys(f, f.keys(r.ID, bob, 2), []api.SealedKey{key(r.ID, 2, bob, bob)}, "bob's new key")
		wantKeys(f, f.keys(r.ID, carol, 2), nil, "the removed member's new key")
		wantKeys(f, f.keys(r.ID, carol, 0), []api.SealedKey{key(r.ID, 1, carol, alice)}, "the removed member's old keys")
		f.wantRoomIDs(f.roomsOf(carol), nil, "RoomsOf(removed member)")
	}},

	{"without_removal", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		f.rekey(f.change(r.ID, 1, alice, nil, alice, bob, carol))
		f.rekey(f.change(r.ID, 2, carol, nil, carol, bob, alice))
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 0), member(carol, 1, 0)}, "history after two rekeys")
		wantKeys(f, f.keys(r.ID, bob, 0), []api.SealedKey{key(r.ID, 1, bob, alice), key(r.ID, 2, bob, alice), key(r.ID, 3, bob, carol)}, "bob's keys")
	}},

	{"refused", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		dave := f.user("dave") // registered, not a member
		stranger := f.newIdentity("eve").Public()
		f.rekey(f.change(r.ID, 1, alice, nil, alice, bob, carol)) // at epoch 2
		before := f.snapshot(r.ID, alice, bob, carol, dave)
		type refusal struct {
			what    string
			c       store.Rekey
			code    string
			mention string
		}
		withKey := func(c store.Rekey, mod func(k *api.SealedKey)) store.Rekey {
			c.Keys = append([]api.SealedKey(nil), c.Keys...)
			mod(&c.Keys[len(c.Keys)-1])
			return c
		}
		ok := f.change(r.ID, 2, alice, []api.User{carol}, alice, bob)
		for _, x := range []refusal{
			{"that leaves out a member", f.change(r.ID, 2, alice, nil, alice, carol), api.CodeInvalid, bob.User},
			{"that leaves out a member while removing another", f.change(r.ID, 2, alice, []api.User{carol}, alice), api.CodeInvalid, bob.User},
			{"with no keys", f.change(r.ID, 2, alice, nil), api.CodeInvalid, ""},
			{"with a key for a non-member", f.change(r.ID, 2, alice, []api.User{carol}, alice, bob, dave), api.CodeInvalid, dave.User},
			{"with a key for an unknown user", withKey(f.change(r.ID, 2, alice, []api.User{carol}, alice, bob, dave), func(k *api.SealedKey) { k.Member = stranger.User }), api.CodeInvalid, stranger.User},
			{"with a key for a removed member", f.change(r.ID, 2, alice, []api.User{carol}, alice, bob, carol), api.CodeInvalid, carol.User},
			{"with two keys for one member", f.change(r.ID, 2, alice, []api.User{carol}, alice, bob, bob), api.CodeInvalid, bob.User},
			{"with a key for the old epoch", withKey(ok, func(k *api.SealedKey) { k.Epoch = 2 }), api.CodeInvalid, ""},
			{"with a key for a later epoch", withKey(ok, func(k *api.SealedKey) { k.Epoch = 4 }), api.CodeInvalid, ""},
			{"with a key for another room", withKey(ok, func(k *api.SealedKey) { k.Room = api.NewRoomID() }), api.CodeInvalid, ""},
			{"with an empty key", withKey(ok, func(k *api.SealedKey) { k.SealedKey = nil }), api.CodeInvalid, ""},
			{"with a key sealed by an unknown user", withKey(ok, func(k *api.SealedKey) { k.Sealer = stranger }), api.CodeInvalid, ""},
			{"removing a non-member", f.change(r.ID, 2, alice, []api.User{dave}, alice, bob, carol), api.CodeInvalid, dave.User},
			{"removing a member twice", f.change(r.ID, 2, alice, []api.User{carol, carol}, alice, bob), api.CodeInvalid, carol.User},
			{"from an old epoch", f.change(r.ID, 1, alice, []api.User{carol}, alice, bob), api.CodeConflict, ""},
			{"from a future epoch", f.change(r.ID, 3, alice, []api.User{carol}, alice, bob), api.CodeConflict, ""},
			{"from epoch 0", f.change(r.ID, 0, alice, []api.User{carol}, alice, bob), api.CodeConflict, ""},
			{"of an unknown room", f.change(api.NewRoomID(), 2, alice, nil, alice), api.CodeNotFound, ""},
		} {
			_, err := f.s.Rekey(f.ctx, x.c)
			wantCode(f, err, x.code, "Rekey "+x.what)
			if x.mention != "" {
				wantMention(f, err, x.mention, "Rekey "+x.what)
			}
			f.unchanged(before, "Rekey "+x.what)
		}
		// The valid rekey then succeeds.
		f.rekey(ok)
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(bob, 1, 0)}, "Members after the valid rekey")
	}},

	{"revoked_member_must_go", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		if _, err := f.s.RevokeUser(f.ctx, carol.User, f.now()); err != nil {
			f.Fatal(err)
		}
		before := f.snapshot(r.ID, alice, bob, carol)
		_, err := f.s.Rekey(f.ctx, f.change(r.ID, 1, alice, nil, alice, bob, carol))
		wantCode(f, err, api.CodeInvalid, "Rekey keeping a revoked member")
		wantMention(f, err, carol.User, "Rekey keeping a revoked member")
		f.unchanged(before, "Rekey keeping a revoked member")
		f.rekey(f.change(r.ID, 1, alice, []api.User{carol}, alice, bob))
		former := member(carol, 1, 2)
		former.Revoked = true
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 0), former}, "history after removing the revoked member")
	}},

	{"any_member_removes_revoked_users", func(f *fixture) {
		r, alice, bob, carol := f.trio() // bob is a plain member
		// Not revoked: a member may not remove another, reason or not.
		before := f.snapshot(r.ID, alice, bob, carol)
		_, err := f.s.Rekey(f.ctx, f.revokedRemoval(r.ID, 1, bob, carol, alice, bob))
		wantCode(f, err, api.CodeInvalid, "removal of an active user as revoked")
		f.unchanged(before, "removal of an active user as revoked")
		// Revoked: any member rekeys it out.
		if _, err := f.s.RevokeUser(f.ctx, carol.User, f.now()); err != nil {
			f.Fatal(err)
		}
		got := f.rekey(f.revokedRemoval(r.ID, 1, bob, carol, alice, bob))
		if got.Epoch != 2 {
			f.Fatalf("epoch %d after removing the revoked user, want 2", got.Epoch)
		}
	}},

	{"cleartext", func(f *fixture) {
		alice, bob, carol := f.user("alice"), f.user("bob"), f.user("carol")
		r := f.room(alice, false)
		f.add(r.ID, bob, alice)
		f.add(r.ID, carol, alice)
		before := f.snapshot(r.ID, alice, bob, carol)
		_, err := f.s.Rekey(f.ctx, f.change(r.ID, 1, alice, []api.User{carol}, alice, bob))
		wantCode(f, err, api.CodeInvalid, "Rekey of a cleartext room with keys")
		f.unchanged(before, "Rekey of a cleartext room with keys")
		_, err = f.s.Rekey(f.ctx, f.change(r.ID, 1, alice, []api.User{bob, alice, bob}))
		wantCode(f, err, api.CodeInvalid, "Rekey of a cleartext room removing a member twice")
		f.unchanged(before, "Rekey of a cleartext room removing a member twice")
		got := f.rekey(f.change(r.ID, 1, alice, []api.User{carol}))
		if got.Encrypted {
			f.Fatal("the cleartext room became encrypted")
		}
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 0), member(carol, 1, 2)}, "history after the cleartext rekey")
		wantKeys(f, f.keys(r.ID, alice, 0), nil, "keys of a cleartext room")
		f.rekey(f.change(r.ID, 2, alice, nil)) // a bare epoch change
		if e := f.getRoom(r.ID).Epoch; e != 3 {
			f.Fatalf("epoch %d, want 3", e)
		}
	}},

	{"remove_everyone", func(f *fixture) {
		// The membership history forbids it (a remove statement keeps at
		// least one member), so the store refuses it; members may leave,
		// though, down to the last one.
		r, alice, bob, carol := f.trio(roomchain.RoleAdmin) // bob is an admin too
		before := f.snapshot(r.ID, alice, bob, carol)
		_, err := f.s.Rekey(f.ctx, f.change(r.ID, 1, alice, []api.User{alice, bob, carol}))
		wantCode(f, err, api.CodeInvalid, "Rekey removing every member")
		f.unchanged(before, "Rekey removing every member")
		f.rekey(f.change(r.ID, 1, carol, []api.User{carol}, alice, bob)) // carol leaves
		f.rekey(f.change(r.ID, 2, alice, []api.User{alice}, bob))        // alice leaves
		wantMembers(f, f.members(r.ID, false), []api.Member{member(bob, 1, 0)}, "Members after two left")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 3), member(bob, 1, 0), member(carol, 1, 2)}, "history after two left")
		f.wantRoomIDs(f.roomsOf(alice), nil, "RoomsOf(alice) after leaving")
		before = f.snapshot(r.ID, alice, bob, carol)
		_, err = f.s.Rekey(f.ctx, f.change(r.ID, 3, bob, []api.User{bob}))
		wantCode(f, err, api.CodeInvalid, "Rekey removing the last member")
		f.unchanged(before, "Rekey removing the last member")
	}},

	{"last_admin_may_leave", func(f *fixture) {
		// The last admin may leave; the room then has no admin, and no
		// one can add members to it any more.
		r, alice, bob, carol := f.trio() // alice is the only admin
		f.rekey(f.change(r.ID, 1, alice, []api.User{alice}, bob, carol))
		dave := f.user("dave")
		before := f.snapshot(r.ID, bob, carol, dave)
		k := key(r.ID, 2, dave, bob)
		_, err := AddOne(f.ctx, f.s, r.ID, dave.User, 2, &k, f.addStatement(r.ID, bob, dave.Public, roomchain.RoleMember))
		wantCode(f, err, api.CodeInvalid, "AddMember by a plain member of a room without admins")
		wantMention(f, err, "not a room admin", "AddMember by a plain member of a room without admins")
		f.unchanged(before, "AddMember by a plain member of a room without admins")
	}},

	{"revoked_last_admin_removed", func(f *fixture) {
		// Any member removes a revoked admin, the last one included, so
		// that the room can be rekeyed without it.
		r, alice, bob, carol := f.trio()
		if _, err := f.s.RevokeUser(f.ctx, alice.User, f.now()); err != nil {
			f.Fatal(err)
		}
		got := f.rekey(f.revokedRemoval(r.ID, 1, bob, alice, bob, carol))
		if got.Epoch != 2 {
			f.Errorf("epoch after removing the revoked admin = %d, want 2", got.Epoch)
		}
	}},

	{"concurrent", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		const n = 20
		changes := make([]store.Rekey, n)
		for i := range changes {
			c := f.change(r.ID, 1, alice, []api.User{carol}, alice, bob)
			for j := range c.Keys {
				c.Keys[j].SealedKey = fmt.Appendf(nil, "attempt %d for %s", i, c.Keys[j].Member)
			}
			changes[i] = c
		}
		errs := Race(n, func(i int) error {
			_, err := f.s.Rekey(f.ctx, changes[i])
			return err
		})
		winner := OneWinner(f, errs, "concurrent rekeys from epoch 1")
		f.accept(r.ID, changes[winner].Statement)
		f.wantStatements(r.ID, 0, f.rooms[r.ID].chain, "history after the concurrent rekeys")
		if e := f.getRoom(r.ID).Epoch; e != 2 {
			f.Fatalf("epoch %d after the concurrent rekeys, want 2", e)
		}
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(bob, 1, 0), member(carol, 1, 2)}, "history after the concurrent rekeys")
		for _, u := range []api.User{alice, bob} {
			ks := f.keys(r.ID, u, 2)
			if len(ks) != 1 || !bytes.Equal(ks[0].SealedKey, fmt.Appendf(nil, "attempt %d for %s", winner, u.User)) {
				f.Fatalf("%s's key at epoch 2 is %+v, want the one of attempt %d", u.Name, ks, winner)
			}
		}
		// The losers may retry from the new epoch; again one wins.
		f.rekey(f.change(r.ID, 2, bob, nil, alice, bob))
	}},
}

// revokedRemoval is the rekey of room from epoch from by actor that
// removes remove as revoked ([roomchain.ReasonRevoked]) and seals the new
// key to keep.
func (f *fixture) revokedRemoval(room string, from uint64, actor, remove api.User, keep ...api.User) store.Rekey {
	f.Helper()
	c := f.change(room, from, actor, []api.User{remove}, keep...)
	c.Statement = f.sign(actor.User, roomchain.Statement{Room: room, Kind: roomchain.KindRemove, Epoch: from + 1, Remove: []string{remove.User}, Reason: roomchain.ReasonRevoked})
	return c
}
