package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// Store is the control-plane state: users, rooms, members and the sealed
// keys of every epoch, and which room each blob belongs to. Every backend
// (SQLite now, JetStream KV next) implements it and passes the shared
// conformance suite in storetest.
//
// Rules every backend keeps:
//   - A method that changes several rows does it atomically: all or nothing.
//   - Errors a caller can act on are *api.Error with a code: not_found,
//     conflict (a unique key or an epoch that moved), invalid (a request that
//     breaks a membership rule), forbidden. Anything else is internal.
//   - Nothing is returned that aliases the backend's memory.
//   - No method keeps state in the process that another node serving the
//     same backend could not see.
type Store interface {
	// CreateUser registers u. conflict if its user key or name is taken.
	CreateUser(ctx context.Context, u api.User) error
	// GetUser returns the user with this user key (U…) or, failing that,
	// this name. not_found if neither.
	GetUser(ctx context.Context, keyOrName string) (api.User, error)
	// ListUsers returns every user, oldest first.
	ListUsers(ctx context.Context) ([]api.User, error)
	// RevokeUser marks the user revoked at the given time (idempotent: a
	// revoked user keeps its first revocation time). not_found if unknown.
	RevokeUser(ctx context.Context, keyOrName string, at time.Time) (api.User, error)
	// IsAuthorized reports whether userKey belongs to an active user. It is
	// on the NATS connect path, so it must be cheap and never block long.
	IsAuthorized(userKey string) bool

	// CreateRoom stores a new room at epoch 1 with its creator as the only
	// member, and, for an encrypted room, the creator's sealed key for epoch
	// 1, with st, the room's creation statement, as the first of its
	// membership history (checked with [CheckStatement]). conflict if the id
	// is taken.
	CreateRoom(ctx context.Context, r api.Room, creatorKey *api.SealedKey, st roomchain.Signed) error
	// GetRoom returns the room without its members. not_found if unknown.
	GetRoom(ctx context.Context, id string) (api.Room, error)
	// RoomsOf returns the rooms userKey is a member of now, oldest first.
	RoomsOf(ctx context.Context, userKey string) ([]api.Room, error)
	// Members returns the room's current members, or with history also the
	// former ones (Until set), ordered by Since then user key, each with
	// Revoked set if its user is revoked.
	Members(ctx context.Context, room string, history bool) ([]api.Member, error)
	// AddMembers makes a.Users members from the room's current epoch, which
	// must equal a.Epoch (else conflict: the room was rekeyed meanwhile),
	// with a.Keys their sealed keys for that epoch (exactly one each for an
	// encrypted room, none for a cleartext one), and appends a.Statement,
	// the add statement, to the room's history. conflict if a user is
	// already a member or the statement does not follow the room's head;
	// invalid if a user is not active, a key is missing or extra, or the
	// statement does not verify. A bulk add is one change and one statement.
	AddMembers(ctx context.Context, a Add) (api.Room, error)
	// Rekey moves the room from c.FromEpoch to c.FromEpoch+1 in one atomic
	// change. See [Rekey] for the rules it checks.
	Rekey(ctx context.Context, c Rekey) (api.Room, error)
	// SealedKeys returns the sealed keys of member in room, for one epoch or,
	// with epoch 0, for all epochs, ascending.
	SealedKeys(ctx context.Context, room, member string, epoch uint64) ([]api.SealedKey, error)
	// IsMember reports whether userKey is a current member of room, in one
	// lookup (the API asks it on every room request). not_found if the room
	// is unknown.
	IsMember(ctx context.Context, room, userKey string) (bool, error)
	// Statements returns the room's membership history after sequence
	// number after (0: all of it), in order, exactly as stored.
	Statements(ctx context.Context, room string, after uint64) ([]roomchain.Signed, error)

	// AddBlob records that blob b belongs to room b.Room (idempotent).
	AddBlob(ctx context.Context, b api.Blob) error
	// GetBlob returns the record of blob id in room. not_found if the blob
	// does not belong to that room.
	GetBlob(ctx context.Context, room, id string) (api.Blob, error)

	// UseNonce records a signed request's nonce until expires: conflict if
	// it is recorded and not yet expired (a replay). Expired nonces are
	// forgotten by the store itself.
	UseNonce(ctx context.Context, nonce string, expires time.Time) error

	// Close releases the backend.
	Close() error
}

