// Package bench measures a running unibus deployment as one user, through
// the SDK (package client) and NATS: what end-to-end encryption costs
// against raw NATS, the control plane's signed requests, and a room's
// rekey. It is what `unibus bench` runs; that command parses the flags
// into [Options], calls [Run] and prints the [Report].
//
// # What it measures
//
// One run has up to four parts, in this order, all with the same
// connection settings:
//
//   - raw: core NATS publish/subscribe on a scratch subject in the
//     caller's own inbox ("_INBOX_<user>.bench.<room id>": every bus lets a
//     user publish there, and JetStream does not keep it), the baseline;
//   - e2e: the same load through the SDK in a scratch room, an encrypted
//     one (seal, sign, publish to JetStream and wait for the ack; a
//     followed Read that verifies and decrypts), then the run read back
//     from history by a fresh client: the receive path alone;
//   - api: signed control-plane requests per second (room list, key fetch)
//     at a given concurrency;
//   - rekey: the rekey of a scratch room of N members, N-1 of them
//     throwaway users (admins only), from the SDK's Rekey to the last
//     member holding the new key.
//
// Latency is measured at the receiver against a send time carried in the
// message; publishers and subscribers run in this process, so one
// monotonic clock serves both. Every part is bounded by [Options.Timeout].
// A run deletes its scratch room at the end, with its messages, keys and
// members, and revokes its throwaway users (users are never deleted), and
// says so in [Report.Cleanup].
//
// # Use
//
//	o := bench.DefaultOptions()
//	o.Server, o.Identity = "http://127.0.0.1:8470", id
//	o.Msgs, o.Skip = 10000, []string{"api"}
//	rep, err := bench.Run(ctx, o)
//	if rep != nil {
//		rep.WriteText(os.Stdout) // or encoding/json: the `unibus bench --json` document
//	}
//
// The report's messages (warnings, skip reasons, errors) name the options
// by their `unibus bench` flags: --msgs for [Options.Msgs], and so on.
//
// # Concurrency
//
// Run keeps no state between calls: each run opens its own clients and
// connections and closes them before it returns, so runs may go on at
// once in one process. They then share its cores and measure each other.
// Within a run, [Options.Progress] is written one line at a time, never
// from two goroutines at once. A returned [Report] is a plain value that
// the run no longer touches.
package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// The parts of a run, in the order they run; [Options.Skip] names them.
const (
	PartRaw   = "raw"
	PartE2E   = "e2e"
	PartAPI   = "api"
	PartRekey = "rekey"
)

// parts are the parts of a run, in the order they run.
func parts() []string { return []string{PartRaw, PartE2E, PartAPI, PartRekey} }

const (
	// minSize leaves room for the send time and a marker in a message.
	minSize = 24
	// maxSize keeps a message, with its payload's framing, within
	// e2ee.MaxPlaintext.
	maxSize = e2ee.MaxPlaintext - 64
	// idle is how long delivery may stall, after the publishers are
	// done, before the missing messages are counted as lost.
	idle = 10 * time.Second
	// cleanupTimeout bounds the clean-up when Timeout is shorter.
	cleanupTimeout = 2 * time.Minute
	// addChunk is how many members one add request carries.
	addChunk = 5000
)

