package httpapi_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/reqsig"
)

// forged returns an Authorization header that claims user, signed now
// over the empty body, with a signature that does not verify: what anyone
// who knows a user's (public) key can send.
func forged(t testing.TB, user string) string {
	t.Helper()
	sig := reqsig.Signature{User: user, Time: time.Now().UnixMilli(), Body: reqsig.EmptyBody, Sig: make([]byte, 64)}
	rand.Read(sig.Nonce[:])
	return sig.String()
}

// signed returns id's Authorization header for method and uri over digest,
// signed at at.
func signed(t testing.TB, id *identity.Identity, method, uri string, digest [32]byte, at time.Time) string {
	t.Helper()
	sig, err := reqsig.Sign(id, method, uri, digest, at, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sig.String()
}

// TestBadSignaturesSpendOnlyTheirAddress floods the API from one address
// with requests that claim alice's key but do not verify, as anyone who
// knows her key can: the flood spends its address's budget and none of
// alice's, so her own signed requests from her address are served, and
// her limit still holds for them.
func TestBadSignaturesSpendOnlyTheirAddress(t *testing.T) {
	for _, mode := range []httpapi.AuthMode{httpapi.AuthEnforce, httpapi.AuthSoft} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newAPIFixture(t, mode)
			clock := newFakeClock() // the buckets refill only when told
			srv := httpapi.NewServer(f.bus.Store, nil, mode)
			srv.UserLimit = httpapi.NewRateLimiter(httpapi.RateLimit{PerSecond: 1, Burst: 5})
			srv.UserLimit.Now = clock.Now
			perAddr := httpapi.NewRateLimiter(httpapi.RateLimit{PerSecond: 10, Burst: 50})
			perAddr.Now = clock.Now
			h := perAddr.Middleware(srv, httpapi.RemoteIPKey)
			get := func(auth, remote string) *httptest.ResponseRecorder {
				r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
				r.RemoteAddr = remote
				r.Header.Set("Authorization", auth)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			// enforce refuses a bad signature; soft lets it through, as the
			// user it claims, but without spending that user's budget.
			floodStatus := http.StatusUnauthorized
			if mode == httpapi.AuthSoft {
				floodStatus = http.StatusOK
			}
			const flooder = "203.0.113.9:4000"
			var flood []*httptest.ResponseRecorder
			for range 60 {
				flood = append(flood, get(forged(t, f.alice.UserKey()), flooder))
			}

			me := func() *httptest.ResponseRecorder {
				return get(signed(t, f.alice, "GET", "/v1/me", reqsig.EmptyBody, time.Now()), "198.51.100.20:5000")
			}
			for i := range 5 {
				if w := me(); w.Code != http.StatusOK {
					t.Fatalf("alice's signed request %d after the flood = %d %s; want 200: the flood spent her budget", i+1, w.Code, w.Body)
				}
			}
			// Her own requests spend her budget.
			wantLimited(t, me(), 1)

			// The flood is answered as a bad signature is, until its
			// address's burst of 50 is spent; then it is slowed.
			for i, w := range flood[:50] {
				if w.Code != floodStatus {
					t.Fatalf("bad signature %d claiming alice = %d %s; want %d", i+1, w.Code, w.Body, floodStatus)
				}
			}
			for _, w := range flood[50:] {
				wantLimited(t, w, 1)
			}
		})
	}
}

// watched wraps a handler and records, from the server's side, what became
// of each request: its status, how long it took, how many bytes of its
// body were read, and how many bodies were being read at once.
type watched struct {
	h http.Handler

	mu          sync.Mutex
	seen        []seenRequest
	reading     int // bodies between their first read and their end
	peakReading int
	started     chan struct{} // a value each time a body's first bytes are read
}

type seenRequest struct {
	status int
	took   time.Duration
	read   int64
}

func watch(h http.Handler) *watched { return &watched{h: h, started: make(chan struct{}, 1024)} }

func (wh *watched) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body := &watchedBody{ReadCloser: r.Body, wh: wh}
	if r.Body != http.NoBody {
		r.Body = body
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	wh.h.ServeHTTP(sw, r)
	body.end()
	wh.mu.Lock()
	wh.seen = append(wh.seen, seenRequest{status: sw.status, took: time.Since(start), read: body.n})
	wh.mu.Unlock()
}

// requests returns what was recorded so far.
func (wh *watched) requests() []seenRequest {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return append([]seenRequest(nil), wh.seen...)
}

