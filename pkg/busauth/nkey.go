// Package busauth authenticates connections to the unibus NATS server and
// loads the TLS material of its listeners.
//
// NkeyAuthenticator plugs into nats-server as a custom client authenticator:
// a client proves possession of the private key of its user nkey by signing
// the nonce the server sends in INFO, and the control plane decides whether
// that key is currently a member. ServerTLSConfig and RouteTLSConfig load the
// certificates for the client listener and for mutually authenticated
// cluster routes.
//
// This package imports nats-server; client code should not depend on it.
package busauth

import (
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
// The exported fields must be set before the server starts; Check is called
// concurrently afterwards.
type NkeyAuthenticator struct {
	// Permissions, when non-nil, supplies the permissions of an admitted
	// user. It is called once per connection; a nil result, like a nil
	// Permissions hook, grants full access. The returned value must not be
	// changed afterwards.
	Permissions func(userKey string) *server.Permissions
	// Logger receives refusals (info) and admissions (debug); nil discards.
	Logger *slog.Logger

	isAuthorized func(userKey string) bool
}

var _ server.Authentication = (*NkeyAuthenticator)(nil)

// NewNkeyAuthenticator returns an authenticator that admits a client when
// its nkey signature is valid and isAuthorized reports true for its public
// user key. A nil isAuthorized refuses everyone.
func NewNkeyAuthenticator(isAuthorized func(userKey string) bool) *NkeyAuthenticator {
	return &NkeyAuthenticator{isAuthorized: isAuthorized}
}

// Check implements server.Authentication. It verifies the client's nkey
// signature over the server nonce, asks whether the key is authorized and,
// on success, registers the user with its permissions.
func (a *NkeyAuthenticator) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return a.refuse(c, "", "not a client connection")
	}
	opts := c.GetOpts()
	if opts == nil || opts.Nkey == "" {
		return a.refuse(c, "", "no nkey presented")
	}
	userKey := opts.Nkey
	if !nkeys.IsValidPublicUserKey(userKey) {
		return a.refuse(c, "", "not a user nkey")
	}
	nonce := c.GetNonce()
	if len(nonce) == 0 {
		return a.refuse(c, userKey, "server sent no nonce; enable Options.AlwaysEnableNonce")
	}
	if opts.Sig == "" {
		return a.refuse(c, userKey, "signature missing")
	}
	// Same decoding as nats-server's own nkey check: raw URL base64, with
	// standard base64 accepted as a fallback.
	sig, err := base64.RawURLEncoding.DecodeString(opts.Sig)
	if err != nil {
		sig, err = base64.StdEncoding.DecodeString(opts.Sig)
		if err != nil {
			return a.refuse(c, userKey, "signature is not base64")
		}
	}
	pub, err := nkeys.FromPublicKey(userKey)
	if err != nil {
		return a.refuse(c, userKey, "nkey not valid")
	}
	if err := pub.Verify(nonce, sig); err != nil {
		return a.refuse(c, userKey, "signature not verified")
	}
	if a.isAuthorized == nil || !a.isAuthorized(userKey) {
		return a.refuse(c, userKey, "nkey not authorized")
	}
	var perms *server.Permissions
	if a.Permissions != nil {
		perms = a.Permissions(userKey)
	}
	c.RegisterUser(&server.User{Username: userKey, Permissions: perms})
	a.logger().Debug("bus client admitted", slog.String("user", userKey), slog.String("remote", remote(c)))
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
