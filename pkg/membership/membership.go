package membership

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/membership/kvstore"
	"github.com/enmanuel/unibus/pkg/membership/sqlitestore"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// The contract ([store]), under the names the rest of unibus knows.
type (
	// Store is the control-plane state; see [store.Store].
	Store = store.Store
	// Add is one atomic addition of members to a room; see [store.Add].
	Add = store.Add
	// Rekey is one atomic epoch change of a room; see [store.Rekey].
	Rekey = store.Rekey
	// Snapshot is the whole state, independent of any backend; see
	// [store.Snapshot].
	Snapshot = store.Snapshot
	// SealedKeyRecord is one sealed-key row of a [Snapshot].
	SealedKeyRecord = store.SealedKeyRecord
)

// Open opens the SQLite control-plane database at path, creating it if
// needed ([sqlitestore.Open]).
func Open(path string) (Store, error) { return sqlitestore.Open(path) }

// KVConfig configures [OpenKV]; see [kvstore.Config].
type KVConfig = kvstore.Config

// OpenKV opens the control-plane store on JetStream KV buckets
// ([kvstore.Open]).
func OpenKV(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (Store, error) {
	return kvstore.Open(ctx, js, cfg)
}

// KVStreams returns the names of the streams behind the KV store's
// buckets of prefix (empty: the default, "unibus"); see
// [kvstore.Streams].
func KVStreams(prefix string) []string { return kvstore.Streams(prefix) }

// KVSweeper is a store that collects the garbage a crashed writer left:
// the JetStream KV store is one (see its Sweep method).
type KVSweeper interface {
	Sweep(ctx context.Context, minAge time.Duration) (removed int, err error)
}

// The HTTP API ([httpapi]), under the names the seed's main.go calls.
type (
	// Server is the control-plane HTTP API; see [httpapi.Server].
	Server = httpapi.Server
	// Blobs is what the server needs of a blob store.
	Blobs = httpapi.Blobs
	// AuthMode is how strictly the API checks request signatures.
	AuthMode = httpapi.AuthMode
)

// The auth modes of --bus-auth.
const (
	AuthOff     = httpapi.AuthOff
	AuthSoft    = httpapi.AuthSoft
	AuthEnforce = httpapi.AuthEnforce
)

// Limits and defaults of the API.
const (
	MaxHeaderBytes      = httpapi.MaxHeaderBytes
	DefaultMaxBlobBytes = httpapi.DefaultMaxBlobBytes
)

// ParseAuthMode reads off, soft or enforce.
func ParseAuthMode(s string) (AuthMode, error) { return httpapi.ParseAuthMode(s) }

// NewServer returns the API over store and blobs with the given auth
// mode ([httpapi.NewServer]).
func NewServer(st Store, blobs Blobs, mode AuthMode) *Server {
	return httpapi.NewServer(st, blobs, mode)
}
