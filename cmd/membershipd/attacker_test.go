package main

import (
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// attackWait is how long a request that must go unanswered, or a
// subscription that must stay silent, is given. The attempts of one
// phase run together, so a phase waits about this long once.
const attackWait = 300 * time.Millisecond

// attackMark is in the payload of every publish an attacker makes that
// the history stream must not store.
const attackMark = "attack"

// attack is one thing an attacker sends on the bus with its own nkey.
type attack struct {
	name string
	// op is "request" (must go unanswered), "publish" or "subscribe"
	// (queue, when set, makes it a queue subscription).
	op      string
	subject string
	reply   string // publish: the reply subject it names
	queue   string
	body    string
	// allowed: the grant lets it through (flow-control answers; a
	// member's own room's subject); it must still get no answer, deliver
	// nothing and change nothing. Otherwise a permissions violation for
	// the subject is wanted.
	allowed bool
	// stores is how many messages the history stream takes from it: a
	// member's publish to its own room.
	stores int
}

// attackTarget is what an attacker knows: its own key and reader, the
// room, alice's key and the name of alice's reader.
type attackTarget struct {
	self, alice string // user keys
	room        string
	member      bool   // the attacker is a member of room now
	selfReader  string // the attacker's own reader, "" if none
	aliceReader string
}

// attacks returns everything an attacker t tries: every JetStream API
// request a grant could let through (consumers made, updated, pulled,
// inspected, deleted; stream reads, snapshots, purges, sources), the
// system account's account-level requests, subscriptions to what others
// receive, publishes to what others read, flow-control answers with a
// reply subject, and, while a member, its own room's publishes naming
// the JetStream API and the control plane as reply subject.
func attacks(t attackTarget) []attack {
	const h = api.HistoryStream
	msg := api.RoomSubject(t.room)
	own := subjects.InboxPrefix(t.self) + ".attack."
	alices := subjects.InboxPrefix(t.alice) + ".attack."
	create := func(cfg map[string]any) string { return jsonBody(map[string]any{"stream_name": h, "config": cfg}) }
	push := func(name, deliver string) map[string]any {
		cfg := map[string]any{"deliver_subject": deliver, "filter_subject": msg, "deliver_policy": "all", "ack_policy": "none"}
		if name != "" {
			cfg["name"] = name
		}
		return cfg
	}
	req := func(name, subject, body string) attack {
		return attack{name: name, op: "request", subject: subject, body: body}
	}
	as := []attack{
		// Consumers of the attacker's own: ephemeral, named, durable,
		// push into its own inbox or alice's, pull, ordered.
		req("ephemeral push into own inbox", "$JS.API.CONSUMER.CREATE."+h, create(push("", own+"push"))),
		req("ephemeral push into alice's inbox", "$JS.API.CONSUMER.CREATE."+h, create(push("", alices+"push"))),
		req("named push into own inbox", "$JS.API.CONSUMER.CREATE."+h+".atk-push."+msg, create(push("atk-push", own+"named"))),
		req("named push into alice's inbox", "$JS.API.CONSUMER.CREATE."+h+".atk-alice."+msg, create(push("atk-alice", alices+"named"))),
		req("named pull", "$JS.API.CONSUMER.CREATE."+h+".atk-pull."+msg, create(map[string]any{"name": "atk-pull", "filter_subject": msg, "ack_policy": "explicit"})),
		req("named pull of the whole stream", "$JS.API.CONSUMER.CREATE."+h+".atk-all", create(map[string]any{"name": "atk-all", "ack_policy": "none"})),
		req("durable pull", "$JS.API.CONSUMER.DURABLE.CREATE."+h+".atk-durable", create(map[string]any{"durable_name": "atk-durable", "filter_subject": msg, "ack_policy": "explicit"})),
		req("durable push into own inbox", "$JS.API.CONSUMER.DURABLE.CREATE."+h+".atk-dpush", create(map[string]any{"durable_name": "atk-dpush", "deliver_subject": own + "durable", "filter_subject": msg})),
		req("ordered push (nats.go's legacy ordered consumer)", "$JS.API.CONSUMER.CREATE."+h, create(map[string]any{
			"deliver_subject": own + "ordered", "filter_subject": msg, "deliver_policy": "all", "ack_policy": "none", "max_deliver": 1,
			"flow_control": true, "idle_heartbeat": int64(5 * time.Second), "mem_storage": true, "num_replicas": 1,
		})),
		req("ordered pull (jetstream.OrderedConsumer)", "$JS.API.CONSUMER.CREATE."+h+".atk-ordered."+msg, create(map[string]any{
			"name": "atk-ordered", "filter_subject": msg, "deliver_policy": "all", "ack_policy": "none", "max_deliver": -1,
			"mem_storage": true, "num_replicas": 1, "inactive_threshold": int64(5 * time.Minute),
		})),
		// alice's reader, redirected into the attacker's inbox.
		req("alice's reader pushed into own inbox", "$JS.API.CONSUMER.CREATE."+h+"."+t.aliceReader, create(push(t.aliceReader, own+"hijack"))),
		req("consumer list", "$JS.API.CONSUMER.LIST."+h, ""),
		req("consumer names", "$JS.API.CONSUMER.NAMES."+h, ""),
		// Reading the stream itself.
		req("direct get by sequence", "$JS.API.DIRECT.GET."+h, jsonBody(map[string]any{"seq": 1})),
		req("direct get last of the room", "$JS.API.DIRECT.GET."+h, jsonBody(map[string]any{"last_by_subj": msg})),
		req("direct get a batch of every room", "$JS.API.DIRECT.GET."+h, jsonBody(map[string]any{"multi_last": []string{api.HistorySubjects}, "batch": 100})),
		req("direct get last by subject token", "$JS.API.DIRECT.GET."+h+"."+msg, ""),
		req("stream message get by sequence", "$JS.API.STREAM.MSG.GET."+h, jsonBody(map[string]any{"seq": 1})),
		req("stream message get last of the room", "$JS.API.STREAM.MSG.GET."+h, jsonBody(map[string]any{"last_by_subj": msg})),
		req("stream info with subjects", "$JS.API.STREAM.INFO."+h, jsonBody(map[string]any{"subjects_filter": ">"})),
		req("account info", "$JS.API.INFO", ""),
		req("stream names", "$JS.API.STREAM.NAMES", ""),
		req("stream list", "$JS.API.STREAM.LIST", ""),
		req("stream snapshot into own inbox", "$JS.API.STREAM.SNAPSHOT."+h, jsonBody(map[string]any{"deliver_subject": own + "snapshot"})),
		req("a stream sourcing the history", "$JS.API.STREAM.CREATE.ATTACK", jsonBody(map[string]any{"name": "ATTACK", "sources": []any{map[string]any{"name": h}}})),
		req("a stream mirroring the history", "$JS.API.STREAM.CREATE.ATTACKM", jsonBody(map[string]any{"name": "ATTACKM", "mirror": map[string]any{"name": h}})),
		// Changing it.
		req("stream purge of the room", "$JS.API.STREAM.PURGE."+h, jsonBody(map[string]any{"filter": msg})),
		req("stream message delete", "$JS.API.STREAM.MSG.DELETE."+h, jsonBody(map[string]any{"seq": 1})),
		req("stream update", "$JS.API.STREAM.UPDATE."+h, jsonBody(map[string]any{"name": h, "subjects": []string{">"}})),
		req("stream delete", "$JS.API.STREAM.DELETE."+h, ""),
		// The account-level services of the system account, imported
		// into every account: other users' connections and subscriptions.
		req("connections of the account", "$SYS.REQ.ACCOUNT.PING.CONNZ", jsonBody(map[string]any{"subscriptions": true})),
		req("own user info", "$SYS.REQ.USER.INFO", ""),

		// What others receive.
		{name: "alice's inbox", op: "subscribe", subject: subjects.InboxPrefix(t.alice) + ".>"},
		{name: "alice's inbox as a queue", op: "subscribe", subject: subjects.InboxPrefix(t.alice) + ".>", queue: "q"},
		{name: "everything", op: "subscribe", subject: ">"},
		{name: "the room's live messages", op: "subscribe", subject: msg},
		{name: "every room's live messages", op: "subscribe", subject: api.HistorySubjects},
		{name: "acks", op: "subscribe", subject: "$JS.ACK.>"},
		{name: "flow control", op: "subscribe", subject: "$JS.FC.>"},
		{name: "the JetStream API", op: "subscribe", subject: "$JS.API.>"},
		{name: "advisories", op: "subscribe", subject: "$JS.EVENT.>"},
		{name: "the default inbox", op: "subscribe", subject: "_INBOX.>"},

		// What others read, and the control plane.
		{name: "a forged room event naming alice", op: "publish", subject: api.RoomEventSubject(t.room),
			body: jsonBody(api.RoomEvent{Room: t.room, Epoch: 1, Users: []string{t.alice}, Revoked: []string{t.alice}})},
		{name: "alice's key deliveries", op: "publish", subject: api.KeysSubject(t.alice), body: jsonBody(api.KeyDelivery{Room: t.room})},
		{name: "alice's inbox", op: "publish", subject: alices + "inbox", body: attackMark},
		{name: "an ack of alice's reader", op: "publish", subject: "$JS.ACK." + h + "." + t.aliceReader + ".1.1.1.0.0", body: attackMark},
		{name: "the room's KV document", op: "publish", subject: "$KV.unibus_rooms." + t.room, body: `{"name":"` + attackMark + `"}`},
		{name: "own KV user record", op: "publish", subject: "$KV.unibus_users.u." + t.self, body: `{"role":"admin","name":"` + attackMark + `"}`},
		{name: "a blob's metadata", op: "publish", subject: "$O." + blobstore.DefaultBucket + ".M.x", body: attackMark},
		{name: "flow control of another stream", op: "publish", subject: "$JS.FC.OTHER.x.y", body: attackMark},
		{name: "flow control with a token too many", op: "publish", subject: "$JS.FC." + h + ".x.y.z", body: attackMark},

		// Flow-control answers are the grant's: JetStream answers none and
		// acts only on the latest request of a consumer. (Where no
		// consumer listens, the server tells the publisher so, with a 503
		// on its own reply subject.)
		{name: "flow control of no consumer, with a reply", op: "publish", subject: "$JS.FC." + h + ".x.y", reply: own + "fc", allowed: true},
		{name: "flow control of alice's reader, with a reply", op: "publish", subject: "$JS.FC." + h + "." + t.aliceReader + ".abcd", reply: own + "fc", allowed: true},
		{name: "flow control of alice's reader, replying into her inbox", op: "publish", subject: "$JS.FC." + h + "." + t.aliceReader + ".abcd",
			reply: alices + "fc", allowed: true},
	}
	if t.selfReader != "" {
		as = append(as,
			req("own reader pulled", "$JS.API.CONSUMER.MSG.NEXT."+h+"."+t.selfReader, jsonBody(map[string]any{"batch": 10, "no_wait": true})),
			req("own reader inspected", "$JS.API.CONSUMER.INFO."+h+"."+t.selfReader, ""),
			req("own reader deleted", "$JS.API.CONSUMER.DELETE."+h+"."+t.selfReader, ""),
			req("own reader widened to every room", "$JS.API.CONSUMER.CREATE."+h+"."+t.selfReader,
				create(map[string]any{"name": t.selfReader, "deliver_subject": own + "widened", "ack_policy": "none"})),
			attack{name: "flow control of own reader, with a reply", op: "publish", subject: "$JS.FC." + h + "." + t.selfReader + ".abcd", reply: own + "fc", allowed: true},
		)
	}
	as = append(as,
		req("alice's reader pulled", "$JS.API.CONSUMER.MSG.NEXT."+h+"."+t.aliceReader, jsonBody(map[string]any{"batch": 10, "expires": int64(time.Second)})),
		req("alice's reader inspected", "$JS.API.CONSUMER.INFO."+h+"."+t.aliceReader, ""),
		req("alice's reader paused", "$JS.API.CONSUMER.PAUSE."+h+"."+t.aliceReader, jsonBody(map[string]any{"pause_until": "2100-01-01T00:00:00Z"})),
		req("alice's reader deleted", "$JS.API.CONSUMER.DELETE."+h+"."+t.aliceReader, ""),
	)
	if !t.member {
		as = append(as,
			attack{name: "the room's messages", op: "publish", subject: msg, reply: own + "ack", body: attackMark},
			attack{name: "the room's events", op: "subscribe", subject: api.RoomEventSubject(t.room)},
		)
		return as
	}
	// A member publishes to its room, naming as reply subject, where
	// JetStream sends its ack with the account's rights, the JetStream
	// API (requests that would purge, delete, or make a consumer), the
	// control plane and the room's events. The stream stores the messages;
	// the ack ({"stream":…,"seq":…}) changes nothing there. See
	// docs/security.md on acks sent where a member may not publish.
	for _, reply := range []string{
		"$JS.API.STREAM.PURGE." + h,
		"$JS.API.STREAM.MSG.DELETE." + h,
		"$JS.API.STREAM.DELETE." + h,
		"$JS.API.CONSUMER.DELETE." + h + "." + t.aliceReader,
		"$JS.API.CONSUMER.CREATE." + h,
		"$KV.unibus_users.u." + t.self,
		api.RoomEventSubject(t.room),
	} {
		as = append(as, attack{name: "own room's message with the ack sent to " + reply, op: "publish", subject: msg, reply: reply, body: "ack probe", allowed: true, stores: 1})
	}
	return as
}

func jsonBody(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// violation is the text of the permissions violation NATS reports for a.
func (a attack) violation() string {
	if a.op == "subscribe" {
		return fmt.Sprintf("Subscription to %q", a.subject)
	}
	return fmt.Sprintf("Publish to %q", a.subject)
}

// attackRun is one attacker's connection in one phase and what it tried.
type attackRun struct {
	who   string
	cases []attack
	nc    *nats.Conn
	errs  chan error
	// subs are the subscriptions it made, by case; inbox is where
	// nothing may arrive in its own inbox: all of it, or while it is a
	// member (its reader delivers there) the subjects its attacks aim at.
	subs  map[int]*nats.Subscription
	inbox *nats.Subscription
	wg    sync.WaitGroup
}

// launch connects as id and makes every attempt in cases, the requests
// at once, each in its own goroutine. member says whether id is a member
// of the room.
func launch(t *testing.T, e *enforceBus, id *identity.Identity, cases []attack, member bool) *attackRun {
	t.Helper()
	r := &attackRun{who: id.Name(), cases: cases, errs: make(chan error, 4*len(cases)+16), subs: map[int]*nats.Subscription{}}
	r.nc = e.rawConn(t, id, r.errs)
	// The requests report into t: they end before it does.
	t.Cleanup(r.wg.Wait)
	var err error
	watched := subjects.InboxPrefix(id.UserKey()) + ".>"
	if member {
		watched = subjects.InboxPrefix(id.UserKey()) + ".attack.>"
	}
	if r.inbox, err = r.nc.SubscribeSync(watched); err != nil {
		t.Fatal(err)
	}
	for i, a := range cases {
		switch a.op {
		case "subscribe":
			if r.subs[i], err = r.nc.QueueSubscribeSync(a.subject, a.queue); err != nil {
				t.Fatalf("%s: subscribe %s: %v", a.name, a.subject, err)
			}
		case "publish":
			if err := r.nc.PublishMsg(&nats.Msg{Subject: a.subject, Reply: a.reply, Data: []byte(a.body)}); err != nil {
				t.Fatalf("%s: publish %s: %v", a.name, a.subject, err)
			}
		case "request":
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				m, err := r.nc.Request(a.subject, []byte(a.body), attackWait)
				switch {
				case err == nil:
					t.Errorf("%s's %s (%s %s) was answered: %s %q", r.who, a.name, a.subject, a.body, m.Header, m.Data)
				case !errors.Is(err, nats.ErrTimeout):
					// No responders would mean the request went out.
					t.Errorf("%s's %s (%s): %v; want no answer", r.who, a.name, a.subject, err)
				}
			}()
		}
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// stores is how many messages r's attempts put in the history stream.
func (r *attackRun) stores() int {
	n := 0
	for _, a := range r.cases {
		n += a.stores
	}
	return n
}

// check waits for r's requests and checks, once the phase's traffic has
// had time to arrive, that every refused attempt was reported as a
// permissions violation, that no allowed one was, and that no
// subscription of r received anything.
func (r *attackRun) check(t *testing.T) {
	t.Helper()
	r.wg.Wait()
	want := map[string][]string{} // violation text: the cases that want it
	refused := 0
	for _, a := range r.cases {
		if !a.allowed {
			want[a.violation()] = append(want[a.violation()], a.name)
			refused++
		}
	}
	t.Logf("%s: %d attempts, %d to be refused", r.who, len(r.cases), refused)
	var unexpected []error
	deadline := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case err := <-r.errs:
			matched := false
			for text, names := range want {
				if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), text) {
					if want[text] = names[1:]; len(want[text]) == 0 {
						delete(want, text)
					}
					matched = true
					break
				}
			}
			if !matched {
				unexpected = append(unexpected, err)
			}
		case <-deadline:
			for text, names := range want {
				t.Errorf("%s's %q: no permissions violation for %s: the bus let it through", r.who, names, text)
			}
			want = nil
		}
	}
	for {
		select {
		case err := <-r.errs:
			unexpected = append(unexpected, err)
			continue
		default:
		}
		break
	}
	for _, err := range unexpected {
		t.Errorf("%s's attempts: unexpected error %v", r.who, err)
	}
	for i, sub := range r.subs {
		for _, m := range received(sub) {
			t.Errorf("%s's refused subscription to %s (%s) received %s %q (headers %v)", r.who, r.cases[i].subject, r.cases[i].name, m.Subject, m.Data, m.Header)
		}
	}
	for _, m := range received(r.inbox) {
		if m.Header.Get("Status") == "503" {
			continue // the server's notice that nobody listened to a publish
		}
		t.Errorf("%s's inbox received %s %q (headers %v)", r.who, m.Subject, m.Data, m.Header)
	}
	r.nc.Close()
}

