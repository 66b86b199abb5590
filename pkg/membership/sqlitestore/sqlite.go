package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// busyTimeout is how long a write waits for another process's write.
const busyTimeout = 5 * time.Second

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema change, migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in order. Their versions
// must run 1, 2, 3… without gaps, so that a database's version says
// exactly which ones it has.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name it NNNN_description.sql", base)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d: versions must run 1, 2, 3… without gaps or repeats", m.name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("no schema migrations embedded")
	}
	return ms, nil
}

// sqliteStore is the SQLite [store.Store].
type sqliteStore struct {
	db *sql.DB
	// reads runs the read queries through statements prepared once, not
	// compiled again on every call (the hot API reads were spending a
	// third of their time in SQLite's prepare).
	reads *preparedReads
}

// Open opens, creating it if needed, the SQLite control-plane database at
// path and brings its schema up to date. Its directory is created with
// mode 0700 and a new file with mode 0600. It refuses a database whose
// schema is newer than this binary knows.
//
// Other processes may open the same file at the same time; each sees the
// others' changes at once.
func Open(path string) (store.Store, error) {
	if path == "" {
		return nil, errors.New("membership database: empty path: pass the database file")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("membership database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("create membership database directory: %w", err)
	}
	// Create the file ourselves so that it, and the -wal and -shm files
	// SQLite gives the same mode, are private to the owner.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("membership database %s: %w", abs, err)
	}
	f.Close()

	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("membership database %s: %w", abs, err)
	}
	// Connections are cheap to keep and costly to open (each one reads the
	// schema and runs the pragmas), so keep a few idle for the hot reads.
	db.SetMaxIdleConns(8)
	s := &sqliteStore{db: db, reads: &preparedReads{db: db}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Processes opening a brand-new file at once race to switch it to WAL
	// mode, and SQLite can answer that race with SQLITE_BUSY without
	// waiting out the busy timeout: try again for as long as the timeout.
	deadline := time.Now().Add(busyTimeout)
	for {
		err := s.migrate(ctx)
		if err == nil {
			return s, nil
		}
		if !isBusy(err) || time.Now().After(deadline) {
			db.Close()
			return nil, fmt.Errorf("membership database %s: %w", abs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isBusy reports a database locked by another connection or process.
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// dsn is the modernc.org/sqlite data source name for the file at abs: a
// file: URI, so that any path (spaces, '?', '#') is escaped properly, with
// the driver's connection parameters.
func dsn(abs string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "1")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: p, RawQuery: q.Encode()}
	return u.String()
}

// migrate applies the migrations the database lacks, each in its own
// transaction together with its schema_migrations row, so that a crash
// leaves the database at some version, never between two.
func (s *sqliteStore) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	latest := ms[len(ms)-1].version
	v, err := schemaVersion(ctx, s.db)
	if err != nil {
		return err
	}
	if v > latest {
		return newerSchema(v, latest)
	}
	for _, m := range ms[v:] {
		if err := s.applyMigration(ctx, m, latest); err != nil {
			return err
		}
	}
	return nil
}

func newerSchema(v, latest int) error {
	return fmt.Errorf("database schema version %d is newer than this membershipd (max %d): upgrade membershipd", v, latest)
}

// schemaVersion returns the highest applied migration, 0 for a new database.
func schemaVersion(ctx context.Context, q querier) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n)
	if err != nil || n == 0 {
		return 0, err
	}
	var v int
	err = q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (s *sqliteStore) applyMigration(ctx context.Context, m migration, latest int) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	defer tx.Rollback()
	// Another process may have migrated while this one waited for the lock.
	v, err := schemaVersion(ctx, tx)
	if err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	if v > latest {
		return newerSchema(v, latest)
	}
	if v >= m.version {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.version, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	return nil
}

// querier is what *sql.DB, *sql.Tx and preparedReads share: the reads.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is a row to scan: *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// queryAll runs query on q and returns its rows, each read by scan: an
// empty list, not nil, if there are none. A failure is s.fail(op, …).
func queryAll[T any](ctx context.Context, s *sqliteStore, q querier, op, query string, scan func(scanner) (T, error), args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
}

// scanKey reads a row of one user key.
func scanKey(sc scanner) (string, error) {
	var k string
	err := sc.Scan(&k)
	return k, err
}