// Options configure a run. Start from [DefaultOptions]: the zero value of
// a count is not a default, it is refused by [Options.Validate].
type Options struct {
	// Server is the membershipd URL; client.DefaultServer when empty.
	Server string
	// Identity is the user the run acts as. Required.
	Identity *identity.Identity
	// TLS, when set, is used for HTTPS to the server and TLS to NATS.
	TLS *tls.Config
	// NATSURL overrides the NATS URL the server advertises.
	NATSURL string

	// Size is the message payload in bytes (--size), at least 24: the
	// send time travels in the message.
	Size int
	// Msgs is the number of messages in all, for the raw run and, the
	// same, for the end-to-end run (--msgs).
	Msgs int
	// Pub publishers, each with its own connection, share Msgs (--pub);
	// Sub subscribers, each with its own connection, each receive every
	// message (--sub).
	Pub, Sub int
	// Rate is the publishers' rate in messages a second, all together,
	// for a latency run; 0 publishes as fast as possible (--rate).
	Rate int
	// Concurrency is the number of signed requests at a time for the API
	// run and the rekey's set-up and fetches (--concurrency).
	Concurrency int
	// Duration is how long each API call runs (--duration), unless
	// Requests is set: then each call stops after Requests requests
	// (--requests), or after Timeout.
	Duration time.Duration
	Requests int
	// RekeyMembers, when not 0, times the rekey of a scratch room of that
	// many members, at least 2: the caller and RekeyMembers-1 throwaway
	// users (admins only; --rekey-members).
	RekeyMembers int
	// Skip names the parts not to run: PartRaw, PartE2E, PartAPI,
	// PartRekey (--skip).
	Skip []string
	// Timeout bounds each part (--timeout).
	Timeout time.Duration
	// Progress receives progress lines; nil discards them. `unibus bench`
	// passes its stderr when it is a terminal.
	Progress io.Writer
}

// DefaultOptions returns the defaults of `unibus bench`: 100,000 messages
// of 1 KiB, one publisher and one subscriber as fast as possible, 16
// requests at a time for 3 s each, no rekey, 2 minutes a part. Server and
// Identity are left for the caller.
func DefaultOptions() Options {
	return Options{Size: 1024, Msgs: 100000, Pub: 1, Sub: 1, Concurrency: 16, Duration: 3 * time.Second, Timeout: 2 * time.Minute}
}

// Validate reports the first option out of range, in the words of the
// `unibus bench` flag that sets it. Run validates too; Validate lets a
// caller tell bad usage from a failed run.
func (o Options) Validate() error {
	_, err := o.skipped()
	return err
}

// skipped validates the options and returns the parts to skip, each with
// the reason the report gives.
func (o *Options) skipped() (map[string]string, error) {
	switch {
	case o.Size < minSize:
		return nil, fmt.Errorf("--size %d: use at least %d bytes (the send time travels in the message)", o.Size, minSize)
	case o.Size > maxSize:
		return nil, fmt.Errorf("--size %d: use at most %d bytes", o.Size, maxSize)
	case o.Msgs < 1:
		return nil, fmt.Errorf("--msgs %d: send at least one message", o.Msgs)
	case o.Pub < 1 || o.Sub < 1:
		return nil, fmt.Errorf("--pub %d --sub %d: --pub and --sub need at least 1 each", o.Pub, o.Sub)
	case o.Pub > o.Msgs:
		return nil, fmt.Errorf("--pub %d is more than --msgs %d: every publisher needs a message", o.Pub, o.Msgs)
	case o.Rate < 0:
		return nil, fmt.Errorf("--rate %d: use 0 (as fast as possible) or a positive rate", o.Rate)
	case o.Concurrency < 1:
		return nil, fmt.Errorf("--concurrency %d: use at least 1", o.Concurrency)
	case o.Duration <= 0:
		return nil, fmt.Errorf("--duration %s: use a positive duration such as 3s", o.Duration)
	case o.Requests < 0:
		return nil, fmt.Errorf("--requests %d: use 0 (run for --duration) or a positive count", o.Requests)
	case o.RekeyMembers < 0 || o.RekeyMembers == 1:
		return nil, fmt.Errorf("--rekey-members %d: a rekey run needs at least 2 members (you and one more)", o.RekeyMembers)
	case o.Timeout <= 0:
		return nil, fmt.Errorf("--timeout %s: use a positive duration such as 2m", o.Timeout)
	}
	skipped := map[string]string{}
	for _, p := range o.Skip {
		if !slices.Contains(parts(), p) {
			return nil, fmt.Errorf("--skip %q: the parts are %s", p, strings.Join(parts(), ", "))
		}
		skipped[p] = "--skip"
	}
	if o.RekeyMembers == 0 {
		skipped[PartRekey] = "no --rekey-members N"
	}
	return skipped, nil
}

