package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"github.com/enmanuel/unibus/pkg/reqsig"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// verbose reports whether tests show the server's log (UNIBUS_TEST_LOG=debug).
func verbose() bool { return os.Getenv("UNIBUS_TEST_LOG") == "debug" }

// testServer is one run of the membershipd server inside the test.
type testServer struct {
	URL  string // http://127.0.0.1:PORT
	Dir  string // --db, --store-dir and --nats-store live here
	Logs *logCapture

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startServer calls run with free ports and storage in dir, waits until the
// HTTP API listens, and stops it at the end of the test.
func startServer(t testing.TB, dir string, extra ...string) *testServer {
	t.Helper()
	args := []string{
		"--db", filepath.Join(dir, "unibus.db"),
		"--store-dir", filepath.Join(dir, "blobs"),
		"--nats-store", filepath.Join(dir, "jetstream"),
		"--nats-port", "-1",
		"--http-port", "0",
	}
	args = append(args, extra...)
	if verbose() {
		args = append(args, "--log-level", "debug")
	}
	logs := newLogCapture(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{Dir: dir, Logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() { s.Stop(t) })

	select {
	case s.URL = <-logs.url:
	case err := <-s.done:
		s.done <- err
		t.Fatalf("run returned before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("membershipd did not start serving within 30s")
	}
	return s
}

// Stop cancels the server's context and checks that run returns nil soon.
func (s *testServer) Stop(t testing.TB) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("run returned %v after cancel; want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("run did not return within 15s of cancel")
		}
		s.Logs.close()
	})
}

// apiLine matches the log line that gives the API address.
var apiLine = regexp.MustCompile(`HTTPS? control-plane API: (\S+)$`)

// logCapture is the server's stderr: it finds the API address in the
// "HTTP control-plane API:" line and keeps the lines for assertions.
type logCapture struct {
	t   testing.TB
	url chan string

	mu     sync.Mutex
	buf    bytes.Buffer
	lines  []string
	sent   bool
	closed bool
}

func newLogCapture(t testing.TB) *logCapture {
	return &logCapture{t: t, url: make(chan string, 1)}
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	for {
		line, err := c.buf.ReadString('\n')
		if err != nil {
			// An incomplete line: keep it for the next write.
			c.buf.Reset()
			c.buf.WriteString(line)
			break
		}
		line = strings.TrimSuffix(line, "\n")
		c.lines = append(c.lines, line)
		if verbose() && !c.closed {
			c.t.Log(line)
		}
		if m := apiLine.FindStringSubmatch(line); m != nil && !c.sent {
			c.sent = true
			c.url <- m[1]
		}
	}
	return len(p), nil
}

func (c *logCapture) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// Lines returns the complete lines written so far.
func (c *logCapture) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// getJSON fetches url and decodes the JSON answer into v (when non-nil),
// returning the status.
func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	return doJSON(t, mustRequest(t, http.MethodGet, url), v)
}

// natsURLOf returns the NATS URL a server advertises.
func natsURLOf(t testing.TB, s *testServer) string {
	t.Helper()
	var info api.Info
	if status := getJSON(t, s.URL+"/v1/info", &info); status != http.StatusOK {
		t.Fatalf("GET /v1/info = %d", status)
	}
	return info.NATSURL
}

func mustRequest(t testing.TB, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func doJSON(t testing.TB, req *http.Request, v any) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type = %q; want application/json", req.Method, req.URL, ct)
	}
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s %s: decode %q: %v", req.Method, req.URL, body, err)
		}
	}
	return resp.StatusCode
}