// write runs fn in one read-write transaction (BEGIN IMMEDIATE, see dsn)
// and commits it if fn returns nil. An error of fn is returned as is.
func (s *sqliteStore) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// fail turns a database error into the error a caller gets: an
// *api.Error as is, unavailable when another process held the database
// longer than the busy timeout, internal otherwise (the context's error,
// when it ended, still matches errors.Is).
func (s *sqliteStore) fail(op string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return err
	}
	if isBusy(err) {
		return api.Errorf(api.CodeUnavailable, "the membership database is busy (another process holds it): try again")
	}
	return fmt.Errorf("membership store: %s: %w", op, err)
}

// Close closes the database.
func (s *sqliteStore) Close() error {
	s.reads.close()
	return s.db.Close()
}

// nanos is t in unix nanoseconds; the zero time means now.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// epochArg is e as an SQLite integer. Epochs count up from 1, one per
// rekey, so they never come near the int64 limit; a larger e (only ever a
// bogus request) is mapped to -1, which no row holds.
func epochArg(e uint64) int64 {
	if e > 1<<62 {
		return -1
	}
	return int64(e)
}

// ---- users ----

const userColumns = `user_key, name, xkey, binding, role, status, created_at, revoked_at, registration_body, registration_sig`

func scanUser(sc scanner) (api.User, error) {
	var (
		u        api.User
		created  int64
		revoked  sql.NullInt64
		reg, sig []byte
	)
	if err := sc.Scan(&u.User, &u.Name, &u.XKey, &u.Binding, &u.Role, &u.Status, &created, &revoked, &reg, &sig); err != nil {
		return api.User{}, err
	}
	if reg != nil {
		u.Registration = &identity.SignedRegistration{Body: reg, Sig: sig}
	}
	u.CreatedAt = fromNanos(created)
	if revoked.Valid {
		t := fromNanos(revoked.Int64)
		u.RevokedAt = &t
	}
	return u, nil
}

// lookupUser finds a user by key, then by name in any case
// (store.MatchName); not_found if neither.
func (s *sqliteStore) lookupUser(ctx context.Context, q querier, keyOrName string) (api.User, error) {
	if store.LooksLikeUserKey(keyOrName) {
		u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE user_key = ?`, keyOrName))
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return api.User{}, s.fail("get user", err)
		}
	}
	// Every case of the name (users_name_lower), oldest first: more than
	// one only in a database older than schema version 5.
	users, err := queryAll(ctx, s, q, "get user", `SELECT `+userColumns+` FROM users WHERE lower(name) = lower(?) ORDER BY rowid`, scanUser, keyOrName)
	if err != nil {
		return api.User{}, err
	}
	return store.MatchName(keyOrName, users)
}

// CreateUser registers u. A zero CreatedAt means now.
func (s *sqliteStore) CreateUser(ctx context.Context, u api.User) error {
	if err := store.CheckNewUser(u); err != nil {
		return err
	}
	var revoked sql.NullInt64
	if u.RevokedAt != nil {
		revoked = sql.NullInt64{Int64: nanos(*u.RevokedAt), Valid: true}
	}
	return s.write(ctx, "create user", func(tx *sql.Tx) error {
		// The name in any case: users_name_nocase holds the rule, this
		// query the message.
		var (
			keyTaken bool
			holder   string
		)
		err := tx.QueryRowContext(ctx, `SELECT user_key = ?1, name FROM users WHERE user_key = ?1 OR lower(name) = lower(?2) ORDER BY 1 DESC LIMIT 1`,
			u.User, u.Name).Scan(&keyTaken, &holder)
		switch {
		case err == nil && keyTaken:
			return api.Errorf(api.CodeConflict, "user key %s is already registered: look it up with its key instead of adding it again", u.User)
		case err == nil:
			return store.NameTaken(u.Name, holder)
		case !errors.Is(err, sql.ErrNoRows):
			return s.fail("create user", err)
		}
		var reg, sig []byte
		if u.Registration != nil {
			reg, sig = u.Registration.Body, u.Registration.Sig
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.User, u.Name, u.XKey, u.Binding, u.Role, u.Status, nanos(u.CreatedAt), revoked, reg, sig)
		if err != nil {
			return s.fail("create user", err)
		}
		return nil
	})
}

// GetUser returns the user with this key or, failing that, this name.
func (s *sqliteStore) GetUser(ctx context.Context, keyOrName string) (api.User, error) {
	return s.lookupUser(ctx, s.reads, keyOrName)
}

// ListUsers returns every user, oldest first.
func (s *sqliteStore) ListUsers(ctx context.Context) ([]api.User, error) {
	return queryAll(ctx, s, s.db, "list users", `SELECT `+userColumns+` FROM users ORDER BY created_at, rowid`, scanUser)
}

// RevokeUser marks the user revoked at at (a zero at means now), keeping
// the first revocation time of a user already revoked.
func (s *sqliteStore) RevokeUser(ctx context.Context, keyOrName string, at time.Time) (api.User, error) {
	var u api.User
	err := s.write(ctx, "revoke user", func(tx *sql.Tx) error {
		var err error
		u, err = s.lookupUser(ctx, tx, keyOrName)
		if err != nil || u.Status == api.StatusRevoked {
			return err
		}
		n := nanos(at)
		if _, err := tx.ExecContext(ctx, `UPDATE users SET status = 'revoked', revoked_at = ? WHERE user_key = ?`, n, u.User); err != nil {
			return s.fail("revoke user", err)
		}
		u.Status = api.StatusRevoked
		t := fromNanos(n)
		u.RevokedAt = &t
		return nil
	})
	if err != nil {
		return api.User{}, err
	}
	return u, nil
}

// IsAuthorized reports whether userKey is an active user. It reads the
// database every time, so a revocation by another process takes effect at
// once, and answers false on any error or after store.AuthorizeTimeout.
func (s *sqliteStore) IsAuthorized(userKey string) bool {
	if !store.LooksLikeUserKey(userKey) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), store.AuthorizeTimeout)
	defer cancel()
	var one int
	err := s.reads.QueryRowContext(ctx, `SELECT 1 FROM users WHERE user_key = ? AND status = 'active'`, userKey).Scan(&one)
	return err == nil
}

// ---- rooms ----

const roomColumns = `id, name, encrypted, epoch, creator, created_at, head_seq, head_hash`

func scanRoom(sc scanner) (api.Room, error) {
	var (
		r       api.Room
		epoch   int64
		created int64
		head    int64
	)
	if err := sc.Scan(&r.ID, &r.Name, &r.Encrypted, &epoch, &r.Creator, &created, &head, &r.HeadHash); err != nil {
		return api.Room{}, err
	}
	r.Epoch = uint64(epoch)
	r.CreatedAt = fromNanos(created)
	r.HeadSeq = uint64(head)
	return r, nil
}

func (s *sqliteStore) getRoom(ctx context.Context, q querier, id string) (api.Room, error) {
	r, err := scanRoom(q.QueryRowContext(ctx, `SELECT `+roomColumns+` FROM rooms WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return api.Room{}, store.RoomNotFound(id)
	}
	if err != nil {
		return api.Room{}, s.fail("get room", err)
	}
	return r, nil
}

