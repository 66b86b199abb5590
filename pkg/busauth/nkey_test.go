package busauth_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testcerts"
	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// members is a concurrency-safe set of authorized user keys.
type members struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (m *members) set(key string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[key] = ok
}

func (m *members) IsAuthorized(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keys[key]
}

type user struct {
	kp  nkeys.KeyPair
	pub string
}

func newUser(t *testing.T) user {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return user{kp: kp, pub: pub}
}

func (u user) option() nats.Option {
	return nats.Nkey(u.pub, u.kp.Sign)
}

func startAuthServer(t *testing.T, auth server.Authentication) string {
	t.Helper()
	return embeddednats.ClientURL(startAuthNATS(t, auth))
}

func startAuthNATS(t *testing.T, auth server.Authentication) *server.Server {
	t.Helper()
	return testnats.Start(t, embeddednats.ServerConfig{Auth: auth})
}

func dial(url string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.NoReconnect(), nats.Timeout(3 * time.Second)}, opts...)
	return nats.Connect(url, opts...)
}

func mustRefuse(t *testing.T, what, url string, opts ...nats.Option) {
	t.Helper()
	nc, err := dial(url, opts...)
	if err == nil {
		nc.Close()
		t.Fatalf("%s: connected, want refusal", what)
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("%s: error %v, want an authorization violation", what, err)
	}
}

func TestNkeyAuthenticator(t *testing.T) {
	m := &members{keys: map[string]bool{}}
	alice, mallory := newUser(t), newUser(t)
	m.set(alice.pub, true)
	url := startAuthServer(t, busauth.NewNkeyAuthenticator(m.IsAuthorized))

	nc, err := dial(url, alice.option())
	if err != nil {
		t.Fatalf("authorized user refused: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("t.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("t.x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(3 * time.Second); err != nil {
		t.Fatalf("full access expected: %v", err)
	}

	mustRefuse(t, "unknown nkey", url, mallory.option())
	mustRefuse(t, "no credentials", url)
	mustRefuse(t, "user/password", url, nats.UserInfo("alice", "pw"))
	// Claiming alice's key but signing with another private key.
	mustRefuse(t, "wrong signature", url, nats.Nkey(alice.pub, mallory.kp.Sign))
	// A signature that does not cover this connection's nonce.
	replay, err := alice.kp.Sign([]byte("an old nonce"))
	if err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, "replayed signature", url, nats.Nkey(alice.pub, func([]byte) ([]byte, error) { return replay, nil }))
}

func TestNkeyRevokedUserCannotReconnect(t *testing.T) {
	m := &members{keys: map[string]bool{}}
	bob := newUser(t)
	m.set(bob.pub, true)
	ns := startAuthNATS(t, busauth.NewNkeyAuthenticator(m.IsAuthorized))
	url := embeddednats.ClientURL(ns)

	closed := make(chan struct{})
	nc, err := nats.Connect(url, bob.option(),
		nats.MaxReconnects(5),
		nats.ReconnectWait(20*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatalf("authorized user refused: %v", err)
	}
	defer nc.Close()
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}

	// Revoke, then drop the live connection: the automatic reconnect must
	// be refused.
	m.set(bob.pub, false)
	if err := ns.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("revoked client still not closed; status %v", nc.Status())
	}
	if err := nc.LastError(); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("last error %v, want an authorization violation", err)
	}
	mustRefuse(t, "revoked user", url, bob.option())

	m.set(bob.pub, true)
	nc2, err := dial(url, bob.option())
	if err != nil {
		t.Fatalf("re-authorized user refused: %v", err)
	}
	nc2.Close()
}

