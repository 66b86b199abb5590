package storetest

import (
	"bytes"
	"crypto/rand"
	"strconv"
	"strings"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
)

// seededIdentities returns two identities with the same keys and different
// names: what a user re-registering under another name would present.
func (f *fixture) seededIdentities(name1, name2 string) (*identity.Identity, *identity.Identity) {
	f.Helper()
	seed := make([]byte, 64)
	rand.Read(seed)
	a, err := identity.Generate(name1, bytes.NewReader(seed))
	if err != nil {
		f.Fatal(err)
	}
	b, err := identity.Generate(name2, bytes.NewReader(seed))
	if err != nil {
		f.Fatal(err)
	}
	if a.UserKey() != b.UserKey() {
		f.Fatal("seeded identities differ in user key")
	}
	return a, b
}

var userCases = []testCase{
	{"create_and_get", func(f *fixture) {
		alice := f.create(f.newIdentity("alice").Public(), api.RoleAdmin)
		bob := f.user("bob")
		for _, q := range []string{alice.User, alice.Name} {
			got, err := f.s.GetUser(f.ctx, q)
			if err != nil {
				f.Fatalf("GetUser(%s): %v", q, err)
			}
			wantUser(f, got, alice, "GetUser("+q+")")
		}
		got, err := f.s.GetUser(f.ctx, bob.Name)
		if err != nil {
			f.Fatal(err)
		}
		wantUser(f, got, bob, "GetUser(bob)")
		_, err = f.s.GetUser(f.ctx, "carol")
		wantCode(f, err, api.CodeNotFound, "GetUser of an unknown name")
		_, err = f.s.GetUser(f.ctx, f.newIdentity("carol").UserKey())
		wantCode(f, err, api.CodeNotFound, "GetUser of an unknown key")
		_, err = f.s.GetUser(f.ctx, "")
		wantCode(f, err, api.CodeNotFound, "GetUser of the empty string")
	}},

	{"duplicate_key", func(f *fixture) {
		id1, id2 := f.seededIdentities("alice", "alice2")
		alice := f.create(id1.Public(), api.RoleMember)
		before := f.snapshot("", alice)
		err := f.s.CreateUser(f.ctx, alice)
		wantCode(f, err, api.CodeConflict, "CreateUser of the same user twice")
		f.unchanged(before, "CreateUser of the same user twice")
		u := api.User{Public: id2.Public(), Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()}
		err = f.s.CreateUser(f.ctx, u)
		wantCode(f, err, api.CodeConflict, "CreateUser of a taken key under a new name")
		f.unchanged(before, "CreateUser of a taken key under a new name")
		_, err = f.s.GetUser(f.ctx, "alice2")
		wantCode(f, err, api.CodeNotFound, "GetUser of the refused name")
	}},

	{"duplicate_name", func(f *fixture) {
		alice := f.user("alice")
		before := f.snapshot("", alice)
		other := f.newIdentity("alice")
		err := f.s.CreateUser(f.ctx, api.User{Public: other.Public(), Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()})
		wantCode(f, err, api.CodeConflict, "CreateUser of a taken name")
		f.unchanged(before, "CreateUser of a taken name")
		if f.s.IsAuthorized(other.UserKey()) {
			f.Fatal("the refused user is authorized")
		}
	}},

	{"refused_users", func(f *fixture) {
		alice := f.user("alice")
		before := f.snapshot("", alice)
		good := f.newIdentity("bob").Public()
		tampered := good
		tampered.Binding = bytes.Clone(good.Binding)
		tampered.Binding[0] ^= 1
		renamed := good
		renamed.Name = "mallory" // the binding covers the name
		otherX := good
		otherX.XKey = f.newIdentity("eve").Public().XKey // and the xkey
		ok := api.User{Public: good, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()}
		cases := map[string]api.User{
			"bad binding":    {Public: tampered, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()},
			"renamed":        {Public: renamed, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()},
			"swapped xkey":   {Public: otherX, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()},
			"no binding":     {Public: identity.Public{Name: good.Name, User: good.User, XKey: good.XKey}, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()},
			"bad role":       {Public: good, Role: "root", Status: api.StatusActive, CreatedAt: f.now()},
			"empty role":     {Public: good, Status: api.StatusActive, CreatedAt: f.now()},
			"bad status":     {Public: good, Role: api.RoleMember, Status: "suspended", CreatedAt: f.now()},
			"empty status":   {Public: good, Role: api.RoleMember, CreatedAt: f.now()},
			"not a user key": {Public: identity.Public{Name: "bob", User: "bob", XKey: good.XKey, Binding: good.Binding}, Role: api.RoleMember, Status: api.StatusActive},
			"invalid name":   {Public: identity.Public{Name: "bob smith", User: good.User, XKey: good.XKey, Binding: good.Binding}, Role: api.RoleMember, Status: api.StatusActive},
		}
		// Names that reorder, hide or escape text: refused before the
		// binding is looked at.
		for _, name := range []string{"bob\u202egnp.exe", "b\u2066ob\u2069", "bo\u200eb", "bo\u061cb", "b\u200bob", "bo\u200db", "\ufeffbob", "bob\x1b[2J", "bob\x00", "bob\u0085", "bob\u00ad", "b\u3164ob", "bob\ufe0f", "bob\xff"} {
			cases["name "+strconv.Quote(name)] = api.User{Public: identity.Public{Name: name, User: good.User, XKey: good.XKey, Binding: good.Binding}, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()}
		}
		for what, u := range cases {
			err := f.s.CreateUser(f.ctx, u)
			wantCode(f, err, api.CodeInvalid, "CreateUser with "+what)
			f.unchanged(before, "CreateUser with "+what)
			if _, err := f.s.GetUser(f.ctx, good.User); api.ErrorCode(err) != api.CodeNotFound {
				f.Fatalf("after CreateUser with %s: GetUser(%s) = %v, want not_found", what, good.User, err)
			}
			if f.s.IsAuthorized(good.User) {
				f.Fatalf("after CreateUser with %s: the refused user is authorized", what)
			}
		}
		// The untouched identity is accepted.
		if err := f.s.CreateUser(f.ctx, ok); err != nil {
			f.Fatalf("CreateUser of the valid identity: %v", err)
		}
	}},

	{"list_oldest_first", func(f *fixture) {
		users, err := f.s.ListUsers(f.ctx)
		if err != nil || len(users) != 0 {
			f.Fatalf("ListUsers of an empty store = %v, %v", users, err)
		}
		t0 := f.now()
		t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
		mk := func(name string, at time.Time) api.User {
			u := api.User{Public: f.newIdentity(name).Public(), Role: api.RoleMember, Status: api.StatusActive, CreatedAt: at}
			if err := f.s.CreateUser(f.ctx, u); err != nil {
				f.Fatal(err)
			}
			return u
		}
		c := mk("carol", t2)
		a := mk("alice", t0)
		b := mk("bob", t1)
		users, err = f.s.ListUsers(f.ctx)
		if err != nil {
			f.Fatal(err)
		}
		if len(users) != 3 {
			f.Fatalf("ListUsers returned %d users, want 3", len(users))
		}
		for i, want := range []api.User{a, b, c} {
			wantUser(f, users[i], want, "ListUsers["+want.Name+"]")
		}
	}},

	{"revoke", func(f *fixture) {
		alice := f.user("alice")
		bob := f.user("bob")
		if !f.s.IsAuthorized(alice.User) {
			f.Fatal("active user not authorized")
		}
		at := f.now()
		got, err := f.s.RevokeUser(f.ctx, alice.Name, at)
		if err != nil {
			f.Fatal(err)
		}
		want := alice
		want.Status = api.StatusRevoked
		want.RevokedAt = &at
		wantUser(f, got, want, "RevokeUser by name")
		if f.s.IsAuthorized(alice.User) {
			f.Fatal("revoked user still authorized")
		}
		if !f.s.IsAuthorized(bob.User) {
			f.Fatal("revoking alice deauthorized bob")
		}
		// Again, by key and later: the first time is kept.
		got, err = f.s.RevokeUser(f.ctx, alice.User, f.now())
		if err != nil {
			f.Fatalf("second RevokeUser: %v", err)
		}
		wantUser(f, got, want, "second RevokeUser")
		got, err = f.s.GetUser(f.ctx, alice.User)
		if err != nil {
			f.Fatal(err)
		}
		wantUser(f, got, want, "GetUser after revoke")
		before := f.snapshot("", alice, bob)
		_, err = f.s.RevokeUser(f.ctx, "carol", f.now())
		wantCode(f, err, api.CodeNotFound, "RevokeUser of an unknown name")
		_, err = f.s.RevokeUser(f.ctx, f.newIdentity("carol").UserKey(), f.now())
		wantCode(f, err, api.CodeNotFound, "RevokeUser of an unknown key")
		f.unchanged(before, "RevokeUser of an unknown user")
	}},

	{"is_authorized", func(f *fixture) {
		alice := f.user("alice")
		carol := f.revoked("carol")
		for _, c := range []struct {
			key  string
			want bool
		}{
			{alice.User, true},
			{carol.User, false},
			{f.newIdentity("dave").UserKey(), false},
			{alice.Name, false},
			{"", false},
			{strings.ToLower(alice.User), false},
		} {
			if got := f.s.IsAuthorized(c.key); got != c.want {
				f.Fatalf("IsAuthorized(%q) = %v, want %v", c.key, got, c.want)
			}
		}
	}},

	{"key_before_name", func(f *fixture) {
		// A name may look like a user key; GetUser tries the key first,
		// then the name.
		alice := f.user("alice")
		keyLike := "U" + strings.Repeat("X", 55)
		odd := f.user(keyLike)
		got, err := f.s.GetUser(f.ctx, keyLike)
		if err != nil {
			f.Fatalf("GetUser of a key-shaped name: %v", err)
		}
		wantUser(f, got, odd, "GetUser of a key-shaped name")
		// A user named after alice's key: the key wins.
		impostor := f.user(alice.User)
		got, err = f.s.GetUser(f.ctx, alice.User)
		if err != nil {
			f.Fatal(err)
		}
		wantUser(f, got, alice, "GetUser of a key that is also a name")
		got, err = f.s.GetUser(f.ctx, impostor.User)
		if err != nil {
			f.Fatal(err)
		}
		wantUser(f, got, impostor, "GetUser of the impostor by key")
		got, err = f.s.RevokeUser(f.ctx, alice.User, f.now())
		if err != nil {
			f.Fatal(err)
		}
		if got.User != alice.User {
			f.Fatalf("RevokeUser of a key that is also a name revoked %s, want %s", got.Name, alice.Name)
		}
		if !f.s.IsAuthorized(impostor.User) {
			f.Fatal("the user named after the revoked key was revoked too")
		}
	}},

	{"no_aliasing", func(f *fixture) {
		alice := f.user("alice")
		got, err := f.s.GetUser(f.ctx, alice.User)
		if err != nil {
			f.Fatal(err)
		}
		got.Binding[0] ^= 0xff
		list, err := f.s.ListUsers(f.ctx)
		if err != nil {
			f.Fatal(err)
		}
		list[0].Binding[1] ^= 0xff
		again, err := f.s.GetUser(f.ctx, alice.User)
		if err != nil {
			f.Fatal(err)
		}
		wantUser(f, again, alice, "GetUser after changing returned values")
	}},

	{"name_unique_regardless_of_case", func(f *fixture) {
		dave := f.user("dave")
		Eve := f.user("Eve")
		before := f.snapshot("", dave, Eve)
		for _, c := range []struct{ name, holder string }{
			{"Dave", "dave"}, {"DAVE", "dave"}, {"dAvE", "dave"}, {"dave", "dave"},
			{"eve", "Eve"}, {"EVE", "Eve"},
		} {
			other := f.newIdentity(c.name)
			err := f.s.CreateUser(f.ctx, api.User{Public: other.Public(), Role: api.RoleMember, Status: api.StatusActive, CreatedAt: f.now()})
			what := "CreateUser of " + c.name + " while " + c.holder + " is registered"
			wantCode(f, err, api.CodeConflict, what)
			wantMention(f, err, strconv.Quote(c.holder), what)
			f.unchanged(before, what)
			if f.s.IsAuthorized(other.UserKey()) {
				f.Fatalf("%s: the refused user is authorized", what)
			}
			if _, err := f.s.GetUser(f.ctx, other.UserKey()); api.ErrorCode(err) != api.CodeNotFound {
				f.Fatalf("%s: GetUser of the refused key = %v; want not_found", what, err)
			}
		}
		// Names that only look alike in other ways are other names.
		f.user("dave2")
		f.user("dave.")
	}},

	{"get_by_name_regardless_of_case", func(f *fixture) {
		dave := f.user("Dave")
		bob := f.user("bob")
		for _, q := range []string{"Dave", "dave", "DAVE", "dAVE"} {
			got, err := f.s.GetUser(f.ctx, q)
			if err != nil {
				f.Fatalf("GetUser(%q): %v", q, err)
			}
			wantUser(f, got, dave, "GetUser("+q+")")
		}
		got, err := f.s.GetUser(f.ctx, "BOB")
		if err != nil {
			f.Fatalf("GetUser(BOB): %v", err)
		}
		wantUser(f, got, bob, "GetUser(BOB)")
		for _, q := range []string{"davey", "dav", "Dave ", "d\u200bave"} {
			_, err := f.s.GetUser(f.ctx, q)
			wantCode(f, err, api.CodeNotFound, "GetUser("+strconv.Quote(q)+")")
		}
		// A key is not a name: a key in another case finds nobody.
		_, err = f.s.GetUser(f.ctx, strings.ToLower(dave.User))
		wantCode(f, err, api.CodeNotFound, "GetUser of a lower-cased user key")
		// RevokeUser finds its user the same way.
		got, err = f.s.RevokeUser(f.ctx, "dAvE", f.now())
		if err != nil {
			f.Fatalf("RevokeUser(dAvE): %v", err)
		}
		if got.User != dave.User || got.Status != api.StatusRevoked {
			f.Fatalf("RevokeUser(dAvE) = %s %s; want %s revoked", got.Name, got.Status, dave.Name)
		}
		if f.s.IsAuthorized(dave.User) || !f.s.IsAuthorized(bob.User) {
			f.Fatal("RevokeUser(dAvE) revoked the wrong user")
		}
	}},
}
