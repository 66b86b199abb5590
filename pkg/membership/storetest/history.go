package storetest

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// addRefusal is an AddMember the store must refuse.
type addRefusal struct {
	what string
	st   roomchain.Signed
	code string
}

// refuseAdds tries each add of u to room at its current epoch, with a
// valid key sealed by the room's creator, and checks it is refused with
// its code and changes nothing of room as watch see it.
func (f *fixture) refuseAdds(room string, u api.User, watch []api.User, adds []addRefusal) {
	f.Helper()
	r := f.getRoom(room)
	creator, err := f.s.GetUser(f.ctx, r.Creator)
	if err != nil {
		f.Fatal(err)
	}
	k := key(room, r.Epoch, u, creator)
	before := f.snapshot(room, watch...)
	for _, x := range adds {
		_, err := AddOne(f.ctx, f.s, room, u.User, r.Epoch, &k, x.st)
		wantCode(f, err, x.code, "AddMember with "+x.what)
		f.unchanged(before, "AddMember with "+x.what)
	}
}

// rekeyRefusal is a Rekey the store must refuse.
type rekeyRefusal struct {
	what string
	c    store.Rekey
	code string
}

// refuseRekeys tries each rekey and checks it is refused with its code and
// changes nothing of room as watch see it.
func (f *fixture) refuseRekeys(room string, watch []api.User, rekeys []rekeyRefusal) {
	f.Helper()
	before := f.snapshot(room, watch...)
	for _, x := range rekeys {
		_, err := f.s.Rekey(f.ctx, x.c)
		wantCode(f, err, x.code, "Rekey with "+x.what)
		f.unchanged(before, "Rekey with "+x.what)
	}
}

// withStatement is c with statement st.
func withStatement(c store.Rekey, st roomchain.Signed) store.Rekey {
	c.Statement = st
	return c
}

// next is the statement of kind by actor after the fixture's head of room,
// at epoch, adding add and removing remove, filled in (the admins as an
// honest client names them) and signed by signer as given.
func (f *fixture) next(room string, signer *identity.Identity, actor api.User, kind string, epoch uint64, add []roomchain.Member, remove ...api.User) roomchain.Signed {
	f.Helper()
	return f.signWith(signer, actor.User, roomchain.Statement{Room: room, Kind: kind, Epoch: epoch, Add: add, Remove: userKeys(remove)})
}

// roomMember is u's record in a statement.
func roomMember(u api.User, role string) roomchain.Member {
	return roomchain.Member{Public: u.Public, Role: role}
}

// records are the records of us as plain members, for a statement's Add.
func records(us ...api.User) []roomchain.Member {
	out := make([]roomchain.Member, len(us))
	for i, u := range us {
		out[i] = roomMember(u, roomchain.RoleMember)
	}
	return out
}

// userKeys are the user keys of us (nil for none).
func userKeys(us []api.User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.User)
	}
	return out
}

