package membership

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/kvstore"
	"github.com/enmanuel/unibus/pkg/membership/sqlitestore"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// MigrateStats is what [MigrateSQLiteToKV] moved.
type MigrateStats struct {
	Users      int
	Rooms      int
	Members    int
	SealedKeys int
	Statements int
	Blobs      int
	// Export and Import are the time spent reading the SQLite database
	// and writing the buckets.
	Export, Import time.Duration
	// Unchanged is set when the buckets already held exactly this state:
	// nothing was written.
	Unchanged bool
	// Overwritten lists, with MigrateOptions.Force, what the buckets had
	// moved on to that the copy wrote over (see [KVAheadError]).
	Overwritten []string
}

// Records is the number of records moved.
func (m MigrateStats) Records() int {
	return m.Users + m.Rooms + m.Members + m.SealedKeys + m.Statements + m.Blobs
}

func (m MigrateStats) String() string {
	if m.Unchanged {
		return fmt.Sprintf("%d users, %d rooms, %d memberships, %d sealed keys, %d statements, %d blobs: the KV store already holds them, nothing written (export %s)",
			m.Users, m.Rooms, m.Members, m.SealedKeys, m.Statements, m.Blobs, m.Export.Round(time.Millisecond))
	}
	return fmt.Sprintf("%d users, %d rooms, %d memberships, %d sealed keys, %d statements, %d blobs (export %s, import %s)",
		m.Users, m.Rooms, m.Members, m.SealedKeys, m.Statements, m.Blobs,
		m.Export.Round(time.Millisecond), m.Import.Round(time.Millisecond))
}

// MigrateOptions configure [MigrateSQLiteToKV].
type MigrateOptions struct {
	// KV names the buckets, and their replicas if they are made.
	KV KVConfig
	// Force writes the SQLite state over buckets that have moved on past
	// it, instead of refusing with a [*KVAheadError].
	Force bool
	// Backup, if not nil, is called once before the first write: before
	// the database is read if reading it brings its schema up to date,
	// else once the buckets are known to take the copy. It is not called
	// when nothing is written (a refusal, or buckets that already hold
	// the database's state).
	Backup func(ctx context.Context) error
	// Progress, if not nil, is called as records are written, with their
	// number so far and the total.
	Progress func(done, total int)
}

// KVAheadError is the refusal of [MigrateSQLiteToKV] to write over
// buckets that hold state the SQLite database does not: the store was
// served from, or changed through, the buckets since an earlier
// migration. Nothing was written.
type KVAheadError struct {
	// Differences says, one line each, what the copy would lose or roll
	// back: users and rooms only in the buckets, a user revoked there
	// but active in SQLite, a room whose history there is past SQLite's.
	Differences []string
}

func (e *KVAheadError) Error() string {
	const show = 5
	d := e.Differences
	more := ""
	if len(d) > show {
		d, more = d[:show], fmt.Sprintf("; and %d more", len(e.Differences)-show)
	}
	return fmt.Sprintf("the KV store has moved on past the SQLite database (%d difference(s)): %s%s; nothing was written", len(e.Differences), strings.Join(d, "; "), more)
}