// userStatus returns the status of the user with key userKey, or
// not_found.
func (s *sqliteStore) userStatus(ctx context.Context, q querier, userKey string) (string, error) {
	var status string
	err := q.QueryRowContext(ctx, `SELECT status FROM users WHERE user_key = ?`, userKey).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", store.UserNotFound(userKey)
	}
	if err != nil {
		return "", s.fail("get user", err)
	}
	return status, nil
}

// statusIn is the status lookup of users in q, for the checks every
// backend makes (package store).
func (s *sqliteStore) statusIn(ctx context.Context, q querier) store.StatusOf {
	return func(u string) (string, error) { return s.userStatus(ctx, q, u) }
}

const insertKey = `INSERT INTO sealed_keys (room, member, epoch, sealer, sealed) VALUES (?, ?, ?, ?, ?)`

const insertStatement = `INSERT INTO statements (room, seq, hash, body, sig) VALUES (?, ?, ?, ?, ?)`

// seqArg is a statement sequence number as an SQLite integer; like
// epochArg, a number beyond any stored one (only ever a bogus request) is
// mapped to one that still compares above every row.
func seqArg(n uint64) int64 {
	if n > 1<<62 {
		return 1 << 62
	}
	return int64(n)
}

// headOf loads the last statement of room r, read in the write
// transaction, for [store.CheckStatement]. A room created before schema version
// 2 has none and cannot be changed: no statement can follow it.
func (s *sqliteStore) headOf(ctx context.Context, tx *sql.Tx, r api.Room, op string) (*roomchain.Signed, error) {
	if r.HeadSeq == 0 {
		return nil, store.NoHistory(r.ID)
	}
	var head roomchain.Signed
	err := tx.QueryRowContext(ctx, `SELECT body, sig FROM statements WHERE room = ? AND seq = ?`, r.ID, seqArg(r.HeadSeq)).Scan(&head.Body, &head.Sig)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, s.fail(op, fmt.Errorf("room %s: head statement %d is missing", r.ID, r.HeadSeq))
	}
	if err != nil {
		return nil, s.fail(op, err)
	}
	return &head, nil
}

