package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
)

// Talking to a cluster: the nodes of Config.Servers are tried in turn.
//
// A request goes to the node that answered last. When that node cannot be
// reached (connection refused or reset, no answer within the attempt's
// time) or answers that it is unavailable (502, 503, 504), the request is
// signed anew (a fresh nonce: nodes refuse a replayed request) and sent to
// the next node, and so on. A node that answers anything else (a refusal,
// a conflict, a success) has answered: the answer is the request's, and
// the node is remembered for the next request. When every node has failed
// and at least one said it was unavailable (a cluster electing a leader),
// another round starts after a pause, until [Config.Timeout] has passed.
//
// A write sent twice this way may have been committed by the node that did
// not answer. Each write is made safe to send again: messages carry their
// id, which JetStream deduplicates; a membership change names the
// statement it follows, so a second copy comes back conflict, and the SDK
// then finds its own statement in the room's history and takes that as
// success (committed); a room's creation and a user's registration are
// found the same way.

// DefaultTimeout bounds each wait for the deployment when Config.Timeout
// is 0: an API request over every node, the NATS connection, a message's
// acknowledgement.
const DefaultTimeout = 30 * time.Second

// DefaultAttemptTimeout is how long one node may stay silent on a
// request, when Config.AttemptTimeout is 0, before the next is tried.
const DefaultAttemptTimeout = 10 * time.Second

// minAttempt is the least time an attempt is given when what is left of
// the request's time is shared among the nodes not yet tried.
const minAttempt = 250 * time.Millisecond

// dialTimeout bounds a TCP connection to a node; a node that does not
// answer a connection at all (down, or its host unreachable) is passed
// over quickly.
const dialTimeout = 5 * time.Second

// NodeFailure is one node that did not answer a request, and why.
type NodeFailure struct {
	Node   string // host:port, or the URL when it has a path
	Reason string // "connection refused", "timeout", "unavailable: …"
	Err    error
}

// UnreachableError reports an API request that no node answered: the
// nodes tried, in order, each with why it failed. It unwraps to each
// node's error (an *api.Error for a node that answered unavailable), and
// to context.DeadlineExceeded when the caller's deadline passed.
type UnreachableError struct {
	Tried []NodeFailure
	// Context is the caller's context's error, if it ended.
	Context error
}

func (e *UnreachableError) Error() string {
	var fix *fixError
	if len(e.Tried) == 1 && errors.As(e.Tried[0].Err, &fix) {
		// One node, pointed at wrongly: what to change.
		return fix.msg
	}
	parts := make([]string, len(e.Tried))
	busy := false // a node answered, saying it cannot serve now
	for i, f := range e.Tried {
		parts[i] = f.Node + " (" + f.Reason + ")"
		var ae *api.Error
		busy = busy || errors.As(f.Err, &ae)
	}
	if busy {
		return "no node could serve the request: " + strings.Join(parts, ", ") + ": try again in a moment; if it lasts, the cluster may have lost most of its nodes"
	}
	return "no node answered: " + strings.Join(parts, ", ") + ": check that membershipd runs there, or set --server (UNIBUS_SERVER) to the nodes of your deployment"
}

func (e *UnreachableError) Unwrap() []error {
	errs := make([]error, 0, len(e.Tried)+1)
	for _, f := range e.Tried {
		errs = append(errs, f.Err)
	}
	if e.Context != nil {
		errs = append(errs, e.Context)
	}
	return errs
}

// errAttemptTimeout is a node that did not answer within its attempt's time.
var errAttemptTimeout = errors.New("timeout")

// parseServers turns the configured membershipd URLs into the nodes to
// try: Server first, then Servers, without repeats; DefaultServer when
// both are empty.
func parseServers(cfg Config) ([]*url.URL, error) {
	raw := cfg.Servers
	if cfg.Server != "" {
		raw = append([]string{cfg.Server}, raw...)
	}
	var nodes []*url.URL
	seen := map[string]bool{}
	for _, s := range raw {
		s = strings.TrimRight(strings.TrimSpace(s), "/")
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: server URL %q must look like http://HOST:PORT or https://HOST:PORT", s)
		}
		nodes = append(nodes, u)
	}
	if len(nodes) == 0 {
		u, _ := url.Parse(DefaultServer)
		nodes = append(nodes, u)
	}
	return nodes, nil
}

