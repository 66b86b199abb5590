package main

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/client"
)

// stop ends the process as an operator's `systemctl stop` does, with
// SIGTERM, and fails the test unless it exits by itself with status 0.
func (p *processNode) stop(t testing.TB) {
	t.Helper()
	signalled := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit within 60 s of SIGTERM\n%s", p.name, logsOf(p)())
	}
	if took := time.Since(signalled); took > 3*time.Second {
		t.Logf("%s took %s to exit after SIGTERM; its log:\n%s", p.name, took.Round(time.Millisecond), logsOf(p)())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exited %d after SIGTERM; want 0\n%s", p.name, code, logsOf(p)())
	}
}

// TestClusterRollingRestartSurfacesNoErrors stops each of three
// membershipd processes in turn with SIGTERM, as a rolling upgrade does
// (docs/cluster.md), and starts it again, while an application sends
// with Send, follows the room with Read, and asks the control plane for
// the room: none of them sees an error, the follower is delivered every
// acknowledged message exactly once, and the history holds each once.
func TestClusterRollingRestartSurfacesNoErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	t.Parallel()
	rounds := 1
	if chaos() {
		rounds = 3
	}
	pc := startProcessCluster(t)
	s := startSender(pc.c, pc.room)
	reader, err := client.New(pc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	f := follow(t, reader, pc.room)

	// The control plane, asked as an application does now and then.
	var (
		apiMu      sync.Mutex
		apiCalls   int
		apiSlowest time.Duration
		apiErrs    []error
	)
	apiCtx, apiStop := context.WithCancel(context.Background())
	apiDone := make(chan struct{})
	go func() {
		defer close(apiDone)
		for apiCtx.Err() == nil {
			began := time.Now()
			_, err := pc.c.Room(apiCtx, pc.room)
			took := time.Since(began)
			apiMu.Lock()
			if apiCtx.Err() == nil {
				apiCalls++
				apiSlowest = max(apiSlowest, took)
				if err != nil {
					apiErrs = append(apiErrs, err)
				}
			}
			apiMu.Unlock()
			select {
			case <-apiCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	s.waitSent(t, 50, 30*time.Second, "the start")

	for round := range rounds {
		for i, p := range pc.procs {
			led := pc.ledBy(t, i)
			signalled := time.Now()
			p.stop(t)
			exited := time.Now()
			gap := s.waitAckAfter(t, exited, 30*time.Second, p.name+" was stopped")
			t.Logf("round %d: %s (leader of %s) exited %s after SIGTERM; next acknowledged send %s after it exited (%d sent so far)", round, p.name, led, exited.Sub(signalled).Round(time.Millisecond), gap.Round(time.Millisecond), s.sent())
			pc.restart(t, i)
			s.waitSent(t, 50, 30*time.Second, p.name+" came back")
		}
	}
	acked := s.finish(t)
	apiStop()
	<-apiDone
	// The follower may also be delivered the send the sender's stop cut
	// short, which may or may not have been stored.
	waitFor(t, 60*time.Second, "the follower delivered every acknowledged message", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.got) >= len(acked) && f.has(acked)
	})

	select {
	case err := <-f.done:
		t.Errorf("the followed read ended: %v", err)
	default:
	}
	f.mu.Lock()
	seen := map[string]int{}
	for _, m := range f.got {
		if m.Err != nil {
			t.Errorf("the follower got an unreadable message %s: %v", m.ID, m.Err)
		}
		seen[m.ID]++
	}
	f.mu.Unlock()
	if lost, dup := countLostAndDuplicated(acked, seen); lost > 0 || dup > 0 {
		t.Errorf("the follower was delivered %d acknowledged messages never and %d more than once; want none", lost, dup)
	}
	apiMu.Lock()
	if len(apiErrs) > 0 {
		t.Errorf("%d of %d control-plane calls returned an error to the application; the first: %v", len(apiErrs), apiCalls, apiErrs[0])
	}
	apiMu.Unlock()
	t.Logf("%d acknowledged sends, %d control-plane calls (the slowest %s), every node stopped and started %d time(s)", len(acked), apiCalls, apiSlowest.Round(time.Millisecond), rounds)
	wantReplicas(t, pc.nodes[0], 3, "a rolling restart")
	wantStoredOnce(t, pc.cfg, pc.room, acked)
}

// has reports whether every id was delivered; f.mu is held.
func (f *follower) has(ids []string) bool {
	seen := make(map[string]bool, len(f.got))
	for _, m := range f.got {
		seen[m.ID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			return false
		}
	}
	return true
}
