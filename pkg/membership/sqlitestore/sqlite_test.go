package sqlitestore_test

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

	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/sqlitestore"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, teststore.TempSQLite)
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

// migrated is the path of a fresh database that Open migrated and
// closed, and a plain connection to it.
func migrated(t testing.TB) (path string, db *sql.DB) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "unibus.db")
	s, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return path, teststore.RawSQLite(t, path)
}

func TestMigrationsAppliedOnce(t *testing.T) {
	path, db := migrated(t)
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
		s, err := sqlitestore.Open(path)
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
			s, err := sqlitestore.Open(path)
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
	if got, want := len(applied(t, teststore.RawSQLite(t, path))), knownVersions(t); got != want {
		t.Fatalf("%d migrations recorded, want %d", got, want)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path, db := migrated(t)
	newer := knownVersions(t) + 1
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, newer, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	_, err := sqlitestore.Open(path)
	want := fmt.Sprintf("database schema version %d is newer than this membershipd (max %d): upgrade membershipd", newer, newer-1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open of a newer schema: %v; want an error saying %q", err, want)
	}
}

// TestMigrateFromVersion1 opens a database as a version-1 membershipd left
// it (migration 0001 only, with data) and checks that migration 0002 keeps
// the data, gives the old rooms no history (head 0, which also leaves them
// unchangeable) and new rooms one, and that statements survive a reopen.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	v1, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	aliceID, alice := storetest.NewIdentity(t, "alice")
	bob, carol := storetest.NewUser(t, "bob"), storetest.NewUser(t, "carol")
	legacy := api.NewRoomID()
	blobID := strings.Repeat("cd", 32)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	// What Open of version 1 ran (see applyMigration), then a room of two
	// members, rekeyed once to remove bob, and a blob.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL)`, nil},
		{string(v1), nil},
		{`INSERT INTO schema_migrations (version, applied_at) VALUES (1, 12345)`, nil},
		{`INSERT INTO users (user_key, name, xkey, binding, role, status, created_at) VALUES (?, ?, ?, ?, 'admin', 'active', 1), (?, ?, ?, ?, 'member', 'active', 2), (?, ?, ?, ?, 'member', 'active', 3)`,
			[]any{alice.User, alice.Name, alice.XKey, alice.Binding, bob.User, bob.Name, bob.XKey, bob.Binding, carol.User, carol.Name, carol.XKey, carol.Binding}},
		{`INSERT INTO rooms (id, name, encrypted, epoch, creator, created_at) VALUES (?, 'old', 1, 2, ?, 4)`, []any{legacy, alice.User}},
		{`INSERT INTO members (room, user_key, since, until) VALUES (?, ?, 1, NULL), (?, ?, 1, 2)`, []any{legacy, alice.User, legacy, bob.User}},
		{`INSERT INTO sealed_keys (room, epoch, member, sealer, sealed) VALUES (?, 1, ?, ?, x'01'), (?, 1, ?, ?, x'02'), (?, 2, ?, ?, x'03')`,
			[]any{legacy, alice.User, alice.User, legacy, bob.User, alice.User, legacy, alice.User, alice.User}},
		{`INSERT INTO blobs (room, id, size, uploader, created_at) VALUES (?, ?, 7, ?, 5)`, []any{legacy, blobID, alice.User}},
	} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			t.Fatalf("version-1 database: %v", err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatalf("Open of a version-1 database: %v", err)
	}
	raw := teststore.RawSQLite(t, path)
	got := applied(t, raw)
	if len(got) < 2 || got[0] != (appliedMigration{1, 12345}) || got[1].version != 2 {
		t.Fatalf("schema_migrations after the upgrade: %+v", got)
	}
	var (
		headSeq  int64
		headHash string
		n        int
	)
	if err := raw.QueryRow(`SELECT head_seq, head_hash FROM rooms WHERE id = ?`, legacy).Scan(&headSeq, &headHash); err != nil || headSeq != 0 || headHash != "" {
		t.Fatalf("old room's head after the upgrade: %d %q, %v; want 0 and ''", headSeq, headHash, err)
	}
	if err := raw.QueryRow(`SELECT count(*) FROM statements`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d statements after the upgrade (%v), want none", n, err)
	}

	// The old data reads as before.
	r, err := s.GetRoom(ctx, legacy)
	if err != nil || r.Name != "old" || !r.Encrypted || r.Epoch != 2 || r.Creator != alice.User || r.HeadSeq != 0 || r.HeadHash != "" {
		t.Fatalf("old room after the upgrade: %+v, %v", r, err)
	}
	ms, err := s.Members(ctx, legacy, true)
	if err != nil || len(ms) != 2 {
		t.Fatalf("old room's members after the upgrade: %+v, %v", ms, err)
	}
	for _, m := range ms {
		if want := map[string]uint64{alice.User: 0, bob.User: 2}[m.User]; m.Since != 1 || m.Until != want {
			t.Fatalf("old room's members after the upgrade: %+v", ms)
		}
	}
	if ks, err := s.SealedKeys(ctx, legacy, alice.User, 0); err != nil || len(ks) != 2 || ks[1].SealedKey[0] != 3 || ks[1].Sealer.Name != "alice" {
		t.Fatalf("old room's keys after the upgrade: %+v, %v", ks, err)
	}
	if b, err := s.GetBlob(ctx, legacy, blobID); err != nil || b.Size != 7 {
		t.Fatalf("old blob after the upgrade: %+v, %v", b, err)
	}
	if rs, err := s.RoomsOf(ctx, alice.User); err != nil || len(rs) != 1 || rs[0].ID != legacy || rs[0].HeadSeq != 0 {
		t.Fatalf("RoomsOf(alice) after the upgrade: %+v, %v", rs, err)
	}
	if sts, err := s.Statements(ctx, legacy, 0); err != nil || sts == nil || len(sts) != 0 {
		t.Fatalf("Statements of an old room: %v, %v; want an empty list", sts, err)
	}
	if ok, err := s.IsMember(ctx, legacy, alice.User); err != nil || !ok {
		t.Fatalf("IsMember(alice) of the old room: %v, %v", ok, err)
	}
	if ok, err := s.IsMember(ctx, legacy, bob.User); err != nil || ok {
		t.Fatalf("IsMember(bob) of the old room: %v, %v", ok, err)
	}

	// The old room cannot be changed: no statement follows a missing head.
	pretend := storetest.NewChain(t)
	create := pretend.Create(aliceID, api.Room{ID: legacy, Name: "old", Encrypted: true})
	pretend.Accept(create)
	kc := api.SealedKey{Room: legacy, Epoch: 2, Member: carol.User, Sealer: alice.Public, SealedKey: []byte("k")}
	for what, st := range map[string]roomchain.Signed{"a creation statement": create, "an add statement": pretend.Add(aliceID, carol.Public)} {
		_, err := storetest.AddOne(ctx, s, legacy, carol.User, 2, &kc, st)
		if api.ErrorCode(err) != api.CodeInvalid || !strings.Contains(err.Error(), "no signed membership history") {
			t.Fatalf("AddMember to an old room with %s: %v, want invalid (no history)", what, err)
		}
	}
	_, err = s.Rekey(ctx, store.Rekey{Room: legacy, FromEpoch: 2, Keys: []api.SealedKey{storetest.Sealed(legacy, 3, alice, alice)}, Statement: pretend.Rekey(aliceID)})
	if api.ErrorCode(err) != api.CodeInvalid {
		t.Fatalf("Rekey of an old room: %v, want invalid", err)
	}
	if r, err := s.GetRoom(ctx, legacy); err != nil || r.Epoch != 2 || r.HeadSeq != 0 {
		t.Fatalf("old room after the refused changes: %+v, %v", r, err)
	}
	if ok, err := s.IsMember(ctx, legacy, carol.User); err != nil || ok {
		t.Fatalf("IsMember(carol) after the refused add: %v, %v", ok, err)
	}

	// A new room has a history, kept across a reopen.
	r = api.Room{ID: api.NewRoomID(), Name: "new", Encrypted: true, Creator: alice.User}
	c := storetest.CreateRoom(t, s, aliceID, r)
	st := c.AddOne(s, aliceID, bob)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = teststore.SQLite(t, path)
	if got2 := applied(t, raw); len(got2) != len(got) {
		t.Fatalf("schema_migrations after a reopen: %+v; want %+v again", got2, got)
	}
	c.Stored(s, "statements after a reopen")
	if got, err := s.GetRoom(ctx, r.ID); err != nil || got.HeadSeq != 2 || got.HeadHash != st.HashHex() {
		t.Fatalf("new room after a reopen: %+v, %v", got, err)
	}
}