// nodeName is how errors name a node: its host and port, or its URL
// when it has a path.
func nodeName(u *url.URL) string {
	if u.Path != "" {
		return u.String()
	}
	return u.Host
}

// Servers returns the membershipd URLs the client tries, in the order
// given.
func (c *Client) Servers() []string {
	out := make([]string, len(c.nodes))
	for i, u := range c.nodes {
		out[i] = u.String()
	}
	return out
}

// buildFunc makes the request of one attempt, for a node, bound to ctx.
type buildFunc func(ctx context.Context, node *url.URL) (*http.Request, error)

// buildError is a request that could not be made: no node is to blame.
type buildError struct{ err error }

func (e *buildError) Error() string { return e.err.Error() }
func (e *buildError) Unwrap() error { return e.err }

// sendInfo is what send learned of a request on its way.
type sendInfo struct {
	// resent is set when the request went to a node after an attempt
	// that may have reached another, which may have done it.
	resent bool
}

// send sends the request build makes to the nodes in turn, from the one
// that answered last, until one answers with anything but unavailability
// (see the comment at the top of this file). The caller closes the
// response's body, which ends the attempt.
func (c *Client) send(ctx context.Context, build buildFunc) (*http.Response, error) {
	return c.sendTracked(ctx, build, nil)
}

// sendTracked is send, telling info (when not nil) whether the request
// was sent again after an attempt that may have been done.
func (c *Client) sendTracked(ctx context.Context, build buildFunc, info *sendInfo) (*http.Response, error) {
	reached := false // an attempt failed after it may have reached its node
	giveUp := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(giveUp) {
		giveUp = d
	}
	n := len(c.nodes)
	first := int(c.last.Load())
	var tried []NodeFailure
	at := map[int]int{} // node -> its entry in tried
	for round := 0; ; round++ {
		answered := false // a node answered that it is unavailable
		var retryAfter time.Duration
		for i := 0; i < n; i++ {
			left := time.Until(giveUp)
			if left <= 0 {
				break
			}
			idx := (first + i) % n
			node := c.nodes[idx]
			// What is left is shared among the nodes not yet tried in
			// this round, so that a silent node leaves time for others.
			wait := min(c.attemptTimeout, max(left/time.Duration(n-i), minAttempt), left)
			resp, err := c.attempt(ctx, node, wait, build)
			var be *buildError
			if errors.As(err, &be) {
				return nil, be.err
			}
			if err == nil && !unavailableStatus(resp.StatusCode) {
				c.last.Store(int64(idx))
				if info != nil {
					info.resent = reached
				}
				return resp, nil
			}
			reached = reached || err == nil || mayHaveReached(err)
			if ctx.Err() != nil && (err != nil || errors.Is(ctx.Err(), context.Canceled)) {
				if resp != nil {
					resp.Body.Close()
				}
				if errors.Is(ctx.Err(), context.Canceled) {
					return nil, ctx.Err()
				}
				err = ctx.Err()
			}
			f := NodeFailure{Node: nodeName(node)}
			if err != nil {
				f.Reason, f.Err = describeTransport(err), err
				if reason, fix := settingFault(node, err); fix != nil {
					f.Reason, f.Err = reason, fix
				}
			} else {
				f.Err = checkResponse(resp)
				f.Reason = describeUnavailable(resp, f.Err)
				retryAfter = max(retryAfter, parseRetryAfter(resp.Header.Get("Retry-After")))
				resp.Body.Close()
				answered = true
			}
			c.log.Debug("node did not answer; trying the next", "node", f.Node, "reason", f.Reason)
			if j, ok := at[idx]; ok {
				tried[j] = f
			} else {
				at[idx] = len(tried)
				tried = append(tried, f)
			}
		}
		left := time.Until(giveUp)
		if !answered || left <= 0 || ctx.Err() != nil {
			return nil, c.unreachable(ctx, tried, at, first)
		}
		// Some node is up but cannot serve now (electing a leader, say):
		// the next round may find one that can.
		pause := min(max(retryAfter, time.Duration(250<<min(round, 2))*time.Millisecond), 2*time.Second, left)
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, ctx.Err()
			}
			return nil, c.unreachable(ctx, tried, at, first)
		case <-time.After(pause):
		}
	}
}

