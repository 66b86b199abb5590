package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// API returns next measured: every request's time to answer is observed
// in unibus_api_request_duration_seconds under its route pattern (the
// pattern of the http.ServeMux route that took it, such as
// "GET /v1/rooms/{room}", or "unmatched") and its HTTP status. Wrap the
// outermost API handler, so that requests refused in front of the API's
// mux (by the address rate limiter) are measured too, as unmatched.
func (m *Metrics) API(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := recorders.Get().(*recorder)
		rec.ResponseWriter, rec.code = w, 0
		next.ServeHTTP(rec, r)
		code := rec.code
		rec.ResponseWriter = nil
		recorders.Put(rec)
		if code == 0 {
			code = http.StatusOK
		}
		// ServeMux sets the pattern of the route it chose on the request
		// it was given, which is r. (A handler that panics is not
		// measured: net/http ends its connection.)
		m.api.observe(r.Pattern, code, time.Since(start))
	})
}

// apiSeries resolves each route and status to its histogram series once,
// into a map that is copied on every addition and read without a lock.
// Routes are the mux's patterns and statuses the API's own, so the map
// stays small.
type apiSeries struct {
	vec  *prometheus.HistogramVec
	mu   sync.Mutex // serializes additions
	seen atomic.Pointer[map[routeCode]prometheus.Observer]
}

type routeCode struct {
	route string
	code  int
}

func newAPISeries(vec *prometheus.HistogramVec) *apiSeries {
	a := &apiSeries{vec: vec}
	a.seen.Store(&map[routeCode]prometheus.Observer{})
	return a
}

func (a *apiSeries) observe(route string, code int, d time.Duration) {
	k := routeCode{route, code}
	o, ok := (*a.seen.Load())[k]
	if !ok {
		o = a.add(k)
	}
	o.Observe(d.Seconds())
}

// add resolves k's series and publishes a copy of the map holding it.
func (a *apiSeries) add(k routeCode) prometheus.Observer {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.seen.Load()
	if o, ok := old[k]; ok {
		return o
	}
	label := k.route
	if label == "" {
		label = UnmatchedRoute
	}
	o := a.vec.WithLabelValues(label, strconv.Itoa(k.code))
	next := make(map[routeCode]prometheus.Observer, len(old)+1)
	for kk, oo := range old {
		next[kk] = oo
	}
	next[k] = o
	a.seen.Store(&next)
	return o
}

// recorder keeps the status a handler answers with. Recorders are
// reused: a handler must not keep its ResponseWriter past its return,
// which net/http asks of every handler anyway.
type recorder struct {
	http.ResponseWriter
	code int
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets streamed answers (blob downloads) flush through.
func (r *recorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (the API sets
// read deadlines on request bodies through it).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
