package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
)

// How membershipd starts on a JetStream that is not ready yet (a cluster
// whose other nodes are still starting, a full restart, an election):
// the HTTP API listens first, answering /healthz 200 and everything else,
// /readyz included, 503 with what the node waits for; each step that needs
// JetStream (the meta leader, the KV store, the blob object store, the
// history stream) is retried with backoff until it succeeds, fails for
// good (a setting JetStream refuses), or --start-timeout passes. What a
// step waits for is logged once per change, not once per attempt.
const (
	// defaultStartTimeout is --start-timeout: long enough for every node
	// of a cluster to be started by hand, one after the other.
	defaultStartTimeout = 5 * time.Minute
	// startAttemptTimeout bounds one attempt at a step, kvOpenTimeout one
	// attempt at opening the KV store (it loads its cache) and
	// blobOpenTimeout one at the blob object store (it reads every blob's
	// metadata). An attempt's context has no deadline, so that each
	// JetStream request in it gets nats.go's own timeout (5 s): a request
	// nobody answers (a cluster still electing its leaders answers
	// nothing) is retried soon, while a long load may take its time.
	startAttemptTimeout = 30 * time.Second
	kvOpenTimeout       = 2 * time.Minute
	blobOpenTimeout     = time.Minute
	// startBackoffMin and startBackoffMax bound the wait between attempts
	// (doubling, with jitter).
	startBackoffMin = 250 * time.Millisecond
	startBackoffMax = 5 * time.Second
)

// starter runs the steps of the start that need JetStream.
type starter struct {
	logger *log.Logger
	ns     *server.Server // the embedded server; nil with --nats-url
	// clustered is set for an embedded server with --cluster-name, and
	// routes is the number of its --routes.
	clustered bool
	routes    int
	timeout   time.Duration // --start-timeout; 0: no bound
	began     time.Time
	ready     *readiness // told what the node waits for
}

func newStarter(logger *log.Logger, timeout time.Duration, ready *readiness) *starter {
	return &starter{logger: logger, timeout: timeout, began: time.Now(), ready: ready}
}

// errStartTimeout is a step still failing when --start-timeout passed,
// and errAttemptTimeout an attempt cut short.
var (
	errStartTimeout   = errors.New("not ready within --start-timeout")
	errAttemptTimeout = errors.New("no answer in time")
)

// waitMeta waits until the embedded clustered server has a JetStream meta
// leader, saying how many nodes it sees meanwhile: until then JetStream
// leaves requests unanswered. A standalone or external server has
// nothing to wait for here.
func (st *starter) waitMeta(ctx context.Context) error {
	if st.ns == nil || !st.clustered {
		return nil
	}
	return st.step(ctx, "the JetStream meta leader", startAttemptTimeout, func(context.Context) error {
		if st.metaCurrent() {
			return nil
		}
		return errors.New(st.metaState())
	})
}

// metaCurrent reports whether the embedded server knows a meta leader
// and is in touch with it. (JetStreamIsCurrent alone reports true while
// the server has not set its cluster up yet, and while it knows no
// leader, as at the start of a restart.)
func (st *starter) metaCurrent() bool {
	if !st.ns.JetStreamIsClustered() || !st.ns.JetStreamIsCurrent() {
		return false
	}
	jsz, err := st.ns.Jsz(nil)
	return err == nil && jsz.Meta != nil && jsz.Meta.Leader != ""
}

// metaState describes the cluster as the embedded server sees it without
// a meta leader: how many nodes it is routed to, how many a quorum needs.
func (st *starter) metaState() string {
	peers := 0
	if rz, err := st.ns.Routez(nil); err == nil {
		seen := map[string]bool{}
		for _, r := range rz.Routes {
			seen[r.RemoteName] = true
		}
		peers = len(seen)
	}
	if peers >= st.routes {
		return fmt.Sprintf("no meta leader yet; routed to all %d node(s) of --routes, electing one", st.routes)
	}
	return fmt.Sprintf("no meta leader yet; routed to %d of the %d node(s) of --routes: a quorum of the cluster must be up, start the others", peers, st.routes)
}

