package main

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/bench"
)

// The runs themselves are tested in package bench; these tests check what
// the command adds: its flags, its exit statuses and what it prints.

// TestBenchFlags checks that every flag lands in its bench option, and
// that the defaults are the bench's.
func TestBenchFlags(t *testing.T) {
	t.Parallel()
	parse := func(args ...string) bench.Options {
		t.Helper()
		var o options
		if _, err := parseArgs(newFlagSet(lookup("bench"), &o), args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		return o.bench.options(o.timeout)
	}
	if got, want := parse(), bench.DefaultOptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("bench flags' defaults = %+v; want bench.DefaultOptions() %+v", got, want)
	}
	got := parse("--size", "64", "--msgs", "10", "--pub", "2", "--sub", "3", "--rate", "5", "--concurrency", "4", "--duration", "1s",
		"--requests", "7", "--rekey-members", "9", "--skip", " raw, api,", "--timeout", "5s")
	want := bench.Options{Size: 64, Msgs: 10, Pub: 2, Sub: 3, Rate: 5, Concurrency: 4, Duration: time.Second,
		Requests: 7, RekeyMembers: 9, Skip: []string{"raw", "api"}, Timeout: 5 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bench flags = %+v; want %+v", got, want)
	}
}

// TestBenchJSON: --json prints the report as one JSON document.
func TestBenchJSON(t *testing.T) {
	t.Parallel()
	alice := newStack(t, testbus.Options{}).seedUser(t, "alice", api.RoleAdmin)
	doc := decode[map[string]any](t, alice.must(t, "", "bench", "--msgs", "200", "--skip", "api", "--json"))
	for _, path := range []string{"raw.msgs_per_s", "e2e.msgs_per_s", "e2e.p99_ms", "e2e.read_msgs_per_s", "ratio"} {
		if v, ok := lookupNumber(doc, path); !ok || v <= 0 {
			t.Errorf("bench --json: %s = %v (present %v); want a positive number", path, v, ok)
		}
	}
	for path, want := range map[string]string{"skipped.api": "--skip", "skipped.rekey": "no --rekey-members N", "user": "alice", "auth_mode": "off"} {
		if got, _ := jsonAt(doc, path).(string); got != want {
			t.Errorf("bench --json: %s = %q; want %q", path, got, want)
		}
	}
	if room, _ := doc["room"].(string); !api.ValidRoomID(room) {
		t.Errorf("bench --json: room = %q; want the scratch room's id", room)
	}
}

// TestBenchTable runs a short bench as a plain member: the people's table
// is printed, and the rekey run is skipped with the reason.
func TestBenchTable(t *testing.T) {
	t.Parallel()
	bob := newStack(t, testbus.Options{}).seedUser(t, "bob", api.RoleMember)
	out := bob.must(t, "", "bench", "--msgs", "200", "--size", "64", "--rate", "2000", "--skip", "api", "--rekey-members", "5")
	for _, want := range []string{"raw NATS", "end to end", "E2E/raw", "P99", "skipped rekey:", "needs an admin", "deleted the scratch room"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Control plane") {
		t.Errorf("bench --skip api still ran the API part:\n%s", out)
	}
}

// TestBenchUsage: options out of range are bad usage (exit 2), found
// before the identity is read or the server called.
func TestBenchUsage(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "carol.json")
	if err := testbus.NewIdentity(t, "carol").Save(path); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--skip", "raw,disk"}, `--skip "disk"`},
		{[]string{"--size", "8"}, "--size 8"},
		{[]string{"--msgs", "0"}, "--msgs 0"},
		{[]string{"--rekey-members", "1"}, "at least 2 members"},
		{[]string{"--concurrency", "0"}, "--concurrency 0"},
		{[]string{"--pub", "3", "--msgs", "2"}, "every publisher needs a message"},
		{[]string{"--msgs", "0", "--identity", filepath.Join(t.TempDir(), "none.json")}, "--msgs 0"},
	}
	for _, tt := range tests {
		args := append([]string{"bench", "--identity", path, "--server", "http://127.0.0.1:1"}, tt.args...)
		r := runCLI(t, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("unibus %q = exit %d, stderr %q; want exit 2 and %q", args, r.code, r.stderr, tt.want)
		}
	}
}

// jsonAt finds a value in decoded JSON by a dotted path, or nil.
func jsonAt(doc map[string]any, path string) any {
	var v any = doc
	for _, k := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		if v = m[k]; v == nil {
			return nil
		}
	}
	return v
}

// lookupNumber finds a number in decoded JSON by a dotted path.
func lookupNumber(doc map[string]any, path string) (float64, bool) {
	f, ok := jsonAt(doc, path).(float64)
	return f, ok
}