// MigrateSQLiteToKV copies the whole control-plane state of the SQLite
// database at sqlitePath into the JetStream KV buckets of opts.KV,
// creating them if needed: a [Snapshot] read in one read transaction (the
// server may keep running on the database meanwhile; what it writes after
// the read is not copied), written with raw overwrites that keep every
// epoch, status, time and head.
//
// It first reads the buckets' own snapshot and compares:
//   - the same state (nothing changed on either side since the last
//     migration): nothing is written, and stats.Unchanged is set;
//   - the buckets hold nothing the database does not, or earlier states
//     of its records only (the database went on after an earlier
//     migration: a user revoked since, a room whose history continues):
//     the copy brings them up to it;
//   - anything else (see [KVAheadError]): it refuses, unless opts.Force,
//     in which case stats.Overwritten lists what it wrote over. Records
//     only in the buckets are left as they are.
//
// The check reads the buckets once, before writing: do not run it while
// a server serves from them.
//
// The database must exist; reading it brings its schema up to date, after
// opts.Backup.
func MigrateSQLiteToKV(ctx context.Context, sqlitePath string, js jetstream.JetStream, opts MigrateOptions) (MigrateStats, error) {
	var stats MigrateStats
	if _, err := os.Stat(sqlitePath); err != nil {
		return stats, fmt.Errorf("migrate: SQLite database %s: %w: pass the --db of the server", sqlitePath, err)
	}
	backedUp := false
	backup := func() error {
		if opts.Backup == nil || backedUp {
			return nil
		}
		backedUp = true
		return opts.Backup(ctx)
	}
	current, err := sqlitestore.SchemaCurrent(ctx, sqlitePath)
	if err != nil {
		return stats, fmt.Errorf("migrate: %w", err)
	}
	if !current {
		// Open is about to change the database: back it up first.
		if err := backup(); err != nil {
			return stats, err
		}
	}
	start := time.Now()
	src, err := sqlitestore.Open(sqlitePath)
	if err != nil {
		return stats, fmt.Errorf("migrate: %w", err)
	}
	defer src.Close()
	snap, err := src.(store.SnapshotExporter).ExportSnapshot(ctx)
	if err != nil {
		return stats, fmt.Errorf("migrate: read %s: %w", sqlitePath, err)
	}
	src.Close()
	stats.Users, stats.Rooms, stats.Members = len(snap.Users), len(snap.Rooms), len(snap.Members)
	stats.SealedKeys, stats.Statements, stats.Blobs = len(snap.SealedKeys), len(snap.Statements), len(snap.Blobs)
	stats.Export = time.Since(start)

	// What the buckets hold now.
	dst, err := kvstore.Open(ctx, js, opts.KV)
	if err != nil {
		return stats, fmt.Errorf("migrate: open buckets: %w", err)
	}
	held, err := dst.(store.SnapshotExporter).ExportSnapshot(ctx)
	dst.Close()
	if err != nil {
		return stats, fmt.Errorf("migrate: read buckets: %w", err)
	}
	if reflect.DeepEqual(held, snap) {
		stats.Unchanged = true
		return stats, nil
	}
	if ahead := kvAhead(held, snap); len(ahead) > 0 {
		if !opts.Force {
			return stats, &KVAheadError{Differences: ahead}
		}
		stats.Overwritten = ahead
	}
	if err := backup(); err != nil {
		return stats, err
	}

	start = time.Now()
	if err := kvstore.Import(ctx, js, opts.KV, snap, opts.Progress); err != nil {
		return stats, fmt.Errorf("migrate: write buckets: %w", err)
	}
	stats.Import = time.Since(start)
	return stats, nil
}

