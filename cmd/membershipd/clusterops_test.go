package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/client"
)

// The operations of docs/cluster.md on a three-node cluster of in-process
// nodes (cluster_test.go): a node that loses its disk, a node replaced
// under a new name.

// status is `membershipd cluster status` through node n.
func (n *clusterNode) status(t testing.TB) (clusterStatus, error) {
	t.Helper()
	nf := nodeFlags{natsURL: n.natsURL(), natsStore: n.natsStore(), timeout: 2 * time.Second}
	return queryClusterStatus(&nf, "")
}

// caughtUp reports why st is not yet a cluster whose every stream has a
// replica on exactly the nodes peers, each current and holding what the
// leader holds; "" once it is. It wants want streams at least.
func caughtUp(st clusterStatus, peers []string, want int) string {
	if len(st.Streams) < want {
		return fmt.Sprintf("%d streams; want %d", len(st.Streams), want)
	}
	for _, s := range st.Streams {
		var on []string
		for _, p := range s.Peers {
			on = append(on, p.Node)
			switch {
			case !p.Current || p.Lag > 0:
				return fmt.Sprintf("stream %s: %s is %s", s.Name, p.Node, p.state())
			case p.Local == nil:
				return fmt.Sprintf("stream %s: %s did not answer", s.Name, p.Node)
			case p.Local.LastSeq != s.LastSeq || p.Local.Messages != s.Messages:
				return fmt.Sprintf("stream %s: %s holds %d messages up to %d; the leader %d up to %d", s.Name, p.Node, p.Local.Messages, p.Local.LastSeq, s.Messages, s.LastSeq)
			}
		}
		slices.Sort(on)
		if !slices.Equal(on, peers) {
			return fmt.Sprintf("stream %s on %v; want %v", s.Name, on, peers)
		}
	}
	return ""
}

// waitCaughtUp polls the status through n until caughtUp holds, for at
// most d, and returns it.
func waitCaughtUp(t testing.TB, n *clusterNode, peers []string, want int, d time.Duration, logs func() string) clusterStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := n.status(t)
		why := fmt.Sprint(err)
		if err == nil {
			if why = caughtUp(st, peers, want); why == "" {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas on %v not caught up within %s: %s\n%s", peers, d, why, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterDiskLossAndReplacement: a node whose --nats-store is wiped
// rejoins under its name and copies every stream (KV buckets, blobs,
// history, what was written while it was down included) from the others;
// then a node gone for good is replaced by one with a new name: started
// first, the old one removed with `membershipd cluster remove-peer`, and
// its replicas move to the new node. Nothing acknowledged is lost, and a
// client reads it all through the new node.
func TestClusterDiskLossAndReplacement(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	t.Parallel()
	const streams = 7 // five KV buckets, the blob bucket, the history
	began := time.Now()
	stage := func(what string) { t.Logf("%s: %s", time.Since(began).Round(100*time.Millisecond), what) }
	nodes, running := startInProcessNodes(t, "--replicas", "3")
	logs := func() string { return logsOf(running...)() }
	stage("three nodes ready")

	aliceID := testbus.NewIdentity(t, "alice")
	nodes[0].seedAdmin(t, aliceID)
	alice := newClient(t, nodes[0].url(), aliceID)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	send := func(c *client.Client, n int) {
		for range n {
			text := fmt.Sprintf("message %d", len(want)+1)
			if _, err := c.Send(ctxT(t), room.ID, client.Message{Text: text}); err != nil {
				t.Fatal(err)
			}
			want = append(want, text)
		}
	}
	send(alice, 10)
	fileMsg := sendFileContaining(t, alice, room.ID, bytes.Repeat([]byte("the plan "), 50_000))
	want = append(want, "")
	waitCaughtUp(t, nodes[0], []string{"n1", "n2", "n3"}, streams, 30*time.Second, logs)
	stage("data on three replicas")

	// Disk loss: n3 stops, its store is wiped, and more is written
	// meanwhile; started again, it copies everything from the others.
	running[2].stop(t)
	if err := os.RemoveAll(nodes[2].natsStore()); err != nil {
		t.Fatal(err)
	}
	send(alice, 5)
	if _, err := alice.Rekey(ctxT(t), room.ID); err != nil {
		t.Fatal(err)
	}
	send(alice, 5)
	running[2] = nodes[2].start(t, "--replicas", "3")
	waitReady(t, nodes[2].url(), 90*time.Second, logs)
	st := waitCaughtUp(t, nodes[0], []string{"n1", "n2", "n3"}, streams, 60*time.Second, logs)
	stage("n3, its disk wiped, caught up")
	if n := st.node("n3"); n == nil || !n.Reachable || !n.Current {
		t.Errorf("n3 after its disk loss: %+v; want it reachable and current", n)
	}
	if got := readAll(t, newClient(t, nodes[2].url(), aliceID), room.ID); !slices.Equal(got, want) {
		t.Errorf("history through n3 after its disk loss = %q; want %q", got, want)
	}

	// Replacement: n4 joins, n2 is gone for good and removed.
	n4 := newClusterNode(t, "n4")
	n4.routes = routeURLs(nodes...)
	p4 := n4.start(t, "--replicas", "3")
	running = append(running, p4)
	waitReady(t, n4.url(), 90*time.Second, logs)
	stage("n4 ready")
	if _, stderr := runCLI(t, 1, "cluster", "remove-peer", "--nats-url", nodes[0].natsURL(), "--nats-store", nodes[0].natsStore(), "n2"); !strings.Contains(stderr, "still answers") {
		t.Errorf("remove-peer of a running node: %q; want it refused as still answering", stderr)
	}
	running[1].stop(t)
	out, _ := runCLI(t, 0, "cluster", "remove-peer", "--nats-url", nodes[0].natsURL(), "--nats-store", nodes[0].natsStore(), "n2")
	if !strings.Contains(out, "removed n2") {
		t.Errorf("remove-peer said %q; want it to say n2 is removed", out)
	}
	send(alice, 3)
	st = waitCaughtUp(t, nodes[0], []string{"n1", "n3", "n4"}, streams, 60*time.Second, logs)
	stage("n2 removed, its replicas on n4")
	if n := st.node("n2"); n != nil {
		t.Errorf("status after the removal lists n2: %+v", n)
	}
	alice4 := newClient(t, n4.url(), aliceID)
	if got := readAll(t, alice4, room.ID); !slices.Equal(got, want) {
		t.Errorf("history through n4 = %q; want %q", got, want)
	}
	var file bytes.Buffer
	if _, err := alice4.FetchFile(ctxT(t), room.ID, fileMsg, &file, nil); err != nil || file.Len() != 9*50_000 {
		t.Errorf("file through n4: %d bytes, %v; want %d\n%s", file.Len(), err, 9*50_000, logs())
	}
	text, _ := runCLI(t, 0, "cluster", "status", "--nats-url", n4.natsURL(), "--nats-store", n4.natsStore())
	for _, want := range []string{"cluster unibus-test: meta leader", "n4", "KV_unibus_users"} {
		if !strings.Contains(text, want) {
			t.Errorf("status through n4 lacks %q:\n%s", want, text)
		}
	}
}
