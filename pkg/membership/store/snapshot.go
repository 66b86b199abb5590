package store

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/enmanuel/unibus/pkg/api"
)

// Snapshot is the whole control-plane state, independent of any backend:
// every user with its status and times, every room with its real epoch
// and head, every membership span, every sealed-key row of every epoch,
// every statement of every room's history, and every blob record.
// Request nonces are not in it: they only matter for a few minutes.
//
// Each list is in a canonical order (see Sort), so that two snapshots of
// the same state are equal (reflect.DeepEqual), whichever backend they
// were read from.
type Snapshot struct {
	Users      []api.User        `json:"users"`       // by creation time, then user key
	Rooms      []api.Room        `json:"rooms"`       // by creation time, then id; no members
	Members    []MemberRecord    `json:"members"`     // by room, since, user
	SealedKeys []SealedKeyRecord `json:"sealed_keys"` // by room, epoch, member
	Statements []StatementRecord `json:"statements"`  // by room, seq
	Blobs      []api.Blob        `json:"blobs"`       // by room, id
}

// MemberRecord is one membership span: User is a member of Room from
// epoch Since up to, not including, Until (0 while it lasts).
type MemberRecord struct {
	Room  string `json:"room"`
	User  string `json:"user"`
	Since uint64 `json:"since"`
	Until uint64 `json:"until,omitempty"`
}

// SealedKeyRecord is one sealed-key row: the key of Room at Epoch sealed
// to Member by Sealer (user keys).
type SealedKeyRecord struct {
	Room      string `json:"room"`
	Epoch     uint64 `json:"epoch"`
	Member    string `json:"member"`
	Sealer    string `json:"sealer"`
	SealedKey []byte `json:"sealed_key"`
}

// StatementRecord is statement Seq of Room's membership history, as
// stored: its body and signature.
type StatementRecord struct {
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	Body []byte `json:"body"`
	Sig  []byte `json:"sig"`
}

// SnapshotExporter is a backend that can read its whole state: both the
// SQLite and the JetStream KV stores are.
type SnapshotExporter interface {
	ExportSnapshot(ctx context.Context) (*Snapshot, error)
}

// Size is the number of records in the snapshot.
func (s *Snapshot) Size() int {
	return len(s.Users) + len(s.Rooms) + len(s.Members) + len(s.SealedKeys) + len(s.Statements) + len(s.Blobs)
}

// Sort puts every list in its canonical order, and makes nil lists
// empty.
func (s *Snapshot) Sort() {
	s.Users = orEmpty(s.Users)
	s.Rooms = orEmpty(s.Rooms)
	s.Members = orEmpty(s.Members)
	s.SealedKeys = orEmpty(s.SealedKeys)
	s.Statements = orEmpty(s.Statements)
	s.Blobs = orEmpty(s.Blobs)
	slices.SortFunc(s.Users, CompareUsers)
	slices.SortFunc(s.Rooms, CompareRooms)
	slices.SortFunc(s.Members, func(a, b MemberRecord) int {
		return cmp.Or(strings.Compare(a.Room, b.Room), cmp.Compare(a.Since, b.Since), strings.Compare(a.User, b.User))
	})
	slices.SortFunc(s.SealedKeys, func(a, b SealedKeyRecord) int {
		return cmp.Or(strings.Compare(a.Room, b.Room), cmp.Compare(a.Epoch, b.Epoch), strings.Compare(a.Member, b.Member))
	})
	slices.SortFunc(s.Statements, func(a, b StatementRecord) int {
		return cmp.Or(strings.Compare(a.Room, b.Room), cmp.Compare(a.Seq, b.Seq))
	})
	slices.SortFunc(s.Blobs, func(a, b api.Blob) int {
		return cmp.Or(strings.Compare(a.Room, b.Room), strings.Compare(a.ID, b.ID))
	})
}

// CompareUsers orders users oldest first, ties by user key: the order of
// [Store.ListUsers] and of a snapshot's users.
func CompareUsers(a, b api.User) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.User, b.User))
}

// CompareRooms orders rooms oldest first, ties by id: the order of
// [Store.RoomsOf] and of a snapshot's rooms.
func CompareRooms(a, b api.Room) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
