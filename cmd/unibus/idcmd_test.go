package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/identity"
)

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIDCommands(t *testing.T) {
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv("UNIBUS_IDENTITY", "")
	path := filepath.Join(config, "unibus", "identity.json")

	r := runCLI(t, "", "id", "new", "--name", "alice")
	if r.code != 0 {
		t.Fatalf("id new: exit %d: %s", r.code, r.stderr)
	}
	id, err := identity.Load(path)
	if err != nil {
		t.Fatalf("id new did not write %s: %v", path, err)
	}
	if id.Name() != "alice" {
		t.Errorf("identity name = %q; want alice", id.Name())
	}
	if !strings.Contains(r.stdout, path) || !strings.Contains(r.stdout, id.Public().Token()) {
		t.Errorf("id new printed %q; want the path %s and the public token", r.stdout, path)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %o; want %o", p, got, want)
		}
	}

	before := readFile(t, path)
	runCLI(t, "", "id", "new", "--name", "bob").wantFailure(t, "second id new", "move it", "--identity")
	if after := readFile(t, path); !bytes.Equal(before, after) {
		t.Errorf("second id new changed %s", path)
	}

	r = runCLI(t, "", "id", "show", "--public")
	if r.code != 0 {
		t.Fatalf("id show --public: exit %d: %s", r.code, r.stderr)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("id show --public printed %q; want exactly one line", r.stdout)
	}
	pub, err := identity.ParseToken(r.stdout)
	if err != nil {
		t.Fatalf("id show --public output does not parse: %v", err)
	}
	if pub.User != id.UserKey() || pub.Name != "alice" {
		t.Errorf("id show --public = %+v; want alice's key %s", pub, id.UserKey())
	}

	r = runCLI(t, "", "id", "show", "--json")
	var shown map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil {
		t.Fatalf("id show --json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	want := map[string]string{
		"name":        "alice",
		"user":        id.UserKey(),
		"xkey":        id.Public().XKey,
		"public":      id.Public().Token(),
		"fingerprint": id.Public().Fingerprint(),
	}
	for k, v := range want {
		if shown[k] != v {
			t.Errorf("id show --json %s = %q; want %q", k, shown[k], v)
		}
	}

	r = runCLI(t, "", "id", "show")
	for _, v := range want {
		if !strings.Contains(r.stdout, v) {
			t.Errorf("id show printed %q; want it to contain %q", r.stdout, v)
		}
	}

	r = runCLI(t, "", "id", "fingerprint")
	if r.code != 0 || r.stdout != id.Public().Fingerprint()+"\n" {
		t.Errorf("id fingerprint = exit %d, %q; want %q", r.code, r.stdout, id.Public().Fingerprint())
	}
}

func TestIDNewElsewhere(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("UNIBUS_IDENTITY", "")

	// Without XDG_CONFIG_HOME the identity goes under ~/.config.
	r := runCLI(t, "", "id", "new", "--name", "carol")
	if r.code != 0 {
		t.Fatalf("id new: exit %d: %s", r.code, r.stderr)
	}
	if _, err := identity.Load(filepath.Join(home, ".config", "unibus", "identity.json")); err != nil {
		t.Errorf("id new without XDG_CONFIG_HOME: %v", err)
	}

	// --identity, after the flags, wins; --json gives the public fields.
	other := filepath.Join(t.TempDir(), "keys", "dave.json")
	r = runCLI(t, "", "id", "new", "--json", "--name", "dave", "--identity", other)
	if r.code != 0 {
		t.Fatalf("id new --identity: exit %d: %s", r.code, r.stderr)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("id new --json: %v: %q", err, r.stdout)
	}
	id, err := identity.Load(other)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name": "dave", "user": id.UserKey(), "xkey": id.Public().XKey, "public": id.Public().Token(), "path": other}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("id new --json %s = %q; want %q", k, got[k], v)
		}
	}
	if strings.Contains(r.stdout, id.UserSeed()) {
		t.Error("id new --json printed the secret seed")
	}

	// UNIBUS_IDENTITY is the default of --identity.
	t.Setenv("UNIBUS_IDENTITY", other)
	r = runCLI(t, "", "id", "fingerprint", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, id.Public().Fingerprint()) {
		t.Errorf("id fingerprint with UNIBUS_IDENTITY = exit %d, %q; want dave's fingerprint", r.code, r.stdout)
	}

	runCLI(t, "", "id", "new", "--name", "not a name", "--identity", filepath.Join(t.TempDir(), "x.json")).wantFailure(t, "id new with a bad name", "invalid name")
	runCLI(t, "", "id", "show", "--identity", filepath.Join(t.TempDir(), "none.json")).wantFailure(t, "id show without an identity", "unibus id new")
}
