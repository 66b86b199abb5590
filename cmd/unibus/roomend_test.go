package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/blobstore"
)

// startTrio is startOps with carol too, a third member of the room.
func startTrio(t testing.TB) (alice, bob, carol *user, room string) {
	t.Helper()
	alice, bob, room = startOps(t)
	carol = alice.s.register(t, "carol")
	alice.must(t, "", "room", "add", room, "carol")
	return alice, bob, carol, room
}

// sendFile has u send a message with a small file attached and returns
// the message id.
func sendFile(t testing.TB, u *user, room, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notes.txt")
	writeFile(t, path, []byte("the notes\n"))
	return strings.TrimSpace(u.must(t, "", "send", room, text, "--file", path))
}

// wantNothingOf checks that u can read nothing of room any more: not its
// messages, old or new, not a file, not its members, and that it is not
// among u's rooms.
func wantNothingOf(t *testing.T, u *user, room, fileMsg string) {
	t.Helper()
	name := u.id.Name()
	if r := u.run(t, "", "read", room, "--json"); r.code != 1 || r.stdout != "" {
		t.Errorf("%s: read = exit %d, stdout %q; want exit 1 and nothing read", name, r.code, r.stdout)
	}
	if r := u.run(t, "", "read", room, "--last", "1"); r.code != 1 || r.stdout != "" {
		t.Errorf("%s: read --last 1 = exit %d, stdout %q; want exit 1 and nothing read", name, r.code, r.stdout)
	}
	out := filepath.Join(t.TempDir(), "got.txt")
	if r := u.run(t, "", "fetch", room, fileMsg, "-o", out); r.code != 1 {
		t.Errorf("%s: fetch = exit %d; want 1", name, r.code)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s: a refused fetch wrote the file", name)
	}
	if r := u.run(t, "", "room", "show", room); r.code != 1 || r.stdout != "" {
		t.Errorf("%s: room show = exit %d, %q; want exit 1", name, r.code, r.stdout)
	}
	if rooms := decode[[]api.Room](t, u.must(t, "", "room", "list", "--json")); len(rooms) != 0 {
		t.Errorf("%s: room list = %v; want none", name, rooms)
	}
}

// TestRoomLeave: bob leaves; the room is rekeyed without him in the same
// step, his follower ends, and he reads nothing of the room afterwards,
// neither what came before nor after, while the others go on.
func TestRoomLeave(t *testing.T) {
	t.Parallel()
	alice, bob, carol, room := startTrio(t)
	alice.must(t, "", "send", room, "before")
	file := sendFile(t, bob, room, "bob's notes")
	f := bob.start(t, "read", room, "--follow", "--json")
	f.waitLines(t, 2)

	out := bob.must(t, "", "room", "leave", "ops")
	if want := "left room ops (" + room + "); rekeyed to epoch 2 without you\n"; out != want {
		t.Errorf("room leave printed %q; want %q", out, want)
	}
	if code := f.wait(t, 20*time.Second); code != 1 || !strings.Contains(f.errb.String(), "you were removed from room "+room) {
		t.Errorf("bob's follower after he left: exit %d, stderr %q; want exit 1, saying he is out", code, f.errb.String())
	}
	// bob made the key of epoch 2 and knows it: alice's send rekeys the
	// room first, and her message is of epoch 3.
	after := strings.TrimSpace(alice.must(t, "", "send", room, "after bob left"))
	r := decode[api.Room](t, alice.must(t, "", "room", "show", room, "--json"))
	var names []string
	for _, m := range r.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	if r.Epoch != 3 || strings.Join(names, ",") != "alice,carol" {
		t.Errorf("room after bob left and alice sent: epoch %d, members %v; want epoch 3, alice and carol", r.Epoch, names)
	}
	msgs := decodeLines(t, carol.must(t, "", "read", room, "--json"))
	if len(msgs) != 3 || msgs[2]["id"] != after || msgs[2]["epoch"] != 3.0 || msgs[2]["text"] != "after bob left" {
		t.Errorf("carol's read after bob left = %v; want the three messages, the last at epoch 3", msgs)
	}
	wantNothingOf(t, bob, room, file)
	for _, line := range f.lines() {
		if strings.Contains(line, after) || strings.Contains(line, "after bob left") {
			t.Errorf("bob's follower showed %q, sent after he left", line)
		}
	}

	// The last member cannot leave: it deletes the room instead.
	alice.must(t, "", "room", "leave", room)
	carol.run(t, "", "room", "leave", room).wantFailure(t, "room leave by the last member", "you are the last member of room "+room, "unibus room delete "+room)
}

