package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Sweep purges the data of changes that no room document commits and
// that were written more than minAge ago: what a writer that crashed
// before its commit left behind, and large room states whose purge after
// a later change failed. A change still being written is younger than
// any sensible minAge (a change gives up after 30 s); use an hour or
// more. It returns the number of values removed, and can run on any node
// at any time.
func (s *jetstreamStore) Sweep(ctx context.Context, minAge time.Duration) (int, error) {
	// What the documents commit, read before the data is listed: a change
	// committed after this read wrote its data before, so it is younger
	// than minAge or already named here.
	type group struct{ kind, room, change string }
	live := map[group]bool{}
	err := s.readAll(ctx, s.rooms, nil, func(e jetstream.KeyValueEntry) error {
		var doc roomDoc
		if err := json.Unmarshal(e.Value(), &doc); err != nil {
			return fmt.Errorf("room %s: %w", e.Key(), err)
		}
		state, err := s.loadState(ctx, doc)
		if errors.Is(err, errStateGone) {
			// A change committed meanwhile: it names at least as much.
			var v roomView
			if v, err = s.readRoom(ctx, doc.ID); err == nil {
				doc, state = v.doc, v.state
			}
		}
		if err != nil {
			return fmt.Errorf("room %s: %w", doc.ID, err)
		}
		if doc.External {
			live[group{"s", doc.ID, doc.Change}] = true
		}
		for _, c := range state.Stmts {
			live[group{"t", doc.ID, c}] = true
		}
		for _, c := range state.Epochs {
			live[group{"k", doc.ID, c}] = true
		}
		for _, sp := range state.Spans {
			live[group{"k", doc.ID, sp.Keys}] = true
		}
		return nil
	})
	if err != nil {
		return 0, s.fail("sweep", err)
	}
	cutoff := time.Now().Add(-minAge)
	type stats struct {
		n      int
		newest time.Time
	}
	dead := map[group]*stats{}
	err = s.readAll(ctx, s.data, nil, func(e jetstream.KeyValueEntry) error {
		tok := strings.SplitN(e.Key(), ".", 4)
		if len(tok) < 3 {
			return nil
		}
		g := group{tok[0], tok[1], tok[2]}
		if live[g] {
			return nil
		}
		st := dead[g]
		if st == nil {
			st = &stats{}
			dead[g] = st
		}
		st.n++
		if e.Created().After(st.newest) {
			st.newest = e.Created()
		}
		return nil
	}, jetstream.MetaOnly())
	if err != nil {
		return 0, s.fail("sweep", err)
	}
	removed := 0
	for g, st := range dead {
		if st.newest.After(cutoff) {
			continue
		}
		if err := s.purgeData(ctx, g.kind+"."+g.room+"."+g.change); err != nil {
			return removed, s.fail("sweep", err)
		}
		removed += st.n
		s.log.Info("kv store: swept uncommitted change", "room", g.room, "change", g.change, "kind", g.kind, "values", st.n)
	}
	return removed, nil
}
