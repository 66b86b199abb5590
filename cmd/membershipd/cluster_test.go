package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
)

// chaos reports whether the long cluster variants run (UNIBUS_CHAOS=1):
// more rounds, longer delays between the nodes' starts.
func chaos() bool { return os.Getenv("UNIBUS_CHAOS") == "1" }

// clusterNode is one membershipd of a three-node cluster on loopback:
// its ports, picked free once, stay the same across restarts, as a
// node's address does.
type clusterNode struct {
	name      string
	dir       string
	httpPort  int
	natsPort  int
	routePort int
	routes    string // the other nodes' route URLs
}

// newClusterNodes picks the ports of n nodes, n1 to nN, each with its own
// data directory and routed to the others.
func newClusterNodes(t testing.TB, n int) []*clusterNode {
	t.Helper()
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		nodes[i] = newClusterNode(t, fmt.Sprintf("n%d", i+1))
	}
	for _, a := range nodes {
		a.routes = routeURLs(slices.DeleteFunc(slices.Clone(nodes), func(b *clusterNode) bool { return b == a })...)
	}
	return nodes
}

// newClusterNode picks the ports of the node called name, with its own
// data directory and no routes yet.
func newClusterNode(t testing.TB, name string) *clusterNode {
	t.Helper()
	return &clusterNode{name: name, dir: t.TempDir(), httpPort: freePort(t), natsPort: freePort(t), routePort: freePort(t)}
}

// routeURLs is the nodes' route URLs, as --routes takes them.
func routeURLs(nodes ...*clusterNode) string {
	routes := make([]string, len(nodes))
	for i, n := range nodes {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", n.routePort)
	}
	return strings.Join(routes, ",")
}

// args is the node's command line, as docs/cluster.md gives it, with
// extra at the end.
func (n *clusterNode) args(extra ...string) []string {
	args := []string{
		"--db", filepath.Join(n.dir, "unibus.db"),
		"--store-dir", filepath.Join(n.dir, "blobs"),
		"--nats-store", n.natsStore(),
		"--http-port", strconv.Itoa(n.httpPort),
		"--nats-port", strconv.Itoa(n.natsPort),
		"--cluster-name", "unibus-test",
		"--server-name", n.name,
		"--cluster-port", strconv.Itoa(n.routePort),
		"--routes", n.routes,
		"--store", "kv",
	}
	if verbose() {
		args = append(args, "--log-level", "debug")
	}
	return append(args, extra...)
}

func (n *clusterNode) url() string     { return fmt.Sprintf("http://127.0.0.1:%d", n.httpPort) }
func (n *clusterNode) natsURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.natsPort) }

// natsStore is the node's --nats-store.
func (n *clusterNode) natsStore() string { return filepath.Join(n.dir, "jetstream") }

func (n *clusterNode) controlKey() string { return filepath.Join(n.natsStore(), controlKeyFile) }

// node is the clusterNode itself, and that of the inProcessNode or
// processNode it is in.
func (n *clusterNode) node() *clusterNode { return n }

// seedAdmin seeds id as an admin on the cluster's KV store through node
// n, with the host tool: `membershipd user seed --store kv`.
func (n *clusterNode) seedAdmin(t testing.TB, id *identity.Identity) {
	t.Helper()
	runCLI(t, 0, "user", "seed", "--store", "kv", "--nats-url", n.natsURL(), "--control-key", n.controlKey(), "--admin", id.Public().Token())
}

// inProcessNode is a clusterNode served by run in this process.
type inProcessNode struct {
	*clusterNode
	logs   *logCapture
	cancel context.CancelFunc
	done   chan error
}

