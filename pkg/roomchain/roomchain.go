// Package roomchain is the signed membership history of a room: a chain of
// statements, each signed by the member who made the change, naming the new
// epoch, the change (the members added, the members removed) and the
// room's admins after it, and linked to the previous statement by hash.
// The member set each epoch's sealed keys cover follows from the chain.
//
// The server checks and stores statements verbatim and serves them in
// order; it cannot write one, because it holds no member's key. It checks
// the next statement against its head and its own member rows
// ([Resume]), without the history before it. A client
// verifies the chain from the creation statement (or from a head it
// verified before) and trusts only the member set the chain proves: it
// seals room keys to nobody else, accepts sealed keys only from members,
// and shows a message only if its sender was a member at the message's
// epoch. docs/membership-history.md describes the format and the rules.
//
// # Rules
//
// A statement carries only its change: the members it adds (full
// records), the user keys it removes, and the room's whole admin set after
// it. A statement is valid after the state S of the chain before it when:
//   - it is version 2, names the room, has Seq = S.Seq+1 and Prev = S.Head
//     (the first statement, Seq 1, has no Prev);
//   - its actor's signature verifies and the actor is a member of S (the
//     creator, for the first statement);
//   - Add is sorted by user key without repeats, its roles are admin or
//     member and its bindings verify ([identity.Public]); Remove and Admins
//     are sorted without repeats;
//   - create (Seq 1 only): epoch 1, adds the actor alone, as admin;
//   - add: same epoch, or the next one (a rekeying add, the new key sealed
//     to every member after it); adds one or more users who are not
//     members, removes none; the actor is an admin. An add that re-adds
//     a former member ([State.Former]) must be a rekeying add: one
//     statement and one request, so that he holds no key of the epochs
//     he was out for nor of what was sent since his removal;
//   - remove: next epoch, removes one or more members, adds none, leaves at
//     least one; the actor is an admin, removes only itself, or removes
//     users the server revoked (Reason "revoked": the server checks they
//     are). A member that removes itself (leaves) seals the new epoch's
//     key, so it knows it: [State.LeftBy] names it, and the members rekey
//     before they use that epoch;
//   - rekey: next epoch, adds and removes no one; any member may rekey;
//   - Admins is exactly S's admins, plus the users added as admins, minus
//     the users removed ([State.AdminsAfter]). It may become empty (the
//     last admin left, or was removed as revoked): then no one can add
//     members any more, and members still rekey, leave and talk.
//
// [State] is immutable; [State.Apply] returns a new one, which shares
// with the state before it whatever the statement did not change: applying
// a rekey costs the same for a room of 3 members or of 10,000. Safe for
// concurrent use.
package roomchain

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/enmanuel/unibus/internal/edsig"
	"github.com/enmanuel/unibus/internal/parallel"
	"github.com/enmanuel/unibus/pkg/identity"
)

// Version is the statement format version. Version 2 statements carry only
// their change; version 1 statements, which named the whole member set,
// are refused.
const Version = 2

// Statement kinds.
const (
	KindCreate = "create"
	KindAdd    = "add"
	KindRemove = "remove"
	KindRekey  = "rekey"
)

// Room roles.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// signContext separates statement signatures from every other use of a
// user key.
const signContext = "unibus-statement-v1\x00"

// MaxStatementBytes bounds one encoded statement. A statement carries only
// its change, so a rekey or a removal is a few hundred bytes whatever the
// room's size; the largest are bulk adds, about 270 bytes per member added
// (a 10,000-member add is 2.7 MB), so one add carries at most about 30,000
// members.
const MaxStatementBytes = 8 << 20

// Errors; every verification error wraps [ErrInvalid].
var (
	ErrInvalid = errors.New("membership history does not verify")
	// ErrNotNext is a statement that does not follow the state it is
	// applied to (another Seq or Prev): out of order, or prepared from an
	// older head. It wraps ErrInvalid.
	ErrNotNext = fmt.Errorf("%w: not the next statement", ErrInvalid)
)

// Member is one member record: the public identity the actor vouched for,
// and its room role.
type Member struct {
	identity.Public
	Role string `json:"role"`
}

