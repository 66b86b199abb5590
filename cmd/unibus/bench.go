package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/reqsig"
	"github.com/enmanuel/unibus/pkg/roomchain"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// `unibus bench` measures a running deployment with the caller's identity,
// in one run and with the same connection settings:
//
//   - raw: core NATS publish/subscribe on a scratch subject in the
//     caller's own inbox ("_INBOX_<user>.bench.<room id>": every bus lets a
//     user publish there, and JetStream does not keep it), the baseline;
//   - e2e: the same load through the SDK in the scratch room, an encrypted
//     one (seal, sign, publish to JetStream and wait for the ack; a
//     followed Read that verifies and decrypts), then the run read back
//     from history by a fresh client: the receive path alone;
//   - api: signed control-plane requests per second (room list, key fetch)
//     at a given concurrency;
//   - rekey: the rekey of a scratch room of N members, N-1 of them throwaway
//     users (admins only), from the SDK's Rekey to the last member holding
//     the new key.
//
// Latency is measured at the receiver against a send time carried in the
// message; publishers and subscribers run in this process, so one monotonic
// clock serves both. Every phase is bounded by --timeout.

// benchOptions are the flags of `unibus bench`.
type benchOptions struct {
	size, msgs, pub, sub, rate int
	concurrency, requests      int
	rekeyMembers               int
	duration, timeout          time.Duration
	skip, cpuprofile           string
}

// benchParts are the parts of a run, in the order they run.
var benchParts = []string{"raw", "e2e", "api", "rekey"}

const (
	// minBenchSize leaves room for the send time and a marker in a message.
	minBenchSize = 24
	// benchIdle is how long delivery may stall, after the publishers are
	// done, before the missing messages are counted as lost.
	benchIdle = 10 * time.Second
	// cleanupTimeout bounds the clean-up when --timeout is shorter.
	cleanupTimeout = 2 * time.Minute
	// benchAddChunk is how many members one add request carries.
	benchAddChunk = 5000
)

