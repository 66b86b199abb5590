package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// `membershipd cluster replicas N` is the one way the replicas of an
// existing stream change: membershipd and the host tools make a stream
// with --replicas copies when it does not exist and never change one
// that does (docs/cluster.md, "Replicas"). It sets N on every stream the
// bus keeps, in both accounts: every stream of the control account (the
// KV buckets, the blob Object Store) and the history stream of the bus
// account, then waits for the new replicas to catch up.

const clusterReplicasUsage = `usage: membershipd cluster replicas [--nats-url URL] [--nats-store DIR] [--control-key PATH] [--service-key PATH] [--ca CERT] [--wait D] N

Sets the replicas of every stream the bus keeps to N: the KV buckets and
the blob bucket (the control account, with the node's control key) and
the message history (the bus account, with its service key under
--bus-auth enforce). Streams already at N are left alone. It then waits
(--wait) until every stream has N current replicas. Nodes started with
another --replicas keep what this sets; start them with --replicas N so
that their logs agree. N above 1 needs a cluster of at least N nodes.
`

// runClusterReplicas runs `membershipd cluster replicas ARGS`.
func runClusterReplicas(args []string, stdout, stderr io.Writer) int {
	fs := clusterFlagSet("membershipd cluster replicas", clusterReplicasUsage, stderr)
	var df dataFlags
	df.register(fs)
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the new replicas to catch up; 0 does not wait")
	pos, code, ok := parseClusterFlags(fs, args, 1, "N", stderr)
	if !ok {
		return code
	}
	n, err := strconv.Atoi(pos[0])
	if err != nil || n < 1 {
		fmt.Fprintf(stderr, "membershipd cluster replicas: N is %q: give a number of copies, 1 or more (3 in a three-node cluster)\n", pos[0])
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	if err := setReplicas(ctx, &df, n, *wait, stdout); err != nil {
		fmt.Fprintf(stderr, "membershipd cluster replicas: %v\n", err)
		return 1
	}
	return 0
}

// replicaTarget is one stream cluster replicas sets.
type replicaTarget struct {
	account, name string
	js            jetstream.JetStream
	before        int
	changed       bool
	err           error
}

// setReplicas sets n replicas on every stream of the bus through the
// node of df, prints what it did and waits up to wait for them to catch
// up.
func setReplicas(ctx context.Context, df *dataFlags, n int, wait time.Duration, stdout io.Writer) error {
	conns, err := df.dial("membershipd cluster replicas")
	if err != nil {
		return err
	}
	defer conns.close()
	targets, err := replicaTargets(ctx, conns, df.timeout)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("the bus keeps no stream yet: start membershipd with --replicas N, which makes its streams with N copies")
	}
	for _, t := range targets {
		t.err = t.set(ctx, n, df.timeout)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tSTREAM\tREPLICAS")
	failed := 0
	for _, t := range targets {
		switch {
		case t.err != nil:
			failed++
			fmt.Fprintf(tw, "%s\t%s\t%d, not changed: %v\n", t.account, t.name, t.before, t.err)
		case t.changed:
			fmt.Fprintf(tw, "%s\t%s\t%d -> %d\n", t.account, t.name, t.before, n)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%d (as asked)\n", t.account, t.name, n)
		}
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("%d of %d streams not changed (above); the others are", failed, len(targets))
	}
	if wait <= 0 {
		return nil
	}
	behind := catchUp(ctx, targets, n, wait, df.timeout)
	if len(behind) > 0 {
		return fmt.Errorf("not every replica caught up within %s (--wait): %s; `membershipd cluster status` shows them as they do", wait, strings.Join(behind, "; "))
	}
	fmt.Fprintf(stdout, "every stream has %d current replica(s)\n", n)
	return nil
}

// replicaTargets lists the streams of the bus: every stream of the
// control account, sorted, then the history stream if it exists.
func replicaTargets(ctx context.Context, conns accountConns, timeout time.Duration) ([]*replicaTarget, error) {
	var targets []*replicaTarget
	ctlJS, err := jetstream.New(conns[embeddednats.ControlAccount])
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	names := ctlJS.StreamNames(lctx)
	var ctl []string
	for name := range names.Name() {
		ctl = append(ctl, name)
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list the control account's streams: %w", err)
	}
	sort.Strings(ctl)
	for _, name := range ctl {
		targets = append(targets, &replicaTarget{account: embeddednats.ControlAccount, name: name, js: ctlJS})
	}
	busJS, err := jetstream.New(conns[embeddednats.BusAccount])
	if err != nil {
		return nil, err
	}
	switch _, err := busJS.Stream(lctx, api.HistoryStream); {
	case err == nil:
		targets = append(targets, &replicaTarget{account: embeddednats.BusAccount, name: api.HistoryStream, js: busJS})
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("the history stream: %w", err)
	}
	return targets, nil
}

// set gives the stream n replicas, its configuration otherwise as it is.
func (t *replicaTarget) set(ctx context.Context, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := t.js.Stream(ctx, t.name)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	t.before = max(1, cfg.Replicas)
	if t.before == n {
		return nil
	}
	cfg.Replicas = n
	if _, err := t.js.UpdateStream(ctx, cfg); err != nil {
		var apiErr *jetstream.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeReplicasUnsupported:
			return errors.New("a standalone NATS keeps one copy: replicas above 1 need a cluster")
		case errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrCodeClusterNoPeers || apiErr.Code == 503):
			return fmt.Errorf("%w: %d replicas need %d nodes up", err, n, n)
		}
		return err
	}
	t.changed = true
	return nil
}

// catchUp waits up to wait until every changed stream of targets has a
// leader and n-1 current replicas besides it, and returns those that do
// not, each with what it lacks.
func catchUp(ctx context.Context, targets []*replicaTarget, n int, wait, timeout time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		var behind []string
		for _, t := range targets {
			if !t.changed {
				continue
			}
			if why := t.lacks(ctx, n, timeout); why != "" {
				behind = append(behind, t.name+": "+why)
			}
		}
		if len(behind) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return behind
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lacks says what keeps the stream from n current replicas; "" if
// nothing does.
func (t *replicaTarget) lacks(ctx context.Context, n int, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := t.js.Stream(ctx, t.name)
	if err != nil {
		return err.Error()
	}
	info := st.CachedInfo()
	if n == 1 {
		if ci := info.Cluster; ci != nil && len(ci.Replicas) > 0 {
			return fmt.Sprintf("%d replicas still to go", len(ci.Replicas))
		}
		return ""
	}
	ci := info.Cluster
	if ci == nil || ci.Leader == "" {
		return "no leader yet"
	}
	current := 1
	for _, p := range ci.Replicas {
		if p.Current {
			current++
		}
	}
	if current < n {
		return fmt.Sprintf("%d of %d replicas current", current, n)
	}
	return ""
}
