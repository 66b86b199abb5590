// Package identity holds a unibus user's keys and the forms they travel in.
//
// # Keys
//
// A user is identified by a NATS user nkey: an Ed25519 key whose public half
// is written `U…` and whose seed is written `SU…`. Room keys are sealed to a
// second key, an nkeys curve key (X25519, public `X…`, seed `SX…`). The curve
// key is bound to the user key and the name by a signature made with the user
// key (see [Binding]), so nobody can swap either one unseen.
//
// # Forms
//
//   - [Identity] is the private side, kept in an identity file (JSON with
//     `name`, `user_seed`, `xkey_seed`, mode 0600) that standard NATS tools can
//     read the same keys from. See [Load] and [Identity.Save].
//   - [Public] is what others may know: name, user key, xkey and the binding
//     signature. [Public.Token] turns it into one copyable string, the public
//     identity token, and [ParseToken] reads it back after checking the
//     binding.
//
// # Names
//
// [CheckName] is the rule of user names, and [UnsafeRune] the characters
// no name may hold, user or room (pkg/api's CheckRoomName uses it): no
// control, bidi or invisible character. [FoldName] is the form in which
// user names are unique ("dave" and "Dave" are one name), and [Printable]
// how a name received from others is shown on a terminal.
//
// All types are immutable after creation and safe for concurrent use.
package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/curve25519"

	"github.com/enmanuel/unibus/internal/edsig"
)

// MaxNameLen is the longest user name accepted.
const MaxNameLen = 64

// bindingContext separates binding signatures from every other signature
// made with a user key (envelopes, requests, NATS nonces).
const bindingContext = "unibus-identity-v1\x00"

// tokenPrefix starts every public identity token; the digit is its version.
const tokenPrefix = "unibus1:"

// Errors returned by this package; test with errors.Is.
var (
	ErrInvalidName    = errors.New("invalid name: " + nameRule)
	ErrInvalidKey     = errors.New("invalid key")
	ErrInvalidToken   = errors.New("invalid identity token")
	ErrBadBinding     = errors.New("identity binding signature does not verify")
	ErrIdentityExists = errors.New("identity file already exists")
)

// ValidName reports whether name is acceptable as a user name (see
// [CheckName], which says why not).
func ValidName(name string) bool { return CheckName(name) == nil }

// Public is a user's public identity: what an admin registers and what
// others seal room keys to.
type Public struct {
	Name    string `json:"name"`
	User    string `json:"user"`    // nkey user public key, U…
	XKey    string `json:"xkey"`    // nkey curve public key, X…
	Binding []byte `json:"binding"` // Ed25519 signature by User over name and xkey
}

// Identity is a user's private key material.
type Identity struct {
	public   Public
	userSeed string
	xkeySeed string
	signKey  ed25519.PrivateKey
	xpriv    [32]byte
	xpub     [32]byte
}

// Generate makes a new identity named name, reading randomness from rand
// (crypto/rand.Reader when nil).
func Generate(name string, rand io.Reader) (*Identity, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	_, userPriv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generate user key: %w", err)
	}
	var xseed [32]byte
	if rand == nil {
		_, xp, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, fmt.Errorf("generate xkey: %w", err)
		}
		copy(xseed[:], xp.Seed())
	} else if _, err := io.ReadFull(rand, xseed[:]); err != nil {
		return nil, fmt.Errorf("generate xkey: %w", err)
	}
	us, err := nkeys.EncodeSeed(nkeys.PrefixByteUser, userPriv.Seed())
	if err != nil {
		return nil, fmt.Errorf("encode user seed: %w", err)
	}
	xs, err := nkeys.EncodeSeed(nkeys.PrefixByteCurve, xseed[:])
	if err != nil {
		return nil, fmt.Errorf("encode xkey seed: %w", err)
	}
	return FromSeeds(name, string(us), string(xs))
}

// FromSeeds rebuilds an identity from its name and nkey seeds.
func FromSeeds(name, userSeed, xkeySeed string) (*Identity, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	p, raw, err := nkeys.DecodeSeed([]byte(userSeed))
	if err != nil || p != nkeys.PrefixByteUser {
		return nil, fmt.Errorf("%w: user_seed must be an nkey user seed (SU…)", ErrInvalidKey)
	}
	id := &Identity{userSeed: userSeed, xkeySeed: xkeySeed}
	id.signKey = ed25519.NewKeyFromSeed(raw)
	p, raw, err = nkeys.DecodeSeed([]byte(xkeySeed))
	if err != nil || p != nkeys.PrefixByteCurve {
		return nil, fmt.Errorf("%w: xkey_seed must be an nkey curve seed (SX…)", ErrInvalidKey)
	}
	copy(id.xpriv[:], raw)
	pub, err := curve25519.X25519(id.xpriv[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("%w: xkey: %v", ErrInvalidKey, err)
	}
	copy(id.xpub[:], pub)
	userPub, _ := nkeys.Encode(nkeys.PrefixByteUser, id.signKey.Public().(ed25519.PublicKey))
	xPub, _ := nkeys.Encode(nkeys.PrefixByteCurve, id.xpub[:])
	id.public = Public{Name: name, User: string(userPub), XKey: string(xPub)}
	id.public.Binding = edsig.Sign(id.signKey, bindingMessage(name, id.xpub))
	return id, nil
}

// Public returns the identity's public half.
func (id *Identity) Public() Public { return id.public }

// Name returns the user name.
func (id *Identity) Name() string { return id.public.Name }

// UserKey returns the nkey user public key (U…).
func (id *Identity) UserKey() string { return id.public.User }

// SigningKey returns the Ed25519 private key behind the user key. Callers
// sign with it directly (crypto/ed25519), which is much cheaper than going
// through an nkeys.KeyPair that decodes its seed on every call.
func (id *Identity) SigningKey() ed25519.PrivateKey { return id.signKey }

// XPrivate returns the raw X25519 private key.
func (id *Identity) XPrivate() [32]byte { return id.xpriv }

// XPublic returns the raw X25519 public key.
func (id *Identity) XPublic() [32]byte { return id.xpub }

// Sign signs msg with the user key. Callers add their own context prefix.
func (id *Identity) Sign(msg []byte) []byte { return edsig.Sign(id.signKey, msg) }

// NkeySign signs a NATS server nonce, for nats.Nkey connection options.
func (id *Identity) NkeySign(nonce []byte) ([]byte, error) {
	return edsig.Sign(id.signKey, nonce), nil
}

// UserSeed returns the encoded user seed (SU…). Handle with care: never log it.
func (id *Identity) UserSeed() string { return id.userSeed }

func bindingMessage(name string, xpub [32]byte) []byte {
	b := make([]byte, 0, len(bindingContext)+len(name)+1+32)
	b = append(b, bindingContext...)
	b = append(b, name...)
	b = append(b, 0)
	return append(b, xpub[:]...)
}

// ParseUserKey decodes an nkey user public key (U…) to its Ed25519 form.
func ParseUserKey(s string) (ed25519.PublicKey, error) {
	if len(s) != 56 || s[0] != 'U' {
		return nil, fmt.Errorf("%w: want an nkey user public key (U…, 56 characters)", ErrInvalidKey)
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(s))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %q is not an nkey user public key", ErrInvalidKey, s)
	}
	return ed25519.PublicKey(raw), nil
}

