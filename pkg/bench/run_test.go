package bench_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/internal/testutil/testio"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/bench"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
)

// shortOptions are the options of a short run as id against bus: 500
// messages, each API call for 300 ms.
func shortOptions(bus *testbus.Bus, id *identity.Identity) bench.Options {
	o := bench.DefaultOptions()
	o.Server, o.Identity = bus.HTTP.URL, id
	o.Msgs, o.Duration = 500, 300*time.Millisecond
	return o
}

// TestRun runs every part of a small bench as an admin and checks that
// the figures are there and positive, and that it cleaned up. It asserts
// nothing about speed.
func TestRun(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	alice := bus.Identity(t, "alice", api.RoleAdmin)
	o := shortOptions(bus, alice)
	o.RekeyMembers = 20
	rep, err := bench.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Raw == nil || rep.E2E == nil || rep.API == nil || rep.Rekey == nil {
		t.Fatalf("Run: raw %v, e2e %v, api %v, rekey %v; want every part", rep.Raw, rep.E2E, rep.API, rep.Rekey)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"Raw.MsgsPerS", rep.Raw.MsgsPerS}, {"Raw.MBPerS", rep.Raw.MBPerS}, {"Raw.P50ms", rep.Raw.P50ms}, {"Raw.P99ms", rep.Raw.P99ms}, {"Raw.Maxms", rep.Raw.Maxms},
		{"E2E.MsgsPerS", rep.E2E.MsgsPerS}, {"E2E.MBPerS", rep.E2E.MBPerS}, {"E2E.P50ms", rep.E2E.P50ms}, {"E2E.P90ms", rep.E2E.P90ms},
		{"E2E.P99ms", rep.E2E.P99ms}, {"E2E.Maxms", rep.E2E.Maxms}, {"E2E.ReadMsgsPerS", rep.E2E.ReadMsgsPerS},
		{"Ratio", rep.Ratio},
		{"API.Concurrency", float64(rep.API.Concurrency)}, {"API.RoomList.PerS", rep.API.RoomList.PerS}, {"API.RoomList.Requests", float64(rep.API.RoomList.Requests)},
		{"API.KeyFetch.PerS", rep.API.KeyFetch.PerS}, {"API.KeyFetch.P99ms", rep.API.KeyFetch.P99ms},
		{"Rekey.Seconds", rep.Rekey.Seconds}, {"Rekey.SealUploadSeconds", rep.Rekey.SealUploadSeconds}, {"Rekey.FetchSeconds", rep.Rekey.FetchSeconds},
	} {
		if f.v <= 0 {
			t.Errorf("Run: %s = %v; want a positive number", f.name, f.v)
		}
	}
	if rep.Raw.Lost != 0 || rep.E2E.Lost != 0 {
		t.Errorf("Run: raw lost %d, e2e lost %d; want 0 on loopback", rep.Raw.Lost, rep.E2E.Lost)
	}
	// On a bus without enforce the members take their keys from
	// membershipd's deliveries, every one of them.
	if k := rep.Rekey; k.Members != 20 || k.Delivery != "nats" || k.Delivered != 20 || k.Fetched != 0 {
		t.Errorf("Run: rekey of %d members, delivery %q, %d delivered, %d fetched; want 20, nats, 20, 0", k.Members, k.Delivery, k.Delivered, k.Fetched)
	}
	if !api.ValidRoomID(rep.Room) {
		t.Fatalf("Run: Room = %q; want the scratch room's id", rep.Room)
	}

	// Clean-up: the scratch room is deleted, its history purged, and the
	// throwaway users are revoked; only alice is still active.
	ctx := context.Background()
	if _, err := bus.Store.GetRoom(ctx, rep.Room); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("the scratch room after the bench: %v; want it deleted", err)
	}
	users, err := bus.Store.ListUsers(ctx)
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
	if n := bus.RoomMessages(t, rep.Room); n != 0 {
		t.Errorf("the scratch room keeps %d messages in history after the bench; want them purged", n)
	}
}

