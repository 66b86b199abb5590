package membership_test

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
	"github.com/enmanuel/unibus/pkg/membership"
)

// openAt opens the SQLite store at path, closed when the test ends.
func openAt(t testing.TB, path string) membership.Store {
	t.Helper()
	s, err := membership.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openTemp opens a fresh SQLite store.
func openTemp(t testing.TB) membership.Store {
	return openAt(t, filepath.Join(t.TempDir(), "unibus.db"))
}

// startNATS starts an in-process NATS server with JetStream.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	return testnats.Start(t, embeddednats.ServerConfig{Logger: testnats.Logger()})
}

var prefixes atomic.Int64

// freshPrefix is a bucket prefix no other test uses.
func freshPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

// openKVStore opens a KV store on ns's buckets of prefix, on a connection
// of its own, closed when the test ends.
func openKVStore(t testing.TB, ns *server.Server, prefix string) membership.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := membership.OpenKV(ctx, testnats.JetStream(t, ns), membership.KVConfig{Prefix: prefix, Logger: testnats.Logger()})
	if err != nil {
		t.Fatalf("OpenKV: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawDB opens the SQLite file at path with a plain connection, as another
// program would, closed when the test ends.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
