package busauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
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
		"$JS.API.INFO",
		"$JS.API.CONSUMER.MSG.NEXT.UNIBUS_HISTORY.*",
		"$JS.API.CONSUMER.INFO.UNIBUS_HISTORY.*",
		"$JS.API.CONSUMER.DELETE.UNIBUS_HISTORY.*",
		"unibus.room." + a + ".msg",
		"$JS.API.CONSUMER.CREATE.UNIBUS_HISTORY.*.unibus.room." + a + ".msg",
		"$JS.API.DIRECT.GET.UNIBUS_HISTORY.unibus.room." + a + ".msg",
		"unibus.room." + b + ".msg",
		"$JS.API.CONSUMER.CREATE.UNIBUS_HISTORY.*.unibus.room." + b + ".msg",
		"$JS.API.DIRECT.GET.UNIBUS_HISTORY.unibus.room." + b + ".msg",
	}
	wantSub := []string{inbox, "unibus.room." + a + ".>", "unibus.room." + b + ".>"}
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
	if !slices.Equal(p.Subscribe.Allow, []string{inbox}) || len(p.Publish.Allow) != 5 {
		t.Errorf("RoomPermissions(no rooms) = pub %q sub %q; want the inbox and the consumer grants only", p.Publish.Allow, p.Subscribe.Allow)
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

		// The last sequence, as the SDK reads it.
		m, err := ac.Request("$JS.API.DIRECT.GET."+api.HistoryStream+"."+subjA, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("direct get of own room: %v", err)
		}
		if got := m.Header.Get(jetstream.SequenceHeader); got != strconv.FormatUint(ack.Sequence, 10) || string(m.Data) != "hello A from alice" {
			t.Fatalf("direct get = seq %q %q; want seq %d and alice's message", got, m.Data, ack.Sequence)
		}

		// History through an ordered consumer with one filter subject.
		cons, err := ac.js.OrderedConsumer(ctxT(t, 5*time.Second), api.HistoryStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjA}})
		if err != nil {
			t.Fatalf("ordered consumer on own room: %v", err)
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read own room's history: %v", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Subject() != subjA || string(msg.Data()) != "hello A from alice" || md.NumPending != 0 {
			t.Fatalf("history = %s %q (pending %d); want only alice's message", msg.Subject(), msg.Data(), md.NumPending)
		}
		info, err := cons.Info(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		if err := ac.js.DeleteConsumer(ctxT(t, 5*time.Second), api.HistoryStream, info.Name); err != nil {
			t.Fatalf("delete own consumer: %v", err)
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
		if _, err := ac.js.AccountInfo(ctxT(t, 5*time.Second)); err != nil {
			t.Fatalf("JetStream account info: %v", err)
		}
		select {
		case err := <-ac.errs:
			t.Fatalf("member's own traffic reported %v", err)
		default:
		}
	})

	t.Run("refused", func(t *testing.T) {
		subscriptions := []string{
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
			api.RoomEventSubject(roomB),
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

		// Subjects the grant does cover, with a request body asking for
		// more: the server holds the body to the subject.
		t.Run("direct get own room asking for B's sequence", func(t *testing.T) {
			t.Parallel()
			ac := bus.connect(t, alice)
			for _, body := range []any{map[string]any{"seq": bSeq}, map[string]any{"next_by_subj": subjB}, map[string]any{"last_by_subj": subjB}, map[string]any{"multi_last": []string{subjB}}} {
				m, err := ac.Request("$JS.API.DIRECT.GET.UNIBUS_HISTORY."+subjA, mustJSON(t, body), 5*time.Second)
				if err != nil {
					t.Fatalf("direct get %v: %v", body, err)
				}
				if st := m.Header.Get("Status"); st != "408" || len(m.Data) != 0 {
					t.Fatalf("direct get %v = status %q, %q; want 408 and no message", body, st, m.Data)
				}
			}
		})
		t.Run("consumer on own room's subject filtering B", func(t *testing.T) {
			t.Parallel()
			ac := bus.connect(t, alice)
			for _, tc := range []struct {
				cfg     map[string]any
				errCode int
			}{
				{map[string]any{"name": "x1", "filter_subject": subjB}, 10131},
				{map[string]any{"name": "x1", "filter_subject": "unibus.room.*.msg"}, 10131},
				{map[string]any{"name": "x1", "filter_subjects": []string{subjA, subjB}}, 10137},
				{map[string]any{"name": "x1"}, 10131},
			} {
				req := map[string]any{"stream_name": api.HistoryStream, "config": tc.cfg}
				m, err := ac.Request("$JS.API.CONSUMER.CREATE.UNIBUS_HISTORY.x1."+subjA, mustJSON(t, req), 5*time.Second)
				if err != nil {
					t.Fatalf("create %v: %v", tc.cfg, err)
				}
				if code := apiErrCode(t, m.Data); code != tc.errCode {
					t.Fatalf("create %v: JetStream error %d (%s); want %d", tc.cfg, code, m.Data, tc.errCode)
				}
			}
			if _, err := svc.js.Consumer(ctxT(t, 5*time.Second), api.HistoryStream, "x1"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Fatalf("consumer x1 after refused creates: %v; want not found", err)
			}
		})
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

// TestRoomPermissionsConsumerByName checks what RoomPermissions' doc says a
// non-member can do with MSG.NEXT, INFO and DELETE on any consumer name:
// it has no way to learn a member's consumer name, and with the name it can
// read, inspect and delete that consumer.
func TestRoomPermissionsConsumerByName(t *testing.T) {
	bus := newRoomBus(t)
	roomA, roomB := api.NewRoomID(), api.NewRoomID()
	subjB := api.RoomSubject(roomB)
	svc := bus.connect(t, bus.service)
	createHistory(t, svc.js)
	alice, bob := bus.member(t, roomA), bus.member(t, roomB)
	for _, text := range []string{"B one", "B two"} {
		if _, err := svc.js.Publish(ctxT(t, 5*time.Second), subjB, []byte(text)); err != nil {
			t.Fatal(err)
		}
	}

	// Bob reads B the way the SDK does.
	bc := bus.connect(t, bob)
	cons, err := bc.js.OrderedConsumer(ctxT(t, 5*time.Second), api.HistoryStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjB}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || string(m.Data()) != "B one" {
		t.Fatalf("bob's first message: %v", err)
	}
	name := cons.CachedInfo().Name

	ac := bus.connect(t, alice)
	// No way to learn the name: listing, the API traffic, advisories and
	// bob's inbox are all refused.
	for _, subject := range []string{"$JS.API.CONSUMER.NAMES.UNIBUS_HISTORY", "$JS.API.CONSUMER.LIST.UNIBUS_HISTORY"} {
		if _, err := ac.Request(subject, nil, refusedWait); !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("%s: %v; want refused", subject, err)
		}
		ac.wantViolation(t, "list consumers", subject)
	}
	for _, subject := range []string{"$JS.API.>", "$JS.EVENT.>", "$JS.ACK.>", subjects.InboxPrefix(bob.pub) + ".>"} {
		if _, err := ac.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		ac.wantViolation(t, "subscribe", subject)
	}

	// With the name: read, inspect, delete. This is the exposure the
	// RoomPermissions doc states; if NATS ever ties pulls to the creator,
	// this test fails and the doc must change.
	inbox := ac.NewInbox()
	sub, err := ac.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	next := "$JS.API.CONSUMER.MSG.NEXT.UNIBUS_HISTORY." + name
	if err := ac.PublishRequest(next, inbox, mustJSON(t, map[string]any{"batch": 1, "expires": int64(2 * time.Second)})); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("non-member pull with a known consumer name: %v", err)
	}
	if m.Subject != subjB || string(m.Data) != "B two" {
		t.Fatalf("non-member pull = %s %q; want B's second message", m.Subject, m.Data)
	}
	info, err := ac.Request("$JS.API.CONSUMER.INFO.UNIBUS_HISTORY."+name, nil, 5*time.Second)
	if err != nil || !strings.Contains(string(info.Data), subjB) {
		t.Fatalf("non-member consumer info = %v, %v; want B's consumer config", info, err)
	}
	if err := ac.js.DeleteConsumer(ctxT(t, 5*time.Second), api.HistoryStream, name); err != nil {
		t.Fatalf("non-member delete with a known name: %v", err)
	}
	// A wrong guess gets only "not found".
	if err := ac.js.DeleteConsumer(ctxT(t, 5*time.Second), api.HistoryStream, "guess"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("delete of a guessed name: %v; want not found", err)
	}
}

// TestRoomPermissionsPushConsumer checks the limit RoomPermissions' doc
// states for a member: a push consumer on its own room delivers that room's
// messages to a subject of its choice, but never into another room's
// history.
func TestRoomPermissionsPushConsumer(t *testing.T) {
	bus := newRoomBus(t)
	roomA, roomB := api.NewRoomID(), api.NewRoomID()
	subjA, subjB := api.RoomSubject(roomA), api.RoomSubject(roomB)
	svc := bus.connect(t, bus.service)
	hist := createHistory(t, svc.js)
	alice, bob := bus.member(t, roomA), bus.member(t, roomB)
	ac, bc := bus.connect(t, alice), bus.connect(t, bob)
	if _, err := ac.js.Publish(ctxT(t, 5*time.Second), subjA, []byte("A by alice")); err != nil {
		t.Fatal(err)
	}
	events, err := bc.SubscribeSync(api.RoomEventSubject(roomB))
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}

	push := func(name, deliver string) []byte {
		t.Helper()
		req := map[string]any{"stream_name": api.HistoryStream, "config": map[string]any{
			"name": name, "filter_subject": subjA, "deliver_subject": deliver, "ack_policy": "none",
		}}
		m, err := ac.Request("$JS.API.CONSUMER.CREATE.UNIBUS_HISTORY."+name+"."+subjA, mustJSON(t, req), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return m.Data
	}
	// Into B's history: refused as a delivery cycle.
	if resp := push("p1", subjB); apiErrCode(t, resp) != 10081 {
		t.Fatalf("push consumer delivering to B's history subject: %s; want error 10081", resp)
	}
	// Onto B's event subject: delivered (the documented limit).
	if resp := push("p2", api.RoomEventSubject(roomB)); apiErrCode(t, resp) != 0 {
		t.Fatalf("push consumer delivering to B's events: %s", resp)
	}
	m, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no copy delivered to B's events: %v; the RoomPermissions doc overstates the risk, update it", err)
	}
	if string(m.Data) != "A by alice" || m.Subject != subjA {
		t.Fatalf("B's event subscriber got %s %q; want the copy of A's message under A's subject", m.Subject, m.Data)
	}
	if n := subjectCount(t, hist, subjB); n != 0 {
		t.Fatalf("room B history holds %d messages; want 0", n)
	}
}

