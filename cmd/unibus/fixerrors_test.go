package main

import (
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
)

// TestErrorsNameTheFix runs the command line against a server it is
// pointed at wrongly, and checks that each error says what to change:
// the exact line the user sees. (Those of an enforcing bus, with real
// membershipd and unibus processes, are in e2e.)
func TestErrorsNameTheFix(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	tlsServer := httptest.NewUnstartedServer(s.bus.Server)
	tlsServer.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	tlsServer.StartTLS()
	t.Cleanup(tlsServer.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsServer.Certificate().Raw}))
	httpsAddr := tlsServer.Listener.Addr().String()
	plainAddr := s.bus.HTTP.Listener.Addr().String()
	nu, err := url.Parse(s.bus.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := nu.Host

	for _, c := range []struct {
		what   string
		server string
		extra  []string
		want   string
	}{
		{"HTTPS without the bus CA", "https://" + httpsAddr, nil,
			"unibus: cannot trust membershipd at https://" + httpsAddr + ": its certificate is signed by an authority this machine does not trust: pass the bus CA's certificate with --ca PATH or UNIBUS_CA (the CA file, e.g. deploy/tls/ca.crt, that `membershipd tls init` made)\n"},
		{"http:// to the HTTPS server", "http://" + httpsAddr, nil,
			"unibus: membershipd at " + httpsAddr + " speaks HTTPS, not plain HTTP: use https://" + httpsAddr + " in --server or UNIBUS_SERVER (and --ca or UNIBUS_CA with the bus CA's certificate if it is not one this machine trusts)\n"},
		{"https:// to the plain HTTP server", "https://" + plainAddr, []string{"--ca", ca},
			"unibus: membershipd at https://" + plainAddr + " speaks plain HTTP, not HTTPS: use http://" + plainAddr + " in --server or UNIBUS_SERVER\n"},
		{"--server at the NATS port", "http://" + natsAddr, nil,
			"unibus: http://" + natsAddr + " is a NATS port, not membershipd's API: the API listens on a port of its own (8470 unless membershipd was given --http-port): set --server or UNIBUS_SERVER to http://127.0.0.1:8470\n"},
		{"--server at the NATS port, https://", "https://" + natsAddr, nil,
			"unibus: https://" + natsAddr + " is a NATS port, not membershipd's API: the API listens on a port of its own (8470 unless membershipd was given --http-port): set --server or UNIBUS_SERVER to https://127.0.0.1:8470\n"},
	} {
		args := append([]string{"room", "list", "--identity", s.alice.path, "--server", c.server}, c.extra...)
		if r := runCLI(t, "", args...); r.code != 1 || r.stderr != c.want {
			t.Errorf("%s: exit %d, stderr\n %q\nwant exit 1 and\n %q", c.what, r.code, r.stderr, c.want)
		}
	}
	// With the CA, the same server serves.
	if r := runCLI(t, "", "room", "list", "--identity", s.alice.path, "--server", "https://"+httpsAddr, "--ca", ca); r.code != 0 {
		t.Errorf("room list with --ca: exit %d: %s", r.code, r.stderr)
	}
}
