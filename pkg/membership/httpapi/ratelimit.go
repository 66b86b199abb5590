package httpapi

import (
	"container/list"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
)

// Default API rate limit of one client: a steady 100 requests a second
// with bursts of 200, far above what the CLI or the SDK sends, so that only
// a flood is slowed. Benchmarks of the API raise it (membershipd
// --api-rate 0).
const (
	DefaultRatePerSecond = 100
	DefaultRateBurst     = 200
)

// DefaultMaxRateKeys is how many clients a [RateLimiter] tracks at most
// unless told otherwise.
const DefaultMaxRateKeys = 10000

// RateLimit is a token bucket: PerSecond tokens flow in each second, up to
// Burst; each request takes one. PerSecond <= 0 means no limit; Burst < 1
// means max(1, ceil(PerSecond)).
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// RateLimiter slows clients that send more than their [RateLimit]: each key
// (an address, see [RemoteIPKey], or a user) has its own token bucket, and
// a request that finds its bucket empty is answered 429 with a Retry-After
// header and the API's JSON error (code rate_limited), without reaching
// the handler.
//
// Limits are per server node: a token bucket lives in the memory of one
// process, so behind a load balancer over n nodes a client may send up to n
// times the limit. It guards the node it runs on; in front of the Server,
// before the work a request costs (signature checks, store reads). It is
// not shared state, and it is reset by a restart.
//
// Memory is bounded: a bucket that has refilled completely is
// indistinguishable from a new one and is dropped, and at most MaxKeys
// buckets are kept; past that the least recently used is dropped (that
// client starts again with a full bucket).
//
// In front of a [Server], a limiter knows only the connection: who made a
// request is known once its signature has verified. So a server bounds
// each address in front, and each user in the Server ([Server.UserLimit]),
// which spends a user's token only on requests whose signature verified
// (under [AuthOff], on the user claimed, since nothing is verified there):
//
//	srv.UserLimit = NewRateLimiter(RateLimit{PerSecond: DefaultRatePerSecond, Burst: DefaultRateBurst})
//	perAddr := NewRateLimiter(RateLimit{PerSecond: 10 * DefaultRatePerSecond, Burst: 10 * DefaultRateBurst})
//	handler := perAddr.Middleware(srv, RemoteIPKey)
//
// A request whose signature does not verify thus counts against its
// address only, and nobody can spend another user's budget by claiming
// that user's key.
//
// A RateLimiter is safe for concurrent use. Set its fields before the first
// request.
type RateLimiter struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxKeys bounds the number of tracked keys; 0 or less means
	// DefaultMaxRateKeys.
	MaxKeys int
	// OnLimit, when set, is called for every request refused, after the
	// limiter's lock is released (an operator's counter: package metrics
	// makes one). It must be cheap and must not block.
	OnLimit func()

	rate  float64 // tokens per second; 0 means no limit
	burst float64

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // most recently used first
}

// bucket is one key's token bucket.
type bucket struct {
	key    string
	tokens float64
	last   time.Time // when tokens was computed
}

// NewRateLimiter returns a limiter that gives every key the limit l.
func NewRateLimiter(l RateLimit) *RateLimiter {
	rl := &RateLimiter{buckets: map[string]*list.Element{}}
	if l.PerSecond > 0 && !math.IsInf(l.PerSecond, 1) && !math.IsNaN(l.PerSecond) {
		rl.rate = l.PerSecond
		rl.burst = float64(l.Burst)
		if l.Burst < 1 {
			rl.burst = max(1, math.Ceil(l.PerSecond))
		}
	}
	return rl
}

// Limit is the limit every key gets; PerSecond 0 means none.
func (rl *RateLimiter) Limit() RateLimit {
	return RateLimit{PerSecond: rl.rate, Burst: int(rl.burst)}
}