// start calls run for the node without waiting for it to be ready; the
// node is stopped at the end of the test if still running.
func (n *clusterNode) start(t testing.TB, extra ...string) *inProcessNode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &inProcessNode{clusterNode: n, logs: newLogCapture(t), cancel: cancel, done: make(chan error, 1)}
	args := n.args(extra...)
	go func() { p.done <- run(ctx, args, io.Discard, p.logs) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop cancels the node's run and checks that it returns nil.
func (p *inProcessNode) stop(t testing.TB) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("node %s: run returned %v after cancel; want nil", p.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("node %s: run did not return within 30s of cancel", p.name)
	}
	p.logs.close()
}

// logText is the node's log so far.
func (p *inProcessNode) logText() string { return strings.Join(p.logs.Lines(), "\n") }

// exited fails the test if the node's run has returned.
func (p *inProcessNode) exited(t testing.TB) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("node %s: run returned %v while starting; want it to wait for the cluster\n%s", p.name, err, strings.Join(p.logs.Lines(), "\n"))
	default:
	}
}

// readyz asks url's /readyz and returns the status and the error body (if
// any).
func readyz(url string) (int, api.Error, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url + "/readyz")
	if err != nil {
		return 0, api.Error{}, err
	}
	defer resp.Body.Close()
	var e api.Error
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return resp.StatusCode, e, fmt.Errorf("decode the %d answer: %w", resp.StatusCode, err)
		}
	}
	return resp.StatusCode, e, nil
}

// waitReady polls url's /readyz until it answers 200, for at most d; fail
// describes the node when it does not.
func waitReady(t testing.TB, url string, d time.Duration, fail func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		status, e, err := readyz(url)
		if status == http.StatusOK {
			return
		}
		last = fmt.Sprintf("%d %q (%v)", status, e.Message, err)
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz not 200 within %s; last %s\n%s", url, d, last, fail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// streamReplicas returns the replicas of every stream the bus keeps in a
// cluster, read through node n: the control account's (with n's control
// key) and the history stream.
func streamReplicas(t testing.TB, n *clusterNode) map[string]int {
	t.Helper()
	got := map[string]int{}
	for name, info := range streamInfos(t, n) {
		got[name] = info.Config.Replicas
	}
	return got
}

// streamLeaders is the leader (a server name) of every stream of
// streamReplicas, read through node n; "" while one has none.
func streamLeaders(t testing.TB, n *clusterNode) map[string]string {
	t.Helper()
	got := map[string]string{}
	for name, info := range streamInfos(t, n) {
		if info.Cluster != nil {
			got[name] = info.Cluster.Leader
		}
	}
	return got
}

// streamInfos reads every stream of streamReplicas through node n.
func streamInfos(t testing.TB, n *clusterNode) map[string]*jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string]*jetstream.StreamInfo{}
	read := func(js jetstream.JetStream, names ...string) {
		for _, name := range names {
			var st jetstream.Stream
			var err error
			for {
				if st, err = js.Stream(ctx, name); err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("stream %s through %s: %v", name, n.name, err)
			}
			got[name] = st.CachedInfo()
		}
	}
	read(controlJetStream(t, n.natsURL(), n.controlKey()), controlStreams()...)
	read(serviceJetStream(t, n.natsURL(), n.natsStore()), api.HistoryStream)
	return got
}

// wantReplicas fails unless every stream of streamReplicas has want.
func wantReplicas(t testing.TB, n *clusterNode, want int, after string) {
	t.Helper()
	for name, r := range streamReplicas(t, n) {
		if r != want {
			t.Errorf("after %s: stream %s has %d replicas; want %d", after, name, r, want)
		}
	}
}

// startInOrder starts the nodes named by order with start, one after the
// other, up to maxDelay apart.
func startInOrder(t testing.TB, nodes []*clusterNode, order []int, maxDelay time.Duration, start func(i int)) {
	t.Helper()
	for k, i := range order {
		if k > 0 {
			delay := rand.N(maxDelay + 1)
			t.Logf("start %s %s after %s", nodes[i].name, delay.Round(time.Millisecond), nodes[order[k-1]].name)
			time.Sleep(delay) // the delay between an operator's starts is the point of the test
		}
		start(i)
	}
}

