package httpapi

import "fmt"

// AuthMode is how strictly the control plane checks request signatures
// (the --bus-auth flag).
type AuthMode int

const (
	// AuthOff takes the claimed user key without checking the signature:
	// loopback development only. Unknown and revoked users are still refused.
	AuthOff AuthMode = iota
	// AuthSoft checks signatures where present and logs failures without
	// refusing: for rolling out signing clients.
	AuthSoft
	// AuthEnforce refuses every API call (health and info aside) that is not
	// signed by an active user, and NATS admits only active users' nkeys.
	AuthEnforce
)

// ParseAuthMode reads off, soft or enforce.
func ParseAuthMode(s string) (AuthMode, error) {
	switch s {
	case "off":
		return AuthOff, nil
	case "soft":
		return AuthSoft, nil
	case "enforce":
		return AuthEnforce, nil
	}
	return AuthOff, fmt.Errorf("invalid --bus-auth %q: use off, soft or enforce", s)
}

// String returns the flag value of m.
func (m AuthMode) String() string {
	switch m {
	case AuthOff:
		return "off"
	case AuthSoft:
		return "soft"
	case AuthEnforce:
		return "enforce"
	}
	return fmt.Sprintf("AuthMode(%d)", int(m))
}
