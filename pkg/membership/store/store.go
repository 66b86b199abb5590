package store

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
// (SQLite, JetStream KV) implements it and passes the shared
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
	// on the NATS connect path, so it must be cheap and answer within
	// [AuthorizeTimeout] (false when it cannot tell by then).
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
	// the add statement, to the room's history. A rekeying add (a.Rekey)
	// also moves the room to a.Epoch+1, in the same change: the users are
	// members from that epoch, and a.Keys holds its key for every member.
	// Re-adding a former member must rekey. conflict if a user is already
	// a member or the statement does not follow the room's head; invalid
	// if a user is not active, a former member is added without a rekey, a
	// key is missing or extra, or the statement does not verify. A bulk
	// add is one change and one statement. See [Add] for the rules.
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
	// DeleteRoom removes room and everything the store keeps of it, in
	// one atomic change: the room, its members current and former, the
	// sealed keys of every epoch, its membership history and its blob
	// records. by is the user asking: a current member (not_found
	// otherwise, as for a room that does not exist) who is a room admin by
	// the room's history, or its only member (forbidden otherwise; see
	// [CheckDelete]). It returns what was removed; the caller deletes the
	// blobs it names from the blob store and the room's messages from the
	// history. not_found if the room is unknown.
	DeleteRoom(ctx context.Context, room, by string) (Deleted, error)

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

// AuthorizeTimeout bounds [Store.IsAuthorized], which is on the NATS
// connect path.
const AuthorizeTimeout = 2 * time.Second

// Add is one atomic addition of members to a room.
//
// A plain add keeps the room's epoch: the users are members from Epoch,
// Keys holds that epoch's key for each of them, and Statement is an add
// statement of Epoch. A rekeying add (Rekey) moves the room to Epoch+1 in
// the same change: the users are members from Epoch+1, Keys holds the new
// epoch's key for every member after the add (the current ones and the
// users added, each once) and Statement is an add statement of Epoch+1.
//
// Re-adding a former member (a user who was a member of the room and is
// not now, whatever epoch it left at) must be a rekeying add, so that it
// holds no key of the epochs it was out for: the key of Epoch would let
// it read what was sent since its removal. A rekeying add leaves no
// revoked member in the room: remove revoked members first.
type Add struct {
	Room      string
	Epoch     uint64   // the room's current epoch
	Users     []string // user keys
	Rekey     bool     // a rekeying add, to Epoch+1
	Keys      []api.SealedKey
	Statement roomchain.Signed
}

// After returns the room's epoch after a: Epoch, or Epoch+1 for a
// rekeying add.
func (a Add) After() uint64 {
	if a.Rekey {
		return a.Epoch + 1
	}
	return a.Epoch
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

// Deleted is what [Store.DeleteRoom] removed.
type Deleted struct {
	// Room is the room as it was, without members.
	Room api.Room
	// Members are the user keys of its members when it was deleted,
	// sorted.
	Members []string
	// Blobs are the ids of its blobs that no other room records: the
	// caller deletes them from the blob store. A blob uploaded to another
	// room too (the same bytes) stays for that room.
	Blobs []string
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
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "%v (docs/membership-history.md has the rules a statement must follow)", err)
	}
	if st.Kind != kind {
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "the change is a %s, but its statement is a %s: sign a %s statement", kind, st.Kind, kind)
	}
	if changed.Epoch != epoch {
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "statement names epoch %d; the change leaves the room at epoch %d: sign a statement of epoch %d", changed.Epoch, epoch, epoch)
	}
	if got := roomchain.Users(changed.Members); !slices.Equal(got, after) {
		return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "statement leaves %d members; the change leaves the room with %d (first difference: %s): sign a statement of exactly this change", len(got), len(after), roomchain.FirstDifference(got, after))
	}
	return st, nil
}

// ---- what every backend checks ----
//
// The rules of the Store's changes that do not depend on how a backend
// keeps its state, each checked from what the backend read inside the
// change, in the order both backends check them (the order decides which
// code a request breaking several rules gets).

