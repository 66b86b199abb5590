package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// enforceBus is a real membershipd in enforce mode with alice (admin) and
// bob seeded on the host, and their SDK clients.
type enforceBus struct {
	srv  *testServer
	db   string
	info api.Info
	// store is the flags that aim the host's user commands at the
	// server's store.
	store      []string
	alice, bob *client.Client
	aliceID    *identity.Identity
	bobID      *identity.Identity
}

// startEnforce starts the server with extra flags ("--store", "kv" among
// them for the KV store).
func startEnforce(t *testing.T, extra ...string) *enforceBus {
	t.Helper()
	dir := t.TempDir()
	e := &enforceBus{srv: startServer(t, dir, append([]string{"--bus-auth", "enforce"}, extra...)...), db: filepath.Join(dir, "unibus.db")}
	if status := getJSON(t, e.srv.URL+"/v1/info", &e.info); status != http.StatusOK {
		t.Fatalf("GET /v1/info = %d", status)
	}
	e.store = []string{"--db", e.db}
	if slices.Contains(extra, "kv") {
		e.store = []string{"--store", "kv", "--nats-url", e.info.NATSURL, "--control-key", filepath.Join(dir, "jetstream", controlKeyFile)}
	}
	e.aliceID, e.bobID = testbus.NewIdentity(t, "alice"), testbus.NewIdentity(t, "bob")
	e.host(t, "seed", "--admin", e.aliceID.Public().Token())
	e.host(t, "seed", e.bobID.Public().Token())
	waitFor(t, 5*time.Second, "seeded users known", func() bool {
		return getMe(t, e.srv.URL, e.aliceID) == http.StatusOK && getMe(t, e.srv.URL, e.bobID) == http.StatusOK
	})
	e.alice, e.bob = newClient(t, e.srv.URL, e.aliceID), newClient(t, e.srv.URL, e.bobID)
	return e
}

// host runs `membershipd user COMMAND ARGS…` on the server's store,
// wanting success.
func (e *enforceBus) host(t testing.TB, command string, args ...string) {
	t.Helper()
	runCLI(t, 0, append(append([]string{"user", command}, e.store...), args...)...)
}

// opsRoom makes alice's room "ops" and adds members to it, one by one.
func (e *enforceBus) opsRoom(t testing.TB, members ...string) api.Room {
	t.Helper()
	room, err := e.alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range members {
		if _, err := e.alice.AddMember(ctxT(t), room.ID, u); err != nil {
			t.Fatal(err)
		}
	}
	return room
}

