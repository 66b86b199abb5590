package membership_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// recorder is a Store that records every change it passes on, so that
// the same changes, statements and times included, can be replayed on
// another store.
type recorder struct {
	membership.Store
	ops []func(membership.Store) error
}

func (r *recorder) record(op func(membership.Store) error) error {
	if err := op(r.Store); err != nil {
		return err
	}
	r.ops = append(r.ops, op)
	return nil
}

func (r *recorder) CreateUser(ctx context.Context, u api.User) error {
	return r.record(func(s membership.Store) error { return s.CreateUser(ctx, u) })
}

func (r *recorder) RevokeUser(ctx context.Context, k string, at time.Time) (api.User, error) {
	var u api.User
	err := r.record(func(s membership.Store) (err error) { u, err = s.RevokeUser(ctx, k, at); return err })
	return u, err
}

func (r *recorder) CreateRoom(ctx context.Context, room api.Room, k *api.SealedKey, st roomchain.Signed) error {
	return r.record(func(s membership.Store) error { return s.CreateRoom(ctx, room, k, st) })
}

func (r *recorder) AddMembers(ctx context.Context, a membership.Add) (api.Room, error) {
	var room api.Room
	err := r.record(func(s membership.Store) (err error) { room, err = s.AddMembers(ctx, a); return err })
	return room, err
}

func (r *recorder) Rekey(ctx context.Context, c membership.Rekey) (api.Room, error) {
	var room api.Room
	err := r.record(func(s membership.Store) (err error) { room, err = s.Rekey(ctx, c); return err })
	return room, err
}

func (r *recorder) AddBlob(ctx context.Context, b api.Blob) error {
	return r.record(func(s membership.Store) error { return s.AddBlob(ctx, b) })
}

// TestExportSnapshotSameOnBothBackends makes the same changes in a SQLite
// and a KV store, through their own write paths (no migration), and
// checks that their snapshots are equal.
func TestExportSnapshotSameOnBothBackends(t *testing.T) {
	rec := &recorder{Store: teststore.TempSQLite(t)}
	seedInto(t, rec, &seeded{})
	kv := teststore.KV(t, teststore.NATS(t), teststore.FreshPrefix())
	for i, op := range rec.ops {
		if err := op(kv); err != nil {
			t.Fatalf("change %d on the KV store: %v", i, err)
		}
	}
	want, got := export(t, rec.Store), export(t, kv)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("KV snapshot differs from the SQLite one after the same changes:\n got %+v\nwant %+v", got, want)
	}
	// A snapshot survives JSON (the form a dump would take).
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back membership.Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	back.Sort()
	if back.Size() != got.Size() || len(back.SealedKeys) != len(got.SealedKeys) || back.Users[0].CreatedAt.UnixNano() != got.Users[0].CreatedAt.UnixNano() {
		t.Fatalf("snapshot after JSON: %d records, want %d", back.Size(), got.Size())
	}
}
