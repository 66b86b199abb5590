package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
)

// serverArgs are the flags of a server on db and nats-store in dir, on
// free ports.
func serverArgs(db, blobs, natsStore string, extra ...string) []string {
	return append([]string{"--db", db, "--store-dir", blobs, "--nats-store", natsStore, "--nats-port", "-1", "--http-port", "0"}, extra...)
}

// runOnce runs a server that is expected to fail its start, and returns
// the error; one that starts serving fails the test.
func runOnce(t testing.TB, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := newLogCapture(t)
	defer logs.close()
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, logs) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("run(%q) returned nil; want a refusal", args)
		}
		return err
	case url := <-logs.url:
		cancel()
		<-done
		t.Fatalf("run(%q) started serving at %s; want a refusal", args, url)
	case <-time.After(30 * time.Second):
		t.Fatalf("run(%q) neither served nor failed within 30s", args)
	}
	return nil
}

// wantAbsent fails the test if path exists.
func wantAbsent(t testing.TB, path, what string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("%s: %s exists after a refused start; want nothing made", what, path)
	}
}

// TestSecondServerOnSameDataDirRefused: a second membershipd on the same
// --db or the same --nats-store refuses at once, naming the first, makes
// nothing of its own, and the first goes on serving untouched.
func TestSecondServerOnSameDataDirRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, blobs, js := filepath.Join(dir, "unibus.db"), filepath.Join(dir, "blobs"), filepath.Join(dir, "jetstream")
	alice := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--db", db, "--admin", alice.Public().Token())
	first := startServer(t, dir)
	if code := getMe(t, first.URL, alice); code != http.StatusOK {
		t.Fatalf("alice on the first server: %d", code)
	}
	lockBefore, err := os.ReadFile(dbLockPath(db))
	if err != nil {
		t.Fatal(err)
	}

	fresh := filepath.Join(t.TempDir(), "fresh") // does not exist
	pid := fmt.Sprintf("membershipd pid %d (started ", os.Getpid())
	tests := []struct {
		name      string
		args      []string
		flag      string
		untouched []string // paths the refused start must not make
	}{
		{"same dirs", serverArgs(db, blobs, js), "--db " + db, nil},
		{"same db, own nats-store", serverArgs(db, filepath.Join(fresh, "blobs"), filepath.Join(fresh, "js")), "--db " + db, []string{fresh}},
		{"own db, same nats-store", serverArgs(filepath.Join(fresh, "u.db"), filepath.Join(fresh, "blobs"), js), "--nats-store " + js, []string{fresh}},
		{"same db, kv store", serverArgs(db, filepath.Join(fresh, "blobs"), filepath.Join(fresh, "js"), "--store", "kv"), "--db " + db, []string{fresh}},
	}
	for _, tt := range tests {
		err := runOnce(t, tt.args...)
		msg := err.Error()
		for _, want := range []string{tt.flag + " is in use by " + pid, "--store sqlite", "one membershipd per data directory", "stop that one first"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: refusal %q does not say %q", tt.name, msg, want)
			}
		}
		for _, p := range tt.untouched {
			wantAbsent(t, p, tt.name)
		}
	}

	// The first is untouched: it serves, its lock file still names it,
	// and it is still the one holding it.
	if code := getMe(t, first.URL, alice); code != http.StatusOK {
		t.Errorf("alice on the first server after the refusals: %d; want 200", code)
	}
	var health api.Health
	if status := getJSON(t, first.URL+"/healthz", &health); status != http.StatusOK {
		t.Errorf("first server's health after the refusals: %d", status)
	}
	if lockAfter, _ := os.ReadFile(dbLockPath(db)); !bytes.Equal(lockAfter, lockBefore) {
		t.Errorf("lock file after the refusals: %q; want the first server's %q", lockAfter, lockBefore)
	}
	for _, l := range first.Logs.Lines() {
		if strings.Contains(l, "shutting down") {
			t.Errorf("first server logged %q", l)
		}
	}

	// Once it stops, its files block nobody.
	first.Stop(t)
	again := startServer(t, dir)
	if code := getMe(t, again.URL, alice); code != http.StatusOK {
		t.Errorf("alice after a restart on the same dirs: %d; want 200", code)
	}
}

