package kvstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// Rooms, members, sealed keys and statements of the JetStream KV store:
// see doc.go for the layout and how a change commits.

// roomDoc is a room document (rooms bucket, key = room id): the commit
// point of every change of the room.
type roomDoc struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Encrypted bool   `json:"encrypted"`
	Creator   string `json:"creator"`
	Created   int64  `json:"created"` // unix ns
	Epoch     uint64 `json:"epoch"`
	HeadSeq   uint64 `json:"head_seq"`
	HeadHash  string `json:"head_hash,omitempty"`
	// Change is the id of the change that wrote this document.
	Change string `json:"change"`
	// State is the room state after Change, or nil if External: then it
	// is stored under s.<room>.<Change> in the data bucket.
	State    *roomState `json:"state,omitempty"`
	External bool       `json:"external,omitempty"`
}

func (d *roomDoc) room() api.Room {
	return api.Room{ID: d.ID, Name: d.Name, Encrypted: d.Encrypted, Epoch: d.Epoch, Creator: d.Creator,
		CreatedAt: fromNanos(d.Created), HeadSeq: d.HeadSeq, HeadHash: d.HeadHash}
}

// roomState is what a room document commits beyond the room record:
// every membership span, and which change holds each statement and each
// epoch's keys. It grows with the members and the history, and is
// rewritten by every change.
type roomState struct {
	// Spans are the memberships, current (Until 0) and former.
	Spans []span `json:"spans"`
	// Stmts[i] is the change holding statement i+1.
	Stmts []string `json:"stmts"`
	// Epochs[i] is the change holding the keys of epoch i+1 of the
	// members it began with.
	Epochs []string `json:"epochs"`
}

// span is one membership: User from epoch Since up to, not including,
// Until (0 while it lasts); Keys is the change holding its key of epoch
// Since (its later keys are those of each epoch's change).
type span struct {
	User         string
	Since, Until uint64
	Keys         string
}

// MarshalJSON writes a span as [user, since, until, keys]: a large room
// has many.
func (sp span) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{sp.User, sp.Since, sp.Until, sp.Keys})
}

func (sp *span) UnmarshalJSON(b []byte) error {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) != 4 {
		return fmt.Errorf("span of %d fields, want 4", len(a))
	}
	return errors.Join(json.Unmarshal(a[0], &sp.User), json.Unmarshal(a[1], &sp.Since), json.Unmarshal(a[2], &sp.Until), json.Unmarshal(a[3], &sp.Keys))
}

func (st *roomState) clone() *roomState {
	return &roomState{Spans: slices.Clone(st.Spans), Stmts: slices.Clone(st.Stmts), Epochs: slices.Clone(st.Epochs)}
}

// current returns the user keys of the current members, sorted.
func (st *roomState) current() []string {
	var keys []string
	for _, sp := range st.Spans {
		if sp.Until == 0 {
			keys = append(keys, sp.User)
		}
	}
	slices.Sort(keys)
	return keys
}

// keysOf returns the change holding the key of the member of sp at epoch
// e, or "" if none does.
func (st *roomState) keysOf(sp span, e uint64) string {
	if e == sp.Since {
		return sp.Keys
	}
	if e >= 1 && e <= uint64(len(st.Epochs)) {
		return st.Epochs[e-1]
	}
	return ""
}

// inlineStateMax is the largest encoded state kept in the room document;
// a larger one goes to the data bucket, so that the document stays small.
const inlineStateMax = 64 << 10

// roomView is a room document, read at revision rev, with its state.
type roomView struct {
	rev   uint64
	doc   roomDoc
	state *roomState
}

// errStateGone is a room state removed by a later change between the
// reads of its document and of its state.
var errStateGone = errors.New("room state removed by a later change")

