package kvstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/kvstore"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

func TestKVConformance(t *testing.T) {
	ns := teststore.NATS(t)
	storetest.Run(t, func(t testing.TB) store.Store {
		return teststore.KV(t, ns, teststore.FreshPrefix())
	})
}

func TestOpenKVIsIdempotent(t *testing.T) {
	ns := teststore.NATS(t)
	prefix := teststore.FreshPrefix()
	a := teststore.KV(t, ns, prefix)
	alice := storetest.NewUser(t, "alice")
	storetest.CreateUsers(t, a, alice)
	b := teststore.KV(t, ns, prefix) // the buckets exist: opened, not reset
	if got, err := b.GetUser(context.Background(), "alice"); err != nil || got.User != alice.User {
		t.Fatalf("GetUser through a second open = %v, %v", got.User, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kvstore.Open(ctx, testnats.JetStream(t, ns), kvstore.Config{Prefix: "bad prefix"}); err == nil {
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

// twoNodes opens two stores, a and b, on the same fresh buckets of a
// server of their own, as two membershipd nodes are, and returns them with
// the server and the buckets' prefix.
func twoNodes(t testing.TB) (ns *server.Server, prefix string, a, b store.Store) {
	t.Helper()
	ns, prefix = teststore.NATS(t), teststore.FreshPrefix()
	return ns, prefix, teststore.KV(t, ns, prefix), teststore.KV(t, ns, prefix)
}

// duo is where the tests of a room changed through two nodes start:
// alice and bob, registered, and alice's encrypted room r with bob in it.
type duo struct {
	aliceID, bobID *identity.Identity
	alice, bob     api.User
	r              api.Room
	c              *storetest.Chain
}

// newDuo registers alice and bob through s and makes the room through s.
func newDuo(t testing.TB, s store.Store) duo {
	t.Helper()
	var f duo
	f.aliceID, f.alice = storetest.NewIdentity(t, "alice")
	f.bobID, f.bob = storetest.NewIdentity(t, "bob")
	storetest.CreateUsers(t, s, f.alice, f.bob)
	f.r = api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: f.alice.User, CreatedAt: time.Now()}
	f.c = storetest.CreateRoom(t, s, f.aliceID, f.r)
	f.c.AddOne(s, f.aliceID, f.bob)
	return f
}

// TestKVTwoNodes runs two stores on the same buckets, as two membershipd
// nodes do, and checks each sees the other's writes within a second.
func TestKVTwoNodes(t *testing.T) {
	ctx := context.Background()
	_, _, a, b := twoNodes(t)

	aliceID, alice := storetest.NewIdentity(t, "alice")
	_, bob := storetest.NewIdentity(t, "bob")
	storetest.CreateUsers(t, a, alice, bob)
	waitFor(t, time.Second, "node b does not authorize the users node a created", func() bool {
		return b.IsAuthorized(alice.User) && b.IsAuthorized(bob.User)
	})

	// A room created through a, a member added through b.
	r := api.Room{ID: api.NewRoomID(), Name: "plans", Encrypted: true, Creator: alice.User, CreatedAt: time.Now()}
	c := storetest.CreateRoom(t, a, aliceID, r)
	waitFor(t, time.Second, "node b does not see the room node a created", func() bool {
		got, err := b.GetRoom(ctx, r.ID)
		return err == nil && got.HeadSeq == 1
	})
	c.AddOne(b, aliceID, bob) // through node b
	waitFor(t, time.Second, "node a does not see the member node b added", func() bool {
		ok, err := a.IsMember(ctx, r.ID, bob.User)
		rooms, _ := a.RoomsOf(ctx, bob.User)
		return err == nil && ok && len(rooms) == 1
	})

	// bob removed through a: b sees him gone.
	rm := c.NextRekey(aliceID, []api.User{alice}, bob.User)
	if _, err := a.Rekey(ctx, rm); err != nil {
		t.Fatal(err)
	}
	c.Accept(rm.Statement)
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
	c.Stored(b, "node b's statements")

	// bob revoked through b: a refuses him within a second.
	if _, err := b.RevokeUser(ctx, bob.User, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "node a still authorizes bob after node b revoked him", func() bool {
		return !a.IsAuthorized(bob.User)
	})
	// The data plane's revocation watch reads node a's cache.
	revoked, err := a.(interface {
		RevokedUsers(context.Context) ([]string, error)
	}).RevokedUsers(ctx)
	if err != nil || !slices.Equal(revoked, []string{bob.User}) {
		t.Fatalf("node a's RevokedUsers = %v, %v; want bob alone", revoked, err)
	}
	if u, err := a.GetUser(ctx, "bob"); err != nil || u.Status != api.StatusRevoked {
		t.Fatalf("node a's GetUser(bob) = %v, %v; want revoked", u.Status, err)
	}
}

// TestKVConcurrentRekeysTwoNodes rekeys one room from the same epoch
// through two nodes at once, many times: exactly one wins, the other
// gets conflict, and every remaining member's key of the winner is
// readable through both.
func TestKVConcurrentRekeysTwoNodes(t *testing.T) {
	ctx := context.Background()
	_, _, a, b := twoNodes(t)
	nodes := []store.Store{a, b}

	ids, users := storetest.NewIdentities(t, 30)
	storetest.CreateUsers(t, nodes[0], users...)
	r := api.Room{ID: api.NewRoomID(), Name: "race", Encrypted: true, Creator: users[0].User, CreatedAt: time.Now()}
	c := storetest.CreateRoom(t, nodes[0], ids[0], r)
	c.AddAll(nodes[1], ids[0], users[1:])

	for round := range 10 {
		from := c.State.Epoch
		// Each node's change: a rekey by a different member, keys tagged
		// with the node.
		changes := make([]store.Rekey, 2)
		for i := range changes {
			changes[i] = tagKeys(c.NextRekey(ids[i], users), users, fmt.Sprintf("round %d node %d", round, i))
		}
		errs := storetest.Race(len(nodes), func(i int) error {
			_, err := nodes[i].Rekey(ctx, changes[i])
			return err
		})
		winner := storetest.OneWinner(t, errs, fmt.Sprintf("round %d: concurrent rekeys through two nodes", round))
		c.Accept(changes[winner].Statement)
		for _, node := range nodes {
			for _, u := range users {
				ks, err := node.SealedKeys(ctx, r.ID, u.User, from+1)
				want := fmt.Appendf(nil, "round %d node %d for %s", round, winner, u.Name)
				if err != nil || len(ks) != 1 || !bytes.Equal(ks[0].SealedKey, want) {
					t.Fatalf("round %d: %s's key of epoch %d = %+v, %v; want the winner's", round, u.Name, from+1, ks, err)
				}
			}
			c.Stored(node, fmt.Sprintf("round %d: history", round))
		}
	}
	// Every loser purged what it wrote.
	if removed, err := nodes[0].(sweeper).Sweep(ctx, 0); err != nil || removed != 0 {
		t.Fatalf("Sweep after the races = %d, %v; want nothing left behind", removed, err)
	}
}

// tagKeys sets the key rk seals to each of users (in the order nextRekey
// sealed them) to tag, " for " and the user's name, so that whose rekey
// stored a key shows.
func tagKeys(rk store.Rekey, users []api.User, tag string) store.Rekey {
	for i, u := range users {
		rk.Keys[i].SealedKey = []byte(tag + " for " + u.Name)
	}
	return rk
}

// TestKVOvertakenBeforeCommit holds one node's rekey after its data is
// written and before its commit while another node's rekey of the same
// room commits: the first gets conflict, its data is purged, and the
// room is the second's, whole.
func TestKVOvertakenBeforeCommit(t *testing.T) {
	ctx := context.Background()
	_, _, a, b := twoNodes(t)
	f := newDuo(t, a)
	both := []api.User{f.alice, f.bob}
	held, release := make(chan struct{}), make(chan struct{})
	kvstore.SetKVTestHook(a, func(step string) error {
		if step == "commit" {
			close(held)
			<-release
		}
		return nil
	})
	errc := make(chan error, 1)
	go func() {
		_, err := a.Rekey(ctx, tagKeys(f.c.NextRekey(f.aliceID, both), both, "a"))
		errc <- err
	}()
	<-held
	won := tagKeys(f.c.NextRekey(f.bobID, both), both, "b")
	if _, err := b.Rekey(ctx, won); err != nil {
		t.Fatalf("rekey through node b while node a's waits to commit: %v", err)
	}
	f.c.Accept(won.Statement)
	close(release)
	if err := <-errc; api.ErrorCode(err) != api.CodeConflict {
		t.Fatalf("the overtaken rekey: %v; want conflict", err)
	}
	kvstore.SetKVTestHook(a, nil)
	for _, node := range []store.Store{a, b} {
		for _, u := range both {
			ks, err := node.SealedKeys(ctx, f.r.ID, u.User, 2)
			if err != nil || len(ks) != 1 || string(ks[0].SealedKey) != "b for "+u.Name {
				t.Fatalf("%s's key of epoch 2: %+v, %v; want node b's", u.Name, ks, err)
			}
		}
		f.c.Stored(node, "history")
	}
	if removed, err := a.(sweeper).Sweep(ctx, 0); err != nil || removed != 0 {
		t.Fatalf("Sweep = %d, %v: the overtaken rekey left data behind", removed, err)
	}
}

// TestKVCrashBeforeCommit stops rekeys and adds after their data is
// written and before the room document is (a crash at the worst moment),
// then checks that the room is exactly as before, its keys intact, and
// that the next change succeeds.
func TestKVCrashBeforeCommit(t *testing.T) {
	ctx := context.Background()
	ns := teststore.NATS(t)
	prefix := teststore.FreshPrefix()
	s := teststore.KV(t, ns, prefix)
	crash := errors.New("crash")
	kvstore.SetKVTestHook(s, func(step string) error {
		if step == "commit" {
			return crash
		}
		return nil
	})

	aliceID, alice := storetest.NewIdentity(t, "alice")
	_, bob := storetest.NewIdentity(t, "bob")
	_, carol := storetest.NewIdentity(t, "carol")
	storetest.CreateUsers(t, s, alice, bob, carol)
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User, CreatedAt: time.Now()}
	st := storetest.NewChain(t).Create(aliceID, r)
	k := storetest.Sealed(r.ID, 1, alice, alice)
	if err := s.CreateRoom(ctx, r, &k, st); !errors.Is(err, crash) {
		t.Fatalf("CreateRoom with a crash before its commit: %v", err)
	}
	if _, err := s.GetRoom(ctx, r.ID); api.ErrorCode(err) != api.CodeNotFound {
		t.Fatalf("GetRoom of a room whose creation crashed: %v; want not_found", err)
	}
	kvstore.SetKVTestHook(s, nil)
	c := storetest.CreateRoom(t, s, aliceID, r)
	c.AddOne(s, aliceID, bob)
	c.AddOne(s, aliceID, carol)
	snapshot := func(s store.Store) string {
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

	kvstore.SetKVTestHook(s, func(step string) error {
		if step == "commit" {
			return crash
		}
		return nil
	})
	rm := c.NextRekey(aliceID, []api.User{alice, bob}, carol.User)
	if _, err := s.Rekey(ctx, rm); !errors.Is(err, crash) {
		t.Fatalf("Rekey with a crash before its commit: %v", err)
	}
	_, dave := storetest.NewIdentity(t, "dave")
	storetest.CreateUsers(t, s, dave)
	kd := storetest.Sealed(r.ID, 1, dave, alice)
	if _, err := storetest.AddOne(ctx, s, r.ID, dave.User, 1, &kd, c.Add(aliceID, dave.Public)); !errors.Is(err, crash) {
		t.Fatalf("AddMembers with a crash before its commit: %v", err)
	}
	// What a restarted node (a fresh store on the same buckets) and this
	// one see: the room as before.
	kvstore.SetKVTestHook(s, nil)
	fresh := teststore.KV(t, ns, prefix)
	for what, got := range map[string]string{"the same node": snapshot(s), "a restarted node": snapshot(fresh)} {
		if got != before {
			t.Fatalf("after the crashed changes, %s sees\n%s\nwant\n%s", what, got, before)
		}
	}
	// The sweep removes what the crashed changes wrote, and nothing
	// else: the creation, the rekey (two keys) and the add (one key),
	// each with its statement.
	removed, err := fresh.(sweeper).Sweep(ctx, 0)
	if err != nil || removed != 2+3+2 {
		t.Fatalf("Sweep = %d, %v; want the 7 values of the crashed changes", removed, err)
	}
	if got := snapshot(teststore.KV(t, ns, prefix)); got != before {
		t.Fatalf("after the sweep, the room is\n%s\nwant\n%s", got, before)
	}
	if removed, err := fresh.(sweeper).Sweep(ctx, 0); err != nil || removed != 0 {
		t.Fatalf("second Sweep = %d, %v; want nothing left to remove", removed, err)
	}

	// The crashed rekey, redone, succeeds, through the restarted node.
	if _, err := fresh.Rekey(ctx, rm); err != nil {
		t.Fatalf("Rekey after the crashed one: %v", err)
	}
	c.Accept(rm.Statement)
	ks, err := fresh.SealedKeys(ctx, r.ID, bob.User, 0)
	if err != nil || len(ks) != 2 || ks[1].Epoch != 2 {
		t.Fatalf("bob's keys after the rekey: %+v, %v", ks, err)
	}
	c.Stored(s, "history after the redone rekey")
}

// TestKVLargeValues runs changes of a room whose statements and state do
// not fit in one message and its document: with the store's part size
// made small, they are stored in parts, as a room of 10,000 members is
// with the default 1 MiB NATS payload. A fresh store, reading only the
// buckets, sees them whole.
func TestKVLargeValues(t *testing.T) {
	ctx := context.Background()
	ns := teststore.NATS(t)
	prefix := teststore.FreshPrefix()
	s := teststore.KV(t, ns, prefix)
	kvstore.SetKVValueSizes(s, 2048, 1024)
	const n = 60 // statement ~15 KB: 8 parts; state ~6 KB: 3 parts
	ids, users := storetest.NewIdentities(t, n)
	storetest.CreateUsers(t, s, users...)
	r := api.Room{ID: api.NewRoomID(), Name: "big", Encrypted: true, Creator: users[0].User, CreatedAt: time.Now()}
	c := storetest.CreateRoom(t, s, ids[0], r)
	c.AddAll(s, ids[0], users[1:])
	for e := 1; e <= 3; e++ { // the last rekey replaces a large state by another
		ch := c.NextRekey(ids[0], users[:n-e], users[n-e].User)
		if _, err := s.Rekey(ctx, ch); err != nil {
			t.Fatal(err)
		}
		c.Accept(ch.Statement)
	}
	fresh := teststore.KV(t, ns, prefix)
	for i, st := range []store.Store{s, fresh} {
		sts := c.Stored(st, fmt.Sprintf("store %d: statements", i))
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
	s := teststore.KV(t, teststore.NATS(t), teststore.FreshPrefix())
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
// KV store (its 10,000 keys pipelined, its statement and state stored,
// the room document updated), as BenchmarkRekey10000 does for SQLite.
// The room is built through the store with one bulk add.
func BenchmarkKVRekey10000(b *testing.B) {
	s := teststore.KV(b, teststore.NATS(b), teststore.FreshPrefix())
	ids, users := storetest.NewIdentities(b, 10000)
	storetest.CreateUsers(b, s, users...)
	r := api.Room{ID: api.NewRoomID(), Name: "big", Encrypted: true, Creator: users[0].User, Epoch: 1}
	c := storetest.CreateRoom(b, s, ids[0], r)
	c.AddAll(s, ids[0], users[1:])
	storetest.BenchRekey(b, s, c, ids[0], users)
}

// BenchmarkKVIsAuthorized measures the NATS connect check, served from
// the cache.
func BenchmarkKVIsAuthorized(b *testing.B) {
	storetest.BenchIsAuthorized(b, teststore.KV(b, teststore.NATS(b), teststore.FreshPrefix()))
}

// BenchmarkKVCreateUser measures CreateUser: one atomic batch of two
// messages.
func BenchmarkKVCreateUser(b *testing.B) {
	s := teststore.KV(b, teststore.NATS(b), teststore.FreshPrefix())
	users := make([]api.User, 0, 1000)
	for i := range cap(users) {
		users = append(users, storetest.NewUser(b, fmt.Sprintf("u%d", i)))
	}
	i := 0
	for b.Loop() {
		if i == len(users) {
			b.StopTimer()
			s = teststore.KV(b, teststore.NATS(b), teststore.FreshPrefix())
			i = 0
			b.StartTimer()
		}
		if err := s.CreateUser(context.Background(), users[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
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
	servers := testnats.StartCluster(t, 3, func(int) embeddednats.ServerConfig {
		return embeddednats.ServerConfig{Logger: testnats.Logger(), Cluster: &embeddednats.ClusterConfig{Name: "kv-test"}}
	})
	prefix := teststore.FreshPrefix()
	stores := make([]store.Store, len(servers))
	for i, ns := range servers {
		js := testnats.JetStream(t, ns)
		var err error
		waitFor(t, 30*time.Second, "the KV store opens on the cluster", func() bool {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			stores[i], err = kvstore.Open(octx, js, kvstore.Config{Prefix: prefix, Replicas: 3, Logger: testnats.Logger()})
			return err == nil
		})
		t.Cleanup(func() { stores[i].Close() })
	}
	info, err := testnats.JetStream(t, servers[0]).Stream(ctx, "KV_"+prefix+"_rooms")
	if err != nil || info.CachedInfo().Config.Replicas != 3 || info.CachedInfo().Config.AllowDirect {
		t.Fatalf("rooms bucket: %+v, %v; want 3 replicas, no direct gets", info.CachedInfo().Config, err)
	}

	ids := make([]*identity.Identity, 3)
	users := make([]api.User, 3)
	for i := range ids {
		ids[i], users[i] = storetest.NewIdentity(t, fmt.Sprintf("user%d", i))
		if err := stores[i].CreateUser(ctx, users[i]); err != nil {
			t.Fatalf("CreateUser through node %d: %v", i+1, err)
		}
	}
	if err := stores[2].CreateUser(ctx, users[0]); api.ErrorCode(err) != api.CodeConflict {
		t.Fatalf("CreateUser of a taken key on R3: %v; want conflict", err)
	}
	r := api.Room{ID: api.NewRoomID(), Name: "r3", Encrypted: true, Creator: users[0].User, CreatedAt: time.Now()}
	c := storetest.CreateRoom(t, stores[0], ids[0], r)
	for i, u := range users[1:] {
		c.AddOne(stores[i+1], ids[0], u) // through node i+2
	}
	changes := make([]store.Rekey, 2)
	for i := range changes {
		changes[i] = tagKeys(c.NextRekey(ids[i], users), users, fmt.Sprintf("node %d", i))
	}
	errs := storetest.Race(len(changes), func(i int) error {
		_, err := stores[i].Rekey(ctx, changes[i])
		return err
	})
	winner := storetest.OneWinner(t, errs, "concurrent rekeys on R3")
	c.Accept(changes[winner].Statement)
	for i, s := range stores {
		ks, err := s.SealedKeys(ctx, r.ID, users[2].User, 2)
		if err != nil || len(ks) != 1 || string(ks[0].SealedKey) != fmt.Sprintf("node %d for %s", winner, users[2].Name) {
			t.Fatalf("node %d: key of epoch 2: %+v, %v; want the winner's", i+1, ks, err)
		}
		c.Stored(s, fmt.Sprintf("node %d: history", i+1))
	}
	if _, err := stores[1].RevokeUser(ctx, users[2].User, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the revocation reaches every node", func() bool {
		return !stores[0].IsAuthorized(users[2].User) && !stores[2].IsAuthorized(users[2].User)
	})
}

// sweeper is the garbage collection the KV store offers beside the
// Store contract.
type sweeper interface {
	Sweep(ctx context.Context, minAge time.Duration) (int, error)
}
