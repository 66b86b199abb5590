package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/reqsig"
)

// limitWaiter is a transport that sends a request again when the server's
// rate limit refused it (429), after the wait its Retry-After asks for: the
// set-up of a big rekey run makes thousands of calls as one user.
type limitWaiter struct {
	next  http.RoundTripper
	waits atomic.Int64
}

func (l *limitWaiter) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		resp, err := l.next.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests {
			return resp, err
		}
		resend := req
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, nil // the body cannot be read again
			}
			body, err := req.GetBody()
			if err != nil {
				return resp, nil
			}
			resend = req.Clone(req.Context())
			resend.Body = body
		}
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		l.waits.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-t.C:
		}
		req = resend
	}
}

// api runs the control-plane calls a client makes most, each for
// --duration (or --requests), --concurrency at a time.
func (r *run) api(ctx context.Context, room string) (*APIResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	res := &APIResult{Concurrency: r.o.Concurrency}
	c, err := r.newClient(r.hcMeasure)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	res.RoomList = r.hammer(ctx, func(ctx context.Context) error {
		_, err := c.Rooms(ctx)
		return err
	})
	res.KeyFetch = r.hammer(ctx, func(ctx context.Context) error {
		var keys []api.SealedKey
		return r.get(ctx, r.hcMeasure, r.id, "/v1/rooms/"+room+"/keys", nil, &keys)
	})
	for _, call := range []struct {
		name string
		c    *APICall
	}{{"room list", res.RoomList}, {"key fetch", res.KeyFetch}} {
		name, c := call.name, call.c
		if c.Requests == 0 {
			return nil, fmt.Errorf("%s: every request failed: %s", name, c.FirstError)
		}
		if c.RateLimited > 0 {
			r.warn("%s: the server's rate limit refused %d requests: the figure measures the limit, not the API (membershipd --api-rate 0 lifts it)", name, c.RateLimited)
		}
		if c.Errors > c.RateLimited {
			r.warn("%s: %d requests failed, the first with: %s", name, c.Errors, c.FirstError)
		}
	}
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		return res, fmt.Errorf("%w after %s: raise --timeout, or lower --duration or --requests", err, r.o.Timeout)
	}
	return res, ctx.Err()
}

// hammer runs call from --concurrency workers until --duration has passed
// or --requests were made, and --timeout in any case.
func (r *run) hammer(ctx context.Context, call func(context.Context) error) *APICall {
	until := time.Now().Add(r.o.Duration)
	if r.o.Requests > 0 {
		until = time.Now().Add(r.o.Timeout)
	}
	var (
		issued   atomic.Int64
		failures atomic.Int64
		limited  atomic.Int64
		firstErr firstError
		mu       sync.Mutex
		lat      []int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range r.o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []int64
			for ctx.Err() == nil && time.Now().Before(until) {
				if r.o.Requests > 0 && issued.Add(1) > int64(r.o.Requests) {
					break
				}
				t := time.Now()
				if err := call(ctx); err != nil {
					if ctx.Err() == nil {
						failures.Add(1)
						firstErr.set(err)
						if api.IsCode(err, api.CodeRateLimited) {
							limited.Add(1)
						}
					}
					continue
				}
				mine = append(mine, int64(time.Since(t)))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	c := &APICall{Requests: int64(len(lat)), Errors: failures.Load(), RateLimited: limited.Load(), Seconds: elapsed.Seconds(),
		P50ms: millis(percentile(lat, 0.5)), P99ms: millis(percentile(lat, 0.99))}
	if len(lat) > 0 {
		c.Maxms = millis(lat[len(lat)-1])
	}
	if c.Seconds > 0 {
		c.PerS = float64(c.Requests) / c.Seconds
	}
	if err := firstErr.get(); err != nil {
		c.FirstError = err.Error()
	}
	return c
}

// get makes one signed GET of the API path as id through hc, as the SDK
// does, and decodes the answer into out. The bench plays members the SDK
// cannot be asked to be, so it signs for them itself.
func (r *run) get(ctx context.Context, hc *http.Client, id *identity.Identity, path string, query url.Values, out any) error {
	u := *r.apiURL
	u.Path += path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), http.NoBody)
	if err != nil {
		return err
	}
	sig, err := reqsig.Sign(id, http.MethodGet, req.URL.RequestURI(), reqsig.EmptyBody, time.Now(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", sig.String())
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return &e
		}
		return fmt.Errorf("GET %s: server answered %s", path, resp.Status)
	}
	return json.Unmarshal(b, out)
}
