// Package teststore opens the control-plane store's backends for tests:
// SQLite in a file of the test's own, JetStream KV on an embedded NATS
// server (see [github.com/enmanuel/unibus/internal/testutil/testnats]),
// each closed when the test ends. The conformance suite every backend
// runs, and the users and rooms its tests make, are in
// [github.com/enmanuel/unibus/pkg/membership/storetest].
package teststore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/membership/kvstore"
	"github.com/enmanuel/unibus/pkg/membership/sqlitestore"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// SQLite opens the SQLite store at path, closed when the test ends.
func SQLite(t testing.TB, path string) store.Store {
	t.Helper()
	s, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TempSQLite opens a fresh SQLite store in the test's temporary directory.
func TempSQLite(t testing.TB) store.Store {
	t.Helper()
	return SQLite(t, filepath.Join(t.TempDir(), "unibus.db"))
}

// RawSQLite opens the SQLite file at path with a plain connection, as
// another program would, closed when the test ends.
func RawSQLite(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// NATS starts a NATS server with JetStream for KV stores, logging as
// testnats.Logger says, shut down when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return testnats.Start(t, embeddednats.ServerConfig{Logger: testnats.Logger()})
}

var prefixes atomic.Int64

// FreshPrefix is a KV bucket prefix no other test of the binary uses.
func FreshPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

// KV opens a KV store on ns's buckets of prefix, on a connection of its
// own (as one membershipd node has), closed when the test ends.
func KV(t testing.TB, ns *server.Server, prefix string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := kvstore.Open(ctx, testnats.JetStream(t, ns), kvstore.Config{Prefix: prefix, Logger: testnats.Logger()})
	if err != nil {
		t.Fatalf("OpenKV: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
