package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// edit returns the JSON of v with the first old replaced by new: a body
// as an honest client sends it, changed the way an attacker would.
func edit(t testing.TB, v any, old, new string) []byte {
	t.Helper()
	b := jsonBody(t, v)
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s holds no %s", b, old)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// tokenNamed is id's public token under another name: what someone who
// hand-edits a token sends (the binding no longer matches, but the name
// is refused first).
func tokenNamed(id *identity.Identity, name string) string {
	p := id.Public()
	return "unibus1:" + name + ":" + p.User + ":" + p.XKey + ":" + base64.RawURLEncoding.EncodeToString(p.Binding)
}

// TestAttacksOnNamesAndJSONAreRefused sends, as a signed-in user, each
// request an attacker would try against the rules of names and JSON
// bodies: every one is refused with a 400 or 409 JSON error that says
// what is wrong, and the store holds nothing new.
func TestAttacksOnNamesAndJSONAreRefused(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	room := "/v1/rooms/" + f.room
	newRoom := func(name string) api.CreateRoomRequest {
		id := api.NewRoomID()
		return api.CreateRoomRequest{ID: id, Name: name, SealedKey: sealed73, Statement: createStatement(t, f.alice, id, name, true)}
	}
	carol := testbus.NewIdentity(t, "carol")
	addCarol := api.AddUserRequest{Token: carol.Public().Token(), Registration: register(t, f.alice, carol, api.RoleMember)}
	Bob := testbus.NewIdentity(t, "Bob")
	BOB := testbus.NewIdentity(t, "BOB")
	addBob := api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}},
		Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob}, nil)}
	rekey := api.RekeyRequest{FromEpoch: 1, Keys: []api.KeyGrant{{Member: f.alice.UserKey(), SealedKey: sealed73}},
		Statement: f.next(t, f.alice, f.room, roomchain.KindRekey, 2, nil, nil)}
	cases := []struct {
		name   string
		path   string
		body   any
		status int
		want   []string // parts of the error message
	}{
		// Names: control, bidi and invisible characters.
		{"room name with RLO", "/v1/rooms", newRoom("ops\u202etxt.exe"), 400, []string{"U+202E", "bidirectional"}},
		{"room name with isolates", "/v1/rooms", newRoom("a\u2066b\u2069"), 400, []string{"U+2066"}},
		{"room name with LRM", "/v1/rooms", newRoom("ops\u200e"), 400, []string{"U+200E"}},
		{"room name with ALM", "/v1/rooms", newRoom("ops\u061c"), 400, []string{"U+061C"}},
		{"room name with zero-width space", "/v1/rooms", newRoom("o\u200bps"), 400, []string{"U+200B", "zero-width"}},
		{"room name with ZWJ", "/v1/rooms", newRoom("o\u200dps"), 400, []string{"U+200D"}},
		{"room name with BOM", "/v1/rooms", newRoom("\ufeffops"), 400, []string{"U+FEFF"}},
		{"room name with escape", "/v1/rooms", newRoom("ops\x1b[2J"), 400, []string{"U+001B", "control"}},
		{"room name with C1 control", "/v1/rooms", newRoom("ops\u009b31m"), 400, []string{"U+009B"}},
		{"room name with Hangul filler", "/v1/rooms", newRoom("ops\u3164"), 400, []string{"U+3164"}},
		{"room name with tag characters", "/v1/rooms", newRoom("ops\U000e0069\U000e0067"), 400, []string{"U+E0069"}},
		{"room name with invalid UTF-8", "/v1/rooms", edit(t, newRoom("opsX"), `opsX`, "ops\xff"), 400, []string{"invalid UTF-8"}},
		{"user name with RLO", "/v1/users", api.AddUserRequest{Token: tokenNamed(carol, "carol\u202e"), Registration: addCarol.Registration}, 400, []string{"U+202E", "invalid name"}},
		{"user name with zero-width joiner", "/v1/users", api.AddUserRequest{Token: tokenNamed(carol, "ca\u200drol"), Registration: addCarol.Registration}, 400, []string{"U+200D"}},
		{"user name with escape", "/v1/users", api.AddUserRequest{Token: tokenNamed(carol, "carol\x1b]0;x\x07"), Registration: addCarol.Registration}, 400, []string{"U+001B"}},
		// User names are one name in any case.
		{"user Bob while bob exists", "/v1/users", api.AddUserRequest{Token: Bob.Public().Token(), Registration: register(t, f.alice, Bob, api.RoleMember)}, 409, []string{`"Bob" is taken by "bob"`, "regardless of case"}},
		{"user BOB while bob exists", "/v1/users", api.AddUserRequest{Token: BOB.Public().Token(), Registration: register(t, f.alice, BOB, api.RoleMember)}, 409, []string{`taken by "bob"`}},
		// JSON keys in another case than the field's, at every depth.
		{"NAME", "/v1/rooms", edit(t, newRoom("x"), `"name":`, `"NAME":`), 400, []string{`field "NAME"`, `write "name"`}},
		{"Sealed_Key", "/v1/rooms", edit(t, newRoom("x"), `"sealed_key":`, `"Sealed_Key":`), 400, []string{`field "Sealed_Key"`}},
		{"statement.Body", "/v1/rooms", edit(t, newRoom("x"), `"body":`, `"Body":`), 400, []string{`field "statement.Body"`, `write "body"`}},
		{"Token", "/v1/users", edit(t, addCarol, `"token":`, `"Token":`), 400, []string{`field "Token"`, `write "token"`}},
		{"registration.SIG", "/v1/users", edit(t, addCarol, `"sig":`, `"SIG":`), 400, []string{`field "registration.SIG"`}},
		{"kelvin sign", "/v1/users", edit(t, addCarol, `"token":`, `"to`+"\u212a"+`en":`), 400, []string{`write "token"`}},
		{"members[0].Member", room + "/members", edit(t, addBob, `"member":`, `"Member":`), 400, []string{`field "members[0].Member"`}},
		{"From_Epoch", room + "/rekey", edit(t, rekey, `"from_epoch":`, `"From_Epoch":`), 400, []string{`field "From_Epoch"`, `write "from_epoch"`}},
		{"keys[0].SEALED_KEY", room + "/rekey", edit(t, rekey, `"sealed_key":`, `"SEALED_KEY":`), 400, []string{`field "keys[0].SEALED_KEY"`}},
		// Unknown and repeated keys.
		{"unknown field", "/v1/users", edit(t, addCarol, `"token":`, `"role":"admin","token":`), 400, []string{`unknown field "role"`, `"token"`}},
		{"unknown nested field", "/v1/rooms", edit(t, newRoom("x"), `"sig":`, `"by":"x","sig":`), 400, []string{`unknown field "statement.by"`, `"body", "sig"`}},
		{"admin twice", "/v1/users", edit(t, addCarol, `"token":`, `"admin":false,"admin":true,"token":`), 400, []string{`field "admin" appears twice`}},
		{"name twice", "/v1/rooms", edit(t, newRoom("x"), `"name":"x"`, `"name":"x","name":"y"`), 400, []string{`field "name" appears twice`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump(t)
			r := f.call(t, f.alice, "POST", tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("POST %s = %d %s; want %d", tc.path, r.status, r.body, tc.status)
			}
			var e api.Error
			if err := json.Unmarshal(r.body, &e); err != nil || e.Code == "" || api.HTTPStatus(e.Code) != r.status || r.ctype != "application/json" {
				t.Fatalf("error body %q (%s) is not a JSON {code, error} of status %d", r.body, r.ctype, r.status)
			}
			for _, w := range tc.want {
				if !strings.Contains(e.Message, w) {
					t.Errorf("error %q does not say %q", e.Message, w)
				}
			}
			if after := f.dump(t); after != before {
				t.Fatalf("refused request changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	// Nobody above was registered under any name or key.
	for _, q := range []string{carol.UserKey(), Bob.UserKey(), BOB.UserKey(), "carol"} {
		if _, err := f.bus.Store.GetUser(context.Background(), q); api.ErrorCode(err) != api.CodeNotFound {
			t.Fatalf("GetUser(%s) after the refused adds = %v; want not_found", q, err)
		}
	}
	// The honest forms of the same requests go through.
	f.mustOK(t, f.alice, "POST", "/v1/users", addCarol)
	f.mustOK(t, f.alice, "POST", "/v1/rooms", newRoom("ops ✓ café"))
}

// TestUserLookupIgnoresCase: a user is found by its name in any case, over
// the API as in the store.
func TestUserLookupIgnoresCase(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	for _, q := range []string{"bob", "BOB", "Bob"} {
		r := f.call(t, f.alice, "GET", "/v1/users/"+q, nil)
		var u api.User
		if r.status != 200 || json.Unmarshal(r.body, &u) != nil || u.User != f.bob.UserKey() {
			t.Fatalf("GET /v1/users/%s = %d %s; want bob", q, r.status, r.body)
		}
	}
}
