package busauth_test

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// startAccountsNATS starts a server with the bus and control accounts,
// auth placing clients in them.
func startAccountsNATS(t *testing.T, auth *busauth.NkeyAuthenticator) *server.Server {
	t.Helper()
	return testnats.Start(t, embeddednats.ServerConfig{Auth: auth, Accounts: auth.BindAccounts, System: auth.BindSystemAccount})
}

// accountOf returns the account of the connection named name on ns.
func accountOf(t *testing.T, ns *server.Server, name string) string {
	t.Helper()
	cz, err := ns.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range cz.Conns {
		if ci.Name == name {
			return ci.Account
		}
	}
	t.Fatalf("no connection named %q", name)
	return ""
}

func TestNkeyAuthenticatorAccounts(t *testing.T) {
	m := &members{keys: map[string]bool{}}
	alice, ctl, sys, mallory := newUser(t), newUser(t), newUser(t), newUser(t)
	m.set(alice.pub, true)
	// A signature by any other key does not make its bearer the control
	// plane or the operator.
	forged := nats.Nkey(ctl.pub, mallory.kp.Sign)
	forgedSys := nats.Nkey(sys.pub, mallory.kp.Sign)

	for _, open := range []bool{false, true} {
		name := "enforce"
		if open {
			name = "open"
		}
		t.Run(name, func(t *testing.T) {
			auth := busauth.NewNkeyAuthenticator(m.IsAuthorized)
			auth.ControlKey, auth.SystemKey, auth.Open = ctl.pub, sys.pub, open
			ns := startAccountsNATS(t, auth)
			url := embeddednats.ClientURL(ns)

			tests := []struct {
				conn    string
				opts    []nats.Option
				account string // empty: refused
			}{
				{"member", []nats.Option{alice.option()}, embeddednats.BusAccount},
				{"control key", []nats.Option{ctl.option()}, embeddednats.ControlAccount},
				{"control key, forged signature", []nats.Option{forged}, ""},
				{"system key", []nats.Option{sys.option()}, embeddednats.SystemAccount},
				{"system key, forged signature", []nats.Option{forgedSys}, ""},
				{"anonymous", nil, map[bool]string{true: embeddednats.BusAccount}[open]},
				{"unknown nkey", []nats.Option{mallory.option()}, map[bool]string{true: embeddednats.BusAccount}[open]},
			}
			for _, tt := range tests {
				opts := append([]nats.Option{nats.Name(tt.conn)}, tt.opts...)
				if tt.account == "" {
					mustRefuse(t, tt.conn, url, opts...)
					continue
				}
				nc, err := dial(url, opts...)
				if err != nil {
					t.Fatalf("%s refused: %v; want it in %s", tt.conn, err, tt.account)
				}
				defer nc.Close()
				nc.Flush()
				if got := accountOf(t, ns, tt.conn); got != tt.account {
					t.Errorf("%s is in account %q; want %q", tt.conn, got, tt.account)
				}
			}
		})
	}
}

// Without BindAccounts the control key has no account to go to, nor the
// system key without BindSystemAccount: refused, never let into the
// global account with full rights.
func TestNkeyControlKeyRefusedWithoutAccounts(t *testing.T) {
	ctl, sys := newUser(t), newUser(t)
	auth := busauth.NewNkeyAuthenticator(nil)
	auth.ControlKey, auth.SystemKey, auth.Open = ctl.pub, sys.pub, true
	url := startAuthServer(t, auth)
	mustRefuse(t, "control key without accounts", url, ctl.option())
	mustRefuse(t, "system key without a system account", url, sys.option())
	nc, err := dial(url)
	if err != nil {
		t.Fatalf("anonymous client under Open refused: %v", err)
	}
	nc.Close()
}
