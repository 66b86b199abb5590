package membership_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// seeded is a representative SQLite store: two rooms, one rekeyed to
// epoch 2 with a member removed, a revoked user, statements and a blob.
type seeded struct {
	path                    string
	alice, bob, carol, dave api.User
	aliceID                 *identity.Identity
	plans, lobby            api.Room
	plansChain, lobbyChain  *storetest.Chain
}

func seedSQLite(t testing.TB) *seeded {
	t.Helper()
	sd := &seeded{path: filepath.Join(t.TempDir(), "unibus.db")}
	seedInto(t, teststore.SQLite(t, sd.path), sd)
	return sd
}

// seedInto makes the seeded state in s.
func seedInto(t testing.TB, s membership.Store, sd *seeded) {
	t.Helper()
	ctx := context.Background()
	var bobID *identity.Identity
	sd.aliceID, sd.alice = storetest.NewIdentity(t, "alice")
	bobID, sd.bob = storetest.NewIdentity(t, "bob")
	_, sd.carol = storetest.NewIdentity(t, "carol")
	_, sd.dave = storetest.NewIdentity(t, "dave")
	sd.alice.Role = api.RoleAdmin
	// bob is added over the API: he carries alice's signed registration.
	reg, err := identity.SignRegistration(identity.Registration{User: sd.bob.Public, Role: sd.bob.Role, By: sd.alice.User, Time: 1}, sd.aliceID.SigningKey())
	if err != nil {
		t.Fatal(err)
	}
	sd.bob.Registration = &reg
	storetest.CreateUsers(t, s, sd.alice, sd.bob, sd.carol, sd.dave)

	// plans: encrypted; bob and carol added; carol removed (epoch 2);
	// dave added at epoch 2.
	sd.plans = api.Room{ID: api.NewRoomID(), Name: "plans", Encrypted: true, Creator: sd.alice.User, CreatedAt: time.Now()}
	c := storetest.CreateRoom(t, s, sd.aliceID, sd.plans)
	c.AddOne(s, sd.aliceID, sd.bob)
	c.AddOne(s, sd.aliceID, sd.carol)
	rm := c.NextRekey(sd.aliceID, []api.User{sd.alice, sd.bob}, sd.carol.User)
	if _, err := s.Rekey(ctx, rm); err != nil {
		t.Fatal(err)
	}
	c.Accept(rm.Statement)
	c.AddOne(s, sd.aliceID, sd.dave)
	sd.plansChain = c

	// lobby: cleartext, by bob, with alice.
	sd.lobby = api.Room{ID: api.NewRoomID(), Name: "lobby", Creator: sd.bob.User, CreatedAt: time.Now()}
	lc := storetest.CreateRoom(t, s, bobID, sd.lobby)
	lc.AddOne(s, bobID, sd.alice)
	sd.lobbyChain = lc

	if _, err := s.RevokeUser(ctx, sd.carol.User, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBlob(ctx, api.Blob{ID: fmt.Sprintf("%064x", 7), Room: sd.plans.ID, Size: 99, Uploader: sd.bob.User, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.UseNonce(ctx, "a nonce", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
}

// export reads s's whole state.
func export(t testing.TB, s membership.Store) *membership.Snapshot {
	t.Helper()
	snap, err := s.(store.SnapshotExporter).ExportSnapshot(context.Background())
	if err != nil {
		t.Fatalf("ExportSnapshot: %v", err)
	}
	return snap
}

// migrate runs MigrateSQLiteToKV from path into ns's buckets of prefix.
func migrate(t testing.TB, path string, js jetstream.JetStream, prefix string) membership.MigrateStats {
	t.Helper()
	stats, err := migrateWith(t, path, js, membership.MigrateOptions{KV: membership.KVConfig{Prefix: prefix}})
	if err != nil {
		t.Fatalf("MigrateSQLiteToKV: %v", err)
	}
	return stats
}

// migrateWith runs MigrateSQLiteToKV from path with opts, checking its
// progress reports when it writes.
func migrateWith(t testing.TB, path string, js jetstream.JetStream, opts membership.MigrateOptions) (membership.MigrateStats, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var calls, last atomic.Int64
	opts.Progress = func(done, total int) {
		calls.Add(1)
		last.Store(int64(done))
		if done > total {
			t.Errorf("progress %d of %d", done, total)
		}
	}
	stats, err := membership.MigrateSQLiteToKV(ctx, path, js, opts)
	if err == nil && !stats.Unchanged && (calls.Load() == 0 || last.Load() != int64(stats.Records())) {
		t.Errorf("progress called %d times, last with %d; want the end at %d records", calls.Load(), last.Load(), stats.Records())
	}
	if stats.Unchanged && calls.Load() != 0 {
		t.Errorf("progress called %d times by a migration that wrote nothing", calls.Load())
	}
	return stats, err
}

func TestMigrateSQLiteToKVParity(t *testing.T) {
	ctx := context.Background()
	sd := seedSQLite(t)
	want := export(t, teststore.SQLite(t, sd.path))
	if len(want.Rooms) != 2 || len(want.SealedKeys) != 6 || len(want.Statements) != 7 || len(want.Members) != 6 || len(want.Blobs) != 1 {
		t.Fatalf("SQLite snapshot: %d rooms, %d keys, %d statements, %d members, %d blobs; the seed makes 2, 6, 7, 6, 1",
			len(want.Rooms), len(want.SealedKeys), len(want.Statements), len(want.Members), len(want.Blobs))
	}
	ns := teststore.NATS(t)
	prefix := teststore.FreshPrefix()
	stats := migrate(t, sd.path, testnats.JetStream(t, ns), prefix)
	if stats.Users != 4 || stats.Rooms != 2 || stats.SealedKeys != 6 || stats.Statements != 7 || stats.Members != 6 || stats.Blobs != 1 {
		t.Fatalf("MigrateStats = %+v", stats)
	}

	kv := teststore.KV(t, ns, prefix)
	got := export(t, kv)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("KV snapshot after migration differs from the SQLite one:\n got %+v\nwant %+v", got, want)
	}

	// The migrated store reads as the SQLite one did.
	r, err := kv.GetRoom(ctx, sd.plans.ID)
	if err != nil || r.Epoch != 2 || r.HeadSeq != 5 || r.HeadHash != sd.plansChain.State.Head {
		t.Fatalf("GetRoom(plans) = %+v, %v; want epoch 2, head 5", r, err)
	}
	ms, err := kv.Members(ctx, sd.plans.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	carol := slices.IndexFunc(ms, func(m api.Member) bool { return m.User == sd.carol.User })
	if len(ms) != 4 || carol < 0 || ms[carol].Until != 2 || !ms[carol].Revoked {
		t.Fatalf("member history of plans: %+v", ms)
	}
	ks, err := kv.SealedKeys(ctx, sd.plans.ID, sd.bob.User, 0)
	if err != nil || len(ks) != 2 || ks[1].Epoch != 2 || ks[1].Sealer.User != sd.alice.User || string(ks[1].SealedKey) != "sealed for bob" {
		t.Fatalf("bob's keys in plans: %+v, %v", ks, err)
	}
	ks, err = kv.SealedKeys(ctx, sd.plans.ID, sd.dave.User, 2)
	if err != nil || len(ks) != 1 {
		t.Fatalf("dave's key of epoch 2: %+v, %v", ks, err)
	}
	for _, c := range []*storetest.Chain{sd.plansChain, sd.lobbyChain} {
		sts := c.Stored(kv, "statements of "+c.Room)
		if _, err := roomchain.Verify(c.Room, sts); err != nil {
			t.Fatalf("migrated history of %s: %v", c.Room, err)
		}
	}
	if kv.IsAuthorized(sd.carol.User) || !kv.IsAuthorized(sd.bob.User) {
		t.Fatal("IsAuthorized after migration does not follow the users' status")
	}
	if rooms, err := kv.RoomsOf(ctx, sd.alice.User); err != nil || len(rooms) != 2 {
		t.Fatalf("RoomsOf(alice) = %v, %v", rooms, err)
	}
	if _, err := kv.GetBlob(ctx, sd.plans.ID, fmt.Sprintf("%064x", 7)); err != nil {
		t.Fatal(err)
	}

	// And it goes on from there: a rekey of the migrated room.
	c := sd.plansChain
	ch := c.NextRekey(sd.aliceID, []api.User{sd.alice, sd.bob, sd.dave})
	if _, err := kv.Rekey(ctx, ch); err != nil {
		t.Fatalf("Rekey of a migrated room: %v", err)
	}
	c.Accept(ch.Statement)
	if ks, err := kv.SealedKeys(ctx, sd.plans.ID, sd.dave.User, 0); err != nil || len(ks) != 2 {
		t.Fatalf("dave's keys after a rekey of the migrated room: %+v, %v", ks, err)
	}
}

// bucketStates is the message count and bytes of every stream of ns.
func bucketStates(t testing.TB, js jetstream.JetStream) map[string][2]uint64 {
	t.Helper()
	out := map[string][2]uint64{}
	l := js.ListStreams(context.Background())
	for info := range l.Info() {
		out[info.Config.Name] = [2]uint64{info.State.Msgs, info.State.Bytes}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrateSQLiteToKVIdempotent(t *testing.T) {
	sd := seedSQLite(t)
	ns := teststore.NATS(t)
	js := testnats.JetStream(t, ns)
	prefix := teststore.FreshPrefix()
	first := migrate(t, sd.path, js, prefix)
	snap1 := export(t, teststore.KV(t, ns, prefix))
	buckets1 := bucketStates(t, js)
	second := migrate(t, sd.path, js, prefix)
	snap2 := export(t, teststore.KV(t, ns, prefix))
	buckets2 := bucketStates(t, js)
	if first.Unchanged || !second.Unchanged {
		t.Fatalf("Unchanged = %v then %v; want false then true (the second run finds its own copy)", first.Unchanged, second.Unchanged)
	}
	first.Export, first.Import, second.Export, second.Import = 0, 0, 0, 0
	second.Unchanged = false
	if !reflect.DeepEqual(first, second) {
		t.Fatalf("second run counted %+v, the first %+v", second, first)
	}
	if !reflect.DeepEqual(snap1, snap2) {
		t.Fatalf("KV state after the second run differs:\n got %+v\nwant %+v", snap2, snap1)
	}
	if !reflect.DeepEqual(buckets1, buckets2) {
		t.Fatalf("buckets after the second run: %v; after the first: %v (every write should overwrite)", buckets2, buckets1)
	}
}

func TestMigrateSQLiteToKVRefusesMissingDatabase(t *testing.T) {
	ns := teststore.NATS(t)
	path := filepath.Join(t.TempDir(), "none.db")
	_, err := membership.MigrateSQLiteToKV(context.Background(), path, testnats.JetStream(t, ns), membership.MigrateOptions{KV: membership.KVConfig{Prefix: teststore.FreshPrefix()}})
	if err == nil {
		t.Fatal("MigrateSQLiteToKV of a missing database succeeded")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("MigrateSQLiteToKV created the missing database")
	}
}

func TestBackupSQLiteCreatesConsistentCopy(t *testing.T) {
	ctx := context.Background()
	sd := seedSQLite(t)
	s := teststore.SQLite(t, sd.path)
	dest := filepath.Join(t.TempDir(), "backup.db")

	// Writers go on during the backup; the copy is one consistent state.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			u := storetest.NewUser(t, fmt.Sprintf("writer%d", i))
			if err := s.CreateUser(ctx, u); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	err := membership.BackupSQLite(ctx, sd.path, dest)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("BackupSQLite: %v", err)
	}
	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %v, want 0600", fi.Mode().Perm())
	}
	var check string
	if err := teststore.RawSQLite(t, dest).QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check of the backup: %q, %v", check, err)
	}
	got := export(t, teststore.SQLite(t, dest))
	now := export(t, s)
	// The backup holds the seed and some of the writers' users, each as
	// the database has it.
	for _, u := range got.Users {
		if !slices.ContainsFunc(now.Users, func(v api.User) bool { return reflect.DeepEqual(u, v) }) {
			t.Fatalf("backup has user %+v, which the database does not", u)
		}
	}
	got.Users, now.Users = nil, nil
	if !reflect.DeepEqual(got, now) {
		t.Fatalf("backup differs from the database:\n got %+v\nwant %+v", got, now)
	}

	// A second backup to the same path is refused; the first is kept.
	if err := membership.BackupSQLite(ctx, sd.path, dest); err == nil {
		t.Fatal("BackupSQLite overwrote an existing backup")
	}
	if err := membership.BackupSQLite(ctx, filepath.Join(t.TempDir(), "missing.db"), filepath.Join(t.TempDir(), "b.db")); err == nil {
		t.Fatal("BackupSQLite of a missing database succeeded")
	}
}

// seedLarge fills a SQLite store at path, through its API, with rooms
// rooms of members members each, rekeyed to epochs epochs: rooms ×
// members × epochs sealed-key rows, and as many statements of every
// member (about 250 bytes each) in the rooms' histories.
func seedLarge(tb testing.TB, path string, rooms, members, epochs int) {
	tb.Helper()
	ctx := context.Background()
	s := teststore.SQLite(tb, path)
	ids, users := storetest.NewIdentities(tb, members)
	storetest.CreateUsers(tb, s, users...)
	for range rooms {
		r := api.Room{ID: api.NewRoomID(), Name: "big", Encrypted: true, Creator: users[0].User, CreatedAt: time.Now()}
		c := storetest.CreateRoom(tb, s, ids[0], r)
		c.AddAll(s, ids[0], users[1:])
		for range epochs - 1 {
			ch := c.NextRekey(ids[0], users)
			if _, err := s.Rekey(ctx, ch); err != nil {
				tb.Fatal(err)
			}
			c.Accept(ch.Statement)
		}
	}
}

// peakHeap samples the heap in use every few milliseconds until stop is
// called, which returns the highest sample.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		if m.HeapInuse > peak.Load() {
			peak.Store(m.HeapInuse)
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		sample()
		return peak.Load()
	}
}

// startNATSSyncAlways is teststore.NATS with the JetStream store syncing every
// write before acknowledging it (nats-server's sync_interval: always, which
// pkg/embeddednats does not set): the durable setting docs/kv-store.md
// asks for.
func startNATSSyncAlways(tb testing.TB) *server.Server {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
		SyncAlways: true, NoSigs: true, NoLog: true, DisableJetStreamBanner: true})
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// BenchmarkMigrate100k migrates a store of 100,000 sealed-key rows (10
// rooms of 1,000 members, 10 epochs each) into a fresh set of buckets on
// an in-process NATS server, with the server's default (lazy) sync and
// with every write synced, and reports the time and the peak heap in use
// of the process (the server's included). Figures are in docs/kv-store.md.
func BenchmarkMigrate100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "unibus.db")
	seedLarge(b, path, 10, 1000, 10)
	for _, c := range []struct {
		name  string
		start func(testing.TB) *server.Server
	}{
		{"default_sync", teststore.NATS},
		{"sync_always", startNATSSyncAlways},
	} {
		b.Run(c.name, func(b *testing.B) {
			js := testnats.JetStream(b, c.start(b))
			var stats membership.MigrateStats
			var peak uint64
			for b.Loop() {
				runtime.GC()
				stop := peakHeap()
				stats = migrate(b, path, js, teststore.FreshPrefix())
				peak = max(peak, stop())
			}
			if stats.SealedKeys != 100_000 {
				b.Fatalf("migrated %d sealed keys, want 100,000", stats.SealedKeys)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(stats.Export.Seconds(), "export-s")
			b.ReportMetric(stats.Import.Seconds(), "import-s")
			b.Logf("migrated %s; peak heap in use %.0f MiB", stats, float64(peak)/(1<<20))
		})
	}
}