type watchedBody struct {
	io.ReadCloser
	wh      *watched
	n       int64
	started bool
	ended   bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if !b.started {
		b.started = true
		b.wh.mu.Lock()
		b.wh.reading++
		b.wh.peakReading = max(b.wh.peakReading, b.wh.reading)
		b.wh.mu.Unlock()
		b.wh.started <- struct{}{}
	}
	if err != nil {
		b.end()
	}
	return n, err
}

func (b *watchedBody) end() {
	if b.started && !b.ended {
		b.ended = true
		b.wh.mu.Lock()
		b.wh.reading--
		b.wh.mu.Unlock()
	}
}

// statusWriter records the status; Unwrap lets http.ResponseController
// reach the connection (for read deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// zeros is a body of n zero bytes, made as they are read, so that the
// client side of a test holds none of it.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// answer is what a client of floodBodies got back: a status, or an error
// when the server closed the connection while the body was being sent.
type answer struct {
	status     int
	code       string // the JSON error's code
	retryAfter string
	err        error
}

// floodBodies sends n POSTs of size zero bytes to url at once, the i-th
// with the Authorization header auth(i), and returns the answers and how
// far the Go heap in use grew above where it was before, sampled as the
// requests ran (the heap of the server and of the clients: this process).
func floodBodies(t testing.TB, url string, n int, size int64, auth func(i int) string) ([]answer, uint64) {
	t.Helper()
	tr := &http.Transport{MaxConnsPerHost: 0, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	answers := make([]answer, n)

	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapInuse
	var peak atomic.Uint64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodPost, url, &zeros{n: size})
			if err != nil {
				answers[i].err = err
				return
			}
			req.ContentLength = size
			req.Header.Set("Content-Type", "application/json")
			if a := auth(i); a != "" {
				req.Header.Set("Authorization", a)
			}
			resp, err := client.Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			defer resp.Body.Close()
			var e api.Error
			json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
			answers[i] = answer{status: resp.StatusCode, code: e.Code, retryAfter: resp.Header.Get("Retry-After")}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	return answers, max(peak.Load(), base) - base
}

const mib = 1 << 20

// TestUnauthenticatedBodiesAreNotRead sends, under enforce, 64 bodies of
// 16 MiB at once (1 GiB in all) with no or an unacceptable signature: each
// is refused from its headers, with nothing of its body read, and the
// heap stays flat.
func TestUnauthenticatedBodiesAreNotRead(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	srv := httpapi.NewServer(f.bus.Store, nil, httpapi.AuthEnforce)
	wh := watch(srv)
	ts := httptest.NewServer(wh)
	t.Cleanup(ts.Close)
	path := "/v1/rooms/" + f.room + "/rekey" // the largest ceiling: 16 MiB
	var anyBody [32]byte
	rand.Read(anyBody[:])
	kinds := []struct {
		name   string
		auth   string
		status int
	}{
		{"unsigned", "", 401},
		{"another scheme", "Bearer x", 401},
		{"malformed", "Unibus-Ed25519 user=garbage", 401},
		{"alice's key, a bad signature", forged(t, f.alice.UserKey()), 401},
		{"alice, signed an hour ago", signed(t, f.alice, "POST", path, anyBody, time.Now().Add(-time.Hour)), 401},
		{"alice, signed for another path", signed(t, f.alice, "POST", "/v1/rooms", anyBody, time.Now()), 401},
		{"an unknown user", signed(t, f.stranger, "POST", path, anyBody, time.Now()), 401},
		{"a revoked user", signed(t, f.revoked, "POST", path, anyBody, time.Now()), 403},
	}
	const n, size = 64, 16 * mib
	answers, growth := floodBodies(t, ts.URL+path, n, size, func(i int) string { return kinds[i%len(kinds)].auth })

	seen := wh.requests()
	if len(seen) != n {
		t.Fatalf("the server saw %d requests; want %d", len(seen), n)
	}
	want, got := map[int]int{}, map[int]int{}
	for i := range n {
		want[kinds[i%len(kinds)].status]++
	}
	var read int64
	for _, s := range seen {
		got[s.status]++
		read += s.read
	}
	if read != 0 {
		t.Errorf("the server read %d MiB of the unauthenticated bodies; want none", read/mib)
	}
	if !maps.Equal(got, want) {
		t.Errorf("the server answered (status: count) %v; want %v", got, want)
	}
	for i, a := range answers {
		k := kinds[i%len(kinds)]
		// The server answers and closes the connection without reading
		// the body: the client may see the answer, or the closed
		// connection while it still sends.
		if a.err == nil && (a.status != k.status || api.HTTPStatus(a.code) != k.status) {
			t.Errorf("%s: answer %d %q; want %d and its JSON error", k.name, a.status, a.code, k.status)
		}
	}
	closed := 0
	for _, a := range answers {
		if a.err != nil {
			closed++
		}
	}
	t.Logf("heap grew by %.1f MiB under %d MiB of unauthenticated bodies; %d clients saw the answer, %d the connection closed", float64(growth)/mib, n*size/mib, n-closed, closed)
	if growth > 16*mib {
		t.Errorf("heap grew by %.1f MiB under %d unauthenticated bodies of %d MiB; want under 16 MiB, less than one body", float64(growth)/mib, n, size/mib)
	}
}

