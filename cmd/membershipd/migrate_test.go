package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/membership"
)

// TestMigrateToKVThenServeFromKV is the user's path: run on SQLite,
// migrate-to-kv into the running server's own NATS (twice: the second run
// finds its own copy and writes nothing), restart with --store kv on the
// same JetStream store, and find users, rooms, epochs, keys, history and
// blobs all still there. Once the KV store has moved on, another run
// refuses and changes nothing; --force writes the old state back.
func TestMigrateToKVThenServeFromKV(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	aliceID := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--db", db, "--admin", aliceID.Public().Token())
	s := startServer(t, dir)

	alice := newClient(t, s.URL, aliceID)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Rekey(ctxT(t), room.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctxT(t), room.ID, client.Message{Text: "before the move"}); err != nil {
		t.Fatal(err)
	}
	fileMsg := sendFileContaining(t, alice, room.ID, []byte("a file that moves too"))
	info, err := alice.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	alice.Close()

	// The buckets live in the control plane's account: the control key
	// membershipd made in its --nats-store reaches it.
	ctlKey := filepath.Join(dir, "jetstream", controlKeyFile)
	migrate := func() string {
		t.Helper()
		out, _ := runCLI(t, 0, "migrate-to-kv", "--db", db, "--nats-url", info.NATSURL, "--control-key", ctlKey, "--store-dir", filepath.Join(dir, "blobs"))
		return out
	}
	first := migrate()
	second := migrate()
	backups, _ := filepath.Glob(db + ".backup-*")
	if len(backups) != 1 {
		t.Fatalf("%d backups beside the database; want one, of the run that wrote; output:\n%s%s", len(backups), first, second)
	}
	counts := regexp.MustCompile(`migrated: ([^(:]*)`)
	c1, c2 := counts.FindStringSubmatch(first), counts.FindStringSubmatch(second)
	if c1 == nil || c2 == nil || strings.TrimSpace(c1[1]) != strings.TrimSpace(c2[1]) || !strings.Contains(c1[1], "1 users") || !strings.Contains(second, "nothing written") {
		t.Fatalf("migrations moved %q then %q; want the same, with 1 user, and nothing written the second time", first, second)
	}
	if !strings.Contains(first, "blobs: copied 1") {
		t.Fatalf("first migration did not copy the blob:\n%s", first)
	}
	s.Stop(t)

	// Restart on the KV store, with no SQLite file and no blob directory.
	os.Remove(db)
	os.RemoveAll(filepath.Join(dir, "blobs"))
	kv := startServer(t, dir, "--store", "kv")
	if code := getMe(t, kv.URL, aliceID); code != 200 {
		t.Fatalf("alice after the move: %d", code)
	}
	alice2 := newClient(t, kv.URL, aliceID)
	v, err := alice2.Verify(ctxT(t), room.ID)
	if err != nil || v.Epoch != 2 {
		t.Fatalf("room after the move: epoch %d, %v; want the verified history at epoch 2", v.Epoch, err)
	}
	if texts := readAll(t, alice2, room.ID); len(texts) != 2 || texts[0] != "before the move" {
		t.Fatalf("history after the move: %q", texts)
	}
	var got bytes.Buffer
	if _, err := alice2.FetchFile(ctxT(t), room.ID, fileMsg, &got, nil); err != nil || got.String() != "a file that moves too" {
		t.Fatalf("file after the move: %q, %v", got.String(), err)
	}
	if _, err := alice2.Send(ctxT(t), room.ID, client.Message{Text: "after the move"}); err != nil {
		t.Fatal(err)
	}

	// The host's user commands work on the KV store too, and the running
	// server sees their changes at once.
	kvInfo, err := alice2.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	bobID := testbus.NewIdentity(t, "bob")
	runCLI(t, 0, "user", "seed", "--store", "kv", "--nats-url", kvInfo.NATSURL, "--control-key", ctlKey, bobID.Public().Token())
	waitFor(t, 2*time.Second, "bob seeded on the KV store is known", func() bool { return getMe(t, kv.URL, bobID) == 200 })
	runCLI(t, 0, "user", "revoke", "--store", "kv", "--nats-url", kvInfo.NATSURL, "--control-key", ctlKey, "bob")
	waitFor(t, time.Second, "bob revoked on the KV store is refused", func() bool { return getMe(t, kv.URL, bobID) == 403 })
	out, _ := runCLI(t, 0, "user", "list", "--store", "kv", "--nats-url", kvInfo.NATSURL, "--control-key", ctlKey)
	if !strings.Contains(out, "alice") || !strings.Contains(out, "revoked") {
		t.Fatalf("user list on the KV store:\n%s", out)
	}

	// The KV store has moved on (bob seeded and revoked there, the room
	// rekeyed): a migration from the old SQLite backup refuses, says
	// why and what to do, and writes nothing.
	if _, err := alice2.Rekey(ctxT(t), room.ID); err != nil {
		t.Fatal(err)
	}
	os.Rename(backups[0], db)
	args := []string{"migrate-to-kv", "--db", db, "--nats-url", kvInfo.NATSURL, "--control-key", ctlKey}
	out, errOut := runCLI(t, 1, args...)
	for _, want := range []string{"has moved on", `room "ops" (` + room.ID + "): its history in the KV store is at statement 3, in SQLite at 2",
		`user "bob" (` + bobID.UserKey() + ") exists only in the KV store", "nothing was written", "keep serving from it", "pass --force"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("refusal does not say %q:\n%s", want, errOut)
		}
	}
	if b, _ := filepath.Glob(db + ".backup-*"); len(b) != 0 || out != "" {
		t.Errorf("refused migration left backups %q and printed %q", b, out)
	}
	if v, err := alice2.Verify(ctxT(t), room.ID); err != nil || v.Epoch != 3 {
		t.Fatalf("room after a refused migration: epoch %d, %v; want 3, untouched", v.Epoch, err)
	}
	if code := getMe(t, kv.URL, bobID); code != 403 {
		t.Errorf("bob after a refused migration: %d; want still revoked (403)", code)
	}

	// --force writes the SQLite state over it, and says what it wrote over.
	out, errOut = runCLI(t, 0, append(args, "--force")...)
	if !strings.Contains(errOut, "--force: wrote") || !strings.Contains(errOut, room.ID) || !strings.Contains(out, "backup: ") {
		t.Errorf("forced migration: stdout %q, stderr %q; want a backup and the list of what it wrote over", out, errOut)
	}
	control := controlJetStream(t, kvInfo.NATSURL, ctlKey)
	waitFor(t, 2*time.Second, "the forced copy's room at epoch 2", func() bool {
		r, err := kvRoom(t, control, room.ID)
		return err == nil && r.Epoch == 2
	})
}