// TestStaleLockFileDoesNotBlock: a lock file a crashed membershipd left,
// naming it, blocks no start: nobody holds its lock.
func TestStaleLockFileDoesNotBlock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stale := `{"pid":999999,"started":"2020-01-02T03:04:05Z","store":"kv"}` + "\n"
	os.MkdirAll(filepath.Join(dir, "jetstream"), 0o700)
	for _, p := range []string{dbLockPath(filepath.Join(dir, "unibus.db")), filepath.Join(dir, "jetstream", natsStoreLockFile)} {
		if err := os.WriteFile(p, []byte(stale), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Nor does it stop the host tools.
	runCLI(t, 0, "user", "seed", "--db", filepath.Join(dir, "unibus.db"), testbus.NewIdentity(t, "alice").Public().Token())
	s := startServer(t, dir)
	lock, _ := os.ReadFile(dbLockPath(filepath.Join(dir, "unibus.db")))
	if !strings.Contains(string(lock), fmt.Sprintf(`"pid":%d`, os.Getpid())) {
		t.Errorf("lock file of the new server: %q; want its pid", lock)
	}
	s.Stop(t)
}

// TestFailedStartLeavesNothing: a start that fails, whether a guard
// refuses it, a port is taken or a cluster's quorum does not come within
// --start-timeout, leaves none of the directories and files
// it would have made.
func TestFailedStartLeavesNothing(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := fmt.Sprint(busy.Addr().(*net.TCPAddr).Port)
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"route TLS files missing", []string{"--cluster-name", "c", "--server-name", "n1", "--cluster-port", "-1",
			"--route-tls-cert", filepath.Join(missing, "r.crt"), "--route-tls-key", filepath.Join(missing, "r.key"), "--route-tls-ca", filepath.Join(missing, "ca.crt")}, "load route TLS"},
		{"HTTP port taken", []string{"--http-port", busyPort}, "http listen"},
		{"HTTP port taken, kv store, enforce", []string{"--http-port", busyPort, "--store", "kv", "--bus-auth", "enforce"}, "http listen"},
	}
	// Keys given their own places: the bus's in keys/, the operator's in
	// operator/ (ROOT stands for the data directory).
	keyFlags := func(root string) []string {
		return []string{"--control-key", filepath.Join(root, "keys", "control.nk"), "--service-key", filepath.Join(root, "keys", "service.nk"), "--system-key", filepath.Join(root, "operator", "system.nk")}
	}
	tests = append(tests, struct {
		name string
		args []string
		want string
	}{"HTTP port taken, enforce, keys elsewhere", append([]string{"--http-port", busyPort, "--bus-auth", "enforce"}, keyFlags("ROOT")...), "http listen"}, struct {
		name string
		args []string
		want string
	}{"no quorum within --start-timeout, enforce, keys elsewhere", append([]string{"--bus-auth", "enforce", "--store", "kv", "--replicas", "3", "--start-timeout", "1s",
		"--cluster-name", "c", "--server-name", "n1", "--cluster-port", fmt.Sprint(freePort(t)), "--routes", fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))}, keyFlags("ROOT")...), "--start-timeout"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "data") // does not exist
			args := append(serverArgs(filepath.Join(root, "unibus.db"), filepath.Join(root, "blobs"), filepath.Join(root, "jetstream")), tt.args...)
			for i, a := range args {
				args[i] = strings.Replace(a, "ROOT", root, 1)
			}
			if err := runOnce(t, args...); !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run = %v; want it to say %q", err, tt.want)
			}
			wantAbsent(t, root, tt.name)

			// In a data directory that exists, it removes only what it made.
			os.MkdirAll(root, 0o700)
			keep := filepath.Join(root, "notes.txt")
			os.WriteFile(keep, []byte("mine"), 0o600)
			if err := runOnce(t, args...); !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run = %v; want it to say %q", err, tt.want)
			}
			entries, _ := os.ReadDir(root)
			if len(entries) != 1 || entries[0].Name() != "notes.txt" {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("data directory after a failed start holds %q; want only notes.txt", names)
			}
		})
	}
}

// TestUserCLIRefusesSQLiteWhileServerServesKV: while a membershipd serves
// --store kv for a data directory, the host's user commands on its SQLite
// file refuse, change nothing and say what to pass; what they say works.
// Once it stops, neither its lock file nor a service key left by its
// enforce run blocks them.
func TestUserCLIRefusesSQLiteWhileServerServesKV(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	s := startServer(t, dir, "--store", "kv", "--bus-auth", "enforce")
	carol := testbus.NewIdentity(t, "carol")

	var suggestion string
	for _, args := range [][]string{
		{"seed", "--db", db, carol.Public().Token()},
		{"list", "--db", db},
		{"revoke", "--db", db, "carol"},
	} {
		_, stderr := runCLI(t, 1, append([]string{"user"}, args...)...)
		for _, want := range []string{fmt.Sprintf("membershipd pid %d", os.Getpid()), "--store kv)", "would not reach it", "nothing was changed", "pass --store kv --nats-url nats://127.0.0.1:"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("user %s: %q does not say %q", args[0], stderr, want)
			}
		}
		wantAbsent(t, db, "user "+args[0])
		suggestion = stderr
	}

	// The suggested flags reach the server's store.
	m := regexp.MustCompile(`pass (--store kv --nats-url \S+ --control-key \S+)`).FindStringSubmatch(suggestion)
	if m == nil {
		t.Fatalf("no --nats-url and --control-key in %q", suggestion)
	}
	kvArgs := strings.Fields(m[1])
	runCLI(t, 0, append([]string{"user", "seed", carol.Public().Token()}, kvArgs...)...)
	if code := getMe(t, s.URL, carol); code != http.StatusOK {
		t.Errorf("carol seeded with the suggested flags: %d; want 200", code)
	}

	// Stopped, the server leaves its lock file and its service key; the
	// SQLite file is the tools' again.
	s.Stop(t)
	if _, err := os.Stat(filepath.Join(dir, "jetstream", serviceKeyFile)); err != nil {
		t.Fatalf("no service key after the enforce run: %v", err)
	}
	out, _ := runCLI(t, 0, "user", "seed", "--db", db, carol.Public().Token())
	if !strings.HasPrefix(out, "seeded carol") {
		t.Errorf("seed after the KV server stopped: %q", out)
	}
}

// TestUserCLIWorksWhileServerServesSQLite: the host tools do not take the
// server's lock, and a server on SQLite does not keep them off its
// database.
func TestUserCLIWorksWhileServerServesSQLite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	s := startServer(t, dir, "--bus-auth", "enforce")
	alice := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--db", db, alice.Public().Token())
	if code := getMe(t, s.URL, alice); code != http.StatusOK {
		t.Errorf("alice seeded while the server runs: %d", code)
	}
	// And the server still holds its lock.
	if err := runOnce(t, serverArgs(db, filepath.Join(dir, "blobs"), filepath.Join(dir, "jetstream"))...); !strings.Contains(err.Error(), "is in use by") {
		t.Errorf("second server after the tools ran: %v; want refused", err)
	}
}