var historyCases = []testCase{
	{"statements_in_order", func(f *fixture) {
		alice, bob, carol, dave := f.user("alice"), f.user("bob"), f.user("carol"), f.user("dave")
		r := f.room(alice, true)
		other := f.room(bob, false) // its history must not mix with r's
		f.add(r.ID, bob, alice)
		f.addAs(r.ID, carol, alice, roomchain.RoleAdmin)
		f.add(other.ID, alice, bob)
		f.rekey(f.change(r.ID, 1, bob, nil, alice, bob, carol))          // a rekey by a plain member
		f.rekey(f.change(r.ID, 2, carol, []api.User{bob}, alice, carol)) // a removal by an admin
		f.add(r.ID, dave, carol)
		f.rekey(f.change(r.ID, 3, dave, []api.User{dave}, alice, carol)) // dave leaves
		f.addMembers(f.readd(r.ID, bob, alice, alice, carol))            // bob is back, at epoch 5
		f.rekey(f.change(other.ID, 1, alice, nil))

		chain := f.rooms[r.ID].chain
		if len(chain) != 8 {
			f.Fatalf("the fixture made %d statements, want 8", len(chain))
		}
		for after := range len(chain) + 1 {
			f.wantStatements(r.ID, uint64(after), chain[after:], fmt.Sprintf("Statements after %d", after))
		}
		for _, after := range []uint64{9, 100, 1 << 62, 1<<62 + 1, 1 << 63, math.MaxUint64} {
			f.wantStatements(r.ID, after, nil, "Statements after a sequence number beyond the head")
		}
		f.wantStatements(other.ID, 0, f.rooms[other.ID].chain, "Statements of the other room")

		// The stored history verifies, and proves what the store says.
		all := f.statements(r.ID, 0)
		for i, s := range all {
			st, err := roomchain.Parse(s)
			if err != nil || st.Seq != uint64(i+1) || st.Room != r.ID {
				f.Fatalf("stored statement %d: seq %d room %s, %v", i+1, st.Seq, st.Room, err)
			}
		}
		state, err := roomchain.Verify(r.ID, all)
		if err != nil {
			f.Fatalf("the stored history does not verify: %v", err)
		}
		got := f.getRoom(r.ID)
		if state.Epoch != got.Epoch || state.Epoch != 5 {
			f.Fatalf("the history proves epoch %d, GetRoom says %d, want 5", state.Epoch, got.Epoch)
		}
		if got.HeadSeq != state.Seq || got.HeadHash != state.Head || got.HeadHash != chain[len(chain)-1].HashHex() {
			f.Fatalf("GetRoom names head %d/%s, the history ends at %d/%s", got.HeadSeq, got.HeadHash, state.Seq, state.Head)
		}
		if state.Name != got.Name || state.Encrypted != got.Encrypted || state.Creator != got.Creator {
			f.Fatalf("the history creates %q (encrypted %v) by %s, GetRoom says %+v", state.Name, state.Encrypted, state.Creator, got)
		}
		var users []string
		for _, m := range f.members(r.ID, false) {
			users = append(users, m.User)
		}
		slices.Sort(users)
		if proved := roomchain.Users(state.Members); !slices.Equal(proved, users) {
			f.Fatalf("the history proves members %v, Members says %v", proved, users)
		}
		// And so does every span of the member history.
		for _, m := range f.members(r.ID, true) {
			if _, ok := state.MemberAt(m.User, m.Since); !ok {
				f.Fatalf("%s is a member from epoch %d, the history says not", m.Name, m.Since)
			}
		}
		if _, ok := state.MemberAt(dave.User, 4); ok {
			f.Fatal("the history has dave a member after he left")
		}
		for _, u := range []api.User{alice, bob, carol, dave} {
			_, proved := state.Member(u.User)
			if f.isMember(r.ID, u) != proved {
				f.Fatalf("IsMember(%s) = %v, the history proves %v", u.Name, !proved, proved)
			}
		}
		f.wantRoomIDs(f.roomsOf(alice), []string{r.ID, other.ID}, "RoomsOf(alice)")
	}},

	{"no_aliasing", func(f *fixture) {
		alice, bob := f.user("alice"), f.user("bob")
		r := f.room(alice, true)
		f.add(r.ID, bob, alice)
		sts := f.statements(r.ID, 0)
		for i := range sts {
			sts[i].Body[0] ^= 0xff
			sts[i].Sig[0] ^= 0xff
		}
		f.wantStatements(r.ID, 0, f.rooms[r.ID].chain, "Statements after changing returned values")
		// Nor do the statements passed in alias the store's.
		carol := f.user("carol")
		st := f.addStatement(r.ID, alice, carol.Public, roomchain.RoleMember)
		sent := roomchain.Signed{Body: bytes.Clone(st.Body), Sig: bytes.Clone(st.Sig)}
		k := key(r.ID, 1, carol, alice)
		if _, err := AddOne(f.ctx, f.s, r.ID, carol.User, 1, &k, sent); err != nil {
			f.Fatal(err)
		}
		f.accept(r.ID, st)
		sent.Body[0] ^= 0xff
		f.wantStatements(r.ID, 0, f.rooms[r.ID].chain, "Statements after changing a statement sent")
	}},

	{"stale_head", func(f *fixture) {
		// Two adds prepared from the same head at the same epoch: the epoch
		// check cannot tell the second is stale, the statement check can.
		r, alice, bob, carol := f.trio()
		dave, erin := f.user("dave"), f.user("erin")
		watch := []api.User{alice, bob, carol, dave, erin}
		kd, ke := key(r.ID, 1, dave, alice), key(r.ID, 1, erin, alice)
		forDave := f.addStatement(r.ID, alice, dave.Public, roomchain.RoleMember)
		forErin := f.addStatement(r.ID, alice, erin.Public, roomchain.RoleMember)
		if _, err := AddOne(f.ctx, f.s, r.ID, dave.User, 1, &kd, forDave); err != nil {
			f.Fatal(err)
		}
		f.accept(r.ID, forDave)
		before := f.snapshot(r.ID, watch...)
		_, err := AddOne(f.ctx, f.s, r.ID, erin.User, 1, &ke, forErin)
		wantCode(f, err, api.CodeConflict, "AddMember with a statement after a stale head")
		f.unchanged(before, "AddMember with a statement after a stale head")
		// The same statement again: also stale.
		_, err = AddOne(f.ctx, f.s, r.ID, dave.User, 1, &kd, forDave)
		wantCode(f, err, api.CodeConflict, "AddMember replayed")
		f.unchanged(before, "AddMember replayed")

		// Seq and Prev must both follow the head.
		head := f.state(r.ID)
		st := roomchain.Statement{Version: roomchain.Version, Room: r.ID, Kind: roomchain.KindAdd, Actor: alice.User, Epoch: 1,
			Add: records(erin), Admins: head.Admins, Time: f.clock.UnixMilli()}
		ahead, wrongPrev, noPrev := st, st, st
		ahead.Seq, ahead.Prev = head.Seq+2, head.Head
		wrongPrev.Seq, wrongPrev.Prev = head.Seq+1, forErin.HashHex()
		noPrev.Seq = head.Seq + 1
		aliceID := f.identity(alice.User)
		f.refuseAdds(r.ID, erin, watch, []addRefusal{
			{"a statement skipping a sequence number", f.signRaw(aliceID, ahead), api.CodeConflict},
			{"a statement after another head", f.signRaw(aliceID, wrongPrev), api.CodeConflict},
			{"a statement after no head", f.signRaw(aliceID, noPrev), api.CodeConflict},
		})
		f.add(r.ID, erin, alice)

		// A rekey prepared before an add that does not change the epoch.
		cr := f.room(alice, false)
		f.add(cr.ID, bob, alice)
		stale := f.change(cr.ID, 1, bob, nil)
		f.add(cr.ID, carol, alice)
		f.refuseRekeys(cr.ID, watch, []rekeyRefusal{{"a statement after a stale head", stale, api.CodeConflict}})
		f.rekey(f.change(cr.ID, 1, bob, nil))
		f.wantStatements(cr.ID, 0, f.rooms[cr.ID].chain, "history after the stale rekey")
	}},

	{"concurrent_adds", func(f *fixture) {
		alice := f.user("alice")
		r := f.room(alice, true)
		const n = 8
		users := make([]api.User, n)
		sts := make([]roomchain.Signed, n)
		keys := make([]api.SealedKey, n)
		for i := range users {
			users[i] = f.user(string(rune('a'+i)) + "user")
			sts[i] = f.addStatement(r.ID, alice, users[i].Public, roomchain.RoleMember)
			keys[i] = key(r.ID, 1, users[i], alice)
		}
		errs := Race(n, func(i int) error {
			_, err := AddOne(f.ctx, f.s, r.ID, users[i].User, 1, &keys[i], sts[i])
			return err
		})
		winner := OneWinner(f, errs, "concurrent adds from the same head")
		f.accept(r.ID, sts[winner])
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0), member(users[winner], 1, 0)}, "members after the concurrent adds")
		f.wantStatements(r.ID, 0, f.rooms[r.ID].chain, "history after the concurrent adds")
		f.wantRoom(f.getRoom(r.ID), r, "GetRoom after the concurrent adds")
	}},

	{"statement_differs_from_change", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		dave, erin := f.user("dave"), f.user("erin")
		watch := []api.User{alice, bob, carol, dave, erin}
		aliceID := f.identity(alice.User)
		admins := f.state(r.ID).Admins // alice
		forged := dave.Public
		forged.Name = "mallory" // the binding covers the name
		otherRoom := roomchain.Statement{Version: roomchain.Version, Room: api.NewRoomID(), Seq: f.state(r.ID).Seq + 1, Prev: f.state(r.ID).Head,
			Kind: roomchain.KindAdd, Actor: alice.User, Epoch: 1, Add: records(dave), Admins: admins, Time: f.clock.UnixMilli()}
		addDave := func(admins ...api.User) roomchain.Signed {
			return f.signWith(aliceID, alice.User, roomchain.Statement{Room: r.ID, Kind: roomchain.KindAdd, Epoch: 1, Add: records(dave), Admins: append([]string{}, userKeys(admins)...)})
		}
		f.refuseAdds(r.ID, dave, watch, []addRefusal{
			{"no statement", roomchain.Signed{}, api.CodeInvalid},
			{"a statement adding another user", f.addStatement(r.ID, alice, erin.Public, roomchain.RoleMember), api.CodeInvalid},
			{"a statement adding two users", f.next(r.ID, aliceID, alice, roomchain.KindAdd, 1, records(dave, erin)), api.CodeInvalid},
			{"a statement adding nobody", f.next(r.ID, aliceID, alice, roomchain.KindAdd, 1, nil), api.CodeInvalid},
			{"a statement adding a member again", f.next(r.ID, aliceID, alice, roomchain.KindAdd, 1, records(bob, dave)), api.CodeInvalid},
			{"a rekey statement", f.next(r.ID, aliceID, alice, roomchain.KindRekey, 2, nil), api.CodeInvalid},
			{"an add statement at the next epoch", f.next(r.ID, aliceID, alice, roomchain.KindAdd, 2, records(dave)), api.CodeInvalid},
			{"an add statement that also removes", f.next(r.ID, aliceID, alice, roomchain.KindAdd, 1, records(dave), carol), api.CodeInvalid},
			{"a forged record of the user", f.addStatement(r.ID, alice, forged, roomchain.RoleMember), api.CodeInvalid},
			{"a statement promoting another member", addDave(alice, bob), api.CodeInvalid},
			{"a statement naming the added member an admin", addDave(alice, dave), api.CodeInvalid},
			{"a statement dropping an admin", addDave(), api.CodeInvalid},
			{"a statement for another room", f.signRaw(aliceID, otherRoom), api.CodeInvalid},
			{"a statement in another form", func() roomchain.Signed {
				st := f.addStatement(r.ID, alice, dave.Public, roomchain.RoleMember)
				st.Body = append(st.Body, '\n') // same statement, not its canonical encoding
				return st
			}(), api.CodeInvalid},
		})

		ok := f.change(r.ID, 1, alice, []api.User{carol}, alice, bob)
		bare := f.change(r.ID, 1, alice, nil, alice, bob, carol)
		f.refuseRekeys(r.ID, watch, []rekeyRefusal{
			{"no statement", withStatement(ok, roomchain.Signed{}), api.CodeInvalid},
			{"a rekey statement for a removal", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRekey, 2, nil)), api.CodeInvalid},
			{"a remove statement removing nobody", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRemove, 2, nil)), api.CodeInvalid},
			{"a remove statement removing another member", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRemove, 2, nil, bob)), api.CodeInvalid},
			{"a remove statement removing one more member", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRemove, 2, nil, bob, carol)), api.CodeInvalid},
			{"a remove statement removing a non-member", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRemove, 2, nil, carol, dave)), api.CodeInvalid},
			{"a remove statement that also adds", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRemove, 2, records(dave), carol)), api.CodeInvalid},
			{"a remove statement at epoch 3", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRemove, 3, nil, carol)), api.CodeInvalid},
			{"a remove statement in the same epoch", withStatement(ok, f.next(r.ID, aliceID, alice, roomchain.KindRemove, 1, nil, carol)), api.CodeInvalid},
			{"a remove statement naming the removed member an admin", withStatement(ok, f.signWith(aliceID, alice.User, roomchain.Statement{Room: r.ID, Kind: roomchain.KindRemove, Epoch: 2, Remove: userKeys([]api.User{carol}), Admins: userKeys([]api.User{alice, carol})})), api.CodeInvalid},
			{"an add statement", withStatement(ok, f.addStatement(r.ID, alice, dave.Public, roomchain.RoleMember)), api.CodeInvalid},
			{"a remove statement for a bare rekey", withStatement(bare, ok.Statement), api.CodeInvalid},
			{"a rekey statement at the same epoch", withStatement(bare, f.next(r.ID, aliceID, alice, roomchain.KindRekey, 1, nil)), api.CodeInvalid},
			{"a rekey statement adding a member", withStatement(bare, f.next(r.ID, aliceID, alice, roomchain.KindRekey, 2, records(dave))), api.CodeInvalid},
			{"a rekey statement removing a member", withStatement(bare, f.next(r.ID, aliceID, alice, roomchain.KindRekey, 2, nil, carol)), api.CodeInvalid},
			{"a rekey statement dropping the admins", withStatement(bare, f.signWith(aliceID, alice.User, roomchain.Statement{Room: r.ID, Kind: roomchain.KindRekey, Epoch: 2, Admins: []string{}})), api.CodeInvalid},
		})
		f.rekey(ok)
		f.rekey(f.change(r.ID, 2, bob, nil, alice, bob))
	}},

	{"wrong_signer", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		dave := f.user("dave") // registered, not a member
		watch := []api.User{alice, bob, carol, dave}
		aliceID, bobID, daveID := f.identity(alice.User), f.identity(bob.User), f.identity(dave.User)
		valid := f.addStatement(r.ID, alice, dave.Public, roomchain.RoleMember)
		otherSig := valid
		otherSig.Sig = f.next(r.ID, aliceID, alice, roomchain.KindRekey, 2, nil).Sig
		f.refuseAdds(r.ID, dave, watch, []addRefusal{
			{"a statement by alice signed by bob", f.next(r.ID, bobID, alice, roomchain.KindAdd, 1, records(dave)), api.CodeInvalid},
			{"a statement by alice signed by the added user", f.next(r.ID, daveID, alice, roomchain.KindAdd, 1, records(dave)), api.CodeInvalid},
			{"a statement by the added user himself", f.next(r.ID, daveID, dave, roomchain.KindAdd, 1, records(dave)), api.CodeInvalid},
			{"the signature of another statement", otherSig, api.CodeInvalid},
			{"a truncated signature", roomchain.Signed{Body: valid.Body, Sig: valid.Sig[:32]}, api.CodeInvalid},
		})
		ok := f.change(r.ID, 1, alice, []api.User{carol}, alice, bob)
		bare := f.change(r.ID, 1, alice, nil, alice, bob, carol)
		f.refuseRekeys(r.ID, watch, []rekeyRefusal{
			{"a remove statement by alice signed by carol", withStatement(ok, f.next(r.ID, f.identity(carol.User), alice, roomchain.KindRemove, 2, nil, carol)), api.CodeInvalid},
			{"a rekey statement by a non-member", withStatement(bare, f.next(r.ID, daveID, dave, roomchain.KindRekey, 2, nil)), api.CodeInvalid},
			{"a rekey statement by an unknown actor", withStatement(bare, f.next(r.ID, aliceID, api.User{Public: identity.Public{User: "U" + string(bytes.Repeat([]byte("A"), 55))}}, roomchain.KindRekey, 2, nil)), api.CodeInvalid},
		})
		f.rekey(ok)
	}},

	{"admins_only", func(f *fixture) {
		// Only a room admin adds, or removes others; any member rekeys or
		// leaves.
		r, alice, bob, carol := f.trio()
		dave := f.user("dave")
		watch := []api.User{alice, bob, carol, dave}
		f.refuseAdds(r.ID, dave, watch, []addRefusal{
			{"a statement by a plain member", f.addStatement(r.ID, bob, dave.Public, roomchain.RoleMember), api.CodeInvalid},
			{"a statement by a plain member making the user an admin", f.addStatement(r.ID, bob, dave.Public, roomchain.RoleAdmin), api.CodeInvalid},
		})
		f.refuseRekeys(r.ID, watch, []rekeyRefusal{
			{"a removal by a plain member", f.change(r.ID, 1, bob, []api.User{carol}, alice, bob), api.CodeInvalid},
			{"a removal of the admin by a plain member", f.change(r.ID, 1, bob, []api.User{alice}, bob, carol), api.CodeInvalid},
			{"a removal of itself and another by a plain member", f.change(r.ID, 1, bob, []api.User{bob, carol}, alice), api.CodeInvalid},
		})
		f.rekey(f.change(r.ID, 1, bob, nil, alice, bob, carol)) // any member rekeys
		f.rekey(f.change(r.ID, 2, bob, []api.User{bob}, alice, carol))
		f.wantRoomIDs(f.roomsOf(bob), nil, "RoomsOf(bob) after he left")
		// An admin made by the creator may add and remove.
		f.addAs(r.ID, dave, alice, roomchain.RoleAdmin)
		f.addMembers(f.readd(r.ID, bob, dave, alice, carol, dave)) // bob is back, at epoch 4
		f.rekey(f.change(r.ID, 4, dave, []api.User{carol}, alice, bob, dave))
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0), member(dave, 3, 0), member(bob, 4, 0)}, "Members")
		if _, err := roomchain.Verify(r.ID, f.statements(r.ID, 0)); err != nil {
			f.Fatalf("the stored history does not verify: %v", err)
		}
	}},

	{"is_member", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		dave := f.user("dave")
		stranger := f.newIdentity("eve").Public()
		other := f.room(dave, false)
		for _, c := range []struct {
			who  string
			user string
			want bool
		}{
			{"the creator", alice.User, true},
			{"an added member", bob.User, true},
			{"a registered non-member", dave.User, false},
			{"an unknown user", stranger.User, false},
			{"the empty key", "", false},
			{"a member's name", bob.Name, false},
		} {
			got, err := f.s.IsMember(f.ctx, r.ID, c.user)
			if err != nil || got != c.want {
				f.Fatalf("IsMember of %s = %v, %v; want %v", c.who, got, err, c.want)
			}
		}
		if f.isMember(other.ID, alice) || !f.isMember(other.ID, dave) {
			f.Fatal("IsMember mixes up rooms")
		}
		f.rekey(f.change(r.ID, 1, alice, []api.User{carol}, alice, bob))
		if f.isMember(r.ID, carol) {
			f.Fatal("IsMember of a removed member is true")
		}
		f.addMembers(f.readd(r.ID, carol, alice, alice, bob))
		if !f.isMember(r.ID, carol) {
			f.Fatal("IsMember of a re-added member is false")
		}
		if _, err := f.s.RevokeUser(f.ctx, bob.User, f.now()); err != nil {
			f.Fatal(err)
		}
		if !f.isMember(r.ID, bob) {
			f.Fatal("IsMember of a revoked member (not yet removed) is false")
		}
		_, err := f.s.IsMember(f.ctx, api.NewRoomID(), alice.User)
		wantCode(f, err, api.CodeNotFound, "IsMember in an unknown room")
	}},
}
