package main

import (
	"database/sql"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/identity"
)

// TestUserSeedRefusesUnsafeAndCaseTakenNames: `membershipd user seed`
// refuses a token whose name holds a control, bidi or invisible character
// and a name another user has in another case, says why, and registers
// nobody.
func TestUserSeedRefusesUnsafeAndCaseTakenNames(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "unibus.db")
	alice := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--db", db, alice.Public().Token())
	p := testbus.NewIdentity(t, "mallory").Public()
	named := func(name string) string {
		return "unibus1:" + name + ":" + p.User + ":" + p.XKey + ":" + base64.RawURLEncoding.EncodeToString(p.Binding)
	}
	for _, c := range []struct{ token, want string }{
		{named("mallory\u202e"), "U+202E"},
		{named("mal\u200blory"), "U+200B"},
		{named("mallory\x1b[2J"), "U+001B"},
		{testbus.NewIdentity(t, "Alice").Public().Token(), `"Alice" is taken by "alice"`},
		{testbus.NewIdentity(t, "ALICE").Public().Token(), `taken by "alice"`},
	} {
		_, stderr := runCLI(t, 1, "user", "seed", "--db", db, c.token)
		if !strings.Contains(stderr, c.want) {
			t.Errorf("seed %q: stderr %q; want it to say %q", c.token, stderr, c.want)
		}
		if strings.ContainsFunc(stderr, func(r rune) bool { return r != '\n' && identity.UnsafeRune(r) }) {
			t.Errorf("seed %q: stderr %q prints a name raw", c.token, stderr)
		}
	}
	out, _ := runCLI(t, 0, "user", "list", "--db", db)
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 2 {
		t.Fatalf("list after the refused seeds:\n%s\nwant a header and alice only", out)
	}
}

// TestUserListEscapesNames: a name in the database that no rule would let
// in now (written by another program) is listed escaped.
func TestUserListEscapesNames(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "unibus.db")
	runCLI(t, 0, "user", "seed", "--db", path, testbus.NewIdentity(t, "alice").Public().Token())
	p := testbus.NewIdentity(t, "eve").Public()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO users (user_key, name, xkey, binding, role, status, created_at) VALUES (?, ?, ?, ?, 'member', 'active', 1)`,
		p.User, "eve\u202e\x1b[2J", p.XKey, p.Binding); err != nil {
		t.Fatal(err)
	}
	out, _ := runCLI(t, 0, "user", "list", "--db", path)
	if !strings.Contains(out, `eve\u202e\x1b[2J`) || strings.ContainsFunc(out, func(r rune) bool { return r != '\n' && identity.UnsafeRune(r) }) {
		t.Fatalf("list = %q; want eve's name escaped", out)
	}
}
