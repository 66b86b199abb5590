package membership

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/roomchain"
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
	slices.SortFunc(s.Users, compareUsers)
	slices.SortFunc(s.Rooms, compareRooms)
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

// compareUsers orders users oldest first, ties by user key: the order of
// a snapshot's users and of the KV store's ListUsers.
func compareUsers(a, b api.User) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.User, b.User))
}

// compareRooms orders rooms oldest first, ties by id: the order of a
// snapshot's rooms and of the KV store's RoomsOf.
func compareRooms(a, b api.Room) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ---- JetStream KV ----

// readAll calls fn with the last value of every key of kv matching one of
// filters (every key if none), streamed through one watch with opts.
func (s *jetstreamStore) readAll(ctx context.Context, kv jetstream.KeyValue, filters []string, fn func(jetstream.KeyValueEntry) error, opts ...jetstream.WatchOpt) error {
	w, err := kv.WatchFiltered(ctx, filters, append(opts, jetstream.IgnoreDeletes())...)
	if err != nil {
		return err
	}
	defer func() {
		w.Stop()
		drain(w)
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch of %s ended early", kv.Bucket())
			}
			if e == nil {
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// ExportSnapshot reads the whole state: every bucket streamed through one
// watch each, keeping only what the room documents commit. Changes made
// meanwhile may or may not be in it (stop writers for an exact copy).
func (s *jetstreamStore) ExportSnapshot(ctx context.Context) (*Snapshot, error) {
	if err := s.syncUsers(ctx); err != nil {
		return nil, err
	}
	snap := &Snapshot{Users: s.cache.allUsers()}

	// Rooms and their states.
	views := map[string]roomView{}
	err := s.readAll(ctx, s.rooms, nil, func(e jetstream.KeyValueEntry) error {
		var doc roomDoc
		if err := json.Unmarshal(e.Value(), &doc); err != nil {
			return fmt.Errorf("room %s: %w", e.Key(), err)
		}
		views[doc.ID] = roomView{rev: e.Revision(), doc: doc, state: doc.State}
		return nil
	})
	if err != nil {
		return nil, s.fail("export rooms", err)
	}
	for id, v := range views {
		if v.state == nil {
			if v, err = s.readRoom(ctx, id); err != nil {
				return nil, err
			}
			views[id] = v
		}
		snap.Rooms = append(snap.Rooms, v.doc.room())
		for _, sp := range v.state.Spans {
			snap.Members = append(snap.Members, MemberRecord{Room: id, User: sp.User, Since: sp.Since, Until: sp.Until})
		}
	}

	// Statements and keys, of committed changes only.
	stmtSeq := map[string]uint64{} // "<room>.<change>" → seq
	keyChanges := map[string]bool{}
	for id, v := range views {
		for i, c := range v.state.Stmts {
			stmtSeq[id+"."+c] = uint64(i + 1)
		}
		for _, c := range v.state.Epochs {
			keyChanges[id+"."+c] = true
		}
		for _, sp := range v.state.Spans {
			keyChanges[id+"."+sp.Keys] = true
		}
	}
	parts := map[string][]byte{} // statement values by key, parts included
	err = s.readAll(ctx, s.data, []string{"t.>", "k.>"}, func(e jetstream.KeyValueEntry) error {
		tok := strings.Split(e.Key(), ".")
		switch {
		case tok[0] == "t" && len(tok) >= 3:
			if _, ok := stmtSeq[tok[1]+"."+tok[2]]; ok {
				parts[e.Key()] = e.Value()
			}
		case tok[0] == "k" && len(tok) == 4 && keyChanges[tok[1]+"."+tok[2]]:
			member, ok := fromKVToken(tok[3])
			var kk kvKey
			if err := json.Unmarshal(e.Value(), &kk); err != nil || !ok {
				return fmt.Errorf("sealed key %s: undecodable", e.Key())
			}
			snap.SealedKeys = append(snap.SealedKeys, SealedKeyRecord{Room: tok[1], Epoch: kk.Epoch, Member: member, Sealer: kk.Sealer, SealedKey: kk.Sealed})
		}
		return nil
	})
	if err != nil {
		return nil, s.fail("export statements and keys", err)
	}
	for rc, seq := range stmtSeq {
		room, c, _ := strings.Cut(rc, ".")
		b, err := joinParts(parts, stmtKey(room, c))
		if err != nil {
			return nil, s.fail("export statements", err)
		}
		st, err := decodeStatement(b)
		if err != nil {
			return nil, s.fail("export statements", err)
		}
		snap.Statements = append(snap.Statements, StatementRecord{Room: room, Seq: seq, Body: st.Body, Sig: st.Sig})
	}

	err = s.readAll(ctx, s.blobs, nil, func(e jetstream.KeyValueEntry) error {
		room, id, ok := strings.Cut(e.Key(), ".")
		var kb kvBlob
		if err := json.Unmarshal(e.Value(), &kb); err != nil || !ok {
			return fmt.Errorf("blob %s: undecodable", e.Key())
		}
		room, _ = fromKVToken(room)
		id, _ = fromKVToken(id)
		snap.Blobs = append(snap.Blobs, api.Blob{ID: id, Room: room, Size: kb.Size, Uploader: kb.Uploader, CreatedAt: fromNanos(kb.Created)})
		return nil
	})
	if err != nil {
		return nil, s.fail("export blobs", err)
	}
	snap.Sort()
	return snap, nil
}

// joinParts assembles the value putLarge wrote under key from parts, a
// map of every part read.
func joinParts(parts map[string][]byte, key string) ([]byte, error) {
	v, ok := parts[key]
	if !ok {
		return nil, fmt.Errorf("value %s: missing", key)
	}
	n, first, err := splitLarge(key, v)
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(first)
	for i := 1; i < n; i++ {
		p, ok := parts[key+"."+strconv.Itoa(i)]
		if !ok {
			return nil, fmt.Errorf("value %s: part %d of %d is missing", key, i, n)
		}
		out = append(out, p...)
	}
	return out, nil
}

// Change ids of imported data: a statement's is "s<seq>", the keys of
// epoch e are under "e<e>", and the room document's change is "i". They
// are fixed, so that importing again overwrites the same keys with the
// same values; a live change id (26 characters) never has these forms.
func importStmtChange(seq uint64) string { return "s" + strconv.FormatUint(seq, 10) }
func importEpochChange(e uint64) string  { return "e" + strconv.FormatUint(e, 10) }

const importChange = "i"

// importSnapshot writes snap into the buckets as raw values that keep
// every epoch, status, time and head as they are (no rule is checked:
// the snapshot is a trusted copy of a store that checked them). Every
// write is an overwrite of a fixed key, so importing again converges to
// the same state. Statements, keys and large states go first; users,
// blobs and then the room documents, which commit them, after. progress,
// if not nil, is called as records are written, with their number so far
// and snap.Size().
//
// It overwrites rooms that changed since an earlier import: run it
// before serving from these buckets, not after.
func (s *jetstreamStore) importSnapshot(ctx context.Context, snap *Snapshot, progress func(done, total int)) error {
	done, total := 0, snap.Size()
	report := func(n int) {
		done += n
		if progress != nil {
			progress(done, total)
		}
	}
	type roomData struct {
		room  api.Room
		stmts []StatementRecord
		keys  []SealedKeyRecord
		spans []span
	}
	rooms := map[string]*roomData{}
	for _, r := range snap.Rooms {
		if !api.ValidRoomID(r.ID) {
			return fmt.Errorf("import: room id %q is not valid", r.ID)
		}
		rooms[r.ID] = &roomData{room: r}
	}
	of := func(id string) (*roomData, error) {
		rd := rooms[id]
		if rd == nil {
			return nil, fmt.Errorf("import: record of unknown room %s", id)
		}
		return rd, nil
	}
	for _, st := range snap.Statements {
		rd, err := of(st.Room)
		if err != nil {
			return err
		}
		rd.stmts = append(rd.stmts, st)
	}
	for _, k := range snap.SealedKeys {
		rd, err := of(k.Room)
		if err != nil {
			return err
		}
		rd.keys = append(rd.keys, k)
	}
	for _, m := range snap.Members {
		rd, err := of(m.Room)
		if err != nil {
			return err
		}
		rd.spans = append(rd.spans, span{User: m.User, Since: m.Since, Until: m.Until, Keys: importEpochChange(m.Since)})
	}

	// Data first.
	p := s.pipeline()
	p.progress = report
	docs := make([]roomDoc, 0, len(rooms))
	for _, r := range snap.Rooms {
		rd := rooms[r.ID]
		slices.SortFunc(rd.stmts, func(a, b StatementRecord) int { return cmp.Compare(a.Seq, b.Seq) })
		state := &roomState{Spans: orEmpty(rd.spans), Stmts: []string{}, Epochs: []string{}}
		for i, st := range rd.stmts {
			if st.Seq != uint64(i+1) {
				return fmt.Errorf("import: room %s: statement %d where %d was expected", r.ID, st.Seq, i+1)
			}
			c := importStmtChange(st.Seq)
			state.Stmts = append(state.Stmts, c)
			s.putLarge(ctx, p, s.buckets.data, stmtKey(r.ID, c), encodeStatement(roomchain.Signed{Body: st.Body, Sig: st.Sig}), 1)
		}
		if r.HeadSeq != uint64(len(rd.stmts)) {
			return fmt.Errorf("import: room %s: head %d but %d statements", r.ID, r.HeadSeq, len(rd.stmts))
		}
		for e := uint64(1); e <= r.Epoch; e++ {
			state.Epochs = append(state.Epochs, importEpochChange(e))
		}
		for _, k := range rd.keys {
			b, err := json.Marshal(kvKey{Epoch: k.Epoch, Sealer: k.Sealer, Sealed: k.SealedKey})
			if err != nil {
				return err
			}
			p.put(ctx, subject(s.buckets.data, sealedKey(r.ID, importEpochChange(k.Epoch), k.Member)), b, 1)
		}
		doc := roomDoc{ID: r.ID, Name: r.Name, Encrypted: r.Encrypted, Creator: r.Creator, Created: nanos(r.CreatedAt),
			Epoch: r.Epoch, HeadSeq: r.HeadSeq, HeadHash: r.HeadHash, Change: importChange, State: state}
		enc, err := json.Marshal(state)
		if err != nil {
			return err
		}
		if len(enc) > s.inlineMax {
			doc.State, doc.External = nil, true
			s.putLarge(ctx, p, s.buckets.data, stateKey(r.ID, importChange), enc, 0)
		}
		docs = append(docs, doc)
	}
	if err := p.wait(ctx); err != nil {
		return s.fail("import room data", err)
	}

	// Then the records that name it.
	for _, u := range snap.Users {
		b, err := json.Marshal(toKVUser(u))
		if err != nil {
			return err
		}
		p.put(ctx, subject(s.buckets.users, nameKey(u.Name)), []byte(u.User), 0)
		p.put(ctx, subject(s.buckets.users, userKey(u.User)), b, 1)
	}
	for _, b := range snap.Blobs {
		v, err := json.Marshal(kvBlob{Size: b.Size, Uploader: b.Uploader, Created: nanos(b.CreatedAt)})
		if err != nil {
			return err
		}
		p.put(ctx, subject(s.buckets.blobs, blobKey(b.Room, b.ID)), v, 1)
	}
	if err := p.wait(ctx); err != nil {
		return s.fail("import users and blobs", err)
	}
	for _, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		// The document commits the room and its members.
		p.put(ctx, subject(s.buckets.rooms, d.ID), b, 1+len(rooms[d.ID].spans))
	}
	if err := p.wait(ctx); err != nil {
		return s.fail("import rooms", err)
	}
	return nil
}
