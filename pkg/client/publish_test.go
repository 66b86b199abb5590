package client_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
)

// The publish tests put a NATS proxy between a client and its bus's NATS
// server. The proxy reads what the client sends as NATS protocol and hands
// each publish that carries a message id (Send's, to a room) to the test,
// which passes it on, holds it, drops it, or passes it on and cuts the
// connection before the acknowledgement gets back (a node that stored the
// message and died).

// proxyConn is one client connection through the proxy.
type proxyConn struct {
	client, server net.Conn
	muted          atomic.Bool
}

// forward passes frame, as the client sent it, on to the server.
func (pc *proxyConn) forward(frame []byte) { pc.server.Write(frame) }

// mute drops whatever the server sends from now on.
func (pc *proxyConn) mute() { pc.muted.Store(true) }

// cut closes the connection on both sides.
func (pc *proxyConn) cut() {
	pc.client.Close()
	pc.server.Close()
}

// newNATSProxy listens on loopback and passes every connection to the NATS
// server at upstream (a nats:// URL), calling onPub, on the connection's
// reading goroutine, for each publish with a Nats-Msg-Id instead of
// passing it on. It returns the proxy's URL; it is closed at cleanup.
func newNATSProxy(t testing.TB, upstream string, onPub func(pc *proxyConn, subject, msgID string, frame []byte)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(upstream, "nats://")
	var (
		mu    sync.Mutex
		conns []*proxyConn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			pc := &proxyConn{client: c, server: s}
			mu.Lock()
			conns = append(conns, pc)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer pc.cut()
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !pc.muted.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				defer pc.cut()
				r := bufio.NewReader(c)
				for {
					frame, subject, msgID, err := readFrame(r)
					if err != nil {
						return
					}
					if msgID != "" && onPub != nil {
						onPub(pc, subject, msgID, frame)
						continue
					}
					if _, err := s.Write(frame); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, pc := range conns {
			pc.cut()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "nats://" + ln.Addr().String()
}

// readFrame reads one protocol line from a NATS client, with the payload
// of a PUB or HPUB, and returns it whole; for an HPUB it also returns the
// subject and the Nats-Msg-Id header, if any.
func readFrame(r *bufio.Reader) (frame []byte, subject, msgID string, err error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, "", "", err
	}
	fields := strings.Fields(string(line))
	if len(fields) < 3 || (fields[0] != "PUB" && fields[0] != "HPUB") {
		return line, "", "", nil
	}
	size, err := strconv.Atoi(fields[len(fields)-1])
	if err != nil {
		return nil, "", "", err
	}
	body := make([]byte, size+2) // and its CRLF
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, "", "", err
	}
	frame = append(line, body...)
	if fields[0] != "HPUB" {
		return frame, "", "", nil
	}
	hdrLen, err := strconv.Atoi(fields[len(fields)-2])
	if err != nil || hdrLen > size {
		return nil, "", "", errors.New("bad HPUB")
	}
	for _, h := range strings.Split(string(body[:hdrLen]), "\r\n") {
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, jetstream.MsgIDHeader) {
			msgID = strings.TrimSpace(v)
		}
	}
	return frame, fields[1], msgID, nil
}

// resendLog records why a client sent a message again, from its debug
// log, and passes every record on to the test logger.
type resendLog struct {
	next  slog.Handler
	mu    *sync.Mutex
	why   *[]error
	count *atomic.Int64
}

func newResendLog() *resendLog {
	return &resendLog{next: testbus.Logger().Handler(), mu: new(sync.Mutex), why: new([]error), count: new(atomic.Int64)}
}

func (l *resendLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *resendLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "publish not acknowledged; sending it again" {
		var why error
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
				why = err
			}
			return true
		})
		l.mu.Lock()
		*l.why = append(*l.why, why)
		l.mu.Unlock()
	}
	if l.next.Enabled(ctx, r.Level) {
		return l.next.Handle(ctx, r)
	}
	return nil
}

func (l *resendLog) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.next = l.next.WithAttrs(as)
	return &c
}

func (l *resendLog) WithGroup(name string) slog.Handler {
	c := *l
	c.next = l.next.WithGroup(name)
	return &c
}

// resends returns why each copy was sent again, in order.
func (l *resendLog) resends() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), *l.why...)
}