// TestRoomDelete: a plain member's delete is refused and changes nothing;
// the admin's deletes the room for everyone: its history, keys and file,
// and every member's reads of it end.
func TestRoomDelete(t *testing.T) {
	t.Parallel()
	alice, bob, carol, room := startTrio(t)
	alice.must(t, "", "send", room, "hello")
	file := sendFile(t, bob, room, "bob's notes")
	blob := blobOf(t, bob, room, file)
	bus := alice.s.bus

	show := alice.must(t, "", "room", "show", room, "--json")
	history := alice.must(t, "", "read", room, "--json")
	bob.run(t, "", "room", "delete", room).wantFailure(t, "room delete by a plain member",
		"only a room admin deletes room "+room+", and you are not one: ask an admin, or leave the room with `unibus room leave "+room+"`")
	if got := alice.must(t, "", "room", "show", room, "--json"); got != show {
		t.Errorf("room after a refused delete:\n%s\nwant\n%s", got, show)
	}
	if got := alice.must(t, "", "read", room, "--json"); got != history {
		t.Errorf("history after a refused delete:\n%s\nwant\n%s", got, history)
	}
	fetched := filepath.Join(t.TempDir(), "notes.txt")
	carol.must(t, "", "fetch", room, file, "-o", fetched)
	if b, err := os.ReadFile(fetched); err != nil || string(b) != "the notes\n" {
		t.Errorf("file after a refused delete: %q, %v", b, err)
	}

	followers := map[string]*follower{"bob": bob.start(t, "read", room, "--follow"), "carol": carol.start(t, "read", room, "--follow", "--json")}
	for _, f := range followers {
		f.waitLines(t, 2)
	}
	out := alice.must(t, "", "room", "delete", "ops")
	if want := "deleted room ops (" + room + "), with its members, keys, history and files\n"; out != want {
		t.Errorf("room delete printed %q; want %q", out, want)
	}
	for name, f := range followers {
		if code := f.wait(t, 20*time.Second); code != 1 || !strings.Contains(f.errb.String(), "room "+room+" was deleted by a room admin") {
			t.Errorf("%s's follower after the deletion: exit %d, stderr %q; want exit 1, saying the room was deleted", name, code, f.errb.String())
		}
	}
	for _, u := range []*user{alice, bob, carol} {
		wantNothingOf(t, u, room, file)
	}

	// Nothing of it is left on the server: no room, no message, no blob.
	ctx := context.Background()
	if _, err := bus.Store.GetRoom(ctx, room); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("store after the deletion: %v; want the room not found", err)
	}
	if n := bus.RoomMessages(t, room); n != 0 {
		t.Errorf("%d messages of the deleted room left in %s", n, api.HistoryStream)
	}
	blobs, err := blobstore.New(bus.BlobDir)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := blobs.Has(ctx, blob); ok {
		t.Error("the deleted room's file is still in the blob store")
	}
}

// blobOf is the blob id of the file attached to message msg of room, as
// u reads it.
func blobOf(t testing.TB, u *user, room, msg string) string {
	t.Helper()
	c, err := u.s.bus.Client(t, u.id).FindMessage(context.Background(), room, msg)
	if err != nil || c.File == nil {
		t.Fatalf("find message %s: %v, %+v", msg, err, c)
	}
	return c.File.Blob
}