// rawConn connects to NATS as id, with the same options the SDK uses.
//
// A connection made as the member's rooms change can be closed by the
// change's kick while it is made; the dial is then tried again.
func (e *enforceBus) rawConn(t testing.TB, id *identity.Identity, errs chan<- error) *nats.Conn {
	t.Helper()
	for attempt := 0; ; attempt++ {
		nc, err := e.dial(id, errs)
		if err == nil {
			t.Cleanup(nc.Close)
			return nc
		}
		if attempt == 4 || !errors.Is(err, io.EOF) {
			t.Fatalf("connect as %s: %v", id.Name(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liveConn is rawConn for a connection that reconnects, as the SDK's
// does, when a membership change closes it.
func (e *enforceBus) liveConn(t testing.TB, id *identity.Identity, errs chan<- error) *nats.Conn {
	t.Helper()
	nc, err := e.dial(id, errs, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("connect as %s: %v", id.Name(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (e *enforceBus) dial(id *identity.Identity, errs chan<- error, extra ...nats.Option) (*nats.Conn, error) {
	return nats.Connect(e.info.NATSURL, append([]nats.Option{
		nats.Nkey(id.UserKey(), id.NkeySign),
		nats.CustomInboxPrefix(subjects.InboxPrefix(id.UserKey())),
		nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errs != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})}, extra...)...)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantPermissionViolation waits for the error the bus reports on errs (see
// rawConn) after a refused operation, what, and fails unless it is a
// permissions violation.
func wantPermissionViolation(t testing.TB, errs <-chan error, what string) {
	t.Helper()
	select {
	case err := <-errs:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("%s: error = %v; want a permissions violation", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s was not refused", what)
	}
}

// waitFor polls cond every 10ms until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEnforceMembersTalkNonMembersCannot(t *testing.T) {
	t.Parallel()
	e := startEnforce(t)
	room := e.opsRoom(t)
	if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: "members only"}); err != nil {
		t.Fatal(err)
	}

	// bob is not a member of alice's room: the data plane refuses him its
	// subjects and its history, even as ciphertext.
	errs := make(chan error, 10)
	nc := e.rawConn(t, e.bobID, errs)
	got := make(chan *nats.Msg, 1)
	if _, err := nc.Subscribe(api.RoomSubject(room.ID), func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	wantPermissionViolation(t, errs, "subscription to another room's subject")
	js, _ := jetstream.New(nc)
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.Publish(short, api.RoomSubject(room.ID), []byte("junk"), jetstream.WithRetryAttempts(0)); err == nil {
		t.Fatal("non-member published into the room's history")
	}
	short, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.OrderedConsumer(short, api.HistoryStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{api.RoomSubject(room.ID)}}); err == nil {
		t.Fatal("non-member created a consumer on the room's history")
	}
	// His own room works.
	other, err := e.bob.CreateRoom(ctxT(t), "bob's", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.bob.Send(ctxT(t), other.ID, client.Message{Text: "mine"}); err != nil {
		t.Fatalf("bob's own room: %v", err)
	}
	// Nothing of bob's reached alice's room.
	var texts []string
	e.alice.Read(ctxT(t), room.ID, client.ReadOptions{}, func(r client.Received) error { texts = append(texts, r.Text); return nil })
	if len(texts) != 1 || texts[0] != "members only" {
		t.Fatalf("alice's room holds %q", texts)
	}
	select {
	case m := <-got:
		t.Fatalf("non-member received %q", m.Data)
	default:
	}
}

func TestEnforceAddedMemberGetsAccessUnnoticed(t *testing.T) {
	t.Parallel()
	e := startEnforce(t)
	room := e.opsRoom(t)
	// bob's SDK is connected (to his own room) before he is added.
	mine, err := e.bob.CreateRoom(ctxT(t), "mine", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.bob.Send(ctxT(t), mine.ID, client.Message{Text: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.alice.AddMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	// His connection is closed and reopened with the new room: the SDK
	// retries without the application noticing.
	var sendErr error
	waitFor(t, 10*time.Second, "bob sends in the room he was added to", func() bool {
		_, sendErr = e.bob.Send(ctxT(t), room.ID, client.Message{Text: "hello alice"})
		return sendErr == nil
	})
}

func TestEnforceRemovedMemberAndRevokedUserAreCutWithinASecond(t *testing.T) {
	t.Parallel()
	e := startEnforce(t)
	carolID := testbus.NewIdentity(t, "carol")
	runCLI(t, 0, "user", "seed", "--db", e.db, carolID.Public().Token())
	room := e.opsRoom(t, "bob", "carol")
	// Live raw subscriptions of bob and carol on the room's subject.
	subscribe := func(id *identity.Identity) (*nats.Conn, *sync.Map) {
		nc := e.rawConn(t, id, nil)
		seen := &sync.Map{}
		if _, err := nc.Subscribe(api.RoomSubject(room.ID), func(m *nats.Msg) { seen.Store(string(m.Data[:min(len(m.Data), 40)]), true) }); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		return nc, seen
	}
	bobNC, _ := subscribe(e.bobID)
	carolNC, _ := subscribe(carolID)

	start := time.Now()
	if _, err := e.alice.RemoveMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "removed member's connection closed", func() bool { return !bobNC.IsConnected() })
	t.Logf("removed member cut after %s", time.Since(start))

	start = time.Now()
	runCLI(t, 0, "user", "revoke", "--db", e.db, "carol")
	waitFor(t, time.Second, "revoked user's connection closed", func() bool { return !carolNC.IsConnected() })
	t.Logf("revoked user cut after %s", time.Since(start))

	// Neither gets back in: bob lacks the room's subjects, carol any access.
	if _, err := nats.Connect(e.info.NATSURL, nats.Nkey(carolID.UserKey(), carolID.NkeySign), nats.MaxReconnects(0)); err == nil {
		t.Fatal("revoked user reconnected")
	}
	errs := make(chan error, 4)
	nc := e.rawConn(t, e.bobID, errs)
	nc.Subscribe(api.RoomSubject(room.ID), func(*nats.Msg) {})
	nc.Flush()
	wantPermissionViolation(t, errs, "removed member's new subscription to the room")
}

func TestAPIFloodIsSlowedForTheFlooderOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, "--api-rate", "5", "--api-burst", "5")
	db := filepath.Join(dir, "unibus.db")
	alice, bob := testbus.NewIdentity(t, "alice"), testbus.NewIdentity(t, "bob")
	runCLI(t, 0, "user", "seed", "--db", db, alice.Public().Token())
	runCLI(t, 0, "user", "seed", "--db", db, bob.Public().Token())
	limited := 0
	for range 30 {
		if code := getMe(t, s.URL, alice); code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("30 quick requests over a 5/s limit were all served")
	}
	if code := getMe(t, s.URL, bob); code != http.StatusOK {
		t.Fatalf("another user's request during the flood = %d; want 200", code)
	}
	// The refusal is the API's JSON error with a Retry-After.
	resp, err := http.DefaultClient.Do(signedGet(t, s.URL+"/v1/me", alice))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	if resp.StatusCode != http.StatusTooManyRequests || jsonDecode(resp, &e) != nil || e.Code != api.CodeRateLimited || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("flooded request = %d %+v (Retry-After %q); want 429 rate_limited with Retry-After", resp.StatusCode, e, resp.Header.Get("Retry-After"))
	}
}

// TestEnforceKeyDeliveriesComeOnlyFromTheServer: after a rekey every
// member gets its new sealed key on its own keys subject; a member cannot
// write to another's, so a forged delivery never reaches anyone.
func TestEnforceKeyDeliveriesComeOnlyFromTheServer(t *testing.T) {
	t.Parallel()
	e := startEnforce(t)
	room := e.opsRoom(t, "bob")
	if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: "epoch 1"}); err != nil {
		t.Fatal(err)
	}
	deliveries := make(chan *nats.Msg, 4)
	alice := e.rawConn(t, e.aliceID, nil)
	if _, err := alice.Subscribe(api.KeysSubject(e.aliceID.UserKey()), func(m *nats.Msg) { deliveries <- m }); err != nil {
		t.Fatal(err)
	}
	alice.Flush()

	// bob writes to alice's keys subject: refused by the bus.
	errs := make(chan error, 4)
	bob := e.rawConn(t, e.bobID, errs)
	forged, _ := json.Marshal(api.KeyDelivery{Room: room.ID})
	bob.Publish(api.KeysSubject(e.aliceID.UserKey()), forged)
	bob.Flush()
	wantPermissionViolation(t, errs, "bob's publish to alice's keys subject")

	// bob's rekey through the API: alice's delivery comes from membershipd.
	updated, err := e.bob.Rekey(ctxT(t), room.ID)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-deliveries:
		var d api.KeyDelivery
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Room != room.ID || d.Key.Member != e.aliceID.UserKey() || d.Key.Epoch != updated.Epoch || d.Key.Sealer.User != e.bobID.UserKey() || len(d.Statement.Body) == 0 {
			t.Fatalf("delivery = room %s member %s epoch %d sealer %s; want alice's key of epoch %d sealed by bob, with the statement", d.Room, d.Key.Member, d.Key.Epoch, d.Key.Sealer.User, updated.Epoch)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no key delivery after the rekey")
	}
	select {
	case m := <-deliveries:
		t.Fatalf("a second delivery reached alice: %s", m.Data)
	case <-time.After(200 * time.Millisecond):
	}
	// alice talks at the new epoch; bob reads it.
	if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: "epoch 2"}); err != nil {
		t.Fatal(err)
	}
	var got []client.Received
	if err := e.bob.Read(ctxT(t), room.ID, client.ReadOptions{}, func(r client.Received) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Err != nil || got[1].Text != "epoch 2" || got[1].Epoch != updated.Epoch {
		t.Fatalf("bob read %+v; want alice's message at epoch %d", got, updated.Epoch)
	}
}

// TestEnforceMembersCannotForgeRoomEvents: membershipd closes the
// connections of the users a room event names, so only membershipd may
// publish one. A member's forged event naming alice is refused by the bus,
// and alice stays connected.
func TestEnforceMembersCannotForgeRoomEvents(t *testing.T) {
	t.Parallel()
	e := startEnforce(t)
	room := e.opsRoom(t, "bob")
	alice := e.rawConn(t, e.aliceID, nil)
	errs := make(chan error, 4)
	bob := e.rawConn(t, e.bobID, errs)
	forged, _ := json.Marshal(api.RoomEvent{Room: room.ID, Epoch: 1, Users: []string{e.aliceID.UserKey()}, Revoked: []string{e.aliceID.UserKey()}})
	bob.Publish(api.RoomEventSubject(room.ID), forged)
	bob.Flush()
	wantPermissionViolation(t, errs, "bob's forged room event")
	time.Sleep(300 * time.Millisecond) // more than the data plane needs to act
	if !alice.IsConnected() || alice.Stats().Reconnects != 0 {
		t.Fatalf("alice's connection: connected %v, reconnects %d; want untouched", alice.IsConnected(), alice.Stats().Reconnects)
	}
	// bob still talks in the room.
	if _, err := e.bob.Send(ctxT(t), room.ID, client.Message{Text: "still here"}); err != nil {
		t.Fatal(err)
	}
}