// loadState returns the state doc commits.
func (s *jetstreamStore) loadState(ctx context.Context, doc roomDoc) (*roomState, error) {
	if !doc.External {
		if doc.State == nil {
			return nil, fmt.Errorf("room %s: document without state", doc.ID)
		}
		return doc.State, nil
	}
	b, ok, err := s.getLarge(ctx, s.data, stateKey(doc.ID, doc.Change))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errStateGone
	}
	var st roomState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("room %s state: %w", doc.ID, err)
	}
	return &st, nil
}

// readRoom reads room id's document from the stream leader, and its
// state from the cache if that holds the same revision, else from the
// bucket. not_found if there is no such room.
func (s *jetstreamStore) readRoom(ctx context.Context, id string) (roomView, error) {
	key := roomKey(id)
	if key == "" {
		return roomView{}, store.RoomNotFound(id)
	}
	for range 3 {
		e, ok, err := s.get(ctx, s.rooms, key)
		if err != nil {
			return roomView{}, s.fail("get room", err)
		}
		if !ok {
			return roomView{}, store.RoomNotFound(id)
		}
		if rev, doc, state, ok := s.cache.room(id); ok && rev == e.Revision() && state != nil {
			return roomView{rev: rev, doc: doc, state: state}, nil
		}
		var doc roomDoc
		if err := json.Unmarshal(e.Value(), &doc); err != nil {
			return roomView{}, s.fail("get room", fmt.Errorf("room %s: %w", id, err))
		}
		state, err := s.loadState(ctx, doc)
		if errors.Is(err, errStateGone) {
			continue // a change committed meanwhile: read it
		}
		if err != nil {
			return roomView{}, s.fail("get room", err)
		}
		s.cache.putRoom(e.Revision(), doc, state)
		doc.State = nil
		return roomView{rev: e.Revision(), doc: doc, state: state}, nil
	}
	return roomView{}, api.Errorf(api.CodeUnavailable, "room %s is changing too fast to read: try again", id)
}

// ---- encodings in the data bucket ----

// encodeStatement is a statement as stored: the signature's length as a
// uvarint, the signature, the body.
func encodeStatement(st roomchain.Signed) []byte {
	b := binary.AppendUvarint(make([]byte, 0, 2+len(st.Sig)+len(st.Body)), uint64(len(st.Sig)))
	b = append(b, st.Sig...)
	return append(b, st.Body...)
}

func decodeStatement(b []byte) (roomchain.Signed, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return roomchain.Signed{}, errors.New("malformed stored statement")
	}
	return roomchain.Signed{Sig: bytes.Clone(b[k : k+int(n)]), Body: bytes.Clone(b[k+int(n):])}, nil
}

// kvKey is a sealed key as stored under k.<room>.<change>.<member>.
type kvKey struct {
	Epoch  uint64 `json:"e"`
	Sealer string `json:"s"`
	Sealed []byte `json:"k"`
}

// ---- changes ----

// commit writes a change of room doc.ID made under change id doc.Change:
// first the statement, the keys and, if large, the new state, pipelined;
// then, as the commit point, the room document: a create for a new room
// (prev nil), else an update checked against prev's revision. A lost
// race is conflict and its data is purged; any other failure leaves
// whatever was written, which no document names.
func (s *jetstreamStore) commit(ctx context.Context, op string, prev *roomView, doc roomDoc, state *roomState, st roomchain.Signed, keys []api.SealedKey) (uint64, error) {
	room, c := doc.ID, doc.Change
	p := s.pipeline()
	s.putLarge(ctx, p, s.buckets.data, stmtKey(room, c), encodeStatement(st), 0)
	for _, k := range keys {
		b, err := json.Marshal(kvKey{Epoch: k.Epoch, Sealer: k.Sealer.User, Sealed: k.SealedKey})
		if err != nil {
			return 0, s.fail(op, err)
		}
		p.put(ctx, subject(s.buckets.data, sealedKey(room, c, k.Member)), b, 0)
	}
	enc, err := json.Marshal(state)
	if err != nil {
		return 0, s.fail(op, err)
	}
	doc.State, doc.External = state, len(enc) > s.inlineMax
	if doc.External {
		doc.State = nil
		s.putLarge(ctx, p, s.buckets.data, stateKey(room, c), enc, 0)
	}
	if err := p.wait(ctx); err != nil {
		return 0, s.fail(op, err)
	}
	if err := s.step("commit"); err != nil {
		return 0, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return 0, s.fail(op, err)
	}
	var rev uint64
	if prev == nil {
		rev, err = s.rooms.Create(ctx, room, b)
	} else {
		rev, err = s.rooms.Update(ctx, room, b, prev.rev)
	}
	if isWrongLastSeq(err) {
		s.discard(room, c)
		if prev == nil {
			return 0, store.RoomIDTaken(room)
		}
		return 0, api.Errorf(api.CodeConflict, "room %s changed while this change was written: fetch the room and try again", room)
	}
	if err != nil {
		// Committed or not: unknown. Leave the data, in case it is.
		return 0, s.fail(op, err)
	}
	s.cache.putRoom(rev, doc, state)
	if prev != nil && prev.doc.External {
		// The previous state is no longer named by any document.
		s.purgeState(room, prev.doc.Change)
	}
	return rev, nil
}

