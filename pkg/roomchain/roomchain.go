// Package roomchain is the signed membership history of a room: a chain of
// statements, each signed by the member who made the change, naming the new
// epoch and the exact member set its sealed keys cover, and linked to the
// previous statement by hash.
//
// The server checks and stores statements verbatim and serves them in
// order; it cannot write one, because it holds no member's key. A client
// verifies the chain from the creation statement (or from a head it
// verified before) and trusts only the member set the chain proves: it
// seals room keys to nobody else, accepts sealed keys only from members,
// and shows a message only if its sender was a member at the message's
// epoch. docs/membership-history.md describes the format and the rules.
//
// # Rules
//
// A statement is valid after the state S of the chain before it when:
//   - it is version 1, names the room, has Seq = S.Seq+1 and Prev = S.Head
//     (the first statement, Seq 1, has no Prev);
//   - its actor's signature verifies and the actor is a member of S (the
//     creator, for the first statement);
//   - every member record carries a binding that verifies ([identity.Public]),
//     the list is sorted by user key without repeats, and a member already
//     in S keeps its exact record (key, xkey, name, role);
//   - create (Seq 1 only): epoch 1, the actor alone, as admin;
//   - add: same epoch, one or more members more; the actor is an admin;
//   - remove: next epoch, one or more members fewer, at least one left; the
//     actor is an admin, removes only itself, or removes users the server
//     revoked (Reason "revoked": the server checks they are);
//   - rekey: next epoch, the same members; any member may rekey.
//
// [State] is immutable; [State.Apply] returns a new one. Safe for
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
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/enmanuel/unibus/pkg/identity"
)

// Version is the statement format version.
const Version = 1

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

// MaxStatementBytes bounds one encoded statement (a 10,000-member rekey is
// about 2.5 MiB).
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

