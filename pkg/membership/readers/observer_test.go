package readers_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/membership/readers"
)

// observed records what an Observer is told.
type observed struct {
	mu     sync.Mutex
	opened int
	closed map[string]int
}

func (o *observed) ReaderOpened() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.opened++
}

func (o *observed) ReadersClosed(reason string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed[reason] += n
}

func (o *observed) want(t *testing.T, what string, opened int, closed map[string]int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.opened != opened || !maps.Equal(o.closed, closed) {
		t.Fatalf("%s: told %d opened, closed %v; want %d, %v", what, o.opened, o.closed, opened, closed)
	}
}

// TestObserverIsToldOfEveryReader: every reader opened is told once, and
// every reader closed once, with why; refusals and closes of nothing
// tell nothing.
func TestObserverIsToldOfEveryReader(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	obs := &observed{closed: map[string]int{}}
	f.m = readers.New(readers.Config{JS: f.js, Members: f.store, Observer: obs})
	ctx := context.Background()
	open := func() string {
		t.Helper()
		rd, err := f.m.Open(ctx, f.alice, f.room, f.deliver(f.alice), 0)
		if err != nil {
			t.Fatal(err)
		}
		return rd.Name
	}

	a1 := open()
	if _, err := f.m.Open(ctx, f.bob, f.room, f.deliver(f.bob), 0); err == nil {
		t.Fatal("bob, not a member, opened a reader")
	}
	obs.want(t, "one reader opened, one refused", 1, map[string]int{})
	if err := f.m.Close(ctx, f.bob, f.room, a1); err == nil {
		t.Fatal("bob closed alice's reader")
	}
	if err := f.m.Close(ctx, f.alice, f.room, a1); err != nil {
		t.Fatal(err)
	}
	obs.want(t, "closed by its owner", 1, map[string]int{readers.ClosedByOwner: 1})

	open()
	open()
	if n, err := f.m.CloseFor(ctx, f.alice, f.room); err != nil || n != 2 {
		t.Fatalf("CloseFor = %d, %v; want 2", n, err)
	}
	if n, err := f.m.CloseFor(ctx, f.alice, f.room); err != nil || n != 0 {
		t.Fatalf("CloseFor again = %d, %v; want 0", n, err)
	}
	obs.want(t, "two closed for a removal", 3, map[string]int{readers.ClosedByOwner: 1, readers.ClosedRemoved: 2})

	open()
	if _, err := f.m.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	obs.want(t, "a sweep that closes nothing", 4, map[string]int{readers.ClosedByOwner: 1, readers.ClosedRemoved: 2})
	if _, err := f.store.RevokeUser(ctx, "alice", time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, err := f.m.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep after a revocation = %d, %v; want 1", n, err)
	}
	obs.want(t, "swept after a revocation", 4, map[string]int{readers.ClosedByOwner: 1, readers.ClosedRemoved: 2, readers.ClosedSwept: 1})
}
