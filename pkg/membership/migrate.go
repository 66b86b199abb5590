package membership

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
}

// Records is the number of records moved.
func (m MigrateStats) Records() int {
	return m.Users + m.Rooms + m.Members + m.SealedKeys + m.Statements + m.Blobs
}

func (m MigrateStats) String() string {
	return fmt.Sprintf("%d users, %d rooms, %d memberships, %d sealed keys, %d statements, %d blobs (export %s, import %s)",
		m.Users, m.Rooms, m.Members, m.SealedKeys, m.Statements, m.Blobs,
		m.Export.Round(time.Millisecond), m.Import.Round(time.Millisecond))
}

// MigrateSQLiteToKV copies the whole control-plane state of the SQLite
// database at sqlitePath into the JetStream KV buckets of cfg, creating
// them if needed: a [Snapshot] read in one read transaction (the server
// may keep running on the database meanwhile; what it writes after the
// read is not copied), written with raw overwrites that keep every epoch,
// status, time and head. Running it again converges to the same buckets.
// progress, if not nil, is called as records are written, with their
// number so far and the total.
//
// The database must exist; Open brings its schema up to date first (take
// a backup with [BackupSQLite] before). The buckets should not be served
// from yet: the copy overwrites rooms changed there since an earlier run.
func MigrateSQLiteToKV(ctx context.Context, sqlitePath string, js jetstream.JetStream, cfg KVConfig, progress func(done, total int)) (MigrateStats, error) {
	var stats MigrateStats
	if _, err := os.Stat(sqlitePath); err != nil {
		return stats, fmt.Errorf("migrate: SQLite database %s: %w: pass the --db of the server", sqlitePath, err)
	}
	start := time.Now()
	src, err := Open(sqlitePath)
	if err != nil {
		return stats, fmt.Errorf("migrate: %w", err)
	}
	defer src.Close()
	snap, err := src.(*sqliteStore).ExportSnapshot(ctx)
	if err != nil {
		return stats, fmt.Errorf("migrate: read %s: %w", sqlitePath, err)
	}
	src.Close()
	stats.Users, stats.Rooms, stats.Members = len(snap.Users), len(snap.Rooms), len(snap.Members)
	stats.SealedKeys, stats.Statements, stats.Blobs = len(snap.SealedKeys), len(snap.Statements), len(snap.Blobs)
	stats.Export = time.Since(start)

	start = time.Now()
	dst, err := bindKV(ctx, js, cfg)
	if err != nil {
		return stats, fmt.Errorf("migrate: %w", err)
	}
	if err := dst.importSnapshot(ctx, snap, progress); err != nil {
		return stats, fmt.Errorf("migrate: write buckets: %w", err)
	}
	stats.Import = time.Since(start)
	return stats, nil
}

// BackupSQLite writes a consistent copy of the SQLite database at
// sqlitePath to destPath with VACUUM INTO (a read transaction: the
// server may keep writing meanwhile), mode 0600, synced to disk. It
// refuses to overwrite a non-empty destPath.
func BackupSQLite(ctx context.Context, sqlitePath, destPath string) error {
	src, err := filepath.Abs(sqlitePath)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: SQLite database %s: %w", sqlitePath, err)
	}
	dest, err := filepath.Abs(destPath)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if dest == src {
		return fmt.Errorf("backup: %s is the database itself: choose another path", destPath)
	}
	if fi, err := os.Stat(dest); err == nil && fi.Size() > 0 {
		return fmt.Errorf("backup: %s exists: move it away or choose another path", destPath)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: %w", err)
	}
	// An empty file of our own makes the copy private; VACUUM INTO
	// accepts an empty destination.
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", dsn(src))
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup of %s: %w", sqlitePath, err)
	}
	// VACUUM INTO does not sync what it writes.
	for _, p := range []string{dest, filepath.Dir(dest)} {
		if err := syncPath(p); err != nil {
			return fmt.Errorf("backup: sync %s: %w", p, err)
		}
	}
	return nil
}

// BackupPath is the default path of a backup of the database at dbPath
// taken at t: beside it, named after it and the time.
func BackupPath(dbPath string, t time.Time) string {
	return dbPath + ".backup-" + t.UTC().Format("20060102T150405Z")
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