// TestCreationStatementMatchesRoom checks what the SQLite store checks of a
// creation statement beyond [store.CheckStatement]: the room's name
// and encryption, which clients take from the statement.
func TestCreationStatementMatchesRoom(t *testing.T) {
	ctx := context.Background()
	s := teststore.TempSQLite(t)
	aliceID, alice := storetest.NewIdentity(t, "alice")
	if err := s.CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	r := api.Room{ID: api.NewRoomID(), Name: "plans", Encrypted: true, Creator: alice.User}
	k := storetest.Sealed(r.ID, 1, alice, alice)
	renamed, cleartext := r, r
	renamed.Name = "other"
	cleartext.Encrypted = false
	for what, claimed := range map[string]api.Room{"another name": renamed, "a cleartext room": cleartext} {
		st := storetest.NewChain(t).Create(aliceID, claimed)
		err := s.CreateRoom(ctx, r, &k, st)
		if api.ErrorCode(err) != api.CodeInvalid {
			t.Fatalf("CreateRoom with a statement naming %s: %v, want invalid", what, err)
		}
		if _, err := s.GetRoom(ctx, r.ID); api.ErrorCode(err) != api.CodeNotFound {
			t.Fatalf("GetRoom after the refused CreateRoom: %v, want not_found", err)
		}
	}
	storetest.CreateRoom(t, s, aliceID, r)
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state dir", "membership?#%")
	path := filepath.Join(dir, "unibus.db")
	s := teststore.SQLite(t, path)
	if err := s.CreateUser(context.Background(), storetest.NewUser(t, "alice")); err != nil {
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
	if _, err := sqlitestore.Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

// TestSecondOpenSeesWrites opens the file twice, as the server and the
// admin CLI do, and checks each sees the other's writes at once.
func TestSecondOpenSeesWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	a := teststore.SQLite(t, path)
	b := teststore.SQLite(t, path)
	alice := storetest.NewUser(t, "alice")
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
	bob := storetest.NewUser(t, "bob")
	if err := b.CreateUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if !a.IsAuthorized(bob.User) {
		t.Fatal("store A does not see bob")
	}
	if _, err := teststore.RawSQLite(t, path).Exec(`UPDATE users SET status = 'revoked', revoked_at = 1 WHERE name = 'bob'`); err != nil {
		t.Fatal(err)
	}
	if a.IsAuthorized(bob.User) || b.IsAuthorized(bob.User) {
		t.Fatal("a revocation written by another connection is not seen at once")
	}

	// Rooms, rekeys and their statements too.
	carolID, carol := storetest.NewIdentity(t, "carol")
	storetest.CreateUsers(t, a, carol)
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: carol.User}
	c := storetest.CreateRoom(t, a, carolID, r)
	rk := c.NextRekey(carolID, []api.User{carol})
	if _, err := b.Rekey(ctx, rk); err != nil {
		t.Fatal(err)
	}
	c.Accept(rk.Statement)
	got, err := a.GetRoom(ctx, r.ID)
	if err != nil || got.Epoch != 2 || got.HeadSeq != 2 || got.HeadHash != rk.Statement.HashHex() {
		t.Fatalf("store A reads %+v, %v after store B rekeyed", got, err)
	}
	c.Stored(a, "store A's history after store B rekeyed")
}

