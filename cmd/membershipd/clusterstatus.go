package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// clusterStatus is what `membershipd cluster status` reports: the nodes
// and the streams of every account with JetStream, as the nodes answered
// $SYS.REQ.SERVER.PING.JSZ.
type clusterStatus struct {
	// Cluster is the cluster's name; empty for a standalone server.
	Cluster string `json:"cluster,omitempty"`
	// MetaLeader is the node leading JetStream's meta group, which
	// places streams; empty when there is none (no quorum).
	MetaLeader string         `json:"meta_leader,omitempty"`
	Nodes      []nodeStatus   `json:"nodes"`
	Streams    []streamStatus `json:"streams"`
}

// nodeStatus is one node: one that answered, or one the meta leader
// knows of.
type nodeStatus struct {
	Name       string `json:"name"`
	MetaLeader bool   `json:"meta_leader"`
	// Reachable: the node answered within the timeout.
	Reachable bool `json:"reachable"`
	// Current and Lag are the meta leader's view of the node: caught up
	// with the meta group, or that many operations behind. Offline: the
	// meta leader has not heard from it lately.
	Current bool   `json:"current"`
	Lag     uint64 `json:"lag,omitempty"`
	Offline bool   `json:"offline,omitempty"`
	// Version is the node's nats-server version, when it answered.
	Version string `json:"nats_version,omitempty"`
}

// streamStatus is one stream, as its leader reports it (any replica's
// report when it has no leader).
type streamStatus struct {
	Account string `json:"account"`
	Name    string `json:"name"`
	// Replicas is the number of copies the stream asks for.
	Replicas int    `json:"replicas"`
	Leader   string `json:"leader,omitempty"`
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	LastSeq  uint64 `json:"last_seq"`
	// Peers are the nodes holding a replica, the leader first.
	Peers []replicaStatus `json:"peers"`
}

// replicaStatus is one replica of a stream: the leader's view of it, and
// what the node itself holds when it answered.
type replicaStatus struct {
	Node    string `json:"node"`
	Leader  bool   `json:"leader"`
	Current bool   `json:"current"`
	Lag     uint64 `json:"lag,omitempty"`
	Offline bool   `json:"offline,omitempty"`
	// Local is the stream's state in the node's own store; nil when the
	// node did not answer.
	Local *replicaState `json:"local,omitempty"`
}

// replicaState is a replica's own count of the stream.
type replicaState struct {
	Messages uint64 `json:"messages"`
	LastSeq  uint64 `json:"last_seq"`
}

// jszReply is one node's answer to $SYS.REQ.SERVER.PING.JSZ.
type jszReply struct {
	Server server.ServerInfo `json:"server"`
	Data   *server.JSInfo    `json:"data"`
	Error  *server.ApiError  `json:"error"`
}

// pingJSZ sends $SYS.REQ.SERVER.PING.JSZ through nc, a connection in the
// system account, and gathers the answers: until every node the meta
// leader knows to be online has answered, or timeout.
func pingJSZ(nc *nats.Conn, timeout time.Duration) ([]jszReply, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, -1)
	req, _ := json.Marshal(server.JSzOptions{Accounts: true, Streams: true, Config: true})
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.JSZ", inbox, req); err != nil {
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	var replies []jszReply
	for !answeredByAll(replies) {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		m, err := sub.NextMsg(wait)
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return nil, err
		}
		var r jszReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return nil, fmt.Errorf("a node's answer: %w", err)
		}
		replies = append(replies, r)
	}
	if len(replies) == 0 {
		return nil, fmt.Errorf("no node answered within %s: is %s the system key of this node (--system-key, --nats-store)?", timeout, systemKeyFile)
	}
	return replies, nil
}

// answeredByAll reports whether replies hold an answer from the meta
// leader, or a standalone server, and from every node it holds online.
func answeredByAll(replies []jszReply) bool {
	got := map[string]bool{}
	for _, r := range replies {
		got[r.Server.Name] = true
	}
	for _, r := range replies {
		if r.Data == nil {
			continue
		}
		meta := r.Data.Meta
		if meta == nil {
			return true // standalone
		}
		if meta.Leader != r.Server.Name {
			continue
		}
		for _, p := range meta.Replicas {
			if !p.Offline && !got[p.Name] {
				return false
			}
		}
		return true
	}
	return false
}

