package busauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// refusedWait is how long a request on a subject the connection may not
// publish on is given before it counts as refused: the server drops it and
// reports a permissions violation asynchronously, so the request times out.
const refusedWait = 500 * time.Millisecond

// quietWait is how long a subscription must stay silent to count as having
// received nothing.
const quietWait = 200 * time.Millisecond

func TestRoomPermissionsList(t *testing.T) {
	t.Parallel()
	u := newUser(t)
	a, b := api.NewRoomID(), api.NewRoomID()
	p := busauth.RoomPermissions(u.pub, []string{a, b, a, "bad.id", ">", "", "*"})
	inbox := subjects.InboxPrefix(u.pub) + ".>"
	wantPub := []string{
		inbox,
		"$JS.FC.UNIBUS_HISTORY.*.*",
		"unibus.room." + a + ".msg",
		"unibus.room." + b + ".msg",
	}
	wantSub := []string{inbox, "unibus.room." + a + ".event", "unibus.room." + b + ".event"}
	if !slices.Equal(p.Publish.Allow, wantPub) {
		t.Errorf("publish allow = %q; want %q", p.Publish.Allow, wantPub)
	}
	if !slices.Equal(p.Subscribe.Allow, wantSub) {
		t.Errorf("subscribe allow = %q; want %q", p.Subscribe.Allow, wantSub)
	}
	if p.Response != nil || len(p.Publish.Deny) != 0 || len(p.Subscribe.Deny) != 0 {
		t.Errorf("unexpected deny or response permissions: %+v", p)
	}

	// A user with no room still gets its inbox and nothing of any room.
	p = busauth.RoomPermissions(u.pub, nil)
	if !slices.Equal(p.Subscribe.Allow, []string{inbox}) || !slices.Equal(p.Publish.Allow, []string{inbox, "$JS.FC.UNIBUS_HISTORY.*.*"}) {
		t.Errorf("RoomPermissions(no rooms) = pub %q sub %q; want the inbox and flow-control answers only", p.Publish.Allow, p.Subscribe.Allow)
	}

	for _, key := range []string{"", "U", ">", "x.>", "SUAB", "N" + u.pub[1:], u.pub + ".>"} {
		p := busauth.RoomPermissions(key, []string{a})
		if p.Publish.Allow == nil || len(p.Publish.Allow) != 0 || p.Subscribe.Allow == nil || len(p.Subscribe.Allow) != 0 ||
			!slices.Equal(p.Publish.Deny, []string{">"}) || !slices.Equal(p.Subscribe.Deny, []string{">"}) {
			t.Errorf("RoomPermissions(%q) = %+v; want everything denied", key, p)
		}
	}
}