// TestConcurrentRekeyTwoStores races rekeys through two stores on one
// file: the write lock, not the process, serializes them.
func TestConcurrentRekeyTwoStores(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	stores := []store.Store{teststore.SQLite(t, path), teststore.SQLite(t, path)}
	aliceID, alice := storetest.NewIdentity(t, "alice")
	storetest.CreateUsers(t, stores[0], alice)
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User}
	c := storetest.CreateRoom(t, stores[0], aliceID, r)
	rk := c.NextRekey(aliceID, []api.User{alice})
	errs := storetest.Race(10, func(i int) error {
		_, err := stores[i%2].Rekey(ctx, rk)
		return err
	})
	storetest.OneWinner(t, errs, "concurrent rekeys through two stores")
	c.Accept(rk.Statement)
	c.Stored(stores[1], "history after the concurrent rekeys")
}

func TestDataSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	s, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	aliceID, alice := storetest.NewIdentity(t, "alice")
	bob := storetest.NewUser(t, "bob")
	at := time.Date(2025, 6, 7, 8, 9, 10, 987654321, time.FixedZone("X", 3600))
	alice.CreatedAt = at
	storetest.CreateUsers(t, s, alice, bob)
	r := api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User, CreatedAt: at}
	c := storetest.CreateRoom(t, s, aliceID, r)
	c.AddOne(s, aliceID, bob)
	rk := c.NextRekey(aliceID, []api.User{alice}, bob.User)
	if _, err := s.Rekey(ctx, rk); err != nil {
		t.Fatal(err)
	}
	c.Accept(rk.Statement)
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

	s = teststore.SQLite(t, path)
	u, err := s.GetUser(ctx, "alice")
	if err != nil || !u.CreatedAt.Equal(at) || u.CreatedAt.Location() != time.UTC {
		t.Fatalf("alice after reopen: %+v, %v (want created %v, in UTC)", u, err, at)
	}
	u, err = s.GetUser(ctx, "bob")
	if err != nil || u.Status != api.StatusRevoked || u.RevokedAt == nil || !u.RevokedAt.Equal(at) || u.RevokedAt.Location() != time.UTC {
		t.Fatalf("bob after reopen: %+v, %v", u, err)
	}
	got, err := s.GetRoom(ctx, r.ID)
	if err != nil || got.Epoch != 2 || !got.CreatedAt.Equal(at) || got.CreatedAt.Location() != time.UTC ||
		got.HeadSeq != 3 || got.HeadHash != c.State.Head {
		t.Fatalf("room after reopen: %+v, %v", got, err)
	}
	sts := c.Stored(s, "statements after reopen")
	if _, err := roomchain.Verify(r.ID, sts); err != nil {
		t.Fatalf("history after reopen does not verify: %v", err)
	}
	if ok, err := s.IsMember(ctx, r.ID, alice.User); err != nil || !ok {
		t.Fatalf("IsMember(alice) after reopen: %v, %v", ok, err)
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
	// The history goes on from the head stored before.
	if _, err := s.Rekey(ctx, c.NextRekey(aliceID, []api.User{alice})); err != nil {
		t.Fatalf("rekey after reopen: %v", err)
	}
}

