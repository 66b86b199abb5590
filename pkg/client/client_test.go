package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readAll returns the room's whole history as c sees it.
func readAll(t testing.TB, c *client.Client, room string) []client.Received {
	t.Helper()
	var out []client.Received
	if err := c.Read(ctxT(t), room, client.ReadOptions{}, func(r client.Received) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Read(%s) = %v", room, err)
	}
	return out
}

func mustSend(t testing.TB, c *client.Client, room, text string) string {
	t.Helper()
	id, err := c.Send(ctxT(t), room, client.Message{Text: text})
	if err != nil {
		t.Fatalf("Send(%q) = %v", text, err)
	}
	return id
}

// twoMembers sets up alice (admin) and bob in an encrypted room.
func twoMembers(t *testing.T) (*testbus.Bus, *client.Client, *client.Client, string) {
	t.Helper()
	bus := testbus.Start(t, testbus.Options{})
	_, alice := bus.User(t, "alice", api.RoleAdmin)
	_, bob := bus.User(t, "bob", api.RoleMember)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	return bus, alice, bob, room.ID
}

func TestSendReadBetweenMembers(t *testing.T) {
	_, alice, bob, room := twoMembers(t)
	id := mustSend(t, alice, room, "hello bob")
	msgs := readAll(t, bob, room)
	if len(msgs) != 1 {
		t.Fatalf("bob read %d messages; want 1", len(msgs))
	}
	m := msgs[0]
	if m.Err != nil || m.Text != "hello bob" || m.ID != id || m.SenderName != "alice" || m.Epoch != 1 || m.Room != room {
		t.Fatalf("bob read %+v; want alice's 'hello bob' at epoch 1", m)
	}
	// The room is found by name too.
	if _, err := bob.Send(ctxT(t), "ops", client.Message{Text: "hi"}); err != nil {
		t.Fatalf("Send by room name = %v", err)
	}
	var last []client.Received
	alice.Read(ctxT(t), "ops", client.ReadOptions{Last: 1}, func(r client.Received) error { last = append(last, r); return nil })
	if len(last) != 1 || last[0].Text != "hi" || last[0].SenderName != "bob" {
		t.Fatalf("Read Last 1 = %+v; want bob's hi", last)
	}
}

