package storetest

import (
	"fmt"
	"slices"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

var deleteCases = []testCase{
	{"removes_everything", func(f *fixture) {
		// A room with a history of several epochs, a former member,
		// keys and blobs; one of its blobs is also another room's.
		r, alice, bob, carol := f.trio()
		f.rekey(f.change(r.ID, 1, alice, []api.User{carol}, alice, bob))
		other := f.room(bob, true)
		own, shared := blobOf(f, r.ID, alice, 1), blobOf(f, r.ID, bob, 2)
		sharedThere := shared
		sharedThere.Room, sharedThere.CreatedAt = other.ID, f.now()
		if err := f.s.AddBlob(f.ctx, sharedThere); err != nil {
			f.Fatal(err)
		}
		otherBefore := f.snapshot(other.ID) // the users' rooms lose r
		bobsKeys := f.keys(other.ID, bob, 0)

		was := f.getRoom(r.ID)
		d, err := f.s.DeleteRoom(f.ctx, r.ID, alice.User)
		if err != nil {
			f.Fatalf("DeleteRoom by the room's admin: %v", err)
		}
		f.wantRoom(d.Room, was, "DeleteRoom's room")
		if want := sorted(alice.User, bob.User); !slices.Equal(d.Members, want) {
			f.Errorf("DeleteRoom's members = %v, want %v (the current ones)", d.Members, want)
		}
		if want := []string{own.ID}; !slices.Equal(d.Blobs, want) {
			f.Errorf("DeleteRoom's blobs = %v, want %v (not the one another room records too)", d.Blobs, want)
		}
		f.wantGone(r.ID, alice, bob, carol)
		for _, b := range []api.Blob{own, shared} {
			_, err := f.s.GetBlob(f.ctx, r.ID, b.ID)
			wantCode(f, err, api.CodeNotFound, "GetBlob of a deleted room")
		}
		// The other room, and its record of the shared blob, stay.
		wantBlob(f, sharedThere)
		f.unchanged(otherBefore, "DeleteRoom of another room")
		wantKeys(f, f.keys(other.ID, bob, 0), bobsKeys, "bob's keys in the other room")
		f.wantRoomIDs(f.roomsOf(bob), []string{other.ID}, "RoomsOf(bob) after the deletion")
		f.wantRoomIDs(f.roomsOf(alice), nil, "RoomsOf(alice) after the deletion")
	}},

	{"refused_to_a_plain_member", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		b := blobOf(f, r.ID, alice, 1)
		before := f.snapshot(r.ID, alice, bob, carol)
		_, err := f.s.DeleteRoom(f.ctx, r.ID, bob.User)
		wantCode(f, err, api.CodeForbidden, "DeleteRoom by a plain member")
		wantMention(f, err, "room leave", "DeleteRoom by a plain member")
		f.unchanged(before, "DeleteRoom by a plain member")
		wantBlob(f, b)
	}},

	{"refused_to_others", func(f *fixture) {
		r, alice, bob, carol := f.trio()
		f.rekey(f.change(r.ID, 1, alice, []api.User{carol}, alice, bob))
		dave := f.user("dave")
		before := f.snapshot(r.ID, alice, bob, carol, dave)
		for _, c := range []struct {
			what string
			room string
			by   string
		}{
			{"by a former member", r.ID, carol.User},
			{"by a registered non-member", r.ID, dave.User},
			{"by an unknown user", r.ID, f.newIdentity("stranger").UserKey()},
			{"of an unknown room", api.NewRoomID(), alice.User},
			{"of an invalid room id", "not-a-room", alice.User},
		} {
			_, err := f.s.DeleteRoom(f.ctx, c.room, c.by)
			wantCode(f, err, api.CodeNotFound, "DeleteRoom "+c.what)
			f.unchanged(before, "DeleteRoom "+c.what)
		}
	}},

	{"by_another_admin", func(f *fixture) {
		r, alice, bob, carol := f.trio(roomchain.RoleAdmin)
		if _, err := f.s.DeleteRoom(f.ctx, r.ID, bob.User); err != nil {
			f.Fatalf("DeleteRoom by a room admin who is not the creator: %v", err)
		}
		f.wantGone(r.ID, alice, bob, carol)
	}},

	{"by_the_last_member", func(f *fixture) {
		// The admin left: the room has no admin, and its last member may
		// delete it once the others are gone, not before.
		r, alice, bob, carol := f.trio()
		f.rekey(f.change(r.ID, 1, alice, []api.User{alice}, bob, carol))
		before := f.snapshot(r.ID, bob, carol)
		_, err := f.s.DeleteRoom(f.ctx, r.ID, bob.User)
		wantCode(f, err, api.CodeForbidden, "DeleteRoom by a member of a room without admins, not its last")
		f.unchanged(before, "DeleteRoom by a member of a room without admins, not its last")
		f.rekey(f.change(r.ID, 2, carol, []api.User{carol}, bob))
		if _, err := f.s.DeleteRoom(f.ctx, r.ID, bob.User); err != nil {
			f.Fatalf("DeleteRoom by the room's last member: %v", err)
		}
		f.wantGone(r.ID, alice, bob, carol)
	}},

	{"twice_and_changes_after", func(f *fixture) {
		r, alice, bob, _ := f.trio()
		if _, err := f.s.DeleteRoom(f.ctx, r.ID, alice.User); err != nil {
			f.Fatal(err)
		}
		_, err := f.s.DeleteRoom(f.ctx, r.ID, alice.User)
		wantCode(f, err, api.CodeNotFound, "DeleteRoom of a deleted room")
		dave := f.user("dave")
		k := key(r.ID, 1, dave, alice)
		_, err = AddOne(f.ctx, f.s, r.ID, dave.User, 1, &k, f.addStatement(r.ID, alice, dave.Public, roomchain.RoleMember))
		wantCode(f, err, api.CodeNotFound, "AddMembers to a deleted room")
		_, err = f.s.Rekey(f.ctx, f.change(r.ID, 1, alice, nil, alice, bob))
		wantCode(f, err, api.CodeNotFound, "Rekey of a deleted room")
		b := api.Blob{ID: fmt.Sprintf("%064x", 7), Room: r.ID, Size: 1, Uploader: alice.User, CreatedAt: f.now()}
		wantCode(f, f.s.AddBlob(f.ctx, b), api.CodeNotFound, "AddBlob to a deleted room")
		f.wantGone(r.ID, alice, bob, dave)
	}},

	{"races_a_rekey", func(f *fixture) {
		// A deletion and a rekey at once: whichever order they commit
		// in, the room ends deleted, with nothing of it readable.
		r, alice, bob, carol := f.trio()
		rk := f.change(r.ID, 1, alice, []api.User{carol}, alice, bob)
		errs := Race(2, func(i int) error {
			if i == 0 {
				_, err := f.s.DeleteRoom(f.ctx, r.ID, alice.User)
				return err
			}
			_, err := f.s.Rekey(f.ctx, rk)
			return err
		})
		if errs[0] != nil {
			// The rekey committed between the deletion's read and its
			// commit: the deletion lost the race, and is made again.
			wantCode(f, errs[0], api.CodeConflict, "DeleteRoom racing a rekey")
			if _, err := f.s.DeleteRoom(f.ctx, r.ID, alice.User); err != nil {
				f.Fatalf("DeleteRoom after losing a race: %v", err)
			}
		}
		if c := api.ErrorCode(errs[1]); errs[1] != nil && c != api.CodeNotFound && c != api.CodeConflict {
			f.Fatalf("Rekey racing a deletion: %v; want success, not_found or conflict", errs[1])
		}
		f.wantGone(r.ID, alice, bob, carol)
	}},
}