// TestZeroTimesMeanNow checks the SQLite backend's reading of a zero
// CreatedAt or revocation time.
func TestZeroTimesMeanNow(t *testing.T) {
	ctx := context.Background()
	s := teststore.TempSQLite(t)
	u := storetest.NewUser(t, "alice")
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

// honestAdds is the largest room bigRoom builds through AddMember.
const honestAdds = 500

// bigRoom makes an encrypted room of n members, users[0] its owner, who
// added the others. Benchmarks call it before the timer.
//
// Up to honestAdds members it goes through the Store, one add (and one
// statement) per member. A larger room is written straight into the
// database at path, for speed: its users, members and keys, and as its
// head one bulk add statement of every other member, signed by the owner,
// which validly follows the creation statement.
func bigRoom(b *testing.B, path string, s store.Store, n int) (api.Room, []api.User, []*identity.Identity, *storetest.Chain) {
	b.Helper()
	ids, users := storetest.NewIdentities(b, n)
	owner, ownerID := users[0], ids[0]
	storetest.CreateUsers(b, s, owner)
	r := api.Room{ID: api.NewRoomID(), Name: "big", Encrypted: true, Creator: owner.User, Epoch: 1}
	c := storetest.CreateRoom(b, s, ownerID, r)
	if n <= honestAdds {
		for _, u := range users[1:] {
			storetest.CreateUsers(b, s, u)
			c.AddOne(s, ownerID, u)
		}
		return r, users, ids, c
	}

	added := make([]roomchain.Member, n-1)
	for i, u := range users[1:] {
		added[i] = roomchain.Member{Public: u.Public, Role: roomchain.RoleMember}
	}
	head := c.Sign(ownerID, roomchain.KindAdd, 1, added, nil, "", false)
	db := teststore.RawSQLite(b, path)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	for _, u := range users[1:] {
		if _, err := tx.Exec(`INSERT INTO users (user_key, name, xkey, binding, role, status, created_at) VALUES (?, ?, ?, ?, 'member', 'active', ?)`,
			u.User, u.Name, u.XKey, u.Binding, u.CreatedAt.UnixNano()); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO members (room, user_key, since) VALUES (?, ?, 1)`, r.ID, u.User); err != nil {
			b.Fatal(err)
		}
		k := storetest.Sealed(r.ID, 1, u, owner)
		if _, err := tx.Exec(`INSERT INTO sealed_keys (room, epoch, member, sealer, sealed) VALUES (?, 1, ?, ?, ?)`, r.ID, u.User, owner.User, k.SealedKey); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := tx.Exec(`INSERT INTO statements (room, seq, hash, body, sig) VALUES (?, 2, ?, ?, ?)`, r.ID, head.HashHex(), head.Body, head.Sig); err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE rooms SET head_seq = 2, head_hash = ? WHERE id = ?`, head.HashHex(), r.ID); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	c.Accept(head)
	return r, users, ids, c
}

func BenchmarkSealedKeys(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "unibus.db")
	s := teststore.SQLite(b, path)
	r, users, ids, ch := bigRoom(b, path, s, 100)
	for range 9 {
		c := ch.NextRekey(ids[0], users)
		if _, err := s.Rekey(ctx, c); err != nil {
			b.Fatal(err)
		}
		ch.Accept(c.Statement)
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
	s := teststore.TempSQLite(b)
	aliceID, alice := storetest.NewIdentity(b, "alice")
	storetest.CreateUsers(b, s, alice)
	for range 50 {
		storetest.CreateRoom(b, s, aliceID, api.Room{ID: api.NewRoomID(), Name: "r", Encrypted: true, Creator: alice.User})
	}
	for b.Loop() {
		rs, err := s.RoomsOf(ctx, alice.User)
		if err != nil || len(rs) != 50 {
			b.Fatal(len(rs), err)
		}
	}
}

func BenchmarkIsAuthorized(b *testing.B) {
	storetest.BenchIsAuthorized(b, teststore.TempSQLite(b))
}

// BenchmarkRekey10000 measures one rekey (the write, its statement checked
// against the head and the member rows, and stored) of a 10,000-member
// room; building the room and the requests is outside the timer.
func BenchmarkRekey10000(b *testing.B) {
	path := filepath.Join(b.TempDir(), "unibus.db")
	s := teststore.SQLite(b, path)
	_, users, ids, ch := bigRoom(b, path, s, 10000)
	size := storetest.BenchRekey(b, s, ch, ids[0], users)
	b.ReportMetric(float64(size), "statement-bytes")
}
