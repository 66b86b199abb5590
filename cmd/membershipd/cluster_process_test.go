package main

import (
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
)

// processNode is a clusterNode served by a membershipd process.
type processNode struct {
	*clusterNode
	cmd    *exec.Cmd
	log    string // its stderr, in its directory
	exited chan struct{}
}

// startProcess runs the membershipd binary bin for the node, its log in
// the node's directory; the process is killed at the end of the test.
func (n *clusterNode) startProcess(t testing.TB, bin string, extra ...string) *processNode {
	t.Helper()
	p := &processNode{clusterNode: n, log: filepath.Join(n.dir, "membershipd.log"), exited: make(chan struct{})}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(bin, n.args(extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start membershipd %s: %v", n.name, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.kill(t) })
	return p
}

// kill ends the process with SIGKILL, as a power loss of its host would
// (without losing the page cache), and waits for it.
func (p *processNode) kill(t testing.TB) {
	t.Helper()
	p.cmd.Process.Kill()
	<-p.exited
}

// logText is the process's log so far.
func (p *processNode) logText() string {
	out, _ := os.ReadFile(p.log)
	return string(out)
}

// TestClusterProcesses runs three membershipd processes on loopback,
// started in a random order seconds apart with --store kv --replicas 3,
// killed with SIGKILL: all three become ready by themselves; a node that
// lost its quorum answers /readyz 503 (and /healthz 200) until the others
// are back; nodes restarted without --replicas (one with --kv-replicas,
// its older name) and `membershipd user seed --store kv` leave every
// stream at three replicas; all three killed at once and started again
// in any order recover by themselves (three times with UNIBUS_CHAOS=1).
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	t.Parallel()
	maxDelay, rounds := 3*time.Second, 1
	if chaos() {
		maxDelay, rounds = 20*time.Second, 3
	}
	began := time.Now()
	stage := func(what string) { t.Logf("%s: %s", time.Since(began).Round(100*time.Millisecond), what) }
	membershipdBinary(t) // built once here, timed apart from the cold start
	stage("built")

	pc := startProcessNodes(t, maxDelay)
	bin, nodes, procs, order := pc.bin, pc.nodes, pc.procs, pc.order
	stage("cold start: every node ready")
	wantReplicas(t, nodes[0], 3, "the cold start")

	// The host tool, as an operator runs it.
	alice := pc.seedAdmin(t, 1)
	wantReplicas(t, nodes[2], 3, "membershipd user seed --store kv")
	stage("user seed: replicas kept")

	// Two of three nodes lost: the survivor has no quorum.
	survivor := order[0]
	lost := []int{(survivor + 1) % 3, (survivor + 2) % 3}
	for _, i := range lost {
		procs[i].kill(t)
	}
	s := procs[survivor]
	var last api.Error
	waitFor(t, 30*time.Second, "the survivor's /readyz says 503", func() bool {
		status, e, err := readyz(s.url())
		last = e
		return err == nil && status == http.StatusServiceUnavailable
	})
	if last.Code != api.CodeUnavailable || !strings.Contains(last.Message, "not ready") {
		t.Errorf("survivor /readyz 503 body = %+v; want code unavailable and what is missing", last)
	}
	t.Logf("survivor without quorum: %s", last.Message)
	if status := getJSON(t, s.url()+"/healthz", nil); status != http.StatusOK {
		t.Errorf("survivor /healthz = %d; want 200: it is alive", status)
	}
	stage("quorum lost: /readyz 503")

	// One back, without --replicas: a quorum again, nothing lowered.
	procs[lost[0]] = nodes[lost[0]].startProcess(t, bin)
	waitReady(t, s.url(), 90*time.Second, logsOf(procs...))
	waitReady(t, procs[lost[0]].url(), 90*time.Second, logsOf(procs...))
	stage("quorum back: /readyz 200")
	if out := s.logText(); strings.Contains(out, "connect to route (attempt 2)") {
		t.Errorf("the survivor logged every failed route reconnection; want the first, then one a minute\n%s", out)
	}
	wantReplicas(t, nodes[survivor], 3, "a node restarted without --replicas")
	if out := procs[lost[0]].logText(); !strings.Contains(out, "keep their replicas") {
		t.Errorf("node restarted with the default --replicas 1 did not warn that the streams keep their 3\n%s", out)
	}

	// The last one back, with the older name of the flag.
	procs[lost[1]] = nodes[lost[1]].startProcess(t, bin, "--kv-replicas", "3")
	waitReady(t, procs[lost[1]].url(), 90*time.Second, logsOf(procs...))
	wantReplicas(t, nodes[lost[1]], 3, "a node restarted with --kv-replicas 3")
	var me api.User
	if status := doJSON(t, signedGet(t, procs[lost[1]].url()+"/v1/me", alice), &me); status != http.StatusOK || me.User != alice.UserKey() {
		t.Errorf("/v1/me through the node restarted last = %d %+v; want alice", status, me)
	}
	stage("every node back")

	// Every node killed at once, as a power loss of the whole cluster
	// would, then started again in any order.
	for round := range rounds {
		for _, p := range procs {
			p.kill(t)
		}
		startProcesses(t, bin, nodes, procs, maxDelay, "--replicas", "3")
		waitAllReady(t, procs...)
		if status := doJSON(t, signedGet(t, procs[round%3].url()+"/v1/me", alice), &me); status != http.StatusOK || me.User != alice.UserKey() {
			t.Fatalf("round %d: /v1/me after every node was killed = %d %+v; want alice", round, status, me)
		}
		stage("every node killed and started again: ready")
	}
	wantReplicas(t, nodes[0], 3, "every node killed and started again")
}

// startProcesses starts a membershipd process for each node, in a random
// order, up to maxDelay apart, into procs, and returns the order.
func startProcesses(t testing.TB, bin string, nodes []*clusterNode, procs []*processNode, maxDelay time.Duration, extra ...string) []int {
	t.Helper()
	order := rand.Perm(len(nodes))
	startInOrder(t, nodes, order, maxDelay, func(i int) { procs[i] = nodes[i].startProcess(t, bin, extra...) })
	return order
}
