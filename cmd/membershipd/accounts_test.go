package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// TestMembersCannotWriteTheControlPlane attacks the KV store and the blob
// object store of a real membershipd (--store kv) from the bus: a member,
// with its own nkey under enforce and anonymously under off, publishes to
// a room of its own with, as reply subject, the KV subjects of another
// room's document and of its own user record and the object store's
// subjects of a blob. JetStream sends its acknowledgement of the stored
// message there, with the account's rights and no permission check; in
// one account with the control plane that ack would become the room's
// document or the user's record. Under off the member also publishes
// there directly. Nothing of the control plane may change: the other
// room still reads, the member is still a member, not an admin.
func TestMembersCannotWriteTheControlPlane(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"enforce", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := startServer(t, dir, "--store", "kv", "--bus-auth", mode)
			natsURL := natsURLOf(t, s)
			ctlKey := filepath.Join(dir, "jetstream", controlKeyFile)
			aliceID, bobID := testbus.NewIdentity(t, "alice"), testbus.NewIdentity(t, "bob")
			runCLI(t, 0, "user", "seed", "--store", "kv", "--nats-url", natsURL, "--control-key", ctlKey, "--admin", aliceID.Public().Token())
			runCLI(t, 0, "user", "seed", "--store", "kv", "--nats-url", natsURL, "--control-key", ctlKey, bobID.Public().Token())
			waitFor(t, 5*time.Second, "seeded users known", func() bool {
				return getMe(t, s.URL, aliceID) == http.StatusOK && getMe(t, s.URL, bobID) == http.StatusOK
			})
			alice, bob := newClient(t, s.URL, aliceID), newClient(t, s.URL, bobID)

			// bob's room, and alice's room "secret" with a message and a
			// file, which bob is not in.
			ops, err := alice.CreateRoom(ctxT(t), "ops", false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := alice.AddMember(ctxT(t), ops.ID, "bob"); err != nil {
				t.Fatal(err)
			}
			secret, err := alice.CreateRoom(ctxT(t), "secret", false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := alice.Send(ctxT(t), secret.ID, client.Message{Text: "still here"}); err != nil {
				t.Fatal(err)
			}
			fileMsg := sendFileContaining(t, alice, secret.ID, []byte("the plan"))
			if _, err := bob.Send(ctxT(t), ops.ID, client.Message{Text: "hi"}); err != nil {
				t.Fatal(err)
			}

			control := controlJetStream(t, natsURL, ctlKey)
			blobMeta := "$O." + blobstore.DefaultBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(onlyObject(t, control)))
			targets := []string{
				"$KV.unibus_rooms." + secret.ID,
				"$KV.unibus_users.u." + bobID.UserKey(),
				blobMeta,
				"$O." + blobstore.DefaultBucket + ".C.chunks",
			}
			before := controlSeqs(t, control)

			var opts []nats.Option
			if mode == "enforce" {
				opts = append(opts, nats.Nkey(bobID.UserKey(), bobID.NkeySign))
			}
			nc, err := nats.Connect(natsURL, append(opts, nats.CustomInboxPrefix(subjects.InboxPrefix(bobID.UserKey())), nats.MaxReconnects(0), quietErrors)...)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			for _, reply := range targets {
				if err := nc.PublishMsg(&nats.Msg{Subject: api.RoomSubject(ops.ID), Reply: reply, Data: []byte("junk")}); err != nil {
					t.Fatal(err)
				}
				if mode == "off" {
					// Unchecked clients have every right in the bus
					// account: the subject itself is theirs to publish.
					nc.Publish(reply, []byte(`{"name":"pwned","role":"admin"}`))
				}
			}
			// Once the history stream acknowledges a later message, it has
			// sent its acks to every reply subject above.
			js, _ := jetstream.New(nc)
			if _, err := js.Publish(ctxT(t), api.RoomSubject(ops.ID), []byte("junk")); err != nil {
				t.Fatalf("bob's own publish to his room: %v", err)
			}
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if after := controlSeqs(t, control); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Fatalf("the control plane's streams changed after bob's publishes: %v, then %v", before, after)
				}
			}
			// The bus account does not even hold them: the history stream
			// only (seen with membershipd's own rights there).
			if got := streamNames(t, serviceJetStream(t, natsURL, filepath.Join(dir, "jetstream"))); len(got) != 1 || got[0] != api.HistoryStream {
				t.Fatalf("streams of the bus account = %q; want [%s]", got, api.HistoryStream)
			}

			// The room reads, its file fetches; bob is a member, not an admin.
			var texts []string
			if err := alice.Read(ctxT(t), secret.ID, client.ReadOptions{}, func(r client.Received) error {
				texts = append(texts, r.Text)
				return nil
			}); err != nil || len(texts) == 0 || texts[0] != "still here" {
				t.Fatalf("secret room after the attack: %q, %v", texts, err)
			}
			if v, err := alice.Verify(ctxT(t), secret.ID); err != nil || v.Epoch != 1 {
				t.Fatalf("secret room's history after the attack: epoch %d, %v", v.Epoch, err)
			}
			if _, err := alice.FetchFile(ctxT(t), secret.ID, fileMsg, io.Discard, nil); err != nil {
				t.Fatalf("secret room's file after the attack: %v", err)
			}
			me, err := bob.Me(ctxT(t))
			if err != nil || me.Role != api.RoleMember || !me.Active() {
				t.Fatalf("bob after the attack = %+v, %v; want an active member", me, err)
			}
		})
	}
}

