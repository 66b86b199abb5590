package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testnet"
	"github.com/enmanuel/unibus/pkg/api"
)

// TestServerListFailsOver: with several --server URLs a command goes past
// the nodes that do not answer; with none answering it fails within
// --timeout, naming each node tried and why.
func TestServerListFailsOver(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	dead, hung := testnet.DeadAddr(t), testnet.HungAddr(t)

	s.alice.must(t, "", "room", "create", "ops")
	out := s.alice.must(t, "", "room", "list", "--server", "http://"+dead+",http://"+hung+","+s.bus.HTTP.URL, "--timeout", "4s")
	if !strings.Contains(out, "ops") {
		t.Errorf("room list past a dead and a hung node = %q; want the room", out)
	}

	start := time.Now()
	r := s.alice.run(t, "", "room", "list", "--server", "http://"+dead+", http://"+hung, "--timeout", "2s")
	took := time.Since(start)
	r.wantFailure(t, "room list with no node answering", "no node answered: "+dead+" (connection refused), "+hung+" (timeout)", "--server")
	if took < 1500*time.Millisecond || took > 5*time.Second {
		t.Errorf("room list with no node answering failed after %s; want about --timeout 2s", took)
	}
}

// TestTimeoutFromTheEnvironment: UNIBUS_SERVER lists the nodes and
// UNIBUS_TIMEOUT bounds the wait; a bad --timeout or UNIBUS_TIMEOUT is bad
// usage.
func TestTimeoutFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	id := dir + "/id.json"
	if r := runCLI(t, "", "id", "new", "--name", "alice", "--identity", id); r.code != 0 {
		t.Fatalf("id new: exit %d: %s", r.code, r.stderr)
	}
	dead, hung := testnet.DeadAddr(t), testnet.HungAddr(t)
	t.Setenv("UNIBUS_SERVER", "http://"+hung+",http://"+dead)
	t.Setenv("UNIBUS_TIMEOUT", "1s")
	start := time.Now()
	runCLI(t, "", "room", "list", "--identity", id).wantFailure(t, "room list, UNIBUS_TIMEOUT=1s", hung+" (timeout), "+dead+" (connection refused)")
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("room list with UNIBUS_TIMEOUT=1s took %s", took)
	}

	for _, tt := range []struct {
		env  string
		args []string
		want string
	}{
		{"1s", []string{"--timeout", "0"}, `invalid value "0" for flag -timeout`},
		{"1s", []string{"--timeout", "soon"}, `"soon" is not a duration`},
		{"soon", nil, `UNIBUS_TIMEOUT="soon"`},
	} {
		t.Setenv("UNIBUS_TIMEOUT", tt.env)
		r := runCLI(t, "", append([]string{"room", "list", "--identity", id}, tt.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("UNIBUS_TIMEOUT=%s unibus room list %q = exit %d, stderr %q; want exit 2 and %q", tt.env, tt.args, r.code, r.stderr, tt.want)
		}
	}
	// A good flag stands in for a bad variable.
	t.Setenv("UNIBUS_TIMEOUT", "soon")
	runCLI(t, "", "room", "list", "--identity", id, "--timeout", "1s").wantFailure(t, "room list --timeout 1s, UNIBUS_TIMEOUT=soon", "no node answered")
}

// TestSendFailsWhenTheHistoryIsDown: unibus send does not hang while the
// history cannot store the message: it fails after --timeout, and says so.
func TestSendFailsWhenTheHistoryIsDown(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	room := strings.TrimSpace(s.alice.must(t, "", "room", "create", "ops"))
	s.alice.must(t, "", "send", room, "before")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.bus.JS.DeleteStream(ctx, api.HistoryStream); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := s.alice.run(t, "", "send", room, "lost", "--timeout", "1s")
	took := time.Since(start)
	r.wantFailure(t, "send with the history down", "message not stored", "within 1s", "--timeout")
	if took > 5*time.Second {
		t.Errorf("send with the history down failed after %s; want about --timeout 1s", took)
	}
}
