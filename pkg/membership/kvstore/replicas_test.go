package kvstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/membership/kvstore"
)

// TestOpenKeepsWhatTheOperatorSet checks that Open brings an existing
// bucket's stream up to what the store needs (here atomic batch publish,
// as a bucket of an older version lacks) while keeping what it does not
// own: a setting an operator made (compression) and the replicas.
func TestOpenKeepsWhatTheOperatorSet(t *testing.T) {
	t.Parallel()
	ns := testnats.Start(t, embeddednats.ServerConfig{Logger: testnats.Logger()})
	js := testnats.JetStream(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := teststore.FreshPrefix()
	users := kvstore.Streams(prefix)[0]
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: users, Subjects: []string{"$KV." + prefix + "_users.>"}, MaxMsgsPerSubject: 1,
		Storage: jetstream.FileStorage, Compression: jetstream.S2Compression, AllowRollup: true, DenyDelete: true,
	}); err != nil {
		t.Fatal(err)
	}
	s, err := kvstore.Open(ctx, js, kvstore.Config{Prefix: prefix, Replicas: 1, Logger: testnats.Logger()})
	if err != nil {
		t.Fatalf("Open on an older bucket: %v", err)
	}
	defer s.Close()
	st, err := js.Stream(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.AllowAtomicPublish || cfg.AllowDirect || cfg.Compression != jetstream.S2Compression || cfg.Replicas != 1 {
		t.Errorf("users bucket after Open: atomic %v, direct %v, compression %v, replicas %d; want atomic, no direct gets, S2 kept, 1", cfg.AllowAtomicPublish, cfg.AllowDirect, cfg.Compression, cfg.Replicas)
	}
	// Open again: nothing to bring up to date, the stream is untouched.
	s2, err := kvstore.Open(ctx, js, kvstore.Config{Prefix: prefix, Logger: testnats.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	again, err := js.Stream(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := st.CachedInfo().Created, again.CachedInfo().Created; !a.Equal(b) || again.CachedInfo().Config.Compression != jetstream.S2Compression {
		t.Errorf("second Open changed the stream: created %v then %v, config %+v", a, b, again.CachedInfo().Config)
	}
}
