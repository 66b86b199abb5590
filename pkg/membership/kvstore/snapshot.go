package kvstore

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
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

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
func (s *jetstreamStore) ExportSnapshot(ctx context.Context) (*store.Snapshot, error) {
	if err := s.syncUsers(ctx); err != nil {
		return nil, err
	}
	snap := &store.Snapshot{Users: s.cache.allUsers()}

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
			snap.Members = append(snap.Members, store.MemberRecord{Room: id, User: sp.User, Since: sp.Since, Until: sp.Until})
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
			snap.SealedKeys = append(snap.SealedKeys, store.SealedKeyRecord{Room: tok[1], Epoch: kk.Epoch, Member: member, Sealer: kk.Sealer, SealedKey: kk.Sealed})
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
		snap.Statements = append(snap.Statements, store.StatementRecord{Room: room, Seq: seq, Body: st.Body, Sig: st.Sig})
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

// Import writes snap into the buckets of cfg, creating them if needed
// (see importSnapshot): the one-time move of another backend's state.
// It does not start the store's cache: serve the buckets with [Open].
func Import(ctx context.Context, js jetstream.JetStream, cfg Config, snap *store.Snapshot, progress func(done, total int)) error {
	s, err := bindKV(ctx, js, cfg)
	if err != nil {
		return err
	}
	return s.importSnapshot(ctx, snap, progress)
}

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
func (s *jetstreamStore) importSnapshot(ctx context.Context, snap *store.Snapshot, progress func(done, total int)) error {
	done, total := 0, snap.Size()
	report := func(n int) {
		done += n
		if progress != nil {
			progress(done, total)
		}
	}
	type roomData struct {
		room  api.Room
		stmts []store.StatementRecord
		keys  []store.SealedKeyRecord
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
		slices.SortFunc(rd.stmts, func(a, b store.StatementRecord) int { return cmp.Compare(a.Seq, b.Seq) })
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

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
