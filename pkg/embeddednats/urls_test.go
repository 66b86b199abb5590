package embeddednats_test

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/internal/testutil/testcerts"
	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

func TestClusterClientURLsStandalone(t *testing.T) {
	ns := start(t, embeddednats.ServerConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1})
	if got, want := embeddednats.ClusterClientURLs(ns), []string{embeddednats.ClientURL(ns)}; !slices.Equal(got, want) {
		t.Errorf("ClusterClientURLs(standalone) = %q; want %q", got, want)
	}
}

// TestClusterClientURLsFollowTheCluster: every server lists the client
// URLs of all three, its own first, with the scheme of its client TLS; a
// client given them all connects to the first and, when that server
// goes, to another, verifying its certificate; the servers that remain
// stop listing the one gone.
func TestClusterClientURLsFollowTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	ca := testcerts.NewCA(t, "unibus test ca")
	cert := ca.Issue(t, "node").TLS
	const n = 3
	servers := testnats.StartCluster(t, n, func(int) embeddednats.ServerConfig {
		return embeddednats.ServerConfig{
			TLS:     &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			Cluster: &embeddednats.ClusterConfig{Name: "urls"},
		}
	})
	own := make([]string, n)
	for i, ns := range servers {
		own[i] = embeddednats.ClientURL(ns)
	}
	waitFor(t, 10*time.Second, "every server listing the three", func() error {
		for i, ns := range servers {
			got := embeddednats.ClusterClientURLs(ns)
			if len(got) != n || got[0] != own[i] || !sameSet(got, own) {
				return fmt.Errorf("n%d lists %q; want %q, its own first", i+1, got, own)
			}
		}
		return nil
	})
	for _, u := range own {
		if !strings.HasPrefix(u, "tls://127.0.0.1:") {
			t.Fatalf("client URL %q; want tls://127.0.0.1:PORT", u)
		}
	}

	urls := embeddednats.ClusterClientURLs(servers[0])
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Secure(&tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}),
		nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.ConnectedUrl() != own[0] {
		t.Fatalf("connected to %s; want the first listed, %s", nc.ConnectedUrl(), own[0])
	}
	servers[0].Shutdown()
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnection to another server within 10s")
	}
	if u := nc.ConnectedUrl(); u != own[1] && u != own[2] {
		t.Fatalf("reconnected to %s; want %s or %s", u, own[1], own[2])
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush after the reconnection: %v", err)
	}
	waitFor(t, 10*time.Second, "the servers that remain to drop the one gone", func() error {
		for i, ns := range servers[1:] {
			if got := embeddednats.ClusterClientURLs(ns); slices.Contains(got, own[0]) || len(got) != n-1 {
				return fmt.Errorf("n%d lists %q after n1 went", i+2, got)
			}
		}
		return nil
	})
}

// sameSet reports whether a and b hold the same strings.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
