// Package api holds the control-plane wire types that membershipd and the
// SDK share: JSON bodies, the error type and its status table, the NATS
// subject scheme, and identifier rules. It has no behaviour of its own
// beyond validation, so both sides read the protocol from one place.
//
// The HTTP routes are documented in docs/api.md.
package api

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"

	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// Roles and statuses of a user.
const (
	RoleAdmin     = "admin"
	RoleMember    = "member"
	StatusActive  = "active"
	StatusRevoked = "revoked"
)

// Ceilings the server enforces; clients may use them to fail early.
const (
	MaxJSONBody    = 1 << 20  // bytes of a JSON request body (a 10,000-member rekey is ~1.3 MiB: see MaxRekeyBody)
	MaxRekeyBody   = 16 << 20 // bytes of a rekey body, which carries one sealed key per member
	MaxRoomNameLen = 128
)

// Info is the answer of GET /v1/info: what a client needs to join the bus,
// and which build of membershipd answers.
type Info struct {
	Build
	AuthMode      string `json:"auth_mode"`
	NATSURL       string `json:"nats_url"`
	HistoryStream string `json:"history_stream"`
	MaxBlobBytes  int64  `json:"max_blob_bytes"`
	// APIRate and APIBurst are the requests a second, and the burst, one
	// user may send this node (membershipd --api-rate, --api-burst);
	// absent when the node sets no limit. Tools that send many requests
	// (unibus bench) plan with them.
	APIRate  float64 `json:"api_rate,omitempty"`
	APIBurst int     `json:"api_burst,omitempty"`
	// NATSURLs lists the NATS URLs of the cluster's nodes that the
	// answering node knows, its own (NATSURL) first: a client given them
	// all reconnects to another node when its own goes. Empty from a
	// node on an external NATS, which clients learn the others of.
	NATSURLs []string `json:"nats_urls,omitempty"`
}

// Build names a build of membershipd: the version and commit that
// `membershipd --version` prints. Commit, CommitTime and Modified are
// empty when the build recorded no VCS information.
type Build struct {
	Version    string    `json:"version"`
	Commit     string    `json:"commit,omitempty"`     // the full VCS revision
	CommitTime time.Time `json:"commit_time,omitzero"` // its time, UTC
	Modified   bool      `json:"modified,omitempty"`   // built from a work tree with uncommitted changes
}

