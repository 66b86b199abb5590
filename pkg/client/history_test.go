package client_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// These tests take the side of a malicious server, or of someone who edits
// its database: each tampering must be caught by the clients, with nothing
// sealed to, or shown from, anyone outside the verified membership.

// db opens the bus's SQLite file directly, as an attacker with the disk.
func db(t testing.TB, bus *testbus.Bus) *sql.DB {
	t.Helper()
	d, err := sql.Open("sqlite", bus.DBPath+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func exec(t testing.TB, d *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := d.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func wantHistoryError(t testing.TB, err error, mention string) {
	t.Helper()
	var he *client.HistoryError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v; want a HistoryError", err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Fatalf("err = %q; want it to mention %q", err, mention)
	}
}

func TestGhostMemberIsNeverTrusted(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	ghostID, ghost := bus.User(t, "ghost", api.RoleMember)
	mustSend(t, alice, room, "before the ghost")
	// The attacker adds a membership row the history never signed.
	exec(t, db(t, bus), `INSERT INTO members (room, user_key, since) VALUES (?, ?, 1)`, room, ghostID.UserKey())

	_, err := bob.Send(ctxT(t), room, client.Message{Text: "secret"})
	wantHistoryError(t, err, "not in the signed history")
	_, err = alice.Verify(ctxT(t), room)
	wantHistoryError(t, err, "not in the signed history")
	_, err = alice.Rekey(ctxT(t), room)
	wantHistoryError(t, err, "not in the signed history")
	if _, err := bob.Room(ctxT(t), room); err != nil {
		t.Fatal(err) // the API still answers; only verification refuses
	}
	// No honest client sealed anything to the ghost, and it reads nothing.
	keys, err := bus.Store.SealedKeys(context.Background(), room, ghostID.UserKey(), 0)
	if err != nil || len(keys) != 0 {
		t.Fatalf("ghost holds %d sealed keys (%v); want none", len(keys), err)
	}
	ghost.Read(ctxT(t), room, client.ReadOptions{}, func(r client.Received) error {
		if r.Text != "" {
			t.Errorf("ghost read %q", r.Text)
		}
		return nil
	})
}

func TestSwappedKeysAreDetected(t *testing.T) {
	bus, alice, _, room := twoMembers(t)
	mallory := testbus.NewIdentity(t, "mallory")
	d := db(t, bus)

	// A member's xkey swapped in the directory: the member list no longer
	// matches the signed history.
	exec(t, d, `UPDATE users SET xkey = ? WHERE name = 'bob'`, mallory.Public().XKey)
	_, err := alice.Rekey(ctxT(t), room)
	wantHistoryError(t, err, "other keys")

	// A user not yet in the room, with an identity swapped wholesale for the
	// attacker's (a valid binding, other keys): the pinned keys catch it.
	bus.User(t, "carol", api.RoleMember)
	room2, err := alice.CreateRoom(ctxT(t), "second", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(ctxT(t), room2.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	room3, err := alice.CreateRoom(ctxT(t), "third", false)
	if err != nil {
		t.Fatal(err)
	}
	fake, _ := identity.Generate("carol", nil)
	fp := fake.Public()
	exec(t, d, `PRAGMA foreign_keys = OFF`)
	exec(t, d, `UPDATE users SET user_key = ?, xkey = ?, binding = ? WHERE name = 'carol'`, fp.User, fp.XKey, fp.Binding)
	if _, err := alice.AddMember(ctxT(t), room3.ID, "carol"); !errors.Is(err, client.ErrKeyChanged) {
		t.Fatalf("AddMember of a swapped carol = %v; want ErrKeyChanged", err)
	}
	// And a swapped xkey alone breaks the binding.
	exec(t, d, `UPDATE users SET xkey = ? WHERE name = 'carol'`, mallory.Public().XKey)
	if _, err := alice.AddMember(ctxT(t), room3.ID, "carol"); err == nil || !strings.Contains(err.Error(), "binding") {
		t.Fatalf("AddMember with a swapped xkey = %v; want a binding error", err)
	}
}

func TestRolledBackEpochIsDetected(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	if _, err := alice.Rekey(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	exec(t, db(t, bus), `UPDATE rooms SET epoch = 1 WHERE id = ?`, room)
	_, err := bob.Send(ctxT(t), room, client.Message{Text: "x"})
	wantHistoryError(t, err, "signed history proves epoch 2")
}

func TestDroppedRemovalIsDetected(t *testing.T) {
	bus, alice, _, room := twoMembers(t)
	_, carol := bus.User(t, "carol", api.RoleMember)
	if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, carol, room, "carol was here") // carol verifies and pins the history
	if _, err := alice.RemoveMember(ctxT(t), room, "bob"); err != nil {
		t.Fatal(err)
	}
	if v, err := carol.Verify(ctxT(t), room); err != nil || v.HeadSeq != 4 {
		t.Fatalf("carol verified head %d, %v; want the removal, statement 4", v.HeadSeq, err)
	}

	// The attacker drops the removal and restores bob, rolling the room back.
	d := db(t, bus)
	exec(t, d, `DELETE FROM statements WHERE room = ? AND seq = 4`, room)
	var hash string
	if err := d.QueryRow(`SELECT hash FROM statements WHERE room = ? AND seq = 3`, room).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	exec(t, d, `UPDATE rooms SET head_seq = 3, head_hash = ?, epoch = 1 WHERE id = ?`, hash, room)
	exec(t, d, `UPDATE members SET until = NULL WHERE room = ? AND user_key = (SELECT user_key FROM users WHERE name = 'bob')`, room)
	exec(t, d, `DELETE FROM sealed_keys WHERE room = ? AND epoch = 2`, room)

	// carol's client remembers statement 4 and refuses the rolled-back room.
	_, err := carol.Rekey(ctxT(t), room)
	wantHistoryError(t, err, "rolled back")
}

func TestAlteredStatementsAreDetected(t *testing.T) {
	for _, tc := range []struct {
		name, query, mention string
	}{
		{"signature", `UPDATE statements SET sig = zeroblob(64) WHERE room = ? AND seq = 2`, "signature"},
		{"order", `UPDATE statements SET body = (SELECT body FROM statements s WHERE s.room = statements.room AND s.seq = 5 - statements.seq), sig = (SELECT sig FROM statements s WHERE s.room = statements.room AND s.seq = 5 - statements.seq) WHERE room = ? AND seq IN (2, 3)`, "out of order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus, alice, bob, room := twoMembers(t)
			bus.User(t, "carol", api.RoleMember)
			if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
				t.Fatal(err)
			}
			exec(t, db(t, bus), tc.query, room)
			_, err := bob.Send(ctxT(t), room, client.Message{Text: "x"})
			wantHistoryError(t, err, tc.mention)
		})
	}
}

// TestForkedHistoriesAreDetected: the server shows two members different
// histories, each validly signed (the admin signed two different changes
// from the same head; the server kept one for each audience). They notice
// as soon as one reads the other's message.
func TestForkedHistoriesAreDetected(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{})
	aliceID, alice := bus.User(t, "alice", api.RoleAdmin)
	_, bob := bus.User(t, "bob", api.RoleMember)
	_, carol := bus.User(t, "carol", api.RoleMember)
	daveID := bus.Identity(t, "dave", api.RoleMember)
	eveID := bus.Identity(t, "eve", api.RoleMember)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "carol"} {
		if _, err := alice.AddMember(ctxT(t), room.ID, u); err != nil {
			t.Fatal(err)
		}
	}
	mustSend(t, bob, room.ID, "hello") // bob verifies statements 1..3
	if got := readAll(t, carol, room.ID); len(got) != 1 || got[0].Text != "hello" {
		t.Fatalf("carol read %+v", got)
	}
	// View A (carol's): alice adds dave (statement 4).
	if _, err := alice.AddMember(ctxT(t), room.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	if v, err := carol.Verify(ctxT(t), room.ID); err != nil || v.HeadSeq != 4 {
		t.Fatalf("carol verified head %d, %v; want 4", v.HeadSeq, err)
	}
	mustSend(t, carol, room.ID, "carol on view A")
	// The server now swaps in view B for everyone else: statement 4 adds eve
	// instead, a change alice also signed from the same head (the attacker
	// kept it back).
	ctx := context.Background()
	sts, err := bus.Store.Statements(ctx, room.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	st3, err := roomchain.Verify(room.ID, sts[:3])
	if err != nil {
		t.Fatal(err)
	}
	eve := []roomchain.Member{{Public: eveID.Public(), Role: roomchain.RoleMember}}
	viewB, err := roomchain.Sign(roomchain.Statement{Version: roomchain.Version, Room: room.ID, Seq: 4, Prev: st3.Head, Kind: roomchain.KindAdd, Actor: aliceID.UserKey(), Epoch: 1,
		Add: eve, Admins: st3.AdminsAfter(eve, nil), Time: time.Now().UnixMilli()}, aliceID.SigningKey())
	if err != nil {
		t.Fatal(err)
	}
	d := db(t, bus)
	exec(t, d, `UPDATE statements SET body = ?, sig = ?, hash = ? WHERE room = ? AND seq = 4`, viewB.Body, viewB.Sig, viewB.HashHex(), room.ID)
	exec(t, d, `UPDATE rooms SET head_hash = ? WHERE id = ?`, viewB.HashHex(), room.ID)
	exec(t, d, `DELETE FROM members WHERE room = ? AND user_key = ?`, room.ID, daveID.UserKey())
	exec(t, d, `INSERT INTO members (room, user_key, since) VALUES (?, ?, 1)`, room.ID, eveID.UserKey())
	// bob never saw statement 4; he verifies view B and sends.
	if v, err := bob.Verify(ctxT(t), room.ID); err != nil || v.HeadSeq != 4 {
		t.Fatalf("bob verified head %d, %v; want 4", v.HeadSeq, err)
	}
	mustSend(t, bob, room.ID, "bob on view B")
	var forked bool
	rerr := carol.Read(ctxT(t), room.ID, client.ReadOptions{}, func(r client.Received) error {
		if r.Text == "bob on view B" {
			t.Error("carol showed a message from another view of the room without noticing")
		}
		if errors.Is(r.Err, client.ErrForked) {
			forked = true
		}
		return nil
	})
	// carol's own client also refuses the rewritten history outright.
	if _, err := carol.Rekey(ctxT(t), room.ID); err == nil {
		t.Fatal("carol rekeyed a room whose history the server rewrote")
	}
	// carol notices either way: from bob's message if she reads it on her
	// cached view, or from the server's head if a change announcement made
	// her refresh first.
	var he *client.HistoryError
	if !forked && !errors.As(rerr, &he) {
		t.Fatalf("carol did not detect the fork (read error %v)", rerr)
	}
}

// TestSwappedRegisteredUserIsRefused: an identity swapped wholesale in the
// store (new keys, a valid binding, the same name) for a user an admin
// registered over the API no longer matches the admin's signed
// registration, even for a client that never saw the user before.
func TestSwappedRegisteredUserIsRefused(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{})
	aliceID, alice := bus.User(t, "alice", api.RoleAdmin)
	dave := testbus.NewIdentity(t, "dave")
	if _, err := alice.AddUser(ctxT(t), dave.Public().Token(), false); err != nil {
		t.Fatal(err)
	}
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	fake := testbus.NewIdentity(t, "dave")
	fp := fake.Public()
	d := db(t, bus)
	exec(t, d, `UPDATE users SET user_key = ?, xkey = ?, binding = ? WHERE name = 'dave'`, fp.User, fp.XKey, fp.Binding)
	fresh := bus.Client(t, aliceID) // no pins: first sight of dave
	if _, err := fresh.AddMember(ctxT(t), room.ID, "dave"); !errors.Is(err, identity.ErrBadRegistration) {
		t.Fatalf("AddMember of a swapped registered user = %v; want ErrBadRegistration", err)
	}
	keys, _ := bus.Store.SealedKeys(context.Background(), room.ID, fp.User, 0)
	if len(keys) != 0 {
		t.Fatal("a key was sealed to the swapped identity")
	}
}
