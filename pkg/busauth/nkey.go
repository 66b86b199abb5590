// Package busauth authenticates connections to the unibus NATS server and
// loads the TLS material of its listeners.
//
// NkeyAuthenticator plugs into nats-server as a custom client authenticator:
// a client proves possession of the private key of its user nkey by signing
// the nonce the server sends in INFO, and the control plane decides whether
// that key is currently a member. It also places each client in its NATS
// account (see [NkeyAuthenticator.BindAccounts]): membershipd's control key
// in the control account, the operator's system key in the system account
// ([NkeyAuthenticator.BindSystemAccount]), everyone else in the bus
// account.
// ServerTLSConfig and RouteTLSConfig load the certificates for the client
// listener and for mutually authenticated cluster routes.
//
// This package imports nats-server; client code should not depend on it.
package busauth

import (
	"context"
	"encoding/base64"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// NkeyAuthenticator is a server.Authentication that admits clients holding
// an authorized user nkey.
//
// A client must send its public user nkey ("U...") and a signature of the
// server nonce made with the matching private key. The server only sends a
// nonce to clients of a custom authenticator when Options.AlwaysEnableNonce
// is set (pkg/embeddednats does this); without a nonce every client is
// refused, because a signature over nothing could be replayed.
//
// # Accounts
//
// Once BindAccounts has given it the server's two accounts, the
// authenticator admits ControlKey, and only it, into the control account,
// with full rights there, and every other client into the bus account.
// Without BindAccounts every client stays in the server's global account
// and ControlKey is refused.
//
// Once BindSystemAccount has given it the server's system account, it
// admits SystemKey, and only it, there, with full rights: the operator's
// view of every server and the cluster's administration (peer removal).
// Without it SystemKey is refused.
//
// With Open set (--bus-auth off and soft), every client but ControlKey and
// SystemKey is admitted into the bus account with full rights and without
// any check, as if there were no authenticator: clients need send no nkey.
// ControlKey and SystemKey are checked in every mode, so that the control
// and system accounts are reachable only with their private keys.
//
// The exported fields must be set, and BindAccounts called, before the
// server starts; Check is called concurrently afterwards.
type NkeyAuthenticator struct {
	// Permissions, when non-nil, supplies the permissions of an admitted
	// user. It is called once per connection; a nil result, like a nil
	// Permissions hook, grants full access. The returned value must not be
	// changed afterwards. It is not called for ControlKey, nor under Open.
	Permissions func(userKey string) *server.Permissions
	// Logger receives refusals (info) and admissions (debug); nil discards.
	Logger *slog.Logger
	// ControlKey is the public user nkey ("U…") admitted into the control
	// account; empty admits nobody there.
	ControlKey string
	// SystemKey is the public user nkey ("U…") admitted into the system
	// account; empty admits nobody there.
	SystemKey string
	// Open admits every client but ControlKey and SystemKey into the bus
	// account without any check, with full rights.
	Open bool

	isAuthorized func(userKey string) bool
	// bus and control are the server's accounts, set by BindAccounts;
	// sys its system account, set by BindSystemAccount.
	bus, control, sys *server.Account
}

var _ server.Authentication = (*NkeyAuthenticator)(nil)

// NewNkeyAuthenticator returns an authenticator that admits a client when
// its nkey signature is valid and isAuthorized reports true for its public
// user key. A nil isAuthorized refuses everyone.
func NewNkeyAuthenticator(isAuthorized func(userKey string) bool) *NkeyAuthenticator {
	return &NkeyAuthenticator{isAuthorized: isAuthorized}
}

// BindAccounts gives the authenticator the server's bus and control
// accounts, the server's own (server.Server.LookupAccount), not those of
// its options: pkg/embeddednats calls it through ServerConfig.Accounts
// before the server accepts clients. A nil account is ignored.
func (a *NkeyAuthenticator) BindAccounts(bus, control *server.Account) {
	a.bus, a.control = bus, control
}

// BindSystemAccount gives the authenticator the server's system account
// (server.Server.LookupAccount of embeddednats.SystemAccount), before the
// server accepts clients: pkg/embeddednats calls it through
// ServerConfig.System.
func (a *NkeyAuthenticator) BindSystemAccount(sys *server.Account) {
	a.sys = sys
}

// Check implements server.Authentication. ControlKey, once its signature
// over the server nonce verifies, is registered in the control account with
// full rights, and SystemKey likewise in the system account. Under Open
// everyone else is registered in the bus account
// with full rights. Otherwise Check verifies the client's nkey signature,
// asks whether the key is authorized and, on success, registers the user in
// the bus account with its permissions.
func (a *NkeyAuthenticator) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return a.refuse(c, "", "not a client connection")
	}
	opts := c.GetOpts()
	var claimed string
	if opts != nil {
		claimed = opts.Nkey
	}
	if a.ControlKey != "" && claimed == a.ControlKey {
		return a.admitAccountKey(c, opts, a.control, "control")
	}
	if a.SystemKey != "" && claimed == a.SystemKey {
		return a.admitAccountKey(c, opts, a.sys, "system")
	}
	if a.Open {
		return a.admit(c, "", a.bus, nil)
	}
	if claimed == "" {
		return a.refuse(c, "", "no nkey presented")
	}
	if reason := verifyNkey(c, opts); reason != "" {
		if !nkeys.IsValidPublicUserKey(claimed) {
			claimed = ""
		}
		return a.refuse(c, claimed, reason)
	}
	if a.isAuthorized == nil || !a.isAuthorized(claimed) {
		return a.refuse(c, claimed, "nkey not authorized")
	}
	var perms *server.Permissions
	if a.Permissions != nil {
		perms = a.Permissions(claimed)
	}
	return a.admit(c, claimed, a.bus, perms)
}

