package httpapi_test

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/reqsig"
)

// observed records what an Observer is told.
type observed struct {
	mu        sync.Mutex
	sigs      []string
	delivered int
	failed    int
	rekeys    []string
}

func (o *observed) SignatureFailed(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sigs = append(o.sigs, reason)
}

func (o *observed) KeysDelivered(delivered, failed int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.delivered += delivered
	o.failed += failed
}

func (o *observed) Rekeyed(trigger string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rekeys = append(o.rekeys, trigger)
}

// take returns the reasons told since the last take.
func (o *observed) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.sigs
	o.sigs = nil
	return s
}

// TestObserverIsToldWhySignaturesFail: every refused signature is told
// to the Observer once, with its reason; a genuine request tells nothing.
func TestObserverIsToldWhySignaturesFail(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	obs := &observed{}
	f.bus.Server.Observer = obs

	id := api.NewRoomID()
	body := jsonBody(t, api.CreateRoomRequest{ID: id, Name: "x", Cleartext: true, Statement: createStatement(t, f.alice, id, "x", false)})
	digest := sha256.Sum256(body)
	now := time.Now()
	bad, _ := reqsig.Parse(signed(t, f.alice, "POST", "/v1/rooms", digest, now))
	bad.Sig[0] ^= 1
	once := signed(t, f.alice, "POST", "/v1/rooms", digest, now)
	tests := []struct {
		name, auth string
		want       []string
	}{
		{"missing", "", []string{httpapi.SigMissing}},
		{"malformed", "Unibus-Ed25519 user=U", []string{httpapi.SigMalformed}},
		{"stale", signed(t, f.alice, "POST", "/v1/rooms", digest, now.Add(-time.Hour)), []string{httpapi.SigClock}},
		{"bad signature", bad.String(), []string{httpapi.SigInvalid}},
		{"another body", signed(t, f.alice, "POST", "/v1/rooms", sha256.Sum256([]byte("{}")), now), []string{httpapi.SigBody}},
		{"genuine", once, nil},
		{"replayed", once, []string{httpapi.SigReplay}},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", f.bus.HTTP.URL+"/v1/rooms", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := obs.take(); !slices.Equal(got, tt.want) {
			t.Errorf("%s request (status %d): Observer told %q; want %q", tt.name, resp.StatusCode, got, tt.want)
		}
	}
	if !slices.Contains(httpapi.SigReasons, httpapi.SigReplay) || len(httpapi.SigReasons) != 6 {
		t.Errorf("SigReasons = %q; want every reason once", httpapi.SigReasons)
	}
}

// TestOnLimitIsCalledForEveryRefusal: the hook is called once per 429,
// never for a request let through.
func TestOnLimitIsCalledForEveryRefusal(t *testing.T) {
	t.Parallel()
	f := newRateFixture(httpapi.RateLimit{PerSecond: 1, Burst: 2})
	var limited int
	f.rl.OnLimit = func() { limited++ }
	for n := 1; n <= 5; n++ {
		w := f.do("alice", "192.0.2.1:1000")
		wantCode, wantLimited := http.StatusNoContent, 0
		if n > 2 {
			wantCode, wantLimited = http.StatusTooManyRequests, n-2
		}
		if w.Code != wantCode || limited != wantLimited {
			t.Fatalf("request %d: status %d, OnLimit called %d times; want %d and %d times", n, w.Code, limited, wantCode, wantLimited)
		}
	}
	if ok, _ := f.rl.Allow("bob"); !ok || limited != 3 {
		t.Errorf("Allow(bob) = %v, OnLimit called %d times; want true and still 3", ok, limited)
	}
}
