// Package testnats starts the embedded NATS server (pkg/embeddednats) for
// tests: on loopback, on a port and in a store directory of the test's
// own, shut down when the test ends.
package testnats

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

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