// buildClusterStatus puts the nodes' answers together.
func buildClusterStatus(replies []jszReply) clusterStatus {
	var st clusterStatus
	nodes := map[string]*nodeStatus{}
	node := func(name string) *nodeStatus {
		n, ok := nodes[name]
		if !ok {
			n = &nodeStatus{Name: name}
			nodes[name] = n
		}
		return n
	}
	// The meta leader's view of the others, from its own answer.
	var leaderMeta *server.MetaClusterInfo
	for _, r := range replies {
		n := node(r.Server.Name)
		n.Reachable, n.Version = true, r.Server.Version
		if r.Data == nil {
			continue
		}
		if m := r.Data.Meta; m != nil {
			st.Cluster = m.Name
			if m.Leader == r.Server.Name {
				leaderMeta = m
			}
		}
	}
	if leaderMeta != nil {
		st.MetaLeader = leaderMeta.Leader
		l := node(leaderMeta.Leader)
		l.MetaLeader, l.Current = true, true
		for _, p := range leaderMeta.Replicas {
			n := node(p.Name)
			n.Current, n.Lag, n.Offline = p.Current, p.Lag, p.Offline
		}
	}
	for _, n := range nodes {
		st.Nodes = append(st.Nodes, *n)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })

	// Each stream as its leader sees it, and each replica's own state.
	type key struct{ account, stream string }
	type seen struct {
		detail  server.StreamDetail
		node    string
		leader  bool
		locally map[string]replicaState
	}
	streams := map[key]*seen{}
	for _, r := range replies {
		if r.Data == nil {
			continue
		}
		for _, acc := range r.Data.AccountDetails {
			for _, d := range acc.Streams {
				k := key{acc.Name, d.Name}
				s, ok := streams[k]
				if !ok {
					s = &seen{locally: map[string]replicaState{}}
					streams[k] = s
				}
				s.locally[r.Server.Name] = replicaState{Messages: d.State.Msgs, LastSeq: d.State.LastSeq}
				isLeader := st.Cluster == "" || (d.Cluster != nil && d.Cluster.Leader == r.Server.Name)
				if !ok || (isLeader && !s.leader) {
					s.detail, s.node, s.leader = d, r.Server.Name, isLeader
				}
			}
		}
	}
	for k, s := range streams {
		ss := streamStatus{
			Account: k.account, Name: k.stream, Replicas: 1,
			Messages: s.detail.State.Msgs, Bytes: s.detail.State.Bytes, LastSeq: s.detail.State.LastSeq,
		}
		if c := s.detail.Config; c != nil && c.Replicas > 1 {
			ss.Replicas = c.Replicas
		}
		local := func(name string) *replicaState {
			if v, ok := s.locally[name]; ok {
				return &v
			}
			return nil
		}
		switch c := s.detail.Cluster; {
		case c == nil || st.Cluster == "":
			ss.Leader = s.node
			ss.Peers = []replicaStatus{{Node: s.node, Leader: true, Current: true, Local: local(s.node)}}
		default:
			ss.Leader = c.Leader
			if c.Leader != "" {
				ss.Peers = append(ss.Peers, replicaStatus{Node: c.Leader, Leader: true, Current: true, Local: local(c.Leader)})
			}
			for _, p := range c.Replicas {
				ss.Peers = append(ss.Peers, replicaStatus{Node: p.Name, Current: p.Current, Lag: p.Lag, Offline: p.Offline, Local: local(p.Name)})
			}
		}
		st.Streams = append(st.Streams, ss)
	}
	sort.Slice(st.Streams, func(i, j int) bool {
		a, b := st.Streams[i], st.Streams[j]
		if a.Account != b.Account {
			return a.Account < b.Account
		}
		return a.Name < b.Name
	})
	if st.Nodes == nil {
		st.Nodes = []nodeStatus{}
	}
	if st.Streams == nil {
		st.Streams = []streamStatus{}
	}
	return st
}

