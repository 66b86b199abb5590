package membership_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
)

func openAt(t testing.TB, path string) membership.Store {
	t.Helper()
	s, err := membership.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTemp(t testing.TB) membership.Store {
	return openAt(t, filepath.Join(t.TempDir(), "unibus.db"))
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, openTemp)
}

// rawDB opens the file with a plain connection, as another program would.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// knownVersions is the number of embedded migrations.
func knownVersions(t testing.TB) int {
	t.Helper()
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	return len(files)
}

type appliedMigration struct {
	version   int
	appliedAt int64
}

func applied(t testing.TB, db *sql.DB) []appliedMigration {
	t.Helper()
	rows, err := db.Query(`SELECT version, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []appliedMigration
	for rows.Next() {
		var m appliedMigration
		if err := rows.Scan(&m.version, &m.appliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrationsAppliedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unibus.db")
	s, err := membership.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, path)
	first := applied(t, db)
	if n := knownVersions(t); len(first) != n {
		t.Fatalf("%d migrations recorded, want %d", len(first), n)
	}
	for i, m := range first {
		if m.version != i+1 || m.appliedAt == 0 {
			t.Fatalf("migration row %d is %+v", i, m)
		}
	}
	for range 2 {
		s, err := membership.Open(path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		s.Close()
	}
	again := applied(t, db)
	if fmt.Sprint(first) != fmt.Sprint(again) {
		t.Fatalf("reopening changed schema_migrations: %v, then %v", first, again)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unibus.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := membership.Open(path)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	if got, want := len(applied(t, rawDB(t, path))), knownVersions(t); got != want {
		t.Fatalf("%d migrations recorded, want %d", got, want)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unibus.db")
	s, err := membership.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, path)
	newer := knownVersions(t) + 1
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, newer, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	_, err = membership.Open(path)
	want := fmt.Sprintf("database schema version %d is newer than this membershipd (max %d): upgrade membershipd", newer, newer-1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open of a newer schema: %v; want an error saying %q", err, want)
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state dir", "membership?#%")
	path := filepath.Join(dir, "unibus.db")
	s := openAt(t, path)
	if err := s.CreateUser(context.Background(), newUser(t, "alice")); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode(), want)
		}
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file next to the database: %v", err)
	}
	if _, err := membership.Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

func newUser(t testing.TB, name string) api.User {
	t.Helper()
	id, err := identity.Generate(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return api.User{Public: id.Public(), Role: api.RoleMember, Status: api.StatusActive, CreatedAt: time.Now()}
}

func sealed(room string, epoch uint64, member, sealer api.User) api.SealedKey {
	return api.SealedKey{Room: room, Epoch: epoch, Member: member.User, Sealer: sealer.Public, SealedKey: []byte("sealed for " + member.Name)}
}

// TestSecondOpenSeesWrites opens the file twice, as the server and the
// admin CLI do, and checks each sees the other's writes at once.
func TestSecondOpenSeesWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	a := openAt(t, path)
	b := openAt(t, path)
	alice := newUser(t, "alice")
	if err := a.CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if !b.IsAuthorized(alice.User) {
		t.Fatal("store B does not see the user store A created")
	}
	if _, err := b.RevokeUser(ctx, "alice", time.Now()); err != nil {
		t.Fatal(err)
	}
	if a.IsAuthorized(alice.User) {
		t.Fatal("store A still authorizes a user store B revoked")
	}
	u, err := a.GetUser(ctx, alice.User)
	if err != nil || u.Status != api.StatusRevoked {
		t.Fatalf("store A reads %+v, %v after store B revoked it", u, err)
	}

	// A plain connection, like a third program, changes a user too.
	bob := newUser(t, "bob")
	if err := b.CreateUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if !a.IsAuthorized(bob.User) {
		t.Fatal("store A does not see bob")
	}
	if _, err := rawDB(t, path).Exec(`UPDATE users SET status = 'revoked', revoked_at = 1 WHERE name = 'bob'`); err != nil {
		t.Fatal(err)
	}
	if a.IsAuthorized(bob.User) || b.IsAuthorized(bob.User) {
		t.Fatal("a revocation written by another connection is not seen at once")
	}

	// Rooms and rekeys too.
	carol := newUser(t, "carol")
	if err := a.CreateUser(ctx, carol); err != nil {
		t.Fatal(err)
	}
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: carol.User}
	k := sealed(r.ID, 1, carol, carol)
	if err := a.CreateRoom(ctx, r, &k); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Rekey(ctx, membership.Rekey{Room: r.ID, FromEpoch: 1, Keys: []api.SealedKey{sealed(r.ID, 2, carol, carol)}}); err != nil {
		t.Fatal(err)
	}
	got, err := a.GetRoom(ctx, r.ID)
	if err != nil || got.Epoch != 2 {
		t.Fatalf("store A reads %+v, %v after store B rekeyed", got, err)
	}
}

// TestConcurrentRekeyTwoStores races rekeys through two stores on one
// file: the write lock, not the process, serializes them.
func TestConcurrentRekeyTwoStores(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	stores := []membership.Store{openAt(t, path), openAt(t, path)}
	alice := newUser(t, "alice")
	if err := stores[0].CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User}
	k := sealed(r.ID, 1, alice, alice)
	if err := stores[0].CreateRoom(ctx, r, &k); err != nil {
		t.Fatal(err)
	}
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = stores[i%2].Rekey(ctx, membership.Rekey{Room: r.ID, FromEpoch: 1, Keys: []api.SealedKey{sealed(r.ID, 2, alice, alice)}})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch api.ErrorCode(err) {
		case "":
			wins++
		case api.CodeConflict:
		default:
			t.Fatalf("rekey: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent rekeys won, want 1", wins)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	s, err := membership.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := newUser(t, "alice"), newUser(t, "bob")
	at := time.Date(2025, 6, 7, 8, 9, 10, 987654321, time.FixedZone("X", 3600))
	alice.CreatedAt = at
	for _, u := range []api.User{alice, bob} {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User, CreatedAt: at}
	k := sealed(r.ID, 1, alice, alice)
	if err := s.CreateRoom(ctx, r, &k); err != nil {
		t.Fatal(err)
	}
	kb := sealed(r.ID, 1, bob, alice)
	if _, err := s.AddMember(ctx, r.ID, bob.User, 1, &kb); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rekey(ctx, membership.Rekey{Room: r.ID, FromEpoch: 1, Remove: []string{bob.User}, Keys: []api.SealedKey{sealed(r.ID, 2, alice, alice)}}); err != nil {
		t.Fatal(err)
	}
	blob := api.Blob{ID: strings.Repeat("ab", 32), Room: r.ID, Size: 99, Uploader: alice.User, CreatedAt: at}
	if err := s.AddBlob(ctx, blob); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeUser(ctx, "bob", at); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path)
	u, err := s.GetUser(ctx, "alice")
	if err != nil || !u.CreatedAt.Equal(at) || u.CreatedAt.Location() != time.UTC {
		t.Fatalf("alice after reopen: %+v, %v (want created %v, in UTC)", u, err, at)
	}
	u, err = s.GetUser(ctx, "bob")
	if err != nil || u.Status != api.StatusRevoked || u.RevokedAt == nil || !u.RevokedAt.Equal(at) || u.RevokedAt.Location() != time.UTC {
		t.Fatalf("bob after reopen: %+v, %v", u, err)
	}
	got, err := s.GetRoom(ctx, r.ID)
	if err != nil || got.Epoch != 2 || !got.CreatedAt.Equal(at) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("room after reopen: %+v, %v", got, err)
	}
	ms, err := s.Members(ctx, r.ID, true)
	if err != nil || len(ms) != 2 {
		t.Fatalf("members after reopen: %+v, %v", ms, err)
	}
	ks, err := s.SealedKeys(ctx, r.ID, alice.User, 0)
	if err != nil || len(ks) != 2 || ks[1].Epoch != 2 || ks[1].Sealer.Name != "alice" {
		t.Fatalf("keys after reopen: %+v, %v", ks, err)
	}
	b, err := s.GetBlob(ctx, r.ID, blob.ID)
	if err != nil || b.Size != 99 || !b.CreatedAt.Equal(at) {
		t.Fatalf("blob after reopen: %+v, %v", b, err)
	}
}

// TestZeroTimesMeanNow checks the SQLite backend's reading of a zero
// CreatedAt or revocation time.
func TestZeroTimesMeanNow(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	u := newUser(t, "alice")
	u.CreatedAt = time.Time{}
	before := time.Now()
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	r, err := s.RevokeUser(ctx, "alice", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if r.CreatedAt.Before(before) || r.CreatedAt.After(after) || r.RevokedAt.Before(before) || r.RevokedAt.After(after) {
		t.Fatalf("zero times stored as %v and %v, want between %v and %v", r.CreatedAt, r.RevokedAt, before, after)
	}
}

// ---- benchmarks ----

// bigRoom makes an encrypted room of n members through the Store. It is
// slow (one transaction per user), so benchmarks call it before the timer.
func bigRoom(b *testing.B, s membership.Store, n int) (api.Room, []api.User) {
	b.Helper()
	ctx := context.Background()
	users := make([]api.User, n)
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				users[i] = newUser(b, fmt.Sprintf("user%05d", i))
			}
		}()
	}
	wg.Wait()
	for _, u := range users {
		if err := s.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
	}
	owner := users[0]
	r := api.Room{ID: api.NewRoomID(), Name: "big", Encrypted: true, Creator: owner.User}
	k := sealed(r.ID, 1, owner, owner)
	if err := s.CreateRoom(ctx, r, &k); err != nil {
		b.Fatal(err)
	}
	for _, u := range users[1:] {
		k := sealed(r.ID, 1, u, owner)
		if _, err := s.AddMember(ctx, r.ID, u.User, 1, &k); err != nil {
			b.Fatal(err)
		}
	}
	r.Epoch = 1
	return r, users
}

func BenchmarkSealedKeys(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b)
	r, users := bigRoom(b, s, 100)
	for e := uint64(1); e < 10; e++ {
		c := membership.Rekey{Room: r.ID, FromEpoch: e}
		for _, u := range users {
			c.Keys = append(c.Keys, sealed(r.ID, e+1, u, users[0]))
		}
		if _, err := s.Rekey(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("one_epoch", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			ks, err := s.SealedKeys(ctx, r.ID, users[i%len(users)].User, 10)
			if err != nil || len(ks) != 1 {
				b.Fatal(ks, err)
			}
		}
	})
	b.Run("all_epochs", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			ks, err := s.SealedKeys(ctx, r.ID, users[i%len(users)].User, 0)
			if err != nil || len(ks) != 10 {
				b.Fatal(len(ks), err)
			}
		}
	})
}

func BenchmarkRoomsOf(b *testing.B) {
	ctx := context.Background()
	s := openTemp(b)
	alice := newUser(b, "alice")
	if err := s.CreateUser(ctx, alice); err != nil {
		b.Fatal(err)
	}
	for range 50 {
		r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User}
		k := sealed(r.ID, 1, alice, alice)
		if err := s.CreateRoom(ctx, r, &k); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		rs, err := s.RoomsOf(ctx, alice.User)
		if err != nil || len(rs) != 50 {
			b.Fatal(len(rs), err)
		}
	}
}

func BenchmarkIsAuthorized(b *testing.B) {
	s := openTemp(b)
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

// BenchmarkRekey10000 measures one rekey (the write) of a 10,000-member
// room; building the room and the requests is outside the timer.
func BenchmarkRekey10000(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	s := openTemp(b)
	r, users := bigRoom(b, s, n)
	epoch := r.Epoch
	next := func() membership.Rekey {
		c := membership.Rekey{Room: r.ID, FromEpoch: epoch, Keys: make([]api.SealedKey, 0, n)}
		for _, u := range users {
			c.Keys = append(c.Keys, sealed(r.ID, epoch+1, u, users[0]))
		}
		return c
	}
	c := next()
	for b.Loop() {
		// b.Loop times only the loop body; prepare the next request
		// while the timer is stopped.
		if _, err := s.Rekey(ctx, c); err != nil {
			b.Fatal(err)
		}
		epoch++
		b.StopTimer()
		c = next()
		b.StartTimer()
	}
}
