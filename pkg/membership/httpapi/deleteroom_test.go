package httpapi_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/roomchain"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// TestDeleteRoom: a plain member's DELETE /v1/rooms/{room} is refused and
// changes nothing; the room admin's removes the room from the store, its
// messages from the history stream, its readers and its blob, and is
// announced to its members.
func TestDeleteRoom(t *testing.T) {
	f := newAPIFixture(t, httpapi.AuthEnforce)
	ctx := context.Background()
	f.mustOK(t, f.alice, "POST", "/v1/rooms/"+f.room+"/members", api.AddMembersRequest{Epoch: 1,
		Members: []api.KeyGrant{{Member: f.bob.UserKey(), SealedKey: sealed73}}, Statement: f.next(t, f.alice, f.room, roomchain.KindAdd, 1, []*identity.Identity{f.bob}, nil)})
	if _, err := f.bus.JS.Publish(ctx, api.RoomSubject(f.room), []byte("an envelope")); err != nil {
		t.Fatal(err)
	}
	// bob reads the room: a reader membershipd opened for him.
	deliver := subjects.InboxPrefix(f.bob.UserKey()) + "." + api.ReaderSubjectToken + ".t1"
	if r := f.call(t, f.bob, "POST", "/v1/rooms/"+f.room+"/readers", api.ReaderRequest{Deliver: deliver}); r.status != 201 {
		t.Fatalf("open bob's reader = %d %s", r.status, r.body)
	}
	events, err := f.bus.Conn.SubscribeSync(api.RoomEventSubject(f.room))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := blobstore.New(f.bus.BlobDir)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/rooms/" + f.room
	dave := f.bus.Identity(t, "dave", api.RoleMember)

	before := f.dump(t)
	for _, c := range []struct {
		who    string
		r      response
		status int
		code   string
		says   string
	}{
		{"a plain member", f.call(t, f.bob, "DELETE", path, nil), 403, api.CodeForbidden, "`unibus room leave " + f.room + "`"},
		{"a registered non-member", f.call(t, dave, "DELETE", path, nil), 404, api.CodeNotFound, "not found among your rooms"},
		{"a revoked user", f.call(t, f.revoked, "DELETE", path, nil), 403, api.CodeRevoked, "revoked"},
		{"an unknown user", f.call(t, f.stranger, "DELETE", path, nil), 401, api.CodeUnauthorized, "ask an admin to add you"},
		{"the admin, with a body", f.call(t, f.alice, "DELETE", path, "{}"), 400, api.CodeInvalid, "takes no body"},
		{"the admin, of an unknown room", f.call(t, f.alice, "DELETE", "/v1/rooms/"+api.NewRoomID(), nil), 404, api.CodeNotFound, "not found"},
	} {
		var e api.Error
		json.Unmarshal(c.r.body, &e)
		if c.r.status != c.status || e.Code != c.code || !strings.Contains(e.Message, c.says) {
			t.Errorf("DELETE by %s = %d %s; want %d %s saying %q", c.who, c.r.status, c.r.body, c.status, c.code, c.says)
		}
	}
	if after := f.dump(t); after != before {
		t.Fatalf("refused deletions changed the store:\nbefore %s\n after %s", before, after)
	}
	if n := f.bus.RoomMessages(t, f.room); n != 1 {
		t.Errorf("refused deletions left %d messages of the room; want 1", n)
	}
	if ok, _ := blobs.Has(ctx, f.blob); !ok {
		t.Error("refused deletions deleted the room's blob")
	}
	if n := roomReaders(t, f.bus, f.room); n != 1 {
		t.Errorf("refused deletions left %d readers; want bob's", n)
	}

	r := f.call(t, f.alice, "DELETE", path, nil)
	var room api.Room
	if r.status != 200 || json.Unmarshal(r.body, &room) != nil || room.ID != f.room || room.Name != "ops" {
		t.Fatalf("DELETE by the room admin = %d %s; want 200 and the room", r.status, r.body)
	}
	for _, id := range []*identity.Identity{f.alice, f.bob} {
		for _, p := range []string{path, path + "/keys", path + "/statements", path + "/blobs/" + f.blob} {
			if g := f.call(t, id, "GET", p, nil); g.status != 404 {
				t.Errorf("GET %s of the deleted room by %s = %d; want 404", p, id.Name(), g.status)
			}
		}
		if g := f.call(t, id, "POST", path+"/readers", api.ReaderRequest{Deliver: subjects.InboxPrefix(id.UserKey()) + ".r.t2"}); g.status != 404 {
			t.Errorf("a reader of the deleted room for %s = %d; want 404", id.Name(), g.status)
		}
	}
	if g := f.call(t, f.alice, "GET", "/v1/rooms/"+f.clear, nil); g.status != 200 {
		t.Errorf("the other room after the deletion = %d; want 200", g.status)
	}
	if n := f.bus.RoomMessages(t, f.room); n != 0 {
		t.Errorf("%d messages of the deleted room left in %s; want none", n, api.HistoryStream)
	}
	if n := roomReaders(t, f.bus, f.room); n != 0 {
		t.Errorf("%d readers of the deleted room left; want none", n)
	}
	if ok, _ := blobs.Has(ctx, f.blob); ok {
		t.Error("the deleted room's blob is still in the blob store")
	}
	m, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no room event after the deletion: %v", err)
	}
	var ev api.RoomEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil || !ev.Deleted || ev.Room != f.room || len(ev.Users) != 2 {
		t.Errorf("room event after the deletion = %s; want deleted, naming alice and bob", m.Data)
	}
}

// roomReaders is the number of history readers of room.
func roomReaders(t testing.TB, bus *testbus.Bus, room string) int {
	t.Helper()
	ctx := context.Background()
	st, err := bus.JS.Stream(ctx, api.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	l := st.ListConsumers(ctx)
	for info := range l.Info() {
		if info.Config.Metadata["unibus_reader_room"] == room {
			n++
		}
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUnknownUserOnABusWithoutAdmin: until the bus has an admin, an
// unknown user is told to seed the first one on the host, not to ask an
// admin; once there is one, to ask.
func TestUnknownUserOnABusWithoutAdmin(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{Mode: httpapi.AuthEnforce})
	f := &apiFixture{bus: bus}
	alice := testbus.NewIdentity(t, "alice")
	me := func() api.Error {
		t.Helper()
		r := f.call(t, alice, "GET", "/v1/me", nil)
		var e api.Error
		if r.status != 401 || json.Unmarshal(r.body, &e) != nil {
			t.Fatalf("GET /v1/me by an unknown user = %d %s; want 401", r.status, r.body)
		}
		return e
	}
	want := "unknown user key " + alice.UserKey() + ", and this bus has no admin yet to add you: on the bus host, register the first admin with `membershipd user seed --admin TOKEN` (TOKEN is what `unibus id show --public` prints)"
	if e := me(); e.Message != want {
		t.Errorf("on a bus without users:\n got %q\nwant %q", e.Message, want)
	}
	// A member, not an admin, changes nothing.
	bus.Identity(t, "bob", api.RoleMember)
	if e := me(); e.Message != want {
		t.Errorf("on a bus with a member only:\n got %q\nwant %q", e.Message, want)
	}
	bus.Identity(t, "carol", api.RoleAdmin)
	ask := "unknown user key " + alice.UserKey() + ": ask an admin to add you with `unibus user add TOKEN`"
	deadline := time.Now().Add(5 * time.Second)
	for e := me(); e.Message != ask; e = me() {
		if time.Now().After(deadline) {
			t.Fatalf("on a bus with an admin:\n got %q\nwant %q", e.Message, ask)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
