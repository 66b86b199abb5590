package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Backup writes a consistent copy of the SQLite database at
// sqlitePath to destPath with VACUUM INTO (a read transaction: the
// server may keep writing meanwhile), mode 0600, synced to disk. It
// refuses to overwrite a non-empty destPath.
func Backup(ctx context.Context, sqlitePath, destPath string) error {
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

// SchemaCurrent reports whether the database at sqlitePath already has
// the schema this binary knows, so that [Open] will not change it: false
// for an older one, which Open would bring up to date. A newer schema is
// an error, as in Open.
func SchemaCurrent(ctx context.Context, sqlitePath string) (bool, error) {
	abs, err := filepath.Abs(sqlitePath)
	if err != nil {
		return false, fmt.Errorf("membership database %s: %w", sqlitePath, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return false, fmt.Errorf("membership database %s: %w", sqlitePath, err)
	}
	ms, err := loadMigrations()
	if err != nil {
		return false, err
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return false, fmt.Errorf("membership database %s: %w", abs, err)
	}
	defer db.Close()
	v, err := schemaVersion(ctx, db)
	if err != nil {
		return false, fmt.Errorf("membership database %s: %w", abs, err)
	}
	latest := ms[len(ms)-1].version
	if v > latest {
		return false, fmt.Errorf("membership database %s: %w", abs, newerSchema(v, latest))
	}
	return v == latest, nil
}
