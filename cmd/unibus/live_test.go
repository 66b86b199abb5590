package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/internal/testutil/testio"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
)

// stack is an in-process unibus deployment (internal/testbus) with the
// identity files, in its directory, of the users driving the command line
// against it.
type stack struct {
	bus   *testbus.Bus
	alice *user // the admin startStack seeds
}

// user is one identity driving the command line against a stack.
type user struct {
	s    *stack
	id   *identity.Identity
	path string
}

// startStack starts a deployment with an admin, alice, seeded in its store.
func startStack(t testing.TB) *stack {
	t.Helper()
	s := newStack(t, testbus.Options{})
	s.alice = s.seedUser(t, "alice", api.RoleAdmin)
	return s
}

// newStack starts a deployment with no users.
func newStack(t testing.TB, opts testbus.Options) *stack {
	t.Helper()
	return &stack{bus: testbus.Start(t, opts)}
}

// newUser makes an identity file; the user is not registered.
func (s *stack) newUser(t testing.TB, name string) *user {
	t.Helper()
	id := testbus.NewIdentity(t, name)
	path := filepath.Join(s.bus.Dir, name+".json")
	if err := id.Save(path); err != nil {
		t.Fatal(err)
	}
	return &user{s: s, id: id, path: path}
}

// seedUser makes an identity file and registers the user with role
// directly in the store, as `membershipd user seed` does.
func (s *stack) seedUser(t testing.TB, name, role string) *user {
	t.Helper()
	u := s.newUser(t, name)
	s.bus.AddUser(t, u.id, role)
	return u
}

// register has alice add a new user through the command line.
func (s *stack) register(t testing.TB, name string) *user {
	t.Helper()
	u := s.newUser(t, name)
	s.alice.must(t, "", "user", "add", u.id.Public().Token())
	return u
}

// settings are the client settings that point a command at the stack.
func (u *user) settings() []string {
	return []string{"--server", u.s.bus.HTTP.URL, "--identity", u.path}
}

// run runs the command line as u, the settings first.
func (u *user) run(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	return runCLI(t, stdin, append(u.settings(), args...)...)
}

// must runs the command line as u and fails the test unless it succeeds.
func (u *user) must(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := u.run(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("%s: unibus %q: exit %d: %s", u.id.Name(), args, r.code, r.stderr)
	}
	return r.stdout
}

// follower is a command running in the background until stopped.
type follower struct {
	out    *testio.SyncBuffer
	errb   *testio.SyncBuffer
	cancel context.CancelFunc
	done   chan int
}

// start runs the command line as u in the background.
func (u *user) start(t testing.TB, args ...string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{out: &testio.SyncBuffer{}, errb: &testio.SyncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		f.done <- run(ctx, append(u.settings(), args...), strings.NewReader(""), f.out, f.errb)
	}()
	t.Cleanup(func() { f.stop(t) })
	return f
}

// lines returns the complete lines written so far.
func (f *follower) lines() []string {
	s := f.out.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// waitLines waits until the follower has written n lines.
func (f *follower) waitLines(t testing.TB, n int) []string {
	t.Helper()
	waitFor(t, 15*time.Second, "follower output", func() bool {
		select {
		case code := <-f.done:
			f.done <- code
			t.Fatalf("follower ended early with exit %d: %s", code, f.errb.String())
		default:
		}
		return len(f.lines()) >= n
	})
	return f.lines()
}

// wait waits for the follower to end by itself, at most d, and returns
// its exit code.
func (f *follower) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case code := <-f.done:
		f.done <- code
		return code
	case <-time.After(d):
		t.Fatalf("follower still running after %s", d)
		return -1
	}
}

// stop interrupts the follower and returns its exit code.
func (f *follower) stop(t testing.TB) int {
	t.Helper()
	f.cancel()
	select {
	case code := <-f.done:
		f.done <- code
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("follower did not stop within 15s of being interrupted")
		return -1
	}
}

// decodeLines decodes one JSON object per line.
func decodeLines(t testing.TB, out string) []map[string]any {
	t.Helper()
	var msgs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not one JSON object: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func decode[T any](t testing.TB, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output %q does not decode as %T: %v", out, v, err)
	}
	return v
}

// startOps starts a stack in which alice has registered bob through the
// command line and shares a room, ops, with him.
func startOps(t testing.TB) (alice, bob *user, room string) {
	t.Helper()
	s := startStack(t)
	bob = s.register(t, "bob")
	room = strings.TrimSpace(s.alice.must(t, "", "room", "create", "ops"))
	s.alice.must(t, "", "room", "add", room, bob.id.Name())
	return s.alice, bob, room
}