// TestRoomPermissions runs a real embedded server that gives each user
// RoomPermissions: a member of room A uses A as the SDK does and is refused
// every way into room B, with nothing of its attempts reaching B.
func TestRoomPermissions(t *testing.T) {
	bus := newRoomBus(t)
	roomA, roomB := api.NewRoomID(), api.NewRoomID()
	subjA, subjB := api.RoomSubject(roomA), api.RoomSubject(roomB)
	svc := bus.connect(t, bus.service)
	hist := createHistory(t, svc.js)
	alice, bob := bus.member(t, roomA), bus.member(t, roomB)

	// Room B's traffic as its member sees it, to check at the end that
	// nothing of alice's reached it.
	bc := bus.connect(t, bob)
	bobSeen := newCollector(t, bc, "unibus.room."+roomB+".>")
	secret, err := svc.js.Publish(ctxT(t, 5*time.Second), subjB, []byte("secret of B"))
	if err != nil {
		t.Fatal(err)
	}
	bSeq := secret.Sequence

	t.Run("member", func(t *testing.T) {
		ac := bus.connect(t, alice)
		ack, err := ac.js.Publish(ctxT(t, 5*time.Second), subjA, []byte("hello A from alice"), jetstream.WithMsgID("m1"))
		if err != nil {
			t.Fatalf("JetStream publish to own room: %v", err)
		}
		if ack.Stream != api.HistoryStream {
			t.Fatalf("ack stream = %q; want %q", ack.Stream, api.HistoryStream)
		}

		// History through a reader membershipd makes: a push consumer of
		// the room delivering into alice's inbox, with flow control.
		deliver := subjects.InboxPrefix(alice.pub) + ".r.test"
		rsub, err := ac.SubscribeSync(deliver)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.js.CreatePushConsumer(ctxT(t, 5*time.Second), api.HistoryStream, jetstream.ConsumerConfig{
			Name: "reader-a", DeliverSubject: deliver, FilterSubject: subjA, AckPolicy: jetstream.AckNonePolicy,
			FlowControl: true, IdleHeartbeat: time.Second, MemoryStorage: true,
		}); err != nil {
			t.Fatal(err)
		}
		msg, err := rsub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("read own room's history through a reader: %v", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Subject != subjA || string(msg.Data) != "hello A from alice" || md.NumPending != 0 || md.Sequence.Stream != ack.Sequence {
			t.Fatalf("history = %s %q (pending %d); want only alice's message", msg.Subject, msg.Data, md.NumPending)
		}
		// Flow-control requests are answered on "$JS.FC.…": allowed.
		if err := ac.Publish("$JS.FC."+api.HistoryStream+".reader-a.abcd", nil); err != nil {
			t.Fatal(err)
		}

		// Room events, and the JetStream account info.
		ev, err := ac.SubscribeSync(api.RoomEventSubject(roomA))
		if err != nil {
			t.Fatal(err)
		}
		if err := ac.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := svc.Publish(api.RoomEventSubject(roomA), []byte(`{"room":"`+roomA+`","epoch":2}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := ev.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("room event: %v", err)
		}
		select {
		case err := <-ac.errs:
			t.Fatalf("member's own traffic reported %v", err)
		default:
		}
	})

	t.Run("refused", func(t *testing.T) {
		subscriptions := []string{
			subjA, // live messages come through a reader, never a subscription
			"unibus.room." + roomA + ".>",
			subjB,
			api.RoomEventSubject(roomB),
			"unibus.room." + roomB + ".>",
			"unibus.room.*.msg",
			"unibus.room.*.event",
			"unibus.room.>",
			"unibus.>",
			">",
			"_INBOX.>",
			subjects.InboxPrefix(bob.pub) + ".>",
			"$JS.API.>",
			"$JS.EVENT.>",
			"$JS.ACK.>",
			"$SYS.>",
		}
		for _, subject := range subscriptions {
			t.Run("subscribe "+subject, func(t *testing.T) {
				t.Parallel()
				ac := bus.connect(t, alice)
				sub, err := ac.SubscribeSync(subject)
				if err != nil {
					t.Fatalf("subscribe %q: %v", subject, err)
				}
				ac.wantViolation(t, "subscribe", subject)
				// Traffic on B, and on the subject itself when it can be
				// published on, must not reach the refused subscription.
				if err := svc.Publish(api.RoomEventSubject(roomB), []byte("event of B")); err != nil {
					t.Fatal(err)
				}
				if !strings.ContainsAny(subject, "*>") {
					if err := svc.Publish(subject, []byte("for "+subject)); err != nil {
						t.Fatal(err)
					}
				}
				if err := svc.Flush(); err != nil {
					t.Fatal(err)
				}
				if m, err := sub.NextMsg(quietWait); err == nil {
					t.Fatalf("refused subscription %q received %s %q", subject, m.Subject, m.Data)
				}
			})
		}

		publishes := []string{
			subjB,
			api.RoomEventSubject(roomA),
			api.RoomEventSubject(roomB),
			"$JS.FC.OTHER.c.abcd",
			"unibus.room." + roomB + ".other",
			subjects.InboxPrefix(bob.pub) + ".x",
			"_INBOX.x",
			"$JS.ACK." + api.HistoryStream + ".x.1.1.1.1.0",
		}
		for _, subject := range publishes {
			t.Run("publish "+subject, func(t *testing.T) {
				t.Parallel()
				ac := bus.connect(t, alice)
				if err := ac.Publish(subject, []byte("from alice")); err != nil {
					t.Fatal(err)
				}
				ac.wantViolation(t, "publish", subject)
			})
		}

		t.Run("JetStream publish to B", func(t *testing.T) {
			t.Parallel()
			ac := bus.connect(t, alice)
			ctx, cancel := context.WithTimeout(context.Background(), refusedWait)
			defer cancel()
			if _, err := ac.js.Publish(ctx, subjB, []byte("from alice")); !isTimeout(err) {
				t.Fatalf("JetStream publish to B: %v; want a timeout", err)
			}
			ac.wantViolation(t, "JetStream publish", subjB)
		})

		consumers := []struct {
			name string
			cfg  jetstream.ConsumerConfig
			subj string // the create subject nats.go sends
		}{
			{"filter A", jetstream.ConsumerConfig{Name: "c0", FilterSubject: subjA}, "CREATE.UNIBUS_HISTORY.c0." + subjA},
			{"durable on A", jetstream.ConsumerConfig{Durable: "c6", FilterSubject: subjA}, "CREATE.UNIBUS_HISTORY.c6." + subjA},
			{"push on A into B's events", jetstream.ConsumerConfig{Name: "c7", FilterSubject: subjA, DeliverSubject: api.RoomEventSubject(roomB)}, "CREATE.UNIBUS_HISTORY.c7." + subjA},
			{"push on A into bob's keys", jetstream.ConsumerConfig{Name: "c8", FilterSubject: subjA, DeliverSubject: api.KeysSubject(bob.pub)}, "CREATE.UNIBUS_HISTORY.c8." + subjA},
			{"filter B", jetstream.ConsumerConfig{Name: "c1", FilterSubject: subjB}, "CREATE.UNIBUS_HISTORY.c1." + subjB},
			{"no filter", jetstream.ConsumerConfig{Name: "c2"}, "CREATE.UNIBUS_HISTORY.c2"},
			{"filters A and B", jetstream.ConsumerConfig{Name: "c3", FilterSubjects: []string{subjA, subjB}}, "CREATE.UNIBUS_HISTORY.c3"},
			{"filter wildcard", jetstream.ConsumerConfig{Name: "c4", FilterSubject: "unibus.room.*.msg"}, "CREATE.UNIBUS_HISTORY.c4.unibus.room.*.msg"},
			{"durable on B", jetstream.ConsumerConfig{Durable: "c5", FilterSubject: subjB}, "CREATE.UNIBUS_HISTORY.c5." + subjB},
		}
		for _, tc := range consumers {
			t.Run("consumer "+tc.name, func(t *testing.T) {
				t.Parallel()
				ac := bus.connect(t, alice)
				ctx, cancel := context.WithTimeout(context.Background(), refusedWait)
				defer cancel()
				if c, err := ac.js.CreateOrUpdateConsumer(ctx, api.HistoryStream, tc.cfg); !isTimeout(err) {
					t.Fatalf("create consumer %s: %v, %v; want a timeout", tc.name, c, err)
				}
				ac.wantViolation(t, "consumer "+tc.name, "$JS.API.CONSUMER."+tc.subj)
			})
		}
		t.Run("ordered consumer on A", func(t *testing.T) {
			t.Parallel()
			ac := bus.connect(t, alice)
			ctx, cancel := context.WithTimeout(context.Background(), refusedWait)
			defer cancel()
			if _, err := ac.js.OrderedConsumer(ctx, api.HistoryStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjA}}); !isTimeout(err) {
				t.Fatalf("ordered consumer on A: %v; want a timeout", err)
			}
			ac.wantViolation(t, "ordered consumer", "."+subjA+`"`)
		})
		t.Run("ordered consumer on B", func(t *testing.T) {
			t.Parallel()
			ac := bus.connect(t, alice)
			ctx, cancel := context.WithTimeout(context.Background(), refusedWait)
			defer cancel()
			if _, err := ac.js.OrderedConsumer(ctx, api.HistoryStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjB}}); !isTimeout(err) {
				t.Fatalf("ordered consumer on B: %v; want a timeout", err)
			}
			ac.wantViolation(t, "ordered consumer", "."+subjB+`"`)
		})

		// Requests on JetStream API subjects the grant leaves out.
		requests := []struct {
			name, subject string
			body          any
		}{
			{"account info", "$JS.API.INFO", nil},
			{"direct get last of A", "$JS.API.DIRECT.GET.UNIBUS_HISTORY." + subjA, nil},
			{"pull the reader of A", "$JS.API.CONSUMER.MSG.NEXT.UNIBUS_HISTORY.reader-a", map[string]any{"batch": 10}},
			{"inspect the reader of A", "$JS.API.CONSUMER.INFO.UNIBUS_HISTORY.reader-a", nil},
			{"delete the reader of A", "$JS.API.CONSUMER.DELETE.UNIBUS_HISTORY.reader-a", nil},
			{"direct get last of B", "$JS.API.DIRECT.GET.UNIBUS_HISTORY." + subjB, nil},
			{"direct get by body", "$JS.API.DIRECT.GET.UNIBUS_HISTORY", map[string]any{"last_by_subj": subjB}},
			{"direct get by sequence", "$JS.API.DIRECT.GET.UNIBUS_HISTORY", map[string]any{"seq": bSeq}},
			{"stream info with subjects", "$JS.API.STREAM.INFO.UNIBUS_HISTORY", map[string]any{"subjects_filter": ">"}},
			{"stream message get", "$JS.API.STREAM.MSG.GET.UNIBUS_HISTORY", map[string]any{"seq": bSeq}},
			{"stream names", "$JS.API.STREAM.NAMES", nil},
			{"stream list", "$JS.API.STREAM.LIST", nil},
			{"stream create", "$JS.API.STREAM.CREATE.MINE", map[string]any{"name": "MINE", "subjects": []string{"unibus.room.*.msg"}}},
			{"stream update", "$JS.API.STREAM.UPDATE.UNIBUS_HISTORY", map[string]any{"name": "UNIBUS_HISTORY", "subjects": []string{">"}}},
			{"stream purge", "$JS.API.STREAM.PURGE.UNIBUS_HISTORY", map[string]any{"filter": subjB}},
			{"stream delete", "$JS.API.STREAM.DELETE.UNIBUS_HISTORY", nil},
			{"stream message delete", "$JS.API.STREAM.MSG.DELETE.UNIBUS_HISTORY", map[string]any{"seq": bSeq}},
			{"consumer names", "$JS.API.CONSUMER.NAMES.UNIBUS_HISTORY", nil},
			{"consumer list", "$JS.API.CONSUMER.LIST.UNIBUS_HISTORY", nil},
			{"legacy ephemeral consumer", "$JS.API.CONSUMER.CREATE.UNIBUS_HISTORY", map[string]any{"stream_name": "UNIBUS_HISTORY", "config": map[string]any{}}},
			{"legacy durable consumer", "$JS.API.CONSUMER.DURABLE.CREATE.UNIBUS_HISTORY.d", map[string]any{"stream_name": "UNIBUS_HISTORY", "config": map[string]any{"durable_name": "d"}}},
			{"system account", "$SYS.REQ.SERVER.PING", nil},
		}
		for _, tc := range requests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				ac := bus.connect(t, alice)
				var body []byte
				if tc.body != nil {
					body = mustJSON(t, tc.body)
				}
				m, err := ac.Request(tc.subject, body, refusedWait)
				if err == nil {
					t.Fatalf("%s answered %q (headers %v); want it refused", tc.subject, m.Data, m.Header)
				}
				if !errors.Is(err, nats.ErrTimeout) {
					t.Fatalf("%s: %v; want a timeout", tc.subject, err)
				}
				ac.wantViolation(t, tc.name, tc.subject)
			})
		}

	})

	// Nothing of alice's reached room B: not its subscribers, not its history.
	if err := svc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, m := range bobSeen.all() {
		if strings.Contains(string(m.Data), "alice") {
			t.Errorf("room B received %s %q", m.Subject, m.Data)
		}
	}
	for _, m := range historyOf(t, svc, subjB) {
		if strings.Contains(string(m.Data()), "alice") {
			t.Errorf("room B history holds %q", m.Data())
		}
	}
	first, err := hist.GetMsg(ctxT(t, 5*time.Second), bSeq)
	if err != nil || string(first.Data) != "secret of B" {
		t.Errorf("room B's first message = %v, %v; want it unchanged", first, err)
	}
	if _, err := hist.Info(ctxT(t, 5*time.Second)); err != nil {
		t.Errorf("history stream after the attempts: %v", err)
	}
}

