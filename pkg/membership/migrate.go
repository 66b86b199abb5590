package membership

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

	start = time.Now()
	if err := kvstore.Import(ctx, js, cfg, snap, progress); err != nil {
		return stats, fmt.Errorf("migrate: write buckets: %w", err)
	}
	stats.Import = time.Since(start)
	return stats, nil
}

// BackupSQLite writes a consistent copy of the SQLite database at
// sqlitePath to destPath ([sqlitestore.Backup]).
func BackupSQLite(ctx context.Context, sqlitePath, destPath string) error {
	return sqlitestore.Backup(ctx, sqlitePath, destPath)
}

// BackupPath is the default path of a backup of the database at dbPath
// taken at t ([sqlitestore.BackupPath]).
func BackupPath(dbPath string, t time.Time) string { return sqlitestore.BackupPath(dbPath, t) }