// StatusOf is a backend's lookup, inside a change, of a user's status:
// not_found for an unknown user.
type StatusOf func(user string) (string, error)

// LooksLikeUserKey reports whether s has the shape of an nkey user key;
// such a string is looked up as a key before it is tried as a name.
func LooksLikeUserKey(s string) bool { return len(s) == 56 && s[0] == 'U' }

func UserNotFound(keyOrName string) error {
	return api.Errorf(api.CodeNotFound, "user %q not found: check the name or user key with `unibus user list`, or register the user with `unibus user add`", keyOrName)
}

func RoomNotFound(id string) error {
	return api.Errorf(api.CodeNotFound, "room %s not found: check the id with `unibus room list`", id)
}

func BlobNotFound(room, id string) error {
	return api.Errorf(api.CodeNotFound, "blob %s not found in room %s: check the room and the blob id", id, room)
}

func RoomIDTaken(id string) error {
	return api.Errorf(api.CodeConflict, "room id %s is taken: create the room again with a new id", id)
}

// NoHistory is the error of a change to a room created before signed
// membership history: no statement can follow its missing head.
func NoHistory(room string) error {
	return api.Errorf(api.CodeInvalid, "room %s has no signed membership history (it predates it) and cannot be changed: create a new room", room)
}

// NonceUsed is UseNonce's conflict: a replayed request.
func NonceUsed() error {
	return api.Errorf(api.CodeConflict, "request already used: sign every request anew")
}

// CheckNewUser checks the fields of a user to register, before the
// backend looks at its own state.
func CheckNewUser(u api.User) error {
	if u.Role != api.RoleAdmin && u.Role != api.RoleMember {
		return api.Errorf(api.CodeInvalid, "invalid role %q: use %s or %s", u.Role, api.RoleAdmin, api.RoleMember)
	}
	switch u.Status {
	case api.StatusActive:
		if u.RevokedAt != nil {
			return api.Errorf(api.CodeInvalid, "an active user has no revocation time: leave revoked_at empty")
		}
	case api.StatusRevoked:
		if u.RevokedAt == nil {
			return api.Errorf(api.CodeInvalid, "a revoked user needs its revocation time: set revoked_at")
		}
	default:
		return api.Errorf(api.CodeInvalid, "invalid status %q: use %s or %s", u.Status, api.StatusActive, api.StatusRevoked)
	}
	if err := u.Public.Verify(); err != nil {
		return api.Errorf(api.CodeInvalid, "identity of %q does not verify (%v): ask the user for a fresh token from `unibus id show --public`", u.Name, err)
	}
	return nil
}

// CheckNewBlob checks a blob record, before the backend looks at its
// own state.
func CheckNewBlob(b api.Blob) error {
	if b.ID == "" || b.Size < 0 {
		return api.Errorf(api.CodeInvalid, "blob record needs an id and a size of at least 0: record the id and size the blob store returned")
	}
	return nil
}

// UnknownUploader is AddBlob's error for an uploader that is not a
// registered user.
func UnknownUploader(user string) error {
	return api.Errorf(api.CodeInvalid, "blob uploader %q is not a registered user: upload as a registered user", user)
}

// CheckNewRoom is what every backend checks of a new room before it looks
// at its own state: the id, the name, and the creator's key for an
// encrypted room (none for a cleartext one).
func CheckNewRoom(r api.Room, creatorKey *api.SealedKey) error {
	if !api.ValidRoomID(r.ID) {
		return api.Errorf(api.CodeInvalid, "invalid room id %q: make one with api.NewRoomID", r.ID)
	}
	if err := api.CheckRoomName(r.Name); err != nil {
		return err
	}
	if r.Encrypted {
		if creatorKey == nil {
			return api.Errorf(api.CodeInvalid, "an encrypted room needs its creator's sealed key for epoch 1: seal the room key to the creator")
		}
		return CheckKey(creatorKey, r.ID, 1, r.Creator)
	}
	if creatorKey != nil {
		return api.Errorf(api.CodeInvalid, "a cleartext room takes no sealed key: send none")
	}
	return nil
}

