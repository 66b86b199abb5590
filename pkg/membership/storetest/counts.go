package storetest

import "github.com/enmanuel/unibus/pkg/membership/store"

var countCases = []testCase{
	{"users_by_status_and_rooms", func(f *fixture) {
		c, ok := f.s.(store.Counter)
		if !ok {
			f.Skip("the store counts nothing (not a store.Counter)")
		}
		want := func(what string, active, revoked, rooms int) {
			f.Helper()
			got, err := c.Counts(f.ctx)
			if w := (store.Counts{ActiveUsers: active, RevokedUsers: revoked, Rooms: rooms}); err != nil || got != w {
				f.Fatalf("Counts %s = %+v, %v; want %+v", what, got, err, w)
			}
		}
		want("of an empty store", 0, 0, 0)
		alice := f.user("alice")
		f.user("bob")
		f.revoked("carol")
		want("after three users, one revoked", 2, 1, 0)
		f.room(alice, true)
		f.room(alice, false)
		want("after two rooms", 2, 1, 2)
	}},
}
