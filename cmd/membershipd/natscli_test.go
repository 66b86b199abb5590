package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// natsCLIVersion is the nats CLI the operator's view is checked with.
const natsCLIVersion = "github.com/nats-io/natscli/nats@v0.5.0"

// TestNATSCLIOperatorView builds the nats CLI (from the module proxy, or
// the module cache) into a temporary directory and uses it as an operator
// would, with the node's system key: `nats server list` and `nats server
// report jetstream` see the node; with the control key, `nats stream
// restore` reads a stream of a `membershipd cluster backup`. It needs
// the network the first time, so it runs only with UNIBUS_TEST_NATSCLI=1.
func TestNATSCLIOperatorView(t *testing.T) {
	if os.Getenv("UNIBUS_TEST_NATSCLI") != "1" {
		t.Skip("set UNIBUS_TEST_NATSCLI=1 to build " + natsCLIVersion + " and check the operator's view with it")
	}
	gobin := t.TempDir()
	build := exec.Command("go", "install", natsCLIVersion)
	build.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", natsCLIVersion, err, out)
	}
	dir := t.TempDir()
	s := startServer(t, dir, "--store", "kv", "--bus-auth", "enforce", "--server-name", "solo")
	url, store := natsURLOf(t, s), filepath.Join(dir, "jetstream")
	natsCLI := func(key string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(gobin, "nats"), append([]string{"--server", url, "--nkey", filepath.Join(store, key), "--no-context"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	if out := natsCLI(systemKeyFile, "server", "list"); !strings.Contains(out, "solo") {
		t.Errorf("nats server list:\n%s\nwant the node solo", out)
	}
	if out := natsCLI(systemKeyFile, "server", "report", "jetstream"); !strings.Contains(out, "solo") || !strings.Contains(out, "JetStream Summary") {
		t.Errorf("nats server report jetstream:\n%s\nwant solo's JetStream summary", out)
	}

	backup := filepath.Join(t.TempDir(), "backup")
	runCLI(t, 0, "cluster", "backup", "--nats-url", url, "--nats-store", store, backup)
	natsCLI(controlKeyFile, "stream", "rm", "-f", "KV_unibus_nonces")
	if out := natsCLI(controlKeyFile, "stream", "restore", filepath.Join(backup, "UNIBUS_CONTROL", "KV_unibus_nonces")); !strings.Contains(out, "KV_unibus_nonces") {
		t.Errorf("nats stream restore of a membershipd backup:\n%s\nwant the stream restored", out)
	}
}