// discard purges, best effort, the data of change c of room, which no
// document names.
func (s *jetstreamStore) discard(room, c string) {
	ctx, cancel := context.WithTimeout(context.Background(), kvOpTimeout)
	defer cancel()
	if err := s.purgeData(ctx, "*."+room+"."+c); err != nil {
		s.log.Warn("kv store: purge of an uncommitted change failed", "room", room, "change", c, "err", err)
	}
}

// purgeState purges, best effort, the large state of change c of room.
func (s *jetstreamStore) purgeState(room, c string) {
	ctx, cancel := context.WithTimeout(context.Background(), kvOpTimeout)
	defer cancel()
	if err := s.purgeData(ctx, stateKey(room, c)); err != nil {
		s.log.Warn("kv store: purge of a replaced room state failed", "room", room, "change", c, "err", err)
	}
}

// headOf reads the last statement of the room v, for [store.CheckStatement]. A
// room without history cannot be changed.
func (s *jetstreamStore) headOf(ctx context.Context, v roomView, op string) (*roomchain.Signed, error) {
	if v.doc.HeadSeq == 0 {
		return nil, store.NoHistory(v.doc.ID)
	}
	if v.doc.HeadSeq > uint64(len(v.state.Stmts)) {
		return nil, s.fail(op, fmt.Errorf("room %s: head statement %d is missing", v.doc.ID, v.doc.HeadSeq))
	}
	st, err := s.statement(ctx, v.doc.ID, v.state.Stmts[v.doc.HeadSeq-1])
	if err != nil {
		return nil, s.statementsFailed(ctx, v, op, err)
	}
	return &st, nil
}

// errStatementGone is a statement the room's state names that is not in
// the bucket.
var errStatementGone = errors.New("statement is missing")

// statementsFailed is the error of op, which read statements of the room
// v and failed with err. A statement gone from the bucket is a deletion
// committed since v was read, which purged them: not_found, or conflict
// if the room is still there and changed.
func (s *jetstreamStore) statementsFailed(ctx context.Context, v roomView, op string, err error) error {
	if errors.Is(err, errStatementGone) {
		now, rerr := s.readRoom(ctx, v.doc.ID)
		switch {
		case rerr != nil:
			return rerr
		case now.rev != v.rev:
			return api.Errorf(api.CodeConflict, "room %s changed meanwhile: fetch the room and try again", v.doc.ID)
		}
	}
	return s.fail(op, err)
}

// statement reads the statement written by change c of room.
func (s *jetstreamStore) statement(ctx context.Context, room, c string) (roomchain.Signed, error) {
	b, ok, err := s.getLarge(ctx, s.data, stmtKey(room, c))
	if err != nil {
		return roomchain.Signed{}, err
	}
	if !ok {
		return roomchain.Signed{}, fmt.Errorf("room %s: change %s: %w", room, c, errStatementGone)
	}
	return decodeStatement(b)
}

