package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/readers"
	"github.com/enmanuel/unibus/pkg/reqsig"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// openRawReader asks the API, signed by id, for a reader of room
// delivering to a fresh subject of id's inbox that nc subscribes to first,
// as the SDK does. It returns the subscription and the API's answer.
func openRawReader(t testing.TB, base string, nc *nats.Conn, id *identity.Identity, room string) (*nats.Subscription, api.Reader, int) {
	t.Helper()
	deliver := subjects.InboxPrefix(id.UserKey()) + ".r." + subjects.NewConsumerPrefix()
	sub, err := nc.SubscribeSync(deliver)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var rd api.Reader
	status := signedJSON(t, http.MethodPost, base+"/v1/rooms/"+room+"/readers", id, api.ReaderRequest{Deliver: deliver}, &rd)
	return sub, rd, status
}

// signedJSON sends v as the JSON body of a request signed by id and
// decodes the answer, success or error, into out; it returns the status.
func signedJSON(t testing.TB, method, url string, id *identity.Identity, v, out any) int {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sig, err := reqsig.Sign(id, method, req.URL.RequestURI(), sha256.Sum256(body), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sig.String())
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode the answer: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

// nextData returns the next message of a reader's subscription that is
// not a heartbeat or flow-control request, answering those, or nil when
// none comes within d.
func nextData(t testing.TB, nc *nats.Conn, sub *nats.Subscription, d time.Duration) *nats.Msg {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		m, err := sub.NextMsg(left)
		if errors.Is(err, nats.ErrTimeout) {
			return nil
		}
		if err != nil {
			t.Fatalf("reader subscription: %v", err)
		}
		if m.Header.Get("Status") == "" {
			return m
		}
		if m.Reply != "" {
			nc.Publish(m.Reply, nil)
		}
	}
}

// serviceJS connects to the server's NATS with membershipd's own service
// key, as the host tools do, to look at what the bus holds.
func serviceJS(t testing.TB, e *enforceBus) jetstream.JetStream {
	t.Helper()
	return serviceJetStream(t, e.info.NATSURL, filepath.Join(e.srv.Dir, "jetstream"))
}

// readersOf lists the readers the history stream holds for user.
func readersOf(t testing.TB, js jetstream.JetStream, user string) []string {
	t.Helper()
	st, err := js.Stream(ctxT(t), api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	l := st.ListConsumers(ctxT(t))
	for info := range l.Info() {
		if info.Config.Metadata[readers.MetaUser] == user {
			names = append(names, info.Name)
		}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestEnforceReadPathIsMembershipdsAlone sends, as a raw nats.go client
// holding a member's nkey, the JetStream requests that used to let a
// member keep reading after its removal, and checks that each is refused,
// that the reader membershipd opens delivers the room to its owner only,
// and that a removal closes it at once.
func TestEnforceReadPathIsMembershipdsAlone(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store ...string) {
		e := startEnforce(t, store...)
		room := e.opsRoom(t, "bob")
		if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: "before"}); err != nil {
			t.Fatal(err)
		}
		carolID := testbus.NewIdentity(t, "carol")
		e.host(t, "seed", carolID.Public().Token())

		// While a member, bob tries to set up a durable consumer of his own.
		errs := make(chan error, 16)
		bob := e.liveConn(t, e.bobID, errs)
		bjs, err := jetstream.New(bob)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = bjs.CreateOrUpdateConsumer(ctx, api.HistoryStream, jetstream.ConsumerConfig{Durable: "bobs", FilterSubject: api.RoomSubject(room.ID)})
		cancel()
		if err == nil {
			t.Fatal("bob created a durable consumer of his room")
		}
		wantPermissionViolation(t, errs, "bob's durable consumer")

		// The reader membershipd opens for him reads the room.
		sub, rd, status := openRawReader(t, e.srv.URL, bob, e.bobID, room.ID)
		if status != http.StatusCreated || rd.Name == "" || rd.LastSeq == 0 {
			t.Fatalf("open a reader as bob = %d %+v; want 201 and a reader", status, rd)
		}
		if m := nextData(t, bob, sub, 5*time.Second); m == nil || m.Subject != api.RoomSubject(room.ID) {
			t.Fatalf("bob's reader delivered %v; want the room's message", m)
		}

		// Another user, with the reader's name, cannot pull from it,
		// inspect it or delete it.
		cerrs := make(chan error, 16)
		carol := e.liveConn(t, carolID, cerrs)
		for _, subj := range []string{
			"$JS.API.CONSUMER.MSG.NEXT." + api.HistoryStream + "." + rd.Name,
			"$JS.API.CONSUMER.INFO." + api.HistoryStream + "." + rd.Name,
			"$JS.API.CONSUMER.DELETE." + api.HistoryStream + "." + rd.Name,
		} {
			if _, err := carol.Request(subj, []byte(`{"batch":10}`), 500*time.Millisecond); err == nil {
				t.Errorf("carol's %s was answered", subj)
			}
			wantPermissionViolation(t, cerrs, "carol's "+subj)
		}
		// Nor open one on a room she is not in, nor one delivering into bob's
		// inbox.
		if _, _, status := openRawReader(t, e.srv.URL, carol, carolID, room.ID); status != http.StatusNotFound {
			t.Errorf("carol opening a reader of a room she is not in = %d; want 404", status)
		}
		var refused api.Error
		if status := signedJSON(t, http.MethodPost, e.srv.URL+"/v1/rooms/"+room.ID+"/readers", e.aliceID,
			api.ReaderRequest{Deliver: subjects.InboxPrefix(e.bobID.UserKey()) + ".r.x"}, &refused); status != http.StatusBadRequest {
			t.Errorf("alice opening a reader into bob's inbox = %d %v; want 400", status, refused)
		}

		// bob is removed: his reader is gone with the removal, and nothing
		// sent after it reaches him.
		svc := serviceJS(t, e)
		if got := readersOf(t, svc, e.bobID.UserKey()); len(got) != 1 {
			t.Fatalf("bob holds readers %v; want one", got)
		}
		if _, err := e.alice.RemoveMember(ctxT(t), room.ID, "bob"); err != nil {
			t.Fatal(err)
		}
		if got := readersOf(t, svc, e.bobID.UserKey()); len(got) != 0 {
			t.Errorf("bob's readers after his removal: %v; want none", got)
		}
		if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: "after the removal"}); err != nil {
			t.Fatal(err)
		}
		// The removal closed bob's connection; his reader subject, kept
		// across the reconnect by nats.go, must stay silent.
		bob2 := e.liveConn(t, e.bobID, nil)
		sub2, err := bob2.SubscribeSync(rd.Deliver)
		if err != nil {
			t.Fatal(err)
		}
		if m := nextData(t, bob2, sub2, time.Second); m != nil {
			t.Errorf("bob received %q after his removal", m.Data)
		}
		if _, _, status := openRawReader(t, e.srv.URL, bob2, e.bobID, room.ID); status != http.StatusNotFound {
			t.Errorf("bob opening a reader after his removal = %d; want 404", status)
		}
	})
}

