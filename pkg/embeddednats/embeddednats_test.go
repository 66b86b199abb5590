package embeddednats_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testcerts"
	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// start starts a server and shuts it down when the test ends.
func start(t *testing.T, cfg embeddednats.ServerConfig) *server.Server {
	t.Helper()
	ns, err := embeddednats.StartServer(cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.NoReconnect(), nats.Timeout(5 * time.Second)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartServerJetStream(t *testing.T) {
	ns := start(t, embeddednats.ServerConfig{
		StoreDir:   t.TempDir(),
		Host:       "127.0.0.1",
		Port:       -1,
		ServerName: "solo",
	})
	url := embeddednats.ClientURL(ns)
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("client url = %q, want nats://127.0.0.1:<port>", url)
	}
	nc := connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	ack, err := js.Publish(ctx, "events.one", []byte("hello"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	msg, err := s.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if string(msg.Data) != "hello" || msg.Subject != "events.one" {
		t.Fatalf("got %q on %q, want hello on events.one", msg.Data, msg.Subject)
	}
}

func TestClientURLAllInterfaces(t *testing.T) {
	ns := start(t, embeddednats.ServerConfig{StoreDir: t.TempDir(), Host: "0.0.0.0", Port: -1})
	url := embeddednats.ClientURL(ns)
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("client url = %q, want loopback", url)
	}
	nc := connect(t, url)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a concurrency-safe log sink.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLoggerAndMonitor(t *testing.T) {
	var out lockedBuffer
	logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ns := start(t, embeddednats.ServerConfig{
		StoreDir:    t.TempDir(),
		Host:        "127.0.0.1",
		Port:        -1,
		Logger:      logger,
		MonitorPort: -1,
	})
	if !strings.Contains(out.String(), "Starting nats-server") {
		t.Fatalf("server log not routed to slog; got:\n%s", out.String())
	}
	addr := ns.MonitorAddr()
	if addr == nil || !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("monitor addr = %v, want 127.0.0.1", addr)
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/varz", addr))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("varz status %d", resp.StatusCode)
	}
}

func TestStartServerPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	begin := time.Now()
	ns, err := embeddednats.StartServer(embeddednats.ServerConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: port})
	if err == nil {
		ns.Shutdown()
		t.Fatal("started on a port in use")
	}
	if !strings.Contains(err.Error(), "listening") {
		t.Errorf("error %q does not explain the listen failure", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("failure took %s, want it reported promptly", d)
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	cluster := func(mod func(*embeddednats.ClusterConfig)) *embeddednats.ClusterConfig {
		cc := &embeddednats.ClusterConfig{Name: "c", Host: "127.0.0.1", Port: -1, Routes: []string{"nats://127.0.0.1:6222"}}
		if mod != nil {
			mod(cc)
		}
		return cc
	}
	tests := []struct {
		name string
		cfg  embeddednats.ServerConfig
		want string
	}{
		{"no store dir", embeddednats.ServerConfig{Port: -1}, "store dir"},
		{"bad port", embeddednats.ServerConfig{StoreDir: dir, Port: 70000}, "port"},
		{"cluster without server name", embeddednats.ServerConfig{StoreDir: dir, Port: -1, Cluster: cluster(nil)}, "server name"},
		{"cluster without name", embeddednats.ServerConfig{StoreDir: dir, Port: -1, ServerName: "a", Cluster: cluster(func(c *embeddednats.ClusterConfig) { c.Name = "" })}, "cluster name"},
		{"cluster without routes", embeddednats.ServerConfig{StoreDir: dir, Port: -1, ServerName: "a", Cluster: cluster(func(c *embeddednats.ClusterConfig) { c.Routes = nil })}, "no routes"},
		{"bad route", embeddednats.ServerConfig{StoreDir: dir, Port: -1, ServerName: "a", Cluster: cluster(func(c *embeddednats.ClusterConfig) { c.Routes = []string{"nats://127.0.0.1:1", "127.0.0.1"} })}, `"127.0.0.1"`},
		{"route without port", embeddednats.ServerConfig{StoreDir: dir, Port: -1, ServerName: "a", Cluster: cluster(func(c *embeddednats.ClusterConfig) { c.Routes = []string{"nats://peer"} })}, "nats://peer"},
		{"user without password", embeddednats.ServerConfig{StoreDir: dir, Port: -1, ServerName: "a", Cluster: cluster(func(c *embeddednats.ClusterConfig) { c.Username = "u" })}, "password"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := embeddednats.StartServer(tc.cfg)
			if err == nil {
				ns.Shutdown()
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestClusterR3(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	const n = 3
	servers := testnats.StartCluster(t, n, func(int) embeddednats.ServerConfig {
		return embeddednats.ServerConfig{Cluster: &embeddednats.ClusterConfig{Name: "unibus-test", Username: "route", Password: "s3cret"}}
	})
	waitFor(t, 10*time.Second, "full route mesh", func() error {
		for i, ns := range servers {
			if got := ns.NumRemotes(); got != n-1 {
				return fmt.Errorf("n%d is routed to %d peers", i+1, got)
			}
		}
		return nil
	})

	nc := connect(t, embeddednats.ClientURL(servers[0]))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var stream jetstream.Stream
	waitFor(t, 15*time.Second, "R3 stream creation", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
		if err != nil {
			return err
		}
		stream = s
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := stream.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("replicas = %d, want 3", got)
	}
	ack, err := js.Publish(ctx, "r3.x", []byte("replicated"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}

	// Read the message back through another member.
	nc3 := connect(t, embeddednats.ClientURL(servers[2]))
	js3, err := jetstream.New(nc3)
	if err != nil {
		t.Fatal(err)
	}
	s3, err := js3.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s3.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatalf("get via n3: %v", err)
	}
	if string(msg.Data) != "replicated" {
		t.Fatalf("got %q", msg.Data)
	}
	waitFor(t, 10*time.Second, "replicas current", func() error {
		info, err := s3.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return errors.New("replica set incomplete")
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return fmt.Errorf("replica %s not current", r.Name)
			}
		}
		return nil
	})
}

func TestClientTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "unibus test ca")
	srvCert := ca.Issue(t, "server").TLS
	ns := start(t, embeddednats.ServerConfig{
		StoreDir: t.TempDir(),
		Host:     "127.0.0.1",
		Port:     -1,
		TLS:      &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12},
	})
	url := embeddednats.ClientURL(ns)
	if !strings.HasPrefix(url, "tls://127.0.0.1:") {
		t.Fatalf("client url = %q, want tls://127.0.0.1:<port>", url)
	}

	nc := connect(t, url, nats.Secure(&tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}))
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Fatalf("connection is not TLS: %v", err)
	}

	// Without the CA the server certificate cannot be verified.
	if nc2, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(2*time.Second)); err == nil {
		nc2.Close()
		t.Fatal("connected without trusting the CA")
	}
	// A plaintext client is refused: the server announces that TLS is
	// required and drops a client that carries on without it.
	conn, err := net.DialTimeout("tcp", ns.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO does not require TLS: %s", info)
	}
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err == nil && strings.HasPrefix(line, "PONG") {
		t.Fatal("plaintext client got PONG from a TLS-only server")
	}
}