// appendStatement stores st, statement seq of room r, checked by
// [store.CheckStatement] against the head r names, and moves r's head to it
// (and its epoch to epoch). The update is conditioned on the head and
// epoch read in this transaction, as a guard: the write lock already
// excludes a change in between.
func (s *sqliteStore) appendStatement(ctx context.Context, tx *sql.Tx, r *api.Room, seq uint64, st roomchain.Signed, epoch uint64, op string) error {
	hash := st.HashHex()
	if _, err := tx.ExecContext(ctx, insertStatement, r.ID, seqArg(seq), hash, st.Body, st.Sig); err != nil {
		return s.fail(op, err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE rooms SET epoch = ?, head_seq = ?, head_hash = ? WHERE id = ? AND epoch = ? AND head_seq = ?`,
		epochArg(epoch), seqArg(seq), hash, r.ID, epochArg(r.Epoch), seqArg(r.HeadSeq))
	if err != nil {
		return s.fail(op, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return s.fail(op, fmt.Errorf("room %s: head update touched %d rows (%v)", r.ID, n, err))
	}
	r.Epoch, r.HeadSeq, r.HeadHash = epoch, seq, hash
	return nil
}

// CreateRoom stores r at epoch 1 with its creator as the only member and
// st as the first statement of its history. A zero CreatedAt means now;
// r.Epoch, r.HeadSeq, r.HeadHash and r.Members are ignored. Beyond
// [store.CheckStatement], st must name the room's name and encryption as r does
// (invalid otherwise): clients take both from the statement and refuse a
// room the server describes otherwise.
func (s *sqliteStore) CreateRoom(ctx context.Context, r api.Room, creatorKey *api.SealedKey, st roomchain.Signed) error {
	if err := store.CheckNewRoom(r, creatorKey); err != nil {
		return err
	}
	return s.write(ctx, "create room", func(tx *sql.Tx) error {
		status := s.statusIn(ctx, tx)
		if err := store.CheckCreator(r, status); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM rooms WHERE id = ?`, r.ID).Scan(&one)
		if err == nil {
			return store.RoomIDTaken(r.ID)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return s.fail("create room", err)
		}
		if creatorKey != nil {
			if err := store.CheckSealers([]api.SealedKey{*creatorKey}, status); err != nil {
				return err
			}
		}
		if err := store.CheckCreateStatement(r, st); err != nil {
			return s.fail("create room", err)
		}
		hash := st.HashHex()
		if _, err := tx.ExecContext(ctx, `INSERT INTO rooms (`+roomColumns+`) VALUES (?, ?, ?, 1, ?, ?, 1, ?)`,
			r.ID, r.Name, r.Encrypted, r.Creator, nanos(r.CreatedAt), hash); err != nil {
			return s.fail("create room", err)
		}
		if _, err := tx.ExecContext(ctx, insertStatement, r.ID, 1, hash, st.Body, st.Sig); err != nil {
			return s.fail("create room", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO members (room, user_key, since) VALUES (?, ?, 1)`, r.ID, r.Creator); err != nil {
			return s.fail("create room", err)
		}
		if creatorKey == nil {
			return nil
		}
		if _, err := tx.ExecContext(ctx, insertKey, r.ID, r.Creator, 1, creatorKey.Sealer.User, creatorKey.SealedKey); err != nil {
			return s.fail("create room", err)
		}
		return nil
	})
}

// GetRoom returns the room without its members.
func (s *sqliteStore) GetRoom(ctx context.Context, id string) (api.Room, error) {
	return s.getRoom(ctx, s.reads, id)
}

// RoomsOf returns the rooms userKey is a member of now, oldest first.
func (s *sqliteStore) RoomsOf(ctx context.Context, userKey string) ([]api.Room, error) {
	return queryAll(ctx, s, s.reads, "list rooms", `SELECT r.id, r.name, r.encrypted, r.epoch, r.creator, r.created_at, r.head_seq, r.head_hash
		FROM members m JOIN rooms r ON r.id = m.room
		WHERE m.user_key = ? AND m.until IS NULL
		ORDER BY r.created_at, r.rowid`, scanRoom, userKey)
}

const (
	membersQuery = `SELECT u.name, u.user_key, u.xkey, u.binding, m.since, m.until, u.status = 'revoked'
		FROM members m JOIN users u ON u.user_key = m.user_key
		WHERE m.room = ? AND m.until IS NULL
		ORDER BY m.since, m.user_key`
	memberHistoryQuery = `SELECT u.name, u.user_key, u.xkey, u.binding, m.since, m.until, u.status = 'revoked'
		FROM members m JOIN users u ON u.user_key = m.user_key
		WHERE m.room = ?
		ORDER BY m.since, m.user_key`
)

// Members returns the room's members, ordered by Since then user key.
// not_found if the room does not exist.
func (s *sqliteStore) Members(ctx context.Context, room string, history bool) ([]api.Member, error) {
	q := membersQuery
	if history {
		q = memberHistoryQuery
	}
	members, err := queryAll(ctx, s, s.reads, "list members", q, func(sc scanner) (api.Member, error) {
		var (
			m     api.Member
			since int64
			until sql.NullInt64
		)
		err := sc.Scan(&m.Name, &m.User, &m.XKey, &m.Binding, &since, &until, &m.Revoked)
		m.Since, m.Until = uint64(since), uint64(until.Int64)
		return m, err
	}, room)
	if err != nil {
		return nil, err
	}
	if len(members) == 0 {
		// A room may have lost every member; tell that from no room.
		if _, err := s.getRoom(ctx, s.reads, room); err != nil {
			return nil, err
		}
	}
	return members, nil
}

// AddMembers adds a.Users at the room's current epoch (or, for a
// rekeying add, at the next one) after checking the rules of
// [store.Store.AddMembers], in one BEGIN IMMEDIATE transaction: the
// member rows, current and former, with the current members' status are
// read with one query, the added users' status with one per user.
func (s *sqliteStore) AddMembers(ctx context.Context, a store.Add) (api.Room, error) {
	var r api.Room
	err := s.write(ctx, "add members", func(tx *sql.Tx) error {
		var err error
		if r, err = s.getRoom(ctx, tx, a.Room); err != nil {
			return err
		}
		status := s.statusIn(ctx, tx)
		if err := store.CheckAddable(a.Users, status); err != nil {
			return err
		}
		// The member sets before and after the add, for the statement
		// check; the current members' status and the former members, for
		// the rules of a re-add.
		var before []string
		active, former := map[string]bool{}, map[string]bool{}
		_, err = queryAll(ctx, s, tx, "add members", `SELECT m.user_key, m.until IS NULL, u.status = 'active'
			FROM members m JOIN users u ON u.user_key = m.user_key
			WHERE m.room = ?
			ORDER BY m.user_key`, func(sc scanner) (struct{}, error) {
			var (
				k           string
				current, ok bool
			)
			if err := sc.Scan(&k, &current, &ok); err != nil {
				return struct{}{}, err
			}
			if current {
				before = append(before, k)
				active[k] = ok
			} else {
				former[k] = true
			}
			return struct{}{}, nil
		}, a.Room)
		if err != nil {
			return err
		}
		for _, k := range before {
			delete(former, k)
		}
		after, err := store.CheckAdd(a, r.Epoch, r.Encrypted, before, active, former)
		if err != nil {
			return err
		}
		if err := store.CheckSealers(a.Keys, status); err != nil {
			return err
		}
		head, err := s.headOf(ctx, tx, r, "add members")
		if err != nil {
			return err
		}
		epoch := a.After()
		parsed, err := store.CheckStatement(a.Room, head, before, a.Statement, roomchain.KindAdd, epoch, after)
		if err != nil {
			return s.fail("add members", err)
		}
		if err := s.appendStatement(ctx, tx, &r, parsed.Seq, a.Statement, epoch, "add members"); err != nil {
			return err
		}
		for _, u := range a.Users {
			if _, err := tx.ExecContext(ctx, `INSERT INTO members (room, user_key, since) VALUES (?, ?, ?)`, a.Room, u, epochArg(epoch)); err != nil {
				return s.fail("add members", err)
			}
		}
		for _, k := range a.Keys {
			if _, err := tx.ExecContext(ctx, insertKey, a.Room, k.Member, epochArg(epoch), k.Sealer.User, k.SealedKey); err != nil {
				return s.fail("add members", err)
			}
		}
		return nil
	})
	if err != nil {
		return api.Room{}, err
	}
	return r, nil
}

// Rekey moves the room to c.FromEpoch+1 after checking the rules of
// [store.Rekey], all in one BEGIN IMMEDIATE transaction. The member set and
// each member's status are read with one query and compared in memory
// (and with the statement), and the keys are written through one
// prepared statement: no query per member.
func (s *sqliteStore) Rekey(ctx context.Context, c store.Rekey) (api.Room, error) {
	var r api.Room
	err := s.write(ctx, "rekey", func(tx *sql.Tx) error {
		var err error
		if r, err = s.getRoom(ctx, tx, c.Room); err != nil {
			return err
		}
		if err := store.CheckRekeyEpoch(c, r.Epoch); err != nil {
			return err
		}
		next := c.FromEpoch + 1
		active := map[string]bool{}
		members, err := queryAll(ctx, s, tx, "rekey", `SELECT m.user_key, u.status = 'active'
			FROM members m JOIN users u ON u.user_key = m.user_key
			WHERE m.room = ? AND m.until IS NULL
			ORDER BY m.user_key`, func(sc scanner) (string, error) {
			var (
				k  string
				ok bool
			)
			err := sc.Scan(&k, &ok)
			active[k] = ok
			return k, err
		}, c.Room)
		if err != nil {
			return err
		}
		_, remaining, err := store.CheckRekey(c, r.Encrypted, members, active)
		if err != nil {
			return err
		}
		if err := store.CheckSealers(c.Keys, s.statusIn(ctx, tx)); err != nil {
			return err
		}
		head, err := s.headOf(ctx, tx, r, "rekey")
		if err != nil {
			return err
		}
		parsed, err := store.CheckRekeyStatement(c, head, members, remaining, active)
		if err != nil {
			return s.fail("rekey", err)
		}
		if err := s.appendStatement(ctx, tx, &r, parsed.Seq, c.Statement, next, "rekey"); err != nil {
			return err
		}
		if len(c.Remove) > 0 {
			st, err := tx.PrepareContext(ctx, `UPDATE members SET until = ? WHERE room = ? AND user_key = ? AND until IS NULL`)
			if err != nil {
				return s.fail("rekey", err)
			}
			defer st.Close()
			for _, k := range c.Remove {
				if _, err := st.ExecContext(ctx, epochArg(next), c.Room, k); err != nil {
					return s.fail("rekey", err)
				}
			}
		}
		if len(c.Keys) > 0 {
			st, err := tx.PrepareContext(ctx, insertKey)
			if err != nil {
				return s.fail("rekey", err)
			}
			defer st.Close()
			// In member order, the new epoch's rows are appended in key
			// order: dense pages, no splits.
			byMember := make([]int, len(c.Keys))
			for i := range byMember {
				byMember[i] = i
			}
			slices.SortFunc(byMember, func(a, b int) int { return strings.Compare(c.Keys[a].Member, c.Keys[b].Member) })
			for _, i := range byMember {
				k := &c.Keys[i]
				if _, err := st.ExecContext(ctx, c.Room, k.Member, epochArg(next), k.Sealer.User, k.SealedKey); err != nil {
					return s.fail("rekey", err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return api.Room{}, err
	}
	return r, nil
}

// SealedKeys returns member's keys in room for one epoch, or every epoch
// (epoch 0) ascending, each with its sealer's public identity. No keys is
// an empty list, not an error.
//
// sealed_keys is ordered by (room, epoch, member) so that rekeys append
// (see migrations/0001_init.sql). A member's keys of every epoch are thus
// not one range: they are looked up one epoch at a time over the member's
// membership ranges, the only epochs it holds keys for. The CROSS JOINs fix
// that join order.
func (s *sqliteStore) SealedKeys(ctx context.Context, room, member string, epoch uint64) ([]api.SealedKey, error) {
	const cols = `k.epoch, k.sealed, u.name, u.user_key, u.xkey, u.binding`
	scan := func(sc scanner) (api.SealedKey, error) {
		k := api.SealedKey{Room: room, Member: member}
		var e int64
		err := sc.Scan(&e, &k.SealedKey, &k.Sealer.Name, &k.Sealer.User, &k.Sealer.XKey, &k.Sealer.Binding)
		k.Epoch = uint64(e)
		return k, err
	}
	if epoch != 0 {
		return queryAll(ctx, s, s.reads, "list sealed keys", `SELECT `+cols+`
			FROM sealed_keys k CROSS JOIN users u
			WHERE k.room = ? AND k.epoch = ? AND k.member = ? AND u.user_key = k.sealer`,
			scan, room, epochArg(epoch), member)
	}
	return queryAll(ctx, s, s.reads, "list sealed keys", `WITH RECURSIVE ep (epoch, last) AS (
			SELECT m.since, coalesce(m.until - 1, r.epoch)
			FROM members m JOIN rooms r ON r.id = m.room
			WHERE m.room = ?1 AND m.user_key = ?2
			UNION ALL
			SELECT epoch + 1, last FROM ep WHERE epoch < last
		)
		SELECT `+cols+`
		FROM ep CROSS JOIN sealed_keys k CROSS JOIN users u
		WHERE k.room = ?1 AND k.epoch = ep.epoch AND k.member = ?2 AND u.user_key = k.sealer
		ORDER BY k.epoch`, scan, room, member)
}

// IsMember reports whether userKey is a current member of room: one query,
// a primary key lookup of the room and one of the member in
// members_current. not_found if the room does not exist.
func (s *sqliteStore) IsMember(ctx context.Context, room, userKey string) (bool, error) {
	var ok bool
	err := s.reads.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE room = ?1 AND user_key = ?2 AND until IS NULL)
		FROM rooms WHERE id = ?1`, room, userKey).Scan(&ok)
	if errors.Is(err, sql.ErrNoRows) {
		return false, store.RoomNotFound(room)
	}
	if err != nil {
		return false, s.fail("check member", err)
	}
	return ok, nil
}

// Statements returns the statements of room after sequence number after,
// ascending, with the bytes they were stored with. not_found if the room
// does not exist; an empty list for one created before schema version 2.
func (s *sqliteStore) Statements(ctx context.Context, room string, after uint64) ([]roomchain.Signed, error) {
	sts, err := queryAll(ctx, s, s.reads, "list statements", `SELECT body, sig FROM statements WHERE room = ? AND seq > ? ORDER BY seq`,
		func(sc scanner) (roomchain.Signed, error) {
			var st roomchain.Signed
			err := sc.Scan(&st.Body, &st.Sig)
			return st, err
		}, room, seqArg(after))
	if err != nil {
		return nil, err
	}
	if len(sts) == 0 {
		// Nothing after after, or no such room.
		if _, err := s.getRoom(ctx, s.reads, room); err != nil {
			return nil, err
		}
	}
	return sts, nil
}

// DeleteRoom removes room and every row of it in one BEGIN IMMEDIATE
// transaction, children first (the foreign keys have no cascade): sealed
// keys, members, statements, blob records, the room. The blob ids it
// returns are those no other room records, found with one EXCEPT over the
// blobs table (no index by id alone: a deletion is rare).
func (s *sqliteStore) DeleteRoom(ctx context.Context, room, by string) (store.Deleted, error) {
	var d store.Deleted
	err := s.write(ctx, "delete room", func(tx *sql.Tx) error {
		r, err := s.getRoom(ctx, tx, room)
		if err != nil {
			return err
		}
		members, err := queryAll(ctx, s, tx, "delete room", `SELECT user_key FROM members WHERE room = ? AND until IS NULL ORDER BY user_key`, scanKey, room)
		if err != nil {
			return err
		}
		var head *roomchain.Signed
		if r.HeadSeq > 0 {
			if head, err = s.headOf(ctx, tx, r, "delete room"); err != nil {
				return err
			}
		}
		if err := store.CheckDelete(r, head, members, by); err != nil {
			return s.fail("delete room", err)
		}
		blobs, err := queryAll(ctx, s, tx, "delete room", `SELECT id FROM blobs WHERE room = ?1 EXCEPT SELECT id FROM blobs WHERE room <> ?1 ORDER BY 1`, scanKey, room)
		if err != nil {
			return err
		}
		for _, table := range []string{"sealed_keys", "members", "statements", "blobs"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE room = ?`, room); err != nil {
				return s.fail("delete room", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM rooms WHERE id = ?`, room); err != nil {
			return s.fail("delete room", err)
		}
		d = store.Deleted{Room: r, Members: members, Blobs: blobs}
		return nil
	})
	if err != nil {
		return store.Deleted{}, err
	}
	return d, nil
}

// ---- blobs ----

// AddBlob records that blob b belongs to room b.Room. Recording it again
// is a no-op that keeps the first record. not_found if the room does not
// exist; invalid if the uploader is not a registered user. A zero
// CreatedAt means now.
func (s *sqliteStore) AddBlob(ctx context.Context, b api.Blob) error {
	if err := store.CheckNewBlob(b); err != nil {
		return err
	}
	return s.write(ctx, "add blob", func(tx *sql.Tx) error {
		if _, err := s.getRoom(ctx, tx, b.Room); err != nil {
			return err
		}
		if _, err := s.userStatus(ctx, tx, b.Uploader); api.IsCode(err, api.CodeNotFound) {
			return store.UnknownUploader(b.Uploader)
		} else if err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO blobs (room, id, size, uploader, created_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (room, id) DO NOTHING`, b.Room, b.ID, b.Size, b.Uploader, nanos(b.CreatedAt))
		if err != nil {
			return s.fail("add blob", err)
		}
		return nil
	})
}

// GetBlob returns the record of blob id in room.
func (s *sqliteStore) GetBlob(ctx context.Context, room, id string) (api.Blob, error) {
	b := api.Blob{Room: room, ID: id}
	var created int64
	err := s.reads.QueryRowContext(ctx, `SELECT size, uploader, created_at FROM blobs WHERE room = ? AND id = ?`, room, id).
		Scan(&b.Size, &b.Uploader, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return api.Blob{}, store.BlobNotFound(room, id)
	}
	if err != nil {
		return api.Blob{}, s.fail("get blob", err)
	}
	b.CreatedAt = fromNanos(created)
	return b, nil
}

// UseNonce records nonce until expires in one transaction that also drops
// a batch of expired nonces, so the table stays the size of one window.
func (s *sqliteStore) UseNonce(ctx context.Context, nonce string, expires time.Time) error {
	now := nanos(time.Now())
	return s.write(ctx, "use nonce", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM request_nonces WHERE nonce IN (SELECT nonce FROM request_nonces WHERE expires < ? LIMIT 100)`, now); err != nil {
			return s.fail("use nonce", err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO request_nonces (nonce, expires) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING`, nonce, nanos(expires))
		if err != nil {
			return s.fail("use nonce", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.NonceUsed()
		}
		return nil
	})
}

// ---- snapshot ----

// ExportSnapshot reads the whole database in one read transaction (a
// consistent snapshot under WAL: writers go on meanwhile), every table
// in one query.
func (s *sqliteStore) ExportSnapshot(ctx context.Context) (*store.Snapshot, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, s.fail("export", err)
	}
	defer conn.Close()
	// A deferred transaction takes no write lock (the connection's
	// BeginTx would: see dsn).
	if _, err := conn.ExecContext(ctx, `BEGIN DEFERRED`); err != nil {
		return nil, s.fail("export", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)
	snap := &store.Snapshot{}
	each := func(query string, scan func(rows *sql.Rows) error) error {
		rows, err := conn.QueryContext(ctx, query)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err = errors.Join(
		each(`SELECT `+userColumns+` FROM users`, func(rows *sql.Rows) error {
			u, err := scanUser(rows)
			snap.Users = append(snap.Users, u)
			return err
		}),
		each(`SELECT `+roomColumns+` FROM rooms`, func(rows *sql.Rows) error {
			r, err := scanRoom(rows)
			snap.Rooms = append(snap.Rooms, r)
			return err
		}),
		each(`SELECT room, user_key, since, until FROM members`, func(rows *sql.Rows) error {
			var (
				m     store.MemberRecord
				since int64
				until sql.NullInt64
			)
			err := rows.Scan(&m.Room, &m.User, &since, &until)
			m.Since, m.Until = uint64(since), uint64(until.Int64)
			snap.Members = append(snap.Members, m)
			return err
		}),
		each(`SELECT room, epoch, member, sealer, sealed FROM sealed_keys`, func(rows *sql.Rows) error {
			var (
				k     store.SealedKeyRecord
				epoch int64
			)
			err := rows.Scan(&k.Room, &epoch, &k.Member, &k.Sealer, &k.SealedKey)
			k.Epoch = uint64(epoch)
			snap.SealedKeys = append(snap.SealedKeys, k)
			return err
		}),
		each(`SELECT room, seq, body, sig FROM statements`, func(rows *sql.Rows) error {
			var (
				st  store.StatementRecord
				seq int64
			)
			err := rows.Scan(&st.Room, &seq, &st.Body, &st.Sig)
			st.Seq = uint64(seq)
			snap.Statements = append(snap.Statements, st)
			return err
		}),
		each(`SELECT room, id, size, uploader, created_at FROM blobs`, func(rows *sql.Rows) error {
			var (
				b       api.Blob
				created int64
			)
			err := rows.Scan(&b.Room, &b.ID, &b.Size, &b.Uploader, &created)
			b.CreatedAt = fromNanos(created)
			snap.Blobs = append(snap.Blobs, b)
			return err
		}),
	)
	if err != nil {
		return nil, s.fail("export", err)
	}
	snap.Sort()
	return snap, nil
}

// RevokedUsers returns the user keys of every revoked user: one narrow
// query, prepared once, for the data plane's revocation watch, which asks
// several times a second.
func (s *sqliteStore) RevokedUsers(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s, s.reads, "list revoked users", `SELECT user_key FROM users WHERE status = 'revoked'`, scanKey)
}

// preparedReads is a querier over the database that prepares each query
// text once and reuses the statement (database/sql keeps it prepared on
// each connection it runs on). Safe for concurrent use.
type preparedReads struct {
	db    *sql.DB
	stmts sync.Map // query text -> *sql.Stmt
}

func (p *preparedReads) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := p.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := p.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

func (p *preparedReads) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (p *preparedReads) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (p *preparedReads) close() {
	p.stmts.Range(func(_, v any) bool {
		v.(*sql.Stmt).Close()
		return true
	})
}