// run is one call of Run.
type run struct {
	o       Options
	id      *identity.Identity
	tls     *tls.Config
	server  string
	apiURL  *url.URL // server, parsed once for the requests the bench signs itself
	natsURL string
	info    api.Info
	hc      *http.Client // waits out the server's rate limit
	limits  *limitWaiter
	// hcMeasure sends the measured API calls as they are: a refusal by the
	// rate limit counts, it is not waited out.
	hcMeasure *http.Client
	c         *client.Client
	base      time.Time // the clock the send times are read from
	progress  io.Writer // progress lines, or io.Discard
	rep       *Report
	// created are the user keys of the throwaway users registered, for the
	// clean-up to revoke.
	created []string
}

// Run measures the deployment at o.Server as o.Identity, part after part,
// and cleans up after itself even when a part fails or ctx is cancelled.
//
// When every part ran, Run returns the report and a nil error. When a part
// failed after the scratch room was made, it returns the report of what
// was measured and cleaned up so far, with [Report.Error] saying why it
// stopped, and the error. Before that (bad options, the server out of
// reach) it returns a nil report and the error.
func Run(ctx context.Context, o Options) (*Report, error) {
	skipped, err := o.skipped()
	if err != nil {
		return nil, err
	}
	r := &run{o: o, id: o.Identity, tls: o.TLS, server: o.Server, natsURL: o.NATSURL, base: time.Now(), progress: o.Progress}
	if r.server == "" {
		r.server = client.DefaultServer
	}
	if r.progress == nil {
		r.progress = io.Discard
	}
	// The SDK's default transport keeps 2 idle connections per host; at
	// --concurrency C that would open and close connections all the time
	// and measure TCP set-up instead of the API.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2*o.Concurrency + 8
	tr.MaxIdleConnsPerHost = o.Concurrency + 4
	if o.TLS != nil {
		tr.TLSClientConfig = o.TLS.Clone()
	}
	// The calls measured go out as they are; every other call (set-up,
	// clean-up, the SDK's own) waits out the server's rate limit.
	r.hcMeasure = &http.Client{Transport: tr}
	r.limits = &limitWaiter{next: tr}
	r.hc = &http.Client{Transport: r.limits}
	defer tr.CloseIdleConnections()
	if r.c, err = r.newClient(r.hc); err != nil {
		return nil, err
	}
	defer r.c.Close()
	if r.apiURL, err = url.Parse(strings.TrimRight(r.server, "/")); err != nil {
		return nil, err
	}
	if r.info, err = r.c.Info(ctx); err != nil {
		return nil, err
	}
	if r.natsURL == "" {
		r.natsURL = r.info.NATSURL
	}
	r.rep = &Report{Server: r.server, NATSURL: r.natsURL, AuthMode: r.info.AuthMode, User: r.id.Name(),
		Size: o.Size, Msgs: o.Msgs, Pub: o.Pub, Sub: o.Sub, Rate: o.Rate, Skipped: skipped}
	if r.natsURL == "" && !(r.skips(PartRaw) && r.skips(PartE2E)) {
		return nil, errors.New("the server advertises no NATS URL: pass --nats URL, or --skip raw,e2e to run only the other parts")
	}

	runErr := r.runParts(ctx)
	r.cleanup(ctx)
	if n := r.limits.waits.Load(); n > 0 {
		r.warn("the server's rate limit refused %d of the bench's own requests (set-up, clean-up, SDK calls); each was sent again after the wait the server asked for", n)
	}
	if runErr == nil {
		return r.rep, nil
	}
	// A failed run still reports what it measured and what it left.
	if r.rep.Room == "" {
		return nil, runErr
	}
	r.rep.Error = runErr.Error()
	return r.rep, runErr
}

// skips reports whether the run skips part.
func (r *run) skips(part string) bool {
	_, ok := r.rep.Skipped[part]
	return ok
}