// TestUnverifiedBodiesAreBounded sends, under soft (which reads the body
// of a bad signature, and lets it through), 64 bodies of 16 MiB at once
// claiming alice's key: no more than MaxUnverifiedBodies are read at
// once, the others are answered 503 with a Retry-After, and the heap grows
// by a few bodies, not by the 1 GiB sent.
func TestUnverifiedBodiesAreBounded(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthSoft)
	srv := httpapi.NewServer(f.bus.Store, nil, httpapi.AuthSoft)
	const slots = 4
	srv.MaxUnverifiedBodies = slots
	wh := watch(srv)
	ts := httptest.NewServer(wh)
	t.Cleanup(ts.Close)
	const n, size = 64, 16 * mib
	answers, growth := floodBodies(t, ts.URL+"/v1/rooms/"+f.room+"/rekey", n, size, func(int) string { return forged(t, f.alice.UserKey()) })

	var read, refused int
	for _, s := range wh.requests() {
		switch {
		case s.read == size && s.status == http.StatusBadRequest: // zeros are no JSON
			read++
		case s.read == 0 && s.status == http.StatusServiceUnavailable:
			refused++
		default:
			t.Errorf("request answered %d after reading %d bytes; want 400 after the whole body, or 503 before any", s.status, s.read)
		}
	}
	if read == 0 || refused == 0 || read+refused != n {
		t.Fatalf("%d bodies read, %d refused; want some of each, %d in all", read, refused, n)
	}
	if wh.peakReading > slots {
		t.Errorf("%d bodies were read at once; want at most %d", wh.peakReading, slots)
	}
	for _, a := range answers {
		if a.err == nil && a.status == http.StatusServiceUnavailable && (a.code != api.CodeUnavailable || a.retryAfter != "1") {
			t.Errorf("503 answer with code %q, Retry-After %q; want %q and 1", a.code, a.retryAfter, api.CodeUnavailable)
		}
	}
	// The bound: the bodies being read, and as much garbage as the
	// collector lets grow beside them (GOGC=100), far from the 1 GiB sent.
	// At least one body was held, or the heap was not measured.
	t.Logf("heap grew by %.1f MiB; %d bodies read, %d refused", float64(growth)/mib, read, refused)
	if bound := uint64(3 * slots * size); growth > bound || growth < size {
		t.Errorf("heap grew by %.1f MiB; want between one body and %d MiB (%d slots of %d MiB)", float64(growth)/mib, bound/mib, slots, size/mib)
	}
}