type roomBus struct {
	url     string
	service user

	mu    sync.Mutex
	rooms map[string][]string
}

func newRoomBus(t *testing.T) *roomBus {
	t.Helper()
	b := &roomBus{service: newUser(t), rooms: map[string][]string{}}
	auth := busauth.NewNkeyAuthenticator(func(key string) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		_, ok := b.rooms[key]
		return ok || key == b.service.pub
	})
	auth.Permissions = func(key string) *server.Permissions {
		if key == b.service.pub {
			return nil
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		return busauth.RoomPermissions(key, b.rooms[key])
	}
	b.url = embeddednats.ClientURL(startAuthNATS(t, auth))
	return b
}

// member registers a fresh user belonging to rooms.
func (b *roomBus) member(t *testing.T, rooms ...string) user {
	t.Helper()
	u := newUser(t)
	b.mu.Lock()
	b.rooms[u.pub] = rooms
	b.mu.Unlock()
	return u
}

// busConn is a user's connection that records the asynchronous errors the
// server reports (permissions violations).
type busConn struct {
	*nats.Conn
	js   jetstream.JetStream
	errs chan error
}

// connect dials as u with its per-user inbox prefix, as the SDK does.
func (b *roomBus) connect(t *testing.T, u user) *busConn {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := dial(b.url, u.option(),
		nats.CustomInboxPrefix(subjects.InboxPrefix(u.pub)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &busConn{Conn: nc, js: js, errs: errs}
}

// wantViolation waits for the server to report a permissions violation
// whose text contains subject (quoted, unless it is a fragment that starts
// with a dot).
func (c *busConn) wantViolation(t *testing.T, what, subject string) {
	t.Helper()
	want := subject
	if !strings.HasPrefix(subject, ".") {
		want = `"` + subject + `"`
	}
	deadline := time.After(5 * time.Second)
	var seen []error
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return
			}
			seen = append(seen, err)
		case <-deadline:
			t.Fatalf("%s: no permissions violation reported for %s (saw %v)", what, want, seen)
		}
	}
}