func TestRooms(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	alice := s.alice

	out := alice.must(t, "", "room", "create", "ops")
	room := strings.TrimSuffix(out, "\n")
	if !api.ValidRoomID(room) || strings.Count(out, "\n") != 1 {
		t.Fatalf("room create printed %q; want a room id alone on a line", out)
	}

	// Flags and settings after the positional arguments.
	r := runCLI(t, "", append([]string{"room", "create", "lab", "--cleartext", "--json"}, alice.settings()...)...)
	if r.code != 0 {
		t.Fatalf("room create --json: exit %d: %s", r.code, r.stderr)
	}
	lab := decode[api.Room](t, r.stdout)
	if !api.ValidRoomID(lab.ID) || lab.Name != "lab" || lab.Encrypted || lab.Epoch != 1 {
		t.Errorf("room create lab --cleartext --json = %+v; want a cleartext room lab at epoch 1", lab)
	}

	rooms := decode[[]api.Room](t, alice.must(t, "", "room", "list", "--json"))
	var ids []string
	for _, r := range rooms {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	want := []string{room, lab.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("room list --json ids = %q; want %q", ids, want)
	}
	table := alice.must(t, "", "room", "list")
	if !regexp.MustCompile(`(?m)^ID +NAME +EPOCH +ENCRYPTED$`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^`+room+` +ops +1 +yes$`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^`+lab.ID+` +lab +1 +no$`).MatchString(table) {
		t.Errorf("room list printed\n%s\nwant a table ID NAME EPOCH ENCRYPTED with both rooms", table)
	}

	// By name, since it is unambiguous.
	shown := decode[api.Room](t, alice.must(t, "", "room", "show", "--json", "ops"))
	if shown.ID != room || shown.Epoch != 1 || len(shown.Members) != 1 || shown.Members[0].Name != "alice" || shown.Members[0].Since != 1 {
		t.Errorf("room show ops --json = %+v; want room %s at epoch 1 with member alice since 1", shown, room)
	}
	human := alice.must(t, "", "room", "show", room)
	for _, want := range []string{"id:", room, "epoch:", "encrypted:", "yes", "creator:", "alice (" + alice.id.UserKey() + ")", "members:", "epoch 1"} {
		if !strings.Contains(human, want) {
			t.Errorf("room show printed\n%s\nwant it to contain %q", human, want)
		}
	}

	out = alice.must(t, "", "room", "rekey", "ops")
	if !strings.Contains(out, "epoch 2") {
		t.Errorf("room rekey printed %q; want the new epoch 2", out)
	}
	if got := decode[api.Room](t, alice.must(t, "", "room", "rekey", room, "--json")); got.Epoch != 3 {
		t.Errorf("room rekey --json epoch = %d; want 3", got.Epoch)
	}

	alice.run(t, "", "room", "show", "nosuchroom").wantFailure(t, "room show nosuchroom", "nosuchroom")
}

func TestUsersAndMembers(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	alice := s.alice
	bob := s.newUser(t, "bob")
	carol := s.newUser(t, "carol")

	out := alice.must(t, "", "user", "add", bob.id.Public().Token())
	if want := "added bob (member) " + bob.id.UserKey() + "\n"; out != want {
		t.Errorf("user add printed %q; want %q", out, want)
	}
	added := decode[userJSON](t, alice.must(t, "", "user", "add", "--admin", carol.id.Public().Token(), "--json"))
	if added.Name != "carol" || added.Role != api.RoleAdmin || added.Fingerprint != carol.id.Public().Fingerprint() {
		t.Errorf("user add --admin --json = %+v; want carol, admin, with her fingerprint", added)
	}

	users := decode[[]userJSON](t, alice.must(t, "", "user", "list", "--json"))
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	if !slices.Equal(names, []string{"alice", "bob", "carol"}) {
		t.Errorf("user list --json names = %q; want alice, bob, carol", names)
	}
	table := alice.must(t, "", "user", "list")
	if !regexp.MustCompile(`(?m)^NAME +ROLE +STATUS +FINGERPRINT +USER$`).MatchString(table) ||
		!regexp.MustCompile(`(?m)^bob +member +active +`+bob.id.Public().Fingerprint()+` +`+bob.id.UserKey()+`$`).MatchString(table) {
		t.Errorf("user list printed\n%s\nwant a table NAME ROLE STATUS FINGERPRINT USER with bob", table)
	}

	if out := alice.must(t, "", "user", "revoke", "carol"); out != "revoked carol\n" {
		t.Errorf("user revoke printed %q; want %q", out, "revoked carol\n")
	}
	bob.run(t, "", "user", "list").wantFailure(t, "user list by a member")
	alice.run(t, "", "user", "add", "unibus1:garbage").wantFailure(t, "user add of a bad token", "invalid identity token")

	room := strings.TrimSpace(alice.must(t, "", "room", "create", "ops"))
	out = alice.must(t, "", "room", "add", room, "bob")
	if want := "added bob to room ops (" + room + ") at epoch 1\n"; out != want {
		t.Errorf("room add printed %q; want %q", out, want)
	}
	shown := decode[api.Room](t, alice.must(t, "", "room", "show", room, "--json"))
	if len(shown.Members) != 2 {
		t.Errorf("room show after room add: %d members; want 2", len(shown.Members))
	}
	if got := decode[[]api.Room](t, bob.must(t, "", "room", "list", "--json")); len(got) != 1 || got[0].ID != room {
		t.Errorf("bob's room list = %+v; want room %s", got, room)
	}
	alice.run(t, "", "room", "add", room, "carol").wantFailure(t, "room add of a revoked user", "revoked")
}

func TestSendRead(t *testing.T) {
	t.Parallel()
	alice, bob, room := startOps(t)

	before := time.Now()
	id := strings.TrimSpace(alice.must(t, "", "send", room, "hello bob"))
	msgs := decodeLines(t, bob.must(t, "", "read", room, "--json"))
	if len(msgs) != 1 {
		t.Fatalf("read --json: %d messages; want 1", len(msgs))
	}
	m := msgs[0]
	want := map[string]any{
		"id":          id,
		"room":        room,
		"epoch":       1.0,
		"sender":      alice.id.UserKey(),
		"sender_name": "alice",
		"text":        "hello bob",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("read --json %s = %v; want %v", k, m[k], v)
		}
	}
	for _, k := range []string{"error", "file"} {
		if _, ok := m[k]; ok {
			t.Errorf("read --json has %q for a plain message: %v", k, m)
		}
	}
	ts, err := time.Parse(time.RFC3339Nano, m["time"].(string))
	if err != nil || ts.Location() != time.UTC || ts.Before(before.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
		t.Errorf("read --json time = %v (%v); want RFC 3339 UTC about now", m["time"], err)
	}

	line := bob.must(t, "", "read", room)
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d alice: hello bob\n$`).MatchString(line) {
		t.Errorf("read printed %q; want TIME alice: hello bob", line)
	}

	// Text from stdin, by name of the room, --json anywhere.
	sent := decode[map[string]string](t, alice.must(t, "two lines\nof text\n", "send", "--json", "ops"))
	if sent["room"] != room || sent["id"] == "" {
		t.Errorf("send --json = %v; want the id and room %s", sent, room)
	}
	msgs = decodeLines(t, bob.must(t, "", "read", room, "--last", "1", "--json"))
	if len(msgs) != 1 || msgs[0]["text"] != "two lines\nof text" || msgs[0]["id"] != sent["id"] {
		t.Errorf("read --last 1 --json = %v; want only the text from stdin", msgs)
	}
	if got := decodeLines(t, bob.must(t, "", "read", room, "--json")); len(got) != 2 {
		t.Errorf("read --json after two sends: %d messages; want 2", len(got))
	}

	alice.run(t, "", "send", room).wantFailure(t, "send with empty stdin", "nothing to send")
	alice.run(t, "ignored", "send", room, "").wantFailure(t, "send with empty TEXT", "nothing to send")
}

func TestFiles(t *testing.T) {
	t.Parallel()
	alice, bob, room := startOps(t)

	data := make([]byte, 3<<20)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "data.bin")
	writeFile(t, src, data)
	id := strings.TrimSpace(alice.must(t, "", "send", room, "the data", "--file", src))
	plain := strings.TrimSpace(alice.must(t, "", "send", room, "no file here"))

	out := bob.must(t, "", "read", room, "--json")
	if strings.Contains(out, `"key"`) || strings.Contains(out, `"blob"`) {
		t.Errorf("read --json shows an attachment's key or blob: %s", out)
	}
	msgs := decodeLines(t, out)
	if len(msgs) != 2 {
		t.Fatalf("read --json: %d messages; want 2", len(msgs))
	}
	file, _ := msgs[0]["file"].(map[string]any)
	if msgs[0]["text"] != "the data" || file["name"] != "data.bin" || file["size"] != float64(len(data)) {
		t.Errorf("read --json of the file message = %v; want text and file {data.bin, %d}", msgs[0], len(data))
	}
	if line := bob.must(t, "", "read", room, "--last", "2"); !strings.Contains(line, "alice: the data [file: data.bin, 3.0 MiB]\n") {
		t.Errorf("read printed %q; want the attachment shown", line)
	}

	dst := t.TempDir()
	path := filepath.Join(dst, "copy.bin")
	out = bob.must(t, "", "fetch", room, id, "-o", path)
	if got := readFile(t, path); !bytes.Equal(got, data) {
		t.Fatalf("fetch -o wrote %d bytes that differ from the %d sent", len(got), len(data))
	}
	if want := "saved data.bin (3.0 MiB) to " + path + "\n"; out != want {
		t.Errorf("fetch printed %q; want %q", out, want)
	}

	// An existing file is kept, and nothing is left behind.
	writeFile(t, path, []byte("mine"))
	bob.run(t, "", "fetch", room, id, "-o", path).wantFailure(t, "fetch over a file", "already exists", "--force")
	if got := string(readFile(t, path)); got != "mine" {
		t.Errorf("fetch over a file changed it")
	}
	bob.must(t, "", "fetch", room, id, "-o", path, "--force")
	if got := readFile(t, path); !bytes.Equal(got, data) {
		t.Error("fetch --force did not replace the file")
	}

	// A directory keeps the attachment's name; refusing it there too.
	bob.must(t, "", "fetch", "ops", id, "-o", dst)
	if got := readFile(t, filepath.Join(dst, "data.bin")); !bytes.Equal(got, data) {
		t.Error("fetch -o DIR did not write DIR/data.bin")
	}
	bob.run(t, "", "fetch", room, id, "-o", dst).wantFailure(t, "fetch into a directory holding the name", "already exists")
	if left, _ := filepath.Glob(filepath.Join(dst, ".unibus-fetch-*")); len(left) > 0 {
		t.Errorf("fetch left temporary files: %q", left)
	}

	if r := bob.run(t, "", "fetch", room, id, "-o", "-"); r.code != 0 || r.stdout != string(data) {
		t.Errorf("fetch -o - = exit %d and %d bytes on stdout; want the %d bytes", r.code, len(r.stdout), len(data))
	}

	bob.run(t, "", "fetch", room, plain, "-o", filepath.Join(dst, "x")).wantFailure(t, "fetch of a message without a file", "no attached file")
	if _, err := os.Stat(filepath.Join(dst, "x")); err == nil {
		t.Error("a failed fetch left its output file")
	}
}

func TestRemovedMember(t *testing.T) {
	t.Parallel()
	alice, bob, room := startOps(t)
	alice.must(t, "", "send", room, "before")

	// bob listens while he is removed.
	f := bob.start(t, "read", room, "--follow", "--json")
	human := bob.start(t, "read", room, "--follow")
	f.waitLines(t, 1)
	human.waitLines(t, 1)

	out := alice.must(t, "", "room", "remove", room, "bob")
	if want := "removed bob from room ops (" + room + "); rekeyed to epoch 2\n"; out != want {
		t.Errorf("room remove printed %q; want %q", out, want)
	}
	after := strings.TrimSpace(alice.must(t, "", "send", room, "after the removal"))

	// membershipd closed bob's reader with the removal: both followers
	// say so and exit 1, having shown nothing sent after it.
	for _, fl := range []*follower{f, human} {
		code := fl.wait(t, 20*time.Second)
		if code != 1 || !strings.Contains(fl.errb.String(), "you were removed from room "+room) {
			t.Errorf("read --follow of a removed member: exit %d, stderr %q; want exit 1 and \"you were removed from room %s\"", code, fl.errb.String(), room)
		}
		if strings.Contains(fl.out.String(), "after the removal") || strings.Contains(fl.out.String(), after) || len(fl.lines()) != 1 {
			t.Errorf("a removed member's follower showed %q; want only the message before the removal", fl.out.String())
		}
	}
	if msgs := decodeLines(t, f.out.String()); len(msgs) != 1 || msgs[0]["text"] != "before" {
		t.Errorf("bob's messages = %v; want the one before the removal", msgs)
	}

	// Once out, bob cannot open the room's history at all.
	if r := bob.run(t, "", "read", room, "--json"); r.code != 1 || strings.Contains(r.stdout, "after the removal") {
		t.Errorf("read by a removed member = exit %d, %q; want exit 1 and nothing read", r.code, r.stdout)
	}
	msgs := decodeLines(t, alice.must(t, "", "read", room, "--json"))
	if len(msgs) != 2 || msgs[1]["text"] != "after the removal" || msgs[1]["epoch"] != 2.0 {
		t.Errorf("alice's read after the removal = %v; want both messages", msgs)
	}
}

func TestFollow(t *testing.T) {
	t.Parallel()
	alice, bob, room := startOps(t)

	f := bob.start(t, "read", room, "--follow")
	alice.must(t, "", "send", room, "first")
	f.waitLines(t, 1)
	alice.must(t, "", "send", room, "second")
	lines := f.waitLines(t, 2)
	for i, want := range []string{"alice: first", "alice: second"} {
		if !strings.HasSuffix(lines[i], want) {
			t.Errorf("follow line %d = %q; want it to end in %q", i, lines[i], want)
		}
	}
	if code := f.stop(t); code != 0 {
		t.Errorf("read --follow ended by interruption: exit %d; want 0 (%s)", code, f.errb.String())
	}
}

// TestReaddedMember: `room add` of a removed member rekeys the room, so
// that bob reads nothing alice sent while he was out, and what follows.
func TestReaddedMember(t *testing.T) {
	t.Parallel()
	alice, bob, room := startOps(t)
	alice.must(t, "", "send", room, "before")
	alice.must(t, "", "room", "remove", room, "bob")
	out := strings.TrimSpace(alice.must(t, "", "send", room, "while bob is out"))
	if got := alice.must(t, "", "room", "add", room, "bob"); !strings.Contains(got, "at epoch 3") {
		t.Errorf("room add of a former member printed %q; want the room rekeyed to epoch 3", got)
	}
	alice.must(t, "", "send", room, "bob is back")

	msgs := decodeLines(t, bob.must(t, "", "read", room, "--json"))
	if len(msgs) != 3 || msgs[0]["text"] != "before" || msgs[2]["text"] != "bob is back" || msgs[2]["epoch"] != 3.0 {
		t.Fatalf("bob read %v; want before, an unreadable message and bob is back at epoch 3", msgs)
	}
	if m := msgs[1]; m["id"] != out || m["epoch"] != 2.0 || m["error"] == nil {
		t.Errorf("bob's read of the message sent while he was out = %v; want id %s at epoch 2 with an error", m, out)
	}
	if _, ok := msgs[1]["text"]; ok {
		t.Error("a re-added member read a message sent while he was out")
	}
}

func TestBadServer(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(nil)
	dead.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "id.json")
	if r := runCLI(t, "", "id", "new", "--name", "alice", "--identity", path); r.code != 0 {
		t.Fatalf("id new: %s", r.stderr)
	}
	for _, server := range []string{dead.URL, "not-a-url"} {
		runCLI(t, "", "room", "list", "--server", server, "--identity", path).wantFailure(t, "room list --server "+server, strings.TrimPrefix(server, "http://"))
	}
}

func TestCA(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	tlsServer := httptest.NewTLSServer(s.bus.Server)
	t.Cleanup(tlsServer.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsServer.Certificate().Raw}))

	args := []string{"room", "create", "ops", "--server", tlsServer.URL, "--identity", s.alice.path}
	runCLI(t, "", args...).wantFailure(t, "HTTPS without --ca", "certificate")
	r := runCLI(t, "", append(args, "--ca", ca)...)
	if r.code != 0 || !api.ValidRoomID(strings.TrimSpace(r.stdout)) {
		t.Errorf("HTTPS with --ca = exit %d, %q, %q; want a room id", r.code, r.stdout, r.stderr)
	}
}

// TestRevokedFollower revokes a user whose read --follow is running: it
// exits 1 saying so, having shown nothing sent after the revocation.
func TestRevokedFollower(t *testing.T) {
	t.Parallel()
	alice, bob, room := startOps(t)
	alice.must(t, "", "send", room, "before")
	f := bob.start(t, "read", room, "--follow")
	f.waitLines(t, 1)
	alice.must(t, "", "user", "revoke", "bob")
	alice.must(t, "", "send", room, "after the revocation")
	code := f.wait(t, 20*time.Second)
	if code != 1 || !strings.Contains(f.errb.String(), "your user was revoked") {
		t.Errorf("read --follow of a revoked user: exit %d, stderr %q; want exit 1 and \"your user was revoked\"", code, f.errb.String())
	}
	if strings.Contains(f.out.String(), "after the revocation") || len(f.lines()) != 1 {
		t.Errorf("a revoked user's follower showed %q; want only the message before", f.out.String())
	}
}