// kvAhead lists the ways kv has moved on past sqlite: what writing
// sqlite's records over kv's would lose or roll back. It is empty when
// kv holds only sqlite's records or earlier states of them: a user active
// in kv and revoked since in sqlite; a room whose history in kv is a
// prefix of sqlite's, with spans open in kv closed since, and keys of
// kv's epochs the same. One entry per user, room or blob, in the
// snapshots' order.
func kvAhead(kv, sqlite *Snapshot) []string {
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }

	users := make(map[string]api.User, len(sqlite.Users))
	for _, u := range sqlite.Users {
		users[u.User] = u
	}
	for _, k := range kv.Users {
		s, ok := users[k.User]
		switch {
		case !ok:
			add("user %q (%s) exists only in the KV store", k.Name, k.User)
		case reflect.DeepEqual(k, s):
		case !k.Active() && s.Active():
			add("user %q (%s) is revoked in the KV store but active in SQLite", k.Name, k.User)
		case k.Active() && !s.Active() && reflect.DeepEqual(k, unrevoked(s)):
			// Revoked in SQLite since: the copy revokes it in KV too.
		default:
			add("user %q (%s) differs between the KV store and SQLite", k.Name, k.User)
		}
	}

	type roomRecords struct {
		room  api.Room
		stmts []store.StatementRecord
		spans map[string]store.MemberRecord // by user and since
		keys  map[string]store.SealedKeyRecord
	}
	index := func(s *Snapshot) map[string]*roomRecords {
		rooms := make(map[string]*roomRecords, len(s.Rooms))
		for _, r := range s.Rooms {
			rooms[r.ID] = &roomRecords{room: r, spans: map[string]store.MemberRecord{}, keys: map[string]store.SealedKeyRecord{}}
		}
		for _, st := range s.Statements {
			if rr := rooms[st.Room]; rr != nil {
				rr.stmts = append(rr.stmts, st)
			}
		}
		for _, m := range s.Members {
			if rr := rooms[m.Room]; rr != nil {
				rr.spans[fmt.Sprintf("%s.%d", m.User, m.Since)] = m
			}
		}
		for _, k := range s.SealedKeys {
			if rr := rooms[k.Room]; rr != nil {
				rr.keys[fmt.Sprintf("%d.%s", k.Epoch, k.Member)] = k
			}
		}
		return rooms
	}
	kvRooms, sqlRooms := index(kv), index(sqlite)
	for _, r := range kv.Rooms {
		k, s := kvRooms[r.ID], sqlRooms[r.ID]
		if s == nil {
			add("room %q (%s) exists only in the KV store", r.Name, r.ID)
			continue
		}
		if why := roomAhead(k.room, s.room, k.stmts, s.stmts); why != "" {
			add("room %q (%s): %s", r.Name, r.ID, why)
			continue
		}
		spansOK := true
		for key, m := range k.spans {
			sm, ok := s.spans[key]
			if !ok || (m.Until != sm.Until && m.Until != 0) {
				spansOK = false
			}
		}
		keysOK := true
		for key, kk := range k.keys {
			sk, ok := s.keys[key]
			if !ok || sk.Sealer != kk.Sealer || !bytes.Equal(sk.SealedKey, kk.SealedKey) {
				keysOK = false
			}
		}
		switch {
		case !spansOK:
			add("room %q (%s): its members in the KV store differ from SQLite's", r.Name, r.ID)
		case !keysOK:
			add("room %q (%s): its sealed keys in the KV store differ from SQLite's", r.Name, r.ID)
		}
	}

	blobs := make(map[string]api.Blob, len(sqlite.Blobs))
	for _, b := range sqlite.Blobs {
		blobs[b.Room+"."+b.ID] = b
	}
	for _, b := range kv.Blobs {
		s, ok := blobs[b.Room+"."+b.ID]
		switch {
		case !ok:
			add("blob %s of room %s exists only in the KV store", b.ID, b.Room)
		case !reflect.DeepEqual(b, s):
			add("blob %s of room %s differs between the KV store and SQLite", b.ID, b.Room)
		}
	}
	return out
}

// roomAhead says how the room k, with statements ks, in the KV store has
// moved on past s, with ss, in SQLite; "" if k is s or an earlier state
// of it.
func roomAhead(k, s api.Room, ks, ss []store.StatementRecord) string {
	if k.HeadSeq > s.HeadSeq {
		return fmt.Sprintf("its history in the KV store is at statement %d, in SQLite at %d", k.HeadSeq, s.HeadSeq)
	}
	for i, st := range ks {
		if i >= len(ss) || !bytes.Equal(st.Body, ss[i].Body) || !bytes.Equal(st.Sig, ss[i].Sig) {
			return fmt.Sprintf("its history in the KV store differs from SQLite's at statement %d", st.Seq)
		}
	}
	if k.HeadSeq == s.HeadSeq {
		if !reflect.DeepEqual(k, s) {
			return "it differs between the KV store and SQLite"
		}
		return ""
	}
	if k.Name != s.Name || k.Encrypted != s.Encrypted || k.Creator != s.Creator || !k.CreatedAt.Equal(s.CreatedAt) || k.Epoch > s.Epoch {
		return "it differs between the KV store and SQLite"
	}
	return ""
}

// unrevoked is u as it was before its revocation.
func unrevoked(u api.User) api.User {
	u.Status, u.RevokedAt = api.StatusActive, nil
	return u
}

// BackupSQLite writes a consistent copy of the SQLite database at
// sqlitePath to destPath ([sqlitestore.Backup]).
func BackupSQLite(ctx context.Context, sqlitePath, destPath string) error {
	return sqlitestore.Backup(ctx, sqlitePath, destPath)
}

// BackupPath is the default path of a backup of the database at dbPath
// taken at t ([sqlitestore.BackupPath]).
func BackupPath(dbPath string, t time.Time) string { return sqlitestore.BackupPath(dbPath, t) }