// startInProcess starts the nodes of running named by order in this
// process, up to maxDelay apart, each with extra, into running.
func startInProcess(t testing.TB, nodes []*clusterNode, running []*inProcessNode, order []int, maxDelay time.Duration, extra ...string) {
	t.Helper()
	startInOrder(t, nodes, order, maxDelay, func(i int) { running[i] = nodes[i].start(t, extra...) })
}

// startInProcessNodes starts a new three-node cluster in this process,
// the nodes one after the other with flags, and waits until every one is
// ready.
func startInProcessNodes(t testing.TB, flags ...string) ([]*clusterNode, []*inProcessNode) {
	t.Helper()
	nodes := newClusterNodes(t, 3)
	running := make([]*inProcessNode, len(nodes))
	for i, n := range nodes {
		running[i] = n.start(t, flags...)
	}
	waitAllReady(t, running...)
	return nodes, running
}

// clusterMember is a node of a test cluster: an inProcessNode or a
// processNode.
type clusterMember interface {
	comparable // nil: a node not started yet
	node() *clusterNode
	logText() string
}

// logsOf renders the nodes' logs for a failure.
func logsOf[N clusterMember](nodes ...N) func() string {
	return func() string {
		var b strings.Builder
		var notStarted N
		for _, n := range nodes {
			if n != notStarted {
				fmt.Fprintf(&b, "--- %s\n%s\n", n.node().name, n.logText())
			}
		}
		return b.String()
	}
}

// waitAllReady waits until every node answers /readyz with 200, for at
// most 90 s each, and shows the nodes' logs when one does not.
func waitAllReady[N clusterMember](t testing.TB, nodes ...N) {
	t.Helper()
	for _, n := range nodes {
		waitReady(t, n.node().url(), 90*time.Second, logsOf(nodes...))
	}
}

