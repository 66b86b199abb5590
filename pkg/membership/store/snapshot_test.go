package store_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

func TestSnapshotSortIsCanonical(t *testing.T) {
	t0 := time.Unix(100, 0).UTC()
	u := func(key string, at time.Time) api.User {
		var x api.User
		x.User, x.CreatedAt = key, at
		return x
	}
	a := &store.Snapshot{
		Users:      []api.User{u("UB", t0), u("UA", t0), u("UC", t0.Add(-time.Second))},
		SealedKeys: []store.SealedKeyRecord{{Room: "r", Epoch: 2, Member: "UA"}, {Room: "r", Epoch: 1, Member: "UB"}, {Room: "q", Epoch: 3}},
		Members:    []store.MemberRecord{{Room: "r", User: "UB", Since: 1}, {Room: "r", User: "UA", Since: 2}, {Room: "r", User: "UC", Since: 1}},
		Statements: []store.StatementRecord{{Room: "r", Seq: 2}, {Room: "r", Seq: 1}},
	}
	a.Sort()
	var users, keys, members []string
	for _, x := range a.Users {
		users = append(users, x.User)
	}
	for _, k := range a.SealedKeys {
		keys = append(keys, k.Room+k.Member)
	}
	for _, m := range a.Members {
		members = append(members, m.User)
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"users", users, []string{"UC", "UA", "UB"}},
		{"sealed keys", keys, []string{"q", "rUB", "rUA"}},
		{"members", members, []string{"UB", "UC", "UA"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("Sort: %s in order %v; want %v", c.what, c.got, c.want)
		}
	}
	if a.Statements[0].Seq != 1 || a.Rooms == nil || a.Blobs == nil {
		t.Errorf("Sort: statements %v, rooms %v, blobs %v", a.Statements, a.Rooms, a.Blobs)
	}
}