func TestFollowDeliversLiveMessages(t *testing.T) {
	_, alice, bob, room := twoMembers(t)
	mustSend(t, alice, room, "before")
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	got := make(chan client.Received, 10)
	done := make(chan error, 1)
	go func() {
		done <- bob.Read(ctx, room, client.ReadOptions{Follow: true}, func(r client.Received) error { got <- r; return nil })
	}()
	if r := <-got; r.Text != "before" {
		t.Fatalf("first followed message = %q; want before", r.Text)
	}
	mustSend(t, alice, room, "after")
	select {
	case r := <-got:
		if r.Text != "after" || r.Err != nil {
			t.Fatalf("live message = %+v; want after", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("live message not delivered within 10s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("followed Read ended with %v; want nil on cancel", err)
	}
}

func TestRemovedMemberCannotReadWhatFollows(t *testing.T) {
	_, alice, bob, room := twoMembers(t)
	mustSend(t, alice, room, "while bob is in")
	r, err := alice.RemoveMember(ctxT(t), room, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if r.Epoch != 2 {
		t.Fatalf("epoch after removal = %d; want 2", r.Epoch)
	}
	mustSend(t, alice, room, "secret after removal")
	// bob is no longer a member: the API refuses him the room.
	if err := bob.Read(ctxT(t), room, client.ReadOptions{}, func(client.Received) error { return nil }); !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("removed member's Read = %v; want not_found", err)
	}
	// Even with direct access to the stream, bob holds no key for epoch 2.
	var sawSecret bool
	for _, m := range readAll(t, alice, room) {
		if m.Epoch == 2 && m.Text != "secret after removal" {
			t.Fatalf("alice read %+v", m)
		}
		sawSecret = sawSecret || m.Text == "secret after removal"
	}
	if !sawSecret {
		t.Fatal("alice did not read her own message")
	}
}

func TestLateMemberCannotReadEarlierEpochs(t *testing.T) {
	bus, alice, _, room := twoMembers(t)
	mustSend(t, alice, room, "epoch one")
	if _, err := alice.Rekey(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room, "epoch two")
	_, carol := bus.User(t, "carol", api.RoleMember)
	if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room, "epoch two again")
	msgs := readAll(t, carol, room)
	if len(msgs) != 3 {
		t.Fatalf("carol read %d messages; want 3", len(msgs))
	}
	if msgs[0].Err == nil || msgs[0].Text != "" {
		t.Fatalf("carol read epoch 1 message %+v; want an error and no text", msgs[0])
	}
	if msgs[1].Text != "epoch two" || msgs[2].Text != "epoch two again" {
		t.Fatalf("carol read %+v; want both epoch 2 messages", msgs[1:])
	}
}

// TestReaddedMemberCannotReadWhatHeMissed: re-adding a removed member
// rekeys the room in the same request. bob reads what was sent before his
// removal and after his return, and nothing of what was sent while he was
// out, whatever epoch that was; the members who stayed read everything,
// and what bob says once back.
func TestReaddedMemberCannotReadWhatHeMissed(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	_, carol := bus.User(t, "carol", api.RoleMember)
	if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room, "before")
	if got := readAll(t, bob, room); len(got) != 1 || got[0].Text != "before" {
		t.Fatalf("bob read %+v before his removal; want alice's message", got)
	}
	if _, err := alice.RemoveMember(ctxT(t), room, "bob"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room, "while bob is out") // epoch 2
	if _, err := carol.Rekey(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	mustSend(t, carol, room, "still without bob") // epoch 3
	r, err := alice.AddMember(ctxT(t), room, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if r.Epoch != 4 {
		t.Fatalf("room after re-adding bob at epoch %d; want epoch 4: the re-add rekeys", r.Epoch)
	}
	mustSend(t, alice, room, "bob is back")
	mustSend(t, carol, room, "welcome back")
	mustSend(t, bob, room, "thanks")

	msgs := readAll(t, bob, room)
	var read []string
	for _, m := range msgs {
		switch {
		case m.Epoch == 2 || m.Epoch == 3:
			if m.Err == nil || m.Text != "" {
				t.Errorf("bob read %q at epoch %d, sent while he was out; want an error and no text", m.Text, m.Epoch)
			}
		case m.Err != nil:
			t.Errorf("bob could not read the message of epoch %d: %v", m.Epoch, m.Err)
		default:
			read = append(read, m.Text)
		}
	}
	if want := []string{"before", "bob is back", "welcome back", "thanks"}; len(msgs) != 6 || !slices.Equal(read, want) {
		t.Fatalf("bob read %q of %d messages; want %q of 6", read, len(msgs), want)
	}
	// Nothing of the epochs he was out for was sealed to him.
	for _, e := range []uint64{2, 3} {
		if keys, err := bus.Store.SealedKeys(context.Background(), room, bob.Identity().UserKey(), e); err != nil || len(keys) != 0 {
			t.Fatalf("bob holds %d keys of epoch %d (%v); want none", len(keys), e, err)
		}
	}
	for _, c := range []*client.Client{alice, carol} {
		var got []string
		for _, m := range readAll(t, c, room) {
			if m.Err != nil {
				t.Fatalf("%s could not read the message of epoch %d: %v", c.Identity().Name(), m.Epoch, m.Err)
			}
			got = append(got, m.Text)
		}
		if want := []string{"before", "while bob is out", "still without bob", "bob is back", "welcome back", "thanks"}; !slices.Equal(got, want) {
			t.Fatalf("%s read %q; want %q", c.Identity().Name(), got, want)
		}
	}
}

// TestReaddRemovesRevokedMembersFirst: the re-add seals a new key to every
// member, so revoked members are removed first, in a rekey of their own.
func TestReaddRemovesRevokedMembersFirst(t *testing.T) {
	bus, alice, _, room := twoMembers(t)
	_, carol := bus.User(t, "carol", api.RoleMember)
	if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.RemoveMember(ctxT(t), room, "carol"); err != nil { // epoch 2
		t.Fatal(err)
	}
	if _, err := alice.RevokeUser(ctxT(t), "bob"); err != nil {
		t.Fatal(err)
	}
	r, err := alice.AddMember(ctxT(t), room, "carol")
	if err != nil {
		t.Fatal(err)
	}
	v, err := alice.Verify(ctxT(t), room)
	if err != nil {
		t.Fatal(err)
	}
	if r.Epoch != 4 || v.Epoch != 4 || len(v.Members) != 2 {
		t.Fatalf("room after re-adding carol: epoch %d (verified %d), %d members; want epoch 4 (bob rekeyed out, then the re-add) with alice and carol", r.Epoch, v.Epoch, len(v.Members))
	}
	mustSend(t, alice, room, "carol is back")
	if msgs := readAll(t, carol, room); len(msgs) == 0 || msgs[len(msgs)-1].Text != "carol is back" {
		t.Fatalf("carol read %+v; want alice's message", msgs)
	}
}

// publishRaw puts bytes on a room's subject as any NATS client could.
func publishRaw(t testing.TB, bus *testbus.Bus, room string, b []byte) {
	t.Helper()
	if _, err := bus.JS.Publish(ctxT(t), api.RoomSubject(room), b); err != nil {
		t.Fatal(err)
	}
}

func TestReceiverRejectsForgedAndReplayedEnvelopes(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	other, err := alice.CreateRoom(ctxT(t), "other", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(ctxT(t), other.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room, "genuine")
	history := rawHistory(t, bus, room)
	if len(history) != 1 {
		t.Fatalf("raw history has %d messages", len(history))
	}
	genuine := history[0]

	tampered := bytes.Clone(genuine)
	tampered[len(tampered)-e2ee.SignatureSize-3] ^= 1 // inside the ciphertext
	publishRaw(t, bus, room, tampered)

	// mallory is a registered user but not a member: she signs with her own
	// key while naming alice as the sender.
	mallory := testbus.NewIdentity(t, "mallory")
	env, _ := e2ee.Parse(genuine)
	forgedHdr := env.Header
	forgedHdr.Sender = [32]byte(mallory.SigningKey().Public().(ed25519.PublicKey))
	var key e2ee.RoomKey
	rand.Read(key[:])
	sealed, err := e2ee.Seal(forgedHdr, &key, []byte(`{"text":"forged"}`), mallory.SigningKey(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := e2ee.Parse(sealed)
	forged.Sender = env.Sender // now claims to be alice
	publishRaw(t, bus, room, forged.Marshal())

	// The genuine envelope replayed into another room bob belongs to.
	publishRaw(t, bus, other.ID, genuine)

	// The genuine envelope replayed with another epoch: the signature breaks.
	reEpoch, _ := e2ee.Parse(genuine)
	reEpoch.Epoch = 2
	publishRaw(t, bus, room, reEpoch.Marshal())

	msgs := readAll(t, bob, room)
	if len(msgs) != 4 {
		t.Fatalf("bob read %d messages; want 4", len(msgs))
	}
	if msgs[0].Text != "genuine" || msgs[0].Err != nil {
		t.Fatalf("first message = %+v; want genuine", msgs[0])
	}
	for i, m := range msgs[1:] {
		if m.Err == nil || m.Text != "" || m.File != nil {
			t.Errorf("bad message %d shown: %+v; want an error and no text", i+1, m)
		}
	}
	replayed := readAll(t, bob, other.ID)
	if len(replayed) != 1 || !errors.Is(replayed[0].Err, e2ee.ErrWrongRoom) || replayed[0].Text != "" {
		t.Fatalf("replayed envelope in the other room = %+v; want ErrWrongRoom and no text", replayed)
	}
}

// rawHistory reads the room's envelopes straight from JetStream.
func rawHistory(t testing.TB, bus *testbus.Bus, room string) [][]byte {
	t.Helper()
	st, err := bus.JS.Stream(ctxT(t), api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(ctxT(t), seq)
		if err != nil {
			break
		}
		if m.Subject == api.RoomSubject(room) {
			out = append(out, m.Data)
		}
	}
	return out
}

func TestFileRoundTripAndTamperedBlob(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "report.bin")
	data := make([]byte, 3<<20+123)
	rand.Read(data)
	os.WriteFile(src, data, 0o600)
	var progressed int64
	id, err := alice.SendFile(ctxT(t), room, src, "the report", func(done, total int64) { progressed = done })
	if err != nil {
		t.Fatal(err)
	}
	if progressed != e2ee.EncryptedFileSize(int64(len(data))) {
		t.Fatalf("progress ended at %d; want %d", progressed, e2ee.EncryptedFileSize(int64(len(data))))
	}
	var out bytes.Buffer
	ref, err := bob.FetchFile(ctxT(t), room, id, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Name != "report.bin" || ref.Size != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("fetched %s of %d bytes; want report.bin, identical", ref.Name, out.Len())
	}
	// Flip one byte of the stored blob: the download must fail, not yield
	// altered plaintext.
	var blobPath string
	filepath.WalkDir(bus.BlobDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(p) == ref.Blob {
			blobPath = p
		}
		return nil
	})
	if blobPath == "" {
		t.Fatal("blob not found on disk")
	}
	stored, _ := os.ReadFile(blobPath)
	stored[len(stored)/2] ^= 1
	os.WriteFile(blobPath, stored, 0o600)
	out.Reset()
	if _, err := bob.FetchFile(ctxT(t), room, id, &out, nil); err == nil {
		t.Fatal("FetchFile of a tampered blob succeeded")
	}
}

// TestCanaryNeverInTheClear checks what must always hold: neither the
// server's disk nor the NATS traffic carries an encrypted room's content.
func TestCanaryNeverInTheClear(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	const canary = "CANARY-7f1c2e-plaintext"
	const fileCanary = "FILE-CANARY-93ab41-inside"

	// A raw subscriber to every subject sees all traffic on the bus.
	var mu sync.Mutex
	var wire bytes.Buffer
	tap, err := nats.Connect(bus.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	sub, err := tap.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		wire.Write(m.Data)
		wire.WriteString(m.Subject)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	tap.Flush()

	mustSend(t, alice, room, canary)
	src := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(src, []byte(strings.Repeat(fileCanary+"\n", 5000)), 0o600)
	msgID, err := alice.SendFile(ctxT(t), room, src, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// bob reads both, so any cleartext would have crossed the wire by now.
	var got bytes.Buffer
	if _, err := bob.FetchFile(ctxT(t), room, msgID, &got, nil); err != nil || !strings.Contains(got.String(), fileCanary) {
		t.Fatalf("bob could not read the file: %v", err)
	}
	if msgs := readAll(t, bob, room); len(msgs) != 2 || msgs[0].Text != canary {
		t.Fatalf("bob read %+v", msgs)
	}
	tap.Flush()
	sub.Unsubscribe()

	mu.Lock()
	defer mu.Unlock()
	for _, c := range []string{canary, fileCanary} {
		if bytes.Contains(wire.Bytes(), []byte(c)) {
			t.Errorf("%s seen on the NATS wire", c)
		}
	}
	bus.Conn.Flush()
	filepath.WalkDir(bus.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, c := range []string{canary, fileCanary} {
			if bytes.Contains(b, []byte(c)) {
				t.Errorf("%s found on disk in %s", c, p)
			}
		}
		return nil
	})
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	bus := testbus.Start(t, testbus.Options{Dir: dir})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	alice := bus.Client(t, aliceID)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room.ID, "kept")
	src := filepath.Join(t.TempDir(), "f.txt")
	os.WriteFile(src, []byte("file kept"), 0o600)
	fileMsg, err := alice.SendFile(ctxT(t), room.ID, src, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	alice.Close()
	bus.HTTP.Close()
	bus.Conn.Close()
	bus.NATS.Shutdown()
	bus.NATS.WaitForShutdown()
	bus.Store.Close()

	again := testbus.Start(t, testbus.Options{Dir: dir})
	alice2 := again.Client(t, aliceID)
	msgs := readAll(t, alice2, room.ID)
	if len(msgs) != 2 || msgs[0].Text != "kept" || msgs[1].File == nil {
		t.Fatalf("after restart read %+v; want the message and the file", msgs)
	}
	var out bytes.Buffer
	if _, err := alice2.FetchFile(ctxT(t), room.ID, fileMsg, &out, nil); err != nil || out.String() != "file kept" {
		t.Fatalf("after restart FetchFile = %q, %v", out.String(), err)
	}
}

func TestConcurrentRekeysConflict(t *testing.T) {
	_, alice, bob, room := twoMembers(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*client.Client{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Rekey(ctxT(t), room)
		}()
	}
	wg.Wait()
	// Either both succeed one after the other (no overlap), or exactly one
	// loses with a conflict; never a forked room.
	r, err := alice.Room(ctxT(t), room)
	if err != nil {
		t.Fatal(err)
	}
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else if !api.IsCode(err, api.CodeConflict) {
			t.Fatalf("losing rekey = %v; want conflict", err)
		}
	}
	if r.Epoch != uint64(1+wins) {
		t.Fatalf("epoch = %d after %d successful rekeys", r.Epoch, wins)
	}
	mustSend(t, bob, room, "after rekeys")
	msgs := readAll(t, alice, room)
	if len(msgs) != 1 || msgs[0].Text != "after rekeys" {
		t.Fatalf("alice read %+v", msgs)
	}
}

func TestUnknownAndRevokedUsersRefused(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{})
	_, admin := bus.User(t, "admin", api.RoleAdmin)
	strangerID := testbus.NewIdentity(t, "stranger")
	stranger := bus.Client(t, strangerID)
	if _, err := stranger.Rooms(ctxT(t)); !api.IsCode(err, api.CodeUnauthorized) {
		t.Fatalf("unknown user's Rooms = %v; want unauthorized", err)
	}
	if _, err := admin.AddUser(ctxT(t), strangerID.Public().Token(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.Rooms(ctxT(t)); err != nil {
		t.Fatalf("added user's Rooms = %v", err)
	}
	if _, err := admin.RevokeUser(ctxT(t), "stranger"); err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.Rooms(ctxT(t)); !api.IsCode(err, api.CodeRevoked) {
		t.Fatalf("revoked user's Rooms = %v; want revoked", err)
	}
	// A member cannot manage users.
	_, member := bus.User(t, "member", api.RoleMember)
	other := testbus.NewIdentity(t, "other")
	if _, err := member.AddUser(ctxT(t), other.Public().Token(), true); !api.IsCode(err, api.CodeForbidden) {
		t.Fatalf("member's AddUser = %v; want forbidden", err)
	}
}

func TestRevokedMemberIsRekeyedOutByTheNextSender(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	carolID, carol := bus.User(t, "carol", api.RoleMember)
	if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, carol, room, "carol was here") // carol holds the epoch 1 key
	if _, err := alice.RevokeUser(ctxT(t), "carol"); err != nil {
		t.Fatal(err)
	}
	// bob, a plain member, is the next to send: his SDK rekeys carol out
	// first.
	mustSend(t, bob, room, "after carol's revocation")
	r, err := bob.Verify(ctxT(t), room)
	if err != nil {
		t.Fatal(err)
	}
	if r.Epoch != 2 || len(r.Members) != 2 {
		t.Fatalf("room after bob's send: epoch %d, %d members; want epoch 2 without carol", r.Epoch, len(r.Members))
	}
	msgs := readAll(t, alice, room)
	last := msgs[len(msgs)-1]
	if last.Text != "after carol's revocation" || last.Epoch != 2 {
		t.Fatalf("last message %+v; want bob's at epoch 2", last)
	}
	// carol kept her epoch 1 key, but nothing was sealed to her for epoch 2.
	keys, err := bus.Store.SealedKeys(context.Background(), room, carolID.UserKey(), 2)
	if err != nil || len(keys) != 0 {
		t.Fatalf("carol holds %d keys for epoch 2 (%v); want none", len(keys), err)
	}
}

// TestRevocationIsAnnouncedToTheRoom: a member whose client already holds
// the room (and its member list, read less than a minute ago) learns of a
// revocation from the room event membershipd publishes, and its next send
// rekeys the revoked user out.
func TestRevocationIsAnnouncedToTheRoom(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	_, carol := bus.User(t, "carol", api.RoleMember)
	if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, carol, room, "carol was here")
	mustSend(t, bob, room, "bob holds the room") // bob's client has the room
	if _, err := alice.RevokeUser(ctxT(t), "carol"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mustSend(t, bob, room, "after carol's revocation")
		r, err := bus.Store.GetRoom(context.Background(), room)
		if err != nil {
			t.Fatal(err)
		}
		if r.Epoch == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's sends never rekeyed the revoked carol out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	v, err := bob.Verify(ctxT(t), room)
	if err != nil || len(v.Members) != 2 {
		t.Fatalf("room after the rekey: %d members, %v; want alice and bob", len(v.Members), err)
	}
}

func TestStreamSendsManyInOrder(t *testing.T) {
	_, alice, bob, room := twoMembers(t)
	s, err := alice.OpenStream(ctxT(t), room)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := range n {
		if _, err := s.Send(ctxT(t), client.Message{Text: fmt.Sprint(i)}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if err := s.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	i := 0
	if err := bob.Read(ctxT(t), room, client.ReadOptions{}, func(r client.Received) error {
		if r.Err != nil || r.Text != fmt.Sprint(i) {
			t.Fatalf("message %d = %q (%v); want %d in order", i, r.Text, r.Err, i)
		}
		i++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("bob read %d messages; want %d", i, n)
	}
}

// countingTransport counts the API requests a client makes and keeps
// their paths.
type countingTransport struct {
	n   atomic.Int64
	mu  sync.Mutex
	log []string
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.log = append(c.log, r.URL.RequestURI())
	c.mu.Unlock()
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// countedUser registers name with role and returns its client, whose API
// requests are counted, pinning to pinFile ("" keeps pins in memory).
func countedUser(t *testing.T, bus *testbus.Bus, name, role, pinFile string) (*client.Client, *countingTransport) {
	t.Helper()
	id := testbus.NewIdentity(t, name)
	bus.AddUser(t, id, role)
	requests := &countingTransport{}
	c, err := client.New(client.Config{Server: bus.HTTP.URL, Identity: id, HTTPClient: &http.Client{Transport: requests}, PinFile: pinFile, Logger: testbus.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, requests
}

// paths returns the paths and queries of the requests after the first n.
func (c *countingTransport) paths(n int64) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log[n:])
}

// waitForPinnedHead waits until the pins file holds the room head hash:
// the client has verified (and pinned) the history up to it.
func waitForPinnedHead(t *testing.T, pins, hash string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(pins)
		if bytes.Contains(b, []byte(hash)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pins never reached head %.12s…", hash)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNewEpochKeyArrivesWithoutAsking: when another member rekeys,
// removes a member or re-adds a former one, the client holds the new key
// from membershipd's
// delivery on NATS (the statement verified against its history, the key
// opened) and sends at the new epoch without one request to the API; a
// removed member reads nothing of it.
func TestNewEpochKeyArrivesWithoutAsking(t *testing.T) {
	for _, change := range []string{"rekey", "removal", "re-add"} {
		t.Run(change, func(t *testing.T) {
			bus := testbus.Start(t, testbus.Options{})
			pins := filepath.Join(t.TempDir(), "alice.pins.json")
			alice, api_ := countedUser(t, bus, "alice", api.RoleMember, pins)
			_, bob := bus.User(t, "bob", api.RoleAdmin)
			_, carol := bus.User(t, "carol", api.RoleMember)
			room, err := bob.CreateRoom(ctxT(t), "ops", false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.AddMembers(ctxT(t), room.ID, []string{"alice", "carol"}); err != nil {
				t.Fatal(err)
			}
			if change == "re-add" {
				if _, err := bob.RemoveMember(ctxT(t), room.ID, "carol"); err != nil {
					t.Fatal(err)
				}
			}
			mustSend(t, alice, room.ID, "epoch 1")
			before := api_.n.Load()

			var updated api.Room
			switch change {
			case "rekey":
				updated, err = bob.Rekey(ctxT(t), room.ID)
			case "removal":
				updated, err = bob.RemoveMember(ctxT(t), room.ID, "carol")
			case "re-add": // a rekeying add
				updated, err = bob.AddMember(ctxT(t), room.ID, "carol")
			}
			if err != nil {
				t.Fatal(err)
			}
			head, err := bob.Verify(ctxT(t), room.ID)
			if err != nil {
				t.Fatal(err)
			}
			waitForPinnedHead(t, pins, head.HeadHash)
			id := mustSend(t, alice, room.ID, "epoch 2")
			if n := api_.n.Load() - before; n != 0 {
				t.Fatalf("alice made %d API requests to take the new key and send; want 0", n)
			}
			msgs := readAll(t, bob, room.ID)
			if last := msgs[len(msgs)-1]; last.ID != id || last.Err != nil || last.Epoch != updated.Epoch {
				t.Fatalf("bob read %+v; want alice's message at epoch %d", last, updated.Epoch)
			}
			if change == "re-add" {
				if msgs := readAll(t, carol, room.ID); msgs[len(msgs)-1].ID != id || msgs[len(msgs)-1].Err != nil {
					t.Fatalf("the re-added carol read %+v last; want alice's message", msgs[len(msgs)-1])
				}
				// And alice reads what carol says once back.
				back := mustSend(t, carol, room.ID, "carol is back")
				if msgs := readAll(t, alice, room.ID); msgs[len(msgs)-1].ID != back || msgs[len(msgs)-1].Err != nil {
					t.Fatalf("alice read %+v last; want carol's message", msgs[len(msgs)-1])
				}
			}
			if change == "removal" {
				for _, m := range readAllLenient(carol, room.ID) {
					if m.Text == "epoch 2" {
						t.Fatal("the removed carol read what followed her removal")
					}
				}
			}
		})
	}
}

// readAllLenient is readAll for a client that may no longer read the room.
func readAllLenient(c *client.Client, room string) []client.Received {
	var out []client.Received
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Read(ctx, room, client.ReadOptions{}, func(r client.Received) error {
		out = append(out, r)
		return nil
	})
	return out
}

// TestAddedMemberCostsALightRead: a member added by someone else is
// learnt from the history alone: the next send reads the room without its
// member list, and what the new member says is shown.
func TestAddedMemberCostsALightRead(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{})
	alice, requests := countedUser(t, bus, "alice", api.RoleMember, "")
	_, bob := bus.User(t, "bob", api.RoleAdmin)
	_, dave := bus.User(t, "dave", api.RoleMember)
	room, err := bob.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.AddMember(ctxT(t), room.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room.ID, "before dave")
	before := requests.n.Load()
	if _, err := bob.AddMember(ctxT(t), room.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, dave, room.ID, "hello from dave")
	// Send until the add's event has made alice read what is new.
	deadline := time.Now().Add(5 * time.Second)
	for requests.n.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the add never made alice read the room")
		}
		mustSend(t, alice, room.ID, "while the event arrives")
		time.Sleep(5 * time.Millisecond)
	}
	want := []string{"/v1/rooms/" + room.ID + "?members=none", "/v1/rooms/" + room.ID + "/statements?after=2"}
	if got := requests.paths(before); !slices.Equal(got, want) {
		t.Errorf("requests after the add: %q; want %q", got, want)
	}
	msgs := readAll(t, alice, room.ID)
	found := false
	for _, m := range msgs {
		if m.Text == "hello from dave" {
			found = m.Err == nil && m.SenderName == "dave"
		}
	}
	if !found {
		t.Fatal("alice was not shown dave's message")
	}
}

// TestForgedKeyDeliveryIsIgnored: deliveries are hints. One whose
// statement does not verify or does not follow the history, or whose key
// is not the statement's actor's for that epoch, changes nothing: alice
// stays at the epoch the server holds, and bob reads her.
func TestForgedKeyDeliveryIsIgnored(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	mustSend(t, alice, room, "epoch 1")
	v, err := alice.Verify(ctxT(t), room)
	if err != nil {
		t.Fatal(err)
	}
	aliceID, bobID := alice.Identity(), bob.Identity()
	rekey := func(seq uint64) roomchain.Signed {
		st, err := roomchain.Sign(roomchain.Statement{Version: roomchain.Version, Room: room, Seq: seq, Prev: v.HeadHash, Kind: roomchain.KindRekey,
			Actor: bobID.UserKey(), Epoch: v.Epoch + 1, Admins: []string{aliceID.UserKey()}, Time: time.Now().UnixMilli()}, bobID.SigningKey())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	sealed := func(by *identity.Identity, epoch uint64) api.SealedKey {
		pair, err := e2ee.XKeyPair{Private: by.XPrivate(), Public: by.XPublic()}.SealingPairKey(aliceID.XPublic())
		if err != nil {
			t.Fatal(err)
		}
		b, err := pair.Seal(e2ee.RoomKey{7}, e2ee.SealedKeyContext{Room: room, Epoch: epoch, Recipient: [32]byte(aliceID.SigningKey().Public().(ed25519.PublicKey))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return api.SealedKey{Room: room, Epoch: epoch, Member: aliceID.UserKey(), Sealer: by.Public(), SealedKey: b}
	}
	badSig := rekey(v.HeadSeq + 1)
	badSig.Sig = bytes.Clone(badSig.Sig)
	badSig.Sig[3] ^= 1
	forgeries := map[string]api.KeyDelivery{
		"statement signature altered":    {Room: room, Statement: badSig, Key: sealed(bobID, v.Epoch+1)},
		"statement that does not follow": {Room: room, Statement: rekey(v.HeadSeq + 2), Key: sealed(bobID, v.Epoch+1)},
		"key sealed by another member":   {Room: room, Statement: rekey(v.HeadSeq + 1), Key: sealed(aliceID, v.Epoch+1)},
		"key of another epoch":           {Room: room, Statement: rekey(v.HeadSeq + 1), Key: sealed(bobID, v.Epoch)},
	}
	for _, d := range forgeries {
		b, _ := json.Marshal(d)
		if err := bus.Conn.Publish(api.KeysSubject(aliceID.UserKey()), b); err != nil {
			t.Fatal(err)
		}
	}
	bus.Conn.Publish(api.KeysSubject(aliceID.UserKey()), []byte("not json"))
	bus.Conn.Flush()
	time.Sleep(100 * time.Millisecond) // the client's handler has them all
	id := mustSend(t, alice, room, "after forgeries")
	msgs := readAll(t, bob, room)
	if last := msgs[len(msgs)-1]; last.ID != id || last.Err != nil || last.Epoch != v.Epoch {
		t.Fatalf("bob read %+v; want alice's message at epoch %d", last, v.Epoch)
	}
}

// TestForgedRekeyEventCostsOneRead: room events are hints any member can
// publish. One announcing an epoch the server does not know makes the
// client read the room once, not on every send after it.
func TestForgedRekeyEventCostsOneRead(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{})
	alice, requests := countedUser(t, bus, "alice", api.RoleAdmin, "")
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room.ID, "before")
	forged, _ := json.Marshal(api.RoomEvent{Room: room.ID, Epoch: 1_000_000})
	if err := bus.Conn.Publish(api.RoomEventSubject(room.ID), forged); err != nil {
		t.Fatal(err)
	}
	bus.Conn.Flush()
	// Send until the event has made the client read the room once.
	before := requests.n.Load()
	deadline := time.Now().Add(5 * time.Second)
	for requests.n.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("the forged rekey event never made the client read the room")
		}
		mustSend(t, alice, room.ID, "while the event arrives")
		time.Sleep(5 * time.Millisecond)
	}
	// That read was the light one: the room's head and what is new in
	// its history, no member list, no keys (no new epoch).
	if got := requests.paths(before); !slices.Equal(got, []string{"/v1/rooms/" + room.ID + "?members=none", "/v1/rooms/" + room.ID + "/statements?after=1"}) {
		t.Errorf("requests of the refresh: %q; want the room without members and the statements after 1", got)
	}
	after := requests.n.Load()
	for i := range 5 {
		mustSend(t, alice, room.ID, fmt.Sprintf("after %d", i))
	}
	if n := requests.n.Load() - after; n != 0 {
		t.Fatalf("%d API requests for 5 sends after the forged event was read off; want 0", n)
	}
}