// TestEnforceRevokedUsersReadersCloseWhateverTheSource revokes on the host,
// behind the API's back, and checks that the revoked user's reader is
// deleted within a sweep and delivers nothing sent after.
func TestEnforceRevokedUsersReadersCloseWhateverTheSource(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store ...string) {
		e := startEnforce(t, store...)
		room := e.opsRoom(t, "bob")
		if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: "before"}); err != nil {
			t.Fatal(err)
		}
		bob := e.liveConn(t, e.bobID, nil)
		sub, rd, status := openRawReader(t, e.srv.URL, bob, e.bobID, room.ID)
		if status != http.StatusCreated {
			t.Fatalf("open a reader = %d", status)
		}
		if m := nextData(t, bob, sub, 5*time.Second); m == nil {
			t.Fatal("bob's reader delivered nothing")
		}
		svc := serviceJS(t, e)
		e.host(t, "revoke", "bob")
		waitFor(t, readers.DefaultSweep+3*time.Second, "bob's reader deleted after his revocation on the host", func() bool {
			return len(readersOf(t, svc, e.bobID.UserKey())) == 0
		})
		if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: "after the revocation"}); err != nil {
			t.Fatal(err)
		}
		// An accomplice pulling by the reader's name finds nothing to pull:
		// the reader no longer exists.
		if _, err := svc.Consumer(ctxT(t), api.HistoryStream, rd.Name); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("bob's reader after his revocation: %v; want it gone", err)
		}
	})
}

