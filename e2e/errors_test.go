package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTLSMembershipd runs the server binary in dir as the README's "Lock
// it down" does: --bus-auth enforce, with the certificate `membershipd tls
// init` made in dir/deploy/tls, on free loopback ports. It returns the
// API's https:// URL and the NATS URL the server advertises, once the API
// answers.
func startTLSMembershipd(t *testing.T, bin, dir string) (api, natsURL string) {
	t.Helper()
	api = runMembershipd(t, bin, dir, "https", "--bus-auth", "enforce", "--tls-cert", "deploy/tls/server.crt", "--tls-key", "deploy/tls/server.key",
		"--http-port", "0", "--nats-port", "-1")
	pem, err := os.ReadFile(filepath.Join(dir, "deploy", "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitReady(t, "/v1/info", func() error {
		resp, err := hc.Get(api + "/v1/info")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var info struct {
			NATSURL string `json:"nats_url"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		natsURL = info.NATSURL
		return nil
	})
	return api, natsURL
}

// TestErrorsNameTheFix drives real unibus and membershipd processes into
// the mistakes a newcomer makes with a locked-down bus (TLS, --bus-auth
// enforce), and checks the exact line each prints: it must name what to
// change, not the symptom.
func TestErrorsNameTheFix(t *testing.T) {
	bin := buildTools(t)
	unibus, membershipd := filepath.Join(bin, "unibus"), filepath.Join(bin, "membershipd")
	work := t.TempDir()
	if r := runTool(t, work, membershipd, "tls", "init"); r.code != 0 {
		t.Fatalf("membershipd tls init: exit %d: %s", r.code, r.stderr)
	}
	server, natsURL := startTLSMembershipd(t, membershipd, work)
	apiHost := strings.TrimPrefix(server, "https://")
	nu, err := url.Parse(natsURL)
	if err != nil || nu.Scheme != "tls" {
		t.Fatalf("advertised NATS URL %q; want tls://", natsURL)
	}
	for _, name := range []string{"alice", "bob"} {
		if r := runTool(t, work, unibus, "id", "new", "--name", name, "--identity", name+".json"); r.code != 0 {
			t.Fatalf("id new %s: %s", name, r.stderr)
		}
	}
	token := func(name string) string {
		t.Helper()
		r := runTool(t, work, unibus, "id", "show", "--public", "--identity", name+".json")
		if r.code != 0 {
			t.Fatal(r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	key := func(name string) string { return strings.Split(token(name), ":")[2] }
	as := func(name string, args ...string) ran {
		t.Helper()
		return runTool(t, work, unibus, append(args, "--server", server, "--ca", "deploy/tls/ca.crt", "--identity", name+".json")...)
	}
	want := func(what string, r ran, stderr string) {
		t.Helper()
		if r.code != 1 || r.stderr != stderr {
			t.Errorf("%s: exit %d, stderr\n %q\nwant exit 1 and\n %q", what, r.code, r.stderr, stderr)
		}
	}
	room := "aaaaaaaaaaaaaaaaaaaaaaaaaa" // a room id, as a newcomer copies one

	// The settings pointed wrongly.
	want("HTTPS without --ca", runTool(t, work, unibus, "room", "list", "--server", server, "--identity", "alice.json"),
		"unibus: cannot trust membershipd at "+server+": its certificate is signed by an authority this machine does not trust: pass the bus CA's certificate with --ca PATH or UNIBUS_CA (the CA file, e.g. deploy/tls/ca.crt, that `membershipd tls init` made)\n")
	want("plain http:// to the HTTPS API", runTool(t, work, unibus, "room", "list", "--server", "http://"+apiHost, "--identity", "alice.json"),
		"unibus: membershipd at "+apiHost+" speaks HTTPS, not plain HTTP: use https://"+apiHost+" in --server or UNIBUS_SERVER (and --ca or UNIBUS_CA with the bus CA's certificate if it is not one this machine trusts)\n")
	want("--server at the NATS port", runTool(t, work, unibus, "room", "list", "--server", "https://"+nu.Host, "--ca", "deploy/tls/ca.crt", "--identity", "alice.json"),
		"unibus: https://"+nu.Host+" is a NATS port, not membershipd's API: the API listens on a port of its own (8470 unless membershipd was given --http-port): set --server or UNIBUS_SERVER to https://127.0.0.1:8470\n")

	// A bus with no admin yet: the fix is on the host.
	noAdmin := "unibus: unknown user key " + key("alice") + ", and this bus has no admin yet to add you: on the bus host, register the first admin with `membershipd user seed --admin TOKEN` (TOKEN is what `unibus id show --public` prints)\n"
	want("room list of an unknown user, no admin yet", as("alice", "room", "list"), noAdmin)
	want("read of an unknown user (NATS refuses it first), no admin yet", as("alice", "read", room), noAdmin)
	if r := runTool(t, work, membershipd, "user", "seed", "--admin", token("alice")); r.code != 0 {
		t.Fatalf("membershipd user seed --admin: exit %d: %s", r.code, r.stderr)
	}

	// An unknown user on a bus with an admin: ask one (the server looks
	// for an admin at most once a second).
	askAdmin := "unibus: unknown user key " + key("bob") + ": ask an admin to add you with `unibus user add TOKEN`\n"
	deadline := time.Now().Add(5 * time.Second)
	for r := as("bob", "read", room); r.stderr != askAdmin && time.Now().Before(deadline); r = as("bob", "read", room) {
		time.Sleep(200 * time.Millisecond)
	}
	want("read of an unknown user (NATS refuses it first)", as("bob", "read", room), askAdmin)
	want("room list of an unknown user", as("bob", "room", "list"), askAdmin)

	// A revoked user.
	for _, args := range [][]string{{"user", "add", token("bob")}, {"room", "create", "ops"}} {
		if r := as("alice", args...); r.code != 0 {
			t.Fatalf("alice: unibus %q: exit %d: %s", args, r.code, r.stderr)
		}
	}
	ops := strings.TrimSpace(as("alice", "room", "list", "--json").stdout)
	var rooms []struct{ ID string }
	if err := json.Unmarshal([]byte(ops), &rooms); err != nil || len(rooms) != 1 {
		t.Fatalf("alice's rooms: %q, %v", ops, err)
	}
	room = rooms[0].ID
	for _, args := range [][]string{{"room", "add", room, "bob"}, {"send", room, "hello"}} {
		if r := as("alice", args...); r.code != 0 {
			t.Fatalf("alice: unibus %q: exit %d: %s", args, r.code, r.stderr)
		}
	}
	if r := as("bob", "read", room); r.code != 0 || !strings.Contains(r.stdout, "alice: hello") {
		t.Fatalf("bob's read as a member: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	if r := as("alice", "user", "revoke", "bob"); r.code != 0 {
		t.Fatalf("user revoke bob: %s", r.stderr)
	}
	want("read of a revoked user (NATS refuses it first)", as("bob", "read", room), "unibus: user bob is revoked: ask an admin\n")

	// The host tools: migrate-to-kv against the TLS bus without --ca.
	want("migrate-to-kv without --ca", runTool(t, work, membershipd, "migrate-to-kv", "--nats-url", natsURL),
		"membershipd migrate-to-kv: connect to "+natsURL+": the bus's TLS certificate is signed by an authority this machine does not trust: pass the bus CA's certificate with --ca (the CA file, e.g. deploy/tls/ca.crt, that `membershipd tls init` made)\n")
}
