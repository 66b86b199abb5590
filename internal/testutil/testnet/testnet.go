// Package testnet makes loopback addresses for tests: a port free a moment
// ago, an address nobody listens on, and one that takes connections and
// never answers. What it listens on is closed when the test ends.
package testnet

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago, for
// what must be told its port before it listens (a NATS route).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// DeadAddr is a loopback address, host:port, that nobody listens on: a
// connection to it is refused.
func DeadAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// HungAddr is a loopback address, host:port, that takes connections and
// never answers (a hung node); it and its connections are closed when the
// test ends.
func HungAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