// collector keeps every message of a subscription.
type collector struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func newCollector(t *testing.T, c *busConn, subject string) *collector {
	t.Helper()
	col := &collector{}
	sub, err := c.Subscribe(subject, func(m *nats.Msg) {
		col.mu.Lock()
		col.msgs = append(col.msgs, m)
		col.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return col
}

func (col *collector) all() []*nats.Msg {
	col.mu.Lock()
	defer col.mu.Unlock()
	return slices.Clone(col.msgs)
}

// createHistory creates the history stream with membershipd's settings
// that matter here (subjects, direct get).
func createHistory(t *testing.T, js jetstream.JetStream) jetstream.Stream {
	t.Helper()
	st, err := js.CreateStream(ctxT(t, 10*time.Second), jetstream.StreamConfig{
		Name:        api.HistoryStream,
		Subjects:    []string{api.HistorySubjects},
		Storage:     jetstream.FileStorage,
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
	})
	if err != nil {
		t.Fatalf("create history stream: %v", err)
	}
	return st
}

// historyOf reads every message of subject in the history stream.
func historyOf(t *testing.T, c *busConn, subject string) []jetstream.Msg {
	t.Helper()
	cons, err := c.js.OrderedConsumer(ctxT(t, 5*time.Second), api.HistoryStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read history of %s: %v", subject, err)
		}
		msgs = append(msgs, m)
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.NumPending == 0 {
			return msgs
		}
	}
}

// isTimeout reports whether err is a request that got no answer in time.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