// TestEnforceHostRevocationWindow measures how long a revoked user keeps
// being sent messages it can open: alice sends without pause through one
// long-lived stream while bob is revoked on the host, behind the API's
// back. membershipd tells the room, alice's next send rekeys bob out, and
// from then on every message is at an epoch bob holds no key of. The
// window, from the revocation to the first such message, is logged for
// docs/security.md; the test holds it to a generous bound.
func TestEnforceHostRevocationWindow(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store ...string) {
		e := startEnforce(t, store...)
		room := e.opsRoom(t, "bob")
		stream, err := e.alice.OpenStream(ctxT(t), room.ID)
		if err != nil {
			t.Fatal(err)
		}
		bobsEpoch := room.Epoch
		if r, err := e.alice.Room(ctxT(t), room.ID); err == nil {
			bobsEpoch = r.Epoch
		}
		stop := make(chan struct{})
		sent := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					sent <- stream.Flush(ctxT(t))
					return
				default:
				}
				if _, err := stream.Send(ctxT(t), client.Message{Text: "tick"}); err != nil {
					sent <- err
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		time.Sleep(300 * time.Millisecond)
		revoked := time.Now()
		e.host(t, "revoke", "bob")
		time.Sleep(3 * time.Second)
		close(stop)
		if err := <-sent; err != nil {
			t.Fatalf("alice's stream: %v", err)
		}

		var first time.Time // the first message bob cannot open
		var late []time.Time
		err = e.alice.Read(ctxT(t), room.ID, client.ReadOptions{}, func(m client.Received) error {
			if m.Err != nil {
				return m.Err
			}
			switch {
			case m.Epoch > bobsEpoch && first.IsZero():
				first = m.Time
			case m.Epoch <= bobsEpoch && !first.IsZero():
				late = append(late, m.Time)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if first.IsZero() {
			t.Fatal("alice never rekeyed bob out after his revocation on the host")
		}
		if len(late) > 0 {
			t.Errorf("%d messages at bob's epoch after the rekey", len(late))
		}
		window := first.Sub(revoked)
		t.Logf("host revocation to the first message bob cannot open: %s", window.Round(time.Millisecond))
		if window > 2*time.Second {
			t.Errorf("bob could open what alice sent for %s after his revocation; want it under 2s (poll %s, then one rekey)", window, revocationPoll)
		}
	})
}

// TestEnforceHostRevocationClosesEveryConnection opens more connections
// for one user than one listing of connections returns, revokes the user
// on the host, and checks that every one of them is closed.
func TestEnforceHostRevocationClosesEveryConnection(t *testing.T) {
	t.Parallel()
	const n = kickPage + 76 // 1,100
	// bob is in no room, so that no membership change closes what he
	// opens before the revocation does.
	e := startEnforce(t, "--max-connections-per-user", "2000")
	conns := make([]*nats.Conn, n)
	for i := range conns {
		conns[i] = e.rawConn(t, e.bobID, nil)
		if _, err := conns[i].SubscribeSync(subjects.InboxPrefix(e.bobID.UserKey()) + ".x"); err != nil {
			t.Fatal(err)
		}
	}
	for i, nc := range conns {
		if nc.IsClosed() {
			t.Fatalf("connection %d closed before the revocation", i)
		}
	}
	e.host(t, "revoke", "bob")
	waitFor(t, 10*time.Second, "every connection of the revoked user closed", func() bool {
		for _, nc := range conns {
			if !nc.IsClosed() {
				return false
			}
		}
		return true
	})
}

// TestEnforceCeilings holds one user to each per-user ceiling of the data
// plane and checks that what goes over is refused with a clear error.
func TestEnforceCeilings(t *testing.T) {
	t.Parallel()
	e := startEnforce(t, "--max-connections-per-user", "3", "--max-subscriptions", "8", "--max-readers", "2")

	// Connections: three, then refused. bob is in no room yet, so that no
	// membership change closes them meanwhile; they reconnect when his
	// addition below does.
	errs := make(chan error, 16)
	var conns []*nats.Conn
	for range 3 {
		conns = append(conns, e.liveConn(t, e.bobID, errs))
	}
	if nc, err := e.dial(e.bobID, nil); err == nil {
		nc.Close()
		t.Error("a fourth connection of bob's was admitted over --max-connections-per-user 3")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("fourth connection: %v; want an authorization violation", err)
	}
	conns[2].Close()
	waitFor(t, 5*time.Second, "a connection admitted again once one closed", func() bool {
		nc, err := e.dial(e.bobID, nil)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})

	// Subscriptions: eight on one connection, then refused.
	nc := conns[0]
	for i := range 9 {
		if _, err := nc.SubscribeSync(subjects.InboxPrefix(e.bobID.UserKey()) + ".s" + string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	waitFor(t, 5*time.Second, "the ninth subscription refused over --max-subscriptions 8", func() bool {
		for {
			select {
			case err := <-errs:
				if errors.Is(err, nats.ErrMaxSubscriptionsExceeded) {
					return true
				}
			default:
				return false
			}
		}
	})

	// Readers: two, then 429 saying what to do, on one connection made
	// once bob is in the room.
	for _, c := range conns {
		c.Close()
	}
	room := e.opsRoom(t, "bob")
	var rc *nats.Conn
	waitFor(t, 5*time.Second, "a connection of bob's in the room", func() bool {
		var err error
		rc, err = e.dial(e.bobID, nil, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		return err == nil
	})
	t.Cleanup(rc.Close)
	for range 2 {
		if _, _, status := openRawReader(t, e.srv.URL, rc, e.bobID, room.ID); status != http.StatusCreated {
			t.Fatalf("open a reader = %d; want 201", status)
		}
	}
	var refused api.Error
	deliver := subjects.InboxPrefix(e.bobID.UserKey()) + ".r.third"
	if status := signedJSON(t, http.MethodPost, e.srv.URL+"/v1/rooms/"+room.ID+"/readers", e.bobID, api.ReaderRequest{Deliver: deliver}, &refused); status != http.StatusTooManyRequests || refused.Code != api.CodeRateLimited {
		t.Errorf("a third reader = %d %+v; want 429 rate_limited", status, refused)
	}
}

// forEachStore runs fn against a server on each store: SQLite, and
// JetStream KV.
func forEachStore(t *testing.T, fn func(t *testing.T, store ...string)) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{{"sqlite", nil}, {"kv", []string{"--store", "kv"}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fn(t, tc.flags...)
		})
	}
}
