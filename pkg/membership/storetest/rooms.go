package storetest

import (
	"time"

	"github.com/enmanuel/unibus/pkg/api"
)

var roomCases = []testCase{
	{"create_encrypted", func(f *fixture) {
		alice := f.user("alice")
		r := api.Room{ID: api.NewRoomID(), Name: "plans", Encrypted: true, Epoch: 1, Creator: alice.User, CreatedAt: f.now()}
		k := key(r.ID, 1, alice, alice)
		if err := f.s.CreateRoom(f.ctx, r, &k); err != nil {
			f.Fatal(err)
		}
		wantRoom(f, f.getRoom(r.ID), r, "GetRoom")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0)}, "Members")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0)}, "Members with history")
		wantKeys(f, f.keys(r.ID, alice, 1), []api.SealedKey{k}, "SealedKeys of the creator")
		wantKeys(f, f.keys(r.ID, alice, 0), []api.SealedKey{k}, "all SealedKeys of the creator")
		rooms := f.roomsOf(alice)
		wantRoomIDs(f, rooms, []string{r.ID}, "RoomsOf(creator)")
		wantRoom(f, rooms[0], r, "RoomsOf(creator)[0]")
	}},

	{"create_cleartext", func(f *fixture) {
		alice := f.user("alice")
		r := api.Room{ID: api.NewRoomID(), Name: "lobby", Epoch: 1, Creator: alice.User, CreatedAt: f.now()}
		if err := f.s.CreateRoom(f.ctx, r, nil); err != nil {
			f.Fatal(err)
		}
		wantRoom(f, f.getRoom(r.ID), r, "GetRoom")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0)}, "Members")
		wantKeys(f, f.keys(r.ID, alice, 0), nil, "SealedKeys of a cleartext room")
		wantRoomIDs(f, f.roomsOf(alice), []string{r.ID}, "RoomsOf(creator)")
	}},

	{"epoch_and_members_forced", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		r := api.Room{ID: api.NewRoomID(), Name: "x", Encrypted: true, Epoch: 7, Creator: alice.User, CreatedAt: f.now(),
			Members: []api.Member{member(bob, 1, 0)}}
		k := key(r.ID, 1, alice, alice)
		if err := f.s.CreateRoom(f.ctx, r, &k); err != nil {
			f.Fatal(err)
		}
		want := r
		want.Epoch = 1
		want.Members = nil
		wantRoom(f, f.getRoom(r.ID), want, "GetRoom of a room created with epoch 7")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0)}, "Members of a room created with members")
		wantRoomIDs(f, f.roomsOf(bob), nil, "RoomsOf(bob)")
	}},

	{"duplicate_id", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		r := f.room(alice, true)
		before := f.snapshot(r.ID, alice, bob)
		dup := api.Room{ID: r.ID, Name: "other", Encrypted: true, Epoch: 1, Creator: bob.User, CreatedAt: f.now()}
		k := key(r.ID, 1, bob, bob)
		wantCode(f, f.s.CreateRoom(f.ctx, dup, &k), api.CodeConflict, "CreateRoom with a taken id")
		f.unchanged(before, "CreateRoom with a taken id")
		dup.Encrypted = false
		wantCode(f, f.s.CreateRoom(f.ctx, dup, nil), api.CodeConflict, "CreateRoom (cleartext) with a taken id")
		f.unchanged(before, "CreateRoom (cleartext) with a taken id")
	}},

	{"refused_rooms", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.revoked("carol")
		stranger := f.newIdentity("dave").Public()
		before := f.snapshot("", alice, bob, carol)
		id := api.NewRoomID()
		enc := api.Room{ID: id, Name: "r", Encrypted: true, Epoch: 1, Creator: alice.User, CreatedAt: f.now()}
		plain := enc
		plain.Encrypted = false
		good := key(id, 1, alice, alice)
		with := func(mod func(k *api.SealedKey)) *api.SealedKey {
			k := good
			mod(&k)
			return &k
		}
		byCarol := enc
		byCarol.Creator = carol.User
		byStranger := enc
		byStranger.Creator = stranger.User
		for _, c := range []struct {
			what string
			room api.Room
			key  *api.SealedKey
		}{
			{"an encrypted room without a key", enc, nil},
			{"a cleartext room with a key", plain, &good},
			{"a key for another member", enc, with(func(k *api.SealedKey) { k.Member = bob.User })},
			{"a key for epoch 2", enc, with(func(k *api.SealedKey) { k.Epoch = 2 })},
			{"a key for another room", enc, with(func(k *api.SealedKey) { k.Room = api.NewRoomID() })},
			{"an empty key", enc, with(func(k *api.SealedKey) { k.SealedKey = nil })},
			{"a key sealed by an unknown user", enc, with(func(k *api.SealedKey) { k.Sealer = stranger })},
			{"a revoked creator", byCarol, &api.SealedKey{Room: id, Epoch: 1, Member: carol.User, Sealer: carol.Public, SealedKey: []byte("k")}},
			{"an unknown creator", byStranger, &api.SealedKey{Room: id, Epoch: 1, Member: stranger.User, Sealer: alice.Public, SealedKey: []byte("k")}},
		} {
			err := f.s.CreateRoom(f.ctx, c.room, c.key)
			wantCode(f, err, api.CodeInvalid, "CreateRoom with "+c.what)
			_, err = f.s.GetRoom(f.ctx, id)
			wantCode(f, err, api.CodeNotFound, "GetRoom after CreateRoom with "+c.what)
			f.unchanged(before, "CreateRoom with "+c.what)
		}
		// The same room is then accepted.
		if err := f.s.CreateRoom(f.ctx, enc, &good); err != nil {
			f.Fatalf("CreateRoom after the refused ones: %v", err)
		}
	}},

	{"rooms_of", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.user("carol")
		wantRoomIDs(f, f.roomsOf(alice), nil, "RoomsOf before any room")
		base := f.now()
		mk := func(at time.Time, creator api.User, encrypted bool) api.Room {
			r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: encrypted, Epoch: 1, Creator: creator.User, CreatedAt: at}
			var k *api.SealedKey
			if encrypted {
				kk := key(r.ID, 1, creator, creator)
				k = &kk
			}
			if err := f.s.CreateRoom(f.ctx, r, k); err != nil {
				f.Fatal(err)
			}
			return r
		}
		// Created out of order: RoomsOf sorts by creation time.
		r3 := mk(base.Add(3*time.Hour), alice, true)
		r1 := mk(base.Add(1*time.Hour), alice, false)
		r2 := mk(base.Add(2*time.Hour), bob, true)
		f.add(r2.ID, alice, bob)
		f.add(r3.ID, bob, alice)
		wantRoomIDs(f, f.roomsOf(alice), []string{r1.ID, r2.ID, r3.ID}, "RoomsOf(alice)")
		wantRoomIDs(f, f.roomsOf(bob), []string{r2.ID, r3.ID}, "RoomsOf(bob)")
		wantRoomIDs(f, f.roomsOf(carol), nil, "RoomsOf(carol)")
		wantRoomIDs(f, f.roomsOf(api.User{}), nil, "RoomsOf(\"\")")
		for _, r := range f.roomsOf(alice) {
			if len(r.Members) != 0 {
				f.Fatalf("RoomsOf returned room %s with members", r.ID)
			}
		}
		// A rekey shows in RoomsOf; a removal takes the room out.
		f.rekey(change(r3.ID, 1, alice, []api.User{bob}, alice))
		rooms := f.roomsOf(alice)
		wantRoomIDs(f, rooms, []string{r1.ID, r2.ID, r3.ID}, "RoomsOf(alice) after a rekey")
		if rooms[2].Epoch != 2 {
			f.Fatalf("RoomsOf shows epoch %d after a rekey, want 2", rooms[2].Epoch)
		}
		wantRoomIDs(f, f.roomsOf(bob), []string{r2.ID}, "RoomsOf(bob) after his removal")
	}},

	{"get_room_not_found", func(f *fixture) {
		_, err := f.s.GetRoom(f.ctx, api.NewRoomID())
		wantCode(f, err, api.CodeNotFound, "GetRoom of an unknown room")
		_, err = f.s.GetRoom(f.ctx, "")
		wantCode(f, err, api.CodeNotFound, "GetRoom of the empty id")
		_, err = f.s.Members(f.ctx, api.NewRoomID(), false)
		wantCode(f, err, api.CodeNotFound, "Members of an unknown room")
		_, err = f.s.Members(f.ctx, api.NewRoomID(), true)
		wantCode(f, err, api.CodeNotFound, "Members (history) of an unknown room")
	}},
}
