package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/reqsig"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// apiFixture is a bus with alice (admin, member of an encrypted room and a
// cleartext room), bob (member, in neither room) and a blob in the room.
type apiFixture struct {
	bus      *testbus.Bus
	alice    *identity.Identity
	bob      *identity.Identity
	stranger *identity.Identity
	revoked  *identity.Identity
	room     string
	clear    string
	blob     string
}

var sealed73 = bytes.Repeat([]byte{1}, 73)

func newAPIFixture(t testing.TB, mode httpapi.AuthMode) *apiFixture {
	t.Helper()
	f := &apiFixture{bus: testbus.Start(t, testbus.Options{Mode: mode})}
	f.bus.Server.MaxBlobBytes = 1 << 20
	f.alice = testbus.NewIdentity(t, "alice")
	f.bob = testbus.NewIdentity(t, "bob")
	f.stranger = testbus.NewIdentity(t, "stranger")
	f.revoked = testbus.NewIdentity(t, "revoked")
	f.bus.AddUser(t, f.alice, api.RoleAdmin)
	f.bus.AddUser(t, f.bob, api.RoleMember)
	f.bus.AddUser(t, f.revoked, api.RoleMember)
	if _, err := f.bus.Store.RevokeUser(context.Background(), "revoked", time.Now()); err != nil {
		t.Fatal(err)
	}
	f.room = api.NewRoomID()
	f.mustOK(t, f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: f.room, Name: "ops", SealedKey: sealed73, Statement: createStatement(t, f.alice, f.room, "ops", true)})
	f.clear = api.NewRoomID()
	f.mustOK(t, f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: f.clear, Name: "lobby", Cleartext: true, Statement: createStatement(t, f.alice, f.clear, "lobby", false)})
	blob := []byte("ciphertext of a file")
	sum := sha256.Sum256(blob)
	resp := f.send(t, f.alice, "POST", "/v1/rooms/"+f.room+"/blobs", blob, sum, "application/octet-stream")
	if resp.status != 201 {
		t.Fatalf("blob upload = %d %s", resp.status, resp.body)
	}
	f.blob = hex.EncodeToString(sum[:])
	return f
}

