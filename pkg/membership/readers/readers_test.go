package readers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/readers"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// fixture is a history stream on an embedded server, a SQLite store with
// alice (a member of room) and bob (not), and a manager over both.
type fixture struct {
	js         jetstream.JetStream
	nc         *nats.Conn
	store      membership.Store
	m          *readers.Manager
	room       string
	alice, bob string
}

func newFixture(t *testing.T, maxPerUser int) *fixture {
	t.Helper()
	ns := testnats.Start(t, embeddednats.ServerConfig{Logger: testnats.Logger()})
	js := testnats.JetStream(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := membership.EnsureHistoryStream(ctx, js, membership.HistoryLimits{}); err != nil {
		t.Fatal(err)
	}
	st := teststore.TempSQLite(t)
	aliceID, alice := storetest.NewIdentity(t, "alice")
	bob := storetest.NewUser(t, "bob")
	storetest.CreateUsers(t, st, alice, bob)
	room := api.Room{ID: api.NewRoomID(), Name: "ops", Encrypted: true, Creator: alice.User}
	storetest.CreateRoom(t, st, aliceID, room)
	f := &fixture{js: js, nc: js.Conn(), store: st, room: room.ID, alice: alice.User, bob: bob.User}
	f.m = readers.New(readers.Config{JS: js, Members: st, MaxPerUser: maxPerUser, Logger: testnats.Logger()})
	return f
}

func (f *fixture) deliver(user string) string {
	return subjects.InboxPrefix(user) + ".r." + subjects.NewConsumerPrefix()
}

func (f *fixture) names(t *testing.T) map[string]bool {
	t.Helper()
	st, err := f.js.Stream(context.Background(), api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	l := st.ConsumerNames(context.Background())
	for n := range l.Name() {
		got[n] = true
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestOpenDeliversTheRoomToItsMember(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	ctx := context.Background()
	if _, err := f.js.Publish(ctx, api.RoomSubject(f.room), []byte("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.Publish(ctx, api.RoomSubject(api.NewRoomID()), []byte("another room")); err != nil {
		t.Fatal(err)
	}
	deliver := f.deliver(f.alice)
	sub, err := f.nc.SubscribeSync(deliver)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := f.m.Open(ctx, f.alice, f.room, deliver, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rd.LastSeq != 1 || rd.Deliver != deliver || rd.Name == "" {
		t.Errorf("Open = %+v; want last_seq 1 and the deliver subject", rd)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "one" || m.Subject != api.RoomSubject(f.room) {
		t.Fatalf("first delivery = %v, %v; want the room's message", m, err)
	}
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil && m.Header.Get("Status") == "" {
		t.Fatalf("the reader delivered %q of another room", m.Data)
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name, user, room, deliver, code string
	}{
		{"a non-member", f.bob, f.room, f.deliver(f.bob), api.CodeForbidden},
		{"another user's inbox", f.alice, f.room, f.deliver(f.bob), api.CodeInvalid},
		{"a room event subject", f.alice, f.room, api.RoomEventSubject(f.room), api.CodeInvalid},
		{"a keys subject", f.alice, f.room, api.KeysSubject(f.alice), api.CodeInvalid},
		{"a wildcard", f.alice, f.room, subjects.InboxPrefix(f.alice) + ".r.*", api.CodeInvalid},
		{"an extra token", f.alice, f.room, subjects.InboxPrefix(f.alice) + ".r.a.b", api.CodeInvalid},
		{"a bad room id", f.alice, "x.>", f.deliver(f.alice), api.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.names(t)
			_, err := f.m.Open(ctx, tc.user, tc.room, tc.deliver, 0)
			if !api.IsCode(err, tc.code) {
				t.Fatalf("Open(%s) = %v; want %s", tc.name, err, tc.code)
			}
			if after := f.names(t); len(after) != len(before) {
				t.Fatalf("a refused Open left a consumer: %v", after)
			}
		})
	}
}

func TestAtMostMaxPerUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	ctx := context.Background()
	for range 2 {
		if _, err := f.m.Open(ctx, f.alice, f.room, f.deliver(f.alice), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.m.Open(ctx, f.alice, f.room, f.deliver(f.alice), 0); !api.IsCode(err, api.CodeRateLimited) {
		t.Fatalf("a third reader = %v; want rate_limited", err)
	}
}

func TestCloseForAndSweep(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	ctx := context.Background()
	a1, err := f.m.Open(ctx, f.alice, f.room, f.deliver(f.alice), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Only its owner closes a reader by name.
	if err := f.m.Close(ctx, f.bob, f.room, a1.Name); !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("bob closing alice's reader = %v; want not_found", err)
	}
	if err := f.m.Close(ctx, f.alice, f.room, a1.Name); err != nil {
		t.Fatal(err)
	}
	if f.names(t)[a1.Name] {
		t.Fatal("the closed reader is still there")
	}

	a2, err := f.m.Open(ctx, f.alice, f.room, f.deliver(f.alice), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A sweep keeps what its owner may still read.
	if n, err := f.m.Sweep(ctx); err != nil || n != 0 || !f.names(t)[a2.Name] {
		t.Fatalf("Sweep = %d, %v; want nothing swept", n, err)
	}
	if n, err := f.m.CloseFor(ctx, f.alice, f.room); err != nil || n != 1 || f.names(t)[a2.Name] {
		t.Fatalf("CloseFor = %d, %v; want the one reader closed", n, err)
	}

	// Revoked behind the manager's back: the sweep closes the reader.
	a3, err := f.m.Open(ctx, f.alice, f.room, f.deliver(f.alice), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.RevokeUser(ctx, "alice", time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := f.m.Sweep(ctx); err != nil || n != 1 || f.names(t)[a3.Name] {
		t.Fatalf("Sweep after a revocation = %d, %v; want the reader closed", n, err)
	}
	if err := f.m.Close(ctx, f.alice, f.room, a3.Name); !api.IsCode(err, api.CodeNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("Close of a swept reader = %v; want not_found", err)
	}
}
