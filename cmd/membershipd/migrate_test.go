package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/client"
)

// TestMigrateToKVThenServeFromKV is the user's path: run on SQLite,
// migrate-to-kv into the running server's own NATS (twice: it converges),
// restart with --store kv on the same JetStream store, and find users,
// rooms, epochs, keys, history and blobs all still there.
func TestMigrateToKVThenServeFromKV(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	aliceID := testbus.NewIdentity(t, "alice")
	userCLI(t, 0, "seed", "--db", db, "--admin", aliceID.Public().Token())
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
	src := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(src, []byte("a file that moves too"), 0o600)
	fileMsg, err := alice.SendFile(ctxT(t), room.ID, src, "", nil)
	if err != nil {
		t.Fatal(err)
	}
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
		var out, errb bytes.Buffer
		code := runMigrateCLI([]string{"--db", db, "--nats-url", info.NATSURL, "--control-key", ctlKey, "--store-dir", filepath.Join(dir, "blobs")}, &out, &errb)
		if code != 0 {
			t.Fatalf("migrate-to-kv exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	first := migrate()
	second := migrate()
	backups, _ := filepath.Glob(db + ".backup-*")
	if len(backups) == 0 {
		t.Fatalf("no backup beside the database; output:\n%s", first)
	}
	counts := regexp.MustCompile(`migrated: ([^(]*)`)
	c1, c2 := counts.FindStringSubmatch(first), counts.FindStringSubmatch(second)
	if c1 == nil || c2 == nil || c1[1] != c2[1] || !strings.Contains(c1[1], "1 users") {
		t.Fatalf("migrations moved %q then %q; want the same, with 1 user", first, second)
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
	var texts []string
	if err := alice2.Read(ctxT(t), room.ID, client.ReadOptions{}, func(m client.Received) error {
		if m.Err != nil {
			t.Errorf("message after the move: %v", m.Err)
		}
		texts = append(texts, m.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(texts) != 2 || texts[0] != "before the move" {
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
	userCLI(t, 0, "seed", "--store", "kv", "--nats-url", kvInfo.NATSURL, "--control-key", ctlKey, bobID.Public().Token())
	waitFor(t, 2*time.Second, "bob seeded on the KV store is known", func() bool { return getMe(t, kv.URL, bobID) == 200 })
	userCLI(t, 0, "revoke", "--store", "kv", "--nats-url", kvInfo.NATSURL, "--control-key", ctlKey, "bob")
	waitFor(t, time.Second, "bob revoked on the KV store is refused", func() bool { return getMe(t, kv.URL, bobID) == 403 })
	out, _ := userCLI(t, 0, "list", "--store", "kv", "--nats-url", kvInfo.NATSURL, "--control-key", ctlKey)
	if !strings.Contains(out, "alice") || !strings.Contains(out, "revoked") {
		t.Fatalf("user list on the KV store:\n%s", out)
	}
}

func TestMigrateToKVUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runMigrateCLI(nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--nats-url is required") {
		t.Fatalf("no flags: exit %d, %q; want 2 naming --nats-url", code, errb.String())
	}
	errb.Reset()
	if code := runMigrateCLI([]string{"--db", filepath.Join(t.TempDir(), "none.db"), "--nats-url", "nats://127.0.0.1:1"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--db") {
		t.Fatalf("missing database: exit %d, %q; want 1 naming --db", code, errb.String())
	}
}
