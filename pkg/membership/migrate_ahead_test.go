package membership_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
)

// TestMigrateAgainAfterSQLiteMovedOn is the re-run before the switch: the
// server went on serving from SQLite after a first migration (a rekey, a
// revocation, a new user, room and blob), and a second run brings the
// buckets up to it.
func TestMigrateAgainAfterSQLiteMovedOn(t *testing.T) {
	ctx := context.Background()
	sd := seedSQLite(t)
	ns := teststore.NATS(t)
	js := testnats.JetStream(t, ns)
	prefix := teststore.FreshPrefix()
	migrate(t, sd.path, js, prefix)

	s := teststore.SQLite(t, sd.path)
	c := sd.plansChain
	ch := c.NextRekey(sd.aliceID, []api.User{sd.alice, sd.bob, sd.dave})
	if _, err := s.Rekey(ctx, ch); err != nil {
		t.Fatal(err)
	}
	c.Accept(ch.Statement)
	if _, err := s.RevokeUser(ctx, sd.dave.User, time.Now()); err != nil {
		t.Fatal(err)
	}
	erinID, erin := storetest.NewIdentity(t, "erin")
	storetest.CreateUsers(t, s, erin)
	storetest.CreateRoom(t, s, erinID, api.Room{ID: api.NewRoomID(), Name: "later", Creator: erin.User, CreatedAt: time.Now()})
	if err := s.AddBlob(ctx, api.Blob{ID: fmt.Sprintf("%064x", 8), Room: sd.plans.ID, Size: 5, Uploader: sd.bob.User, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	stats, err := migrateWith(t, sd.path, js, membership.MigrateOptions{KV: membership.KVConfig{Prefix: prefix}})
	if err != nil {
		t.Fatalf("second migration after SQLite moved on: %v; want it to bring the buckets up to SQLite", err)
	}
	if stats.Unchanged || len(stats.Overwritten) != 0 {
		t.Fatalf("second migration: Unchanged %v, Overwritten %q; want a plain copy", stats.Unchanged, stats.Overwritten)
	}
	if got, want := export(t, teststore.KV(t, ns, prefix)), export(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("KV after the second migration differs from SQLite:\n got %+v\nwant %+v", got, want)
	}
}

// TestMigrateRefusesKVThatMovedOn: once the buckets have moved on past
// the SQLite file (served from, or changed through, the KV store), a
// migration refuses, writes nothing and takes no backup, and says what it
// would lose; with Force it writes the SQLite state over them.
func TestMigrateRefusesKVThatMovedOn(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(t *testing.T, kv membership.Store, sd *seeded)
		want   string
	}{
		{"room rekeyed in KV", func(t *testing.T, kv membership.Store, sd *seeded) {
			ch := sd.plansChain.NextRekey(sd.aliceID, []api.User{sd.alice, sd.bob, sd.dave})
			if _, err := kv.Rekey(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}, `room "plans" (` + "%plans): its history in the KV store is at statement 6, in SQLite at 5"},
		{"user revoked in KV", func(t *testing.T, kv membership.Store, sd *seeded) {
			if _, err := kv.RevokeUser(ctx, sd.bob.User, time.Now()); err != nil {
				t.Fatal(err)
			}
		}, `user "bob" (%bob) is revoked in the KV store but active in SQLite`},
		{"user only in KV", func(t *testing.T, kv membership.Store, sd *seeded) {
			storetest.CreateUsers(t, kv, storetest.NewUser(t, "erin"))
		}, `user "erin" (`},
		{"room only in KV", func(t *testing.T, kv membership.Store, sd *seeded) {
			storetest.CreateRoom(t, kv, sd.aliceID, api.Room{ID: api.NewRoomID(), Name: "kvonly", Creator: sd.alice.User, CreatedAt: time.Now()})
		}, `room "kvonly" (`},
		{"blob only in KV", func(t *testing.T, kv membership.Store, sd *seeded) {
			if err := kv.AddBlob(ctx, api.Blob{ID: fmt.Sprintf("%064x", 9), Room: sd.lobby.ID, Size: 1, Uploader: sd.bob.User, CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}, "exists only in the KV store"},
	}
	ns := teststore.NATS(t)
	js := testnats.JetStream(t, ns)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sd := seedSQLite(t)
			prefix := teststore.FreshPrefix()
			migrate(t, sd.path, js, prefix)
			kv := teststore.KV(t, ns, prefix)
			tt.change(t, kv, sd)
			want := strings.NewReplacer("%plans", sd.plans.ID, "%bob", sd.bob.User).Replace(tt.want)
			before := export(t, kv)
			sqlBefore := export(t, teststore.SQLite(t, sd.path))

			backups := 0
			opts := membership.MigrateOptions{KV: membership.KVConfig{Prefix: prefix}, Backup: func(context.Context) error { backups++; return nil }}
			_, err := migrateWith(t, sd.path, js, opts)
			var ahead *membership.KVAheadError
			if !errors.As(err, &ahead) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nothing was written") {
				t.Fatalf("migration over a KV store that moved on = %v; want a KVAheadError naming %q", err, want)
			}
			if backups != 0 {
				t.Errorf("a refused migration took %d backup(s); want none", backups)
			}
			if got := export(t, teststore.KV(t, ns, prefix)); !reflect.DeepEqual(got, before) {
				t.Fatalf("a refused migration changed the KV store:\n got %+v\nwant %+v", got, before)
			}
			if got := export(t, teststore.SQLite(t, sd.path)); !reflect.DeepEqual(got, sqlBefore) {
				t.Fatal("a refused migration changed the SQLite database")
			}

			opts.Force = true
			stats, err := migrateWith(t, sd.path, js, opts)
			if err != nil {
				t.Fatalf("forced migration: %v", err)
			}
			if backups != 1 || len(stats.Overwritten) != len(ahead.Differences) || !strings.Contains(strings.Join(stats.Overwritten, "\n"), want) {
				t.Fatalf("forced migration: %d backup(s), Overwritten %q; want one backup and the refusal's %q", backups, stats.Overwritten, ahead.Differences)
			}
			// SQLite's records are in the KV store as SQLite has them.
			got := export(t, teststore.KV(t, ns, prefix))
			for _, r := range sqlBefore.Rooms {
				i := slices.IndexFunc(got.Rooms, func(x api.Room) bool { return x.ID == r.ID })
				if i < 0 || !reflect.DeepEqual(got.Rooms[i], r) {
					t.Fatalf("room %s after the forced migration: %+v; want SQLite's %+v", r.Name, got.Rooms, r)
				}
			}
			for _, u := range sqlBefore.Users {
				i := slices.IndexFunc(got.Users, func(x api.User) bool { return x.User == u.User })
				if i < 0 || !reflect.DeepEqual(got.Users[i], u) {
					t.Fatalf("user %s after the forced migration differs from SQLite's", u.Name)
				}
			}
		})
	}
}

