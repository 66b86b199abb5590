package main

import (
	"context"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxy forwards TCP connections to a target, so that a test can take a
// server away from a client and give it back: cut closes every
// connection and refuses new ones, restore forwards again.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	down    bool
	refused int // connections refused while down
	conns   map[net.Conn]bool
}

// startProxy listens on a loopback port for target, until the test ends.
func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	p.mu.Lock()
	down := p.down
	if down {
		p.refused++
	}
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(s, c); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// cut closes every forwarded connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// restore forwards new connections again.
func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// TestFollowerSaysWhenItLosesTheBus: bob follows a room through proxies
// of the API and of NATS. When both go away, his follower says so on
// stderr once and keeps trying; when NATS is back it says so once, and,
// once the API answers again, goes on from where it was, the message sent
// meanwhile included. With --json nothing but messages reaches stdout.
func TestFollowerSaysWhenItLosesTheBus(t *testing.T) {
	t.Parallel()
	alice, bob, room := startOps(t)
	nu, err := url.Parse(alice.s.bus.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	api := startProxy(t, alice.s.bus.HTTP.Listener.Addr().String())
	bus := startProxy(t, nu.Host)
	f := bob.start(t, "read", room, "--follow", "--json", "--server", "http://"+api.addr(), "--nats", "nats://"+bus.addr())

	alice.must(t, "", "send", room, "one")
	f.waitLines(t, 1)
	api.cut()
	bus.cut()
	waitFor(t, 10*time.Second, "the follower to say the connection is lost", func() bool {
		return strings.Contains(f.errb.String(), "connection lost")
	})
	alice.must(t, "", "send", room, "two, while bob is cut off")
	// His reader goes too, as when membershipd restarts.
	if n, err := alice.s.bus.Readers.CloseFor(context.Background(), bob.id.UserKey(), room); n != 1 || err != nil {
		t.Fatalf("close bob's reader: %d, %v", n, err)
	}
	waitFor(t, 10*time.Second, "bob's reconnection attempts to fail", func() bool {
		bus.mu.Lock()
		defer bus.mu.Unlock()
		return bus.refused >= 2
	})
	// NATS comes back first: the follower, whose reader is gone, asks the
	// API for another, which does not answer yet, and asks again until it
	// does.
	bus.restore()
	waitFor(t, 10*time.Second, "the follower to say the connection is back", func() bool {
		return strings.Contains(f.errb.String(), "connection back")
	})
	waitFor(t, 15*time.Second, "the follower's attempts to reopen its reader to fail", func() bool {
		api.mu.Lock()
		defer api.mu.Unlock()
		return api.refused >= 2
	})
	if len(f.lines()) != 1 {
		t.Fatalf("follower showed %q without the API", f.lines())
	}
	api.restore()
	f.waitLines(t, 2)
	alice.must(t, "", "send", room, "three")
	f.waitLines(t, 3)
	if code := f.stop(t); code != 0 {
		t.Errorf("follower stopped by interruption: exit %d; want 0 (%s)", code, f.errb.String())
	}

	stderr := f.errb.String()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	t.Logf("follower's stderr:\n%s", stderr)
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "unibus: connection lost") || !strings.HasSuffix(lines[0], ", retrying…") || lines[1] != "unibus: connection back" {
		t.Errorf("follower's stderr:\n%s\nwant one line saying the connection was lost, retrying, and one saying it is back", stderr)
	}
	msgs := decodeLines(t, f.out.String())
	var texts []string
	for _, m := range msgs {
		text, _ := m["text"].(string)
		texts = append(texts, text)
	}
	if got := strings.Join(texts, "|"); got != "one|two, while bob is cut off|three" {
		t.Errorf("follower's messages: %q; want one, two and three, in order, and nothing else", got)
	}
}