// CreateRoom stores r at epoch 1 with its creator as the only member and
// st as the first statement of its history, checked as the SQLite store
// checks it; the room document is created only if the id is new.
func (s *jetstreamStore) CreateRoom(ctx context.Context, r api.Room, creatorKey *api.SealedKey, st roomchain.Signed) error {
	if err := store.CheckNewRoom(r, creatorKey); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := s.syncUsers(ctx); err != nil {
		return err
	}
	if err := store.CheckCreator(r, s.userStatus); err != nil {
		return err
	}
	if _, taken, err := s.get(ctx, s.rooms, r.ID); err != nil {
		return s.fail("create room", err)
	} else if taken {
		return store.RoomIDTaken(r.ID)
	}
	var keys []api.SealedKey
	if creatorKey != nil {
		keys = []api.SealedKey{*creatorKey}
	}
	if err := store.CheckSealers(keys, s.userStatus); err != nil {
		return err
	}
	if err := store.CheckCreateStatement(r, st); err != nil {
		return s.fail("create room", err)
	}
	c := newChangeID()
	doc := roomDoc{ID: r.ID, Name: r.Name, Encrypted: r.Encrypted, Creator: r.Creator, Created: nanos(r.CreatedAt),
		Epoch: 1, HeadSeq: 1, HeadHash: st.HashHex(), Change: c}
	state := &roomState{Spans: []span{{User: r.Creator, Since: 1, Keys: c}}, Stmts: []string{c}, Epochs: []string{c}}
	_, err := s.commit(ctx, "create room", nil, doc, state, st, keys)
	return err
}