// Add is one atomic addition of members to a room.
type Add struct {
	Room      string
	Epoch     uint64
	Users     []string // user keys
	Keys      []api.SealedKey
	Statement roomchain.Signed
}

// Rekey is one atomic epoch change of a room.
//
// The store refuses it unless, at the moment of writing:
//
//   - the room exists and its epoch is FromEpoch (conflict otherwise: two
//     concurrent rekeys cannot both win);
//
//   - every user in Remove is a current member (invalid otherwise);
//
//   - Keys holds exactly one key for each member that remains, and none for
//     anyone else (invalid otherwise), or no keys at all for a cleartext
//     room; every remaining member must be an active user.
//
//   - Statement, the remove (when Remove is not empty) or rekey statement,
//     follows the room's head (conflict otherwise) and verifies
//     ([CheckStatement]); a statement with reason "revoked"
//     ([roomchain.ReasonRevoked]) removes only revoked users (invalid
//     otherwise).
//
// On success the epoch is FromEpoch+1, the removed members' Until is the
// new epoch, the keys are stored for it and Statement is appended to the
// room's history.
type Rekey struct {
	Room      string
	FromEpoch uint64
	Remove    []string // user keys
	Keys      []api.SealedKey
	Statement roomchain.Signed
}

// CheckStatement is the check every backend makes, inside the transaction
// that writes a membership change, before it appends next to a room's
// history. The backend holds no member's record, only its rows, and
// statements carry only their change: the check starts from head (nil for
// a new room) and before, the user keys (sorted) of the room's members
// before the change, as the backend's rows hold them ([roomchain.Resume]).
// next must follow head (conflict if another change came first), verify
// against that state ([roomchain.State.Apply]), be of the given kind, and
// leave exactly the member set after (user keys, sorted) and the epoch
// the change leaves in the rows. It returns the statement.
func CheckStatement(room string, head *roomchain.Signed, before []string, next roomchain.Signed, kind string, epoch uint64, after []string) (roomchain.Statement, error) {
	var state *roomchain.State
	if head != nil {
		var err error
		if state, err = roomchain.Resume(room, *head, before); err != nil {
			return roomchain.Statement{}, fmt.Errorf("stored head of room %s: %w", room, err)
		}
	} else if len(before) != 0 {
		return roomchain.Statement{}, fmt.Errorf("room %s has %d members but no history", room, len(before))
	}
	changed, st, err := state.ApplyStatement(room, next)
	if errors.Is(err, roomchain.ErrNotNext) && state != nil {
		return roomchain.Statement{}, api.Errorf(api.CodeConflict, "room %s changed (its history is at statement %d): fetch the room and try again", room, state.Seq)
	}
	if err != nil {
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "%v", err)
	}
	if st.Kind != kind {
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "the change is a %s, but its statement is a %s", kind, st.Kind)
	}
	if changed.Epoch != epoch {
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "statement names epoch %d; the change leaves the room at epoch %d", changed.Epoch, epoch)
	}
	if got := roomchain.Users(changed.Members); !slices.Equal(got, after) {
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "statement leaves %d members; the change leaves the room with %d (first difference: %s)", len(got), len(after), roomchain.FirstDifference(got, after))
	}
	return st, nil
}

// checkNewRoom is what every backend checks of a new room before it looks
// at its own state: the id, the name, and the creator's key for an
// encrypted room (none for a cleartext one).
func checkNewRoom(r api.Room, creatorKey *api.SealedKey) error {
	if !api.ValidRoomID(r.ID) {
		return api.Errorf(api.CodeInvalid, "invalid room id %q: make one with api.NewRoomID", r.ID)
	}
	if !api.ValidRoomName(r.Name) {
		return api.Errorf(api.CodeInvalid, "invalid room name %q: use 1 to %d printable characters without leading or trailing space", r.Name, api.MaxRoomNameLen)
	}
	if r.Encrypted {
		if creatorKey == nil {
			return api.Errorf(api.CodeInvalid, "an encrypted room needs its creator's sealed key for epoch 1")
		}
		return checkKey(creatorKey, r.ID, 1, r.Creator)
	}
	if creatorKey != nil {
		return api.Errorf(api.CodeInvalid, "a cleartext room takes no sealed key: send none")
	}
	return nil
}