// User is a registered bus user.
type User struct {
	identity.Public
	Role      string     `json:"role"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Registration is the admin-signed registration of a user added over
	// the API; nil for a user seeded on the host.
	Registration *identity.SignedRegistration `json:"registration,omitempty"`
}

// Active reports whether the user may use the bus.
func (u User) Active() bool { return u.Status == StatusActive }

// AddUserRequest is the body of POST /v1/users.
type AddUserRequest struct {
	Token string `json:"token"`
	Admin bool   `json:"admin,omitempty"`
	// Registration is the caller's signed registration of exactly this
	// identity and role.
	Registration identity.SignedRegistration `json:"registration"`
}

// Room is a room as the caller sees it.
type Room struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Encrypted bool      `json:"encrypted"`
	Epoch     uint64    `json:"epoch"`
	Creator   string    `json:"creator"`
	CreatedAt time.Time `json:"created_at"`
	// HeadSeq and HeadHash name the last statement of the room's signed
	// membership history (docs/membership-history.md).
	HeadSeq  uint64   `json:"head_seq"`
	HeadHash string   `json:"head_hash,omitempty"`
	Members  []Member `json:"members,omitempty"`
}

// Member is a user's membership of a room, from epoch Since on. Until is
// the first epoch it no longer belongs to (0 while it is a member).
type Member struct {
	identity.Public
	Since uint64 `json:"since"`
	Until uint64 `json:"until,omitempty"`
	// Revoked is set when the user has been revoked: the room's members
	// rekey it out before they send again.
	Revoked bool `json:"revoked,omitempty"`
}

// MemberAt reports whether m belonged to the room at epoch e.
func (m Member) MemberAt(e uint64) bool {
	return e >= m.Since && (m.Until == 0 || e < m.Until)
}

// CreateRoomRequest is the body of POST /v1/rooms. An encrypted room
// carries the creator's own sealed key for epoch 1; a cleartext room none.
//
// ID is a fresh id from [NewRoomID], drawn by the creating client so that
// its creation statement and the key it seals at creation can name the
// room; the server checks its form and that it is unused.
type CreateRoomRequest struct {
	ID        string `json:"id,omitempty"`
	Name      string `json:"name"`
	Cleartext bool   `json:"cleartext,omitempty"`
	SealedKey []byte `json:"sealed_key,omitempty"`
	// Statement is the room's creation statement, signed by the creator.
	Statement roomchain.Signed `json:"statement"`
}

// AddMembersRequest is the body of POST /v1/rooms/{room}/members: the new
// members (by user key or name) with, for an encrypted room, the current
// epoch's key sealed to each by the caller, and the add statement naming
// them all. A bulk add is one request, one transaction, one statement.
//
// A rekeying add (Rekey) also moves the room from Epoch to Epoch+1 in the
// same change: Members carry the new epoch's key, Keys the same key sealed
// to each current member, and the statement is an add of epoch Epoch+1.
// Re-adding a former member must rekey, so that it gets no key of the
// epochs it was out for.
type AddMembersRequest struct {
	Epoch   uint64     `json:"epoch"`
	Members []KeyGrant `json:"members"`
	Rekey   bool       `json:"rekey,omitempty"`
	// Keys are, in a rekeying add of an encrypted room, the new epoch's
	// key sealed to each current member (the caller included); none
	// otherwise.
	Keys []KeyGrant `json:"keys,omitempty"`
	// Statement is the add statement, signed by the caller.
	Statement roomchain.Signed `json:"statement"`
}

// RekeyRequest is the body of POST /v1/rooms/{room}/rekey: move from epoch
// FromEpoch to FromEpoch+1, removing Remove, with the new key sealed for
// every remaining member and no one else.
type RekeyRequest struct {
	FromEpoch uint64     `json:"from_epoch"`
	Remove    []string   `json:"remove,omitempty"`
	Keys      []KeyGrant `json:"keys,omitempty"`
	// Statement is the remove (when Remove is set) or rekey statement,
	// signed by the caller.
	Statement roomchain.Signed `json:"statement"`
}

// KeyGrant is one member with its sealed key (none in a cleartext room).
type KeyGrant struct {
	Member    string `json:"member"`
	SealedKey []byte `json:"sealed_key,omitempty"`
}

// SealedKey is a room key of one epoch sealed to one member by another.
type SealedKey struct {
	Room      string          `json:"room"`
	Epoch     uint64          `json:"epoch"`
	Member    string          `json:"member"`
	Sealer    identity.Public `json:"sealer"`
	SealedKey []byte          `json:"sealed_key"`
}

// Blob is a stored, encrypted attachment of a room.
type Blob struct {
	ID        string    `json:"id"`
	Room      string    `json:"room"`
	Size      int64     `json:"size"`
	Uploader  string    `json:"uploader"`
	CreatedAt time.Time `json:"created_at"`
}

// Health is the answer of GET /healthz.
type Health struct {
	Status string `json:"status"`
}

// Subjects and streams of the data plane.
const (
	// SubjectPrefix starts every room subject.
	SubjectPrefix = "unibus.room."
	// HistoryStream is the JetStream stream that keeps every room's messages.
	HistoryStream = "UNIBUS_HISTORY"
	// HistorySubjects is the stream's subject filter.
	HistorySubjects = SubjectPrefix + "*.msg"
)

// RoomSubject is the NATS subject a room's messages are published on.
func RoomSubject(room string) string { return SubjectPrefix + room + ".msg" }

// roomIDLen is the length of a room id: 16 random bytes in base32.
const roomIDLen = 26

var roomIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewRoomID makes a fresh room id: 26 characters of [a-z2-7], safe in URLs
// and NATS subjects.
func NewRoomID() string {
	var b [16]byte
	rand.Read(b[:])
	return roomIDEncoding.EncodeToString(b[:])
}

// ValidRoomID reports whether s has the form [NewRoomID] makes.
func ValidRoomID(s string) bool {
	if len(s) != roomIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// roomNameRule is what a room name may hold, as error messages say it.
const roomNameRule = "use 1 to 128 bytes of letters, digits, punctuation, symbols and spaces, without leading or trailing space and without control or invisible characters"

// ValidRoomName reports whether s is acceptable as a room name (see
// [CheckRoomName], which says why not).
func ValidRoomName(s string) bool { return CheckRoomName(s) == nil }

// CheckRoomName returns nil if s is acceptable as a room name, else an
// invalid [Error] that names the offending character and says what to do.
// A room name is 1 to [MaxRoomNameLen] bytes of valid UTF-8, not starting
// or ending with a space, without any character [identity.UnsafeRune]
// refuses: no control characters, no bidi controls, no zero-width or
// other invisible characters. The server (the API and every backend), the
// SDK and the CLI all check with it.
func CheckRoomName(s string) error {
	switch {
	case s == "":
		return Errorf(CodeInvalid, "a room needs a name: %s", roomNameRule)
	case len(s) > MaxRoomNameLen:
		return Errorf(CodeInvalid, "invalid room name: it is %d bytes long: %s", len(s), roomNameRule)
	}
	if r, at, bad := identity.FirstUnsafe(s); bad {
		return Errorf(CodeInvalid, "invalid room name %q: it holds %s at byte %d: type the name again without it; %s", s, identity.DescribeRune(r), at, roomNameRule)
	}
	if strings.TrimSpace(s) != s {
		return Errorf(CodeInvalid, "invalid room name %q: it starts or ends with a space: %s", s, roomNameRule)
	}
	return nil
}

// RoomEventSubject is the core-NATS subject on which membershipd announces
// that a room changed (a member added, a rekey), so that clients refresh the
// room's keys and members before their next message instead of polling.
func RoomEventSubject(room string) string { return SubjectPrefix + room + ".event" }

// KeysSubject is the core-NATS subject on which membershipd delivers a
// user's new sealed room keys ([KeyDelivery]). It lies in the user's own
// inbox namespace, which on an enforcing bus only that user may read and
// no other user may write to.
func KeysSubject(user string) string { return subjects.InboxPrefix(user) + ".keys" }

// KeyDelivery is the body membershipd publishes on [KeysSubject] of every
// member a rekey (with or without removals, or a rekeying add) leaves in a
// room, right after the rekey is stored and before its [RoomEvent]: the
// member's sealed key of the new epoch and the statement of the rekey,
// removal or add. A member whose verified history is at the
// statement before opens the key at once, without asking the API, so that
// a rekey of a room of thousands does not turn into thousands of requests.
// Like a RoomEvent it is a hint: a client applies the statement to the
// history it verified and opens the key only if sealed by the statement's
// actor, for itself, for that epoch; anything else it ignores, and reads
// the room from the API as before.
type KeyDelivery struct {
	Room      string           `json:"room"`
	Statement roomchain.Signed `json:"statement"`
	Key       SealedKey        `json:"key"`
}

// RoomEvent is the body published on [RoomEventSubject]. It is a hint, not
// an authority: clients refresh from the API when they receive one.
type RoomEvent struct {
	Room  string `json:"room"`
	Epoch uint64 `json:"epoch"`
	// Seq is the room's history head after the change: a client whose
	// verified history reaches it already knows the change.
	Seq uint64 `json:"seq,omitempty"`
	// Users are the users whose membership changed (added or removed):
	// every node closes their NATS connections so that they reconnect with
	// permissions for their new set of rooms.
	Users []string `json:"users,omitempty"`
	// Revoked are members of the room whose user was just revoked: the
	// room's members read its member list again, and the next to send
	// rekeys them out.
	Revoked []string `json:"revoked,omitempty"`
	// Deleted says that a room admin deleted the room: Users are its
	// members then. Their SDKs forget the room and say it was deleted
	// when they next use it.
	Deleted bool `json:"deleted,omitempty"`
}

// ReaderSubjectToken follows the reader's inbox prefix in the subject a
// history reader delivers to: "<inbox prefix>.r.<token>" ([ValidReaderSubject]).
const ReaderSubjectToken = "r"

// ReaderRequest asks membershipd to open a history reader of a room for
// the caller (POST /v1/rooms/{room}/readers): a consumer of the history
// stream that membershipd creates after checking that the caller is a
// member now, delivering the room's messages from StartSeq (0: from the
// first) to Deliver, a subject in the caller's own inbox namespace that
// the caller subscribed to first.
type ReaderRequest struct {
	Deliver  string `json:"deliver"`
	StartSeq uint64 `json:"start_seq,omitempty"`
}

// Reader is an open history reader ([ReaderRequest]). The caller receives
// the room's messages on Deliver as JetStream delivers them (the reply
// subject carries each message's stream and consumer sequence), an idle
// heartbeat every Heartbeat when there is nothing to deliver, and flow
// control requests to answer. The reader is closed when the caller closes
// it (DELETE /v1/rooms/{room}/readers/{name}), when nobody has listened on
// Deliver for a while, and at once when the caller leaves the room, is
// removed from it, or is revoked.
type Reader struct {
	Name      string `json:"name"`
	Room      string `json:"room"`
	Deliver   string `json:"deliver"`
	StartSeq  uint64 `json:"start_seq"`
	LastSeq   uint64 `json:"last_seq"` // the room's last message when the reader opened; 0 if none
	Heartbeat int64  `json:"heartbeat_ms"`
}

// ValidReaderSubject reports whether subject is one a history reader of
// user may deliver to: "<inbox prefix of user>.r.<token>", token one of 1
// to 64 letters, digits, '-' or '_'. No other user may subscribe there on an
// enforcing bus, and no wildcard or extra token can widen it.
func ValidReaderSubject(user, subject string) bool {
	token, ok := strings.CutPrefix(subject, subjects.InboxPrefix(user)+"."+ReaderSubjectToken+".")
	if !ok || len(token) == 0 || len(token) > 64 {
		return false
	}
	for _, c := range token {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