// roomBus is an embedded server whose nkey authenticator gives each user
// RoomPermissions for the rooms listed in a map the test controls. The
// service user has full permissions, as membershipd's own connection does.
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

// subjectCount is how many messages the history holds on subject.
func subjectCount(t *testing.T, st jetstream.Stream, subject string) uint64 {
	t.Helper()
	info, err := st.Info(ctxT(t, 5*time.Second), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
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

// apiErrCode returns the JetStream error code of an API response, 0 for
// success.
func apiErrCode(t *testing.T, data []byte) int {
	t.Helper()
	var resp struct {
		Error *struct {
			ErrCode int `json:"err_code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		t.Fatalf("JetStream response %q: %v", data, err)
	}
	if resp.Error == nil {
		return 0
	}
	return resp.Error.ErrCode
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

// TestRoomPermissionsGuessableConsumerName shows why consumer names must
// come from a strong random source: a member of room A that sees alice's
// JetStream publishes in A learns the process-wide nuid in their reply
// subject, and from it guesses the default name of alice's ordered
// consumer on room B, which it can then pull from. With a name prefix from
// subjects.NewConsumerPrefix the same search finds nothing.
func TestRoomPermissionsGuessableConsumerName(t *testing.T) {
	bus := newRoomBus(t)
	roomA, roomB := api.NewRoomID(), api.NewRoomID()
	subjA, subjB := api.RoomSubject(roomA), api.RoomSubject(roomB)
	svc := bus.connect(t, bus.service)
	createHistory(t, svc.js)
	if _, err := svc.js.Publish(ctxT(t, 5*time.Second), subjB, []byte("secret of B")); err != nil {
		t.Fatal(err)
	}
	alice, mallory := bus.member(t, roomA, roomB), bus.member(t, roomA)
	mc := bus.connect(t, mallory)
	watch, err := mc.SubscribeSync(subjA)
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, random := range []bool{false, true} {
		ac := bus.connect(t, alice)
		if _, err := ac.js.Publish(ctxT(t, 5*time.Second), subjA, []byte("hello A")); err != nil {
			t.Fatal(err)
		}
		m, err := watch.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// _INBOX_<alice>.<nuid>.<token>
		seen := strings.Split(m.Reply, ".")
		if len(seen) != 3 || len(seen[1]) != 22 {
			t.Fatalf("reply subject %q; want the response inbox of alice's connection", m.Reply)
		}
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjB}}
		if random {
			cfg.NamePrefix = subjects.NewConsumerPrefix()
		}
		cons, err := ac.js.OrderedConsumer(ctxT(t, 5*time.Second), api.HistoryStream, cfg)
		if err != nil {
			t.Fatal(err)
		}
		actual := cons.CachedInfo().Name

		found, data := guessConsumer(t, mc, seen[1])
		switch {
		case !random && found != actual:
			t.Fatalf("nuid-derived consumer name %q not guessed (guess %q); the RoomPermissions doc overstates the risk", actual, found)
		case random && found != "":
			t.Fatalf("random consumer name guessed: %q", found)
		}
		if found == "" {
			continue
		}
		// The guessed name gives a non-member room B's history.
		if data == nil {
			reply := mc.NewInbox()
			sub, err := mc.SubscribeSync(reply)
			if err != nil {
				t.Fatal(err)
			}
			if err := mc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.UNIBUS_HISTORY."+found, reply, []byte(`{"batch":1,"expires":2000000000}`)); err != nil {
				t.Fatal(err)
			}
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			data = m.Data
		}
		if string(data) != "secret of B" {
			t.Fatalf("pull through the guessed name gave %q; want B's message", data)
		}
	}
}

// nuidDigits is the alphabet of github.com/nats-io/nuid.
const nuidDigits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// guessConsumer searches the ordered consumer names that follow the nuid
// seen in the same process: same 12-character prefix, a sequence advanced
// by k steps of a constant increment in [33, 333), and the suffix "_1". It
// asks for each with a no-wait pull, which a missing consumer answers with
// "no responders", and returns the name that answered otherwise, with the
// message it delivered, or "".
func guessConsumer(t *testing.T, c *busConn, seen string) (string, []byte) {
	t.Helper()
	pre, seq := seen[:12], int64(0)
	for _, ch := range seen[12:] {
		seq = seq*62 + int64(strings.IndexRune(nuidDigits, ch))
	}
	var names []string
	tried := map[int64]bool{}
	for k := int64(1); k <= 64; k++ {
		for inc := int64(33); inc < 333; inc++ {
			n := seq + k*inc
			if tried[n] {
				continue
			}
			tried[n] = true
			var digits [10]byte
			for i := 9; i >= 0; i-- {
				digits[i] = nuidDigits[n%62]
				n /= 62
			}
			names = append(names, pre+string(digits[:])+"_1")
		}
	}
	prefix := c.NewInbox()
	const window = 2000 // requests in flight
	answers := make(chan *nats.Msg, 2*window)
	sub, err := c.ChanSubscribe(prefix+".*", answers)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	body := []byte(`{"batch":1,"no_wait":true}`)
	sent, answered := 0, 0
	for answered < len(names) {
		for sent < len(names) && sent-answered < window {
			if err := c.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.UNIBUS_HISTORY."+names[sent], prefix+"."+strconv.Itoa(sent), body); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		select {
		case m := <-answers:
			answered++
			if m.Header.Get("Status") == "503" {
				continue
			}
			// A stored message comes under its own subject, with the
			// consumer's name in its ack reply subject; a status (no
			// message) under the request's reply subject.
			if name, ok := strings.CutPrefix(m.Reply, "$JS.ACK."+api.HistoryStream+"."); ok {
				name, _, _ = strings.Cut(name, ".")
				return name, m.Data
			}
			i, err := strconv.Atoi(strings.TrimPrefix(m.Subject, prefix+"."))
			if err != nil {
				t.Fatalf("unexpected answer %s %v %q", m.Subject, m.Header, m.Data)
			}
			return names[i], nil
		case <-time.After(10 * time.Second):
			t.Fatalf("guessing stalled after %d of %d answers", answered, len(names))
		}
	}
	return "", nil
}