// unreachable is the error of a request no node answered: the failures
// of the nodes tried (at: their entries), and the nodes that time did not
// leave a turn to.
func (c *Client) unreachable(ctx context.Context, tried []NodeFailure, at map[int]int, first int) error {
	for i := range c.nodes {
		idx := (first + i) % len(c.nodes)
		if _, ok := at[idx]; !ok {
			tried = append(tried, NodeFailure{Node: nodeName(c.nodes[idx]), Reason: "not tried: out of time", Err: errAttemptTimeout})
		}
	}
	return &UnreachableError{Tried: tried, Context: contextEnded(ctx)}
}

// contextEnded is ctx's error, or context.DeadlineExceeded as soon as its
// deadline has passed (a moment before its error says so).
func contextEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// attempt sends one request to one node. The node has wait to answer,
// counted from the last byte of the request body it took (a body that
// stops moving for wait also ends the attempt); once it has answered,
// reading the answer is bounded by ctx alone.
func (c *Client) attempt(ctx context.Context, node *url.URL, wait time.Duration, build buildFunc) (*http.Response, error) {
	actx, cancel := context.WithCancel(ctx)
	w := newWatchdog(wait, cancel)
	req, err := build(actx, node)
	if err != nil {
		w.stop()
		cancel()
		return nil, &buildError{err}
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &kickingBody{ReadCloser: req.Body, w: w}
	}
	resp, err := c.http.Do(req)
	fired := w.stop()
	switch {
	case fired:
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("no answer within %s: %w", wait.Round(time.Millisecond), errAttemptTimeout)
	case err != nil:
		cancel()
		return nil, err
	}
	resp.Body = &cancelingBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// mayHaveReached reports whether a request that failed with err may have
// been read by its node: it did not fail while connecting.
func mayHaveReached(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	var fix *fixError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.As(err, &dns), errors.As(err, &fix):
		return false
	case errors.As(err, &op) && op.Op == "dial":
		return false
	}
	return true
}

// unavailableStatus tells the answers that say a node cannot serve now
// (it, or the gateway in front of it) from the answers to the request.
func unavailableStatus(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// describeTransport says in a few words why a node could not be reached
// (a setting to change is settingFault's).
func describeTransport(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	var dns *net.DNSError
	var recordHeader tls.RecordHeaderError
	var netErr net.Error
	switch {
	case errors.Is(err, errAttemptTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &dns):
		return "unknown host"
	case errors.As(err, &recordHeader):
		return "TLS: the node does not speak TLS (use http://)"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	}
	return err.Error()
}

// describeUnavailable says why a node answered that it is unavailable.
func describeUnavailable(resp *http.Response, err error) string {
	var e *api.Error
	if errors.As(err, &e) && e.Code == api.CodeUnavailable {
		return "unavailable: " + e.Message
	}
	return resp.Status
}

// parseRetryAfter reads a Retry-After header in seconds; 0 when absent
// or a date.
func parseRetryAfter(v string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// watchdog cancels an attempt when it has made no progress for d: the
// request body moved no byte, or, once it was sent, no answer came.
type watchdog struct {
	d      time.Duration
	cancel context.CancelFunc

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
	fired   bool
}

func newWatchdog(d time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{d: d, cancel: cancel}
	w.mu.Lock()
	w.t = time.AfterFunc(d, w.fire)
	w.mu.Unlock()
	return w
}

func (w *watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.fired = true
	w.cancel()
}

// kick starts the wait again: the request made progress.
func (w *watchdog) kick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped && !w.fired {
		w.t.Reset(w.d)
	}
}

// stop ends the watch, reporting whether it had fired.
func (w *watchdog) stop() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
	return w.fired
}

// kickingBody is a request body that tells its watchdog of each read.
type kickingBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *kickingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.w.kick()
	return n, err
}

// cancelingBody is a response body whose Close ends its attempt.
type cancelingBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelingBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
