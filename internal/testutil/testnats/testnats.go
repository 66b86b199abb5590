// Package testnats starts the embedded NATS server (pkg/embeddednats) for
// tests: on loopback, on a port and in a store directory of the test's
// own, shut down when the test ends.
package testnats

import (
	"log/slog"
	"os"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// Start starts a server with cfg, filling in what it leaves empty: a
// fresh store directory, host 127.0.0.1 and a port of the system's
// choosing. The server is shut down, and waited for, when the test ends.
func Start(t testing.TB, cfg embeddednats.ServerConfig) *server.Server {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	ns, err := embeddednats.StartServer(cfg)
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// JetStream opens a connection to ns of its own, as one membershipd node
// has, closed when the test ends.
func JetStream(t testing.TB, ns *server.Server) jetstream.JetStream {
	t.Helper()
	return JetStreamAt(t, embeddednats.ClientURL(ns))
}

// JetStreamAt opens a connection of its own to the server at url, with
// opts, closed when the test ends, and returns a JetStream context on it.
func JetStreamAt(t testing.TB, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return JetStreamOn(t, nc)
}

// JetStreamOn returns a JetStream context on nc, a connection the test
// made, and closes nc when the test ends.
func JetStreamOn(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Logger is the servers' and stores' logger in tests: it discards unless
// UNIBUS_TEST_LOG=debug.
func Logger() *slog.Logger {
	if os.Getenv("UNIBUS_TEST_LOG") == "debug" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