// UserKeyString encodes a raw Ed25519 public key as an nkey user key (U…).
func UserKeyString(pub []byte) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", ErrInvalidKey
	}
	s, err := nkeys.Encode(nkeys.PrefixByteUser, pub)
	return string(s), err
}

// ParseXKey decodes an nkey curve public key (X…) to its raw form.
func ParseXKey(s string) ([32]byte, error) {
	var out [32]byte
	if len(s) != 56 || s[0] != 'X' {
		return out, fmt.Errorf("%w: want an nkey curve public key (X…, 56 characters)", ErrInvalidKey)
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(s))
	if err != nil || len(raw) != 32 {
		return out, fmt.Errorf("%w: %q is not an nkey curve public key", ErrInvalidKey, s)
	}
	copy(out[:], raw)
	return out, nil
}

// Verify checks the name, both keys and the binding signature.
func (p Public) Verify() error {
	if err := CheckName(p.Name); err != nil {
		return err
	}
	pub, err := ParseUserKey(p.User)
	if err != nil {
		return err
	}
	x, err := ParseXKey(p.XKey)
	if err != nil {
		return err
	}
	if len(p.Binding) != ed25519.SignatureSize || !edsig.Verify(pub, bindingMessage(p.Name, x), p.Binding) {
		return ErrBadBinding
	}
	return nil
}

// Token returns the public identity token:
//
//	unibus1:NAME:USERKEY:XKEY:BINDING
//
// with BINDING in unpadded base64url. It is what a user hands to an admin.
func (p Public) Token() string {
	return tokenPrefix + p.Name + ":" + p.User + ":" + p.XKey + ":" + base64.RawURLEncoding.EncodeToString(p.Binding)
}

// ParseToken reads a public identity token and verifies its binding.
// Surrounding white space is ignored; anything else out of place is an
// error, which says where tokens come from.
func ParseToken(s string) (Public, error) {
	p, err := parseToken(s)
	if err != nil {
		return Public{}, fmt.Errorf("%w: pass the whole token that `unibus id show --public` prints", err)
	}
	return p, nil
}

func parseToken(s string) (Public, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Public{}, fmt.Errorf("%w: it must start with %q", ErrInvalidToken, tokenPrefix)
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 4 {
		return Public{}, fmt.Errorf("%w: want 5 fields separated by ':'", ErrInvalidToken)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Public{}, fmt.Errorf("%w: binding is not a base64url Ed25519 signature", ErrInvalidToken)
	}
	p := Public{Name: parts[0], User: parts[1], XKey: parts[2], Binding: sig}
	if err := p.Verify(); err != nil {
		return Public{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return p, nil
}

// Fingerprint is a short, stable digest of the user key and xkey that two
// people can compare out of band: eight groups of four base32 characters.
func (p Public) Fingerprint() string {
	h := sha256.Sum256([]byte(p.User + "\n" + p.XKey))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:20])
	var b strings.Builder
	for i := 0; i < 32; i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(enc[i : i+4])
	}
	return b.String()
}

// file is the on-disk identity file.
type file struct {
	Name     string `json:"name"`
	UserSeed string `json:"user_seed"`
	XKeySeed string `json:"xkey_seed"`
}

// Load reads an identity file.
func Load(path string) (*Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no identity at %s: make one with `unibus id new --name NAME` or pass --identity", path)
		}
		return nil, fmt.Errorf("read identity: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("identity file %s is not valid JSON with name, user_seed and xkey_seed: %w", path, err)
	}
	id, err := FromSeeds(f.Name, f.UserSeed, f.XKeySeed)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return id, nil
}

// Save writes the identity file at path with mode 0600, creating its
// directory (0700). It refuses to overwrite an existing file.
func (id *Identity) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create identity directory: %w", err)
	}
	b, err := json.MarshalIndent(file{Name: id.public.Name, UserSeed: id.userSeed, XKeySeed: id.xkeySeed}, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w at %s: refusing to overwrite it; move it away or pass another --identity", ErrIdentityExists, path)
		}
		return fmt.Errorf("create identity file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write identity file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write identity file: %w", err)
	}
	return f.Close()
}
