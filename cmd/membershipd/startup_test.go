package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRunDurabilityFlags checks --replicas (and its older name
// --kv-replicas), --sync and --start-timeout against each other: a bad
// combination is refused before anything starts, saying what to do.
func TestRunDurabilityFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := []string{"--db", filepath.Join(dir, "u.db"), "--store-dir", filepath.Join(dir, "b"), "--nats-store", filepath.Join(dir, "js"), "--nats-port", "-1", "--http-port", "0"}
	cluster := []string{"--cluster-name", "c", "--server-name", "n1", "--routes", "nats://127.0.0.1:1"}
	tests := []struct {
		name    string
		args    []string
		wantMsg string
	}{
		{"no replicas", []string{"--replicas", "0"}, "--replicas 0: use 1 or more"},
		{"replicas without a cluster", []string{"--replicas", "3"}, "needs a cluster"},
		{"older name without a cluster", []string{"--kv-replicas", "3"}, "needs a cluster"},
		{"the two names disagree", append([]string{"--replicas", "3", "--kv-replicas", "2"}, cluster...), "disagree"},
		{"unknown sync", []string{"--sync", "sometimes"}, "use always or interval"},
		{"kv with interval", []string{"--store", "kv", "--sync", "interval"}, "the KV store needs --sync always"},
		{"sync with an external NATS", []string{"--nats-url", "nats://127.0.0.1:1", "--sync", "always"}, "set sync_interval in that server's configuration"},
		{"negative start timeout", []string{"--start-timeout", "-1s"}, "--start-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			err := run(context.Background(), append(append([]string(nil), base...), tt.args...), io.Discard, &stderr)
			if code := exitCode(err, &stderr); code != 1 || !strings.Contains(stderr.String(), tt.wantMsg) {
				t.Errorf("run(%q) = exit %d, stderr %q; want 1 and %q", tt.args, code, stderr.String(), tt.wantMsg)
			}
		})
	}
}

// TestRunReadyz checks /readyz on a standalone node of each store: 200
// once started, in the API's JSON; only GET and HEAD.
func TestRunReadyz(t *testing.T) {
	forEachStore(t, func(t *testing.T, store ...string) {
		s := startServer(t, t.TempDir(), store...)
		var ok api.Health
		if status := getJSON(t, s.URL+"/readyz", &ok); status != http.StatusOK || ok.Status != "ready" {
			t.Errorf("GET /readyz = %d %+v; want 200 ready", status, ok)
		}
		if status := doJSON(t, mustRequest(t, http.MethodPost, s.URL+"/readyz"), nil); status != http.StatusMethodNotAllowed {
			t.Errorf("POST /readyz = %d; want 405", status)
		}
		if !logged(s, "writes synced: before each acknowledgement (--sync always)") {
			t.Errorf("the start did not log that writes are synced before each acknowledgement (the default --sync always)")
		}
	})
}

// TestRunStartWaitsThenGivesUp starts one node of a three-node cluster
// whose other nodes never come: it listens and waits (/healthz 200,
// /readyz 503 saying what for), returns nil when stopped while waiting,
// and with a short --start-timeout gives up with an error naming it.
func TestRunStartWaitsThenGivesUp(t *testing.T) {
	t.Parallel()
	nodes := newClusterNodes(t, 3)
	n := nodes[0]

	ctx, cancel := context.WithCancel(context.Background())
	logs := newLogCapture(t)
	done := make(chan error, 1)
	go func() { done <- run(ctx, n.args("--replicas", "3"), io.Discard, logs) }()
	waitFor(t, 20*time.Second, "the lone node logs what it waits for", func() bool {
		return slicesContain(logs.Lines(), "waiting for the JetStream meta leader")
	})
	status, e, err := readyz(n.url())
	if status != http.StatusServiceUnavailable || !strings.Contains(e.Message, "waiting for the JetStream meta leader") || err != nil {
		t.Errorf("/readyz while waiting = %d %+v (%v); want 503 saying it waits for the meta leader", status, e, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run stopped while waiting = %v; want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return within 20s of being stopped while waiting")
	}
	logs.close()

	var stderr bytes.Buffer
	began := time.Now()
	err = run(context.Background(), n.args("--replicas", "3", "--start-timeout", "2s"), io.Discard, &stderr)
	if took := time.Since(began); took < 2*time.Second {
		t.Errorf("run with --start-timeout 2s gave up after %s; want 2s at least", took)
	}
	if err == nil || !strings.Contains(err.Error(), "--start-timeout") || !strings.Contains(err.Error(), "meta leader") {
		t.Errorf("run with --start-timeout 2s and no other node = %v; want an error naming --start-timeout and what it waited for", err)
	}
}

// TestStartStepsWaitForAStreamNotFoundYet: a start step gives up on what
// waiting cannot mend (JetStream off, a setting refused), and waits on a
// stream or bucket not found, which a node that has just rejoined learns
// of from the meta leader a moment later.
func TestStartStepsWaitForAStreamNotFoundYet(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"stream not found", fmt.Errorf("blobstore: open the stream of bucket %q: %w", "unibus_blobs", jetstream.ErrStreamNotFound), false},
		{"bucket not found", fmt.Errorf("kv store: %w", jetstream.ErrBucketNotFound), false},
		{"stream not found, as the API says it", &jetstream.APIError{Code: http.StatusNotFound, ErrorCode: jetstream.JSErrCodeStreamNotFound, Description: "stream not found"}, false},
		{"no meta leader", &jetstream.APIError{Code: http.StatusServiceUnavailable, ErrorCode: jsErrCodeClusterNotAvail}, false},
		{"no answer", context.DeadlineExceeded, false},
		{"JetStream off", jetstream.ErrJetStreamNotEnabled, true},
		{"replicas refused on a standalone server", &jetstream.APIError{Code: http.StatusInternalServerError, ErrorCode: jsErrCodeReplicasUnsupported}, true},
		{"a setting refused", &jetstream.APIError{Code: http.StatusBadRequest, ErrorCode: 10052, Description: "invalid stream config"}, true},
	}
	for _, tt := range tests {
		if got := permanent(tt.err); got != tt.want {
			t.Errorf("permanent(%s: %v) = %v; want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