// Statement is one change of a room's membership. It names only the
// change (who is added, who is removed) and the room's admin set after it;
// the member set follows from the chain.
type Statement struct {
	Version int    `json:"v"`
	Room    string `json:"room"`
	Seq     uint64 `json:"seq"`
	Prev    string `json:"prev,omitempty"`
	Kind    string `json:"kind"`
	Actor   string `json:"actor"`
	Epoch   uint64 `json:"epoch"`
	// Name and Encrypted are the room's name and mode, on the creation
	// statement only.
	Name      string `json:"name,omitempty"`
	Encrypted bool   `json:"encrypted,omitempty"`
	// Add are the records of the members the statement adds (create, add),
	// sorted by user key.
	Add []Member `json:"add,omitempty"`
	// Remove are the user keys of the members the statement removes
	// (remove), sorted.
	Remove []string `json:"remove,omitempty"`
	// Admins are the user keys of the room's admins after the change,
	// sorted ([State.AdminsAfter]); empty once the last admin is gone.
	Admins []string `json:"admins"`
	Time   int64    `json:"time"`
	// Reason is set on a remove of users the server has revoked
	// (ReasonRevoked): any member may make it, so that the next member who
	// sends can rekey a revoked user out.
	Reason string `json:"reason,omitempty"`
}

// ReasonRevoked marks the removal of revoked users.
const ReasonRevoked = "revoked"

// Signed is a statement as it travels and is stored: its exact encoded
// bytes and the actor's signature over them.
type Signed struct {
	Body []byte `json:"body"`
	Sig  []byte `json:"sig"`
}

// Hash is the chain hash of a signed statement: SHA-256 of its body.
func (s Signed) Hash() [32]byte { return sha256.Sum256(s.Body) }

// HashHex is Hash in lowercase hex, as Prev names it.
func (s Signed) HashHex() string {
	h := s.Hash()
	return hex.EncodeToString(h[:])
}

// Sign encodes st and signs it. It sorts (copies of) Add by user key, and
// Remove and Admins, so that callers need not; repeats stay, and
// verification refuses them.
func Sign(st Statement, key ed25519.PrivateKey) (Signed, error) {
	st.Add = slices.Clone(st.Add)
	slices.SortFunc(st.Add, byUser)
	st.Remove = slices.Clone(st.Remove)
	slices.Sort(st.Remove)
	st.Admins = append([]string{}, st.Admins...) // never nil: "[]", not null
	slices.Sort(st.Admins)
	body, err := json.Marshal(st)
	if err != nil {
		return Signed{}, err
	}
	return Signed{Body: body, Sig: edsig.Sign(key, signed(body))}, nil
}

func byUser(a, b Member) int { return strings.Compare(a.User, b.User) }

