package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// statusOf runs `membershipd cluster status --json` against a node.
func statusOf(t testing.TB, natsURL, natsStore string) clusterStatus {
	t.Helper()
	out, _ := runCLI(t, 0, "cluster", "status", "--json", "--nats-url", natsURL, "--nats-store", natsStore)
	var st clusterStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cluster status --json: %v\n%s", err, out)
	}
	return st
}

// TestSystemKeyIsTheOperators: membershipd makes a system key (0600) in
// its --nats-store in every mode; it, and no member nor anonymous client,
// reaches the system account, where every server answers.
func TestSystemKeyIsTheOperators(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"enforce", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := startServer(t, dir, "--bus-auth", mode)
			url := natsURLOf(t, s)
			path := filepath.Join(dir, "jetstream", systemKeyFile)
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("system key %s: %v, mode %v; want a 0600 file", path, err, fi.Mode().Perm())
			}
			kp, err := readSeed(path)
			if err != nil {
				t.Fatal(err)
			}
			opt, _ := nkeyOption(kp)
			op, err := nats.Connect(url, opt)
			if err != nil {
				t.Fatalf("system key refused: %v", err)
			}
			defer op.Close()
			if acc, err := accountOf(op); err != nil || acc != embeddednats.SystemAccount {
				t.Errorf("system key's account = %q, %v; want %s", acc, err, embeddednats.SystemAccount)
			}
			if _, err := op.Request("$SYS.REQ.SERVER.PING", nil, 2*time.Second); err != nil {
				t.Errorf("operator's server ping: %v; want an answer", err)
			}

			// A member (under enforce, seeded; under off, anyone) is in
			// the bus account, where no server answers a ping.
			alice := testbus.NewIdentity(t, "alice")
			runCLI(t, 0, "user", "seed", "--db", filepath.Join(dir, "unibus.db"), alice.Public().Token())
			opts := []nats.Option{quietErrors}
			if mode == "enforce" {
				opts = append(opts, nats.Nkey(alice.UserKey(), alice.NkeySign))
			}
			nc, err := nats.Connect(url, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if m, err := nc.Request("$SYS.REQ.SERVER.PING", nil, 500*time.Millisecond); err == nil {
				t.Errorf("a member's server ping answered: %s", m.Data)
			}
			// The system key of another installation is nobody's.
			other := testbus.NewIdentity(t, "mallory")
			forged, err := nats.Connect(url, nats.Nkey(kpPublic(t, kp), other.NkeySign), quietErrors)
			if err == nil {
				forged.Close()
				t.Error("the system key's public key with another key's signature admitted")
			}
		})
	}
}

func kpPublic(t testing.TB, kp interface{ PublicKey() (string, error) }) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestClusterStatusStandalone: on a standalone membershipd with the KV
// store, the status lists the one node and the streams of both accounts.
func TestClusterStatusStandalone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, "--store", "kv", "--bus-auth", "enforce", "--server-name", "solo")
	url, store := natsURLOf(t, s), filepath.Join(dir, "jetstream")

	st := statusOf(t, url, store)
	if st.Cluster != "" || len(st.Nodes) != 1 || st.Nodes[0].Name != "solo" || !st.Nodes[0].Reachable {
		t.Fatalf("status = %+v; want the one reachable standalone node solo", st)
	}
	accounts := map[string]string{}
	for _, s := range st.Streams {
		accounts[s.Name] = s.Account
		if s.Replicas != 1 || s.Leader != "solo" || len(s.Peers) != 1 || s.Peers[0].Local == nil {
			t.Errorf("stream %s = %+v; want one replica on solo, its leader, with its local state", s.Name, s)
		}
	}
	for name, want := range map[string]string{
		api.HistoryStream:  embeddednats.BusAccount,
		"KV_unibus_users":  embeddednats.ControlAccount,
		"KV_unibus_rooms":  embeddednats.ControlAccount,
		"OBJ_unibus_blobs": embeddednats.ControlAccount,
	} {
		if accounts[name] != want {
			t.Errorf("stream %s in account %q; want %s (streams %v)", name, accounts[name], want, accounts)
		}
	}

	out, _ := runCLI(t, 0, "cluster", "status", "--nats-url", url, "--nats-store", store)
	for _, want := range []string{"standalone server", "solo", "standalone", api.HistoryStream, "KV_unibus_users", "solo leader"} {
		if !strings.Contains(out, want) {
			t.Errorf("status text lacks %q:\n%s", want, out)
		}
	}

	// remove-peer makes no sense here, and says so.
	_, stderr := runCLI(t, 1, "cluster", "remove-peer", "--nats-url", url, "--nats-store", store, "solo")
	if !strings.Contains(stderr, "standalone") {
		t.Errorf("remove-peer on a standalone server: %q; want it to say standalone", stderr)
	}
}

func TestClusterCLIUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, 2, "membershipd cluster status"},
		{[]string{"statuz"}, 2, `unknown command "statuz"`},
		{[]string{"status", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"remove-peer"}, 2, "missing NAME"},
		{[]string{"backup"}, 2, "missing DIR"},
		{[]string{"restore", "--replicas", "-1", dir}, 2, "--replicas -1"},
		{[]string{"status", "--nats-store", dir}, 1, "--system-key"},
		{[]string{"backup", "--nats-store", dir, filepath.Join(dir, "b")}, 1, "--control-key"},
		{[]string{"restore", "--nats-store", dir, dir}, 1, "cluster backup"},
	}
	for _, tt := range tests {
		_, stderr := runCLI(t, tt.code, append([]string{"cluster"}, tt.args...)...)
		if !strings.Contains(stderr, tt.want) {
			t.Errorf("membershipd cluster %q: stderr %q; want it to contain %q", tt.args, stderr, tt.want)
		}
	}
	if out, _ := runCLI(t, 0, "cluster", "help"); !strings.Contains(out, "remove-peer") {
		t.Errorf("cluster help = %q; want the commands", out)
	}
}

// TestClusterBackupRestore backs up a bus under enforce with the KV store
// (a user, a room, its history and a file) and restores it into a new,
// empty one: after a restart the user reads the message and the file
// there.
func TestClusterBackupRestore(t *testing.T) {
	t.Parallel()
	dirA := t.TempDir()
	a := startServer(t, dirA, "--store", "kv", "--bus-auth", "enforce")
	urlA, storeA := natsURLOf(t, a), filepath.Join(dirA, "jetstream")
	aliceID := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--store", "kv", "--nats-url", urlA, "--control-key", filepath.Join(storeA, controlKeyFile), "--admin", aliceID.Public().Token())
	waitFor(t, 5*time.Second, "alice known", func() bool { return getMe(t, a.URL, aliceID) == http.StatusOK })
	alice := newClient(t, a.URL, aliceID)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctxT(t), room.ID, client.Message{Text: "before the backup"}); err != nil {
		t.Fatal(err)
	}
	fileMsg := sendFileContaining(t, alice, room.ID, []byte("the plan"))

	backup := filepath.Join(t.TempDir(), "backup")
	out, _ := runCLI(t, 0, "cluster", "backup", "--nats-url", urlA, "--nats-store", storeA, backup)
	if !strings.Contains(out, "backup of 7 streams") {
		t.Errorf("backup said %q; want 7 streams", out)
	}
	for _, f := range []string{backupManifestFile, "UNIBUS/UNIBUS_HISTORY/" + streamMetaFile, "UNIBUS/UNIBUS_HISTORY/" + streamDataFile, "UNIBUS_CONTROL/KV_unibus_rooms/" + streamDataFile} {
		if _, err := os.Stat(filepath.Join(backup, f)); err != nil {
			t.Errorf("backup lacks %s: %v", f, err)
		}
	}
	runCLI(t, 1, "cluster", "backup", "--nats-url", urlA, "--nats-store", storeA, backup) // not an empty directory
	// Restoring over a bus that holds data needs --replace.
	if _, stderr := runCLI(t, 1, "cluster", "restore", "--nats-url", urlA, "--nats-store", storeA, backup); !strings.Contains(stderr, "--replace") {
		t.Errorf("restore over data: %q; want it to ask for --replace", stderr)
	}
	a.Stop(t)

	// A new bus: its streams exist, empty; the restore replaces them.
	dirB := t.TempDir()
	b := startServer(t, dirB, "--store", "kv", "--bus-auth", "enforce")
	urlB, storeB := natsURLOf(t, b), filepath.Join(dirB, "jetstream")
	out, _ = runCLI(t, 0, "cluster", "restore", "--nats-url", urlB, "--nats-store", storeB, backup)
	if !strings.Contains(out, "restored 7 streams") || !strings.Contains(out, "restart") {
		t.Errorf("restore said %q; want 7 streams and to restart", out)
	}
	b.Stop(t)
	b = startServer(t, dirB, "--store", "kv", "--bus-auth", "enforce")

	aliceB := newClient(t, b.URL, aliceID)
	if texts := readAll(t, aliceB, room.ID); len(texts) != 2 || texts[0] != "before the backup" {
		t.Errorf("restored history = %q; want the message and the file's", texts)
	}
	var got bytes.Buffer
	if _, err := aliceB.FetchFile(ctxT(t), room.ID, fileMsg, &got, nil); err != nil || got.String() != "the plan" {
		t.Errorf("restored file = %q, %v; want %q", got.String(), err, "the plan")
	}
	if _, err := aliceB.Send(ctxT(t), room.ID, client.Message{Text: "after the restore"}); err != nil {
		t.Errorf("send after the restore: %v", err)
	}
}