// TestClusterColdStartInAnyOrder starts three in-process nodes with
// --store kv --replicas 3 in a random order, seconds apart: each waits for
// the others (a lone node answers /readyz 503 with what it waits for,
// /healthz 200) and all three become ready without a restart. Neither a
// host tool nor a node restarted without --replicas changes the streams'
// three replicas; a full restart of the cluster recovers by itself.
func TestClusterColdStartInAnyOrder(t *testing.T) {
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
	nodes := newClusterNodes(t, 3)
	running := make([]*inProcessNode, len(nodes))
	order := rand.Perm(len(nodes))
	startInProcess(t, nodes, running, order[:1], 0, "--replicas", "3")

	// Alone, the first node listens and says what it waits for.
	first := running[order[0]]
	waitFor(t, 10*time.Second, "the lone node answers /readyz", func() bool {
		status, _, err := readyz(first.url())
		return err == nil && status != 0
	})
	first.exited(t)
	status, e, err := readyz(first.url())
	if status != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable || !strings.Contains(e.Message, "starting") || err != nil {
		t.Errorf("lone node /readyz = %d %+v (%v); want 503 unavailable saying it is starting", status, e, err)
	}
	if status := getJSON(t, first.url()+"/healthz", nil); status != http.StatusOK {
		t.Errorf("lone node /healthz = %d; want 200 (it is alive)", status)
	}
	if status := getJSON(t, first.url()+"/v1/info", nil); status != http.StatusServiceUnavailable {
		t.Errorf("lone node /v1/info = %d; want 503 until it is ready", status)
	}
	waitFor(t, 15*time.Second, "the lone node logs what it waits for", func() bool {
		return slicesContain(first.logs.Lines(), "waiting for the JetStream meta leader")
	})
	time.Sleep(rand.N(maxDelay + 1)) // as an operator would
	startInProcess(t, nodes, running, order[1:], maxDelay, "--replicas", "3")
	waitAllReady(t, running...)
	stage("cold start: every node ready")
	wantReplicas(t, nodes[0], 3, "the cold start")
	if n := countLines(first.logs.Lines(), "waiting for the JetStream meta leader"); n > 5 {
		t.Errorf("the lone node logged its wait for the meta leader %d times; want once per change", n)
	}

	// A host tool opens the store without a number of replicas.
	alice := testbus.NewIdentity(t, "alice")
	nodes[0].seedAdmin(t, alice)
	wantReplicas(t, nodes[1], 3, "membershipd user seed --store kv")
	stage("user seed: replicas kept")

	// migrate-to-kv with its default --replicas 1 uses the buckets as they
	// are and says so (it then refuses this KV store, which holds a user
	// the database does not: that is its own business).
	db := filepath.Join(t.TempDir(), "unibus.db")
	runCLI(t, 0, "user", "seed", "--db", db, testbus.NewIdentity(t, "bob").Public().Token())
	var migOut, migErr strings.Builder
	runMigrateCLI([]string{"--db", db, "--nats-url", nodes[0].natsURL(), "--control-key", nodes[0].controlKey(), "--no-backup"}, &migOut, &migErr)
	if !strings.Contains(migErr.String(), "keep their replicas") {
		t.Errorf("migrate-to-kv with the default --replicas 1 on R3 buckets did not warn that they keep theirs; stderr:\n%s", migErr.String())
	}
	wantReplicas(t, nodes[2], 3, "migrate-to-kv with --replicas 1")

	// Only the explicit command changes them, in both accounts.
	for _, n := range []int{1, 3} {
		out, _ := runCLI(t, 0, "cluster", "replicas", "--nats-url", nodes[2].natsURL(), "--nats-store", nodes[2].natsStore(), strconv.Itoa(n))
		if !strings.Contains(out, fmt.Sprintf("every stream has %d current replica(s)", n)) || !strings.Contains(out, api.HistoryStream) {
			t.Errorf("membershipd cluster replicas %d printed\n%s\nwant every stream, the history's too, and that they caught up", n, out)
		}
		wantReplicas(t, nodes[0], n, fmt.Sprintf("membershipd cluster replicas %d", n))
	}
	stage("cluster replicas 1, then 3")

	// A node restarted without --replicas keeps the three, and says so.
	running[1].stop(t)
	running[1] = nodes[1].start(t)
	waitReady(t, nodes[1].url(), 90*time.Second, logsOf(running...))
	wantReplicas(t, nodes[2], 3, "a node restarted without --replicas")
	stage("a node restarted without --replicas: ready, replicas kept")
	if !slicesContain(running[1].logs.Lines(), "keep their replicas") {
		t.Errorf("node restarted with --replicas 1 (the default) did not warn that the streams keep their 3\n%s", logsOf(running[1])())
	}

	// A full restart, in any order: every node waits for the others.
	for round := range rounds {
		var wg sync.WaitGroup
		for _, n := range running {
			wg.Add(1)
			go func() { defer wg.Done(); n.stop(t) }()
		}
		wg.Wait()
		stage("full restart: every node stopped")
		startInProcess(t, nodes, running, rand.Perm(len(nodes)), maxDelay, "--replicas", "3")
		waitAllReady(t, running...)
		var me api.User
		if status := doJSON(t, signedGet(t, nodes[round%3].url()+"/v1/me", alice), &me); status != http.StatusOK || me.User != alice.UserKey() {
			t.Fatalf("round %d: /v1/me after a full restart = %d %+v; want alice", round, status, me)
		}
		stage("full restart: every node ready")
	}
	wantReplicas(t, nodes[0], 3, "full restarts")
}

// slicesContain reports whether a line of lines contains text.
func slicesContain(lines []string, text string) bool { return countLines(lines, text) > 0 }

// countLines counts the lines of lines that contain text.
func countLines(lines []string, text string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, text) {
			n++
		}
	}
	return n
}