// register signs admin's registration of user with role.
func register(t testing.TB, admin, user *identity.Identity, role string) identity.SignedRegistration {
	t.Helper()
	r, err := identity.SignRegistration(identity.Registration{User: user.Public(), Role: role, By: admin.UserKey(), Time: time.Now().UnixMilli()}, admin.SigningKey())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// createStatement signs the creation statement of a room.
func createStatement(t testing.TB, actor *identity.Identity, room, name string, encrypted bool) roomchain.Signed {
	t.Helper()
	s, err := roomchain.Sign(roomchain.Statement{Version: roomchain.Version, Room: room, Seq: 1, Kind: roomchain.KindCreate, Actor: actor.UserKey(), Epoch: 1, Name: name, Encrypted: encrypted,
		Add: []roomchain.Member{{Public: actor.Public(), Role: roomchain.RoleAdmin}}, Admins: []string{actor.UserKey()}, Time: time.Now().UnixMilli()}, actor.SigningKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// next signs, as actor, the statement that follows the room's stored
// history: kind, epoch, the members added (as plain members) and removed,
// and the admins that leaves.
func (f *apiFixture) next(t testing.TB, actor *identity.Identity, room, kind string, epoch uint64, add []*identity.Identity, remove []*identity.Identity) roomchain.Signed {
	t.Helper()
	sts, err := f.bus.Store.Statements(context.Background(), room, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := roomchain.Verify(room, sts)
	if err != nil {
		t.Fatal(err)
	}
	var added []roomchain.Member
	for _, a := range add {
		added = append(added, roomchain.Member{Public: a.Public(), Role: roomchain.RoleMember})
	}
	var removed []string
	for _, r := range remove {
		removed = append(removed, r.UserKey())
	}
	s, err := roomchain.Sign(roomchain.Statement{Version: roomchain.Version, Room: room, Seq: st.Seq + 1, Prev: st.Head, Kind: kind, Actor: actor.UserKey(), Epoch: epoch,
		Add: added, Remove: removed, Admins: st.AdminsAfter(added, removed), Time: time.Now().UnixMilli()}, actor.SigningKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type response struct {
	status int
	body   []byte
	ctype  string
}

// send makes one request signed by id (nil: unsigned) over digest.
func (f *apiFixture) send(t testing.TB, id *identity.Identity, method, path string, body []byte, digest [32]byte, ctype string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.bus.HTTP.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if id != nil {
		sig, err := reqsig.Sign(id, method, req.URL.RequestURI(), digest, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", sig.String())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: b, ctype: resp.Header.Get("Content-Type")}
}

func jsonBody(t testing.TB, v any) []byte {
	t.Helper()
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *apiFixture) call(t testing.TB, id *identity.Identity, method, path string, body any) response {
	t.Helper()
	b := jsonBody(t, body)
	ct := ""
	if b != nil {
		ct = "application/json"
	}
	return f.send(t, id, method, path, b, sha256.Sum256(b), ct)
}

func (f *apiFixture) mustOK(t testing.TB, id *identity.Identity, method, path string, body any) {
	t.Helper()
	if r := f.call(t, id, method, path, body); r.status >= 300 {
		t.Fatalf("%s %s = %d %s", method, path, r.status, r.body)
	}
}

// dump renders everything the store holds that the API can change.
func (f *apiFixture) dump(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	s := f.bus.Store
	var b strings.Builder
	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, u := range users {
		j, _ := json.Marshal(u)
		b.Write(j)
		rooms, _ := s.RoomsOf(ctx, u.User)
		for _, r := range rooms {
			if seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			j, _ := json.Marshal(r)
			b.Write(j)
			ms, _ := s.Members(ctx, r.ID, true)
			j, _ = json.Marshal(ms)
			b.Write(j)
			for _, m := range ms {
				ks, _ := s.SealedKeys(ctx, r.ID, m.User, 0)
				j, _ = json.Marshal(ks)
				b.Write(j)
			}
		}
	}
	return b.String()
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthOff)
	room, clear := "/v1/rooms/"+f.room, "/v1/rooms/"+f.clear
	big := `{"token":"` + strings.Repeat("a", api.MaxJSONBody) + `"}`
	rekey2 := f.next(t, f.alice, f.room, roomchain.KindRekey, 2, nil, nil)
	newID := api.NewRoomID()
	cases := []struct {
		name   string
		who    *identity.Identity
		method string
		path   string
		body   any
		status int
	}{
		{"unsigned", nil, "GET", "/v1/rooms", nil, 401},
		{"unknown user", f.stranger, "GET", "/v1/rooms", nil, 401},
		{"revoked user", f.revoked, "GET", "/v1/rooms", nil, 403},
		{"unknown route", f.alice, "GET", "/v1/nothing", nil, 404},
		{"wrong method", f.alice, "DELETE", "/v1/rooms", nil, 405},
		{"body on a GET", f.alice, "GET", "/v1/rooms", `{}`, 400},
		{"user add: malformed JSON", f.alice, "POST", "/v1/users", `{"token":`, 400},
		{"user add: unknown field", f.alice, "POST", "/v1/users", `{"token":"x","role":"admin"}`, 400},
		{"user add: trailing data", f.alice, "POST", "/v1/users", `{"token":"x"} {}`, 400},
		{"user add: empty body", f.alice, "POST", "/v1/users", ``, 400},
		{"user add: bad token", f.alice, "POST", "/v1/users", api.AddUserRequest{Token: "unibus1:x"}, 400},
		{"user add: oversize", f.alice, "POST", "/v1/users", big, 413},
		{"user add: by a member", f.bob, "POST", "/v1/users", api.AddUserRequest{Token: f.stranger.Public().Token()}, 403},
		{"user add: duplicate", f.alice, "POST", "/v1/users", api.AddUserRequest{Token: f.bob.Public().Token(), Registration: register(t, f.alice, f.bob, api.RoleMember)}, 409},
		{"user add: no registration", f.alice, "POST", "/v1/users", api.AddUserRequest{Token: f.stranger.Public().Token()}, 400},
		{"user add: registration of another identity", f.alice, "POST", "/v1/users", api.AddUserRequest{Token: f.stranger.Public().Token(), Registration: register(t, f.alice, f.bob, api.RoleMember)}, 400},
		{"user add: registration with another role", f.alice, "POST", "/v1/users", api.AddUserRequest{Token: f.stranger.Public().Token(), Admin: true, Registration: register(t, f.alice, f.stranger, api.RoleMember)}, 400},
		{"user add: registration by someone else", f.alice, "POST", "/v1/users", api.AddUserRequest{Token: f.stranger.Public().Token(), Registration: register(t, f.bob, f.stranger, api.RoleMember)}, 400},
		{"user list: by a member", f.bob, "GET", "/v1/users", nil, 403},
		{"user get: unknown", f.alice, "GET", "/v1/users/nobody", nil, 404},
		{"user revoke: unknown", f.alice, "POST", "/v1/users/nobody/revoke", nil, 404},
		{"user revoke: by a member", f.bob, "POST", "/v1/users/alice/revoke", nil, 403},
		{"user revoke: fields", f.alice, "POST", "/v1/users/bob/revoke", `{"now":true}`, 400},
		{"room create: empty name", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: api.NewRoomID(), SealedKey: sealed73}, 400},
		{"room create: control char", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: api.NewRoomID(), Name: "a\x00b", SealedKey: sealed73}, 400},
		{"room create: no key", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: api.NewRoomID(), Name: "x"}, 400},
		{"room create: no id", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{Name: "x", SealedKey: sealed73}, 400},
		{"room create: bad id", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: "../../etc", Name: "x", SealedKey: sealed73}, 400},
		{"room create: taken id", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: f.room, Name: "x", SealedKey: sealed73, Statement: createStatement(t, f.alice, f.room, "x", true)}, 409},
		{"room create: no statement", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: api.NewRoomID(), Name: "x", SealedKey: sealed73}, 400},
		{"room create: statement for another room", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: api.NewRoomID(), Name: "x", SealedKey: sealed73, Statement: createStatement(t, f.alice, api.NewRoomID(), "x", true)}, 400},
		{"room create: statement by another user", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: newID, Name: "x", SealedKey: sealed73, Statement: createStatement(t, f.bob, newID, "x", true)}, 400},
		{"room create: huge key", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{ID: api.NewRoomID(), Name: "x", SealedKey: make([]byte, 1000)}, 400},
		{"room create: cleartext with key", f.alice, "POST", "/v1/rooms", api.CreateRoomRequest{Name: "x", Cleartext: true, SealedKey: sealed73}, 400},
		{"room create: wrong content type", f.alice, "POST", "/v1/rooms", nil, 415},
		{"room show: malformed id", f.alice, "GET", "/v1/rooms/..%2f..%2fetc", nil, 404},
		{"room show: unknown", f.alice, "GET", "/v1/rooms/" + api.NewRoomID(), nil, 404},
		{"room show: non-member", f.bob, "GET", room, nil, 404},
		{"members: non-member", f.bob, "GET", room + "/members", nil, 404},
		{"members: bad history", f.alice, "GET", room + "/members?history=maybe", nil, 400},
		{"room: bad members", f.alice, "GET", room + "?members=some", nil, 400},
		{"member add: non-member caller", f.bob, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}}}, 404},
		{"member add: unknown user", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "nobody", SealedKey: sealed73}}}, 404},
		{"member add: revoked user", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "revoked", SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.revoked}, nil)}, 400},
		{"member add: no statement", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}}}, 400},
		{"member add: statement adds another user", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.stranger}, nil)}, 400},
		{"member add: statement signed by a non-member", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}}, Statement: f.next(t, f.bob, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob}, nil)}, 400},
		{"member add: stale epoch", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 7, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob}, nil)}, 409},
		{"member add: already a member", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "alice", SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, nil, nil)}, 409},
		{"member add: no key", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob"}}}, 400},
		{"member add: nobody", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob}, nil)}, 400},
		{"member add: one of two revoked", f.alice, "POST", room + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}, {Member: "revoked", SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob, f.revoked}, nil)}, 400},
		{"member add: key in cleartext room", f.alice, "POST", clear + "/members", api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: "bob", SealedKey: sealed73}}}, 400},
		{"rekey: leaves out a member", f.alice, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 1, Statement: rekey2}, 400},
		{"rekey: no statement", f.alice, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 1, Keys: []api.KeyGrant{{Member: f.alice.UserKey(), SealedKey: sealed73}}}, 400},
		{"rekey: statement of an add", f.alice, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 1, Keys: []api.KeyGrant{{Member: f.alice.UserKey(), SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob}, nil)}, 400},
		{"rekey: seals for a non-member", f.alice, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 1, Keys: []api.KeyGrant{{Member: f.alice.UserKey(), SealedKey: sealed73}, {Member: f.bob.UserKey(), SealedKey: sealed73}}, Statement: rekey2}, 400},
		{"rekey: removes a non-member", f.alice, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 1, Remove: []string{f.bob.UserKey()}, Keys: []api.KeyGrant{{Member: f.alice.UserKey(), SealedKey: sealed73}}, Statement: rekey2}, 400},
		{"rekey: stale epoch", f.alice, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 5, Keys: []api.KeyGrant{{Member: f.alice.UserKey(), SealedKey: sealed73}}, Statement: rekey2}, 409},
		{"rekey: empty key", f.alice, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 1, Keys: []api.KeyGrant{{Member: f.alice.UserKey()}}, Statement: rekey2}, 400},
		{"rekey: non-member caller", f.bob, "POST", room + "/rekey", api.RekeyRequest{FromEpoch: 1, Keys: []api.KeyGrant{{Member: f.alice.UserKey(), SealedKey: sealed73}}}, 404},
		{"keys: bad epoch", f.alice, "GET", room + "/keys?epoch=zero", nil, 400},
		{"keys: epoch 0", f.alice, "GET", room + "/keys?epoch=0", nil, 400},
		{"keys: non-member", f.bob, "GET", room + "/keys", nil, 404},
		{"blob get: malformed id", f.alice, "GET", room + "/blobs/..%2f..%2fetc%2fpasswd", nil, 400},
		{"blob get: upper-case id", f.alice, "GET", room + "/blobs/" + strings.ToUpper(f.blob), nil, 400},
		{"blob get: unknown", f.alice, "GET", room + "/blobs/" + strings.Repeat("0", 64), nil, 404},
		{"blob get: non-member", f.bob, "GET", room + "/blobs/" + f.blob, nil, 404},
		{"blob get: other room", f.alice, "GET", clear + "/blobs/" + f.blob, nil, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.dump(t)
			var r response
			if tc.name == "room create: wrong content type" {
				b := jsonBody(t, api.CreateRoomRequest{ID: api.NewRoomID(), Name: "x", SealedKey: sealed73})
				r = f.send(t, tc.who, tc.method, tc.path, b, sha256.Sum256(b), "text/plain")
			} else {
				r = f.call(t, tc.who, tc.method, tc.path, tc.body)
			}
			if r.status != tc.status {
				t.Fatalf("%s %s = %d %s; want %d", tc.method, tc.path, r.status, r.body, tc.status)
			}
			var e api.Error
			if err := json.Unmarshal(r.body, &e); err != nil || e.Message == "" || e.Code == "" || r.ctype != "application/json" {
				t.Fatalf("error body %q (%s) is not a JSON {code, error}", r.body, r.ctype)
			}
			if api.HTTPStatus(e.Code) != r.status {
				t.Fatalf("code %q maps to %d, answered %d", e.Code, api.HTTPStatus(e.Code), r.status)
			}
			if after := f.dump(t); after != before {
				t.Fatalf("refused request changed the store:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestBlobUploadRefusals(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthOff)
	path := "/v1/rooms/" + f.room + "/blobs"
	data := []byte("some ciphertext")
	good := sha256.Sum256(data)
	var wrong [32]byte
	rand.Read(wrong[:])
	huge := make([]byte, 1<<20+1)
	cases := []struct {
		name   string
		who    *identity.Identity
		body   []byte
		digest [32]byte
		ctype  string
		status int
	}{
		{"digest mismatch", f.alice, data, wrong, "application/octet-stream", 400},
		{"over the ceiling", f.alice, huge, sha256.Sum256(huge), "application/octet-stream", 413},
		{"wrong content type", f.alice, data, good, "application/json", 415},
		{"non-member", f.bob, data, good, "application/octet-stream", 404},
		{"unsigned", nil, data, good, "application/octet-stream", 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := f.send(t, tc.who, "POST", path, tc.body, tc.digest, tc.ctype)
			if r.status != tc.status {
				t.Fatalf("upload = %d %s; want %d", r.status, r.body, tc.status)
			}
			if r := f.call(t, f.alice, "GET", path+"/"+hex.EncodeToString(tc.digest[:]), nil); r.status != 404 && !bytes.Equal(tc.digest[:], good[:]) {
				t.Fatalf("refused blob is readable: %d", r.status)
			}
		})
	}
	// Nothing half-written is left in the blob directory's final names.
	if r := f.call(t, f.alice, "GET", path+"/"+hex.EncodeToString(good[:]), nil); r.status != 404 {
		t.Fatalf("a blob from a refused upload exists: %d", r.status)
	}
}

func TestEnforceModeChecksSignatures(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	id := api.NewRoomID()
	body := jsonBody(t, api.CreateRoomRequest{ID: id, Name: "x", Cleartext: true, Statement: createStatement(t, f.alice, id, "x", false)})
	sign := func(method, uri string, digest [32]byte, at time.Time) string {
		s, err := reqsig.Sign(f.alice, method, uri, digest, at, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.String()
	}
	otherBody := sha256.Sum256([]byte(`{"name":"y","cleartext":true}`))
	badSig, _ := reqsig.Parse(sign("POST", "/v1/rooms", sha256.Sum256(body), time.Now()))
	badSig.Sig[0] ^= 1
	forgedBy := func() string {
		s, _ := reqsig.Parse(sign("POST", "/v1/rooms", sha256.Sum256(body), time.Now()))
		s.User = f.bob.UserKey()
		return s.String()
	}
	cases := map[string]string{
		"signature over another body": sign("POST", "/v1/rooms", otherBody, time.Now()),
		"signature over another path": sign("POST", "/v1/users", sha256.Sum256(body), time.Now()),
		"bad signature":               badSig.String(),
		"claimed by another user":     forgedBy(),
		"stale":                       sign("POST", "/v1/rooms", sha256.Sum256(body), time.Now().Add(-time.Hour)),
		"from the future":             sign("POST", "/v1/rooms", sha256.Sum256(body), time.Now().Add(time.Hour)),
		"malformed":                   "Unibus-Ed25519 user=U",
		"missing":                     "",
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			before := f.dump(t)
			req, _ := http.NewRequest("POST", f.bus.HTTP.URL+"/v1/rooms", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if h != "" {
				req.Header.Set("Authorization", h)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("status = %d; want 401", resp.StatusCode)
			}
			if f.dump(t) != before {
				t.Fatal("refused request changed the store")
			}
		})
	}
	// The genuine request goes through.
	req, _ := http.NewRequest("POST", f.bus.HTTP.URL+"/v1/rooms", bytes.NewReader(body))
	req.Header.Set("Authorization", sign("POST", "/v1/rooms", sha256.Sum256(body), time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("genuine request = %d; want 201", resp.StatusCode)
	}
}

func TestEnforceModeRefusesReplaysAcrossRestarts(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	id := api.NewRoomID()
	body := jsonBody(t, api.CreateRoomRequest{ID: id, Name: "once", Cleartext: true, Statement: createStatement(t, f.alice, id, "once", false)})
	sig, err := reqsig.Sign(f.alice, "POST", "/v1/rooms", sha256.Sum256(body), time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	post := func() int {
		req, _ := http.NewRequest("POST", f.bus.HTTP.URL+"/v1/rooms", bytes.NewReader(body))
		req.Header.Set("Authorization", sig.String())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(); got != 201 {
		t.Fatalf("first request = %d; want 201", got)
	}
	// The nonce outlives a restart of the server.
	f.bus.HTTP.Close()
	f.bus.Conn.Close()
	f.bus.NATS.Shutdown()
	f.bus.NATS.WaitForShutdown()
	f.bus.Store.Close()
	f.bus = testbus.Start(t, testbus.Options{Mode: httpapi.AuthEnforce, Dir: f.bus.Dir})
	before := f.dump(t)
	if got := post(); got != 401 {
		t.Fatalf("replayed request = %d; want 401", got)
	}
	if f.dump(t) != before {
		t.Fatal("replayed request changed the store")
	}
}

func TestHealthAndInfoNeedNoSignature(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	for _, p := range []string{"/healthz", "/v1/info"} {
		r := f.call(t, nil, "GET", p, nil)
		if r.status != 200 {
			t.Fatalf("GET %s = %d", p, r.status)
		}
	}
	var info api.Info
	json.Unmarshal(f.call(t, nil, "GET", "/v1/info", nil).body, &info)
	if info.AuthMode != "enforce" || info.NATSURL == "" || info.HistoryStream != api.HistoryStream {
		t.Fatalf("info = %+v", info)
	}
}

// FuzzJSONBodies sends arbitrary bodies to every JSON route: the answer is
// a success or a 4xx JSON error, never a 5xx.
func FuzzJSONBodies(f *testing.F) {
	fx := newAPIFixture(f, httpapi.AuthOff)
	routes := []string{"/v1/rooms", "/v1/users", "/v1/rooms/" + fx.room + "/members", "/v1/rooms/" + fx.room + "/rekey", "/v1/users/bob/revoke"}
	seeds := [][]byte{
		[]byte(`{"id":"aaaaaaaaaaaaaaaaaaaaaaaaaa","name":"ops","cleartext":true}`),
		[]byte(`{"id":"aaaaaaaaaaaaaaaaaaaaaaaaaa","name":"ops","sealed_key":"` + base64.StdEncoding.EncodeToString(sealed73) + `"}`),
		[]byte(`{"token":"unibus1:a:b:c:d","admin":true}`),
		[]byte(`{"epoch":1,"members":[{"member":"bob","sealed_key":"AQ=="}]}`),
		[]byte(`{"from_epoch":1,"remove":["x"],"keys":[{"member":"y","sealed_key":"AQ=="}],"statement":{"body":"e30=","sig":"AA=="}}`),
		[]byte(`{"name":`), []byte(`[]`), []byte(`{"name":"\u0000"}`), []byte(`{}`), []byte(`null`),
	}
	for i := range routes {
		for _, b := range seeds {
			f.Add(uint8(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := routes[int(route)%len(routes)]
		r := fx.send(t, fx.alice, "POST", path, body, sha256.Sum256(body), "application/json")
		if r.status >= 500 {
			t.Fatalf("POST %s %q = %d %s", path, body, r.status, r.body)
		}
		if r.status >= 400 {
			var e api.Error
			if json.Unmarshal(r.body, &e) != nil || e.Message == "" {
				t.Fatalf("error body %q is not JSON", r.body)
			}
		}
	})
}

// TestMemberGetsOnlyItsOwnSealedKeys: a member asking for the room's keys,
// even naming another member, gets its own sealed keys and no one else's.
func TestMemberGetsOnlyItsOwnSealedKeys(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthOff)
	add := api.AddMembersRequest{Epoch: 1, Members: []api.KeyGrant{{Member: f.bob.UserKey(), SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob}, nil)}
	f.mustOK(t, f.alice, "POST", "/v1/rooms/"+f.room+"/members", add)
	for _, q := range []string{"", "?member=" + f.alice.UserKey(), "?epoch=1&member=" + f.alice.UserKey()} {
		r := f.call(t, f.bob, "GET", "/v1/rooms/"+f.room+"/keys"+q, nil)
		var keys []api.SealedKey
		if r.status != 200 || json.Unmarshal(r.body, &keys) != nil {
			t.Fatalf("GET keys%s = %d %s", q, r.status, r.body)
		}
		if len(keys) != 1 || keys[0].Member != f.bob.UserKey() {
			t.Fatalf("bob's GET keys%s returned %d keys (%+v); want only his own", q, len(keys), keys)
		}
	}
}
