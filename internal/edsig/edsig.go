// Package edsig signs and verifies Ed25519 exactly as crypto/ed25519 does
// (the same signature bytes; the same signatures accepted, cofactorless
// equation and canonical encodings included), in about half the time, with
// curve25519-voi. Membership statements, identity bindings, registrations
// and request signatures go through it; message envelopes have their own
// rule (pkg/e2ee, ZIP-215) so that receivers can check them in batches.
package edsig

import (
	"crypto/ed25519"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// stdLib makes voi accept exactly what crypto/ed25519 accepts.
var stdLib = &voi.Options{Verify: voi.VerifyOptionsStdLib}

// Sign returns the Ed25519 signature of msg by priv: the bytes
// crypto/ed25519.Sign returns (Ed25519 is deterministic).
func Sign(priv ed25519.PrivateKey, msg []byte) []byte {
	if len(priv) != ed25519.PrivateKeySize {
		panic("edsig: bad private key length")
	}
	return voi.Sign(voi.PrivateKey(priv), msg)
}

// Verify reports whether sig is a valid signature of msg by pub, as
// crypto/ed25519.Verify does.
func Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return voi.VerifyWithOptions(voi.PublicKey(pub), msg, sig, stdLib)
}