// node returns the node called name, or nil.
func (st clusterStatus) node(name string) *nodeStatus {
	for i := range st.Nodes {
		if st.Nodes[i].Name == name {
			return &st.Nodes[i]
		}
	}
	return nil
}

// print writes st as text: a line on the cluster, a table of nodes and
// one of streams.
func (st clusterStatus) print(w io.Writer) error {
	switch {
	case st.Cluster == "":
		fmt.Fprintln(w, "standalone server (no cluster)")
	case st.MetaLeader == "":
		fmt.Fprintf(w, "cluster %s: NO META LEADER (no quorum: fewer than half the nodes are up, or they cannot reach each other)\n", st.Cluster)
	default:
		fmt.Fprintf(w, "cluster %s: meta leader %s\n", st.Cluster, st.MetaLeader)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tREACHABLE\tSTATE")
	for _, n := range st.Nodes {
		role := "follower"
		switch {
		case st.Cluster == "":
			role = "standalone"
		case n.MetaLeader:
			role = "meta leader"
		}
		state := "current"
		switch {
		case st.Cluster == "":
		case st.MetaLeader == "":
			state = "unknown"
		case n.Offline:
			state = "offline"
		case n.Lag > 0:
			state = fmt.Sprintf("behind %d", n.Lag)
		case !n.Current:
			state = "catching up"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, role, yesNo(n.Reachable), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tSTREAM\tREPLICAS\tLEADER\tMESSAGES\tPEERS")
	for _, s := range st.Streams {
		leader := s.Leader
		if leader == "" {
			leader = "NONE"
		}
		peers := make([]string, len(s.Peers))
		for i, p := range s.Peers {
			peers[i] = p.Node + " " + p.state()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", s.Account, s.Name, s.Replicas, leader, s.Messages, strings.Join(peers, ", "))
	}
	return tw.Flush()
}

// state is a replica's state in one word or two.
func (p replicaStatus) state() string {
	switch {
	case p.Leader:
		return "leader"
	case p.Offline:
		return "offline"
	case p.Lag > 0:
		return fmt.Sprintf("behind %d", p.Lag)
	case !p.Current:
		return "catching up"
	}
	return "current"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

const clusterStatusUsage = `usage: membershipd cluster status [--nats-url URL] [--system-key PATH] [--nats-store DIR] [--ca CERT] [--json]

Every node of the cluster (its role: meta leader or follower; whether it
answered; how far behind the meta leader it is) and every stream of the bus
and control accounts (the copies it asks for, its leader, the state of each
replica: current, behind N operations, catching up, offline). --json prints
one JSON document with the same, and each replica's own message count.
`

// runClusterStatus runs `membershipd cluster status`.
func runClusterStatus(args []string, stdout, stderr io.Writer) int {
	fs := clusterFlagSet("membershipd cluster status", clusterStatusUsage, stderr)
	var sf systemFlags
	sf.register(fs)
	asJSON := fs.Bool("json", false, "print one JSON document")
	if _, code, ok := parseClusterFlags(fs, args, 0, "", stderr); !ok {
		return code
	}
	st, err := queryClusterStatus(&sf.nodeFlags, sf.systemKey)
	if err != nil {
		fmt.Fprintf(stderr, "membershipd cluster status: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(st)
	} else {
		err = st.print(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "membershipd cluster status: %v\n", err)
		return 1
	}
	return 0
}

// queryClusterStatus asks the nodes through the node at nf for their
// state.
func queryClusterStatus(nf *nodeFlags, systemKey string) (clusterStatus, error) {
	nc, err := nf.dialSystem("membershipd cluster status", systemKey)
	if err != nil {
		return clusterStatus{}, err
	}
	defer nc.Close()
	replies, err := pingJSZ(nc, nf.timeout)
	if err != nil {
		return clusterStatus{}, err
	}
	return buildClusterStatus(replies), nil
}

const clusterRemovePeerUsage = `usage: membershipd cluster remove-peer [--nats-url URL] [--system-key PATH] [--nats-store DIR] [--ca CERT] [--force] NAME

Removes the node NAME, gone for good (a dead machine, a node replaced under
a new name), from the cluster's JetStream: the meta group forgets it and
each stream that had a replica there places it on another node, which
copies it from the others. Start the replacement node first, so that there
is a node to take the replicas. A node that still answers is refused
unless --force: stop it first, or it comes back. docs/cluster.md,
"Replacing a node".
`

// metaLeaderWait bounds how long remove-peer waits for a meta leader.
const metaLeaderWait = 15 * time.Second

// runClusterRemovePeer runs `membershipd cluster remove-peer NAME`.
func runClusterRemovePeer(args []string, stdout, stderr io.Writer) int {
	fs := clusterFlagSet("membershipd cluster remove-peer", clusterRemovePeerUsage, stderr)
	var sf systemFlags
	sf.register(fs)
	force := fs.Bool("force", false, "remove the node even though it still answers")
	pos, code, ok := parseClusterFlags(fs, args, 1, "NAME", stderr)
	if !ok {
		return code
	}
	if err := removePeer(&sf.nodeFlags, sf.systemKey, pos[0], *force, stdout); err != nil {
		fmt.Fprintf(stderr, "membershipd cluster remove-peer: %v\n", err)
		return 1
	}
	return 0
}

// removePeer asks the meta leader, through the node at nf, to remove the
// node called name.
func removePeer(nf *nodeFlags, systemKey, name string, force bool, stdout io.Writer) error {
	nc, err := nf.dialSystem("membershipd cluster remove-peer", systemKey)
	if err != nil {
		return err
	}
	defer nc.Close()
	// A node just stopped may have been the meta leader: give the others
	// the moment an election takes.
	var st clusterStatus
	for deadline := time.Now().Add(metaLeaderWait); ; {
		replies, err := pingJSZ(nc, nf.timeout)
		if err != nil {
			return err
		}
		st = buildClusterStatus(replies)
		if st.Cluster == "" || st.MetaLeader != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	switch n := st.node(name); {
	case st.Cluster == "":
		return errors.New("a standalone server has no peers to remove")
	case st.MetaLeader == "":
		return errors.New("the cluster has no meta leader (no quorum): start enough nodes for a majority first")
	case n == nil:
		return fmt.Errorf("no node %q in cluster %s: `membershipd cluster status` lists them", name, st.Cluster)
	case n.MetaLeader && n.Reachable:
		return fmt.Errorf("%s is the meta leader and still answers: stop it first", name)
	case n.Reachable && !force:
		return fmt.Errorf("%s still answers: stop it first (a running node removed from the cluster comes back), or pass --force", name)
	}
	// Only the meta leader answers; a request it did not get (a leader
	// just elected, or changing) times out and is sent again. One that
	// was carried out but whose answer was lost finds the node gone.
	req, _ := json.Marshal(server.JSApiMetaServerRemoveRequest{Server: name})
	var resp server.JSApiMetaServerRemoveResponse
	for deadline, retried := time.Now().Add(metaLeaderWait), false; ; retried = true {
		m, err := nc.Request(server.JSApiRemoveServer, req, nf.timeout)
		if (errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)) && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("ask the meta leader: %w", err)
		}
		resp = server.JSApiMetaServerRemoveResponse{}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("the meta leader's answer: %w", err)
		}
		if retried && resp.Error != nil && resp.Error.ErrCode == uint16(server.JSClusterServerNotMemberErr) {
			resp = server.JSApiMetaServerRemoveResponse{Success: true}
		}
		break
	}
	if resp.Error != nil {
		return fmt.Errorf("the meta leader refused: %s", resp.Error.Description)
	}
	if !resp.Success {
		return errors.New("the meta leader did not confirm the removal; check `membershipd cluster status`")
	}
	fmt.Fprintf(stdout, "removed %s from cluster %s; its replicas move to the other nodes (membershipd cluster status shows them catch up)\n", name, st.Cluster)
	return nil
}