// controlJetStream connects to the control plane's account of the bus at
// url with the control key at keyPath.
func controlJetStream(t testing.TB, url, keyPath string) jetstream.JetStream {
	t.Helper()
	nc, err := dialControl("test control", url, keyPath, "")
	if err != nil {
		t.Fatal(err)
	}
	return testnats.JetStreamOn(t, nc)
}

// serviceJetStream connects to the bus account of the bus at url as its
// membershipd does: with the service key in natsStore, its --nats-store,
// when it has one (it makes one under enforce), else as anyone. The
// connection is closed when the test ends.
func serviceJetStream(t testing.TB, url, natsStore string) jetstream.JetStream {
	t.Helper()
	opts := []nats.Option{nats.Name("test service")}
	kp, err := readSeed(filepath.Join(natsStore, serviceKeyFile))
	switch {
	case err == nil:
		opt, err := nkeyOption(kp)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, opt)
	case !errors.Is(err, fs.ErrNotExist):
		t.Fatal(err)
	}
	return testnats.JetStreamAt(t, url, opts...)
}

// streamNames lists the streams js sees.
func streamNames(t testing.TB, js jetstream.JetStream) []string {
	t.Helper()
	var names []string
	for name := range js.StreamNames(ctxT(t)).Name() {
		names = append(names, name)
	}
	return names
}

// controlSeqs returns the last sequence of each bucket's stream (KV and
// object store) seen through js: any write to one moves it.
func controlSeqs(t testing.TB, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	seqs := map[string]uint64{}
	for name := range js.StreamNames(ctxT(t)).Name() {
		if !strings.HasPrefix(name, "KV_") && !strings.HasPrefix(name, "OBJ_") {
			continue
		}
		st, err := js.Stream(ctxT(t), name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		seqs[name] = info.State.LastSeq
	}
	for _, want := range []string{"KV_unibus_rooms", "KV_unibus_users", "OBJ_" + blobstore.DefaultBucket} {
		if _, ok := seqs[want]; !ok {
			t.Fatalf("control plane's streams %v; want %s among them", seqs, want)
		}
	}
	return seqs
}

// onlyObject returns the name of the one object of the blob bucket.
func onlyObject(t testing.TB, js jetstream.JetStream) string {
	t.Helper()
	obs, err := js.ObjectStore(ctxT(t), blobstore.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	list, err := obs.List(ctxT(t))
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("blob bucket holds %d objects; want 1", len(list))
	}
	return list[0].Name
}

// TestHostToolsNeedTheControlKey: membershipd makes its control key
// (0600) at its first start, and the host tools that open the KV store
// reach the control plane's account with it only: a missing, wrong or
// absent key is refused with what to pass, never served an empty store of
// the bus account.
func TestHostToolsNeedTheControlKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	natsURL := natsURLOf(t, s)
	ctlKey := filepath.Join(dir, "jetstream", controlKeyFile)
	if fi, err := os.Stat(ctlKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control key file: %v, %v; want it made with mode 0600", fi, err)
	}
	if _, err := readSeed(ctlKey); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.nk")
	if _, err := loadOrCreateControlKey(other); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		key     string
		wantErr string // empty: success
	}{
		{"missing key file", filepath.Join(dir, "none.nk"), "no control key at"},
		{"no key", "", "reached the bus account"},
		{"another key", other, "is not its control key"},
		{"the control key", ctlKey, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := 0
			if tt.wantErr != "" {
				code = 1
			}
			_, stderr := runCLI(t, code, "user", "list", "--store", "kv", "--nats-url", natsURL, "--control-key", tt.key)
			if !strings.Contains(stderr, tt.wantErr) || (tt.wantErr != "" && !strings.Contains(stderr, "--control-key")) {
				t.Errorf("user list with %s: stderr %q; want it to say %q and name --control-key", tt.name, stderr, tt.wantErr)
			}
		})
	}
}

