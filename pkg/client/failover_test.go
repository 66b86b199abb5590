package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/internal/testutil/testnet"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
)

// The failover tests put "nodes" in front of one in-process bus: proxies
// that pass requests on, answer 503, or pass one on and then drop the
// connection without its answer (the node committed and died), beside
// ports nobody listens on and listeners that never answer. The cluster
// itself, three membershipd nodes of which one is stopped, is tested in
// cmd/membershipd (failover_test.go).

// node is a proxy in front of a bus's API, counting the requests it gets.
type node struct {
	URL  string
	hits atomic.Int64
	// unavailable, while set, answers every request 503; failFirst
	// answers that many more 503.
	unavailable atomic.Bool
	failFirst   atomic.Int64
	// drop, when set, picks requests to pass on and then answer with a
	// dropped connection.
	drop func(r *http.Request) bool
	// dropped counts them.
	dropped atomic.Int64
}

// newNode starts a proxy to the bus's API, closed at cleanup.
func newNode(t testing.TB, bus *testbus.Bus) *node {
	t.Helper()
	target, err := url.Parse(bus.HTTP.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = testLogger()
	n := &node{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		if n.unavailable.Load() || n.failFirst.Add(-1) >= 0 {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"code":"unavailable","error":"the membership store (NATS JetStream) is unavailable: try again"}`)
			return
		}
		if n.drop != nil && n.drop(r) {
			// The request reaches the bus, which does it; its answer
			// never leaves this node.
			proxy.ServeHTTP(httptest.NewRecorder(), r)
			n.dropped.Add(1)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	n.URL = srv.URL
	return n
}

// testLogger is where the proxies' complaints go: nowhere unless
// UNIBUS_TEST_LOG=debug.
func testLogger() *log.Logger {
	if os.Getenv("UNIBUS_TEST_LOG") == "debug" {
		return log.New(os.Stderr, "proxy: ", 0)
	}
	return log.New(io.Discard, "", 0)
}

// clusterClient returns a client of id that tries servers in turn.
func clusterClient(t testing.TB, id *identity.Identity, cfg client.Config, servers ...string) *client.Client {
	t.Helper()
	cfg.Servers, cfg.Identity, cfg.Logger = servers, id, testbus.Logger()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestServersParsed(t *testing.T) {
	t.Parallel()
	id := testbus.NewIdentity(t, "alice")
	tests := []struct {
		server  string
		servers []string
		want    []string
	}{
		{"", nil, []string{client.DefaultServer}},
		{"http://a:1/", nil, []string{"http://a:1"}},
		{"", []string{"http://a:1", " http://b:2 ", "http://a:1", ""}, []string{"http://a:1", "http://b:2"}},
		{"http://c:3", []string{"http://a:1", "http://c:3"}, []string{"http://c:3", "http://a:1"}},
	}
	for _, tt := range tests {
		c, err := client.New(client.Config{Server: tt.server, Servers: tt.servers, Identity: id})
		if err != nil {
			t.Fatalf("New(Server %q, Servers %q) = %v", tt.server, tt.servers, err)
		}
		if got := c.Servers(); strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("New(Server %q, Servers %q).Servers() = %q; want %q", tt.server, tt.servers, got, tt.want)
		}
	}
	if _, err := client.New(client.Config{Servers: []string{"http://a:1", "ftp://b"}, Identity: id}); err == nil || !strings.Contains(err.Error(), `"ftp://b"`) {
		t.Errorf("New with a bad second server = %v; want an error naming it", err)
	}
}

// TestFailoverMovesOnAndRemembers: a request goes past a node that is
// not there and one that is unavailable to one that answers, and the
// next request goes to that one first.
func TestFailoverMovesOnAndRemembers(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	id := bus.Identity(t, "alice", api.RoleAdmin)
	down, good := newNode(t, bus), newNode(t, bus)
	down.unavailable.Store(true)
	c := clusterClient(t, id, client.Config{}, "http://"+testnet.DeadAddr(t), down.URL, good.URL)
	if _, err := c.Me(ctxT(t)); err != nil {
		t.Fatalf("Me past a refused and an unavailable node = %v", err)
	}
	if down.hits.Load() != 1 || good.hits.Load() != 1 {
		t.Fatalf("hits: unavailable node %d, good node %d; want 1 and 1", down.hits.Load(), good.hits.Load())
	}
	for range 3 {
		if _, err := c.Rooms(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if down.hits.Load() != 1 || good.hits.Load() != 4 {
		t.Errorf("after three more requests: unavailable node hit %d times, good node %d; want 1 and 4 (the good node remembered)", down.hits.Load(), good.hits.Load())
	}
}

// TestFailoverKeepsRealAnswers: a node that answers with an error has
// answered; the request is not sent elsewhere.
func TestFailoverKeepsRealAnswers(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	id := bus.Identity(t, "alice", api.RoleMember)
	first, second := newNode(t, bus), newNode(t, bus)
	c := clusterClient(t, id, client.Config{}, first.URL, second.URL)
	if _, err := c.Room(ctxT(t), api.NewRoomID()); !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("Room(unknown) = %v; want not_found", err)
	}
	if _, err := c.Users(ctxT(t)); !api.IsCode(err, api.CodeForbidden) {
		t.Fatalf("Users as a member = %v; want forbidden", err)
	}
	if second.hits.Load() != 0 {
		t.Errorf("the second node got %d requests; want 0: refusals are answers", second.hits.Load())
	}
}

// TestFailoverWaitsOutUnavailability: when every node that is up says it
// is unavailable (a cluster electing a leader), the client tries again
// until one serves, within its Timeout.
func TestFailoverWaitsOutUnavailability(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	id := bus.Identity(t, "alice", api.RoleMember)
	a, b := newNode(t, bus), newNode(t, bus)
	a.unavailable.Store(true)
	b.failFirst.Store(2)
	c := clusterClient(t, id, client.Config{Timeout: 10 * time.Second}, a.URL, b.URL)
	if _, err := c.Me(ctxT(t)); err != nil {
		t.Fatalf("Me while a node comes back = %v", err)
	}
	if a.hits.Load() != 3 || b.hits.Load() != 3 {
		t.Errorf("hits %d and %d; want 3 rounds over both nodes", a.hits.Load(), b.hits.Load())
	}

	// Unavailable for longer than the Timeout: an error naming both, with
	// the code of their answer.
	b.unavailable.Store(true)
	c = clusterClient(t, id, client.Config{Timeout: time.Second}, a.URL, b.URL)
	start := time.Now()
	_, err := c.Me(ctxT(t))
	var ue *client.UnreachableError
	if !errors.As(err, &ue) || !api.IsCode(err, api.CodeUnavailable) || len(ue.Tried) != 2 {
		t.Fatalf("Me with every node unavailable = %v; want an UnreachableError of both nodes, code unavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Me with every node unavailable took %s; want about the Timeout, 1s", d)
	}
}

// TestUnreachableNamesTheNodesTried: the error of a request nobody
// answered says which nodes were tried and why, and comes within the
// Timeout even when a node never answers.
func TestUnreachableNamesTheNodesTried(t *testing.T) {
	t.Parallel()
	id := testbus.NewIdentity(t, "alice")
	refused, silent := testnet.DeadAddr(t), testnet.HungAddr(t)
	c := clusterClient(t, id, client.Config{Timeout: 2 * time.Second}, "http://"+refused, "http://"+silent)
	start := time.Now()
	_, err := c.Rooms(context.Background())
	took := time.Since(start)
	want := fmt.Sprintf("no node answered: %s (connection refused), %s (timeout)", refused, silent)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Rooms = %v; want %q…", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Rooms error %v does not unwrap to the refused connection", err)
	}
	if took < 1500*time.Millisecond || took > 4*time.Second {
		t.Errorf("Rooms failed after %s; want about the Timeout, 2s", took)
	}

	// A caller's deadline shorter than the Timeout is kept, and reported.
	c = clusterClient(t, id, client.Config{}, "http://"+silent)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = c.Rooms(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), silent+" (timeout)") {
		t.Errorf("Rooms with a 500ms deadline = %v; want the deadline, naming the silent node", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Rooms with a 500ms deadline took %s", took)
	}
}

// TestRetriedChangesThatCommittedSucceed: a node does a change and dies
// before answering; the client sends the change again to the next node,
// which refuses it (conflict: the room changed, by this very change, or
// the room id or user is taken), and the client finds its change done
// and reports success, once. Every attempt is signed anew: the bus
// enforces signatures and refuses a replayed request.
func TestRetriedChangesThatCommittedSucceed(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{Mode: membership.AuthEnforce})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	bobID, carolID := testbus.NewIdentity(t, "bob"), testbus.NewIdentity(t, "carol")
	dying, healthy := newNode(t, bus), newNode(t, bus)
	var dropNext atomic.Bool
	dying.drop = func(r *http.Request) bool { return r.Method != http.MethodGet && dropNext.Swap(false) }
	var alice *client.Client
	// Every change below is the dying node's last: a new client, which
	// asks it first, and its answer dropped.
	again := func() {
		alice = clusterClient(t, aliceID, client.Config{}, dying.URL, healthy.URL)
		dropNext.Store(true)
	}

	again()
	if _, err := alice.AddUser(ctxT(t), bobID.Public().Token(), false); err != nil {
		t.Fatalf("AddUser committed by a node that died = %v", err)
	}
	again()
	if _, err := alice.AddUser(ctxT(t), carolID.Public().Token(), false); err != nil {
		t.Fatalf("AddUser committed by a node that died = %v", err)
	}
	again()
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatalf("CreateRoom committed by a node that died = %v", err)
	}
	again()
	if _, err := alice.AddMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatalf("AddMember committed by a node that died = %v", err)
	}
	again()
	if _, err := alice.Rekey(ctxT(t), room.ID); err != nil {
		t.Fatalf("Rekey committed by a node that died = %v", err)
	}
	again()
	if _, err := alice.RemoveMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatalf("RemoveMember committed by a node that died = %v", err)
	}
	if _, err := alice.AddMember(ctxT(t), room.ID, "carol"); err != nil {
		t.Fatal(err)
	}

	// Each change happened once: the history is create, add, rekey,
	// remove, add, and the room went from epoch 1 to 3.
	v, err := alice.Verify(ctxT(t), room.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.HeadSeq != 5 || v.Epoch != 3 || len(v.Members) != 2 {
		t.Errorf("room after the retried changes: head %d, epoch %d, %d members; want 5, 3 and 2 (each change once)", v.HeadSeq, v.Epoch, len(v.Members))
	}
	users, err := alice.Users(ctxT(t))
	if err != nil || len(users) != 3 {
		t.Errorf("users after the retried registrations = %d (%v); want 3", len(users), err)
	}

	// Carol leaves: sent again, her removal of herself is refused as
	// from a non-member, which she is, by her own doing.
	carol := clusterClient(t, carolID, client.Config{}, dying.URL, healthy.URL)
	dropNext.Store(true)
	left, err := carol.LeaveRoom(ctxT(t), room.ID)
	if err != nil {
		t.Fatalf("LeaveRoom committed by a node that died = %v", err)
	}
	if left.ID != room.ID || left.Epoch != 4 || len(left.Members) != 1 {
		t.Errorf("LeaveRoom = room %s at epoch %d with %d members; want %s at 4 with alice alone", left.ID, left.Epoch, len(left.Members), room.ID)
	}
	// Alice deletes the room: sent again, the deletion finds no room.
	again()
	if _, err := alice.DeleteRoom(ctxT(t), room.ID); err != nil {
		t.Fatalf("DeleteRoom committed by a node that died = %v", err)
	}
	if rooms, err := alice.Rooms(ctxT(t)); err != nil || len(rooms) != 0 {
		t.Errorf("alice's rooms after the deletion = %d (%v); want none", len(rooms), err)
	}
	if n := dying.dropped.Load(); n != 8 {
		t.Errorf("the dying node dropped %d answers; want 8", n)
	}

	// A refusal that follows no lost attempt is the request's own: a
	// user registered before is not taken for this registration.
	if _, err := alice.AddUser(ctxT(t), carolID.Public().Token(), false); !api.IsCode(err, api.CodeConflict) {
		t.Errorf("AddUser of a registered user, not sent again = %v; want conflict", err)
	}
}

// TestRetriedUploadIsStoredOnce: a file upload whose answer is lost is
// sent again, from the file's start, to the next node; the file is sent
// once.
func TestRetriedUploadIsStoredOnce(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	dying, healthy := newNode(t, bus), newNode(t, bus)
	var dropNext atomic.Bool
	dying.drop = func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/blobs") && dropNext.Swap(false) }
	alice := clusterClient(t, aliceID, client.Config{}, dying.URL, healthy.URL)
	room, err := alice.CreateRoom(ctxT(t), "files", false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "report.txt")
	content := bytes.Repeat([]byte("the quarterly figures\n"), 5000)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	// The room creation went to the dying node, which is still alive:
	// the upload goes there first and its answer is dropped.
	dropNext.Store(true)
	id, err := alice.SendFile(ctxT(t), room.ID, path, "see attached", nil)
	if err != nil {
		t.Fatalf("SendFile with the first upload's answer lost = %v", err)
	}
	if dying.dropped.Load() != 1 {
		t.Fatalf("dropped uploads = %d; want 1", dying.dropped.Load())
	}
	var got bytes.Buffer
	if _, err := alice.FetchFile(ctxT(t), room.ID, id, &got, nil); err != nil || !bytes.Equal(got.Bytes(), content) {
		t.Fatalf("FetchFile = %d bytes, %v; want the %d bytes sent", got.Len(), err, len(content))
	}
	if msgs := readAll(t, alice, room.ID); len(msgs) != 1 {
		t.Errorf("history holds %d messages; want 1", len(msgs))
	}
}

// TestSendFailsWithinTimeoutWhenHistoryIsDown: with the history stream
// gone, a send is not acknowledged; it fails after the client's Timeout
// with an error that says so.
func TestSendFailsWithinTimeoutWhenHistoryIsDown(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	alice := clusterClient(t, aliceID, client.Config{Timeout: time.Second}, bus.HTTP.URL)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room.ID, "before")
	if err := bus.JS.DeleteStream(ctxT(t), api.HistoryStream); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = alice.Send(context.Background(), room.ID, client.Message{Text: "into the void"})
	took := time.Since(start)
	if !errors.Is(err, client.ErrNotStored) || !strings.Contains(err.Error(), "within 1s") {
		t.Fatalf("Send with the history gone = %v; want ErrNotStored after 1s", err)
	}
	if took < 900*time.Millisecond || took > 4*time.Second {
		t.Errorf("Send with the history gone failed after %s; want about the Timeout, 1s", took)
	}
}
