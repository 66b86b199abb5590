package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
)

// TestBenchJSON runs every part of a small bench as an admin and checks
// that the figures are there and positive, and that it cleaned up. It
// asserts nothing about speed.
func TestBenchJSON(t *testing.T) {
	t.Parallel()
	s := newStack(t, testbus.Options{})
	alice := s.seedUser(t, "alice", api.RoleAdmin)
	doc := decode[map[string]any](t, alice.must(t, "", "bench", "--msgs", "500", "--rekey-members", "20", "--duration", "300ms", "--json"))
	for _, path := range []string{
		"raw.msgs_per_s", "raw.mb_per_s", "raw.p50_ms", "raw.p99_ms", "raw.max_ms",
		"e2e.msgs_per_s", "e2e.mb_per_s", "e2e.p50_ms", "e2e.p90_ms", "e2e.p99_ms", "e2e.max_ms",
		"ratio",
		"api.concurrency", "api.room_list.per_s", "api.room_list.requests", "api.key_fetch.per_s", "api.key_fetch.p99_ms",
		"rekey.members", "rekey.seconds", "rekey.seal_upload_seconds", "rekey.fetch_seconds",
	} {
		v, ok := lookupNumber(doc, path)
		if !ok || v <= 0 {
			t.Errorf("bench --json: %s = %v (present %v); want a positive number", path, v, ok)
		}
	}
	if v, _ := lookupNumber(doc, "rekey.members"); v != 20 {
		t.Errorf("rekey.members = %v; want 20", v)
	}
	// On a bus without enforce the members take their keys from
	// membershipd's deliveries, every one of them.
	if d, _ := jsonAt(doc, "rekey.delivery").(string); d != "nats" {
		t.Errorf("rekey.delivery = %q; want nats", d)
	}
	if v, _ := lookupNumber(doc, "rekey.delivered"); v != 20 {
		t.Errorf("rekey.delivered = %v; want all 20 members", v)
	}
	if v, _ := lookupNumber(doc, "rekey.fetched"); v != 0 {
		t.Errorf("rekey.fetched = %v; want 0", v)
	}
	for _, path := range []string{"raw.lost", "e2e.lost"} {
		if v, _ := lookupNumber(doc, path); v != 0 {
			t.Errorf("%s = %v; want 0 on loopback", path, v)
		}
	}
	room, _ := doc["room"].(string)
	if !api.ValidRoomID(room) {
		t.Fatalf("room = %q; want the scratch room's id", room)
	}

	// Clean-up: the throwaway users are revoked and the room's history
	// purged; only alice is still active.
	users, err := s.bus.Store.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 20 {
		t.Errorf("%d users registered; want alice and 19 throwaway users", len(users))
	}
	for _, u := range users {
		if u.Name != "alice" && u.Active() {
			t.Errorf("throwaway user %s is still active after the bench", u.Name)
		}
	}
	stream, err := s.bus.JS.Stream(context.Background(), api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background(), jetstream.WithSubjectFilter(api.RoomSubject(room)))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[api.RoomSubject(room)]; n != 0 {
		t.Errorf("the scratch room keeps %d messages in history after the bench; want them purged", n)
	}
}

// TestBenchTable runs a short bench as a plain member: the people's table
// is printed, and the rekey run is skipped with the reason.
func TestBenchTable(t *testing.T) {
	t.Parallel()
	bob := newStack(t, testbus.Options{}).seedUser(t, "bob", api.RoleMember)
	out := bob.must(t, "", "bench", "--msgs", "200", "--size", "64", "--rate", "2000", "--skip", "api", "--rekey-members", "5")
	for _, want := range []string{"raw NATS", "end to end", "E2E/raw", "P99", "skipped rekey:", "needs an admin", "stays"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Control plane") {
		t.Errorf("bench --skip api still ran the API part:\n%s", out)
	}
}

// TestBenchRateLimited runs the bench against a server that limits each
// user's requests, as membershipd does by default: the API figures count
// the refusals, and the rekey's set-up and clean-up wait them out.
func TestBenchRateLimited(t *testing.T) {
	t.Parallel()
	s := newStack(t, testbus.Options{})
	perUser := httpapi.NewRateLimiter(httpapi.RateLimit{PerSecond: 200, Burst: 20})
	limited := httptest.NewServer(perUser.Middleware(s.bus.Server, httpapi.RequestKey))
	t.Cleanup(limited.Close)
	alice := s.seedUser(t, "alice", api.RoleAdmin)
	r := runCLI(t, "", "bench", "--skip", "raw,e2e", "--rekey-members", "12", "--duration", "200ms", "--json", "--server", limited.URL, "--identity", alice.path)
	if r.code != 0 {
		t.Fatalf("bench: exit %d: %s", r.code, r.stderr)
	}
	doc := decode[map[string]any](t, r.stdout)
	if v, _ := lookupNumber(doc, "api.key_fetch.rate_limited"); v <= 0 {
		t.Errorf("api.key_fetch.rate_limited = %v; want the refusals counted", v)
	}
	if v, _ := lookupNumber(doc, "rekey.members"); v != 12 {
		t.Errorf("rekey.members = %v; want 12", v)
	}
	if !strings.Contains(r.stdout, "rate limit") {
		t.Errorf("bench --json does not warn of the rate limit:\n%s", r.stdout)
	}
}

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

// TestBenchRekeyFetchesUnderEnforce: on an enforcing bus the bench may not
// read other users' key deliveries, so its members fetch their keys from
// the API, each with a request signed by its own key, and the report says
// so.
func TestBenchRekeyFetchesUnderEnforce(t *testing.T) {
	t.Parallel()
	alice := newStack(t, testbus.Options{Mode: membership.AuthEnforce}).seedUser(t, "alice", api.RoleAdmin)
	doc := decode[map[string]any](t, alice.must(t, "", "bench", "--skip", "raw,e2e,api", "--rekey-members", "8", "--json"))
	if d, _ := jsonAt(doc, "rekey.delivery").(string); d != "api" {
		t.Errorf("rekey.delivery = %q; want api", d)
	}
	if v, _ := lookupNumber(doc, "rekey.fetched"); v != 8 {
		t.Errorf("rekey.fetched = %v; want all 8 members", v)
	}
	if v, _ := lookupNumber(doc, "rekey.delivered"); v != 0 {
		t.Errorf("rekey.delivered = %v; want 0", v)
	}
}
