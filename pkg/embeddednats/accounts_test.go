package embeddednats_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// accountAuth admits everyone, the user "control" into the control
// account, "operator" into the system account and anybody else into the
// bus account.
type accountAuth struct{ bus, control, sys *server.Account }

func (a *accountAuth) bind(bus, control *server.Account) { a.bus, a.control = bus, control }
func (a *accountAuth) bindSystem(sys *server.Account)    { a.sys = sys }

func (a *accountAuth) Check(c server.ClientAuthentication) bool {
	acc := a.bus
	switch c.GetOpts().Username {
	case "control":
		acc = a.control
	case "operator":
		acc = a.sys
	}
	c.RegisterUser(&server.User{Username: c.GetOpts().Username, Account: acc})
	return true
}

// withAccounts returns cfg with the two accounts and an accountAuth.
func withAccounts(cfg embeddednats.ServerConfig) embeddednats.ServerConfig {
	auth := &accountAuth{}
	cfg.Auth, cfg.Accounts, cfg.System = auth, auth.bind, auth.bindSystem
	return cfg
}

// pingServers sends $SYS.REQ.SERVER.PING through nc and returns the names
// of the servers that answer within a second.
func pingServers(t *testing.T, nc *nats.Conn) []string {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING", inbox, nil); err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		m, err := sub.NextMsg(time.Second)
		if err != nil {
			return names
		}
		var resp struct {
			Server server.ServerInfo `json:"server"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			t.Fatalf("ping answer %q: %v", m.Data, err)
		}
		names = append(names, resp.Server.Name)
	}
}

// TestSystemAccount: the system account exists before the server starts
// and is the server's own; a client placed there reads the servers, and
// one of the bus account cannot.
func TestSystemAccount(t *testing.T) {
	var got *server.Account
	cfg := withAccounts(embeddednats.ServerConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, ServerName: "solo"})
	bind := cfg.System
	cfg.System = func(sys *server.Account) { got = sys; bind(sys) }
	ns := start(t, cfg)
	if got == nil || got != ns.SystemAccount() || got.GetName() != embeddednats.SystemAccount {
		t.Fatalf("System called with %v; want the server's system account %s", got, ns.SystemAccount())
	}
	if got.JetStreamEnabled() {
		t.Error("the system account has JetStream; want none")
	}
	url := embeddednats.ClientURL(ns)
	if names := pingServers(t, connect(t, url, nats.UserInfo("operator", ""))); len(names) != 1 || names[0] != "solo" {
		t.Errorf("operator's server ping answered by %q; want [solo]", names)
	}
	if names := pingServers(t, connect(t, url, nats.UserInfo("member", ""))); len(names) != 0 {
		t.Errorf("a bus client's server ping answered by %q; want nobody", names)
	}
}

func TestSystemNeedsAccounts(t *testing.T) {
	_, err := embeddednats.StartServer(embeddednats.ServerConfig{StoreDir: t.TempDir(), Port: -1, System: func(*server.Account) {}})
	if err == nil || !strings.Contains(err.Error(), "Accounts") {
		t.Fatalf("a system callback without accounts: %v; want an error naming Accounts", err)
	}
}

func jetStreamOf(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestAccountsAreApart(t *testing.T) {
	ns := start(t, withAccounts(embeddednats.ServerConfig{StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1}))
	url := embeddednats.ClientURL(ns)
	for name, acc := range map[string]string{"bus": embeddednats.BusAccount, "control": embeddednats.ControlAccount} {
		a, err := ns.LookupAccount(acc)
		if err != nil || !a.JetStreamEnabled() {
			t.Fatalf("%s account %s: %v, JetStream %v; want it with JetStream", name, acc, err, err == nil && a.JetStreamEnabled())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	control := jetStreamOf(t, connect(t, url, nats.UserInfo("control", "")))
	kv, err := control.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cfg"})
	if err != nil {
		t.Fatalf("KV bucket in the control account: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("kept")); err != nil {
		t.Fatal(err)
	}

	busNC := connect(t, url, nats.UserInfo("member", ""))
	bus := jetStreamOf(t, busNC)
	if _, err := bus.CreateStream(ctx, jetstream.StreamConfig{Name: "H", Subjects: []string{"h.>"}}); err != nil {
		t.Fatalf("stream in the bus account: %v", err)
	}
	// The bus account does not see the bucket, and a stream's ack sent
	// to the bucket's subject (a reply subject the publisher chose), like
	// a plain publish there, lands in the bus account, not in the bucket.
	if _, err := bus.KeyValue(ctx, "cfg"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("bucket seen from the bus account: %v; want not found", err)
	}
	if err := busNC.PublishMsg(&nats.Msg{Subject: "h.x", Reply: "$KV.cfg.k", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := busNC.Publish("$KV.cfg.k", []byte("overwritten")); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, "h.x", []byte("after")); err != nil {
		t.Fatal(err)
	}
	ai, err := bus.AccountInfo(ctx)
	if err != nil || ai.Streams != 1 {
		t.Fatalf("bus account info = %+v, %v; want its one stream", ai, err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "kept" || e.Revision() != 1 {
		t.Fatalf("control bucket's key after the bus's writes = %v, %v; want %q at revision 1", e, err, "kept")
	}
}

func TestAccountsNeedAuth(t *testing.T) {
	_, err := embeddednats.StartServer(embeddednats.ServerConfig{StoreDir: t.TempDir(), Port: -1, Accounts: func(_, _ *server.Account) {}})
	if err == nil || !strings.Contains(err.Error(), "Auth") {
		t.Fatalf("accounts without Auth: %v; want an error naming Auth", err)
	}
}

// TestClusterAccounts: on a three-node cluster, each account has its own
// replicated JetStream: an R3 KV bucket in the control account and an R3
// stream in the bus account, written through one node and read through
// another.
func TestClusterAccounts(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test skipped in short mode")
	}
	const n = 3
	servers := testnats.StartCluster(t, n, func(int) embeddednats.ServerConfig {
		return withAccounts(embeddednats.ServerConfig{Cluster: &embeddednats.ClusterConfig{Name: "unibus-accounts"}})
	})
	first, last := embeddednats.ClientURL(servers[0]), embeddednats.ClientURL(servers[n-1])
	control := jetStreamOf(t, connect(t, first, nats.UserInfo("control", "")))
	bus := jetStreamOf(t, connect(t, first, nats.UserInfo("member", "")))

	var kv jetstream.KeyValue
	waitFor(t, 20*time.Second, "R3 bucket in the control account", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		kv, err = control.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cfg", Replicas: 3})
		return err
	})
	waitFor(t, 20*time.Second, "R3 stream in the bus account", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := bus.CreateStream(ctx, jetstream.StreamConfig{Name: "H", Subjects: []string{"h.>"}, Replicas: 3})
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, "k", []byte("replicated")); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, "h.x", []byte("history")); err != nil {
		t.Fatal(err)
	}

	// Through the last node: each account sees its own data only.
	control3 := jetStreamOf(t, connect(t, last, nats.UserInfo("control", "")))
	bus3 := jetStreamOf(t, connect(t, last, nats.UserInfo("member", "")))
	kv3, err := control3.KeyValue(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv3.Get(ctx, "k"); err != nil || string(e.Value()) != "replicated" {
		t.Fatalf("control key through n%d = %v, %v; want %q", n, e, err, "replicated")
	}
	st, err := kv3.Status(ctx)
	if err != nil || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
		t.Fatalf("bucket status through n%d: %v; want 3 replicas", n, err)
	}
	if _, err := bus3.KeyValue(ctx, "cfg"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("bucket seen from the bus account through n%d: %v; want not found", n, err)
	}
	s3, err := bus3.Stream(ctx, "H")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s3.GetLastMsgForSubject(ctx, "h.x"); err != nil || string(m.Data) != "history" {
		t.Fatalf("bus stream through n%d: %v; want the message", n, err)
	}
	if _, err := control3.Stream(ctx, "H"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("bus stream seen from the control account: %v; want not found", err)
	}
	// The system account spans the cluster: an operator on one node
	// reads every node.
	if names := pingServers(t, connect(t, last, nats.UserInfo("operator", ""))); len(names) != n {
		t.Errorf("operator's server ping through n%d answered by %q; want all %d nodes", n, names, n)
	}
}
