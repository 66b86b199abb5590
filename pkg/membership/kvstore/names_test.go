package kvstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/kvstore"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
)

// TestKVNamesWrittenBeforeFolding opens buckets written by a kvstore from
// before names were unique regardless of case: name keys in the case
// registered (n.Dave), and names differing only in case. Every user stays
// usable under its exact name and key, a name in any case finds its only
// user, a case that fits several is refused, and no new user takes any
// case of a name already there.
func TestKVNamesWrittenBeforeFolding(t *testing.T) {
	ctx := context.Background()
	ns := teststore.NATS(t)
	prefix := teststore.FreshPrefix()
	old := teststore.KV(t, ns, prefix)
	users := []api.User{storetest.NewUser(t, "Dave"), storetest.NewUser(t, "dave"), storetest.NewUser(t, "Erin")}
	for _, u := range users {
		if err := kvstore.PutUserAsBefore(ctx, old, u); err != nil {
			t.Fatal(err)
		}
	}
	dave, erin := users[1], users[2]
	// A node opened on those buckets, and the one that wrote them (which
	// sees the writes through its watch).
	for name, s := range map[string]store.Store{"new node": teststore.KV(t, ns, prefix), "same node": old} {
		t.Run(name, func(t *testing.T) {
			waitFor(t, 5*time.Second, "the store sees the three users", func() bool {
				l, err := s.ListUsers(ctx)
				return err == nil && len(l) == len(users)
			})
			for _, u := range users {
				for _, q := range []string{u.User, u.Name} {
					got, err := s.GetUser(ctx, q)
					if err != nil || got.User != u.User {
						t.Fatalf("GetUser(%q) = %s, %v; want %s", q, got.Name, err, u.Name)
					}
				}
			}
			if got, err := s.GetUser(ctx, "ERIN"); err != nil || got.User != erin.User {
				t.Fatalf(`GetUser("ERIN") = %s, %v; want Erin (stored under n.Erin)`, got.Name, err)
			}
			_, err := s.GetUser(ctx, "DAVE")
			if api.ErrorCode(err) != api.CodeConflict || !strings.Contains(err.Error(), `"Dave", "dave"`) {
				t.Fatalf(`GetUser("DAVE") = %v; want a conflict naming "Dave", "dave"`, err)
			}
			_, err = s.RevokeUser(ctx, "DAVE", time.Now())
			if api.ErrorCode(err) != api.CodeConflict {
				t.Fatalf(`RevokeUser("DAVE") = %v; want conflict`, err)
			}
			for _, c := range []struct{ name, holder string }{{"dAVE", "Dave"}, {"erin", "Erin"}, {"ERIN", "Erin"}} {
				err := s.CreateUser(ctx, storetest.NewUser(t, c.name))
				if api.ErrorCode(err) != api.CodeConflict || !strings.Contains(err.Error(), `"`+c.holder+`"`) {
					t.Fatalf("CreateUser(%s) = %v; want a conflict naming %q", c.name, err, c.holder)
				}
			}
			if l, err := s.ListUsers(ctx); err != nil || len(l) != len(users) {
				t.Fatalf("ListUsers after the refused adds = %d, %v; want %d", len(l), err, len(users))
			}
			if !s.IsAuthorized(dave.User) {
				t.Fatal("dave is not authorized")
			}
		})
	}
	// Revoking by a name in another case finds the user through the cache,
	// whatever its name key.
	s := teststore.KV(t, ns, prefix)
	got, err := s.RevokeUser(ctx, "erin", time.Now())
	if err != nil || got.User != erin.User || got.Status != api.StatusRevoked {
		t.Fatalf(`RevokeUser("erin") = %s %s, %v; want Erin revoked`, got.Name, got.Status, err)
	}
}
