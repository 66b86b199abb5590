package membership_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// testLogger discards unless UNIBUS_TEST_LOG=debug.
func testLogger() *slog.Logger {
	if os.Getenv("UNIBUS_TEST_LOG") == "debug" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startNATS starts an in-process NATS server with JetStream, its store in
// a temporary directory, stopped when the test ends.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := embeddednats.StartServer(embeddednats.ServerConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// connect opens a connection to ns of its own, as one membershipd node
// has, closed when the test ends.
func connect(t testing.TB, ns *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(embeddednats.ClientURL(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

var prefixes atomic.Int64

// freshPrefix is a bucket prefix no other test uses.
func freshPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

// openKVStore opens a KV store on ns's buckets of prefix, on a connection
// of its own, closed when the test ends.
func openKVStore(t testing.TB, ns *server.Server, prefix string) membership.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := membership.OpenKV(ctx, connect(t, ns), membership.KVConfig{Prefix: prefix, Logger: testLogger()})
	if err != nil {
		t.Fatalf("OpenKV: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestKVConformance(t *testing.T) {
	ns := startNATS(t)
	storetest.Run(t, func(t testing.TB) membership.Store {
		return openKVStore(t, ns, freshPrefix())
	})
}

func TestOpenKVIsIdempotent(t *testing.T) {
	ns := startNATS(t)
	prefix := freshPrefix()
	a := openKVStore(t, ns, prefix)
	alice := newUser(t, "alice")
	if err := a.CreateUser(context.Background(), alice); err != nil {
		t.Fatal(err)
	}
	b := openKVStore(t, ns, prefix) // the buckets exist: opened, not reset
	if got, err := b.GetUser(context.Background(), "alice"); err != nil || got.User != alice.User {
		t.Fatalf("GetUser through a second open = %v, %v", got.User, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := membership.OpenKV(ctx, connect(t, ns), membership.KVConfig{Prefix: "bad prefix"}); err == nil {
		t.Fatal("OpenKV accepted a prefix with a space")
	}
}

// waitFor polls cond every few milliseconds until it holds, failing the
// test after total.
func waitFor(t testing.TB, total time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", total, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKVTwoNodes runs two stores on the same buckets, as two membershipd
// nodes do, and checks each sees the other's writes within a second.
func TestKVTwoNodes(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	prefix := freshPrefix()
	a, b := openKVStore(t, ns, prefix), openKVStore(t, ns, prefix)

	aliceID, alice := newIdentity(t, "alice")
	bobID, bob := newIdentity(t, "bob")
	for _, u := range []api.User{alice, bob} {
		if err := a.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Second, "node b does not authorize the users node a created", func() bool {
		return b.IsAuthorized(alice.User) && b.IsAuthorized(bob.User)
	})

	// A room created through a, a member added through b.
	r := api.Room{ID: api.NewRoomID(), Name: "plans", Encrypted: true, Creator: alice.User, CreatedAt: time.Now()}
	c := createRoom(t, a, aliceID, r)
	waitFor(t, time.Second, "node b does not see the room node a created", func() bool {
		got, err := b.GetRoom(ctx, r.ID)
		return err == nil && got.HeadSeq == 1
	})
	add := c.add(aliceID, bob.Public)
	k := sealed(r.ID, 1, bob, alice)
	if _, err := storetest.AddOne(ctx, b, r.ID, bob.User, 1, &k, add); err != nil {
		t.Fatalf("AddMembers through node b: %v", err)
	}
	c.accept(add)
	waitFor(t, time.Second, "node a does not see the member node b added", func() bool {
		ok, err := a.IsMember(ctx, r.ID, bob.User)
		rooms, _ := a.RoomsOf(ctx, bob.User)
		return err == nil && ok && len(rooms) == 1
	})

	// bob removed through a: b sees him gone.
	rm := c.rekey(aliceID, bob.User)
	if _, err := a.Rekey(ctx, membership.Rekey{Room: r.ID, FromEpoch: 1, Remove: []string{bob.User}, Keys: []api.SealedKey{sealed(r.ID, 2, alice, alice)}, Statement: rm}); err != nil {
		t.Fatal(err)
	}
	c.accept(rm)
	waitFor(t, time.Second, "node b still has bob a member after node a removed him", func() bool {
		ok, err := b.IsMember(ctx, r.ID, bob.User)
		rooms, _ := b.RoomsOf(ctx, bob.User)
		got, _ := b.GetRoom(ctx, r.ID)
		return err == nil && !ok && len(rooms) == 0 && got.Epoch == 2
	})
	// Reads that are not cached see the change at once.
	ms, err := b.Members(ctx, r.ID, true)
	i := slices.IndexFunc(ms, func(m api.Member) bool { return m.User == bob.User })
	if err != nil || len(ms) != 2 || i < 0 || ms[i].Until != 2 {
		t.Fatalf("node b's member history after the removal: %+v, %v", ms, err)
	}
	if sts, err := b.Statements(ctx, r.ID, 0); err != nil || !sameStatements(sts, c.all) {
		t.Fatalf("node b's statements: %d, %v", len(sts), err)
	}

	// bob revoked through b: a refuses him within a second.
	if _, err := b.RevokeUser(ctx, bob.User, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "node a still authorizes bob after node b revoked him", func() bool {
		return !a.IsAuthorized(bob.User)
	})
	if u, err := a.GetUser(ctx, "bob"); err != nil || u.Status != api.StatusRevoked {
		t.Fatalf("node a's GetUser(bob) = %v, %v; want revoked", u.Status, err)
	}
	_ = bobID
}

// TestKVConcurrentRekeysTwoNodes rekeys one room from the same epoch
// through two nodes at once, many times: exactly one wins, the other
// gets conflict, and every remaining member's key of the winner is
// readable through both.
func TestKVConcurrentRekeysTwoNodes(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	prefix := freshPrefix()
	nodes := []membership.Store{openKVStore(t, ns, prefix), openKVStore(t, ns, prefix)}

	const n = 30
	ids := make([]*identity.Identity, n)
	users := make([]api.User, n)
	for i := range ids {
		ids[i], users[i] = newIdentity(t, fmt.Sprintf("user%02d", i))
		if err := nodes[0].CreateUser(ctx, users[i]); err != nil {
			t.Fatal(err)
		}
	}
	r := api.Room{ID: api.NewRoomID(), Name: "race", Encrypted: true, Creator: users[0].User, CreatedAt: time.Now()}
	c := createRoom(t, nodes[0], ids[0], r)
	var added []roomchain.Member
	a := membership.Add{Room: r.ID, Epoch: 1}
	for _, u := range users[1:] {
		added = append(added, roomchain.Member{Public: u.Public, Role: roomchain.RoleMember})
		a.Users = append(a.Users, u.User)
		a.Keys = append(a.Keys, sealed(r.ID, 1, u, users[0]))
	}
	a.Statement = c.sign(ids[0], roomchain.KindAdd, 1, added, nil, "", false)
	if _, err := nodes[1].AddMembers(ctx, a); err != nil {
		t.Fatal(err)
	}
	c.accept(a.Statement)

	for round := range 10 {
		from := c.state.Epoch
		// Each node's change: a rekey by a different member, keys tagged
		// with the node.
		changes := make([]membership.Rekey, 2)
		for i := range changes {
			actor := ids[i]
			st := c.rekey(actor)
			ch := membership.Rekey{Room: r.ID, FromEpoch: from, Statement: st}
			for _, u := range users {
				k := sealed(r.ID, from+1, u, users[i])
				k.SealedKey = fmt.Appendf(nil, "round %d node %d for %s", round, i, u.Name)
				ch.Keys = append(ch.Keys, k)
			}
			changes[i] = ch
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = nodes[i].Rekey(ctx, changes[i])
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch api.ErrorCode(err) {
			case "":
				if winner >= 0 {
					t.Fatalf("round %d: both concurrent rekeys succeeded", round)
				}
				winner = i
			case api.CodeConflict:
			default:
				t.Fatalf("round %d: rekey through node %d: %v; want success or conflict", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no rekey succeeded: %v", round, errs)
		}
		c.accept(changes[winner].Statement)
		for _, node := range nodes {
			for _, u := range users {
				ks, err := node.SealedKeys(ctx, r.ID, u.User, from+1)
				want := fmt.Appendf(nil, "round %d node %d for %s", round, winner, u.Name)
				if err != nil || len(ks) != 1 || !bytes.Equal(ks[0].SealedKey, want) {
					t.Fatalf("round %d: %s's key of epoch %d = %+v, %v; want the winner's", round, u.Name, from+1, ks, err)
				}
			}
			sts, err := node.Statements(ctx, r.ID, 0)
			if err != nil || !sameStatements(sts, c.all) {
				t.Fatalf("round %d: history differs from the accepted one (%d statements, %v)", round, len(sts), err)
			}
		}
	}
	// Every loser purged what it wrote.
	if removed, err := nodes[0].(membership.KVSweeper).Sweep(ctx, 0); err != nil || removed != 0 {
		t.Fatalf("Sweep after the races = %d, %v; want nothing left behind", removed, err)
	}
}

// TestKVOvertakenBeforeCommit holds one node's rekey after its data is
// written and before its commit while another node's rekey of the same
// room commits: the first gets conflict, its data is purged, and the
// room is the second's, whole.
func TestKVOvertakenBeforeCommit(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	prefix := freshPrefix()
	a, b := openKVStore(t, ns, prefix), openKVStore(t, ns, prefix)
	aliceID, alice := newIdentity(t, "alice")
	bobID, bob := newIdentity(t, "bob")
	for _, u := range []api.User{alice, bob} {
		if err := a.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User, CreatedAt: time.Now()}
	c := createRoom(t, a, aliceID, r)
	st := c.add(aliceID, bob.Public)
	k := sealed(r.ID, 1, bob, alice)
	if _, err := storetest.AddOne(ctx, a, r.ID, bob.User, 1, &k, st); err != nil {
		t.Fatal(err)
	}
	c.accept(st)
	rekey := func(actor *identity.Identity, sealer api.User, tag string) membership.Rekey {
		ch := membership.Rekey{Room: r.ID, FromEpoch: 1, Statement: c.rekey(actor)}
		for _, u := range []api.User{alice, bob} {
			k := sealed(r.ID, 2, u, sealer)
			k.SealedKey = []byte(tag + " for " + u.Name)
			ch.Keys = append(ch.Keys, k)
		}
		return ch
	}
	held, release := make(chan struct{}), make(chan struct{})
	membership.SetKVTestHook(a, func(step string) error {
		if step == "commit" {
			close(held)
			<-release
		}
		return nil
	})
	errc := make(chan error, 1)
	go func() {
		_, err := a.Rekey(ctx, rekey(aliceID, alice, "a"))
		errc <- err
	}()
	<-held
	won := rekey(bobID, bob, "b")
	if _, err := b.Rekey(ctx, won); err != nil {
		t.Fatalf("rekey through node b while node a's waits to commit: %v", err)
	}
	c.accept(won.Statement)
	close(release)
	if err := <-errc; api.ErrorCode(err) != api.CodeConflict {
		t.Fatalf("the overtaken rekey: %v; want conflict", err)
	}
	membership.SetKVTestHook(a, nil)
	for _, node := range []membership.Store{a, b} {
		for _, u := range []api.User{alice, bob} {
			ks, err := node.SealedKeys(ctx, r.ID, u.User, 2)
			if err != nil || len(ks) != 1 || string(ks[0].SealedKey) != "b for "+u.Name {
				t.Fatalf("%s's key of epoch 2: %+v, %v; want node b's", u.Name, ks, err)
			}
		}
		if sts, err := node.Statements(ctx, r.ID, 0); err != nil || !sameStatements(sts, c.all) {
			t.Fatalf("history: %d statements, %v", len(sts), err)
		}
	}
	if removed, err := a.(membership.KVSweeper).Sweep(ctx, 0); err != nil || removed != 0 {
		t.Fatalf("Sweep = %d, %v: the overtaken rekey left data behind", removed, err)
	}
}

// TestKVCrashBeforeCommit stops rekeys and adds after their data is
// written and before the room document is (a crash at the worst moment),
// then checks that the room is exactly as before, its keys intact, and
// that the next change succeeds.
func TestKVCrashBeforeCommit(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	prefix := freshPrefix()
	s := openKVStore(t, ns, prefix)
	crash := errors.New("crash")
	membership.SetKVTestHook(s, func(step string) error {
		if step == "commit" {
			return crash
		}
		return nil
	})

	aliceID, alice := newIdentity(t, "alice")
	_, bob := newIdentity(t, "bob")
	_, carol := newIdentity(t, "carol")
	for _, u := range []api.User{alice, bob, carol} {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User, CreatedAt: time.Now()}
	st := (&chain{tb: t}).create(aliceID, r)
	k := sealed(r.ID, 1, alice, alice)
	if err := s.CreateRoom(ctx, r, &k, st); !errors.Is(err, crash) {
		t.Fatalf("CreateRoom with a crash before its commit: %v", err)
	}
	if _, err := s.GetRoom(ctx, r.ID); api.ErrorCode(err) != api.CodeNotFound {
		t.Fatalf("GetRoom of a room whose creation crashed: %v; want not_found", err)
	}
	membership.SetKVTestHook(s, nil)
	c := createRoom(t, s, aliceID, r)
	for _, u := range []api.User{bob, carol} {
		st := c.add(aliceID, u.Public)
		k := sealed(r.ID, 1, u, alice)
		if _, err := storetest.AddOne(ctx, s, r.ID, u.User, 1, &k, st); err != nil {
			t.Fatal(err)
		}
		c.accept(st)
	}
	snapshot := func(s membership.Store) string {
		t.Helper()
		room, err := s.GetRoom(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := s.Members(ctx, r.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		sts, err := s.Statements(ctx, r.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		out := fmt.Sprintf("%+v\n%+v\n%d statements\n", room, ms, len(sts))
		for _, u := range []api.User{alice, bob, carol} {
			ks, err := s.SealedKeys(ctx, r.ID, u.User, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range ks {
				out += fmt.Sprintf("%s %d %q\n", u.Name, k.Epoch, k.SealedKey)
			}
		}
		return out
	}
	before := snapshot(s)

	membership.SetKVTestHook(s, func(step string) error {
		if step == "commit" {
			return crash
		}
		return nil
	})
	rm := membership.Rekey{Room: r.ID, FromEpoch: 1, Remove: []string{carol.User},
		Keys: []api.SealedKey{sealed(r.ID, 2, alice, alice), sealed(r.ID, 2, bob, alice)}, Statement: c.rekey(aliceID, carol.User)}
	if _, err := s.Rekey(ctx, rm); !errors.Is(err, crash) {
		t.Fatalf("Rekey with a crash before its commit: %v", err)
	}
	_, dave := newIdentity(t, "dave")
	if err := s.CreateUser(ctx, dave); err != nil {
		t.Fatal(err)
	}
	kd := sealed(r.ID, 1, dave, alice)
	if _, err := storetest.AddOne(ctx, s, r.ID, dave.User, 1, &kd, c.add(aliceID, dave.Public)); !errors.Is(err, crash) {
		t.Fatalf("AddMembers with a crash before its commit: %v", err)
	}
	// What a restarted node (a fresh store on the same buckets) and this
	// one see: the room as before.
	membership.SetKVTestHook(s, nil)
	fresh := openKVStore(t, ns, prefix)
	for what, got := range map[string]string{"the same node": snapshot(s), "a restarted node": snapshot(fresh)} {
		if got != before {
			t.Fatalf("after the crashed changes, %s sees\n%s\nwant\n%s", what, got, before)
		}
	}
	// The sweep removes what the crashed changes wrote, and nothing
	// else: the creation, the rekey (two keys) and the add (one key),
	// each with its statement.
	removed, err := fresh.(membership.KVSweeper).Sweep(ctx, 0)
	if err != nil || removed != 2+3+2 {
		t.Fatalf("Sweep = %d, %v; want the 7 values of the crashed changes", removed, err)
	}
	if got := snapshot(openKVStore(t, ns, prefix)); got != before {
		t.Fatalf("after the sweep, the room is\n%s\nwant\n%s", got, before)
	}
	if removed, err := fresh.(membership.KVSweeper).Sweep(ctx, 0); err != nil || removed != 0 {
		t.Fatalf("second Sweep = %d, %v; want nothing left to remove", removed, err)
	}

	// The crashed rekey, redone, succeeds, through the restarted node.
	if _, err := fresh.Rekey(ctx, rm); err != nil {
		t.Fatalf("Rekey after the crashed one: %v", err)
	}
	c.accept(rm.Statement)
	ks, err := fresh.SealedKeys(ctx, r.ID, bob.User, 0)
	if err != nil || len(ks) != 2 || ks[1].Epoch != 2 {
		t.Fatalf("bob's keys after the rekey: %+v, %v", ks, err)
	}
	if sts, err := s.Statements(ctx, r.ID, 0); err != nil || !sameStatements(sts, c.all) {
		t.Fatalf("history after the redone rekey: %d statements, %v", len(sts), err)
	}
}

// TestKVLargeValues runs changes of a room whose statements and state do
// not fit in one message and its document: with the store's part size
// made small, they are stored in parts, as a room of 10,000 members is
// with the default 1 MiB NATS payload. A fresh store, reading only the
// buckets, sees them whole.
func TestKVLargeValues(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t)
	prefix := freshPrefix()
	s := openKVStore(t, ns, prefix)
	membership.SetKVValueSizes(s, 2048, 1024)
	const n = 60 // statement ~15 KB: 8 parts; state ~6 KB: 3 parts
	ids := make([]*identity.Identity, n)
	users := make([]api.User, n)
	for i := range ids {
		ids[i], users[i] = newIdentity(t, fmt.Sprintf("u%03d", i))
		if err := s.CreateUser(ctx, users[i]); err != nil {
			t.Fatal(err)
		}
	}
	r := api.Room{ID: api.NewRoomID(), Name: "big", Encrypted: true, Creator: users[0].User, CreatedAt: time.Now()}
	c := createRoom(t, s, ids[0], r)
	var added []roomchain.Member
	a := membership.Add{Room: r.ID, Epoch: 1}
	for _, u := range users[1:] {
		added = append(added, roomchain.Member{Public: u.Public, Role: roomchain.RoleMember})
		a.Users = append(a.Users, u.User)
		a.Keys = append(a.Keys, sealed(r.ID, 1, u, users[0]))
	}
	a.Statement = c.sign(ids[0], roomchain.KindAdd, 1, added, nil, "", false)
	if _, err := s.AddMembers(ctx, a); err != nil {
		t.Fatal(err)
	}
	c.accept(a.Statement)
	for e := uint64(1); e <= 3; e++ { // the last rekey replaces a large state by another
		ch := membership.Rekey{Room: r.ID, FromEpoch: e, Remove: []string{users[n-int(e)].User}, Statement: c.rekey(ids[0], users[n-int(e)].User)}
		for _, u := range users[:n-int(e)] {
			ch.Keys = append(ch.Keys, sealed(r.ID, e+1, u, users[0]))
		}
		if _, err := s.Rekey(ctx, ch); err != nil {
			t.Fatal(err)
		}
		c.accept(ch.Statement)
	}
	fresh := openKVStore(t, ns, prefix)
	for i, st := range []membership.Store{s, fresh} {
		sts, err := st.Statements(ctx, r.ID, 0)
		if err != nil || !sameStatements(sts, c.all) {
			t.Fatalf("store %d: statements: %d, %v", i, len(sts), err)
		}
		if _, err := roomchain.Verify(r.ID, sts); err != nil {
			t.Fatal(err)
		}
		ms, err := st.Members(ctx, r.ID, true)
		if err != nil || len(ms) != n {
			t.Fatalf("store %d: member history: %d, %v", i, len(ms), err)
		}
		if ok, err := st.IsMember(ctx, r.ID, users[n-1].User); err != nil || ok {
			t.Fatalf("store %d: IsMember of a removed member = %v, %v", i, ok, err)
		}
		if rooms, err := st.RoomsOf(ctx, users[1].User); err != nil || len(rooms) != 1 || rooms[0].Epoch != 4 {
			t.Fatalf("store %d: RoomsOf = %+v, %v", i, rooms, err)
		}
		ks, err := st.SealedKeys(ctx, r.ID, users[1].User, 0)
		if err != nil || len(ks) != 4 {
			t.Fatalf("store %d: keys of a member: %+v, %v", i, ks, err)
		}
	}
}

// TestKVNonceExpiry checks that a nonce is refused while it lasts and
// accepted again once the server's message TTL has removed it.
func TestKVNonceExpiry(t *testing.T) {
	ctx := context.Background()
	s := openKVStore(t, startNATS(t), freshPrefix())
	if err := s.UseNonce(ctx, "n", time.Now().Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.UseNonce(ctx, "n", time.Now().Add(time.Minute)); api.ErrorCode(err) != api.CodeConflict {
		t.Fatalf("replay within the window: %v; want conflict", err)
	}
	waitFor(t, 5*time.Second, "the expired nonce is still refused", func() bool {
		return s.UseNonce(ctx, "n", time.Now().Add(time.Minute)) == nil
	})
}

// BenchmarkKVRekey10000 measures one rekey of a 10,000-member room on the
// KV store (its 10,000 keys pipelined, its 2.5 MB statement and 1 MB state
// stored in parts, the room document updated), as BenchmarkRekey10000
// does for SQLite. The room is built in SQLite and migrated.
func BenchmarkKVRekey10000(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "unibus.db")
	r, users, ids, ch := bigRoom(b, path, openAt(b, path), n)
	ns := startNATS(b)
	prefix := freshPrefix()
	migrate(b, path, connect(b, ns), prefix)
	s := openKVStore(b, ns, prefix)
	epoch := r.Epoch
	next := func() membership.Rekey {
		c := membership.Rekey{Room: r.ID, FromEpoch: epoch, Keys: make([]api.SealedKey, 0, n), Statement: ch.rekey(ids[0])}
		for _, u := range users {
			c.Keys = append(c.Keys, sealed(r.ID, epoch+1, u, users[0]))
		}
		return c
	}
	c := next()
	for b.Loop() {
		if _, err := s.Rekey(ctx, c); err != nil {
			b.Fatal(err)
		}
		epoch++
		b.StopTimer()
		ch.accept(c.Statement)
		c = next()
		b.StartTimer()
	}
}

// BenchmarkKVIsAuthorized measures the NATS connect check, served from
// the cache.
func BenchmarkKVIsAuthorized(b *testing.B) {
	s := openKVStore(b, startNATS(b), freshPrefix())
	alice := newUser(b, "alice")
	if err := s.CreateUser(context.Background(), alice); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !s.IsAuthorized(alice.User) {
			b.Fatal("not authorized")
		}
	}
}

// BenchmarkKVCreateUser measures CreateUser: one atomic batch of two
// messages.
func BenchmarkKVCreateUser(b *testing.B) {
	s := openKVStore(b, startNATS(b), freshPrefix())
	users := make([]api.User, 0, 1000)
	for i := range cap(users) {
		users = append(users, newUser(b, fmt.Sprintf("u%d", i)))
	}
	i := 0
	for b.Loop() {
		if i == len(users) {
			b.StopTimer()
			s = openKVStore(b, startNATS(b), freshPrefix())
			i = 0
			b.StartTimer()
		}
		if err := s.CreateUser(context.Background(), users[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts n routed in-process servers with JetStream.
func startCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	routes := make([]string, n)
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		ns, err := embeddednats.StartServer(embeddednats.ServerConfig{
			StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, ServerName: fmt.Sprintf("n%d", i+1), Logger: testLogger(),
			Cluster: &embeddednats.ClusterConfig{Name: "kv-test", Host: "127.0.0.1", Port: ports[i], Routes: routes},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		})
		servers[i] = ns
	}
	return servers
}

// TestKVReplicated runs the store on R3 buckets of a three-node cluster,
// one store per node: changes through any node are seen through the
// others, user creation (an atomic batch) works on replicated streams, and
// concurrent rekeys through two nodes still conflict.
func TestKVReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	ctx := context.Background()
	servers := startCluster(t, 3)
	prefix := freshPrefix()
	stores := make([]membership.Store, len(servers))
	for i, ns := range servers {
		js := connect(t, ns)
		var err error
		waitFor(t, 30*time.Second, "the KV store opens on the cluster", func() bool {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			stores[i], err = membership.OpenKV(octx, js, membership.KVConfig{Prefix: prefix, Replicas: 3, Logger: testLogger()})
			return err == nil
		})
		t.Cleanup(func() { stores[i].Close() })
	}
	info, err := connect(t, servers[0]).Stream(ctx, "KV_"+prefix+"_rooms")
	if err != nil || info.CachedInfo().Config.Replicas != 3 || info.CachedInfo().Config.AllowDirect {
		t.Fatalf("rooms bucket: %+v, %v; want 3 replicas, no direct gets", info.CachedInfo().Config, err)
	}

	ids := make([]*identity.Identity, 3)
	users := make([]api.User, 3)
	for i := range ids {
		ids[i], users[i] = newIdentity(t, fmt.Sprintf("user%d", i))
		if err := stores[i].CreateUser(ctx, users[i]); err != nil {
			t.Fatalf("CreateUser through node %d: %v", i+1, err)
		}
	}
	if err := stores[2].CreateUser(ctx, users[0]); api.ErrorCode(err) != api.CodeConflict {
		t.Fatalf("CreateUser of a taken key on R3: %v; want conflict", err)
	}
	r := api.Room{ID: api.NewRoomID(), Name: "r3", Encrypted: true, Creator: users[0].User, CreatedAt: time.Now()}
	c := createRoom(t, stores[0], ids[0], r)
	for i, u := range users[1:] {
		st := c.add(ids[0], u.Public)
		k := sealed(r.ID, 1, u, users[0])
		if _, err := storetest.AddOne(ctx, stores[i+1], r.ID, u.User, 1, &k, st); err != nil {
			t.Fatalf("AddMembers through node %d: %v", i+2, err)
		}
		c.accept(st)
	}
	changes := make([]membership.Rekey, 2)
	for i := range changes {
		changes[i] = membership.Rekey{Room: r.ID, FromEpoch: 1, Statement: c.rekey(ids[i])}
		for _, u := range users {
			k := sealed(r.ID, 2, u, users[i])
			k.SealedKey = fmt.Appendf(nil, "node %d", i)
			changes[i].Keys = append(changes[i].Keys, k)
		}
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range changes {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = stores[i].Rekey(ctx, changes[i]) }()
	}
	wg.Wait()
	winner := slices.IndexFunc(errs, func(err error) bool { return err == nil })
	loser := 1 - winner
	if winner < 0 || api.ErrorCode(errs[loser]) != api.CodeConflict {
		t.Fatalf("concurrent rekeys on R3: %v; want one success and one conflict", errs)
	}
	c.accept(changes[winner].Statement)
	for i, s := range stores {
		ks, err := s.SealedKeys(ctx, r.ID, users[2].User, 2)
		if err != nil || len(ks) != 1 || string(ks[0].SealedKey) != fmt.Sprintf("node %d", winner) {
			t.Fatalf("node %d: key of epoch 2: %+v, %v; want the winner's", i+1, ks, err)
		}
		if sts, err := s.Statements(ctx, r.ID, 0); err != nil || !sameStatements(sts, c.all) {
			t.Fatalf("node %d: history: %d, %v", i+1, len(sts), err)
		}
	}
	if _, err := stores[1].RevokeUser(ctx, users[2].User, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the revocation reaches every node", func() bool {
		return !stores[0].IsAuthorized(users[2].User) && !stores[2].IsAuthorized(users[2].User)
	})
}