// TestBodiesOverTheLimitAre503 fills the slots for bodies not yet checked
// with two slow, correctly signed bodies: a third call is answered 503
// with a Retry-After and the API's JSON error, its body unread; once the
// slow ones end, calls are served again.
func TestBodiesOverTheLimitAre503(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	srv := httpapi.NewServer(f.bus.Store, nil, httpapi.AuthEnforce)
	srv.MaxUnverifiedBodies = 2
	wh := watch(srv)
	ts := httptest.NewServer(wh)
	t.Cleanup(ts.Close)

	newRoom := func() []byte {
		id := api.NewRoomID()
		return jsonBody(t, api.CreateRoomRequest{ID: id, Name: "r", Cleartext: true, Statement: createStatement(t, f.alice, id, "r", false)})
	}
	post := func(body io.Reader, digest [32]byte, size int64) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/rooms", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		req.Header.Set("Authorization", signed(t, f.alice, "POST", "/v1/rooms", digest, time.Now()))
		return http.DefaultClient.Do(req)
	}
	type result struct {
		status int
		err    error
	}
	var writers []*io.PipeWriter
	var rests [][]byte
	results := make(chan result, 2)
	for range 2 {
		b := newRoom()
		pr, pw := io.Pipe()
		// Ended before the server is closed (which waits for its requests).
		t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
		writers, rests = append(writers, pw), append(rests, b[1:])
		go func() {
			resp, err := post(pr, sha256.Sum256(b), int64(len(b)))
			if err != nil {
				results <- result{err: err}
				return
			}
			resp.Body.Close()
			results <- result{status: resp.StatusCode}
		}()
		if _, err := pw.Write(b[:1]); err != nil {
			t.Fatal(err)
		}
		select {
		case <-wh.started:
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not start reading a slow body")
		}
	}

	b := newRoom()
	resp, err := post(bytes.NewReader(b), sha256.Sum256(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable || e.Message == "" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("a third body while two are read = %d %+v (Retry-After %q); want 503 %s with Retry-After 1", resp.StatusCode, e, resp.Header.Get("Retry-After"), api.CodeUnavailable)
	}

	for i, pw := range writers {
		pw.Write(rests[i])
		pw.Close()
	}
	for range 2 {
		if r := <-results; r.err != nil || r.status != http.StatusCreated {
			t.Fatalf("slow body = %d, %v; want 201", r.status, r.err)
		}
	}
	resp, err = post(bytes.NewReader(b), sha256.Sum256(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("a body once the slots are free = %d; want 201", resp.StatusCode)
	}
}

// trickle is a body that sends chunk bytes every interval, n bytes in all.
type trickle struct {
	data     []byte
	chunk    int
	interval time.Duration
	sent     int
}

func (tr *trickle) Read(p []byte) (int, error) {
	if tr.sent >= len(tr.data) {
		return 0, io.EOF
	}
	if tr.sent > 0 {
		time.Sleep(tr.interval)
	}
	k := copy(p[:min(len(p), tr.chunk)], tr.data[tr.sent:])
	tr.sent += k
	return k, nil
}

// TestSlowBodiesAreCut: a body that trickles in (one byte every 100 ms) is
// cut once the body deadline has passed, a JSON call's and an upload's
// alike, while an upload that keeps coming at a sane rate goes on past it.
// The deadline is 300 ms here; membershipd's is DefaultBodyTimeout.
func TestSlowBodiesAreCut(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	blobs, err := blobstore.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httpapi.NewServer(f.bus.Store, blobs, httpapi.AuthEnforce)
	srv.MaxBlobBytes = 1 << 20
	const timeout = 300 * time.Millisecond
	srv.BodyTimeout = timeout
	wh := watch(srv)
	ts := httptest.NewServer(wh)
	t.Cleanup(ts.Close)

	id := api.NewRoomID()
	room := jsonBody(t, api.CreateRoomRequest{ID: id, Name: "slow", Cleartext: true, Statement: createStatement(t, f.alice, id, "slow", false)})
	blob := make([]byte, 512<<10)
	rand.Read(blob)
	blobPath := "/v1/rooms/" + f.room + "/blobs"
	cases := []struct {
		name     string
		path     string
		body     []byte
		ctype    string
		chunk    int
		interval time.Duration
		status   int
		cut      bool
	}{
		{"JSON, a byte every 100 ms", "/v1/rooms", room, "application/json", 1, 100 * time.Millisecond, http.StatusBadRequest, true},
		{"upload, a byte every 100 ms", blobPath, blob, "application/octet-stream", 1, 100 * time.Millisecond, http.StatusBadRequest, true},
		// 320 KiB/s, five times MinBodyRate: 1.5 s, past the deadline.
		{"upload, 32 KiB every 100 ms", blobPath, blob, "application/octet-stream", 32 << 10, 100 * time.Millisecond, http.StatusCreated, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(wh.requests())
			digest := sha256.Sum256(tc.body)
			req, err := http.NewRequest(http.MethodPost, ts.URL+tc.path, &trickle{data: tc.body, chunk: tc.chunk, interval: tc.interval})
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(len(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			req.Header.Set("Authorization", signed(t, f.alice, "POST", tc.path, digest, time.Now()))
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			// Bounded, so that a server without the deadline fails the
			// test instead of reading the trickle for hours.
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if err == nil {
				resp.Body.Close()
			}
			seen := wh.requests()
			if len(seen) != before+1 {
				t.Fatalf("the server saw %d requests; want 1", len(seen)-before)
			}
			s := seen[len(seen)-1]
			if s.status != tc.status {
				t.Fatalf("status %d after %s and %d bytes; want %d", s.status, s.took, s.read, tc.status)
			}
			if !tc.cut {
				if s.read != int64(len(tc.body)) || s.took < timeout {
					t.Fatalf("read %d bytes in %s; want all %d, past the %s deadline", s.read, s.took, len(tc.body), timeout)
				}
				return
			}
			// Cut at the deadline: not before, and well before the
			// trickle would have ended.
			if s.took < timeout || s.took > timeout+2*time.Second || s.read >= int64(len(tc.body)) {
				t.Fatalf("cut after %s and %d of %d bytes; want at %s, give or take scheduling", s.took, s.read, len(tc.body), timeout)
			}
		})
	}
}
