package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// rateFixture is a limited handler that counts the requests reaching it.
// Its key is the client a request names in X-Client, if any; the server
// keys its per-user limiter by verified user instead
// (TestBadSignaturesSpendOnlyTheirAddress).
type rateFixture struct {
	rl      *httpapi.RateLimiter
	clock   *fakeClock
	h       http.Handler
	mu      sync.Mutex
	reached int
}

func newRateFixture(l httpapi.RateLimit) *rateFixture {
	f := &rateFixture{clock: newFakeClock()}
	f.rl = httpapi.NewRateLimiter(l)
	f.rl.Now = f.clock.Now
	f.h = f.rl.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.reached++
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}), clientKey)
	return f
}

// clientKey is the client named by X-Client; "" (no name) makes
// Middleware key by address.
func clientKey(r *http.Request) string {
	if c := r.Header.Get("X-Client"); c != "" {
		return "client:" + c
	}
	return ""
}

// do sends one request of client (empty: none named) from remote.
func (f *rateFixture) do(client, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
	r.RemoteAddr = remote
	if client != "" {
		r.Header.Set("X-Client", client)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// wantLimited checks a 429 in the API's JSON error shape with Retry-After.
func wantLimited(t testing.TB, w *httptest.ResponseRecorder, retryAfter int) {
	t.Helper()
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status = %d; want 429", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	if got := w.Header().Get("Retry-After"); got != strconv.Itoa(retryAfter) {
		t.Errorf("Retry-After = %q; want %d", got, retryAfter)
	}
	var e api.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if e.Code != api.CodeRateLimited || e.Message == "" {
		t.Errorf("body = %+v; want code %q and a message", e, api.CodeRateLimited)
	}
}

func TestRateLimiterBurstThen429(t *testing.T) {
	t.Parallel()
	f := newRateFixture(httpapi.RateLimit{PerSecond: 0.5, Burst: 3})
	alice := "alice"
	for i := range 3 {
		if w := f.do(alice, "192.0.2.1:1000"); w.Code != http.StatusNoContent {
			t.Fatalf("request %d within the burst: status %d", i+1, w.Code)
		}
	}
	for range 5 {
		// Empty bucket at 0.5 token/s: the next token is 2 s away.
		wantLimited(t, f.do(alice, "192.0.2.1:1000"), 2)
	}
	if f.reached != 3 {
		t.Errorf("handler reached %d times; want 3", f.reached)
	}
}

func TestRateLimiterKeysAreIndependent(t *testing.T) {
	t.Parallel()
	f := newRateFixture(httpapi.RateLimit{PerSecond: 1, Burst: 2})
	alice := "alice"
	bob := "bob"
	for range 2 {
		f.do(alice, "192.0.2.1:1000")
	}
	wantLimited(t, f.do(alice, "192.0.2.1:1000"), 1)

	// Another client from the same address, unnamed clients from other
	// addresses: not affected by alice's flood.
	for i := range 2 {
		if w := f.do(bob, "192.0.2.1:1001"); w.Code != http.StatusNoContent {
			t.Fatalf("bob's request %d: status %d; want 204", i+1, w.Code)
		}
		if w := f.do("", "198.51.100.7:2000"); w.Code != http.StatusNoContent {
			t.Fatalf("unnamed client's request %d: status %d; want 204", i+1, w.Code)
		}
	}
	// Unnamed clients share their address's bucket.
	wantLimited(t, f.do("", "198.51.100.7:2001"), 1)
	if w := f.do("", "[2001:db8::1]:3000"); w.Code != http.StatusNoContent {
		t.Fatalf("IPv6 client: status %d", w.Code)
	}
	f.do("", "[2001:db8::2]:3000")
	// Same /64: same bucket.
	wantLimited(t, f.do("", "[2001:db8::3]:3000"), 1)
	if w := f.do("", "[2001:db8:0:1::1]:3000"); w.Code != http.StatusNoContent {
		t.Fatalf("another IPv6 /64: status %d; want 204", w.Code)
	}
}

func TestRateLimiterRefill(t *testing.T) {
	t.Parallel()
	f := newRateFixture(httpapi.RateLimit{PerSecond: 2, Burst: 4})
	alice := "alice"
	for range 4 {
		f.do(alice, "192.0.2.1:1000")
	}
	wantLimited(t, f.do(alice, "192.0.2.1:1000"), 1)

	f.clock.Advance(500 * time.Millisecond) // one token
	if w := f.do(alice, "192.0.2.1:1000"); w.Code != http.StatusNoContent {
		t.Fatalf("after one token's refill: status %d; want 204", w.Code)
	}
	wantLimited(t, f.do(alice, "192.0.2.1:1000"), 1)

	f.clock.Advance(time.Hour) // full again, never more than the burst
	for i := range 4 {
		if w := f.do(alice, "192.0.2.1:1000"); w.Code != http.StatusNoContent {
			t.Fatalf("request %d after a long pause: status %d; want 204", i+1, w.Code)
		}
	}
	wantLimited(t, f.do(alice, "192.0.2.1:1000"), 1)

	// A clock that steps back neither refills nor breaks the bucket.
	f.clock.Advance(-time.Minute)
	wantLimited(t, f.do(alice, "192.0.2.1:1000"), 1)
}

func TestRateLimiterRetryAfterRoundsUp(t *testing.T) {
	t.Parallel()
	f := newRateFixture(httpapi.RateLimit{PerSecond: 0.1, Burst: 1})
	f.do("", "192.0.2.1:1")
	wantLimited(t, f.do("", "192.0.2.1:1"), 10)
	f.clock.Advance(2500 * time.Millisecond)
	wantLimited(t, f.do("", "192.0.2.1:1"), 8) // 7.5 s rounds up

	// A vanishing rate still gives a sane Retry-After.
	f = newRateFixture(httpapi.RateLimit{PerSecond: 1e-30, Burst: 1})
	f.do("", "192.0.2.1:1")
	wantLimited(t, f.do("", "192.0.2.1:1"), 86400)
}

func TestRateLimiterMemoryBound(t *testing.T) {
	t.Parallel()
	f := newRateFixture(httpapi.RateLimit{PerSecond: 1, Burst: 5})
	f.rl.MaxKeys = 100

	// Idle keys go once their bucket is full again.
	for i := range 50 {
		f.do("", fmt.Sprintf("192.0.2.%d:1", i))
	}
	if n := f.rl.Len(); n != 50 {
		t.Fatalf("tracked %d keys; want 50", n)
	}
	f.clock.Advance(500 * time.Millisecond) // half a token back each: not full yet
	f.do("", "198.51.100.1:1")
	if n := f.rl.Len(); n != 51 {
		t.Fatalf("tracked %d keys before they refilled; want 51", n)
	}
	f.clock.Advance(time.Second) // all full again
	f.do("", "198.51.100.2:1")
	if n := f.rl.Len(); n != 1 {
		t.Fatalf("tracked %d keys after they refilled; want 1", n)
	}

	// A flood of distinct keys never holds more than MaxKeys.
	for i := range 1000 {
		f.do("", fmt.Sprintf("10.0.%d.%d:1", i/256, i%256))
		if n := f.rl.Len(); n > 100 {
			t.Fatalf("tracked %d keys; want at most 100", n)
		}
	}
	// The most recent keys keep their (spent) buckets.
	f.do("", "10.0.3.231:1") // the 1000th key, second request
	for range 4 {
		f.do("", "10.0.3.231:1")
	}
	wantLimited(t, f.do("", "10.0.3.231:1"), 1)
}

func TestRateLimiterOffAndDefaults(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, l := range []httpapi.RateLimit{{}, {PerSecond: -1, Burst: 10}} {
		rl := httpapi.NewRateLimiter(l)
		h := rl.Middleware(next, nil)
		for range 1000 {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
			if w.Code != http.StatusNoContent {
				t.Fatalf("RateLimit%+v limited a request; want no limit", l)
			}
		}
	}
	// Burst 0 means ceil(PerSecond).
	f := newRateFixture(httpapi.RateLimit{PerSecond: 2.5})
	for range 3 {
		if w := f.do("", "192.0.2.1:1"); w.Code != http.StatusNoContent {
			t.Fatalf("status %d within the default burst of 3", w.Code)
		}
	}
	wantLimited(t, f.do("", "192.0.2.1:1"), 1)
}

func TestRateLimiterConcurrent(t *testing.T) {
	t.Parallel()
	f := newRateFixture(httpapi.RateLimit{PerSecond: 1, Burst: 50})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				f.do("", "192.0.2.1:1")
			}
		})
	}
	wg.Wait()
	if f.reached != 50 {
		t.Errorf("handler reached %d times under concurrency; want exactly the burst, 50", f.reached)
	}
}

func TestRemoteIPKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		auth, remote, want string
	}{
		// What a request claims is no key: a signature is checked later.
		{forged(t, testbus.NewIdentity(t, "alice").UserKey()), "192.0.2.1:1", "ip:192.0.2.1"},
		{"", "192.0.2.1:1", "ip:192.0.2.1"},
		{"Bearer x", "192.0.2.1:1", "ip:192.0.2.1"},
		{"", "[::ffff:192.0.2.1]:1", "ip:192.0.2.1"},
		{"", "[2001:db8:1:2:3:4:5:6]:1", "ip:2001:db8:1:2::/64"},
		{"", "[fe80::1%eth0]:1", "ip:fe80::/64"},
		{"", "not-an-address", "ip:not-an-address"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		if tt.auth != "" {
			r.Header.Set("Authorization", tt.auth)
		}
		if got := httpapi.RemoteIPKey(r); got != tt.want {
			t.Errorf("RemoteIPKey(auth %.20q, remote %q) = %q; want %q", tt.auth, tt.remote, got, tt.want)
		}
	}
}