// admitAccountKey admits the client presenting the key of the account
// acc (the control or the system key: what names it) into acc, with
// full rights, once its signature verifies.
func (a *NkeyAuthenticator) admitAccountKey(c server.ClientAuthentication, opts *server.ClientOpts, acc *server.Account, what string) bool {
	if reason := verifyNkey(c, opts); reason != "" {
		return a.refuse(c, opts.Nkey, reason)
	}
	if acc == nil {
		return a.refuse(c, opts.Nkey, what+" key, but no "+what+" account bound")
	}
	return a.admit(c, opts.Nkey, acc, nil)
}

// verifyNkey checks that the client's nkey is a user key and its
// signature covers the server nonce; it returns why not, or "".
func verifyNkey(c server.ClientAuthentication, opts *server.ClientOpts) string {
	userKey := opts.Nkey
	if !nkeys.IsValidPublicUserKey(userKey) {
		return "not a user nkey"
	}
	nonce := c.GetNonce()
	if len(nonce) == 0 {
		return "server sent no nonce; enable Options.AlwaysEnableNonce"
	}
	if opts.Sig == "" {
		return "signature missing"
	}
	// Same decoding as nats-server's own nkey check: raw URL base64, with
	// standard base64 accepted as a fallback.
	sig, err := base64.RawURLEncoding.DecodeString(opts.Sig)
	if err != nil {
		sig, err = base64.StdEncoding.DecodeString(opts.Sig)
		if err != nil {
			return "signature is not base64"
		}
	}
	pub, err := nkeys.FromPublicKey(userKey)
	if err != nil {
		return "nkey not valid"
	}
	if err := pub.Verify(nonce, sig); err != nil {
		return "signature not verified"
	}
	return ""
}

// admit registers c as userKey (empty: an unchecked client under Open) in
// acc, or in the global account when acc is nil, with perms.
func (a *NkeyAuthenticator) admit(c server.ClientAuthentication, userKey string, acc *server.Account, perms *server.Permissions) bool {
	c.RegisterUser(&server.User{Username: userKey, Permissions: perms, Account: acc})
	if l := a.logger(); l.Enabled(context.Background(), slog.LevelDebug) {
		account := "global"
		if acc != nil {
			account = acc.GetName()
		}
		l.Debug("bus client admitted", slog.String("user", userKey), slog.String("account", account), slog.String("remote", remote(c)))
	}
	return true
}

// refuse logs why c was refused and returns false.
func (a *NkeyAuthenticator) refuse(c server.ClientAuthentication, userKey, reason string) bool {
	attrs := []any{slog.String("reason", reason), slog.String("remote", remote(c))}
	if userKey != "" {
		attrs = append(attrs, slog.String("user", userKey))
	}
	a.logger().Info("bus client refused", attrs...)
	return false
}

func (a *NkeyAuthenticator) logger() *slog.Logger {
	if a.Logger == nil {
		return discardLogger
	}
	return a.Logger
}

// discardLogger stands in for a nil Logger without an allocation per
// connection.
var discardLogger = slog.New(slog.DiscardHandler)

// remote returns the client's address for logs.
func remote(c server.ClientAuthentication) string {
	if addr := c.RemoteAddress(); addr != nil {
		return addr.String()
	}
	return ""
}
