package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/pkg/client"
)

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
// for idle (what is missing is lost), ctx ends, or failed reports.
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
		} else if time.Since(lastMove) > idle {
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
func (r *run) result(recs []*recorder, start, pubEnd int64) *FlowResult {
	res := &FlowResult{Msgs: r.o.Msgs}
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
	res.Lost = int64(r.o.Msgs*len(recs)) - res.Delivered
	res.Seconds = seconds(last - start)
	if res.Seconds > 0 {
		res.MsgsPerS = float64(res.Delivered) / float64(len(recs)) / res.Seconds
		res.MBPerS = res.MsgsPerS * float64(r.o.Size) / 1e6
	}
	if d := seconds(pubEnd - start); d > 0 {
		res.PubMsgsPerS = float64(r.o.Msgs) / d
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

func (r *run) newPacer() pacer {
	if r.o.Rate == 0 {
		return pacer{}
	}
	return pacer{t0: time.Now(), interval: time.Duration(float64(time.Second) * float64(r.o.Pub) / float64(r.o.Rate))}
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
func (r *run) flow(ctx context.Context, recs []*recorder, failed <-chan error, publish func(p, n int) error) (start, pubEnd int64, err error) {
	if err := waitWarm(ctx, recs, failed); err != nil {
		return 0, 0, err
	}
	start = r.since()
	var (
		wg     sync.WaitGroup
		pubErr firstError
		end    atomic.Int64
	)
	for p, n := range shares(r.o.Msgs, r.o.Pub) {
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
func (r *run) raw(ctx context.Context, subject string) (*FlowResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	var asyncErr firstError
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	recs := make([]*recorder, r.o.Sub)
	for i := range recs {
		nc, err := r.connectNATS(fmt.Sprintf("sub %d", i), &asyncErr)
		if err != nil {
			return nil, err
		}
		conns = append(conns, nc)
		rec := newRecorder(r.o.Msgs, r.o.Pub)
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
	pubs := make([]*nats.Conn, r.o.Pub)
	for i := range pubs {
		nc, err := r.connectNATS(fmt.Sprintf("pub %d", i), &asyncErr)
		if err != nil {
			return nil, err
		}
		conns = append(conns, nc)
		pubs[i] = nc
		warm := make([]byte, r.o.Size)
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
		buf := make([]byte, r.o.Size)
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

// e2eWarm is the text of a warm-up message; data messages start with the
// send time in 19 decimal digits.
const e2eWarm = "warm-up"

// e2e runs the same load through the SDK in the scratch room.
func (r *run) e2e(ctx context.Context, room string) (*FlowResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	var clients []*client.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	// errDone ends a subscriber's Read once it has every message.
	errDone := errors.New("bench: all messages received")
	subCtx, stopSubs := context.WithCancel(ctx)
	failed := make(chan error, r.o.Sub)
	var readers sync.WaitGroup
	defer readers.Wait()
	defer stopSubs() // runs before readers.Wait
	recs := make([]*recorder, r.o.Sub)
	for i := range recs {
		c, err := r.newClient(r.hc)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		rec := newRecorder(r.o.Msgs, r.o.Pub)
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
						return errDone
					}
					return nil
				}
				sent, err := strconv.ParseInt(m.Text[:19], 10, 64)
				if rec.message(now-sent, now, err != nil) {
					return errDone
				}
				return nil
			})
			if err != nil && !errors.Is(err, errDone) && subCtx.Err() == nil {
				failed <- fmt.Errorf("subscriber %d: %w", i, err)
			}
		}()
	}
	pubs := make([]*client.Client, r.o.Pub)
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
		text := bytes.Repeat([]byte{'x'}, r.o.Size)
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
		r.warn("end to end: %d messages not delivered within %s of the last one", res.Lost, idle)
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
func (r *run) checkRate(what string, res *FlowResult) {
	if r.o.Rate > 0 && res.PubMsgsPerS < 0.95*float64(r.o.Rate) {
		r.warn("%s: the publishers reached %s msgs/s, short of --rate %s: the latencies are those of a saturated publisher", what, count(res.PubMsgsPerS), count(float64(r.o.Rate)))
	}
}

// putStamp writes t in decimal, zero-padded to len(dst) digits.
func putStamp(dst []byte, t int64) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + t%10)
		t /= 10
	}
}