// CheckCreator checks that the creator of r is an active user.
func CheckCreator(r api.Room, status StatusOf) error {
	st, err := status(r.Creator)
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		return err
	}
	if err != nil || st != api.StatusActive {
		return api.Errorf(api.CodeInvalid, "creator %q is not an active user: only active users create rooms", r.Creator)
	}
	return nil
}

// CheckCreateStatement checks st, the creation statement of the new room
// r ([CheckStatement]), and that it names the room's name and encryption
// as r does: clients take both from the statement and refuse a room the
// server describes otherwise.
func CheckCreateStatement(r api.Room, st roomchain.Signed) error {
	parsed, err := CheckStatement(r.ID, nil, nil, st, roomchain.KindCreate, 1, []string{r.Creator})
	if err != nil {
		return err
	}
	if parsed.Name != r.Name || parsed.Encrypted != r.Encrypted {
		return api.Errorf(api.CodeInvalid, "the creation statement names room %q (encrypted: %v), the request %q (encrypted: %v): sign the statement of this room",
			parsed.Name, parsed.Encrypted, r.Name, r.Encrypted)
	}
	return nil
}

// CheckKey checks that k is the key of member in room at epoch.
func CheckKey(k *api.SealedKey, room string, epoch uint64, member string) error {
	switch {
	case k.Room != room:
		return api.Errorf(api.CodeInvalid, "the sealed key for %s is for room %q, not %s: seal the key of this room", member, k.Room, room)
	case k.Epoch != epoch:
		return api.Errorf(api.CodeInvalid, "the sealed key for %s is for epoch %d, not %d: seal the key of epoch %d", member, k.Epoch, epoch, epoch)
	case k.Member != member:
		return api.Errorf(api.CodeInvalid, "the sealed key is for %s, not %s: seal the key to %s", k.Member, member, member)
	case len(k.SealedKey) == 0:
		return api.Errorf(api.CodeInvalid, "the sealed key for %s is empty: send the room key sealed to it", member)
	}
	return nil
}