// runParts runs the parts not skipped, stopping at the first failure.
func (r *run) runParts(ctx context.Context) error {
	if len(r.rep.Skipped) == len(parts()) {
		return nil
	}
	// Every part works in the scratch room; the raw run publishes in the
	// caller's own inbox, which every bus allows.
	room, err := r.c.CreateRoom(ctx, "bench-"+randomTag(), false)
	if err != nil {
		return fmt.Errorf("create the scratch room: %w", err)
	}
	r.rep.Room, r.rep.RoomName = room.ID, room.Name
	if !r.skips(PartRaw) {
		r.say("raw NATS: %d messages of %d bytes…", r.o.Msgs, r.o.Size)
		if r.rep.Raw, err = r.raw(ctx, subjects.InboxPrefix(r.id.UserKey())+".bench."+room.ID); err != nil {
			return fmt.Errorf("raw NATS run: %w", err)
		}
	}
	if !r.skips(PartE2E) {
		r.say("end to end: %d messages of %d bytes in room %s…", r.o.Msgs, r.o.Size, room.ID)
		if r.rep.E2E, err = r.e2e(ctx, room.ID); err != nil {
			return fmt.Errorf("end-to-end run: %w", err)
		}
		if r.rep.Raw != nil && r.rep.Raw.MsgsPerS > 0 {
			r.rep.Ratio = r.rep.E2E.MsgsPerS / r.rep.Raw.MsgsPerS
		}
	}
	if !r.skips(PartAPI) {
		r.say("control plane: %d concurrent signed requests…", r.o.Concurrency)
		if r.rep.API, err = r.api(ctx, room.ID); err != nil {
			return fmt.Errorf("control-plane run: %w", err)
		}
	}
	if !r.skips(PartRekey) {
		me, err := r.c.Me(ctx)
		if err != nil {
			return err
		}
		if me.Role != api.RoleAdmin {
			r.rep.Skipped[PartRekey] = fmt.Sprintf("registering %d throwaway users needs an admin, and %s is a %s: run it as an admin, or drop --rekey-members", r.o.RekeyMembers-1, me.Name, me.Role)
			return nil
		}
		r.say("rekey: a room of %d members…", r.o.RekeyMembers)
		if r.rep.Rekey, err = r.rekey(ctx, room.ID); err != nil {
			return fmt.Errorf("rekey run: %w", err)
		}
	}
	return nil
}

// say prints a progress line.
func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.progress, "unibus bench: "+format+"\n", args...)
}

func (r *run) warn(format string, args ...any) {
	r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf(format, args...))
}

// newClient returns an SDK client as the caller, with the run's settings,
// sending its requests through hc.
func (r *run) newClient(hc *http.Client) (*client.Client, error) {
	return client.New(client.Config{Server: r.server, Identity: r.id, TLS: r.tls, NATSURL: r.natsURL, HTTPClient: hc})
}

// since is the time since the run began, from the monotonic clock.
func (r *run) since() int64 { return int64(time.Since(r.base)) }

// connectNATS dials NATS the way the SDK does: the user's own inbox prefix,
// the user's nkey when the bus enforces authentication, TLS when a CA is
// given.
func (r *run) connectNATS(name string, asyncErr *firstError) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("unibus bench " + name),
		nats.CustomInboxPrefix(subjects.InboxPrefix(r.id.UserKey())),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErr.set(err) }),
	}
	if r.info.AuthMode == "enforce" {
		opts = append(opts, nats.Nkey(r.id.UserKey(), r.id.NkeySign))
	}
	if r.tls != nil {
		opts = append(opts, nats.Secure(r.tls.Clone()))
	}
	nc, err := nats.Connect(r.natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w (pass --nats URL if the advertised one is not reachable from here)", r.natsURL, err)
	}
	return nc, nil
}

// randomTag is 8 random characters of [a-z2-7], to name scratch things:
// the start of a fresh room id.
func randomTag() string { return api.NewRoomID()[:8] }

// firstError keeps the first error reported from another goroutine.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