// TestMigrateUnchangedWritesNothing: buckets that hold exactly the
// database's state (served from for a while, with no change) are left
// alone, and no backup is taken.
func TestMigrateUnchangedWritesNothing(t *testing.T) {
	sd := seedSQLite(t)
	ns := teststore.NATS(t)
	js := testnats.JetStream(t, ns)
	prefix := teststore.FreshPrefix()
	migrate(t, sd.path, js, prefix)
	// Serving uses nonces, which are not part of the state.
	if err := teststore.KV(t, ns, prefix).UseNonce(context.Background(), "served", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	before := bucketStates(t, js)
	backups := 0
	stats, err := migrateWith(t, sd.path, js, membership.MigrateOptions{KV: membership.KVConfig{Prefix: prefix}, Backup: func(context.Context) error { backups++; return nil }})
	if err != nil || !stats.Unchanged || backups != 0 {
		t.Fatalf("migration onto its own copy: %v, Unchanged %v, %d backup(s); want nothing written and no backup", err, stats.Unchanged, backups)
	}
	if !strings.Contains(stats.String(), "nothing written") {
		t.Errorf("stats read %q; want them to say nothing was written", stats)
	}
	if after := bucketStates(t, js); !reflect.DeepEqual(after, before) {
		t.Fatalf("buckets after a migration that found its own copy: %v; before: %v", after, before)
	}
}