// CheckSealers checks that every sealer of keys is a registered user.
// Keys come from one caller, so there is usually one distinct sealer.
func CheckSealers(keys []api.SealedKey, status StatusOf) error {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.Sealer.User] {
			continue
		}
		seen[k.Sealer.User] = true
		if _, err := status(k.Sealer.User); api.IsCode(err, api.CodeNotFound) {
			return api.Errorf(api.CodeInvalid, "the key for %s is sealed by %q, who is not a registered user: seal it as a registered member", k.Member, k.Sealer.User)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// CheckAddable checks that an add names users, each an active user.
func CheckAddable(users []string, status StatusOf) error {
	if len(users) == 0 {
		return api.Errorf(api.CodeInvalid, "no members to add: name at least one user")
	}
	for _, u := range users {
		st, err := status(u)
		if err != nil {
			return err
		}
		if st != api.StatusActive {
			return api.Errorf(api.CodeInvalid, "user %s is revoked: it cannot be added; leave it out", u)
		}
	}
	return nil
}

// CheckAdd checks a, whose users are active ([CheckAddable]), against the
// room it changes, at epoch and encrypted or not, whose current members
// are before (user keys, sorted), active[k] telling whether member k is an
// active user and former[u] whether user u was a member before and is not
// now: the rules of [Store.AddMembers] and [Add] that the room decides,
// before the sealers and the statement. It returns the members after the
// add, sorted.
func CheckAdd(a Add, epoch uint64, encrypted bool, before []string, active, former map[string]bool) ([]string, error) {
	if epoch != a.Epoch {
		return nil, api.Errorf(api.CodeConflict, "room %s is at epoch %d, not %d: it was rekeyed meanwhile; fetch the room and try again", a.Room, epoch, a.Epoch)
	}
	after := slices.Clone(before)
	adding := make(map[string]bool, len(a.Users))
	for _, u := range a.Users {
		i, found := slices.BinarySearch(after, u)
		if found {
			if adding[u] {
				return nil, api.Errorf(api.CodeInvalid, "user %s is listed twice: list each user once", u)
			}
			return nil, api.Errorf(api.CodeConflict, "user %s is already a member of room %s: leave it out of the add", u, a.Room)
		}
		adding[u] = true
		after = slices.Insert(after, i, u)
	}
	if !a.Rekey {
		for _, u := range a.Users {
			if former[u] {
				return nil, api.Errorf(api.CodeInvalid, "re-adding a former member rekeys: user %s was a member of room %s before, and the key of epoch %d would let it read what was sent since it left; add it in a rekeying add (rekey: true) to epoch %d, the new key sealed to every member and to it (the SDK and `unibus room add` do so)", u, a.Room, a.Epoch, a.Epoch+1)
			}
		}
	} else {
		for _, k := range before {
			if !active[k] {
				return nil, api.Errorf(api.CodeInvalid, "member %s is revoked: a rekeying add seals the new key to every member; remove it first (a rekey that removes it)", k)
			}
		}
	}
	next := a.After()
	if !encrypted {
		if len(a.Keys) != 0 {
			return nil, api.Errorf(api.CodeInvalid, "room %s is cleartext: send no sealed key", a.Room)
		}
		return after, nil
	}
	// The members that get a key: the new ones, and for a rekeying add
	// every member after it.
	sealTo, one, who := adding, "one of the new members", "each new member"
	if a.Rekey {
		sealTo, one, who = make(map[string]bool, len(after)), "a member after the add", "every member after the add, the new ones included"
		for _, u := range after {
			sealTo[u] = true
		}
	}
	if len(a.Keys) != len(sealTo) {
		return nil, api.Errorf(api.CodeInvalid, "room %s is encrypted: send the key of epoch %d sealed to %s (%d keys for %d members)", a.Room, next, who, len(a.Keys), len(sealTo))
	}
	seen := make(map[string]bool, len(a.Keys))
	for i := range a.Keys {
		k := &a.Keys[i]
		if !sealTo[k.Member] || seen[k.Member] {
			return nil, api.Errorf(api.CodeInvalid, "the add seals a key for %s, who is not %s or has a key already: send one key for %s", k.Member, one, who)
		}
		seen[k.Member] = true
		if err := CheckKey(k, a.Room, next, k.Member); err != nil {
			return nil, err
		}
	}
	return after, nil
}

// CheckDelete checks that by may delete room r ([Store.DeleteRoom]),
// whose current members are members (user keys, sorted) and whose last
// statement is head (nil for a room without history): by must be a
// current member (not_found otherwise, so that room ids do not leak), and
// a room admin by the admin set of the head, or the room's only member (a
// room whose last admin left can still be deleted by whoever remains last
// in it); a room without history, by its creator or its only member.
// forbidden otherwise.
func CheckDelete(r api.Room, head *roomchain.Signed, members []string, by string) error {
	if _, found := slices.BinarySearch(members, by); !found {
		return RoomNotFound(r.ID)
	}
	if len(members) == 1 {
		return nil
	}
	if head == nil {
		if by == r.Creator {
			return nil
		}
	} else {
		st, err := roomchain.Parse(*head)
		if err != nil {
			return fmt.Errorf("stored head of room %s: %w", r.ID, err)
		}
		if slices.Contains(st.Admins, by) {
			return nil
		}
	}
	return api.Errorf(api.CodeForbidden, "only a room admin deletes room %s, and you are not one: ask an admin, or leave the room with `unibus room leave %s`", r.ID, r.ID)
}

// CheckRekeyEpoch checks that c starts from the room's epoch, the first
// thing a rekey checks: two concurrent rekeys cannot both win.
func CheckRekeyEpoch(c Rekey, epoch uint64) error {
	if epoch != c.FromEpoch {
		return api.Errorf(api.CodeConflict, "room %s moved to epoch %d, the rekey starts from %d: fetch the room and try again", c.Room, epoch, c.FromEpoch)
	}
	return nil
}

// CheckRekey checks c against the room it changes, encrypted or not,
// whose current members are members (user keys, sorted), active[k]
// telling whether member k is an active user: the rules of [Rekey] that
// the room decides, before the sealers and the statement. It returns whom
// c removes and the members that remain (sorted).
func CheckRekey(c Rekey, encrypted bool, members []string, active map[string]bool) (map[string]bool, []string, error) {
	next := c.FromEpoch + 1
	removed := make(map[string]bool, len(c.Remove))
	for _, k := range c.Remove {
		if _, ok := active[k]; !ok {
			return nil, nil, api.Errorf(api.CodeInvalid, "rekey removes %s, who is not a member of room %s: fetch the members and try again", k, c.Room)
		}
		if removed[k] {
			return nil, nil, api.Errorf(api.CodeInvalid, "rekey removes %s twice: list each member once", k)
		}
		removed[k] = true
	}
	remaining := make([]string, 0, len(members)-len(removed))
	for _, k := range members {
		if removed[k] {
			continue
		}
		if !active[k] {
			return nil, nil, api.Errorf(api.CodeInvalid, "member %s is revoked: remove it in this rekey", k)
		}
		remaining = append(remaining, k)
	}
	if !encrypted && len(c.Keys) > 0 {
		return nil, nil, api.Errorf(api.CodeInvalid, "room %s is cleartext: a rekey of it carries no keys; send none", c.Room)
	}
	sealed := make(map[string]bool, len(c.Keys))
	for i := range c.Keys {
		k := &c.Keys[i]
		switch _, member := active[k.Member]; {
		case k.Room != c.Room || k.Epoch != next:
			return nil, nil, api.Errorf(api.CodeInvalid, "the key for %s is for room %q epoch %d: a rekey of room %s from epoch %d seals keys for epoch %d",
				k.Member, k.Room, k.Epoch, c.Room, c.FromEpoch, next)
		case !member:
			return nil, nil, api.Errorf(api.CodeInvalid, "rekey seals a key for %s, who is not a member: leave it out", k.Member)
		case removed[k.Member]:
			return nil, nil, api.Errorf(api.CodeInvalid, "rekey seals a key for %s, whom it removes: leave it out", k.Member)
		case sealed[k.Member]:
			return nil, nil, api.Errorf(api.CodeInvalid, "rekey seals two keys for %s: send one per member", k.Member)
		case len(k.SealedKey) == 0:
			return nil, nil, api.Errorf(api.CodeInvalid, "the key for %s is empty: send the new room key sealed to it", k.Member)
		}
		sealed[k.Member] = true
	}
	if encrypted {
		for _, k := range remaining {
			if !sealed[k] {
				return nil, nil, api.Errorf(api.CodeInvalid, "rekey leaves out member %s: seal the new key to every member that remains", k)
			}
		}
	}
	return removed, remaining, nil
}

// CheckRekeyStatement checks the statement of c ([CheckStatement]) after
// head, from the members before it to those that remain (as
// [CheckRekey] found them): a remove statement if c removes anyone, else
// a rekey one. A statement that removes users as revoked
// ([roomchain.ReasonRevoked]) must remove only users that are not
// active. It returns the statement.
func CheckRekeyStatement(c Rekey, head *roomchain.Signed, members, remaining []string, active map[string]bool) (roomchain.Statement, error) {
	kind := roomchain.KindRekey
	if len(c.Remove) > 0 {
		kind = roomchain.KindRemove
	}
	parsed, err := CheckStatement(c.Room, head, members, c.Statement, kind, c.FromEpoch+1, remaining)
	if err != nil {
		return roomchain.Statement{}, err
	}
	if parsed.Reason == roomchain.ReasonRevoked {
		for _, u := range c.Remove {
			if active[u] {
				return roomchain.Statement{}, api.Errorf(api.CodeInvalid, "the statement removes %s as revoked, but that user is not revoked: remove it without that reason, or revoke it first", u)
			}
		}
	}
	return parsed, nil
}