func benchFlags(fs *flag.FlagSet, o *options) {
	b := &o.bench
	fs.IntVar(&b.size, "size", 1024, "message payload size in `BYTES` (at least 24)")
	fs.IntVar(&b.msgs, "msgs", 100000, "`N` messages in all for the raw NATS run and, the same, for the end-to-end run")
	fs.IntVar(&b.pub, "pub", 1, "`N` publishers, each with its own connection; they share --msgs")
	fs.IntVar(&b.sub, "sub", 1, "`N` subscribers, each with its own connection; each receives every message")
	fs.IntVar(&b.rate, "rate", 0, "publish `R` messages a second in all, for a latency run (0: as fast as possible)")
	fs.IntVar(&b.concurrency, "concurrency", 16, "`C` signed requests at a time for the API run and the rekey's setup and fetches")
	fs.DurationVar(&b.duration, "duration", 3*time.Second, "run each API call for `D`")
	fs.IntVar(&b.requests, "requests", 0, "stop each API call after `N` requests instead of after --duration (0: use --duration)")
	fs.IntVar(&b.rekeyMembers, "rekey-members", 0, "time the rekey of a scratch room of `N` members, N-1 of them throwaway users (admins only; 0: no rekey run)")
	fs.StringVar(&b.skip, "skip", "", "skip the comma-separated `PARTS` among raw, e2e, api, rekey")
	fs.DurationVar(&b.timeout, "timeout", 2*time.Minute, "give up any one part after `D`")
	fs.StringVar(&b.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (the client side) to `PATH`")
	jsonFlag("print one JSON document with every figure")(fs, o)
}

// check validates the flags and returns the parts to skip, each with the
// reason the report gives.
func (o *benchOptions) check() (map[string]string, error) {
	switch {
	case o.size < minBenchSize:
		return nil, usagef("--size %d: use at least %d bytes (the send time travels in the message)", o.size, minBenchSize)
	case o.size > e2ee.MaxPlaintext-64:
		return nil, usagef("--size %d: use at most %d bytes", o.size, e2ee.MaxPlaintext-64)
	case o.msgs < 1:
		return nil, usagef("--msgs %d: send at least one message", o.msgs)
	case o.pub < 1 || o.sub < 1:
		return nil, usagef("--pub and --sub need at least 1")
	case o.pub > o.msgs:
		return nil, usagef("--pub %d is more than --msgs %d: every publisher needs a message", o.pub, o.msgs)
	case o.rate < 0:
		return nil, usagef("--rate %d: use 0 (as fast as possible) or a positive rate", o.rate)
	case o.concurrency < 1:
		return nil, usagef("--concurrency %d: use at least 1", o.concurrency)
	case o.duration <= 0:
		return nil, usagef("--duration %s: use a positive duration such as 3s", o.duration)
	case o.requests < 0:
		return nil, usagef("--requests %d: use 0 (run for --duration) or a positive count", o.requests)
	case o.rekeyMembers < 0 || o.rekeyMembers == 1:
		return nil, usagef("--rekey-members %d: a rekey run needs at least 2 members (you and one more)", o.rekeyMembers)
	case o.timeout <= 0:
		return nil, usagef("--timeout %s: use a positive duration such as 2m", o.timeout)
	}
	skipped := map[string]string{}
	for _, p := range strings.Split(o.skip, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(benchParts, p) {
			return nil, usagef("--skip %q: the parts are %s", p, strings.Join(benchParts, ", "))
		}
		skipped[p] = "--skip"
	}
	if o.rekeyMembers == 0 {
		skipped["rekey"] = "no --rekey-members N"
	}
	return skipped, nil
}

// benchReport is the outcome of a run; --json prints it as it is.
type benchReport struct {
	Server   string `json:"server"`
	NATSURL  string `json:"nats_url"`
	AuthMode string `json:"auth_mode"`
	User     string `json:"user"`
	Size     int    `json:"size"`
	Msgs     int    `json:"msgs"`
	Pub      int    `json:"pub"`
	Sub      int    `json:"sub"`
	Rate     int    `json:"rate"`
	// Room is the scratch room: it stays, the API has no way to delete it.
	Room     string `json:"room,omitempty"`
	RoomName string `json:"room_name,omitempty"`

	Raw *flowResult `json:"raw,omitempty"`
	E2E *flowResult `json:"e2e,omitempty"`
	// Ratio is e2e.msgs_per_s / raw.msgs_per_s.
	Ratio float64      `json:"ratio,omitempty"`
	API   *apiResult   `json:"api,omitempty"`
	Rekey *rekeyResult `json:"rekey,omitempty"`

	// Skipped are the parts not run, each with the reason.
	Skipped  map[string]string `json:"skipped,omitempty"`
	Cleanup  []string          `json:"cleanup,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
	// Error is why the run stopped early, if it did.
	Error string `json:"error,omitempty"`
}

// flowResult is one publish/subscribe run.
type flowResult struct {
	// Msgs were published; each of the subscribers should get all of them.
	Msgs int `json:"msgs"`
	// Delivered counts the messages the subscribers got, all together;
	// Lost those they did not get; Errors those they got but could not
	// read (end to end only).
	Delivered int64 `json:"delivered"`
	Lost      int64 `json:"lost"`
	Errors    int64 `json:"errors,omitempty"`
	// Seconds runs from the first publish to the last delivery.
	Seconds float64 `json:"seconds"`
	// MsgsPerS is the messages a subscriber gets per second (averaged
	// over the subscribers); MBPerS the same in payload megabytes (10^6).
	MsgsPerS float64 `json:"msgs_per_s"`
	MBPerS   float64 `json:"mb_per_s"`
	// PubMsgsPerS is the publishers' rate, all together.
	PubMsgsPerS float64 `json:"pub_msgs_per_s"`
	// Latency from the send time in the message to its delivery.
	P50ms float64 `json:"p50_ms"`
	P90ms float64 `json:"p90_ms"`
	P99ms float64 `json:"p99_ms"`
	Maxms float64 `json:"max_ms"`
	// ReadMsgsPerS (end to end only) is a fresh client's read of the whole
	// run back from history: the receive path (verify, decrypt) without
	// waiting for a publisher.
	ReadMsgsPerS float64 `json:"read_msgs_per_s,omitempty"`
}

// apiResult is the control-plane run.
type apiResult struct {
	Concurrency int      `json:"concurrency"`
	RoomList    *apiCall `json:"room_list"`
	KeyFetch    *apiCall `json:"key_fetch"`
}

// apiCall is the run of one signed request.
type apiCall struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// RateLimited counts the errors that were the server's rate limit.
	RateLimited int64   `json:"rate_limited,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerS        float64 `json:"per_s"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Maxms       float64 `json:"max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

// rekeyResult is the rekey run.
type rekeyResult struct {
	// Members of the room when it was rekeyed, the caller included.
	Members int `json:"members"`
	// Seconds runs from the SDK's Rekey call to the last member holding
	// the new key: SealUploadSeconds (refresh, seal a key per member,
	// upload) then FetchSeconds (every member taking its key: from the
	// delivery on NATS, or by a signed fetch from the API).
	Seconds           float64 `json:"seconds"`
	SealUploadSeconds float64 `json:"seal_upload_seconds"`
	FetchSeconds      float64 `json:"fetch_seconds"`
	Epoch             uint64  `json:"epoch"`
	// Delivery is how the members took their keys: "nats" (membershipd's
	// key deliveries, as the SDK takes them) or "api" (a signed fetch
	// each: on an enforcing bus this process may not read other users'
	// deliveries).
	Delivery string `json:"delivery"`
	// Delivered and Fetched count the members who took their key each way
	// (a member whose delivery did not come fetches it, as the SDK does).
	Delivered int `json:"delivered"`
	Fetched   int `json:"fetched"`
	// SetupSeconds registered the throwaway users and added them.
	SetupSeconds float64 `json:"setup_seconds"`
	// Simulated says how the other members were played.
	Simulated string `json:"simulated"`
}

// benchRun is one `unibus bench`.
type benchRun struct {
	o       benchOptions
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
	rep       *benchReport
	// created are the user keys of the throwaway users registered, for the
	// clean-up to revoke.
	created []string
}

func bench(ctx context.Context, x *invocation, _ []string) error {
	o := x.opts.bench
	skipped, err := o.check()
	if err != nil {
		return err
	}
	id, err := x.loadIdentity()
	if err != nil {
		return err
	}
	tlsConfig, err := loadCA(x.opts.ca)
	if err != nil {
		return err
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return fmt.Errorf("create the CPU profile: %w (pass a writable --cpuprofile PATH)", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	r := &benchRun{o: o, id: id, tls: tlsConfig, server: x.opts.server, natsURL: x.opts.nats, base: time.Now(), progress: io.Discard}
	if isTerminal(x.stderr) {
		r.progress = x.stderr
	}
	// The SDK's default transport keeps 2 idle connections per host; at
	// --concurrency C that would open and close connections all the time
	// and measure TCP set-up instead of the API.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2*o.concurrency + 8
	tr.MaxIdleConnsPerHost = o.concurrency + 4
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	// The calls measured go out as they are; every other call (set-up,
	// clean-up, the SDK's own) waits out the server's rate limit.
	r.hcMeasure = &http.Client{Transport: tr}
	r.limits = &limitWaiter{next: tr}
	r.hc = &http.Client{Transport: r.limits}
	defer tr.CloseIdleConnections()
	if r.c, err = r.newClient(r.hc); err != nil {
		return err
	}
	defer r.c.Close()
	if r.apiURL, err = url.Parse(strings.TrimRight(r.server, "/")); err != nil {
		return err
	}
	if r.info, err = r.c.Info(ctx); err != nil {
		return err
	}
	if r.natsURL == "" {
		r.natsURL = r.info.NATSURL
	}
	r.rep = &benchReport{Server: x.opts.server, NATSURL: r.natsURL, AuthMode: r.info.AuthMode, User: id.Name(),
		Size: o.size, Msgs: o.msgs, Pub: o.pub, Sub: o.sub, Rate: o.rate, Skipped: skipped}
	if r.natsURL == "" && !(r.skips("raw") && r.skips("e2e")) {
		return errors.New("the server advertises no NATS URL: pass --nats URL, or --skip raw,e2e to run only the other parts")
	}

	runErr := r.runParts(ctx)
	r.cleanup(ctx)
	if n := r.limits.waits.Load(); n > 0 {
		r.warn("the server's rate limit refused %d of the bench's own requests (set-up, clean-up, SDK calls); each was sent again after the wait the server asked for", n)
	}
	// A failed run still reports what it measured and what it left.
	if runErr != nil {
		r.rep.Error = runErr.Error()
	}
	if r.rep.Room != "" || runErr == nil {
		var werr error
		if x.opts.json {
			werr = writeJSON(x.stdout, r.rep)
		} else {
			werr = r.rep.write(x.stdout)
		}
		if runErr == nil {
			runErr = werr
		}
	}
	return runErr
}

// skips reports whether the run skips part.
func (r *benchRun) skips(part string) bool {
	_, ok := r.rep.Skipped[part]
	return ok
}

// runParts runs the parts not skipped, stopping at the first failure.
func (r *benchRun) runParts(ctx context.Context) error {
	if len(r.rep.Skipped) == len(benchParts) {
		return nil
	}
	// Every part works in the scratch room, the raw run too: a bus that
	// gives each connection only its rooms' subjects lets the caller use
	// "unibus.room.<id>.>" of a room it belongs to.
	room, err := r.c.CreateRoom(ctx, "bench-"+randomTag(), false)
	if err != nil {
		return fmt.Errorf("create the scratch room: %w", err)
	}
	r.rep.Room, r.rep.RoomName = room.ID, room.Name
	if !r.skips("raw") {
		r.say("raw NATS: %d messages of %d bytes…", r.o.msgs, r.o.size)
		if r.rep.Raw, err = r.raw(ctx, subjects.InboxPrefix(r.id.UserKey())+".bench."+room.ID); err != nil {
			return fmt.Errorf("raw NATS run: %w", err)
		}
	}
	if !r.skips("e2e") {
		r.say("end to end: %d messages of %d bytes in room %s…", r.o.msgs, r.o.size, room.ID)
		if r.rep.E2E, err = r.e2e(ctx, room.ID); err != nil {
			return fmt.Errorf("end-to-end run: %w", err)
		}
		if r.rep.Raw != nil && r.rep.Raw.MsgsPerS > 0 {
			r.rep.Ratio = r.rep.E2E.MsgsPerS / r.rep.Raw.MsgsPerS
		}
	}
	if !r.skips("api") {
		r.say("control plane: %d concurrent signed requests…", r.o.concurrency)
		if r.rep.API, err = r.api(ctx, room.ID); err != nil {
			return fmt.Errorf("control-plane run: %w", err)
		}
	}
	if !r.skips("rekey") {
		me, err := r.c.Me(ctx)
		if err != nil {
			return err
		}
		if me.Role != api.RoleAdmin {
			r.rep.Skipped["rekey"] = fmt.Sprintf("registering %d throwaway users needs an admin, and %s is a %s: run it as an admin, or drop --rekey-members", r.o.rekeyMembers-1, me.Name, me.Role)
			return nil
		}
		r.say("rekey: a room of %d members…", r.o.rekeyMembers)
		if r.rep.Rekey, err = r.rekey(ctx, room.ID); err != nil {
			return fmt.Errorf("rekey run: %w", err)
		}
	}
	return nil
}

// say prints a progress line (on a terminal only).
func (r *benchRun) say(format string, args ...any) {
	fmt.Fprintf(r.progress, "unibus bench: "+format+"\n", args...)
}

func (r *benchRun) warn(format string, args ...any) {
	r.rep.Warnings = append(r.rep.Warnings, fmt.Sprintf(format, args...))
}

// newClient returns an SDK client as the caller, with the client settings,
// sending its requests through hc.
func (r *benchRun) newClient(hc *http.Client) (*client.Client, error) {
	return client.New(client.Config{Server: r.server, Identity: r.id, TLS: r.tls, NATSURL: r.natsURL, HTTPClient: hc})
}

// since is the time since the run began, from the monotonic clock.
func (r *benchRun) since() int64 { return int64(time.Since(r.base)) }

// connectNATS dials NATS the way the SDK does: the user's own inbox prefix,
// the user's nkey when the bus enforces authentication, TLS when a CA is
// given.
func (r *benchRun) connectNATS(name string, asyncErr *firstError) (*nats.Conn, error) {
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

// recorder counts what one subscriber receives.
type recorder struct {
	want, warmWant int

	mu     sync.Mutex
	warm   int
	lat    []int64 // nanoseconds, one per readable message
	errs   int64
	last   int64 // since base, of the last message
	warmed chan struct{}
	done   chan struct{}
	got    atomic.Int64 // messages so far, for the stall watch
}

func newRecorder(want, warmWant int) *recorder {
	return &recorder{want: want, warmWant: warmWant, lat: make([]int64, 0, want), warmed: make(chan struct{}), done: make(chan struct{})}
}

// warmup counts a warm-up message.
func (c *recorder) warmup() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.warm++
	if c.warm == c.warmWant {
		close(c.warmed)
	}
}

// message counts a message received at now: readable with its latency, or
// not (bad). It reports whether the subscriber has all it waits for.
func (c *recorder) message(lat, now int64, bad bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := int64(len(c.lat)) + c.errs
	if n >= int64(c.want) {
		return true
	}
	if bad {
		c.errs++
	} else {
		c.lat = append(c.lat, lat)
	}
	c.last = now
	c.got.Add(1)
	if n+1 == int64(c.want) {
		close(c.done)
		return true
	}
	return false
}

// waitWarm waits until every recorder has seen its warm-up messages.
func waitWarm(ctx context.Context, recs []*recorder, failed <-chan error) error {
	for _, rec := range recs {
		select {
		case <-rec.warmed:
		case err := <-failed:
			return err
		case <-ctx.Done():
			return fmt.Errorf("subscribers not ready: %w", ctx.Err())
		}
	}
	return nil
}

// waitDelivered waits until every recorder is done, the delivery stalls
// for benchIdle (what is missing is lost), ctx ends, or failed reports.
func waitDelivered(ctx context.Context, recs []*recorder, failed <-chan error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var seen int64
	lastMove := time.Now()
	for {
		all := true
		var got int64
		for _, rec := range recs {
			got += rec.got.Load()
			select {
			case <-rec.done:
			default:
				all = false
			}
		}
		if all {
			return nil
		}
		if got != seen {
			seen, lastMove = got, time.Now()
		} else if time.Since(lastMove) > benchIdle {
			return nil
		}
		select {
		case <-tick.C:
		case err := <-failed:
			return err
		case <-ctx.Done():
			return fmt.Errorf("%w with %d of %d messages delivered: raise --timeout or lower --msgs", ctx.Err(), got, len(recs)*recs[0].want)
		}
	}
}

// result sums the recorders up.
func (r *benchRun) result(recs []*recorder, start, pubEnd int64) *flowResult {
	res := &flowResult{Msgs: r.o.msgs}
	var lat []int64
	last := start
	for _, rec := range recs {
		rec.mu.Lock()
		lat = append(lat, rec.lat...)
		res.Errors += rec.errs
		res.Delivered += int64(len(rec.lat)) + rec.errs
		last = max(last, rec.last)
		rec.mu.Unlock()
	}
	res.Lost = int64(r.o.msgs*len(recs)) - res.Delivered
	res.Seconds = seconds(last - start)
	if res.Seconds > 0 {
		res.MsgsPerS = float64(res.Delivered) / float64(len(recs)) / res.Seconds
		res.MBPerS = res.MsgsPerS * float64(r.o.size) / 1e6
	}
	if d := seconds(pubEnd - start); d > 0 {
		res.PubMsgsPerS = float64(r.o.msgs) / d
	}
	slices.Sort(lat)
	res.P50ms, res.P90ms, res.P99ms = millis(percentile(lat, 0.50)), millis(percentile(lat, 0.90)), millis(percentile(lat, 0.99))
	if len(lat) > 0 {
		res.Maxms = millis(lat[len(lat)-1])
	}
	return res
}

// percentile returns the q-quantile (nearest rank) of sorted values.
func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func seconds(ns int64) float64 { return float64(ns) / 1e9 }
func millis(ns int64) float64  { return float64(ns) / 1e6 }

// shares splits n messages among k publishers.
func shares(n, k int) []int {
	s := make([]int, k)
	for i := range s {
		s[i] = n / k
		if i < n%k {
			s[i]++
		}
	}
	return s
}

// pacer spaces one publisher's messages to its share of --rate.
type pacer struct {
	t0       time.Time
	interval time.Duration
}

func (r *benchRun) newPacer() pacer {
	if r.o.rate == 0 {
		return pacer{}
	}
	return pacer{t0: time.Now(), interval: time.Duration(float64(time.Second) * float64(r.o.pub) / float64(r.o.rate))}
}

// wait sleeps until message i is due. A publisher that fell behind sends
// at once. Without --rate it returns at once (inlined in the publisher's
// loop), looking at ctx every 256 messages.
func (p pacer) wait(ctx context.Context, i int) error {
	if p.interval == 0 {
		if i&255 == 0 {
			return ctx.Err() // --timeout and Ctrl-C, without a check a message
		}
		return nil
	}
	return p.sleep(ctx, i)
}

// sleep is wait under --rate.
func (p pacer) sleep(ctx context.Context, i int) error {
	d := time.Until(p.t0.Add(time.Duration(i) * p.interval))
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flow runs the timed part of a publish/subscribe run once every
// subscriber has its warm-up messages: each publisher, in a goroutine of
// its own, sends its share n of --msgs through publish(p, n) and returns
// once they are out; then the subscribers are waited for (see
// waitDelivered). It returns when the publishing started and when the
// last publisher finished, from r.since.
func (r *benchRun) flow(ctx context.Context, recs []*recorder, failed <-chan error, publish func(p, n int) error) (start, pubEnd int64, err error) {
	if err := waitWarm(ctx, recs, failed); err != nil {
		return 0, 0, err
	}
	start = r.since()
	var (
		wg     sync.WaitGroup
		pubErr firstError
		end    atomic.Int64
	)
	for p, n := range shares(r.o.msgs, r.o.pub) {
		wg.Go(func() {
			if err := publish(p, n); err != nil {
				pubErr.set(err)
				return
			}
			recordMax(&end, r.since())
		})
	}
	wg.Wait()
	if err := pubErr.get(); err != nil {
		return 0, 0, err
	}
	if err := waitDelivered(ctx, recs, failed); err != nil {
		return 0, 0, err
	}
	return start, end.Load(), nil
}

// Raw messages: a kind byte, then the send time in nanoseconds since base
// (8 bytes, big-endian), then padding to --size.
const (
	rawWarm = 'w'
	rawData = 'd'
)

// raw runs core NATS publish/subscribe on a scratch subject in the
// caller's inbox, which JetStream does not keep.
func (r *benchRun) raw(ctx context.Context, subject string) (*flowResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	var asyncErr firstError
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	recs := make([]*recorder, r.o.sub)
	for i := range recs {
		nc, err := r.connectNATS(fmt.Sprintf("sub %d", i), &asyncErr)
		if err != nil {
			return nil, err
		}
		conns = append(conns, nc)
		rec := newRecorder(r.o.msgs, r.o.pub)
		recs[i] = rec
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			now := r.since()
			if len(m.Data) < 9 {
				rec.message(0, now, true)
				return
			}
			if m.Data[0] == rawWarm {
				rec.warmup()
				return
			}
			rec.message(now-int64(binary.BigEndian.Uint64(m.Data[1:9])), now, false)
		})
		if err != nil {
			return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
		}
		// Measure NATS, not the client's buffer limits: a subscriber that
		// falls behind keeps what it was sent.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			return nil, err
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
		}
	}
	pubs := make([]*nats.Conn, r.o.pub)
	for i := range pubs {
		nc, err := r.connectNATS(fmt.Sprintf("pub %d", i), &asyncErr)
		if err != nil {
			return nil, err
		}
		conns = append(conns, nc)
		pubs[i] = nc
		warm := make([]byte, r.o.size)
		warm[0] = rawWarm
		if err := nc.Publish(subject, warm); err != nil {
			return nil, fmt.Errorf("publish to %s: %w", subject, err)
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			return nil, fmt.Errorf("publish to %s: %w", subject, err)
		}
	}
	failed := make(chan error, 1)
	stopWatch := watchAsync(ctx, &asyncErr, failed)
	defer stopWatch()
	start, pubEnd, err := r.flow(ctx, recs, failed, func(p, n int) error {
		nc := pubs[p]
		buf := make([]byte, r.o.size)
		buf[0] = rawData
		pace := r.newPacer()
		for i := range n {
			if err := pace.wait(ctx, i); err != nil {
				return err
			}
			binary.BigEndian.PutUint64(buf[1:9], uint64(r.since()))
			if err := nc.Publish(subject, buf); err != nil {
				return fmt.Errorf("publish to %s: %w", subject, err)
			}
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("publish to %s: %w", subject, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, nc := range conns {
		nc.Close() // no more deliveries while the recorders are read
	}
	res := r.result(recs, start, pubEnd)
	r.checkRate("raw NATS", res)
	if res.Lost > 0 {
		r.warn("raw NATS: %d messages lost (a subscriber fell behind and the server dropped what it could not take)", res.Lost)
	}
	return res, nil
}

// watchAsync forwards an asynchronous NATS error (a permission refused, a
// slow consumer) to failed. The returned function stops it.
func watchAsync(ctx context.Context, asyncErr *firstError, failed chan<- error) func() {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := asyncErr.get(); err != nil {
					if errors.Is(err, nats.ErrSlowConsumer) {
						continue // counted as lost messages
					}
					failed <- fmt.Errorf("NATS: %w", err)
					return
				}
			}
		}
	}()
	return cancel
}

func recordMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

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

// errBenchDone ends a subscriber's Read once it has every message.
var errBenchDone = errors.New("bench: all messages received")

// e2eWarm is the text of a warm-up message; data messages start with the
// send time in 19 decimal digits.
const e2eWarm = "warm-up"

// e2e runs the same load through the SDK in the scratch room.
func (r *benchRun) e2e(ctx context.Context, room string) (*flowResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	var clients []*client.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	subCtx, stopSubs := context.WithCancel(ctx)
	failed := make(chan error, r.o.sub)
	var readers sync.WaitGroup
	defer readers.Wait()
	defer stopSubs() // runs before readers.Wait
	recs := make([]*recorder, r.o.sub)
	for i := range recs {
		c, err := r.newClient(r.hc)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		rec := newRecorder(r.o.msgs, r.o.pub)
		recs[i] = rec
		readers.Add(1)
		go func() {
			defer readers.Done()
			err := c.Read(subCtx, room, client.ReadOptions{Follow: true}, func(m client.Received) error {
				now := r.since()
				switch {
				case m.Err == nil && m.Text == e2eWarm:
					rec.warmup()
					return nil
				case m.Err != nil || len(m.Text) < 20:
					if rec.message(0, now, true) {
						return errBenchDone
					}
					return nil
				}
				sent, err := strconv.ParseInt(m.Text[:19], 10, 64)
				if rec.message(now-sent, now, err != nil) {
					return errBenchDone
				}
				return nil
			})
			if err != nil && !errors.Is(err, errBenchDone) && subCtx.Err() == nil {
				failed <- fmt.Errorf("subscriber %d: %w", i, err)
			}
		}()
	}
	pubs := make([]*client.Client, r.o.pub)
	for i := range pubs {
		c, err := r.newClient(r.hc)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		pubs[i] = c
		// The warm-up connects the publisher and loads the room's key.
		if _, err := c.Send(ctx, room, client.Message{Text: e2eWarm}); err != nil {
			return nil, err
		}
	}
	start, pubEnd, err := r.flow(ctx, recs, failed, func(p, n int) error {
		// Each publisher pipelines through an SDK Stream: sealing and
		// signing go on while earlier messages await their
		// acknowledgement, as an application sending a flow would.
		stream, err := pubs[p].OpenStream(ctx, room)
		if err != nil {
			return err
		}
		text := bytes.Repeat([]byte{'x'}, r.o.size)
		text[19] = ' '
		pace := r.newPacer()
		for i := range n {
			if err := pace.wait(ctx, i); err != nil {
				return err
			}
			putStamp(text[:19], r.since())
			if _, err := stream.Send(ctx, client.Message{Text: string(text)}); err != nil {
				return err
			}
		}
		return stream.Flush(ctx)
	})
	if err != nil {
		return nil, err
	}
	stopSubs()
	readers.Wait()
	res := r.result(recs, start, pubEnd)
	if res.Lost > 0 {
		r.warn("end to end: %d messages not delivered within %s of the last one", res.Lost, benchIdle)
	}
	if res.Errors > 0 {
		r.warn("end to end: %d messages could not be read (signature, key or payload)", res.Errors)
	}
	r.checkRate("end to end", res)

	// The receive path alone: a fresh client reads the run back.
	rc, err := r.newClient(r.hc)
	if err != nil {
		return nil, err
	}
	clients = append(clients, rc)
	var read, unreadable int
	t := time.Now()
	err = rc.Read(ctx, room, client.ReadOptions{}, func(m client.Received) error {
		read++
		if m.Err != nil {
			unreadable++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the run back: %w", err)
	}
	if d := time.Since(t).Seconds(); d > 0 {
		res.ReadMsgsPerS = float64(read) / d
	}
	if unreadable > 0 {
		r.warn("end to end: %d of %d messages read back could not be read", unreadable, read)
	}
	return res, nil
}

// checkRate warns when the publishers could not keep up with --rate.
func (r *benchRun) checkRate(what string, res *flowResult) {
	if r.o.rate > 0 && res.PubMsgsPerS < 0.95*float64(r.o.rate) {
		r.warn("%s: the publishers reached %s msgs/s, short of --rate %s: the latencies are those of a saturated publisher", what, count(res.PubMsgsPerS), count(float64(r.o.rate)))
	}
}

// putStamp writes t in decimal, zero-padded to len(dst) digits.
func putStamp(dst []byte, t int64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + t%10)
		t /= 10
	}
}

// api runs the control-plane calls a client makes most, each for
// --duration (or --requests), --concurrency at a time.
func (r *benchRun) api(ctx context.Context, room string) (*apiResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	res := &apiResult{Concurrency: r.o.concurrency}
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
		c    *apiCall
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
		return res, fmt.Errorf("%w after %s: raise --timeout, or lower --duration or --requests", err, r.o.timeout)
	}
	return res, ctx.Err()
}

// hammer runs call from --concurrency workers until --duration has passed
// or --requests were made, and --timeout in any case.
func (r *benchRun) hammer(ctx context.Context, call func(context.Context) error) *apiCall {
	until := time.Now().Add(r.o.duration)
	if r.o.requests > 0 {
		until = time.Now().Add(r.o.timeout)
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
	for range r.o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []int64
			for ctx.Err() == nil && time.Now().Before(until) {
				if r.o.requests > 0 && issued.Add(1) > int64(r.o.requests) {
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
	c := &apiCall{Requests: int64(len(lat)), Errors: failures.Load(), RateLimited: limited.Load(), Seconds: elapsed.Seconds(),
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
func (r *benchRun) get(ctx context.Context, hc *http.Client, id *identity.Identity, path string, query url.Values, out any) error {
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

// each runs fn(i) for i in [0, n) from --concurrency workers, stopping at
// the first error.
func (r *benchRun) each(ctx context.Context, n int, what string, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		done    atomic.Int64
		wg      sync.WaitGroup
		failure firstError
	)
	lastSaid := time.Now()
	var sayMu sync.Mutex
	for range min(r.o.concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					failure.set(err)
					cancel()
					return
				}
				d := done.Add(1)
				sayMu.Lock()
				if time.Since(lastSaid) > 2*time.Second {
					lastSaid = time.Now()
					r.say("  %s: %d of %d", what, d, n)
				}
				sayMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := failure.get(); err != nil {
		return err
	}
	return ctx.Err()
}

// rekey registers rekeyMembers-1 throwaway users, adds them to the room,
// and times the caller's rekey and every member's fetch of the new key.
func (r *benchRun) rekey(ctx context.Context, room string) (*rekeyResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.timeout)
	defer cancel()
	n := r.o.rekeyMembers - 1
	setup := time.Now()

	// Throwaway identities, made on every core.
	tag := randomTag()
	ids := make([]*identity.Identity, n)
	var wg sync.WaitGroup
	var genErr firstError
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				id, err := identity.Generate(fmt.Sprintf("bench-%s-%05d", tag, i), nil)
				if err != nil {
					genErr.set(err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if err := genErr.get(); err != nil {
		return nil, err
	}

	var mu sync.Mutex
	err := r.each(ctx, n, "users registered", func(ctx context.Context, i int) error {
		if _, err := r.c.AddUser(ctx, ids[i].Public().Token(), false); err != nil {
			return fmt.Errorf("register throwaway user %s: %w", ids[i].Name(), err)
		}
		mu.Lock()
		r.created = append(r.created, ids[i].UserKey())
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Add them through the SDK, which signs what the protocol asks of an
	// add, in a few bulk requests (each carries the whole member list in
	// its statement, and a sealed key per new member).
	for lo := 0; lo < n; lo += benchAddChunk {
		hi := min(lo+benchAddChunk, n)
		keys := make([]string, 0, hi-lo)
		for _, id := range ids[lo:hi] {
			keys = append(keys, id.UserKey())
		}
		if _, err := r.c.AddMembers(ctx, room, keys); err != nil {
			return nil, fmt.Errorf("add %d throwaway users to the scratch room: %w", len(keys), err)
		}
		r.say("  members added: %d of %d", hi, n)
	}
	res := &rekeyResult{Members: n + 1}
	members := append([]*identity.Identity{r.id}, ids...)
	var push *keyDeliveries
	if r.info.AuthMode == "enforce" {
		res.Delivery = "api"
		res.Simulated = fmt.Sprintf("you rekey through the SDK; the %d other members are played by this process, %d at a time: each fetches its sealed key with a request signed by its own key and opens it with pkg/e2ee, instead of running %d SDK clients (on an enforcing bus this process may not read the others' key deliveries)", n, r.o.concurrency, n)
	} else {
		res.Delivery = "nats"
		res.Simulated = fmt.Sprintf("you rekey through the SDK; the %d other members are played by this process: each takes its key delivery from NATS, applies the rekey statement to the room's verified history and opens its key, as the SDK does, on every core, instead of running %d SDK clients", n, n)
		if push, err = r.listenForKeys(ctx, room, members); err != nil {
			return nil, err
		}
		defer push.close()
	}
	res.SetupSeconds = time.Since(setup).Seconds()

	// The timed part: the SDK's Rekey (reload, seal for every member,
	// upload), then every member's fetch and open of the new key.
	waits := r.limits.waits.Load()
	t0 := time.Now()
	updated, err := r.c.Rekey(ctx, room)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	keys := make([]e2ee.RoomKey, len(members))
	missing := make([]int, 0, len(members))
	if push != nil {
		for i, k := range push.wait(ctx, updated.Epoch) {
			if k == nil {
				missing = append(missing, i)
				continue
			}
			keys[i] = *k
			res.Delivered++
		}
	} else {
		for i := range members {
			missing = append(missing, i)
		}
	}
	err = r.each(ctx, len(missing), "members holding the new key", func(ctx context.Context, j int) error {
		i := missing[j]
		k, err := r.openKey(ctx, members[i], room, updated.Epoch)
		if err != nil {
			return fmt.Errorf("member %s: %w", members[i].Name(), err)
		}
		keys[i] = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Fetched = len(missing)
	t2 := time.Now()
	if n := r.limits.waits.Load() - waits; n > 0 {
		r.warn("rekey: the server's rate limit delayed %d requests of the timed part: the figure includes those waits (membershipd --api-rate 0 lifts the limit)", n)
	}
	for i, k := range keys {
		if k != keys[0] {
			return nil, fmt.Errorf("member %s opened another key than %s for epoch %d", members[i].Name(), members[0].Name(), updated.Epoch)
		}
	}
	res.Epoch = updated.Epoch
	res.SealUploadSeconds = t1.Sub(t0).Seconds()
	res.FetchSeconds = t2.Sub(t1).Seconds()
	res.Seconds = t2.Sub(t0).Seconds()
	return res, nil
}

// keyDeliveries plays the members of a rekey run taking their new keys as
// the SDK does, from membershipd's deliveries on NATS (api.KeyDelivery):
// each member applies the rekey statement to the room's verified history
// and opens its key, sealed by the statement's actor.
type keyDeliveries struct {
	nc      *nats.Conn
	msgs    chan *nats.Msg
	room    string
	state   *roomchain.State // the room's verified history before the rekey
	members map[string]int   // user key -> index in ids
	ids     []*identity.Identity
}

// deliveryIdle is how long the run waits for a delivery that does not
// come before the members still without a key fetch theirs from the API,
// as the SDK does when a room event names an epoch it does not hold.
const deliveryIdle = time.Second

// listenForKeys verifies the room's history as it is before the rekey (the
// state every member's SDK holds) and subscribes to every user's keys
// subject: the bus must let this process read them (auth off).
func (r *benchRun) listenForKeys(ctx context.Context, room string, members []*identity.Identity) (*keyDeliveries, error) {
	var sts []roomchain.Signed
	if err := r.get(ctx, r.hc, r.id, "/v1/rooms/"+room+"/statements", url.Values{"after": {"0"}}, &sts); err != nil {
		return nil, fmt.Errorf("read the scratch room's history: %w", err)
	}
	state, err := roomchain.Verify(room, sts)
	if err != nil {
		return nil, fmt.Errorf("the scratch room's history: %w", err)
	}
	d := &keyDeliveries{msgs: make(chan *nats.Msg, len(members)+16), room: room, state: state, members: make(map[string]int, len(members)), ids: members}
	for i, id := range members {
		d.members[id.UserKey()] = i
	}
	var asyncErr firstError
	if d.nc, err = r.connectNATS("key deliveries", &asyncErr); err != nil {
		return nil, err
	}
	// Every user's keys subject (api.KeysSubject: "<inbox>.keys"); the
	// channel holds a delivery for every member.
	_, err = d.nc.ChanSubscribe("*.keys", d.msgs)
	if err == nil {
		err = d.nc.Flush()
	}
	if err != nil {
		d.nc.Close()
		return nil, fmt.Errorf("subscribe to the members' key deliveries: %w", err)
	}
	return d, nil
}

func (d *keyDeliveries) close() { d.nc.Close() }

// wait takes deliveries on every core until every member holds the key of
// epoch, or none has come for deliveryIdle. It returns each member's key,
// nil for those whose delivery did not come or did not check out.
func (d *keyDeliveries) wait(ctx context.Context, epoch uint64) []*e2ee.RoomKey {
	out := make([]*e2ee.RoomKey, len(d.ids))
	var (
		mu   sync.Mutex
		got  int
		last atomic.Int64
		wg   sync.WaitGroup
	)
	last.Store(time.Now().UnixNano())
	all := make(chan struct{})
	quit := make(chan struct{})
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				case m := <-d.msgs:
					last.Store(time.Now().UnixNano())
					i, k, ok := d.take(m, epoch)
					if !ok {
						continue
					}
					mu.Lock()
					if out[i] == nil {
						out[i] = k
						if got++; got == len(out) {
							close(all)
						}
					}
					mu.Unlock()
				}
			}
		}()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-all:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) > deliveryIdle {
				break wait
			}
		}
	}
	close(quit)
	wg.Wait()
	return out
}

// take checks one delivery as the SDK does and opens the member's key.
func (d *keyDeliveries) take(m *nats.Msg, epoch uint64) (int, *e2ee.RoomKey, bool) {
	var kd api.KeyDelivery
	if json.Unmarshal(m.Data, &kd) != nil || kd.Room != d.room {
		return 0, nil, false
	}
	i, ok := d.members[kd.Key.Member]
	if !ok {
		return 0, nil, false
	}
	next, st, err := d.state.ApplyStatement(d.room, kd.Statement)
	if err != nil || st.Kind != roomchain.KindRekey || next.Epoch != epoch || kd.Key.Epoch != epoch || kd.Key.Sealer.User != st.Actor {
		return 0, nil, false
	}
	sealer, ok := next.MemberAt(st.Actor, epoch)
	if !ok {
		return 0, nil, false
	}
	k, err := openRoomKey(d.ids[i], d.room, epoch, sealer.XKey, kd.Key.SealedKey)
	if err != nil {
		return 0, nil, false
	}
	return i, &k, true
}

// openKey fetches id's sealed key of the room's epoch and opens it as the
// SDK does: the sealer's identity binding checked, then the seal opened.
func (r *benchRun) openKey(ctx context.Context, id *identity.Identity, room string, epoch uint64) (e2ee.RoomKey, error) {
	var keys []api.SealedKey
	q := url.Values{"epoch": {strconv.FormatUint(epoch, 10)}}
	if err := r.get(ctx, r.hc, id, "/v1/rooms/"+room+"/keys", q, &keys); err != nil {
		return e2ee.RoomKey{}, err
	}
	if len(keys) != 1 {
		return e2ee.RoomKey{}, fmt.Errorf("the server returned %d sealed keys for epoch %d, not 1", len(keys), epoch)
	}
	k := keys[0]
	if k.Room != room || k.Member != id.UserKey() || k.Epoch != epoch {
		return e2ee.RoomKey{}, fmt.Errorf("sealed key names room %s epoch %d member %s, not what was asked", k.Room, k.Epoch, k.Member)
	}
	if err := k.Sealer.Verify(); err != nil {
		return e2ee.RoomKey{}, fmt.Errorf("sealer identity: %w", err)
	}
	return openRoomKey(id, room, epoch, k.Sealer.XKey, k.SealedKey)
}

// openRoomKey opens the room key of epoch sealed to member id by the
// holder of sealerXKey. As the SDK does, the member's own X25519 public key
// comes with its identity, not from another scalar multiplication.
func openRoomKey(id *identity.Identity, room string, epoch uint64, sealerXKey string, sealed []byte) (e2ee.RoomKey, error) {
	x, err := identity.ParseXKey(sealerXKey)
	if err != nil {
		return e2ee.RoomKey{}, err
	}
	pair, err := e2ee.XKeyPair{Private: id.XPrivate(), Public: id.XPublic()}.OpeningPairKey(x)
	if err != nil {
		return e2ee.RoomKey{}, err
	}
	return pair.Open(sealed, e2ee.SealedKeyContext{Room: room, Epoch: epoch, Recipient: [32]byte(id.SigningKey().Public().(ed25519.PublicKey))})
}

// cleanup revokes the throwaway users and purges the scratch room's
// history. It runs even when the run failed or was interrupted.
func (r *benchRun) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(r.o.timeout, cleanupTimeout))
	defer cancel()
	if len(r.created) > 0 {
		r.say("cleanup: revoking %d throwaway users…", len(r.created))
		var revoked atomic.Int64
		err := r.each(ctx, len(r.created), "users revoked", func(ctx context.Context, i int) error {
			if _, err := r.c.RevokeUser(ctx, r.created[i]); err != nil {
				return err
			}
			revoked.Add(1)
			return nil
		})
		r.rep.Cleanup = append(r.rep.Cleanup, fmt.Sprintf("revoked %d of %d throwaway users (bench-*)", revoked.Load(), len(r.created)))
		if err != nil {
			r.warn("cleanup: could not revoke every throwaway user: %v; revoke the rest with `unibus user revoke USER`", err)
		}
	}
	if r.rep.Room == "" {
		return
	}
	switch {
	case r.skips("e2e"):
	case r.info.AuthMode == "enforce":
		// Users of an enforcing bus get their rooms' subjects, not
		// stream management: a purge would only time out.
		r.warn("cleanup: the scratch room's messages stay in %s: an enforcing bus lets users read and write rooms, not manage streams; an operator can purge them with `nats stream purge %s --subject %s`", api.HistoryStream, api.HistoryStream, api.RoomSubject(r.rep.Room))
	default:
		if err := r.purge(ctx, r.rep.Room); err != nil {
			r.warn("cleanup: could not purge the scratch room's messages from %s (%v): an operator can, with `nats stream purge %s --subject %s`", api.HistoryStream, err, api.HistoryStream, api.RoomSubject(r.rep.Room))
		} else {
			r.rep.Cleanup = append(r.rep.Cleanup, fmt.Sprintf("purged the scratch room's messages from the %s stream", api.HistoryStream))
		}
	}
	r.rep.Cleanup = append(r.rep.Cleanup, fmt.Sprintf("the scratch room %s (%s) stays: the API has no way to delete a room", r.rep.RoomName, r.rep.Room))
}

// purge removes the room's messages from the history stream. A bus that
// gives users only their rooms' subjects refuses it.
func (r *benchRun) purge(ctx context.Context, room string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var asyncErr firstError
	nc, err := r.connectNATS("cleanup", &asyncErr)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, api.HistoryStream)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(api.RoomSubject(room)))
}

// randomTag is 8 random characters of [a-z2-7], to name scratch things:
// the start of a fresh room id.
func randomTag() string { return api.NewRoomID()[:8] }

// write prints the report for people.
func (rep *benchReport) write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "unibus bench against %s as %s (NATS %s, auth %s)\n", rep.Server, rep.User, rep.NATSURL, rep.AuthMode)
	if rep.Raw != nil || rep.E2E != nil {
		rate := "as fast as possible"
		if rep.Rate > 0 {
			rate = fmt.Sprintf("at %s msgs/s", count(float64(rep.Rate)))
		}
		fmt.Fprintf(&b, "\n%s messages of %s bytes, %d publisher(s), %d subscriber(s), %s\n", count(float64(rep.Msgs)), count(float64(rep.Size)), rep.Pub, rep.Sub, rate)
		rows := [][]string{}
		for _, f := range []struct {
			name string
			r    *flowResult
		}{{"raw NATS", rep.Raw}, {"end to end", rep.E2E}} {
			if f.r == nil {
				continue
			}
			rows = append(rows, []string{f.name, count(f.r.MsgsPerS), fmt.Sprintf("%.1f", f.r.MBPerS), count(f.r.PubMsgsPerS),
				ms(f.r.P50ms), ms(f.r.P90ms), ms(f.r.P99ms), ms(f.r.Maxms), strconv.FormatInt(f.r.Lost, 10)})
		}
		var tb strings.Builder
		writeTable(&tb, []string{"", "MSGS/S", "MB/S", "PUB MSGS/S", "P50", "P90", "P99", "MAX", "LOST"}, rows)
		b.WriteString(indent(tb.String()))
		if rep.Ratio > 0 {
			fmt.Fprintf(&b, "  E2E/raw: %.3f (%.1f%% of raw NATS)\n", rep.Ratio, 100*rep.Ratio)
		}
		if rep.E2E != nil && rep.E2E.ReadMsgsPerS > 0 {
			fmt.Fprintf(&b, "  end to end, the run read back from history by one fresh client: %s msgs/s\n", count(rep.E2E.ReadMsgsPerS))
		}
	}
	if rep.API != nil {
		a := rep.API
		fmt.Fprintf(&b, "\nControl plane, %d signed requests at a time:\n", a.Concurrency)
		rows := [][]string{}
		for _, c := range []struct {
			name string
			c    *apiCall
		}{{"room list", a.RoomList}, {"key fetch", a.KeyFetch}} {
			rows = append(rows, []string{c.name, count(c.c.PerS), count(float64(c.c.Requests)), ms(c.c.P50ms), ms(c.c.P99ms), ms(c.c.Maxms), strconv.FormatInt(c.c.Errors, 10)})
		}
		var tb strings.Builder
		writeTable(&tb, []string{"", "REQ/S", "REQUESTS", "P50", "P99", "MAX", "ERRORS"}, rows)
		b.WriteString(indent(tb.String()))
	}
	if k := rep.Rekey; k != nil {
		fmt.Fprintf(&b, "\nRekey of a room of %s members (epoch %d):\n", count(float64(k.Members)), k.Epoch)
		fmt.Fprintf(&b, "  reload, seal %s keys, upload   %.3f s\n", count(float64(k.Members)), k.SealUploadSeconds)
		switch k.Delivery {
		case "nats":
			fmt.Fprintf(&b, "  every member takes its key      %.3f s (%d from NATS deliveries, %d fetched from the API)\n", k.FetchSeconds, k.Delivered, k.Fetched)
		default:
			fmt.Fprintf(&b, "  every member fetches and opens  %.3f s\n", k.FetchSeconds)
		}
		fmt.Fprintf(&b, "  total                           %.3f s\n", k.Seconds)
		fmt.Fprintf(&b, "  (setup, not timed: %.1f s; %s)\n", k.SetupSeconds, k.Simulated)
	}
	if len(rep.Skipped) > 0 {
		b.WriteString("\n")
		for _, p := range benchParts {
			if why, ok := rep.Skipped[p]; ok {
				fmt.Fprintf(&b, "skipped %s: %s\n", p, why)
			}
		}
	}
	if len(rep.Warnings) > 0 {
		b.WriteString("\n")
		for _, s := range rep.Warnings {
			fmt.Fprintf(&b, "warning: %s\n", s)
		}
	}
	if len(rep.Cleanup) > 0 {
		b.WriteString("\nCleanup:\n")
		for _, s := range rep.Cleanup {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	if rep.Error != "" {
		fmt.Fprintf(&b, "\nStopped early: %s\n", rep.Error)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString("  " + strings.TrimRight(line, " \n") + "\n")
		}
	}
	return b.String()
}

// ms shows a latency in milliseconds.
func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 1:
		return fmt.Sprintf("%.2fms", v)
	}
	return fmt.Sprintf("%.3fms", v)
}

// count shows a whole number with thousands separators: 123,456.
func count(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
