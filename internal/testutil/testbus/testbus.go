// Package testbus starts a whole unibus deployment inside a test: an
// embedded NATS server with JetStream, the SQLite store, the blob store, and
// the control-plane API on an httptest server, all on loopback ports picked
// by the kernel and in the test's temporary directory. Everything is torn
// down by t.Cleanup.
//
// Logs are discarded unless UNIBUS_TEST_LOG=debug.
package testbus

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/readers"
)

// Bus is a running deployment.
type Bus struct {
	Dir     string // holds the database, blobs and JetStream store
	DBPath  string
	BlobDir string
	NATSDir string
	NATS    *server.Server
	NATSURL string
	Store   membership.Store
	Server  *membership.Server
	HTTP    *httptest.Server
	Conn    *nats.Conn // the server's own connection
	JS      jetstream.JetStream
	// Readers opens and closes members' history readers, swept as
	// membershipd sweeps them.
	Readers *readers.Manager

	stopSweep context.CancelFunc
	swept     chan struct{}
}

// Options adjust a Bus.
type Options struct {
	Mode membership.AuthMode
	// Dir reuses a directory (to restart a bus on the same state); empty
	// makes a fresh one.
	Dir string
}

// Logger returns the test logger: discarding unless UNIBUS_TEST_LOG=debug.
func Logger() *slog.Logger {
	if os.Getenv("UNIBUS_TEST_LOG") == "debug" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Start starts a bus and registers its teardown.
func Start(t testing.TB, opts Options) *Bus {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// New starts a bus in opts.Dir (which must be set); Close stops it. Start
// is the form for tests; New serves examples, which have no testing.TB.
func New(opts Options) (*Bus, error) {
	b := &Bus{Dir: opts.Dir}
	b.DBPath = filepath.Join(b.Dir, "unibus.db")
	b.BlobDir = filepath.Join(b.Dir, "blobs")
	b.NATSDir = filepath.Join(b.Dir, "jetstream")
	store, err := membership.Open(b.DBPath)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	b.Store = store
	blobs, err := blobstore.New(b.BlobDir)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	ns, err := embeddednats.StartServer(embeddednats.ServerConfig{StoreDir: b.NATSDir, Host: "127.0.0.1", Port: -1, Logger: Logger()})
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("start nats: %w", err)
	}
	b.NATS, b.NATSURL = ns, embeddednats.ClientURL(ns)
	fail := func(err error) (*Bus, error) {
		ns.Shutdown()
		store.Close()
		return nil, err
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		return fail(fmt.Errorf("connect nats: %w", err))
	}
	b.Conn = nc
	if b.JS, err = jetstream.New(nc); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := membership.EnsureHistoryStream(ctx, b.JS, membership.HistoryLimits{}); err != nil {
		return fail(fmt.Errorf("history stream: %w", err))
	}
	b.Server = membership.NewServer(store, blobs, opts.Mode)
	b.Server.NATSURL = b.NATSURL
	b.Server.Events = nc
	b.Server.Logger = Logger()
	b.Readers = readers.New(readers.Config{JS: b.JS, Members: store, Logger: Logger()})
	b.Server.Readers = b.Readers
	sweepCtx, stop := context.WithCancel(context.Background())
	b.stopSweep, b.swept = stop, make(chan struct{})
	go func() { defer close(b.swept); b.Readers.Run(sweepCtx, readers.DefaultSweep) }()
	b.HTTP = httptest.NewServer(b.Server)
	return b, nil
}

// Close stops the bus.
func (b *Bus) Close() {
	b.stopSweep()
	<-b.swept
	b.HTTP.Close()
	b.Conn.Close()
	b.NATS.Shutdown()
	b.NATS.WaitForShutdown()
	b.Store.Close()
}

// NewIdentity makes a fresh identity.
func NewIdentity(t testing.TB, name string) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// AddUser registers id directly in the store (as `membershipd user seed`
// does on the host) with the given role.
func (b *Bus) AddUser(t testing.TB, id *identity.Identity, role string) {
	t.Helper()
	u := api.User{Public: id.Public(), Role: role, Status: api.StatusActive, CreatedAt: time.Now().UTC()}
	if err := b.Store.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("add user %s: %v", id.Name(), err)
	}
}

// Client returns an SDK client for id against this bus, closed at cleanup.
func (b *Bus) Client(t testing.TB, id *identity.Identity) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Server: b.HTTP.URL, Identity: id, Logger: Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Identity makes an identity named name and registers it with role.
func (b *Bus) Identity(t testing.TB, name, role string) *identity.Identity {
	t.Helper()
	id := NewIdentity(t, name)
	b.AddUser(t, id, role)
	return id
}

// User makes an identity, registers it with role, and returns its client.
func (b *Bus) User(t testing.TB, name, role string) (*identity.Identity, *client.Client) {
	t.Helper()
	id := b.Identity(t, name, role)
	return id, b.Client(t, id)
}

// RoomMessages is the number of room's messages in the history stream.
func (b *Bus) RoomMessages(t testing.TB, room string) uint64 {
	t.Helper()
	ctx := context.Background()
	st, err := b.JS.Stream(ctx, api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(api.RoomSubject(room)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[api.RoomSubject(room)]
}
