package main

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/internal/testutil/testcerts"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/subjects"
)

func TestRunTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcerts.NewCA(t, "membershipd test ca")
	leaf := ca.Issue(t, "server")
	certFile, keyFile, pool := leaf.CertFile, leaf.KeyFile, ca.Pool
	s := startServer(t, dir, "--bus-auth", "enforce", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("API URL = %q; want https", s.URL)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz = %d; want 200", resp.StatusCode)
	}
	plain := strings.Replace(s.URL, "https://", "http://", 1)
	if resp, err := http.Get(plain + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served next to TLS")
		}
	}

	// The data plane requires TLS and an active user's nkey.
	resp, err = client.Get(s.URL + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info api.Info
	if err := jsonDecode(resp, &info); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.NATSURL, "tls://127.0.0.1:") {
		t.Fatalf("info nats_url = %q; want tls://", info.NATSURL)
	}
	alice := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--db", filepath.Join(dir, "unibus.db"), alice.Public().Token())
	nc, err := nats.Connect(info.NATSURL, nats.RootCAs(ca.CAFile), nats.Nkey(alice.UserKey(), alice.NkeySign), nats.CustomInboxPrefix(subjects.InboxPrefix(alice.UserKey())), quietErrors)
	if err != nil {
		t.Fatalf("TLS NATS connection of a seeded user: %v", err)
	}
	checkUserHasNoJetStreamAPI(t, nc)
	nc.Close()
}
