package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
)

func TestUserCLI(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "sub", "unibus.db")
	alice, bob := testbus.NewIdentity(t, "alice"), testbus.NewIdentity(t, "bob")

	out, _ := runCLI(t, 0, "user", "seed", "--db", db, "--admin", alice.Public().Token())
	if want := "seeded alice (admin) " + alice.UserKey() + "\n"; out != want {
		t.Errorf("seed output = %q; want %q", out, want)
	}
	// Flags may follow the token.
	out, _ = runCLI(t, 0, "user", "seed", bob.Public().Token(), "--db", db)
	if want := "seeded bob (member) " + bob.UserKey() + "\n"; out != want {
		t.Errorf("seed output = %q; want %q", out, want)
	}

	out, _ = runCLI(t, 0, "user", "list", "--db", db, "--json")
	var users []api.User
	if err := json.Unmarshal([]byte(out), &users); err != nil {
		t.Fatalf("list --json output %q: %v", out, err)
	}
	if len(users) != 2 {
		t.Fatalf("list --json = %d users; want 2", len(users))
	}
	for i, want := range []struct{ name, role, key string }{
		{"alice", api.RoleAdmin, alice.UserKey()},
		{"bob", api.RoleMember, bob.UserKey()},
	} {
		u := users[i]
		if u.Name != want.name || u.Role != want.role || u.User != want.key || u.Status != api.StatusActive {
			t.Errorf("user %d = %+v; want %s %s active %s", i, u, want.name, want.role, want.key)
		}
	}

	out, _ = runCLI(t, 0, "user", "list", "--db", db)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "NAME ROLE STATUS USER FINGERPRINT" {
		t.Fatalf("list output:\n%s\nwant a header and two users", out)
	}
	if f := strings.Fields(lines[1]); len(f) < 5 || f[0] != "alice" || f[1] != "admin" || f[2] != "active" || f[3] != alice.UserKey() || !strings.Contains(lines[1], alice.Public().Fingerprint()) {
		t.Errorf("list line %q; want alice admin active %s %s", lines[1], alice.UserKey(), alice.Public().Fingerprint())
	}

	// Revoke by name, then by key (idempotent).
	out, _ = runCLI(t, 0, "user", "revoke", "--db", db, "bob")
	if out != "revoked bob\n" {
		t.Errorf("revoke output = %q; want %q", out, "revoked bob\n")
	}
	out, _ = runCLI(t, 0, "user", "revoke", bob.UserKey(), "--db", db)
	if !strings.Contains(out, "already revoked") {
		t.Errorf("second revoke output = %q; want it to say already revoked", out)
	}
	out, _ = runCLI(t, 0, "user", "list", "--json", "--db", db)
	users = nil
	if err := json.Unmarshal([]byte(out), &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[1].Status != api.StatusRevoked || users[1].RevokedAt == nil {
		t.Errorf("after revoke, users = %+v; want bob revoked with a time", users)
	}
}

func TestUserCLIErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "unibus.db")
	alice := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--db", db, alice.Public().Token())
	token := alice.Public().Token()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"delete"}, 2, "unknown command"},
		{"seed without token", []string{"seed", "--db", db}, 2, "missing TOKEN"},
		{"seed two tokens", []string{"seed", "--db", db, token, token}, 2, "unexpected argument"},
		{"seed unknown flag", []string{"seed", "--db", db, "--root", token}, 2, "-root"},
		{"seed bad token", []string{"seed", "--db", db, "unibus1:alice:nope"}, 1, "unibus id show --public"},
		{"seed tampered token", []string{"seed", "--db", db, token[:len(token)-4] + "AAAA"}, 1, "token"},
		{"seed duplicate", []string{"seed", "--db", db, token}, 1, "already registered"},
		{"revoke unknown", []string{"revoke", "--db", db, "mallory"}, 1, "membershipd user list"},
		{"revoke without user", []string{"revoke", "--db", db}, 2, "missing USER"},
		{"list stray argument", []string{"list", "--db", db, "all"}, 2, "unexpected argument"},
		{"list missing db", []string{"list", "--db", filepath.Join(dir, "nope.db")}, 1, "no database"},
		{"help", []string{"help"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut := runCLI(t, tt.wantCode, append([]string{"user"}, tt.args...)...)
			if tt.wantErr != "" && !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("membershipd user %q stderr = %q; want it to mention %q", tt.args, errOut, tt.wantErr)
			}
			if tt.wantCode != 0 && out != "" {
				t.Errorf("membershipd user %q printed %q on stdout on failure", tt.args, out)
			}
		})
	}
}