// TestRunAsMember runs a paced bench as a plain member: the rekey run is
// skipped with the reason, the skipped API part is not run, and progress
// goes to Options.Progress.
func TestRunAsMember(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	bob := bus.Identity(t, "bob", api.RoleMember)
	var progress testio.SyncBuffer
	o := shortOptions(bus, bob)
	o.Msgs, o.Size, o.Rate, o.Skip, o.RekeyMembers, o.Progress = 200, 64, 2000, []string{"api"}, 5, &progress
	rep, err := bench.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Raw == nil || rep.E2E == nil {
		t.Errorf("Run: raw %v, e2e %v; want both", rep.Raw, rep.E2E)
	}
	if rep.API != nil || rep.Skipped["api"] != "--skip" {
		t.Errorf("Run: API %v, skipped %q; want no API part, skipped by --skip", rep.API, rep.Skipped["api"])
	}
	if why := rep.Skipped["rekey"]; rep.Rekey != nil || !strings.Contains(why, "needs an admin") {
		t.Errorf("Run: Rekey %v, skipped %q; want the rekey skipped because it needs an admin", rep.Rekey, why)
	}
	if first := rep.Cleanup[0]; !strings.Contains(first, "deleted the scratch room "+rep.RoomName) {
		t.Errorf("Run: Cleanup starts with %q; want the scratch room said deleted", first)
	}
	for _, want := range []string{"unibus bench: raw NATS: 200 messages of 64 bytes", "unibus bench: end to end: 200 messages"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
}

// TestRunRateLimited runs the bench against a server that limits the
// user's requests, as membershipd does by default: the API figures count
// the refusals, and the rekey's set-up and clean-up wait them out. The
// limit, 30 requests a second, is low enough to be met under -race on a
// busy machine.
func TestRunRateLimited(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	limited := rateLimited(t, bus.Server, 30, 15)
	alice := bus.Identity(t, "alice", api.RoleAdmin)
	o := shortOptions(bus, alice)
	o.Server, o.Skip, o.RekeyMembers, o.Duration = limited.URL, []string{"raw", "e2e"}, 12, 200*time.Millisecond
	rep, err := bench.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := rep.API.KeyFetch.RateLimited; n <= 0 {
		t.Errorf("Run: API.KeyFetch.RateLimited = %d; want the refusals counted", n)
	}
	if rep.Rekey == nil || rep.Rekey.Members != 12 {
		t.Fatalf("Run: Rekey = %+v; want a rekey of 12 members", rep.Rekey)
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "rate limit") {
		t.Errorf("Run: Warnings = %q; want the rate limit warned of", rep.Warnings)
	}
}

// rateLimited serves h behind one token bucket of burst requests, refilled
// at perSecond, and answers as membershipd's rate limit does when it is
// empty: 429, Retry-After in seconds, and the API's error with code
// rate_limited. The test's bus has one user, so one bucket is per user.
func rateLimited(t testing.TB, h http.Handler, perSecond, burst float64) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	tokens, last := burst, time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now := time.Now()
		tokens, last = min(burst, tokens+now.Sub(last).Seconds()*perSecond), now
		ok := tokens >= 1
		if ok {
			tokens--
		}
		mu.Unlock()
		if !ok {
			e := api.Errorf(api.CodeRateLimited, "too many requests: slow down and retry in 1 s")
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(api.HTTPStatus(e.Code))
			json.NewEncoder(w).Encode(e)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRunRekeyFetchesUnderEnforce: on an enforcing bus the bench may not
// read other users' key deliveries, so its members fetch their keys from
// the API, each with a request signed by its own key, and the report says
// so.
func TestRunRekeyFetchesUnderEnforce(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{Mode: membership.AuthEnforce})
	alice := bus.Identity(t, "alice", api.RoleAdmin)
	o := shortOptions(bus, alice)
	o.Skip, o.RekeyMembers = []string{"raw", "e2e", "api"}, 8
	rep, err := bench.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if k := rep.Rekey; k == nil || k.Delivery != "api" || k.Fetched != 8 || k.Delivered != 0 {
		t.Errorf("Run: Rekey = %+v; want delivery api, all 8 members fetched, none delivered", k)
	}
}

// TestRunStoppedEarly: a part that fails still leaves a report of what
// the run did and left, with the error in it.
func TestRunStoppedEarly(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	alice := bus.Identity(t, "alice", api.RoleAdmin)
	o := shortOptions(bus, alice)
	o.Skip, o.Timeout = []string{"api"}, time.Nanosecond
	rep, err := bench.Run(context.Background(), o)
	if err == nil || !strings.HasPrefix(err.Error(), "raw NATS run: ") {
		t.Fatalf("Run with --timeout 1ns: %v; want the raw NATS run to fail", err)
	}
	if rep == nil {
		t.Fatal("Run with --timeout 1ns: no report; want what the run left")
	}
	if rep.Error != err.Error() || rep.Raw != nil || !api.ValidRoomID(rep.Room) {
		t.Errorf("Run with --timeout 1ns: Error %q, Raw %v, Room %q; want the error, no raw figures, the scratch room", rep.Error, rep.Raw, rep.Room)
	}
}

// TestRunRefused: with bad options or no server there is no report, only
// the error.
func TestRunRefused(t *testing.T) {
	t.Parallel()
	id := testbus.NewIdentity(t, "carol")
	tests := []struct {
		name   string
		change func(*bench.Options)
		want   string
	}{
		{"bad options", func(o *bench.Options) { o.Msgs = 0 }, "--msgs 0"},
		{"no identity", func(o *bench.Options) { o.Identity = nil }, "identity is required"},
		{"no server", func(*bench.Options) {}, "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := bench.DefaultOptions()
			o.Server, o.Identity = "http://127.0.0.1:1", id
			tt.change(&o)
			rep, err := bench.Run(context.Background(), o)
			if rep != nil || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run(%s) = %v, %v; want no report and an error containing %q", tt.name, rep, err, tt.want)
			}
		})
	}
}

// TestRunRekeyOverTheRateLimitIsRefusedFirst asks for a rekey of more
// members than the server's per-user limit lets the bench register within
// --timeout: the run says so before it registers anyone, naming the flags
// that lift it.
func TestRunRekeyOverTheRateLimitIsRefusedFirst(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	bus.Server.UserLimit = httpapi.NewRateLimiter(httpapi.RateLimit{PerSecond: 100, Burst: 200})
	alice := bus.Identity(t, "alice", api.RoleAdmin)
	o := shortOptions(bus, alice)
	o.RekeyMembers, o.Timeout = 10000, time.Minute
	o.Skip = []string{bench.PartRaw, bench.PartE2E, bench.PartAPI}
	_, refused := bench.Run(context.Background(), o)
	if refused == nil || !strings.Contains(refused.Error(), "--api-rate 0") || !strings.Contains(refused.Error(), "--timeout") {
		t.Fatalf("Run = %v; want a refusal naming --api-rate 0 and --timeout", refused)
	}
	users, err := bus.Store.ListUsers(context.Background())
	if err != nil || len(users) != 1 {
		t.Errorf("users after the refused run: %d, %v; want alice alone", len(users), err)
	}

	// Within the limit, the same server runs it.
	o.RekeyMembers, o.Timeout = 50, 2*time.Minute
	if rep, err := bench.Run(context.Background(), o); err != nil || rep.Rekey == nil || rep.Rekey.Members != 50 {
		t.Fatalf("a rekey of 50 within the limit = %v, %v", rep, err)
	}
}
