package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// readCert parses the PEM certificate at path.
func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// caPool returns a pool trusting the CA certificate at path.
func caPool(t testing.TB, path string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, path))
	return pool
}

func TestTLSInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "deploy", "tls")
	out, _ := runCLI(t, 0, "tls", "init", "--dir", dir, "--host", "bus.example.org,10.1.2.3", "--host", "2001:db8::7")
	for _, want := range []string{
		"wrote " + filepath.Join(dir, "ca.crt"),
		"wrote " + filepath.Join(dir, "server.key"),
		"--tls-cert " + filepath.Join(dir, "server.crt") + " --tls-key " + filepath.Join(dir, "server.key") + " --bus-auth enforce",
		"--ca " + filepath.Join(dir, "ca.crt"),
		"development",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	modes := map[string]os.FileMode{"ca.crt": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o; want %o", name, got, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(modes) {
		t.Errorf("%s holds %d entries; want only the %d files (no temporaries)", dir, len(entries), len(modes))
	}

	ca, leaf := readCert(t, filepath.Join(dir, "ca.crt")), readCert(t, filepath.Join(dir, "server.crt"))
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA: IsCA %v MaxPathLen %d; want a CA that signs leaves only", ca.IsCA, ca.MaxPathLen)
	}
	for _, c := range []*x509.Certificate{ca, leaf} {
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s key is %T; want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	if leaf.IsCA {
		t.Error("server certificate is a CA")
	}
	roots := caPool(t, filepath.Join(dir, "ca.crt"))
	for _, san := range []string{"localhost", "127.0.0.1", "::1", "bus.example.org", "10.1.2.3", "2001:db8::7"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: san, Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("server certificate for %q, usage %v: %v", san, usage, err)
			}
		}
	}
	for _, other := range []string{"example.com", "other.example.org", "10.1.2.4", "::2"} {
		var hostErr x509.HostnameError
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: other, Roots: roots}); !errors.As(err, &hostErr) {
			t.Errorf("server certificate for %q: %v; want a hostname error", other, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")); err != nil {
		t.Errorf("server key pair: %v", err)
	}

	// No overwrite without --force; the files stay as they were.
	before, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, errOut := runCLI(t, 1, "tls", "init", "--dir", dir)
	if !strings.Contains(errOut, "refusing to overwrite") || !strings.Contains(errOut, "--force") {
		t.Errorf("refusal %q does not mention --force", errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(before, after) {
		t.Fatal("ca.key changed without --force")
	}
	runCLI(t, 0, "tls", "init", "--dir", dir, "--force")
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.key")); bytes.Equal(before, after) {
		t.Fatal("ca.key unchanged with --force")
	}
}

func TestTLSNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runCLI(t, 1, "tls", "node", "--dir", dir, "--name", "n2") // no CA yet
	runCLI(t, 0, "tls", "init", "--dir", dir)
	out, _ := runCLI(t, 0, "tls", "node", "--dir", dir, "--name", "n2", "--host", "10.0.0.2")
	if !strings.Contains(out, "--route-tls-cert "+filepath.Join(dir, "n2.crt")) {
		t.Errorf("output lacks the route flags:\n%s", out)
	}
	leaf := readCert(t, filepath.Join(dir, "n2.crt"))
	roots := caPool(t, filepath.Join(dir, "ca.crt"))
	for _, san := range []string{"n2", "10.0.0.2", "localhost", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: san, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("node certificate for %q: %v", san, err)
		}
	}
	if leaf.Subject.CommonName != "n2" {
		t.Errorf("node certificate CN = %q; want n2", leaf.Subject.CommonName)
	}
	if fi, err := os.Stat(filepath.Join(dir, "n2.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("n2.key: %v, %v; want mode 600", fi, err)
	}
	runCLI(t, 1, "tls", "node", "--dir", dir, "--name", "n2")
	runCLI(t, 0, "tls", "node", "--dir", dir, "--name", "n2", "--force")

	// A CA key that does not belong to ca.crt is refused.
	other := t.TempDir()
	runCLI(t, 0, "tls", "init", "--dir", other)
	key, err := os.ReadFile(filepath.Join(other, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut := runCLI(t, 1, "tls", "node", "--dir", dir, "--name", "n3"); !strings.Contains(errOut, "is not the key of") {
		t.Errorf("mismatched CA key: %q", errOut)
	}
}

func TestTLSCLIUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, 2, "usage:"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"init", "extra"}, 2, "unexpected argument"},
		{[]string{"init", "--dir", dir, "--host", "bad host"}, 2, "neither an IP address nor a DNS name"},
		{[]string{"init", "--dir", dir, "--host", "a/b"}, 2, "neither"},
		{[]string{"init", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"node", "--dir", dir}, 2, "missing --name"},
		{[]string{"node", "--dir", dir, "--name", "../x"}, 2, "node name"},
		{[]string{"node", "--dir", dir, "--name", "a.b"}, 2, "node name"},
		{[]string{"node", "--dir", dir, "--name", "ca"}, 2, "node name"},
		{[]string{"node", "--dir", dir, "--name", "n1"}, 1, "tls init"},
	}
	for _, tt := range tests {
		_, errOut := runCLI(t, tt.code, append([]string{"tls"}, tt.args...)...)
		if !strings.Contains(errOut, tt.want) {
			t.Errorf("membershipd tls %q: stderr %q; want it to contain %q", tt.args, errOut, tt.want)
		}
	}
	if out, _ := runCLI(t, 0, "tls", "help"); !strings.Contains(out, "tls init") {
		t.Errorf("help output %q", out)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused commands wrote %d files", len(entries))
	}
}