// GetRoom returns the room without its members, from the cache; a room
// the cache does not know (yet) is read from the bucket.
func (s *jetstreamStore) GetRoom(ctx context.Context, id string) (api.Room, error) {
	if _, doc, _, ok := s.cache.room(id); ok {
		return doc.room(), nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	v, err := s.readRoom(ctx, id)
	if err != nil {
		return api.Room{}, err
	}
	return v.doc.room(), nil
}

// RoomsOf returns the rooms userKey is a member of now, oldest first
// (ties by id), from the cache.
func (s *jetstreamStore) RoomsOf(ctx context.Context, userKey string) ([]api.Room, error) {
	ids, stale := s.cache.roomsOf(userKey)
	if len(stale) > 0 {
		// Rooms whose state the watch could not load: load them now.
		ctx, cancel := withTimeout(ctx)
		defer cancel()
		for _, id := range stale {
			if _, err := s.readRoom(ctx, id); err != nil {
				return nil, err
			}
		}
		ids, _ = s.cache.roomsOf(userKey)
	}
	rooms := make([]api.Room, 0, len(ids))
	for _, id := range ids {
		if _, doc, _, ok := s.cache.room(id); ok {
			rooms = append(rooms, doc.room())
		}
	}
	slices.SortFunc(rooms, store.CompareRooms)
	return rooms, nil
}

// IsMember reports whether userKey is a current member of room, from the
// cache (one map lookup); a room the cache does not hold is read from the
// bucket.
func (s *jetstreamStore) IsMember(ctx context.Context, room, userKey string) (bool, error) {
	if ok, known := s.cache.isMember(room, userKey); known {
		return ok, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	v, err := s.readRoom(ctx, room)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(v.state.Spans, func(sp span) bool { return sp.Until == 0 && sp.User == userKey }), nil
}

// Members returns the room's members, ordered by Since then user key,
// read at the room's current revision.
func (s *jetstreamStore) Members(ctx context.Context, room string, history bool) ([]api.Member, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	v, err := s.readRoom(ctx, room)
	if err != nil {
		return nil, err
	}
	members := []api.Member{}
	for _, sp := range v.state.Spans {
		if sp.Until != 0 && !history {
			continue
		}
		u, err := s.userOf(ctx, sp.User)
		if err != nil {
			return nil, s.fail("list members", err)
		}
		m := api.Member{Since: sp.Since, Until: sp.Until, Revoked: u.Status == api.StatusRevoked}
		m.Public = u.Public
		m.Binding = slices.Clone(u.Binding)
		members = append(members, m)
	}
	slices.SortFunc(members, func(a, b api.Member) int {
		return cmp.Or(cmp.Compare(a.Since, b.Since), strings.Compare(a.User, b.User))
	})
	return members, nil
}

// AddMembers adds a.Users at the room's current epoch (or, for a
// rekeying add, at the next one) after checking the rules of
// [store.Store.AddMembers], in the order the SQLite store checks them,
// and commits the add as one change.
func (s *jetstreamStore) AddMembers(ctx context.Context, a store.Add) (api.Room, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	v, err := s.readRoom(ctx, a.Room)
	if err != nil {
		return api.Room{}, err
	}
	if err := s.syncUsers(ctx); err != nil {
		return api.Room{}, err
	}
	if err := store.CheckAddable(a.Users, s.userStatus); err != nil {
		return api.Room{}, err
	}
	before := v.state.current()
	active := make(map[string]bool, len(before))
	for _, k := range before {
		status, err := s.userStatus(k)
		if err != nil {
			return api.Room{}, s.fail("add members", fmt.Errorf("room %s: member %s: %w", a.Room, k, err))
		}
		active[k] = status == api.StatusActive
	}
	former := map[string]bool{}
	for _, sp := range v.state.Spans {
		if sp.Until != 0 {
			former[sp.User] = true
		}
	}
	for _, k := range before {
		delete(former, k)
	}
	after, err := store.CheckAdd(a, v.doc.Epoch, v.doc.Encrypted, before, active, former)
	if err != nil {
		return api.Room{}, err
	}
	if err := store.CheckSealers(a.Keys, s.userStatus); err != nil {
		return api.Room{}, err
	}
	head, err := s.headOf(ctx, v, "add members")
	if err != nil {
		return api.Room{}, err
	}
	epoch := a.After()
	parsed, err := store.CheckStatement(a.Room, head, before, a.Statement, roomchain.KindAdd, epoch, after)
	if err != nil {
		return api.Room{}, s.fail("add members", err)
	}
	c := newChangeID()
	state := v.state.clone()
	for _, u := range a.Users {
		state.Spans = append(state.Spans, span{User: u, Since: epoch, Keys: c})
	}
	state.Stmts = append(state.Stmts, c)
	if a.Rekey {
		// The change holds the new epoch's keys of every member.
		state.Epochs = append(state.Epochs, c)
	}
	doc := v.doc
	doc.Epoch, doc.HeadSeq, doc.HeadHash, doc.Change = epoch, parsed.Seq, a.Statement.HashHex(), c
	if _, err := s.commit(ctx, "add members", &v, doc, state, a.Statement, a.Keys); err != nil {
		return api.Room{}, err
	}
	return doc.room(), nil
}

// Rekey moves the room to c.FromEpoch+1 after checking the rules of
// [store.Rekey], in the order the SQLite store checks them, and commits it as
// one change: the member set is compared in memory, and the keys are
// written pipelined, not one round trip each.
func (s *jetstreamStore) Rekey(ctx context.Context, c store.Rekey) (api.Room, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	v, err := s.readRoom(ctx, c.Room)
	if err != nil {
		return api.Room{}, err
	}
	if err := store.CheckRekeyEpoch(c, v.doc.Epoch); err != nil {
		return api.Room{}, err
	}
	next := c.FromEpoch + 1
	if err := s.syncUsers(ctx); err != nil {
		return api.Room{}, err
	}
	members := v.state.current()
	active := make(map[string]bool, len(members))
	for _, k := range members {
		status, err := s.userStatus(k)
		if err != nil {
			return api.Room{}, s.fail("rekey", fmt.Errorf("room %s: member %s: %w", c.Room, k, err))
		}
		active[k] = status == api.StatusActive
	}
	removed, remaining, err := store.CheckRekey(c, v.doc.Encrypted, members, active)
	if err != nil {
		return api.Room{}, err
	}
	if err := store.CheckSealers(c.Keys, s.userStatus); err != nil {
		return api.Room{}, err
	}
	head, err := s.headOf(ctx, v, "rekey")
	if err != nil {
		return api.Room{}, err
	}
	parsed, err := store.CheckRekeyStatement(c, head, members, remaining, active)
	if err != nil {
		return api.Room{}, s.fail("rekey", err)
	}
	id := newChangeID()
	state := v.state.clone()
	for i := range state.Spans {
		if sp := &state.Spans[i]; sp.Until == 0 && removed[sp.User] {
			sp.Until = next
		}
	}
	state.Stmts = append(state.Stmts, id)
	state.Epochs = append(state.Epochs, id)
	doc := v.doc
	doc.Epoch, doc.HeadSeq, doc.HeadHash, doc.Change = next, parsed.Seq, c.Statement.HashHex(), id
	if _, err := s.commit(ctx, "rekey", &v, doc, state, c.Statement, c.Keys); err != nil {
		return api.Room{}, err
	}
	return doc.room(), nil
}

// SealedKeys returns member's keys in room for one epoch, or every epoch
// (epoch 0) ascending, each with its sealer's public identity. No keys
// (an unknown room included, as in the SQLite store) is an empty list.
// The keys of a member's epochs are read concurrently.
func (s *jetstreamStore) SealedKeys(ctx context.Context, room, member string, epoch uint64) ([]api.SealedKey, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	keys := []api.SealedKey{}
	v, err := s.readRoom(ctx, room)
	if api.IsCode(err, api.CodeNotFound) {
		return keys, nil
	}
	if err != nil {
		return nil, err
	}
	if !v.doc.Encrypted {
		return keys, nil
	}
	type want struct {
		epoch  uint64
		change string
	}
	var wants []want
	for _, sp := range v.state.Spans {
		if sp.User != member {
			continue
		}
		first, last := sp.Since, v.doc.Epoch
		if sp.Until != 0 {
			last = sp.Until - 1
		}
		if epoch != 0 {
			// One epoch: no walk over the span's others.
			first, last = max(first, epoch), min(last, epoch)
		}
		for e := first; e <= last; e++ {
			if c := v.state.keysOf(sp, e); c != "" {
				wants = append(wants, want{e, c})
			}
		}
	}
	if len(wants) == 0 {
		return keys, nil
	}
	found := make([]*api.SealedKey, len(wants))
	err = parallel(ctx, len(wants), func(ctx context.Context, i int) error {
		e, ok, err := s.get(ctx, s.data, sealedKey(room, wants[i].change, member))
		if err != nil || !ok {
			return err
		}
		var kk kvKey
		if err := json.Unmarshal(e.Value(), &kk); err != nil {
			return err
		}
		sealer, err := s.userOf(ctx, kk.Sealer)
		if err != nil {
			return err
		}
		k := api.SealedKey{Room: room, Epoch: wants[i].epoch, Member: member, Sealer: sealer.Public, SealedKey: kk.Sealed}
		k.Sealer.Binding = slices.Clone(k.Sealer.Binding)
		found[i] = &k
		return nil
	})
	if err != nil {
		return nil, s.fail("list sealed keys", err)
	}
	for _, k := range found {
		if k != nil {
			keys = append(keys, *k)
		}
	}
	slices.SortFunc(keys, func(a, b api.SealedKey) int { return cmp.Compare(a.Epoch, b.Epoch) })
	return keys, nil
}

// Statements returns the statements of room after sequence number after,
// ascending, with the bytes they were stored with, read concurrently.
// not_found if the room does not exist.
func (s *jetstreamStore) Statements(ctx context.Context, room string, after uint64) ([]roomchain.Signed, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	v, err := s.readRoom(ctx, room)
	if err != nil {
		return nil, err
	}
	head := min(v.doc.HeadSeq, uint64(len(v.state.Stmts)))
	if after >= head {
		return []roomchain.Signed{}, nil
	}
	sts := make([]roomchain.Signed, head-after)
	err = parallel(ctx, len(sts), func(ctx context.Context, i int) error {
		st, err := s.statement(ctx, room, v.state.Stmts[after+uint64(i)])
		sts[i] = st
		return err
	})
	if err != nil {
		return nil, s.statementsFailed(ctx, v, "list statements", err)
	}
	return sts, nil
}

// DeleteRoom removes room. It reads the room from the leader, checks by
// ([store.CheckDelete]) and lists the room's blob records, then purges
// the room document, checked against the revision read: the commit point
// (conflict if a change committed meanwhile). After it, best effort, it
// purges the room's data (statements, keys, large states) and blob
// records; data it leaves is named by no document, and Sweep collects it.
func (s *jetstreamStore) DeleteRoom(ctx context.Context, room, by string) (store.Deleted, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	v, err := s.readRoom(ctx, room)
	if err != nil {
		return store.Deleted{}, err
	}
	members := v.state.current()
	var head *roomchain.Signed
	if v.doc.HeadSeq > 0 {
		if head, err = s.headOf(ctx, v, "delete room"); err != nil {
			return store.Deleted{}, err
		}
	}
	if err := store.CheckDelete(v.doc.room(), head, members, by); err != nil {
		return store.Deleted{}, s.fail("delete room", err)
	}
	blobs, err := s.roomBlobs(ctx, room)
	if err != nil {
		return store.Deleted{}, s.fail("delete room", err)
	}
	if err := s.step("delete"); err != nil {
		return store.Deleted{}, err
	}
	if err := s.rooms.Purge(ctx, room, jetstream.LastRevision(v.rev)); err != nil {
		if isWrongLastSeq(err) {
			return store.Deleted{}, api.Errorf(api.CodeConflict, "room %s changed while it was being deleted: fetch the room and try again", room)
		}
		return store.Deleted{}, s.fail("delete room", err)
	}
	s.cache.dropRoom(room, v.rev)
	if err := s.purgeData(ctx, "*."+room); err != nil {
		s.log.Warn("kv store: purge of a deleted room's data failed; Sweep removes it", "room", room, "err", err)
	}
	if err := s.purgeBlobRecords(ctx, room); err != nil {
		s.log.Warn("kv store: purge of a deleted room's blob records failed", "room", room, "err", err)
	}
	return store.Deleted{Room: v.doc.room(), Members: members, Blobs: blobs}, nil
}

// roomBlobs returns the ids of the blobs recorded for room and for no
// other room, sorted: one pass over the keys of the blobs bucket.
func (s *jetstreamStore) roomBlobs(ctx context.Context, room string) ([]string, error) {
	mine, elsewhere := map[string]bool{}, map[string]bool{}
	err := s.readAll(ctx, s.blobs, nil, func(e jetstream.KeyValueEntry) error {
		r, id, ok := strings.Cut(e.Key(), ".")
		if !ok {
			return nil
		}
		if id, ok = fromKVToken(id); !ok {
			return nil
		}
		if r == kvToken(room) {
			mine[id] = true
		} else {
			elsewhere[id] = true
		}
		return nil
	}, jetstream.MetaOnly())
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for id := range mine {
		if !elsewhere[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// purgeBlobRecords removes, without leaving markers, the blob records of
// room.
func (s *jetstreamStore) purgeBlobRecords(ctx context.Context, room string) error {
	st, err := s.js.Stream(ctx, "KV_"+s.buckets.blobs)
	if err != nil {
		return err
	}
	return st.Purge(ctx, jetstream.WithPurgeSubject(subject(s.buckets.blobs, kvToken(room)+".>")))
}