func jsonDecode(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// signedGet is a GET of url signed by id.
func signedGet(t testing.TB, url string, id *identity.Identity) *http.Request {
	t.Helper()
	req := mustRequest(t, http.MethodGet, url)
	sig, err := reqsig.Sign(id, http.MethodGet, req.URL.RequestURI(), reqsig.EmptyBody, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", sig.String())
	return req
}

// getMe calls GET /v1/me signed by id and returns the status.
func getMe(t testing.TB, base string, id *identity.Identity) int {
	t.Helper()
	req := signedGet(t, base+"/v1/me", id)
	var me api.User
	status := doJSON(t, req, &me)
	if status == http.StatusOK && me.User != id.UserKey() {
		t.Errorf("GET /v1/me = user %s; want %s", me.User, id.UserKey())
	}
	return status
}

// newClient returns an SDK client of id against the API at url, closed at
// the end of the test.
func newClient(t testing.TB, url string, id *identity.Identity) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Server: url, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads a room's whole history through c and returns the texts
// of its messages.
func readAll(t testing.TB, c *client.Client, room string) []string {
	t.Helper()
	var texts []string
	if err := c.Read(ctxT(t), room, client.ReadOptions{}, func(m client.Received) error {
		if m.Err != nil {
			t.Errorf("message %s: %v", m.ID, m.Err)
		}
		texts = append(texts, m.Text)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return texts
}

// sendFileContaining sends a file holding content to room through c and
// returns the id of its message.
func sendFileContaining(t testing.TB, c *client.Client, room string, content []byte) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "file.txt")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := c.SendFile(ctxT(t), room, src, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRunEmbedded(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())

	var health api.Health
	if status := getJSON(t, s.URL+"/healthz", &health); status != http.StatusOK || health.Status != "ok" {
		t.Errorf("GET /healthz = %d %+v; want 200 ok", status, health)
	}
	var info api.Info
	if status := getJSON(t, s.URL+"/v1/info", &info); status != http.StatusOK {
		t.Fatalf("GET /v1/info = %d; want 200", status)
	}
	if !strings.HasPrefix(info.NATSURL, "nats://127.0.0.1:") || strings.HasSuffix(info.NATSURL, ":4250") {
		t.Errorf("info nats_url = %q; want the embedded server on a free loopback port", info.NATSURL)
	}
	if info.AuthMode != "off" || info.HistoryStream != api.HistoryStream || info.Build != apiBuild(thisBuild()) || info.MaxBlobBytes <= 0 {
		t.Errorf("info = %+v; want auth_mode off, history_stream %s, the build %+v and a blob limit", info, api.HistoryStream, apiBuild(thisBuild()))
	}

	// The history stream exists on the embedded server.
	nc, err := nats.Connect(info.NATSURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", info.NATSURL, err)
	}
	defer nc.Close()
	checkHistoryStream(t, nc)
	nc.Close()

	start := time.Now()
	s.Stop(t)
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("graceful shutdown took %s", d)
	}
	lines := s.Logs.Lines()
	if len(lines) == 0 || !strings.HasSuffix(lines[len(lines)-1], "bye") {
		t.Errorf("last log line = %q; want bye", lines[len(lines)-1:])
	}
}

func TestRunFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := []string{"--db", filepath.Join(dir, "u.db"), "--store-dir", filepath.Join(dir, "b"), "--nats-store", filepath.Join(dir, "js"), "--nats-port", "-1", "--http-port", "0"}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"help", []string{"-h"}, 0, ""},
		{"unknown flag", []string{"--nope"}, 2, ""},
		{"stray argument", []string{"serve"}, 2, ""},
		{"bad log level", []string{"--log-level", "loud"}, 2, ""},
		{"bad bus-auth", []string{"--bus-auth", "maybe"}, 1, "use off, soft or enforce"},
		{"public bind without enforce", []string{"--bind", "0.0.0.0"}, 1, "add --bus-auth enforce"},
		{"tls without enforce", []string{"--tls-cert", "x.crt", "--tls-key", "x.key"}, 1, "add --bus-auth enforce"},
		{"cert without key", []string{"--bus-auth", "enforce", "--tls-cert", "x.crt"}, 1, "--tls-cert and --tls-key must be set together"},
		{"partial route tls", []string{"--route-tls-ca", "ca.crt"}, 1, "--route-tls-cert"},
		{"zero blob limit", []string{"--max-blob-bytes", "0"}, 1, "--max-blob-bytes"},
		{"negative history age", []string{"--history-max-age", "-1h"}, 1, "--history-max-age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(context.Background(), append(append([]string(nil), base...), tt.args...), io.Discard, &stderr)
			if code := exitCode(err, &stderr); code != tt.wantCode {
				t.Errorf("run(%q) exit code = %d (err %v); want %d", tt.args, code, err, tt.wantCode)
			}
			if tt.wantMsg != "" && !strings.Contains(stderr.String(), tt.wantMsg) {
				t.Errorf("run(%q) stderr = %q; want it to mention %q", tt.args, stderr.String(), tt.wantMsg)
			}
			if tt.wantCode == 1 && !strings.HasPrefix(stderr.String(), "membershipd: ") {
				t.Errorf("run(%q) stderr = %q; want it prefixed membershipd:", tt.args, stderr.String())
			}
		})
	}
	if err := run(context.Background(), []string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run(-h) = %v; want flag.ErrHelp", err)
	}
}