// busState is what an attack must not change: the history stream's
// messages, the bus account's streams and the history's consumers as
// membershipd's service connection sees them, and the control plane's
// streams (KV store only).
type busState struct {
	msgs, last uint64
	streams    []string
	consumers  []string
	control    map[string]uint64
}

func snapshotBus(t *testing.T, svc, control jetstream.JetStream) busState {
	t.Helper()
	st, err := svc.Stream(ctxT(t), api.HistoryStream)
	if err != nil {
		t.Fatalf("history stream: %v", err)
	}
	info, err := st.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	s := busState{msgs: info.State.Msgs, last: info.State.LastSeq}
	for name := range svc.StreamNames(ctxT(t)).Name() {
		s.streams = append(s.streams, name)
	}
	names := st.ConsumerNames(ctxT(t))
	for name := range names.Name() {
		s.consumers = append(s.consumers, name)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(s.streams)
	slices.Sort(s.consumers)
	if control != nil {
		s.control = controlSeqs(t, control)
	}
	return s
}

// nextSeq returns the stream sequence of the next data message of a
// reader's subscription, answering heartbeats and flow control, or 0 if
// none comes within d.
func nextSeq(t *testing.T, nc *nats.Conn, sub *nats.Subscription, d time.Duration) uint64 {
	t.Helper()
	m := nextData(t, nc, sub, d)
	if m == nil {
		return 0
	}
	md, err := m.Metadata()
	if err != nil {
		t.Fatalf("a reader delivered %s %q, not a JetStream message: %v", m.Subject, m.Data, err)
	}
	return md.Sequence.Stream
}

// received empties sub of what it holds and returns it, the server's
// no-responders notices (which NextMsg returns as an error) included, as
// messages with Status 503.
func received(sub *nats.Subscription) []*nats.Msg {
	var msgs []*nats.Msg
	for {
		m, err := sub.NextMsg(time.Millisecond)
		switch {
		case err == nil:
			msgs = append(msgs, m)
		case errors.Is(err, nats.ErrNoResponders):
			msgs = append(msgs, &nats.Msg{Subject: sub.Subject, Header: nats.Header{"Status": []string{"503"}}})
		default:
			return msgs
		}
	}
}

// TestEnforceAttackerRequestsAreRefusedInEveryPhase is the attacker's
// side of the enforce data plane: with only their own nkeys, bob (in
// alice's room, then removed from it through the API, then revoked
// through the API) and carol (a user in no room, revoked at the end on
// the host with `membershipd user revoke`) send every NATS and JetStream
// request their grants might let through (see attacks), with raw nats.go
// connections, in each phase. Each refused attempt must be reported as a
// permissions violation and go unanswered; what the grant allows (flow
// control answers, a member's own room) must answer nothing, deliver
// nothing and change nothing. Around the attempts, the history stream's
// messages, the bus account's streams, the history's consumers and (KV
// store) the control plane's streams are the same except for the
// messages the phase sends legitimately; alice's reader still delivers
// and her connection is untouched; nothing reaches the attackers' inboxes
// but, while bob is a member, his own reader, which stops with his
// removal. A revoked user cannot connect at all, and its open connection
// is closed.
//
// Two things the grant lets through are pinned as harmless rather than
// refused: a flow-control answer (the server acts on none but the latest
// request of a consumer, and answers nothing; only where no consumer
// listens does it send the publisher a 503 on its own reply subject), and
// a member's publish to its own room naming another subject as reply,
// where JetStream sends its ack with the account's rights (NATS cannot
// restrict reply subjects; docs/security.md): aimed at the JetStream API,
// the ack purges, deletes and creates nothing.
//
// The attempts of a phase run at once, so that each phase waits about
// attackWait once (about 2 s a store); both stores run, in parallel,
// since the control plane they differ in is one of the things an attack
// must not reach.
func TestEnforceAttackerRequestsAreRefusedInEveryPhase(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store ...string) {
		e := startEnforce(t, store...)
		carolID := testbus.NewIdentity(t, "carol")
		e.host(t, "seed", carolID.Public().Token())
		waitFor(t, 5*time.Second, "carol known", func() bool { return getMe(t, e.srv.URL, carolID) == http.StatusOK })
		room := e.opsRoom(t, "bob")
		send := func(t *testing.T, text string) {
			t.Helper()
			if _, err := e.alice.Send(ctxT(t), room.ID, client.Message{Text: text}); err != nil {
				t.Fatal(err)
			}
		}
		send(t, "before")
		svc := serviceJS(t, e)
		var control jetstream.JetStream
		if slices.Contains(store, "kv") {
			control = controlJetStream(t, e.info.NATSURL, filepath.Join(e.srv.Dir, "jetstream", controlKeyFile))
		}
		svcNC := svc.Conn()

		// alice, whom the attacks aim at: a reader of her own, and what
		// lands in her inbox where an attacker would aim.
		alice := e.liveConn(t, e.aliceID, nil)
		aliceSub, ard, status := openRawReader(t, e.srv.URL, alice, e.aliceID, room.ID)
		if status != http.StatusCreated {
			t.Fatalf("open alice's reader = %d", status)
		}
		aimed, err := alice.SubscribeSync(subjects.InboxPrefix(e.aliceID.UserKey()) + ".attack.>")
		if err != nil {
			t.Fatal(err)
		}
		// bob's reader, opened while he is a member, on a connection that
		// reconnects, as the SDK's does, when a change closes it.
		bob := e.liveConn(t, e.bobID, nil)
		bobSub, brd, status := openRawReader(t, e.srv.URL, bob, e.bobID, room.ID)
		if status != http.StatusCreated {
			t.Fatalf("open bob's reader = %d", status)
		}
		var carol *nats.Conn // carol's connection, open when she is revoked

		const (
			member  = "member"
			user    = "user" // active, not in the room
			revoked = "revoked"
		)
		phases := []struct {
			name       string
			enter      func(t *testing.T)
			bob, carol string
		}{
			{"bob a member", func(*testing.T) {}, member, user},
			{"bob removed through the API", func(t *testing.T) {
				if _, err := e.alice.RemoveMember(ctxT(t), room.ID, "bob"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, "bob's connection closed by his removal and reopened", func() bool {
					return bob.Stats().Reconnects > 0 && bob.IsConnected()
				})
				received(bobSub) // what his reader sent before it was deleted
				send(t, "after the removal")
			}, user, user},
			{"bob revoked through the API", func(t *testing.T) {
				if _, err := e.alice.RevokeUser(ctxT(t), "bob"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, "bob's connection closed by his revocation", func() bool { return !bob.IsConnected() })
				send(t, "after the revocation")
			}, revoked, user},
			{"carol revoked on the host", func(t *testing.T) {
				carol = e.liveConn(t, carolID, nil)
				e.host(t, "revoke", "carol")
				waitFor(t, 5*time.Second, "carol's connection closed by her revocation on the host", func() bool { return !carol.IsConnected() })
			}, revoked, revoked},
		}
		for _, ph := range phases {
			ok := t.Run(ph.name, func(t *testing.T) {
				ph.enter(t)
				wantReaders := 0
				if ph.bob == member {
					wantReaders = 1
				}
				if got := readersOf(t, svc, e.bobID.UserKey()); len(got) != wantReaders {
					t.Fatalf("bob holds readers %v; want %d", got, wantReaders)
				}
				if ph.bob != member {
					var refused api.Error
					deliver := subjects.InboxPrefix(e.bobID.UserKey()) + ".r." + subjects.NewConsumerPrefix()
					status := signedJSON(t, http.MethodPost, e.srv.URL+"/v1/rooms/"+room.ID+"/readers", e.bobID, api.ReaderRequest{Deliver: deliver}, &refused)
					if want := map[string]int{user: http.StatusNotFound, revoked: http.StatusForbidden}[ph.bob]; status != want {
						t.Errorf("bob opening a reader = %d %+v; want %d", status, refused, want)
					}
				}

				before := snapshotBus(t, svc, control)
				var runs []*attackRun
				stored := 1 // the traffic below
				for _, who := range []struct {
					id    *identity.Identity
					state string
				}{{e.bobID, ph.bob}, {carolID, ph.carol}} {
					if who.state == revoked {
						if nc, err := e.dial(who.id, nil); err == nil {
							nc.Close()
							t.Errorf("revoked %s connected to the bus", who.id.Name())
						} else if !errors.Is(err, nats.ErrAuthorization) {
							t.Errorf("revoked %s connecting: %v; want an authorization violation", who.id.Name(), err)
						}
						continue
					}
					target := attackTarget{self: who.id.UserKey(), alice: e.aliceID.UserKey(), room: room.ID, aliceReader: ard.Name}
					if who.id == e.bobID {
						target.selfReader = brd.Name // after his removal, the name of a reader deleted
					}
					target.member = who.state == member
					r := launch(t, e, who.id, attacks(target), target.member)
					stored += r.stores()
					runs = append(runs, r)
				}

				// Traffic that a refused subscription, or a consumer an
				// attacker made, would receive: alice's message, and the
				// service key's publishes where the subscriptions aim.
				send(t, "traffic")
				for _, s := range []string{
					api.RoomEventSubject(room.ID),
					subjects.InboxPrefix(e.aliceID.UserKey()) + ".probe",
					"$JS.ACK." + api.HistoryStream + ".probe.1.1.1.0.0",
					"$JS.FC." + api.HistoryStream + ".probe.x",
					"_INBOX.probe",
				} {
					if err := svcNC.Publish(s, []byte("probe")); err != nil {
						t.Fatal(err)
					}
				}
				if err := svcNC.Flush(); err != nil {
					t.Fatal(err)
				}

				var after busState
				deadline := time.Now().Add(3 * time.Second)
				for {
					after = snapshotBus(t, svc, control)
					if after.msgs >= before.msgs+uint64(stored) || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if after.msgs != before.msgs+uint64(stored) || after.last != before.last+uint64(stored) {
					t.Errorf("history: %d messages, last %d, then %d, last %d; want %d more, the phase's own", before.msgs, before.last, after.msgs, after.last, stored)
				}
				if !slices.Equal(after.streams, before.streams) || !slices.Equal(after.consumers, before.consumers) {
					t.Errorf("streams %q consumers %q, then streams %q consumers %q; want them unchanged", before.streams, before.consumers, after.streams, after.consumers)
				}
				if fmt.Sprint(after.control) != fmt.Sprint(before.control) {
					t.Errorf("control plane's streams %v, then %v; want them unchanged", before.control, after.control)
				}
				st, err := svc.Stream(ctxT(t), api.HistoryStream)
				if err != nil {
					t.Fatal(err)
				}
				for seq := before.last + 1; seq <= after.last; seq++ {
					if m, err := st.GetMsg(ctxT(t), seq); err == nil && strings.Contains(string(m.Data), attackMark) {
						t.Errorf("history message %d on %s is an attacker's: %q", seq, m.Subject, m.Data)
					}
				}

				// alice's reader delivers the traffic; bob's, while he is a
				// member only.
				if seq := waitSeq(t, alice, aliceSub, after.last); seq != after.last {
					t.Errorf("alice's reader delivered up to %d; want %d", seq, after.last)
				}
				if ph.bob == member {
					if seq := waitSeq(t, bob, bobSub, after.last); seq != after.last {
						t.Errorf("bob's reader delivered up to %d while a member; want %d", seq, after.last)
					}
				}
				time.Sleep(attackWait) // for anything that should not come
				if ph.bob != member {
					// Not even a heartbeat: the reader is gone.
					for _, m := range received(bobSub) {
						t.Errorf("bob's reader subject received %s %q (headers %v) after his removal", m.Subject, m.Data, m.Header)
					}
				}
				for _, m := range received(aimed) {
					t.Errorf("alice's inbox received %s %q (headers %v) where an attacker aimed", m.Subject, m.Data, m.Header)
				}
				for _, r := range runs {
					r.check(t)
				}
				if !alice.IsConnected() || alice.Stats().Reconnects != 0 {
					t.Errorf("alice's connection: connected %v, reconnects %d; want untouched", alice.IsConnected(), alice.Stats().Reconnects)
				}
				if ph.bob == revoked && bob.IsConnected() {
					t.Error("bob's connection is back after his revocation")
				}
				if ph.carol == revoked && carol.IsConnected() {
					t.Error("carol's connection is back after her revocation")
				}
			})
			if !ok {
				return
			}
		}
	})
}

// waitSeq reads a reader's subscription until it delivers stream
// sequence seq, and returns the last sequence it delivered (0: nothing
// within 5 s).
func waitSeq(t *testing.T, nc *nats.Conn, sub *nats.Subscription, seq uint64) uint64 {
	t.Helper()
	var got uint64
	deadline := time.Now().Add(5 * time.Second)
	for got < seq && time.Now().Before(deadline) {
		s := nextSeq(t, nc, sub, time.Until(deadline))
		if s == 0 {
			break
		}
		got = s
	}
	return got
}