// natsClient returns a client of id on bus whose NATS connection goes to
// natsURLs, logging to log; closed at cleanup.
func natsClient(t testing.TB, bus *testbus.Bus, id *identity.Identity, natsURLs string, log *resendLog, timeout time.Duration) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Server: bus.HTTP.URL, Identity: id, NATSURL: natsURLs, Logger: slog.New(log), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitStored waits until the last message of the history on subject is
// the one with msgID, and reports whether it came.
func waitStored(bus *testbus.Bus, subject, msgID string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := bus.JS.Stream(ctx, api.HistoryStream)
	if err != nil {
		return false
	}
	for ctx.Err() == nil {
		if m, err := st.GetLastMsgForSubject(ctx, subject); err == nil && m.Header.Get(jetstream.MsgIDHeader) == msgID {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// cutAfterStoring is an onPub that, for the first copy of each message,
// passes it on, lets the history store it, and cuts the connection before
// the acknowledgement reaches the client; later copies pass. cuts counts
// the connections cut.
func cutAfterStoring(t testing.TB, bus *testbus.Bus, cuts *atomic.Int64) func(*proxyConn, string, string, []byte) {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	return func(pc *proxyConn, subject, msgID string, frame []byte) {
		mu.Lock()
		first := !seen[msgID]
		seen[msgID] = true
		mu.Unlock()
		if !first {
			pc.forward(frame)
			return
		}
		pc.mute()
		pc.forward(frame)
		if !waitStored(bus, subject, msgID) {
			t.Errorf("message %s was not stored through the proxy", msgID)
		}
		cuts.Add(1)
		pc.cut()
	}
}

// TestSendWhoseConnectionDropsIsSentAgainAtOnce: the client's NATS node
// stores a message and dies before acknowledging it. The client sends the
// message again as soon as its connection drops, not after waiting out
// the attempt, over its connection to another node; the message is
// stored once.
func TestSendWhoseConnectionDropsIsSentAgainAtOnce(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	var cuts atomic.Int64
	proxy := newNATSProxy(t, bus.NATSURL, cutAfterStoring(t, bus, &cuts))
	log := newResendLog()
	alice := natsClient(t, bus, aliceID, proxy+","+bus.NATSURL, log, 0)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := alice.Send(ctxT(t), room.ID, client.Message{Text: "through a dying node"})
	if err != nil {
		t.Fatalf("Send whose node died before acknowledging = %v", err)
	}
	if cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections; want 1", cuts.Load())
	}
	why := log.resends()
	if len(why) != 1 || !errors.Is(why[0], nats.ErrDisconnected) {
		t.Errorf("Send sent the message again for %v; want once, for the lost connection (%v)", why, nats.ErrDisconnected)
	}
	msgs := readAll(t, alice, room.ID)
	if len(msgs) != 1 || msgs[0].ID != id || msgs[0].Text != "through a dying node" {
		t.Errorf("history holds %d messages (%+v); want the one sent, once", len(msgs), msgs)
	}
}

// TestSendTakesTheAcknowledgementOfAnyCopy: the first copy of a message
// goes unanswered and is sent again; the acknowledgement that then comes
// is the first copy's (the later copies are lost). Send takes it.
func TestSendTakesTheAcknowledgementOfAnyCopy(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	var (
		mu     sync.Mutex
		held   []byte
		copies int
	)
	proxy := newNATSProxy(t, bus.NATSURL, func(pc *proxyConn, _, _ string, frame []byte) {
		mu.Lock()
		defer mu.Unlock()
		copies++
		switch copies {
		case 1: // held back: unanswered
			held = frame
		case 2: // the first goes through now, this one is lost
			pc.forward(held)
		}
	})
	log := newResendLog()
	alice := natsClient(t, bus, aliceID, proxy, log, 20*time.Second)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := alice.Send(ctxT(t), room.ID, client.Message{Text: "late but stored"})
	if err != nil {
		t.Fatalf("Send whose first copy was acknowledged after a second was sent = %v", err)
	}
	mu.Lock()
	n := copies
	mu.Unlock()
	if n < 2 {
		t.Errorf("the proxy saw %d copies; want 2 or more", n)
	}
	if why := log.resends(); len(why) == 0 || errors.Is(why[0], nats.ErrDisconnected) {
		t.Errorf("Send sent the message again for %v; want for a missing acknowledgement", why)
	}
	msgs := readAll(t, alice, room.ID)
	if len(msgs) != 1 || msgs[0].ID != id {
		t.Errorf("history holds %d messages; want the one sent, once", len(msgs))
	}
}

// TestSendRefusedIsNotSentAgain: a message the history refuses (here one
// over the stream's size limit) fails at once with the stream's error,
// not ErrNotStored, and is not sent again.
func TestSendRefusedIsNotSentAgain(t *testing.T) {
	t.Parallel()
	bus := testbus.Start(t, testbus.Options{})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	log := newResendLog()
	alice := natsClient(t, bus, aliceID, "", log, 0)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room.ID, "before")
	st, err := bus.JS.Stream(ctxT(t), api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = 64
	if _, err := bus.JS.UpdateStream(ctxT(t), cfg); err != nil {
		t.Fatal(err)
	}
	_, err = alice.Send(ctxT(t), room.ID, client.Message{Text: "too big for the stream now"})
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || errors.Is(err, client.ErrNotStored) {
		t.Fatalf("Send over the stream's size limit = %v; want the stream's refusal", err)
	}
	if why := log.resends(); len(why) != 0 {
		t.Errorf("Send sent a refused message again, for %v; want never", why)
	}
}

// TestSendLeavesNoGoroutines: sends whose first copy was lost with its
// connection and sent again, and sends given up on with copies still
// waiting for their acknowledgement, leave no goroutine behind. Not
// parallel: it counts the process's goroutines.
func TestSendLeavesNoGoroutines(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{})
	aliceID := bus.Identity(t, "alice", api.RoleAdmin)
	var (
		cuts atomic.Int64
		lose atomic.Bool // every copy, from now on
	)
	cut := cutAfterStoring(t, bus, &cuts)
	proxy := newNATSProxy(t, bus.NATSURL, func(pc *proxyConn, subject, msgID string, frame []byte) {
		if !lose.Load() {
			cut(pc, subject, msgID, frame)
		}
	})
	alice := natsClient(t, bus, aliceID, proxy, newResendLog(), 0)
	hasty := natsClient(t, bus, aliceID, proxy, newResendLog(), 300*time.Millisecond)
	room, err := alice.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	const sends = 8
	lost := func(c *client.Client, text string) {
		t.Helper()
		lose.Store(true)
		defer lose.Store(false)
		if _, err := c.Send(ctxT(t), room.ID, client.Message{Text: text}); !errors.Is(err, client.ErrNotStored) {
			t.Fatalf("Send(%q) with every copy lost = %v; want ErrNotStored", text, err)
		}
	}
	// Each client's first send starts what its connection keeps for
	// good (nats.go's acknowledgement subscription): before the count.
	mustSend(t, alice, room.ID, "warm up")
	lost(hasty, "warm up too")
	base, _ := waitGoroutines(math.MaxInt)

	for i := range sends {
		mustSend(t, alice, room.ID, "message "+strconv.Itoa(i))
	}
	if want := int64(sends + 1); cuts.Load() != want {
		t.Fatalf("the proxy cut %d connections; want %d, one a message", cuts.Load(), want)
	}
	for i := range sends {
		lost(hasty, "lost "+strconv.Itoa(i))
	}
	if n, mine := waitGoroutines(base); n > base || mine != 0 {
		t.Fatalf("after %d sends sent again and %d given up on: %d goroutines, %d of them started by publish; want %d and none", sends, sends, n, mine, base)
	}
	if msgs := readAll(t, alice, room.ID); len(msgs) != sends+1 {
		t.Errorf("history holds %d messages; want %d, each once", len(msgs), sends+1)
	}
}

// waitGoroutines waits, up to 10 s, until no goroutine started by
// Client.publish runs and at most max run in all, and returns how many
// run and how many of them publish started.
func waitGoroutines(max int) (n, mine int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, mine = runtime.NumGoroutine(), publishGoroutines()
		if (n <= max && mine == 0) || time.Now().After(deadline) {
			return n, mine
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishGoroutines counts the goroutines that Client.publish started and
// that still run.
func publishGoroutines() int {
	var b bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&b, 2)
	return strings.Count(b.String(), "created by github.com/enmanuel/unibus/pkg/client.(*Client).publish")
}
