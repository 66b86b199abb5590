package membership

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
)

// startJetStream runs an in-process nats-server with JetStream on a random
// port, storing in a temp dir, and returns a JetStream context on it.
func startJetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatalf("new nats server: %v", err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

func TestEnsureHistoryStreamIdempotent(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	l := HistoryLimits{MaxAge: time.Hour, MaxBytes: 1 << 20, MaxMsgsPerSubject: 100}
	first, err := EnsureHistoryStream(ctx, js, l)
	if err != nil {
		t.Fatalf("EnsureHistoryStream: %v", err)
	}
	second, err := EnsureHistoryStream(ctx, js, l)
	if err != nil {
		t.Fatalf("EnsureHistoryStream again: %v", err)
	}
	if a, b := first.CachedInfo().Created, second.CachedInfo().Created; !a.Equal(b) {
		t.Errorf("stream recreated: created %v, then %v", a, b)
	}

	cfg := second.CachedInfo().Config
	checks := []struct {
		name      string
		got, want any
	}{
		{"Name", cfg.Name, api.HistoryStream},
		{"Subjects", cfg.Subjects, []string{api.HistorySubjects}},
		{"Storage", cfg.Storage, jetstream.FileStorage},
		{"Discard", cfg.Discard, jetstream.DiscardOld},
		{"MaxAge", cfg.MaxAge, time.Hour},
		{"MaxBytes", cfg.MaxBytes, int64(1 << 20)},
		{"MaxMsgsPerSubject", cfg.MaxMsgsPerSubject, int64(100)},
		{"Duplicates", cfg.Duplicates, HistoryDuplicateWindow},
		{"AllowDirect", cfg.AllowDirect, true},
		{"Replicas", cfg.Replicas, 1},
	}
	for _, c := range checks {
		if !equalAny(c.got, c.want) {
			t.Errorf("config %s = %v; want %v", c.name, c.got, c.want)
		}
	}

	// Changing the limits updates the stream in place.
	st, err := EnsureHistoryStream(ctx, js, HistoryLimits{})
	if err != nil {
		t.Fatalf("EnsureHistoryStream unlimited: %v", err)
	}
	cfg = st.CachedInfo().Config
	if cfg.MaxAge != 0 || cfg.MaxBytes != -1 || cfg.MaxMsgsPerSubject != -1 {
		t.Errorf("unlimited config: MaxAge %v, MaxBytes %d, MaxMsgsPerSubject %d; want 0, -1, -1", cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgsPerSubject)
	}
}

func equalAny(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		if len(as) != len(bs) {
			return false
		}
		for i := range as {
			if as[i] != bs[i] {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestEnsureHistoryStreamShortMaxAge(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := EnsureHistoryStream(ctx, js, HistoryLimits{MaxAge: 30 * time.Second})
	if err != nil {
		t.Fatalf("EnsureHistoryStream: %v", err)
	}
	if got := st.CachedInfo().Config.Duplicates; got != 30*time.Second {
		t.Errorf("Duplicates = %v; want the max age, 30s", got)
	}
	if _, err := EnsureHistoryStream(ctx, js, HistoryLimits{MaxAge: -time.Second}); err == nil {
		t.Error("EnsureHistoryStream with a negative max age succeeded; want an error")
	}
}

func TestHistoryStreamLimitsAndDedup(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := EnsureHistoryStream(ctx, js, HistoryLimits{MaxMsgsPerSubject: 2})
	if err != nil {
		t.Fatalf("EnsureHistoryStream: %v", err)
	}
	room, other := api.NewRoomID(), api.NewRoomID()
	publish := func(subject, id, data string) *jetstream.PubAck {
		t.Helper()
		ack, err := js.PublishMsg(ctx, &nats.Msg{
			Subject: subject,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{id}},
			Data:    []byte(data),
		})
		if err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		return ack
	}

	first := publish(api.RoomSubject(room), "m1", "one")
	publish(api.RoomSubject(room), "m2", "two")
	publish(api.RoomSubject(other), "o1", "other")
	third := publish(api.RoomSubject(room), "m3", "three")
	if third.Duplicate {
		t.Fatal("m3 reported as a duplicate")
	}

	// The oldest message of the room is gone; the other room is untouched.
	if _, err := st.GetMsg(ctx, first.Sequence); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("GetMsg(oldest) error = %v; want %v", err, jetstream.ErrMsgNotFound)
	}
	last, err := st.GetLastMsgForSubject(ctx, api.RoomSubject(room))
	if err != nil {
		t.Fatalf("last message: %v", err)
	}
	if string(last.Data) != "three" {
		t.Errorf("last message = %q; want %q", last.Data, "three")
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("stream holds %d messages; want 3 (two of the room, one of the other)", info.State.Msgs)
	}

	// A retried message id is acknowledged but stored once.
	dup := publish(api.RoomSubject(other), "o1", "other again")
	if !dup.Duplicate {
		t.Error("republished o1 not reported as a duplicate")
	}
	info, err = st.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("after a duplicate the stream holds %d messages; want 3", info.State.Msgs)
	}

	// Subjects outside the room message scheme are not kept.
	if _, err := js.Publish(ctx, api.RoomEventSubject(room), []byte("{}")); err == nil {
		t.Errorf("publish on %s was stored; room events are not history", api.RoomEventSubject(room))
	}
}