func TestNkeyPermissionsHook(t *testing.T) {
	m := &members{keys: map[string]bool{}}
	carol := newUser(t)
	m.set(carol.pub, true)
	auth := busauth.NewNkeyAuthenticator(m.IsAuthorized)
	var gotKey string
	var mu sync.Mutex
	auth.Permissions = func(userKey string) *server.Permissions {
		mu.Lock()
		gotKey = userKey
		mu.Unlock()
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"allowed.>"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"allowed.>", "_INBOX.>"}},
		}
	}
	url := startAuthServer(t, auth)

	errs := make(chan error, 4)
	nc, err := dial(url, carol.option(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		errs <- err
	}))
	if err != nil {
		t.Fatalf("authorized user refused: %v", err)
	}
	defer nc.Close()
	mu.Lock()
	if gotKey != carol.pub {
		t.Errorf("permissions hook got %q, want %q", gotKey, carol.pub)
	}
	mu.Unlock()

	sub, err := nc.SubscribeSync("allowed.x")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("allowed.x", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(3 * time.Second); err != nil {
		t.Fatalf("allowed subject: %v", err)
	}
	if err := nc.Publish("denied.x", []byte("no")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("error %v, want a permissions violation", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("publish to a denied subject was not reported")
	}
}

// Without Options.AlwaysEnableNonce nats-server sends clients of a custom
// authenticator no nonce. nats.go then refuses nkey auth by itself, but a
// client that signs the empty nonce would present a replayable signature,
// so the authenticator must refuse it.
func TestNkeyRefusedWithoutNonce(t *testing.T) {
	m := &members{keys: map[string]bool{}}
	dave := newUser(t)
	m.set(dave.pub, true)
	ns, err := server.NewServer(&server.Options{
		Host:                       "127.0.0.1",
		Port:                       -1,
		NoLog:                      true,
		NoSigs:                     true,
		CustomClientAuthentication: busauth.NewNkeyAuthenticator(m.IsAuthorized),
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	if ns.NonceRequired() {
		t.Fatal("nats-server now sends a nonce to custom authenticators by itself; revisit this test")
	}
	if _, err := dial(ns.ClientURL(), dave.option()); !errors.Is(err, nats.ErrNkeysNotSupported) {
		t.Fatalf("nats.go error %v, want ErrNkeysNotSupported", err)
	}

	conn, err := net.DialTimeout("tcp", ns.Addr().String(), 3*time.Second)
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
	if strings.Contains(info, `"nonce"`) {
		t.Fatalf("unexpected nonce in INFO: %s", info)
	}
	sig, err := dave.kp.Sign(nil)
	if err != nil {
		t.Fatal(err)
	}
	connect, err := json.Marshal(map[string]any{
		"verbose": false, "pedantic": false, "protocol": 1,
		"nkey": dave.pub, "sig": base64.RawURLEncoding.EncodeToString(sig),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if !strings.Contains(strings.ToLower(line), "authorization violation") {
		t.Fatalf("reply %q, want an authorization violation", strings.TrimSpace(line))
	}
}

// membershipd dials its own embedded server in-process; with client TLS and
// nkey auth both on, that connection must still authenticate (and skips TLS,
// which nats-server does not require in-process). A refused in-process
// connection is not exercised here: nats-server only gives up on the pipe
// after its 10 s write deadline, and nats.go then reports a closed pipe
// rather than an authorization error.
func TestNkeyInProcessWithTLS(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	certFile, keyFile := ca.IssueFiles(t, "server")
	tlsCfg, err := busauth.ServerTLSConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	m := &members{keys: map[string]bool{}}
	svc := newUser(t)
	m.set(svc.pub, true)
	ns := testnats.Start(t, embeddednats.ServerConfig{Auth: busauth.NewNkeyAuthenticator(m.IsAuthorized), TLS: tlsCfg})

	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.NoReconnect(), svc.option())
	if err != nil {
		t.Fatalf("in-process service connection refused: %v", err)
	}
	nc.Close()
	// Over the network the same key needs the CA.
	if _, err := dial(embeddednats.ClientURL(ns), svc.option(), nats.RootCAs(ca.CAFile)); err != nil {
		t.Fatalf("TLS connection refused: %v", err)
	}
}