// TestTLSHandshake serves HTTPS with the generated certificate through
// busauth.ServerTLSConfig, as membershipd does, and checks who gets in.
func TestTLSHandshake(t *testing.T) {
	t.Parallel()
	dir, rogueDir := t.TempDir(), t.TempDir()
	runCLI(t, 0, "tls", "init", "--dir", dir)
	runCLI(t, 0, "tls", "init", "--dir", rogueDir)
	cfg, err := busauth.ServerTLSConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const answer = "the API answer"
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, answer) }),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	get := func(url string, tlsCfg *tls.Config) (int, string, error) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		defer client.CloseIdleConnections()
		resp, err := client.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	trusting := &tls.Config{RootCAs: caPool(t, filepath.Join(dir, "ca.crt"))}
	if code, body, err := get("https://"+addr+"/", trusting); err != nil || code != http.StatusOK || body != answer {
		t.Fatalf("client trusting ca.crt: %d %q %v; want the answer", code, body, err)
	}
	_, port, _ := net.SplitHostPort(addr)
	if code, body, err := get("https://localhost:"+port+"/", trusting); err != nil || body != answer {
		t.Fatalf("client trusting ca.crt, by name localhost: %d %q %v", code, body, err)
	}

	var unknownCA x509.UnknownAuthorityError
	_, body, err := get("https://"+addr+"/", &tls.Config{RootCAs: caPool(t, filepath.Join(rogueDir, "ca.crt"))})
	if !errors.As(err, &unknownCA) || body != "" {
		t.Errorf("client trusting another CA: %q, %v; want an unknown authority error", body, err)
	}
	_, body, err = get("https://"+addr+"/", &tls.Config{})
	if !errors.As(err, &unknownCA) || body != "" {
		t.Errorf("client trusting only the system roots: %q, %v; want an unknown authority error", body, err)
	}
	var hostErr x509.HostnameError
	_, body, err = get("https://"+addr+"/", &tls.Config{RootCAs: trusting.RootCAs, ServerName: "example.com"})
	if !errors.As(err, &hostErr) || body != "" {
		t.Errorf("client expecting example.com: %q, %v; want a hostname error", body, err)
	}

	// Plain HTTP to the HTTPS port never reaches the handler.
	code, body, err := get("http://"+addr+"/", nil)
	if err == nil && (code != http.StatusBadRequest || strings.Contains(body, answer)) {
		t.Errorf("plain HTTP: %d %q; want 400 or an error, never the answer", code, body)
	}
}

// TestTLSNodeRouteCluster forms a two-node cluster with mutual route TLS
// from the certificates `tls node` issues.
func TestTLSNodeRouteCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	runCLI(t, 0, "tls", "init", "--dir", dir)
	runCLI(t, 0, "tls", "node", "--dir", dir, "--name", "n1")
	runCLI(t, 0, "tls", "node", "--dir", dir, "--name", "n2")

	p1, p2 := freePort(t), freePort(t)
	routes := []string{fmt.Sprintf("nats://127.0.0.1:%d", p1), fmt.Sprintf("nats://127.0.0.1:%d", p2)}
	start := func(name string, port int) *server.Server {
		t.Helper()
		rtls, err := busauth.RouteTLSConfig(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), filepath.Join(dir, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		return testnats.Start(t, embeddednats.ServerConfig{
			ServerName: name,
			Cluster: &embeddednats.ClusterConfig{
				Name: "tlscli", Host: "127.0.0.1", Port: port, Routes: routes,
				Username: "route", Password: "route-secret", TLS: rtls,
			},
		})
	}
	n1, n2 := start("n1", p1), start("n2", p2)

	deadline := time.Now().Add(15 * time.Second)
	for n1.NumRemotes() != 1 || n2.NumRemotes() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("routes not up: n1 sees %d peers, n2 sees %d; want 1 each", n1.NumRemotes(), n2.NumRemotes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The cluster accepts only TLS routes (busauth.RouteTLSConfig requires
	// and verifies client certificates), so a route up is a mutual TLS one.
	for _, pair := range [][2]*server.Server{{n1, n2}, {n2, n1}} {
		routez, err := pair[0].Routez(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routez.Routes {
			if r.RemoteName != pair[1].Name() {
				t.Errorf("%s has a route to %q; want only %s", pair[0].Name(), r.RemoteName, pair[1].Name())
			}
		}
	}
}