func TestRunEnforceEmbedded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	// With --bus-auth enforce, membershipd's own NATS connection must pass
	// the nkey authenticator, or the history stream could not be made.
	s := startServer(t, dir, "--bus-auth", "enforce")
	var info api.Info
	if status := getJSON(t, s.URL+"/v1/info", &info); status != http.StatusOK || info.AuthMode != "enforce" {
		t.Fatalf("GET /v1/info = %d %+v; want 200 with auth_mode enforce", status, info)
	}

	// Nobody without an active user key connects to NATS.
	if nc, err := nats.Connect(info.NATSURL, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("anonymous NATS connection admitted under enforce")
	}
	alice := testbus.NewIdentity(t, "alice")
	if nc, err := nats.Connect(info.NATSURL, nats.Nkey(alice.UserKey(), alice.NkeySign)); err == nil {
		nc.Close()
		t.Error("unknown user's NATS connection admitted under enforce")
	}
	runCLI(t, 0, "user", "seed", "--db", db, alice.Public().Token())
	nc, err := nats.Connect(info.NATSURL, nats.Nkey(alice.UserKey(), alice.NkeySign), nats.CustomInboxPrefix(subjects.InboxPrefix(alice.UserKey())), quietErrors)
	if err != nil {
		t.Fatalf("seeded user's NATS connection refused: %v", err)
	}
	defer nc.Close()
	checkUserHasNoJetStreamAPI(t, nc)
}

// quietErrors keeps the expected permission violations of a user's
// connection out of the test output.
var quietErrors = nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})

// checkUserHasNoJetStreamAPI checks, through a user's connection under enforce,
// that the user has no JetStream API at all (it reads through the readers
// membershipd opens, never a request of its own), and, through the API,
// that the history stream membershipd made is there to read.
func checkUserHasNoJetStreamAPI(t testing.TB, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ai, err := js.AccountInfo(ctx); err == nil {
		t.Fatalf("a user read the account's JetStream info under enforce: %+v", ai)
	}
	if _, err := js.Stream(ctx, api.HistoryStream); err == nil {
		t.Fatal("a user read the history stream's info under enforce")
	}
}

// checkHistoryStream checks that the history stream exists where nc is
// connected.
func checkHistoryStream(t testing.TB, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, api.HistoryStream)
	if err != nil {
		t.Fatalf("history stream %s: %v", api.HistoryStream, err)
	}
	if subj := st.CachedInfo().Config.Subjects; len(subj) != 1 || subj[0] != api.HistorySubjects {
		t.Errorf("history stream subjects = %q; want [%s]", subj, api.HistorySubjects)
	}
}

// testBinDir is where the binaries the tests build go, made once and
// removed after the tests (TestMain).
var testBinDir = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "membershipd-test-bin-")
	binDir = dir
	return dir, err
})

// natsServerBinary builds the nats-server of go.mod once per test binary.
var natsServerBinary = sync.OnceValues(func() (string, error) {
	dir, err := testBinDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nats-server")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
})

// membershipdBinaryOnce builds this package's membershipd once per test
// binary, for the tests that run it as processes.
var membershipdBinaryOnce = sync.OnceValues(func() (string, error) {
	dir, err := testBinDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "membershipd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build membershipd: %v\n%s", err, out)
	}
	return bin, nil
})

// membershipdBinary is the membershipd the process tests run; the test
// is skipped where go is not on PATH to build it.
func membershipdBinary(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH: cannot build membershipd")
	}
	bin, err := membershipdBinaryOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// binDir is removed after the tests.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Ports come from below the ephemeral range, where the servers of other