// step runs fn until it succeeds, retrying what may pass with backoff.
// Each attempt is cut short after attemptTimeout. It logs what it waits
// for when that changes, and once more when it is done.
func (st *starter) step(ctx context.Context, what string, attemptTimeout time.Duration, fn func(ctx context.Context) error) error {
	wait := startBackoffMin
	last, waited := "", false
	for {
		attempt, cancel := context.WithCancelCause(ctx)
		timer := time.AfterFunc(attemptTimeout, func() { cancel(errAttemptTimeout) })
		err := fn(attempt)
		timer.Stop()
		if err != nil && context.Cause(attempt) == errAttemptTimeout {
			err = fmt.Errorf("%w (%v)", errAttemptTimeout, err)
		}
		cancel(nil)
		if err == nil {
			if waited {
				st.logger.Printf("%s: ready (%s after the start)", what, time.Since(st.began).Round(100*time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if permanent(err) {
			return err
		}
		reason := st.reason(err)
		if reason != last {
			st.logger.Printf("waiting for %s: %s", what, reason)
			st.ready.setStarting(fmt.Sprintf("waiting for %s: %s", what, reason))
			last, waited = reason, true
		}
		pause := wait/2 + rand.N(wait/2+1)
		if st.timeout > 0 {
			left := st.timeout - time.Since(st.began)
			if left <= 0 {
				if detail := err.Error(); detail != reason {
					reason += " (" + detail + ")"
				}
				return fmt.Errorf("%s: %w (%s): %s; check that a quorum of the nodes is up and routed to each other (docs/cluster.md), or raise --start-timeout", what, errStartTimeout, st.timeout, reason)
			}
			pause = min(pause, left)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		wait = min(2*wait, startBackoffMax)
	}
}

// reason is what a failed attempt says about what the node waits for, in
// words that stay the same from one attempt to the next while the cluster
// does not change, so that the log line is written once.
func (st *starter) reason(err error) string {
	if st.ns != nil && st.clustered && !st.metaCurrent() {
		return st.metaState()
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, errAttemptTimeout):
		return "JetStream does not answer yet (a stream leader is being elected, or too few nodes are up)"
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeClusterNoPeers:
		return "too few nodes up to place the replicas of a new stream (" + apiErr.Description + "): start the others, or lower --replicas"
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeClusterNotAvail:
		return "JetStream is temporarily unavailable (no quorum yet)"
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrBucketNotFound),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		return "a stream is not known to this node yet (it is catching up with the cluster)"
	}
	var e *api.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// JetStream error codes that the nats.go version in go.mod does not name.
const (
	jsErrCodeClusterNoPeers      jetstream.ErrorCode = 10005 // no suitable peers for placement
	jsErrCodeClusterNotAvail     jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable
	jsErrCodeReplicasUnsupported jetstream.ErrorCode = 10074 // replicas > 1 not supported in non-clustered mode
)

// permanent reports whether a failed start step cannot succeed by
// waiting: JetStream is off, or refused a setting. Anything else (no
// answer, no leader, too few nodes for the replicas asked, a stream made
// meanwhile by another node, or one not found just after it was found or
// made: a node that has just rejoined learns the cluster's streams from
// the meta leader a moment later) may pass as the cluster comes up.
func permanent(err error) bool {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return false
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, nats.ErrNoResponders) {
		// Nobody answers the JetStream API: JetStream is off.
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jsErrCodeReplicasUnsupported:
		return true
	case jsErrCodeClusterNoPeers, jetstream.JSErrCodeStreamNameInUse, jsErrCodeClusterNotAvail, jetstream.JSErrCodeStreamNotFound:
		return false
	}
	return apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != http.StatusRequestTimeout
}

// Readiness (/readyz).
const (
	// readyCacheFor is how long one check answers /readyz: a load
	// balancer polling every second costs one check a second.
	readyCacheFor = time.Second
	// readyCheckTimeout bounds one check (its requests run in parallel).
	readyCheckTimeout = 1500 * time.Millisecond
	// peerSilence is how long a stream leader may go without hearing from
	// a replica before /readyz stops counting it towards the quorum (the
	// leader hears from each replica every second; JetStream itself waits
	// ten seconds before the leader steps down).
	peerSilence = 4 * time.Second
)

// readiness is what /readyz answers: while starting, what the node waits
// for; once started, the result of check, at most readyCacheFor old.
type readiness struct {
	logger *log.Logger

	mu       sync.Mutex
	starting string                          // while check is nil
	check    func(ctx context.Context) error // set once started
	at       time.Time                       // of the last check
	err      error                           // its result
	running  chan struct{}                   // closed when the running check ends
	wasReady bool
}

func newReadiness(logger *log.Logger) *readiness {
	return &readiness{logger: logger, starting: "opening its stores and NATS"}
}

// setStarting says what the starting node waits for.
func (r *readiness) setStarting(what string) {
	r.mu.Lock()
	r.starting = what
	r.mu.Unlock()
}

// started makes check decide readiness from now on.
func (r *readiness) started(check func(ctx context.Context) error) {
	r.mu.Lock()
	r.check = check
	r.mu.Unlock()
}

// ready returns nil when the node can serve reads and writes, else an
// *api.Error (unavailable) that says what is missing. Concurrent callers
// share one check.
func (r *readiness) ready(ctx context.Context) error {
	r.mu.Lock()
	if r.check == nil {
		what := r.starting
		r.mu.Unlock()
		return api.Errorf(api.CodeUnavailable, "not ready: membershipd is starting: %s", what)
	}
	if !r.at.IsZero() && time.Since(r.at) < readyCacheFor {
		err := r.err
		r.mu.Unlock()
		return err
	}
	running := r.running
	if running == nil {
		running = make(chan struct{})
		r.running = running
		go r.run(running)
	}
	r.mu.Unlock()
	select {
	case <-running:
	case <-ctx.Done():
		return api.Errorf(api.CodeUnavailable, "not ready: the readiness check was cut short: %v", ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// run runs one check, records it and closes done.
func (r *readiness) run(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), readyCheckTimeout)
	defer cancel()
	err := r.check(ctx)
	if err != nil {
		err = api.Errorf(api.CodeUnavailable, "not ready: %v", err)
	}
	r.mu.Lock()
	r.at, r.err, r.running = time.Now(), err, nil
	switch {
	case err != nil && r.wasReady:
		r.logger.Printf("not ready: %v", err.(*api.Error).Message)
	case err == nil && !r.wasReady:
		r.logger.Printf("ready: serving reads and writes")
	}
	r.wasReady = err == nil
	r.mu.Unlock()
	close(done)
}

// ServeHTTP answers /readyz: 200 {"status": "ready"}, or 503 with the
// API's error body saying what is missing.
func (r *readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		writeAPIJSON(w, http.StatusMethodNotAllowed, api.Errorf(api.CodeMethod, "method %s not allowed on /readyz: use GET", req.Method))
		return
	}
	if err := r.ready(req.Context()); err != nil {
		var e *api.Error
		if !errors.As(err, &e) {
			e = api.Errorf(api.CodeUnavailable, "not ready: %v", err)
		}
		writeAPIJSON(w, api.HTTPStatus(e.Code), e)
		return
	}
	writeAPIJSON(w, http.StatusOK, api.Health{Status: "ready"})
}

// frontDoor is the HTTP handler from the first moment membershipd
// listens: /readyz always; while starting, /healthz 200 (the process is
// alive) and 503 for the rest of the API; once started, the API.
type frontDoor struct {
	ready *readiness
	api   atomic.Pointer[http.Handler]
}

// serve makes h answer everything but /readyz from now on.
func (f *frontDoor) serve(h http.Handler) { f.api.Store(&h) }

func (f *frontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		f.ready.ServeHTTP(w, r)
		return
	}
	if h := f.api.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == "/healthz" && r.Method == http.MethodGet {
		writeAPIJSON(w, http.StatusOK, api.Health{Status: "ok"})
		return
	}
	w.Header().Set("Retry-After", "1")
	writeAPIJSON(w, http.StatusServiceUnavailable, api.Errorf(api.CodeUnavailable, "membershipd is starting and does not serve the API yet: try again (GET /readyz says what it waits for)"))
}

// writeAPIJSON writes v as the API does: JSON, with a status.
func writeAPIJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// nodeCheck is the readiness check of a started node: its NATS
// connections are up, JetStream's meta leader answers, and every stream
// the bus keeps (the history stream; with --store kv the KV buckets and
// the blob object store) has a leader that hears from a quorum of its
// replicas. It reads stream infos only, all at once: cheap enough for a
// poll every second.
type nodeCheck struct {
	bus        *nats.Conn
	busJS      jetstream.JetStream
	ctl        *nats.Conn          // nil with --store sqlite
	ctlJS      jetstream.JetStream // nil with --store sqlite
	ctlStreams []string            // the control account's streams
}

func (c *nodeCheck) check(ctx context.Context) error {
	if !c.bus.IsConnected() {
		return errors.New("this node's NATS connection is down (reconnecting)")
	}
	if c.ctl != nil && !c.ctl.IsConnected() {
		return errors.New("this node's control-plane NATS connection is down (reconnecting)")
	}
	type probe struct {
		js     jetstream.JetStream
		stream string // "": the meta leader
	}
	probes := []probe{{js: c.busJS}, {js: c.busJS, stream: api.HistoryStream}}
	for _, name := range c.ctlStreams {
		probes = append(probes, probe{js: c.ctlJS, stream: name})
	}
	errs := make([]error, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.stream == "" {
				if _, err := p.js.AccountInfo(ctx); err != nil {
					errs[i] = fmt.Errorf("JetStream does not answer (%s): no meta leader, is a quorum of the nodes up?", unanswered(err))
				}
				return
			}
			st, err := p.js.Stream(ctx, p.stream)
			if err != nil {
				errs[i] = fmt.Errorf("stream %s does not answer (%s): its leader is gone or has no quorum", p.stream, unanswered(err))
				return
			}
			errs[i] = streamQuorum(st.CachedInfo())
		}()
	}
	wg.Wait()
	var missing []string
	for _, err := range errs {
		if err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// unanswered says why a JetStream request of the check failed.
func unanswered(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", readyCheckTimeout)
	}
	return err.Error()
}

// streamQuorum returns nil when the stream of info has a leader that has
// heard from a quorum of its replicas within peerSilence, else what is
// missing. A stream of a standalone server has no cluster and always
// passes.
func streamQuorum(info *jetstream.StreamInfo) error {
	ci := info.Cluster
	if ci == nil {
		return nil
	}
	name := info.Config.Name
	if ci.Leader == "" {
		return fmt.Errorf("stream %s has no leader", name)
	}
	replicas := max(1, info.Config.Replicas)
	live := 1 // the leader, which answered
	for _, p := range ci.Replicas {
		if p.Current && !p.Offline && p.Active < peerSilence {
			live++
		}
	}
	if need := replicas/2 + 1; live < need {
		return fmt.Errorf("stream %s reaches %d of its %d replicas, a quorum needs %d", name, live, replicas, need)
	}
	return nil
}