// Statement is one change of a room's membership.
type Statement struct {
	Version   int      `json:"v"`
	Room      string   `json:"room"`
	Seq       uint64   `json:"seq"`
	Prev      string   `json:"prev,omitempty"`
	Kind      string   `json:"kind"`
	Actor     string   `json:"actor"`
	Epoch     uint64   `json:"epoch"`
	Name      string   `json:"name,omitempty"`
	Encrypted bool     `json:"encrypted,omitempty"`
	Members   []Member `json:"members"`
	Time      int64    `json:"time"`
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

// Sign encodes st (members sorted by user key) and signs it.
func Sign(st Statement, key ed25519.PrivateKey) (Signed, error) {
	st.Members = slices.Clone(st.Members)
	slices.SortFunc(st.Members, func(a, b Member) int { return strings.Compare(a.User, b.User) })
	body, err := json.Marshal(st)
	if err != nil {
		return Signed{}, err
	}
	return Signed{Body: body, Sig: ed25519.Sign(key, signed(body))}, nil
}

func signed(body []byte) []byte {
	return append([]byte(signContext), body...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse decodes a signed statement strictly: known fields only, and the
// body must be exactly the encoding Sign would make of it, so that one
// statement has one form. It does not check the signature; Apply does.
func Parse(s Signed) (Statement, error) {
	if len(s.Body) == 0 || len(s.Body) > MaxStatementBytes {
		return Statement{}, invalid("statement of %d bytes", len(s.Body))
	}
	var st Statement
	dec := json.NewDecoder(bytes.NewReader(s.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return Statement{}, invalid("malformed statement: %v", err)
	}
	again, err := json.Marshal(st)
	if err != nil || !bytes.Equal(again, s.Body) {
		return Statement{}, invalid("statement is not in canonical form")
	}
	return st, nil
}

// State is what a verified chain proves about its room.
type State struct {
	Room      string
	Name      string
	Encrypted bool
	Creator   string
	Seq       uint64
	Head      string // hex hash of the last statement
	Epoch     uint64
	Members   []Member // sorted by user key
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

// Restore rebuilds a State from its exported fields and spans, as saved
// from a verified chain.
func Restore(s State, spans []Span) *State {
	out := s
	out.Members = slices.Clone(s.Members)
	out.spans = map[string][]Span{}
	for _, sp := range spans {
		out.spans[sp.User] = append(out.spans[sp.User], sp)
	}
	return &out
}

// After returns the state a chain is in right after head, read from head
// alone, without verifying the history before it: for a server that
// verified every statement as it stored it and checks only the next one.
// It has no membership spans (MemberAt knows only current members).
func After(room string, head Signed) (*State, error) {
	st, err := Parse(head)
	if err != nil {
		return nil, err
	}
	if st.Room != room {
		return nil, invalid("statement for room %q in the history of %q", st.Room, room)
	}
	s := &State{Room: st.Room, Name: st.Name, Encrypted: st.Encrypted, Seq: st.Seq, Head: head.HashHex(), Epoch: st.Epoch, Members: st.Members, spans: map[string][]Span{}}
	for _, m := range st.Members {
		s.spans[m.User] = []Span{{Member: m, Since: st.Epoch}}
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
// room) and returns the state after it.
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
		return nil, invalid("statement version %d, want %d", st.Version, Version)
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
	if len(sig.Sig) != ed25519.SignatureSize || !ed25519.Verify(actorKey, signed(sig.Body), sig.Sig) {
		return nil, invalid("statement %d: signature by %s does not verify", st.Seq, st.Actor)
	}
	if err := checkMembers(st); err != nil {
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
	added, removed, err := diff(s.Members, st.Members, st.Seq)
	if err != nil {
		return nil, err
	}
	if err := checkBindings(st.Seq, added); err != nil {
		return nil, err
	}
	if st.Reason != "" && (st.Kind != KindRemove || st.Reason != ReasonRevoked) {
		return nil, invalid("statement %d (%s) gives reason %q", st.Seq, st.Kind, st.Reason)
	}
	switch st.Kind {
	case KindAdd:
		if st.Epoch != s.Epoch || len(added) == 0 || len(removed) != 0 {
			return nil, invalid("statement %d (add) must add members, remove none, and keep the epoch", st.Seq)
		}
		if actor.Role != RoleAdmin {
			return nil, invalid("statement %d: %s adds a member but is not a room admin", st.Seq, actor.Name)
		}
	case KindRemove:
		if st.Epoch != s.Epoch+1 || len(added) != 0 || len(removed) == 0 || len(st.Members) == 0 {
			return nil, invalid("statement %d (remove) must remove members, keep at least one, and start the next epoch", st.Seq)
		}
		if actor.Role != RoleAdmin && st.Reason != ReasonRevoked && !(len(removed) == 1 && removed[0].User == actor.User) {
			return nil, invalid("statement %d: %s removes others but is not a room admin", st.Seq, actor.Name)
		}
	case KindRekey:
		if st.Epoch != s.Epoch+1 || len(added) != 0 || len(removed) != 0 {
			return nil, invalid("statement %d (rekey) must keep the members and start the next epoch", st.Seq)
		}
	default:
		return nil, invalid("statement %d has kind %q", st.Seq, st.Kind)
	}
	next := &State{Room: s.Room, Name: s.Name, Encrypted: s.Encrypted, Creator: s.Creator, Seq: st.Seq, Head: sig.HashHex(), Epoch: st.Epoch, Members: st.Members, spans: make(map[string][]Span, len(s.spans)+1)}
	for u, sps := range s.spans {
		next.spans[u] = sps
	}
	for _, m := range added {
		next.spans[m.User] = append(slices.Clone(next.spans[m.User]), Span{Member: m, Since: st.Epoch})
	}
	for _, m := range removed {
		sps := slices.Clone(next.spans[m.User])
		sps[len(sps)-1].Until = st.Epoch
		next.spans[m.User] = sps
	}
	return next, nil
}

func create(st Statement, sig Signed) (*State, error) {
	if st.Kind != KindCreate || st.Seq != 1 || st.Epoch != 1 {
		return nil, invalid("the first statement must create the room at epoch 1")
	}
	if len(st.Members) != 1 || st.Members[0].User != st.Actor || st.Members[0].Role != RoleAdmin {
		return nil, invalid("the creation statement must name its creator as the only member, an admin")
	}
	if st.Name == "" {
		return nil, invalid("the creation statement names no room name")
	}
	if err := checkBindings(1, st.Members); err != nil {
		return nil, err
	}
	s := &State{Room: st.Room, Name: st.Name, Encrypted: st.Encrypted, Creator: st.Actor, Seq: 1, Head: sig.HashHex(), Epoch: 1, Members: st.Members}
	s.spans = map[string][]Span{st.Actor: {{Member: st.Members[0], Since: 1}}}
	return s, nil
}

// checkMembers checks the member list's form.
func checkMembers(st Statement) error {
	for i, m := range st.Members {
		if i > 0 && st.Members[i-1].User >= m.User {
			return invalid("statement %d: members not sorted by user key, or repeated", st.Seq)
		}
		if m.Role != RoleAdmin && m.Role != RoleMember {
			return invalid("statement %d: member %s has role %q", st.Seq, m.Name, m.Role)
		}
	}
	return nil
}

// checkBindings verifies the identity bindings of members new to the chain;
// those already in it were verified when they joined and must be unchanged.
func checkBindings(seq uint64, ms []Member) error {
	// A bulk add of thousands is thousands of Ed25519 checks: spread them
	// over the cores.
	workers := min(runtime.GOMAXPROCS(0), max(1, len(ms)/64))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ms); i += workers {
				if err := ms[i].Public.Verify(); err != nil {
					errs[w] = invalid("statement %d: member %s: %v", seq, ms[i].Name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// diff returns the members of next not in prev and of prev not in next,
// and refuses a changed record for a member in both.
func diff(prev, next []Member, seq uint64) (added, removed []Member, err error) {
	i, j := 0, 0
	for i < len(prev) || j < len(next) {
		switch {
		case j == len(next) || i < len(prev) && prev[i].User < next[j].User:
			removed = append(removed, prev[i])
			i++
		case i == len(prev) || next[j].User < prev[i].User:
			added = append(added, next[j])
			j++
		default:
			if !sameMember(prev[i], next[j]) {
				return nil, nil, invalid("statement %d changes the record of member %s (key, xkey, name or role)", seq, prev[i].Name)
			}
			i++
			j++
		}
	}
	return added, removed, nil
}

func sameMember(a, b Member) bool {
	return a.Name == b.Name && a.User == b.User && a.XKey == b.XKey && a.Role == b.Role && bytes.Equal(a.Binding, b.Binding)
}

// Users returns the user keys of members, in order.
func Users(ms []Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.User
	}
	return out
}
