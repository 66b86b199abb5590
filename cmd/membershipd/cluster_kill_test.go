package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
)

// processCluster is three membershipd processes started as
// docs/cluster.md has it (--store kv --replicas 3), every node ready;
// startProcessCluster adds the first admin, seeded with the host tool,
// and a client of that admin given every node's URL, with a room made
// through it.
type processCluster struct {
	bin   string
	nodes []*clusterNode
	procs []*processNode
	order []int         // the order the nodes were first started in
	cfg   client.Config // the admin's, with every node's URL
	c     *client.Client
	room  string
}

// startProcessNodes starts the three processes in a random order, up to
// maxDelay apart, and waits until every node is ready.
func startProcessNodes(t testing.TB, maxDelay time.Duration) *processCluster {
	t.Helper()
	pc := &processCluster{bin: membershipdBinary(t), nodes: newClusterNodes(t, 3)}
	pc.procs = make([]*processNode, len(pc.nodes))
	pc.order = startProcesses(t, pc.bin, pc.nodes, pc.procs, maxDelay, "--replicas", "3")
	waitAllReady(t, pc.procs...)
	return pc
}

// seedAdmin seeds alice, the first admin, through node i with the host
// tool, run as an operator runs it: `membershipd user seed --store kv`.
func (pc *processCluster) seedAdmin(t testing.TB, i int) *identity.Identity {
	t.Helper()
	alice := testbus.NewIdentity(t, "alice")
	n := pc.nodes[i]
	seed := exec.Command(pc.bin, "user", "seed", "--store", "kv", "--nats-url", n.natsURL(), "--control-key", n.controlKey(), "--admin", alice.Public().Token())
	if out, err := seed.CombinedOutput(); err != nil {
		t.Fatalf("membershipd user seed --store kv: %v\n%s", err, out)
	}
	return alice
}

func startProcessCluster(t testing.TB) *processCluster {
	t.Helper()
	pc := startProcessNodes(t, 0)
	alice := pc.seedAdmin(t, 0)
	pc.cfg = client.Config{Identity: alice, Timeout: 30 * time.Second, Logger: testbus.Logger()}
	for _, n := range pc.nodes {
		pc.cfg.Servers = append(pc.cfg.Servers, n.url())
	}
	c, err := client.New(pc.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pc.c = c
	waitFor(t, 30*time.Second, "alice known to the cluster", func() bool {
		r, err := c.CreateRoom(ctxT(t), "ops", false)
		pc.room = r.ID
		return err == nil
	})
	return pc
}

// restart starts node i's process again and waits, as docs/cluster.md
// has an operator do before the next node, until it is ready and
// `membershipd cluster status` shows every replica of every stream
// current.
func (pc *processCluster) restart(t testing.TB, i int) {
	t.Helper()
	pc.procs[i] = pc.nodes[i].startProcess(t, pc.bin, "--replicas", "3")
	waitReady(t, pc.procs[i].url(), 90*time.Second, logsOf(pc.procs...))
	var why string
	waitFor(t, 60*time.Second, "every replica current after "+pc.nodes[i].name+" came back", func() bool {
		st, err := pc.nodes[i].status(t)
		if why = fmt.Sprint(err); err == nil {
			why = allCurrent(st, len(pc.nodes))
		}
		return why == ""
	})
}

// allCurrent reports why st is not yet a cluster whose every stream has
// replicas current replicas; "" once it is. It is caughtUp without the
// replicas holding exactly what the leader holds, which does not hold
// for long while a client sends.
func allCurrent(st clusterStatus, replicas int) string {
	if len(st.Streams) == 0 {
		return "no streams"
	}
	for _, s := range st.Streams {
		if len(s.Peers) != replicas {
			return fmt.Sprintf("stream %s has %d replicas", s.Name, len(s.Peers))
		}
		for _, p := range s.Peers {
			if !p.Current {
				return fmt.Sprintf("stream %s: %s is %s", s.Name, p.Node, p.state())
			}
		}
	}
	return ""
}

// ledBy names the streams node i leads, as another node sees them.
func (pc *processCluster) ledBy(t testing.TB, i int) string {
	t.Helper()
	var led []string
	for name, leader := range streamLeaders(t, pc.nodes[(i+1)%len(pc.nodes)]) {
		if leader == pc.nodes[i].name {
			led = append(led, name)
		}
	}
	if len(led) == 0 {
		return "none"
	}
	slices.Sort(led)
	return strings.Join(led, ", ")
}

// TestClusterKillNineUnderASendingClient runs three membershipd processes
// (--store kv --replicas 3) and a client given every node's URL that
// sends without pause, then kills each node in turn with SIGKILL and
// starts it again, and sends on to at least 10,000 acknowledged sends:
// every send the client was told is stored is in the history exactly
// once, no send returned an error, and every stream still has three
// replicas. The time from each kill to the next acknowledged send is
// logged. With UNIBUS_CHAOS=1 every node is killed three times and the
// run goes on to 30,000 sends.
func TestClusterKillNineUnderASendingClient(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	t.Parallel()
	rounds, atLeast := 1, 10_000
	if chaos() {
		rounds, atLeast = 3, 30_000
	}
	pc := startProcessCluster(t)
	s := startSender(pc.c, pc.room)
	s.waitSent(t, 50, 30*time.Second, "the start")

	var worst time.Duration
	for round := range rounds {
		for i, p := range pc.procs {
			led := pc.ledBy(t, i)
			p.kill(t)
			killed := time.Now()
			gap := s.waitAckAfter(t, killed, 30*time.Second, p.name+" was killed")
			worst = max(worst, gap)
			t.Logf("round %d: %s killed (leader of %s); next acknowledged send after %s (%d sent so far)", round, p.name, led, gap.Round(time.Millisecond), s.sent())
			pc.restart(t, i)
			s.waitSent(t, 50, 30*time.Second, p.name+" came back")
		}
	}
	if left := atLeast - s.sent(); left > 0 {
		s.waitSent(t, left, 10*time.Minute, "the kills")
	}
	acked := s.finish(t)
	wantReplicas(t, pc.nodes[0], 3, "every node killed in turn under a sending client")
	t.Logf("%d acknowledged sends, every node killed %d time(s); worst kill to next acknowledged send: %s", len(acked), rounds, worst.Round(time.Millisecond))
	wantStoredOnce(t, pc.cfg, pc.room, acked)
}
