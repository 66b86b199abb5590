package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/readers"
)

// streamsCurrent waits until every stream the bus keeps has a leader
// and two current replicas, as node n sees them: the cluster can lose any
// one node.
func streamsCurrent(t *testing.T, n *clusterNode) {
	t.Helper()
	busJS := serviceJetStream(t, n.natsURL(), n.natsStore())
	ctlJS := controlJetStream(t, n.natsURL(), n.controlKey())
	current := func(js jetstream.JetStream, name string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, name)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	}
	waitFor(t, 60*time.Second, "every stream with a leader and two current replicas", func() bool {
		for _, name := range controlStreams() {
			if !current(ctlJS, name) {
				return false
			}
		}
		return current(busJS, api.HistoryStream)
	})
}

// readerHolder returns the name of the node that holds user's one history
// reader (an R1 consumer in memory: it dies with its node), as node n sees
// it.
func readerHolder(t *testing.T, n *clusterNode, user string) string {
	t.Helper()
	js := serviceJetStream(t, n.natsURL(), n.natsStore())
	var holder string
	waitFor(t, 10*time.Second, "the user's history reader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, api.HistoryStream)
		if err != nil {
			return false
		}
		lister := s.ListConsumers(ctx)
		for info := range lister.Info() {
			if info.Config.Metadata[readers.MetaUser] == user && info.Cluster != nil && info.Cluster.Leader != "" {
				holder = info.Cluster.Leader
			}
		}
		return holder != ""
	})
	return holder
}

// follower is a followed read of a room, collecting what it delivers.
type follower struct {
	mu   sync.Mutex
	got  []client.Received
	done chan error
}

// follow starts a followed read of room by c, ended at cleanup.
func follow(t *testing.T, c *client.Client, room string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{done: make(chan error, 1)}
	go func() {
		f.done <- c.Read(ctx, room, client.ReadOptions{Follow: true}, func(r client.Received) error {
			f.mu.Lock()
			f.got = append(f.got, r)
			f.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	return f
}

// waitFor waits until the follower has delivered every id in ids, and
// fails on an error, a message that cannot be read, or one twice.
func (f *follower) waitFor(t *testing.T, ids []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-f.done:
			t.Fatalf("the followed read ended: %v", err)
		default:
		}
		f.mu.Lock()
		seen := map[string]int{}
		for _, r := range f.got {
			if r.Err != nil {
				f.mu.Unlock()
				t.Fatalf("the follower got an unreadable message: %v", r.Err)
			}
			seen[r.ID]++
			if seen[r.ID] > 1 {
				f.mu.Unlock()
				t.Fatalf("the follower got message %s twice", r.ID)
			}
		}
		n := len(f.got)
		f.mu.Unlock()
		missing := 0
		for _, id := range ids {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			if n != len(ids) {
				t.Fatalf("the follower got %d messages; want the %d sent", n, len(ids))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower is missing %d of %d messages after 60s", missing, len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterClient is a client of id given every node's URL.
func clusterClient(t *testing.T, urls []string, id *identity.Identity) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Servers: urls, Identity: id, Logger: testbus.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestClusterClientsCarryOnWhenANodeStops is SPEC's "losing any one node
// loses nothing acknowledged, and clients holding every node's URL carry
// on": clients given the three nodes' URLs, all first talking to n1 (API
// and NATS), go on sending, reading (a followed read) and changing a
// room's membership when n1 stops; then, n1 back, when the node holding
// the follower's history reader stops. No call fails, the follower gets
// every message once, and the history holds each once. Under enforce,
// NATS authenticates every reconnection and membershipd closes a user's
// connections when its rooms change.
func TestClusterClientsCarryOnWhenANodeStops(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	t.Parallel()
	for _, mode := range []string{"off", "enforce"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			clientsCarryOn(t, "--replicas", "3", "--bus-auth", mode)
		})
	}
}

func clientsCarryOn(t *testing.T, flags ...string) {
	nodes, running := startInProcessNodes(t, flags...)
	aliceID, bobID, carolID := testbus.NewIdentity(t, "alice"), testbus.NewIdentity(t, "bob"), testbus.NewIdentity(t, "carol")
	nodes[0].seedAdmin(t, aliceID)

	// /v1/info lists every node's NATS URL, the answering node's first.
	waitFor(t, 10*time.Second, "/v1/info listing the three nodes' NATS URLs", func() bool {
		var info api.Info
		getJSON(t, nodes[0].url()+"/v1/info", &info)
		return len(info.NATSURLs) == 3 && info.NATSURLs[0] == info.NATSURL && info.NATSURL == nodes[0].natsURL()
	})

	urls := []string{nodes[0].url(), nodes[1].url(), nodes[2].url()}
	alice, bob := clusterClient(t, urls, aliceID), clusterClient(t, urls, bobID)
	for _, id := range []*identity.Identity{bobID, carolID} {
		if _, err := alice.AddUser(ctxT(t), id.Public().Token(), false); err != nil {
			t.Fatal(err)
		}
	}
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	f := follow(t, bob, room.ID)
	var sent []string
	sendSome := func(what string, n int) {
		t.Helper()
		for i := range n {
			id, err := alice.Send(ctxT(t), room.ID, client.Message{Text: fmt.Sprintf("%s %d", what, i)})
			if err != nil {
				t.Fatalf("send %q %d: %v", what, i, err)
			}
			sent = append(sent, id)
		}
	}
	sendSome("before", 5)
	f.waitFor(t, sent)
	streamsCurrent(t, nodes[1])

	// n1, the node every client talks to, stops.
	running[0].stop(t)
	sendSome("n1 stopped", 5)
	if _, err := alice.Rekey(ctxT(t), room.ID); err != nil {
		t.Fatalf("rekey with n1 stopped: %v", err)
	}
	if _, err := alice.AddMember(ctxT(t), room.ID, "carol"); err != nil {
		t.Fatalf("add with n1 stopped: %v", err)
	}
	sendSome("after the rekey and the add", 5)
	bobs, err := bob.Send(ctxT(t), room.ID, client.Message{Text: "bob, at the new epoch"})
	if err != nil {
		t.Fatalf("bob sends with n1 stopped: %v", err)
	}
	sent = append(sent, bobs)
	f.waitFor(t, sent)

	// n1 back, the node holding bob's history reader stops: bob's client
	// opens another reader, through another node, from the next message.
	running[0] = nodes[0].start(t, flags...)
	waitReady(t, nodes[0].url(), 90*time.Second, logsOf(running...))
	streamsCurrent(t, nodes[0])
	holder := readerHolder(t, nodes[0], bobID.UserKey())
	t.Logf("bob's history reader is on %s", holder)
	for i, n := range nodes {
		if n.name == holder {
			running[i].stop(t)
		}
	}
	sendSome("the reader's node stopped", 5)
	if _, err := alice.Rekey(ctxT(t), room.ID); err != nil {
		t.Fatalf("rekey with the reader's node stopped: %v", err)
	}
	sendSome("after the second rekey", 3)
	f.waitFor(t, sent)

	// The history holds each message once, in the order sent.
	var all []string
	err = alice.Read(ctxT(t), room.ID, client.ReadOptions{}, func(r client.Received) error {
		if r.Err != nil {
			return r.Err
		}
		all = append(all, r.ID)
		return nil
	})
	if err != nil || !slices.Equal(all, sent) {
		t.Errorf("the history holds %d messages (%v); want the %d sent, in order, each once", len(all), err, len(sent))
	}
}