// kvRoom reads room id straight from the KV store of the control plane's
// account, through js.
func kvRoom(t testing.TB, js jetstream.JetStream, id string) (api.Room, error) {
	t.Helper()
	st, err := membership.OpenKV(ctxT(t), js, membership.KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return st.GetRoom(ctxT(t), id)
}

// TestMigrateToKVNoBackupWhenItCannotConnect: attempts that do not reach
// the bus (a bad URL, a key that is not its control key) fail before
// they back anything up.
func TestMigrateToKVNoBackupWhenItCannotConnect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	runCLI(t, 0, "user", "seed", "--db", db, testbus.NewIdentity(t, "alice").Public().Token())
	s := startServer(t, dir)
	natsURL := natsURLOf(t, s)
	otherKey := filepath.Join(t.TempDir(), "other.nk")
	if _, err := loadOrCreateControlKey(otherKey); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, key, want string
	}{
		{"nothing listening", fmt.Sprintf("nats://127.0.0.1:%d", freePort(t)), filepath.Join(dir, "jetstream", controlKeyFile), "is the bus up?"},
		{"not its control key", natsURL, otherKey, "pass --control-key"},
		{"no key file", natsURL, filepath.Join(dir, "missing.nk"), "no control key at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, errOut := runCLI(t, 1, "migrate-to-kv", "--db", db, "--nats-url", tt.url, "--control-key", tt.key); !strings.Contains(errOut, tt.want) {
				t.Errorf("%s: stderr %q; want it to say %q", tt.name, errOut, tt.want)
			}
			if b, _ := filepath.Glob(db + ".backup-*"); len(b) != 0 {
				t.Fatalf("%s: the failed attempt left backups %q", tt.name, b)
			}
		})
	}
}

func TestMigrateToKVUsage(t *testing.T) {
	if _, errOut := runCLI(t, 2, "migrate-to-kv"); !strings.Contains(errOut, "--nats-url is required") {
		t.Fatalf("no flags: %q; want it to name --nats-url", errOut)
	}
	if _, errOut := runCLI(t, 1, "migrate-to-kv", "--db", filepath.Join(t.TempDir(), "none.db"), "--nats-url", "nats://127.0.0.1:1"); !strings.Contains(errOut, "--db") {
		t.Fatalf("missing database: %q; want it to name --db", errOut)
	}
}