// TestRunWarnsOfASharedAccount: on an external NATS without --control-key
// the control plane shares the bus connection's account, as before the
// accounts: membershipd serves, and says what that exposes.
func TestRunWarnsOfASharedAccount(t *testing.T) {
	t.Parallel()
	natsURL := startNATSProcess(t, true)
	s := startServer(t, t.TempDir(), "--nats-url", natsURL, "--store", "kv")
	if status := getJSON(t, s.URL+"/healthz", nil); status != http.StatusOK {
		t.Fatalf("GET /healthz = %d", status)
	}
	if !logged(s, "WARNING: no --control-key") {
		t.Fatalf("no warning about the shared account in the log:\n%s", strings.Join(s.Logs.Lines(), "\n"))
	}
}

// TestRunWarnsOfDataInTheGlobalAccount: streams an earlier membershipd
// left in the embedded server's global account are not served; the log
// says so and what to do.
func TestRunWarnsOfDataInTheGlobalAccount(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "jetstream", "jetstream", "$G", "streams", "KV_unibus_users"), 0o700); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir)
	if !logged(s, "KV_unibus_users") || !logged(s, "migrate-to-kv") {
		t.Fatalf("no warning about the old streams in the log:\n%s", strings.Join(s.Logs.Lines(), "\n"))
	}
}

// logged reports whether a line of s's log contains text.
func logged(s *testServer, text string) bool {
	for _, l := range s.Logs.Lines() {
		if strings.Contains(l, text) {
			return true
		}
	}
	return false
}

// TestRunExternalNATSWithAccounts: an external nats-server configured as
// docs/kv-store.md says, the bus in one account (anonymous clients
// there), the control plane's user, of --control-key, in another.
// membershipd serves with no warning, the buckets are in the control
// account, and the bus account holds the history stream only.
func TestRunExternalNATSWithAccounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctlKey := filepath.Join(dir, "control.nk")
	kp, err := loadOrCreateControlKey(ctlKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	conf := filepath.Join(dir, "nats.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`jetstream { store_dir: %q }
accounts {
  UNIBUS: { jetstream: enabled, users: [ { user: bus, password: "" } ] }
  UNIBUS_CONTROL: { jetstream: enabled, users: [ { nkey: %s } ] }
}
no_auth_user: bus
`, filepath.Join(dir, "js"), pub)), 0o600)
	natsURL := startNATSConfig(t, conf)

	s := startServer(t, dir, "--nats-url", natsURL, "--store", "kv", "--control-key", ctlKey)
	if logged(s, "WARNING") {
		t.Errorf("warnings with separate accounts:\n%s", strings.Join(s.Logs.Lines(), "\n"))
	}
	controlSeqs(t, controlJetStream(t, natsURL, ctlKey))
	if got := streamNames(t, serviceJetStream(t, natsURL, filepath.Join(dir, "jetstream"))); len(got) != 1 || got[0] != api.HistoryStream {
		t.Fatalf("streams of the bus account = %q; want [%s]", got, api.HistoryStream)
	}
}

// startNATSConfig runs a nats-server process with the configuration file
// conf, listening on a free loopback port, and returns its client URL.
func startNATSConfig(t testing.TB, conf string) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH: cannot build a standalone nats-server")
	}
	bin, err := natsServerBinary()
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(freePort(t))
	addr := net.JoinHostPort("127.0.0.1", port)
	cmd := exec.Command(bin, "-c", conf, "-a", "127.0.0.1", "-p", port)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 15*time.Second, "nats-server accepting connections on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "nats://" + addr
}
