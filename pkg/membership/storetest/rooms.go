package storetest

import (
	"bytes"
	"strconv"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

var roomCases = []testCase{
	{"create_encrypted", func(f *fixture) {
		alice := f.user("alice")
		r := api.Room{ID: api.NewRoomID(), Name: "plans", Encrypted: true, Epoch: 1, Creator: alice.User, CreatedAt: f.now()}
		k := key(r.ID, 1, alice, alice)
		st := f.createStatement(r)
		if err := f.s.CreateRoom(f.ctx, r, &k, st); err != nil {
			f.Fatal(err)
		}
		f.accept(r.ID, st)
		f.wantRoom(f.getRoom(r.ID), r, "GetRoom")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0)}, "Members")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0)}, "Members with history")
		wantKeys(f, f.keys(r.ID, alice, 1), []api.SealedKey{k}, "SealedKeys of the creator")
		wantKeys(f, f.keys(r.ID, alice, 0), []api.SealedKey{k}, "all SealedKeys of the creator")
		f.wantStatements(r.ID, 0, []roomchain.Signed{st}, "Statements of a new room")
		rooms := f.roomsOf(alice)
		f.wantRoomIDs(rooms, []string{r.ID}, "RoomsOf(creator)")
		f.wantRoom(rooms[0], r, "RoomsOf(creator)[0]")
		if g := f.getRoom(r.ID); g.HeadSeq != 1 || g.HeadHash != st.HashHex() {
			f.Fatalf("head of a new room %d/%s, want 1/%s", g.HeadSeq, g.HeadHash, st.HashHex())
		}
	}},

	{"create_cleartext", func(f *fixture) {
		alice := f.user("alice")
		r := api.Room{ID: api.NewRoomID(), Name: "lobby", Epoch: 1, Creator: alice.User, CreatedAt: f.now()}
		st := f.createStatement(r)
		if err := f.s.CreateRoom(f.ctx, r, nil, st); err != nil {
			f.Fatal(err)
		}
		f.accept(r.ID, st)
		f.wantRoom(f.getRoom(r.ID), r, "GetRoom")
		wantMembers(f, f.members(r.ID, false), []api.Member{member(alice, 1, 0)}, "Members")
		wantKeys(f, f.keys(r.ID, alice, 0), nil, "SealedKeys of a cleartext room")
		f.wantStatements(r.ID, 0, []roomchain.Signed{st}, "Statements of a new cleartext room")
		f.wantRoomIDs(f.roomsOf(alice), []string{r.ID}, "RoomsOf(creator)")
	}},

	{"epoch_and_members_forced", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		r := api.Room{ID: api.NewRoomID(), Name: "x", Encrypted: true, Epoch: 7, Creator: alice.User, CreatedAt: f.now(),
			HeadSeq: 9, HeadHash: "0123", Members: []api.Member{member(bob, 1, 0)}}
		k := key(r.ID, 1, alice, alice)
		f.createRoom(r, &k)
		want := r
		want.Epoch = 1
		want.Members = nil
		f.wantRoom(f.getRoom(r.ID), want, "GetRoom of a room created with epoch 7 and head 9")
		wantMembers(f, f.members(r.ID, true), []api.Member{member(alice, 1, 0)}, "Members of a room created with members")
		f.wantRoomIDs(f.roomsOf(bob), nil, "RoomsOf(bob)")
	}},

	{"duplicate_id", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		r := f.room(alice, true)
		before := f.snapshot(r.ID, alice, bob)
		dup := api.Room{ID: r.ID, Name: "other", Encrypted: true, Epoch: 1, Creator: bob.User, CreatedAt: f.now()}
		k := key(r.ID, 1, bob, bob)
		wantCode(f, f.s.CreateRoom(f.ctx, dup, &k, f.createStatement(dup)), api.CodeConflict, "CreateRoom with a taken id")
		f.unchanged(before, "CreateRoom with a taken id")
		dup.Encrypted = false
		wantCode(f, f.s.CreateRoom(f.ctx, dup, nil, f.createStatement(dup)), api.CodeConflict, "CreateRoom (cleartext) with a taken id")
		f.unchanged(before, "CreateRoom (cleartext) with a taken id")
		// The creator's own creation statement, sent again.
		same := f.rooms[r.ID].chain[0]
		again := r
		again.CreatedAt = f.now()
		kk := key(r.ID, 1, alice, alice)
		wantCode(f, f.s.CreateRoom(f.ctx, again, &kk, same), api.CodeConflict, "CreateRoom of the same room again")
		f.unchanged(before, "CreateRoom of the same room again")
	}},

	{"refused_rooms", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.revoked("carol")
		dave := f.newIdentity("dave")
		stranger := dave.Public()
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
		byBob := enc
		byBob.Creator = bob.User
		elsewhere := enc
		elsewhere.ID = api.NewRoomID()
		goodSt := f.createStatement(enc)
		statement := func(st roomchain.Signed) *roomchain.Signed { return &st }
		creation := roomchain.Statement{Room: id, Kind: roomchain.KindCreate, Epoch: 1, Name: enc.Name, Encrypted: true,
			Add: []roomchain.Member{{Public: alice.Public, Role: roomchain.RoleAdmin}}}
		tampered := goodSt
		tampered.Body = bytes.Replace(bytes.Clone(goodSt.Body), []byte(`"name":"r"`), []byte(`"name":"s"`), 1)
		if bytes.Equal(tampered.Body, goodSt.Body) {
			f.Fatal("the statement was not tampered with")
		}
		for _, c := range []struct {
			what string
			room api.Room
			key  *api.SealedKey
			st   *roomchain.Signed // nil: the creator's valid statement of room
		}{
			{"an encrypted room without a key", enc, nil, nil},
			{"a cleartext room with a key", plain, &good, nil},
			{"a key for another member", enc, with(func(k *api.SealedKey) { k.Member = bob.User }), nil},
			{"a key for epoch 2", enc, with(func(k *api.SealedKey) { k.Epoch = 2 }), nil},
			{"a key for another room", enc, with(func(k *api.SealedKey) { k.Room = api.NewRoomID() }), nil},
			{"an empty key", enc, with(func(k *api.SealedKey) { k.SealedKey = nil }), nil},
			{"a key sealed by an unknown user", enc, with(func(k *api.SealedKey) { k.Sealer = stranger }), nil},
			{"a revoked creator", byCarol, &api.SealedKey{Room: id, Epoch: 1, Member: carol.User, Sealer: carol.Public, SealedKey: []byte("k")}, nil},
			{"an unknown creator", byStranger, &api.SealedKey{Room: id, Epoch: 1, Member: stranger.User, Sealer: alice.Public, SealedKey: []byte("k")}, nil},
			// The creation statement.
			{"no statement", enc, &good, &roomchain.Signed{}},
			{"a statement for another room", enc, &good, statement(f.createStatement(elsewhere))},
			{"a statement creating it for another user", enc, &good, statement(f.createStatement(byBob))},
			{"a statement signed by another user", enc, &good, statement(f.signWith(f.identity(bob.User), alice.User, creation))},
			{"a tampered statement", enc, &good, &tampered},
			{"a statement with no signature", enc, &good, &roomchain.Signed{Body: goodSt.Body}},
			{"an add statement", enc, &good, statement(f.sign(alice.User, func() roomchain.Statement {
				st := creation
				st.Kind = roomchain.KindAdd
				return st
			}()))},
			{"a creation statement at epoch 2", enc, &good, statement(f.sign(alice.User, func() roomchain.Statement {
				st := creation
				st.Epoch = 2
				return st
			}()))},
			{"a creation statement naming a second member", enc, &good, statement(f.sign(alice.User, func() roomchain.Statement {
				st := creation
				st.Add = []roomchain.Member{st.Add[0], {Public: bob.Public, Role: roomchain.RoleMember}}
				return st
			}()))},
			{"a creation statement making its creator a plain member", enc, &good, statement(f.sign(alice.User, func() roomchain.Statement {
				st := creation
				st.Add = []roomchain.Member{{Public: alice.Public, Role: roomchain.RoleMember}}
				return st
			}()))},
			{"a creation statement naming another admin", enc, &good, statement(f.sign(alice.User, func() roomchain.Statement {
				st := creation
				st.Admins = []string{alice.User, bob.User}
				return st
			}()))},
			{"a creation statement naming no admin", enc, &good, statement(f.sign(alice.User, func() roomchain.Statement {
				st := creation
				st.Admins = []string{}
				return st
			}()))},
		} {
			st := goodSt
			switch {
			case c.st != nil:
				st = *c.st
			case c.room.Creator != alice.User || c.room.Encrypted != enc.Encrypted:
				st = f.createStatement(c.room)
			}
			err := f.s.CreateRoom(f.ctx, c.room, c.key, st)
			wantCode(f, err, api.CodeInvalid, "CreateRoom with "+c.what)
			_, err = f.s.GetRoom(f.ctx, id)
			wantCode(f, err, api.CodeNotFound, "GetRoom after CreateRoom with "+c.what)
			_, err = f.s.Statements(f.ctx, id, 0)
			wantCode(f, err, api.CodeNotFound, "Statements after CreateRoom with "+c.what)
			f.unchanged(before, "CreateRoom with "+c.what)
		}
		// The same room is then accepted.
		if err := f.s.CreateRoom(f.ctx, enc, &good, goodSt); err != nil {
			f.Fatalf("CreateRoom after the refused ones: %v", err)
		}
		f.accept(id, goodSt)
		f.wantStatements(id, 0, []roomchain.Signed{goodSt}, "Statements after the refused ones")
	}},

	{"rooms_of", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		carol := f.user("carol")
		f.wantRoomIDs(f.roomsOf(alice), nil, "RoomsOf before any room")
		base := f.now()
		// Created out of order: RoomsOf sorts by creation time.
		r3 := f.roomAt(alice, true, base.Add(3*time.Hour))
		r1 := f.roomAt(alice, false, base.Add(1*time.Hour))
		r2 := f.roomAt(bob, true, base.Add(2*time.Hour))
		f.add(r2.ID, alice, bob)
		f.add(r3.ID, bob, alice)
		f.wantRoomIDs(f.roomsOf(alice), []string{r1.ID, r2.ID, r3.ID}, "RoomsOf(alice)")
		f.wantRoomIDs(f.roomsOf(bob), []string{r2.ID, r3.ID}, "RoomsOf(bob)")
		f.wantRoomIDs(f.roomsOf(carol), nil, "RoomsOf(carol)")
		f.wantRoomIDs(f.roomsOf(api.User{}), nil, "RoomsOf(\"\")")
		for _, r := range f.roomsOf(alice) {
			if len(r.Members) != 0 {
				f.Fatalf("RoomsOf returned room %s with members", r.ID)
			}
		}
		// A rekey shows in RoomsOf; a removal takes the room out.
		f.rekey(f.change(r3.ID, 1, alice, []api.User{bob}, alice))
		rooms := f.roomsOf(alice)
		f.wantRoomIDs(rooms, []string{r1.ID, r2.ID, r3.ID}, "RoomsOf(alice) after a rekey")
		if rooms[2].Epoch != 2 {
			f.Fatalf("RoomsOf shows epoch %d after a rekey, want 2", rooms[2].Epoch)
		}
		f.wantRoomIDs(f.roomsOf(bob), []string{r2.ID}, "RoomsOf(bob) after his removal")
	}},

	{"get_room_not_found", func(f *fixture) {
		alice := f.user("alice")
		_, err := f.s.GetRoom(f.ctx, api.NewRoomID())
		wantCode(f, err, api.CodeNotFound, "GetRoom of an unknown room")
		_, err = f.s.GetRoom(f.ctx, "")
		wantCode(f, err, api.CodeNotFound, "GetRoom of the empty id")
		_, err = f.s.Members(f.ctx, api.NewRoomID(), false)
		wantCode(f, err, api.CodeNotFound, "Members of an unknown room")
		_, err = f.s.Members(f.ctx, api.NewRoomID(), true)
		wantCode(f, err, api.CodeNotFound, "Members (history) of an unknown room")
		_, err = f.s.Statements(f.ctx, api.NewRoomID(), 0)
		wantCode(f, err, api.CodeNotFound, "Statements of an unknown room")
		_, err = f.s.Statements(f.ctx, api.NewRoomID(), 5)
		wantCode(f, err, api.CodeNotFound, "Statements after 5 of an unknown room")
		_, err = f.s.IsMember(f.ctx, api.NewRoomID(), alice.User)
		wantCode(f, err, api.CodeNotFound, "IsMember of an unknown room")
		_, err = f.s.IsMember(f.ctx, "", alice.User)
		wantCode(f, err, api.CodeNotFound, "IsMember of the empty room id")
	}},

	{"refused_room_names", func(f *fixture) {
		// Names that reorder, hide or escape text (api.CheckRoomName), with
		// a creation statement that names them as the room does: refused,
		// and nothing is stored.
		alice := f.user("alice")
		before := f.snapshot("", alice)
		for _, name := range []string{
			"ops\u202etxt.exe", "a\u2066b\u2069", "a\u200eb", "a\u200fb", "a\u061cb", "a\u202ab", "a\u202db",
			"a\u200bb", "a\u200cb", "a\u200db", "a\u2060b", "\ufeffops", "a\u00adb", "a\u3164b", "a\u034fb", "a\ufe0fb", "a\U000e0041b",
			"a\x1b[31mb", "a\x00b", "a\tb", "a\nb", "a\x7fb", "a\u0085b", "a\u2028b", "a\u00a0b", "a\ue000b", "a\xffb", "a\ufffdb",
		} {
			r := api.Room{ID: api.NewRoomID(), Name: name, Encrypted: false, Epoch: 1, Creator: alice.User, CreatedAt: f.now()}
			err := f.s.CreateRoom(f.ctx, r, nil, f.createStatement(r))
			what := "CreateRoom named " + strconv.Quote(name)
			wantCode(f, err, api.CodeInvalid, what)
			wantMention(f, err, "U+", what)
			f.unchanged(before, what)
			_, err = f.s.GetRoom(f.ctx, r.ID)
			wantCode(f, err, api.CodeNotFound, "GetRoom after "+what)
		}
		// Letters of every script, marks, symbols and plain emoji are names.
		for _, name := range []string{"ops", "Ops room ✓", "café", "cafe\u0301", "חדר", "غرفة", "会议室", "🚀 launch"} {
			r := api.Room{ID: api.NewRoomID(), Name: name, Epoch: 1, Creator: alice.User, CreatedAt: f.now()}
			f.createRoom(r, nil)
		}
	}},
}
