package busauth_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testcerts"
	"github.com/enmanuel/unibus/internal/testutil/testnet"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/nats-io/nats-server/v2/server"
)

func TestServerTLSConfig(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	cert, key := ca.IssueFiles(t, "server")
	_, otherKey := ca.IssueFiles(t, "other")

	cfg, err := busauth.ServerTLSConfig(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("unexpected config: %d certs, min version %x", len(cfg.Certificates), cfg.MinVersion)
	}

	missing := filepath.Join(t.TempDir(), "nope.pem")
	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"missing cert", missing, key, "nope.pem"},
		{"missing key", cert, missing, "nope.pem"},
		{"key mismatch", cert, otherKey, "other-key.pem"},
		{"empty names", "", "", "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := busauth.ServerTLSConfig(tc.cert, tc.key)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestRouteTLSConfig(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	other := testcerts.NewCA(t, "other ca")
	cert, key := ca.IssueFiles(t, "node")
	foreignCert, foreignKey := other.IssueFiles(t, "foreign")

	cfg, err := busauth.RouteTLSConfig(cert, key, ca.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.RootCAs == nil || cfg.ClientCAs == nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("route config is not mutual TLS: %+v", cfg)
	}

	noCerts := filepath.Join(t.TempDir(), "empty-ca.pem")
	if err := os.WriteFile(noCerts, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cert, key, ca, want string
	}{
		{"missing CA", cert, key, filepath.Join(t.TempDir(), "ca-missing.pem"), "ca-missing.pem"},
		{"CA without certificates", cert, key, noCerts, "no PEM certificates"},
		{"certificate from another CA", foreignCert, foreignKey, ca.CAFile, "foreign.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := busauth.RouteTLSConfig(tc.cert, tc.key, tc.ca)
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func startRouteNode(t *testing.T, name string, port int, routes []string, rtls *tls.Config, logger *slog.Logger) *server.Server {
	t.Helper()
	ns, err := embeddednats.StartServer(embeddednats.ServerConfig{
		StoreDir:   t.TempDir(),
		Host:       "127.0.0.1",
		Port:       -1,
		ServerName: name,
		Logger:     logger,
		Cluster: &embeddednats.ClusterConfig{
			Name:   "tls-test",
			Host:   "127.0.0.1",
			Port:   port,
			Routes: routes,
			TLS:    rtls,
		},
	})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

func TestRouteMutualTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "cluster ca")
	rogue := testcerts.NewCA(t, "rogue ca")

	routeCfg := func(certFile, keyFile string) *tls.Config {
		cfg, err := busauth.RouteTLSConfig(certFile, keyFile, ca.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	pa, pb, pc := testnet.FreePort(t), testnet.FreePort(t), testnet.FreePort(t)
	routes := []string{
		fmt.Sprintf("nats://127.0.0.1:%d", pa),
		fmt.Sprintf("nats://127.0.0.1:%d", pb),
		fmt.Sprintf("nats://127.0.0.1:%d", pc),
	}
	a := startRouteNode(t, "a", pa, routes, routeCfg(ca.IssueFiles(t, "a")), nil)
	b := startRouteNode(t, "b", pb, routes, routeCfg(ca.IssueFiles(t, "b")), nil)

	deadline := time.Now().Add(10 * time.Second)
	for a.NumRemotes() != 1 || b.NumRemotes() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("routes not formed: a=%d b=%d", a.NumRemotes(), b.NumRemotes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Node c trusts the cluster CA but its own certificate comes from
	// another CA, so a and b must not accept it (and it never joins).
	rogueCert, rogueKey := rogue.IssueFiles(t, "c")
	cert, err := tls.LoadX509KeyPair(rogueCert, rogueKey)
	if err != nil {
		t.Fatal(err)
	}
	cCfg := routeCfg(ca.IssueFiles(t, "placeholder"))
	cCfg.Certificates = []tls.Certificate{cert}
	var clog lockedBuffer
	c := startRouteNode(t, "c", pc, routes, cCfg, slog.New(slog.NewTextHandler(&clog, &slog.HandlerOptions{Level: slog.LevelError})))

	// c's route attempts to a and b and theirs to c fail the handshake;
	// nothing should ever register during a bounded observation window.
	end := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(end) {
		if n := c.NumRoutes(); n != 0 {
			t.Fatalf("node with a foreign certificate formed %d routes", n)
		}
		if a.NumRemotes() != 1 || b.NumRemotes() != 1 {
			t.Fatalf("trusted nodes now see %d and %d peers, want 1 each", a.NumRemotes(), b.NumRemotes())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(clog.String(), "TLS") {
		t.Fatalf("expected TLS handshake failures in c's log, got:\n%s", clog.String())
	}
}

// lockedBuffer is a concurrency-safe log sink.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