// Middleware returns a handler that takes one token from the bucket of
// key(r) for each request and passes it to next, or answers 429 when the
// bucket is empty. A nil key, or an empty key(r), means [RemoteIPKey].
func (rl *RateLimiter) Middleware(next http.Handler, key func(*http.Request) string) http.Handler {
	if rl.rate == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := ""
		if key != nil {
			k = key(r)
		}
		if k == "" {
			k = RemoteIPKey(r)
		}
		ok, wait := rl.Allow(k)
		if !ok {
			writeRateLimited(w, wait)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Allow takes a token from key's bucket. It reports whether there was one,
// and if not, how long until there is.
func (rl *RateLimiter) Allow(key string) (ok bool, wait time.Duration) {
	if rl.rate == 0 {
		return true, 0
	}
	ok, wait = rl.take(key)
	if !ok && rl.OnLimit != nil {
		rl.OnLimit()
	}
	return ok, wait
}

// take is Allow under the limiter's lock.
func (rl *RateLimiter) take(key string) (ok bool, wait time.Duration) {
	now := rl.now()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.evictIdle(now)
	var b *bucket
	if e, found := rl.buckets[key]; found {
		rl.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		rl.refill(b, now)
	} else {
		if len(rl.buckets) >= rl.maxKeys() {
			rl.remove(rl.lru.Back())
		}
		b = &bucket{key: key, tokens: rl.burst, last: now}
		rl.buckets[key] = rl.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	// Capped so that a tiny rate cannot overflow the duration.
	return false, time.Duration(min((1-b.tokens)/rl.rate, maxRetryAfter.Seconds()) * float64(time.Second))
}

// maxRetryAfter bounds the wait Allow reports.
const maxRetryAfter = 24 * time.Hour

// Len returns the number of keys tracked.
func (rl *RateLimiter) Len() int {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return len(rl.buckets)
}

// refill adds the tokens that flowed in since b was last computed.
func (rl *RateLimiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(rl.burst, b.tokens+elapsed.Seconds()*rl.rate)
		b.last = now
	}
}

// evictIdle drops the least recently used buckets that have refilled
// completely by now. The list is ordered by last use, so it stops at the
// first bucket still short of tokens.
func (rl *RateLimiter) evictIdle(now time.Time) {
	for e := rl.lru.Back(); e != nil; e = rl.lru.Back() {
		b := e.Value.(*bucket)
		if b.tokens+now.Sub(b.last).Seconds()*rl.rate < rl.burst {
			return
		}
		rl.remove(e)
	}
}

func (rl *RateLimiter) remove(e *list.Element) {
	if e == nil {
		return
	}
	delete(rl.buckets, e.Value.(*bucket).key)
	rl.lru.Remove(e)
}

func (rl *RateLimiter) maxKeys() int {
	if rl.MaxKeys > 0 {
		return rl.MaxKeys
	}
	return DefaultMaxRateKeys
}

func (rl *RateLimiter) now() time.Time {
	if rl.Now != nil {
		return rl.Now()
	}
	return time.Now()
}

// writeRateLimited answers 429 with a Retry-After of at least one second.
func writeRateLimited(w http.ResponseWriter, wait time.Duration) {
	e := rateLimited(wait)
	h := w.Header()
	h.Set("Retry-After", e.retryAfter())
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(api.HTTPStatus(e.err.Code))
	json.NewEncoder(w).Encode(e.err)
}

// retryLater is an API error answered with a Retry-After header: 429
// rate_limited, 503 unavailable.
type retryLater struct {
	err   *api.Error
	after time.Duration
}

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// retryAfter is the Retry-After value: whole seconds, at least one.
func (e *retryLater) retryAfter() string {
	return strconv.FormatInt(retrySeconds(e.after), 10)
}

func retrySeconds(d time.Duration) int64 { return max(1, int64(math.Ceil(d.Seconds()))) }

// rateLimited is the answer to a request that found its bucket empty, with
// wait until the next token.
func rateLimited(wait time.Duration) *retryLater {
	return &retryLater{after: wait, err: api.Errorf(api.CodeRateLimited, "too many requests: slow down and retry in %d s", retrySeconds(wait))}
}

// RemoteIPKey identifies the client of r by the address of its connection:
// "ip:" and the IPv4 address, or the /64 network of an IPv6 address (one
// host commonly holds a whole /64). Forwarding headers such as
// X-Forwarded-For are ignored: any client can set them.
func RemoteIPKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return "ip:" + host
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			return "ip:" + p.String()
		}
	}
	return "ip:" + addr.String()
}
