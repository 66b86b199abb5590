package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/client"
)

// sender is an application sending to a room with Client.Send, one
// message after the other, each acknowledged before the next, until
// stopped: what it was told is stored, when, and what failed.
type sender struct {
	c    *client.Client
	room string

	mu      sync.Mutex
	acked   []string
	ackedAt []time.Time
	failed  []error

	stop context.CancelFunc
	done chan struct{}
}

// startSender starts sending to room through c.
func startSender(c *client.Client, room string) *sender {
	ctx, stop := context.WithCancel(context.Background())
	s := &sender{c: c, room: room, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			id, err := c.Send(ctx, room, client.Message{Text: "m"})
			s.mu.Lock()
			if err == nil {
				s.acked, s.ackedAt = append(s.acked, id), append(s.ackedAt, time.Now())
			} else if ctx.Err() == nil {
				s.failed = append(s.failed, err)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// sent is the number of acknowledged sends so far.
func (s *sender) sent() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.acked) }

// ackAfter is the time from t0 to the first send acknowledged after it.
func (s *sender) ackAfter(t0 time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.ackedAt) - 1; i >= 0 && s.ackedAt[i].After(t0); i-- {
		if i == 0 || !s.ackedAt[i-1].After(t0) {
			return s.ackedAt[i].Sub(t0), true
		}
	}
	return 0, false
}

// waitSent waits for n more acknowledged sends than when it was called.
func (s *sender) waitSent(t testing.TB, n int, d time.Duration, after string) {
	t.Helper()
	before := s.sent()
	waitFor(t, d, "sends after "+after, func() bool { return s.sent() >= before+n })
}

// waitAckAfter waits for a send acknowledged after t0 and returns how
// long after t0 it came.
func (s *sender) waitAckAfter(t testing.TB, t0 time.Time, d time.Duration, after string) time.Duration {
	t.Helper()
	waitFor(t, d, "a send acknowledged after "+after, func() bool { _, ok := s.ackAfter(t0); return ok })
	gap, _ := s.ackAfter(t0)
	return gap
}

// finish stops the sender and fails the test for every send that
// returned an error; it returns the ids of the acknowledged sends.
func (s *sender) finish(t testing.TB) []string {
	t.Helper()
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failed) > 0 {
		t.Errorf("%d sends returned an error to the application; the first: %v", len(s.failed), s.failed[0])
	}
	return s.acked
}

// wantStoredOnce reads the room's whole history through a fresh client
// of the given servers and fails the test unless every acknowledged id
// is in it exactly once.
func wantStoredOnce(t testing.TB, cfg client.Config, room string, acked []string) {
	t.Helper()
	reader, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	seen := map[string]int{}
	if err := reader.Read(ctxT(t), room, client.ReadOptions{}, func(m client.Received) error {
		if m.Err != nil {
			t.Errorf("message %s: %v", m.ID, m.Err)
		}
		seen[m.ID]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lost, dup := countLostAndDuplicated(acked, seen)
	if lost > 0 || dup > 0 {
		t.Errorf("of %d acknowledged sends, %d lost and %d stored more than once; want none", len(acked), lost, dup)
	}
}

// countLostAndDuplicated counts the acknowledged ids seen never and seen
// more than once.
func countLostAndDuplicated(acked []string, seen map[string]int) (lost, dup int) {
	for _, id := range acked {
		switch seen[id] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	return lost, dup
}