func signed(body []byte) []byte {
	return append([]byte(signContext), body...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse decodes a signed statement strictly: version 2, known fields only,
// and the body must be exactly the encoding Sign would make of it, so that
// one statement has one form. It does not check the signature; Apply does.
func Parse(s Signed) (Statement, error) {
	if len(s.Body) == 0 || len(s.Body) > MaxStatementBytes {
		return Statement{}, invalid("statement of %d bytes", len(s.Body))
	}
	var st Statement
	dec := json.NewDecoder(bytes.NewReader(s.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		// A statement of another version has other fields: say so, rather
		// than that it is malformed.
		var other struct {
			Version int    `json:"v"`
			Room    string `json:"room"`
			Seq     uint64 `json:"seq"`
		}
		if json.Unmarshal(s.Body, &other) == nil && other.Version != Version {
			return Statement{}, versionError(other.Version, other.Room, other.Seq)
		}
		return Statement{}, invalid("malformed statement: %v", err)
	}
	if st.Version != Version {
		return Statement{}, versionError(st.Version, st.Room, st.Seq)
	}
	if st.Admins == nil {
		return Statement{}, invalid("statement %d names no admins list: write \"admins\": [] for a room without admins", st.Seq)
	}
	again, err := json.Marshal(st)
	if err != nil || !bytes.Equal(again, s.Body) {
		return Statement{}, invalid("statement is not in canonical form")
	}
	return st, nil
}

func versionError(v int, room string, seq uint64) error {
	switch {
	case v == 1:
		return invalid("statement version 1 (statement %d of room %s): this history was written by an older unibus; this one reads only version %d: create the room again", seq, room, Version)
	case v > Version:
		return invalid("statement version %d (statement %d of room %s): this unibus reads only version %d: upgrade it", v, seq, room, Version)
	}
	return invalid("statement version %d (statement %d of room %s), want %d", v, seq, room, Version)
}

// State is what a verified chain proves about its room.
//
// A State is never modified once built. Members, Admins and the spans
// behind MemberAt are shared with the states before and after it that
// have the same members (a rekey changes none of them): never modify them
// in place.
type State struct {
	Room      string
	Name      string
	Encrypted bool
	Creator   string
	Seq       uint64
	Head      string // hex hash of the last statement
	Epoch     uint64
	Members   []Member // sorted by user key
	Admins    []string // user keys of the room admins, sorted
	// LeftBy is the user key of the member whose removal of itself (a
	// member leaving) began the current epoch, "" otherwise. That member
	// sealed the epoch's key to those it left, and so knows it: clients
	// take no key from it, and rekey before they use the epoch.
	LeftBy string `json:",omitempty"`
	// spans records, per user key, the epochs each membership covered.
	spans map[string][]Span
}

// Span is one stretch of membership: from epoch Since up to, not
// including, Until (0 while it lasts).
type Span struct {
	Member
	Since uint64
	Until uint64
}

// Member returns the current member with this user key.
func (s *State) Member(user string) (Member, bool) {
	if s == nil {
		return Member{}, false
	}
	i, ok := slices.BinarySearchFunc(s.Members, user, func(m Member, u string) int { return strings.Compare(m.User, u) })
	if !ok {
		return Member{}, false
	}
	return s.Members[i], true
}

// Former reports whether user was a member of the room before and is not
// one now. Re-adding a former member starts a new epoch (an add statement
// of the next epoch), so that he gets no key of the epochs he was out
// for. A state from [Resume] knows no spans, so it reports false: the
// server tells former members from its own rows.
func (s *State) Former(user string) bool {
	if s == nil {
		return false
	}
	if _, ok := s.Member(user); ok {
		return false
	}
	return len(s.spans[user]) > 0
}

// MemberAt returns the record of user if it was a member at epoch e.
func (s *State) MemberAt(user string, e uint64) (Member, bool) {
	if s == nil {
		return Member{}, false
	}
	for _, sp := range s.spans[user] {
		if e >= sp.Since && (sp.Until == 0 || e < sp.Until) {
			return sp.Member, true
		}
	}
	return Member{}, false
}

// Spans returns every membership span, for persisting a verified state.
func (s *State) Spans() []Span {
	var out []Span
	for _, sps := range s.spans {
		out = append(out, sps...)
	}
	slices.SortFunc(out, func(a, b Span) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		return cmp.Compare(a.Since, b.Since)
	})
	return out
}

// AdminsAfter returns the admin set a statement making this change after s
// must name: the admins of s, plus the users of add whose role is admin,
// minus remove, sorted. s is nil before the creation statement.
func (s *State) AdminsAfter(add []Member, remove []string) []string {
	var out []string
	if s != nil {
		out = slices.Clone(s.Admins)
	}
	for _, m := range add {
		if m.Role == RoleAdmin {
			out = append(out, m.User)
		}
	}
	if len(remove) > 0 {
		gone := make(map[string]bool, len(remove))
		for _, u := range remove {
			gone[u] = true
		}
		out = slices.DeleteFunc(out, func(u string) bool { return gone[u] })
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Restore rebuilds a State from its exported fields and spans, as saved
// from a verified chain. Admins is derived from the members' roles.
func Restore(s State, spans []Span) *State {
	out := s
	out.Members = slices.Clone(s.Members)
	out.Admins = nil
	for _, m := range out.Members {
		if m.Role == RoleAdmin {
			out.Admins = append(out.Admins, m.User)
		}
	}
	out.spans = map[string][]Span{}
	for _, sp := range spans {
		out.spans[sp.User] = append(out.spans[sp.User], sp)
	}
	return &out
}

// Resume returns the state a room's chain is in right after head, for a
// server that verified every statement as it stored it and checks only
// the next one: it reads head alone, without the history before it, and
// takes the current members from members, the user keys (sorted, without
// repeats) of the server's own member rows.
//
// It knows of each member only its user key and its role (admin if head
// names it among the admins): enough for Apply, which verifies the
// bindings of added members only. It knows no membership spans (MemberAt
// reports nothing), and the room's name, mode and creator only if head is
// the creation statement.
func Resume(room string, head Signed, members []string) (*State, error) {
	st, err := Parse(head)
	if err != nil {
		return nil, err
	}
	if st.Room != room {
		return nil, invalid("statement for room %q in the history of %q", st.Room, room)
	}
	if !strictlySorted(members) {
		return nil, fmt.Errorf("room %s: the member keys to resume from are not sorted, or repeated", room)
	}
	for _, a := range st.Admins {
		if _, ok := slices.BinarySearch(members, a); !ok {
			return nil, fmt.Errorf("room %s: its head statement %d names admin %s, who is not a member by the store's rows: the rows and the history disagree", room, st.Seq, a)
		}
	}
	ms := make([]Member, len(members))
	for i, u := range members {
		ms[i] = Member{Public: identity.Public{User: u}, Role: RoleMember}
		if _, ok := slices.BinarySearch(st.Admins, u); ok {
			ms[i].Role = RoleAdmin
		}
	}
	s := &State{Room: st.Room, Seq: st.Seq, Head: head.HashHex(), Epoch: st.Epoch, Members: ms, Admins: st.Admins}
	if st.Kind == KindCreate {
		s.Name, s.Encrypted, s.Creator = st.Name, st.Encrypted, st.Actor
	}
	return s, nil
}

// Verify checks a whole chain from its creation statement.
func Verify(room string, chain []Signed) (*State, error) {
	var st *State
	for _, s := range chain {
		next, err := st.Apply(room, s)
		if err != nil {
			return nil, err
		}
		st = next
	}
	if st == nil {
		return nil, invalid("room %s has no creation statement", room)
	}
	return st, nil
}

// Apply verifies the next statement after s (nil: the creation statement of
// room) and returns the state after it. It costs the size of the change:
// the state after a rekey shares its members with s.
func (s *State) Apply(room string, sig Signed) (*State, error) {
	next, _, err := s.ApplyStatement(room, sig)
	return next, err
}

// ApplyStatement is Apply that also returns the decoded statement.
func (s *State) ApplyStatement(room string, sig Signed) (*State, Statement, error) {
	st, err := Parse(sig)
	if err != nil {
		return nil, Statement{}, err
	}
	next, err := s.apply(room, sig, st)
	return next, st, err
}

func (s *State) apply(room string, sig Signed, st Statement) (*State, error) {
	var seq uint64
	prev := ""
	if s != nil {
		seq, prev = s.Seq, s.Head
		room = s.Room
	}
	switch {
	case st.Version != Version:
		return nil, versionError(st.Version, st.Room, st.Seq)
	case st.Room != room:
		return nil, invalid("statement for room %q in the history of %q", st.Room, room)
	case st.Seq != seq+1:
		return nil, fmt.Errorf("%w: statement %d follows statement %d: history out of order or missing a statement", ErrNotNext, st.Seq, seq)
	case st.Prev != prev:
		return nil, fmt.Errorf("%w: statement %d does not chain to the statement before it (prev %.12s…, want %.12s…)", ErrNotNext, st.Seq, st.Prev, prev)
	}
	actorKey, err := identity.ParseUserKey(st.Actor)
	if err != nil {
		return nil, invalid("statement %d actor: %v", st.Seq, err)
	}
	if len(sig.Sig) != ed25519.SignatureSize || !edsig.Verify(actorKey, signed(sig.Body), sig.Sig) {
		return nil, invalid("statement %d: signature by %s does not verify", st.Seq, st.Actor)
	}
	if err := checkForm(st); err != nil {
		return nil, err
	}
	if s == nil {
		return create(st, sig)
	}
	actor, ok := s.Member(st.Actor)
	if !ok {
		return nil, invalid("statement %d is signed by %s, who is not a member", st.Seq, st.Actor)
	}
	if st.Name != "" || st.Encrypted {
		return nil, invalid("statement %d (%s) restates the room's creation fields", st.Seq, st.Kind)
	}
	if st.Reason != "" && (st.Kind != KindRemove || st.Reason != ReasonRevoked) {
		return nil, invalid("statement %d (%s) gives reason %q", st.Seq, st.Kind, st.Reason)
	}
	switch st.Kind {
	case KindAdd:
		rekeying := st.Epoch == s.Epoch+1
		if (st.Epoch != s.Epoch && !rekeying) || len(st.Add) == 0 || len(st.Remove) != 0 {
			return nil, invalid("statement %d (add) must add members, remove none, and keep the epoch or start the next one", st.Seq)
		}
		if actor.Role != RoleAdmin {
			return nil, invalid("statement %d: %s adds a member but is not a room admin", st.Seq, who(actor))
		}
		for _, m := range st.Add {
			if _, ok := s.Member(m.User); ok {
				return nil, invalid("statement %d adds %s (%s), who is already a member: a member's record never changes", st.Seq, m.Name, m.User)
			}
			if !rekeying && s.Former(m.User) {
				return nil, invalid("statement %d adds %s (%s), a former member, at epoch %d: re-adding a former member rekeys (an add statement of epoch %d, the new key sealed to every member); a history written by an unibus before this rule is refused: create the room again", st.Seq, m.Name, m.User, st.Epoch, s.Epoch+1)
			}
		}
		if err := checkBindings(st.Seq, st.Add); err != nil {
			return nil, err
		}
	case KindRemove:
		if st.Epoch != s.Epoch+1 || len(st.Remove) == 0 || len(st.Add) != 0 {
			return nil, invalid("statement %d (remove) must remove members, add none, and start the next epoch", st.Seq)
		}
		for _, u := range st.Remove {
			if _, ok := s.Member(u); !ok {
				return nil, invalid("statement %d removes %s, who is not a member", st.Seq, u)
			}
		}
		if len(st.Remove) == len(s.Members) {
			return nil, invalid("statement %d removes every member: a room keeps at least one", st.Seq)
		}
		if actor.Role != RoleAdmin && st.Reason != ReasonRevoked && !(len(st.Remove) == 1 && st.Remove[0] == actor.User) {
			return nil, invalid("statement %d: %s removes others but is not a room admin", st.Seq, who(actor))
		}
	case KindRekey:
		if st.Epoch != s.Epoch+1 || len(st.Add) != 0 || len(st.Remove) != 0 {
			return nil, invalid("statement %d (rekey) must add and remove no one and start the next epoch", st.Seq)
		}
	default:
		return nil, invalid("statement %d has kind %q", st.Seq, st.Kind)
	}
	admins := s.Admins
	if len(st.Add) > 0 || len(st.Remove) > 0 {
		admins = s.AdminsAfter(st.Add, st.Remove)
	}
	if err := checkAdmins(st, admins); err != nil {
		return nil, err
	}
	// What the statement does not change is shared with s, not copied.
	next := &State{Room: s.Room, Name: s.Name, Encrypted: s.Encrypted, Creator: s.Creator, Seq: st.Seq, Head: sig.HashHex(), Epoch: st.Epoch,
		Members: s.Members, Admins: admins, spans: s.spans}
	if st.Epoch == s.Epoch {
		next.LeftBy = s.LeftBy // a plain add keeps the epoch, and its key
	}
	switch st.Kind {
	case KindAdd:
		next.Members = merge(s.Members, st.Add)
		next.spans = cloneSpans(s.spans)
		for _, m := range st.Add {
			next.spans[m.User] = append(slices.Clone(next.spans[m.User]), Span{Member: m, Since: st.Epoch})
		}
	case KindRemove:
		next.Members = without(s.Members, st.Remove)
		if slices.Contains(st.Remove, st.Actor) {
			next.LeftBy = st.Actor
		}
		next.spans = cloneSpans(s.spans)
		for _, u := range st.Remove {
			// A state from Resume has no spans: nothing to close.
			if sps := slices.Clone(next.spans[u]); len(sps) > 0 {
				sps[len(sps)-1].Until = st.Epoch
				next.spans[u] = sps
			}
		}
	}
	return next, nil
}

func create(st Statement, sig Signed) (*State, error) {
	if st.Kind != KindCreate || st.Seq != 1 || st.Epoch != 1 {
		return nil, invalid("the first statement must create the room at epoch 1")
	}
	if len(st.Add) != 1 || st.Add[0].User != st.Actor || st.Add[0].Role != RoleAdmin || len(st.Remove) != 0 {
		return nil, invalid("the creation statement must add its creator as the only member, an admin, and remove no one")
	}
	if st.Name == "" {
		return nil, invalid("the creation statement names no room name")
	}
	if err := checkAdmins(st, []string{st.Actor}); err != nil {
		return nil, err
	}
	if st.Reason != "" {
		return nil, invalid("statement 1 (create) gives reason %q", st.Reason)
	}
	if err := checkBindings(1, st.Add); err != nil {
		return nil, err
	}
	creator := st.Add[0]
	s := &State{Room: st.Room, Name: st.Name, Encrypted: st.Encrypted, Creator: st.Actor, Seq: 1, Head: sig.HashHex(), Epoch: 1,
		Members: []Member{creator}, Admins: []string{st.Actor}}
	s.spans = map[string][]Span{st.Actor: {{Member: creator, Since: 1}}}
	return s, nil
}

// checkForm checks the form of the statement's lists.
func checkForm(st Statement) error {
	for i, m := range st.Add {
		if i > 0 && st.Add[i-1].User >= m.User {
			return invalid("statement %d: added members not sorted by user key, or repeated", st.Seq)
		}
		if m.Role != RoleAdmin && m.Role != RoleMember {
			return invalid("statement %d: member %s has role %q", st.Seq, m.Name, m.Role)
		}
	}
	if !strictlySorted(st.Remove) {
		return invalid("statement %d: removed users not sorted, or repeated", st.Seq)
	}
	if !strictlySorted(st.Admins) {
		return invalid("statement %d: admins not sorted, or repeated", st.Seq)
	}
	return nil
}

// checkAdmins checks that st names exactly the admin set want.
func checkAdmins(st Statement, want []string) error {
	if !slices.Equal(st.Admins, want) {
		return invalid("statement %d names %d admins, but the change leaves %d (first difference: %s)", st.Seq, len(st.Admins), len(want), FirstDifference(st.Admins, want))
	}
	return nil
}

func strictlySorted(xs []string) bool {
	for i := 1; i < len(xs); i++ {
		if xs[i-1] >= xs[i] {
			return false
		}
	}
	return true
}

// FirstDifference names the first element of one of two sorted lists of
// user keys (a statement's, and the one wanted) that the other lacks, to
// keep errors short for large rooms.
func FirstDifference(got, want []string) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return want[i] + " missing from the statement"
		case i >= len(want) || got[i] != want[i]:
			return got[i] + " in the statement"
		}
	}
	return "none"
}

func who(m Member) string {
	if m.Name != "" {
		return m.Name
	}
	return m.User
}

// merge returns the members of ms and add (both sorted by user key, no
// user in both), sorted, in a new slice.
func merge(ms, add []Member) []Member {
	out := make([]Member, 0, len(ms)+len(add))
	i, j := 0, 0
	for i < len(ms) || j < len(add) {
		if j == len(add) || i < len(ms) && ms[i].User < add[j].User {
			out = append(out, ms[i])
			i++
		} else {
			out = append(out, add[j])
			j++
		}
	}
	return out
}

// without returns the members of ms (sorted by user key) whose user is not
// in remove (sorted, all of them in ms), in a new slice.
func without(ms []Member, remove []string) []Member {
	out := make([]Member, 0, len(ms)-len(remove))
	j := 0
	for _, m := range ms {
		if j < len(remove) && m.User == remove[j] {
			j++
			continue
		}
		out = append(out, m)
	}
	return out
}

// cloneSpans copies the map of spans (not the span lists it holds, which
// are replaced, never modified).
func cloneSpans(spans map[string][]Span) map[string][]Span {
	if spans == nil {
		return map[string][]Span{}
	}
	return maps.Clone(spans)
}

// checkBindings verifies the identity bindings of members new to the chain;
// those already in it were verified when they joined and never change.
func checkBindings(seq uint64, ms []Member) error {
	// A bulk add of thousands is thousands of Ed25519 checks: spread them
	// over the cores.
	return parallel.For(len(ms), 64, func(i int) error {
		if err := ms[i].Public.Verify(); err != nil {
			return invalid("statement %d: member %s: %v", seq, ms[i].Name, err)
		}
		return nil
	})
}

// Users returns the user keys of members, in order.
func Users(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.User
	}
	return out
}