// blobOf records blob number n of room, uploaded by u.
func blobOf(f *fixture, room string, u api.User, n int) api.Blob {
	f.Helper()
	b := api.Blob{ID: fmt.Sprintf("%064x", 1000+n), Room: room, Size: int64(n), Uploader: u.User, CreatedAt: f.now()}
	if err := f.s.AddBlob(f.ctx, b); err != nil {
		f.Fatal(err)
	}
	return b
}

// wantGone fails unless room is deleted: no method finds it or anything
// of it, for any of users.
func (f *fixture) wantGone(room string, users ...api.User) {
	f.Helper()
	_, err := f.s.GetRoom(f.ctx, room)
	wantCode(f, err, api.CodeNotFound, "GetRoom of a deleted room")
	_, err = f.s.Members(f.ctx, room, true)
	wantCode(f, err, api.CodeNotFound, "Members of a deleted room")
	_, err = f.s.Statements(f.ctx, room, 0)
	wantCode(f, err, api.CodeNotFound, "Statements of a deleted room")
	for _, u := range users {
		_, err := f.s.IsMember(f.ctx, room, u.User)
		wantCode(f, err, api.CodeNotFound, "IsMember of a deleted room")
		if ks := f.keys(room, u, 0); len(ks) != 0 {
			f.Fatalf("SealedKeys of %s in a deleted room = %d keys, want none", u.Name, len(ks))
		}
		for _, r := range f.roomsOf(u) {
			if r.ID == room {
				f.Fatalf("RoomsOf(%s) still lists the deleted room", u.Name)
			}
		}
	}
}

// sorted returns keys sorted.
func sorted(keys ...string) []string {
	slices.Sort(keys)
	return keys
}