// tests that listen on port 0 never land, and none twice in this
// process: a port picked for a node stays its own across the node's
// restarts while the tests run in parallel (nats-server's cluster tests
// pick their route ports the same way).
func freePort(t testing.TB) int {
	t.Helper()
	for range portRange {
		p := portBase + int(nextPort.Add(1)%portRange)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatalf("no free port in %d-%d", portBase, portBase+portRange-1)
	return 0
}

// The ports freePort hands out: portRange of them from portBase, Linux's
// ephemeral range beginning at 32768, starting at a random one so that
// test binaries running side by side seldom pick the same.
const (
	portBase  = 20000
	portRange = 12000
)

var nextPort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(rand.Int64N(portRange))
	return &n
}()

// startNATSProcess runs a standalone nats-server process, with JetStream
// when js is set, and returns its client URL.
func startNATSProcess(t testing.TB, js bool) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH: cannot build a standalone nats-server")
	}
	bin, err := natsServerBinary()
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}
	if js {
		args = append(args, "-js", "-sd", t.TempDir())
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	if verbose() {
		cmd.Stdout, cmd.Stderr = &out, &out
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if verbose() {
			t.Logf("nats-server output:\n%s", out.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "nats://" + addr
		}
		select {
		case <-exited:
			t.Fatalf("nats-server exited before accepting connections (port %d taken?)", port)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not accept connections on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunExternalNATS(t *testing.T) {
	t.Parallel()
	natsURL := startNATSProcess(t, true)
	s := startServer(t, t.TempDir(), "--nats-url", natsURL, "--history-max-msgs-per-room", "1000")

	if got := natsURLOf(t, s); got != natsURL {
		t.Errorf("info nats_url = %q; want the external %q", got, natsURL)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to %s: %v", natsURL, err)
	}
	defer nc.Close()
	checkHistoryStream(t, nc)
	js, _ := jetstream.New(nc)
	st, err := js.Stream(context.Background(), api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxMsgsPerSubject; got != 1000 {
		t.Errorf("history stream MaxMsgsPerSubject = %d; want 1000 from --history-max-msgs-per-room", got)
	}
}

func TestRunExternalNATSWithoutJetStream(t *testing.T) {
	t.Parallel()
	natsURL := startNATSProcess(t, false)
	dir := t.TempDir()
	args := []string{"--db", filepath.Join(dir, "u.db"), "--store-dir", filepath.Join(dir, "b"), "--http-port", "0", "--nats-url", natsURL}
	err := run(context.Background(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("run against a NATS without JetStream = %v; want an error saying JetStream is needed", err)
	}
}

func TestRunExternalNATSUnreachable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	url := fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	args := []string{"--db", filepath.Join(dir, "u.db"), "--store-dir", filepath.Join(dir, "b"), "--http-port", "0", "--nats-url", url}
	err := run(context.Background(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "check --nats-url") {
		t.Errorf("run with an unreachable --nats-url = %v; want an error saying to check --nats-url", err)
	}
}

func TestUserChangesReachRunningServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	s := startServer(t, dir, "--bus-auth", "enforce")
	alice := testbus.NewIdentity(t, "alice")

	if status := getMe(t, s.URL, alice); status != http.StatusUnauthorized {
		t.Errorf("GET /v1/me before seed = %d; want 401", status)
	}
	runCLI(t, 0, "user", "seed", "--db", db, alice.Public().Token())
	if status := getMe(t, s.URL, alice); status != http.StatusOK {
		t.Errorf("GET /v1/me after seed = %d; want 200", status)
	}
	runCLI(t, 0, "user", "revoke", "--db", db, "alice")
	if status := getMe(t, s.URL, alice); status != http.StatusForbidden {
		t.Errorf("GET /v1/me after revoke = %d; want 403", status)
	}
}

func TestRestartKeepsUsers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	alice := testbus.NewIdentity(t, "alice")

	s := startServer(t, dir)
	runCLI(t, 0, "user", "seed", "--db", db, "--admin", alice.Public().Token())
	if status := getMe(t, s.URL, alice); status != http.StatusOK {
		t.Fatalf("GET /v1/me = %d; want 200", status)
	}
	s.Stop(t)

	s = startServer(t, dir)
	if status := getMe(t, s.URL, alice); status != http.StatusOK {
		t.Errorf("GET /v1/me after restart = %d; want 200", status)
	}
}
