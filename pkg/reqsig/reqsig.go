// Package reqsig is the unibus request signature: how a client proves, on
// every control-plane call, which user key made the request and that the
// request was not altered.
//
// # Scheme
//
// A signed request carries one header:
//
//	Authorization: Unibus-Ed25519 user=U…,time=1732680000123,nonce=9f…(32 hex),body=e3b0…(64 hex),sig=…(base64url)
//
// sig is an Ed25519 signature by the user key over the bytes
//
//	"unibus-request-v1\n" METHOD "\n" REQUEST-URI "\n" TIME "\n" NONCE "\n" BODY "\n" USER
//
// where REQUEST-URI is the path and query exactly as sent on the request
// line, TIME is milliseconds since the Unix epoch in decimal, NONCE is 16
// random bytes in lowercase hex (so two equal requests differ), and BODY is
// the lowercase hex SHA-256 of the request body (of the empty string when
// there is none). docs/request-signature.md has the full rules and test
// vectors; testdata/vectors.json holds them in machine form.
//
// This package signs, parses and checks the signature itself. Whether a
// server enforces it (time window, replay cache, user status) is the
// server's policy, not this package's.
package reqsig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/enmanuel/unibus/internal/edsig"
	"github.com/enmanuel/unibus/pkg/identity"
)

// Scheme is the Authorization scheme name.
const Scheme = "Unibus-Ed25519"

// context separates request signatures from every other use of a user key.
const context = "unibus-request-v1\n"

// MaxHeaderLen bounds the header value that Parse accepts.
const MaxHeaderLen = 512

// Errors returned by this package; test with errors.Is.
var (
	ErrMissing   = errors.New("request is not signed")
	ErrMalformed = errors.New("malformed request signature")
	ErrBadSig    = errors.New("request signature does not verify")
)

// EmptyBody is the SHA-256 of an empty body.
var EmptyBody = sha256.Sum256(nil)

// Signature is a parsed request signature.
type Signature struct {
	User  string   // nkey user public key, U…
	Time  int64    // milliseconds since the Unix epoch
	Nonce [16]byte // random, makes every request unique
	Body  [32]byte // SHA-256 of the body
	Sig   []byte   // Ed25519 signature, 64 bytes
}

// Signer is what Sign needs of an identity.
type Signer interface {
	UserKey() string
	SigningKey() ed25519.PrivateKey
}

// Sign signs a request. requestURI is the path and raw query as they will be
// sent; body is the SHA-256 of the body.
func Sign(s Signer, method, requestURI string, body [32]byte, now time.Time, random io.Reader) (Signature, error) {
	sig := Signature{User: s.UserKey(), Time: now.UnixMilli(), Body: body}
	if _, err := io.ReadFull(randOrDefault(random), sig.Nonce[:]); err != nil {
		return Signature{}, fmt.Errorf("request nonce: %w", err)
	}
	sig.Sig = edsig.Sign(s.SigningKey(), sig.message(method, requestURI))
	return sig, nil
}

// message returns the signed bytes.
func (s *Signature) message(method, requestURI string) []byte {
	var b strings.Builder
	b.Grow(len(context) + len(method) + len(requestURI) + 160)
	b.WriteString(context)
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(requestURI)
	b.WriteByte('\n')
	b.WriteString(strconv.FormatInt(s.Time, 10))
	b.WriteByte('\n')
	b.WriteString(hex.EncodeToString(s.Nonce[:]))
	b.WriteByte('\n')
	b.WriteString(hex.EncodeToString(s.Body[:]))
	b.WriteByte('\n')
	b.WriteString(s.User)
	return []byte(b.String())
}

// Verify checks the signature against the method and request URI. The
// caller compares Body with the digest of the body it received.
func (s *Signature) Verify(method, requestURI string) error {
	pub, err := identity.ParseUserKey(s.User)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(s.Sig) != ed25519.SignatureSize || !edsig.Verify(pub, s.message(method, requestURI), s.Sig) {
		return ErrBadSig
	}
	return nil
}

// String returns the Authorization header value.
func (s Signature) String() string {
	return Scheme + " user=" + s.User +
		",time=" + strconv.FormatInt(s.Time, 10) +
		",nonce=" + hex.EncodeToString(s.Nonce[:]) +
		",body=" + hex.EncodeToString(s.Body[:]) +
		",sig=" + base64.RawURLEncoding.EncodeToString(s.Sig)
}

// TimeValue returns the signature time.
func (s Signature) TimeValue() time.Time { return time.UnixMilli(s.Time) }

// Parse reads an Authorization header value. It is strict: the fields come
// in the order String writes them, each once, with canonical encodings, so
// that a parsed signature written back is byte-identical.
func Parse(h string) (Signature, error) {
	if h == "" {
		return Signature{}, ErrMissing
	}
	if len(h) > MaxHeaderLen {
		return Signature{}, fmt.Errorf("%w: header longer than %d bytes", ErrMalformed, MaxHeaderLen)
	}
	rest, ok := strings.CutPrefix(h, Scheme+" ")
	if !ok {
		return Signature{}, fmt.Errorf("%w: want scheme %q", ErrMalformed, Scheme)
	}
	fields := strings.Split(rest, ",")
	names := [...]string{"user", "time", "nonce", "body", "sig"}
	if len(fields) != len(names) {
		return Signature{}, fmt.Errorf("%w: want fields user, time, nonce, body, sig", ErrMalformed)
	}
	var vals [len(names)]string
	for i, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != names[i] || v == "" {
			return Signature{}, fmt.Errorf("%w: field %d must be %s=…", ErrMalformed, i+1, names[i])
		}
		vals[i] = v
	}
	var s Signature
	if _, err := identity.ParseUserKey(vals[0]); err != nil {
		return Signature{}, fmt.Errorf("%w: user: %w", ErrMalformed, err)
	}
	s.User = vals[0]
	t, err := strconv.ParseInt(vals[1], 10, 64)
	if err != nil || t < 0 || strconv.FormatInt(t, 10) != vals[1] {
		return Signature{}, fmt.Errorf("%w: time must be milliseconds since the Unix epoch", ErrMalformed)
	}
	s.Time = t
	if err := decodeHex(s.Nonce[:], vals[2]); err != nil {
		return Signature{}, fmt.Errorf("%w: nonce must be 32 lowercase hex digits", ErrMalformed)
	}
	if err := decodeHex(s.Body[:], vals[3]); err != nil {
		return Signature{}, fmt.Errorf("%w: body must be 64 lowercase hex digits", ErrMalformed)
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(vals[4])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Signature{}, fmt.Errorf("%w: sig must be an unpadded base64url Ed25519 signature", ErrMalformed)
	}
	s.Sig = sig
	return s, nil
}

func decodeHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) || strings.ToLower(s) != s {
		return ErrMalformed
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}
