package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/client"
)

// TestClusterKillNineUnderASendingClient runs three membershipd processes
// (--store kv --replicas 3) and a client given every node's URL that
// sends without pause, then kills each node in turn with SIGKILL and
// starts it again: every send the client was told is stored is in the
// history exactly once, and the client carries on after each kill. The
// time from each kill to the next acknowledged send is logged. With
// UNIBUS_CHAOS=1 every node is killed three times.
func TestClusterKillNineUnderASendingClient(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH: cannot build membershipd")
	}
	t.Parallel()
	rounds := 1
	if chaos() {
		rounds = 3
	}
	bin := filepath.Join(t.TempDir(), "membershipd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build membershipd: %v\n%s", err, out)
	}
	nodes := newClusterNodes(t, 3)
	procs := make([]*processNode, len(nodes))
	startProcesses(t, bin, nodes, procs, 0, "--replicas", "3")
	for _, p := range procs {
		waitReady(t, p.url(), 90*time.Second, processLogs(procs...))
	}
	alice := testbus.NewIdentity(t, "alice")
	seed := exec.Command(bin, "user", "seed", "--store", "kv", "--nats-url", nodes[0].natsURL(), "--control-key", nodes[0].controlKey(), "--admin", alice.Public().Token())
	if out, err := seed.CombinedOutput(); err != nil {
		t.Fatalf("membershipd user seed --store kv: %v\n%s", err, out)
	}
	urls := []string{nodes[0].url(), nodes[1].url(), nodes[2].url()}
	c, err := client.New(client.Config{Servers: urls, Identity: alice, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var room string
	waitFor(t, 30*time.Second, "alice known to the cluster", func() bool {
		r, err := c.CreateRoom(ctxT(t), "ops", false)
		room = r.ID
		return err == nil
	})

	// The sender: one message after the other, each acknowledged before
	// the next, as an application sending with Send does.
	var (
		mu      sync.Mutex
		acked   []string
		ackedAt []time.Time
		failed  []error
	)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			id, err := c.Send(ctx, room, client.Message{Text: "m"})
			mu.Lock()
			if err == nil {
				acked, ackedAt = append(acked, id), append(ackedAt, time.Now())
			} else if ctx.Err() == nil {
				failed = append(failed, err)
			}
			mu.Unlock()
		}
	}()
	sent := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	ackAfter := func(t0 time.Time) (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, at := range ackedAt {
			if at.After(t0) {
				return at.Sub(t0), true
			}
		}
		return 0, false
	}
	waitFor(t, 30*time.Second, "the first sends", func() bool { return sent() >= 50 })

	var worst time.Duration
	for round := range rounds {
		for i, p := range procs {
			p.kill(t)
			killed := time.Now()
			waitFor(t, 30*time.Second, "a send acknowledged after "+p.name+" was killed", func() bool {
				_, ok := ackAfter(killed)
				return ok
			})
			gap, _ := ackAfter(killed)
			worst = max(worst, gap)
			t.Logf("round %d: %s killed; next acknowledged send after %s (%d sent so far)", round, p.name, gap.Round(time.Millisecond), sent())
			procs[i] = nodes[i].startProcess(t, bin, "--replicas", "3")
			waitReady(t, procs[i].url(), 90*time.Second, processLogs(procs...))
			before := sent()
			waitFor(t, 30*time.Second, "sends after "+p.name+" came back", func() bool { return sent() >= before+50 })
		}
	}
	stop()
	<-done
	wantReplicas(t, nodes[0], 3, "every node killed in turn under a sending client")
	mu.Lock()
	defer mu.Unlock()
	if len(failed) > 0 {
		t.Errorf("%d sends failed; the first: %v", len(failed), failed[0])
	}
	t.Logf("%d acknowledged sends, every node killed %d time(s); worst kill to next acknowledged send: %s", len(acked), rounds, worst.Round(time.Millisecond))

	// Every acknowledged send is stored once, read through a fresh client.
	reader, err := client.New(client.Config{Servers: urls, Identity: alice, Timeout: 30 * time.Second})
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
	lost, dup := 0, 0
	for _, id := range acked {
		switch seen[id] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	if lost > 0 || dup > 0 {
		t.Errorf("of %d acknowledged sends, %d lost and %d stored more than once; want none", len(acked), lost, dup)
	}
}
