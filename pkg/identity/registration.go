package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/enmanuel/unibus/internal/edsig"
)

// registrationContext separates registration signatures from every other
// use of a user key.
const registrationContext = "unibus-registration-v1\x00"

// ErrBadRegistration reports a registration that does not verify or does
// not match the user it is attached to.
var ErrBadRegistration = errors.New("user registration does not verify")

// Registration is an admin's statement that it registered a user: the
// user's public identity and role, signed by the admin. The directory a
// server serves carries it with each user that was added over the API, so
// that a key swapped in the server's store no longer matches what an admin
// signed. Users seeded on the host (`membershipd user seed`) have none: the
// host vouches for them.
type Registration struct {
	Version int    `json:"v"`
	User    Public `json:"user"`
	Role    string `json:"role"`
	By      string `json:"by"` // the admin's user key
	Time    int64  `json:"time"`
}

// SignedRegistration is a registration's exact bytes and the admin's
// signature over them.
type SignedRegistration struct {
	Body []byte `json:"body"`
	Sig  []byte `json:"sig"`
}

// SignRegistration signs r with the admin's key.
func SignRegistration(r Registration, admin ed25519.PrivateKey) (SignedRegistration, error) {
	r.Version = 1
	body, err := json.Marshal(r)
	if err != nil {
		return SignedRegistration{}, err
	}
	return SignedRegistration{Body: body, Sig: edsig.Sign(admin, append([]byte(registrationContext), body...))}, nil
}

// Verify decodes the registration strictly and checks the admin's
// signature and the user's identity binding.
func (s SignedRegistration) Verify() (Registration, error) {
	var r Registration
	dec := json.NewDecoder(bytes.NewReader(s.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || r.Version != 1 {
		return Registration{}, fmt.Errorf("%w: malformed", ErrBadRegistration)
	}
	by, err := ParseUserKey(r.By)
	if err != nil {
		return Registration{}, fmt.Errorf("%w: signer: %w", ErrBadRegistration, err)
	}
	if len(s.Sig) != ed25519.SignatureSize || !edsig.Verify(by, append([]byte(registrationContext), s.Body...), s.Sig) {
		return Registration{}, fmt.Errorf("%w: signature by %s does not verify", ErrBadRegistration, r.By)
	}
	if err := r.User.Verify(); err != nil {
		return Registration{}, fmt.Errorf("%w: %w", ErrBadRegistration, err)
	}
	return r, nil
}

// Matches reports whether r registers exactly p.
func (r Registration) Matches(p Public) bool {
	return r.User.Name == p.Name && r.User.User == p.User && r.User.XKey == p.XKey && bytes.Equal(r.User.Binding, p.Binding)
}
