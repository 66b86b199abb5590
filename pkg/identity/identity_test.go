package identity_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/identity"
)

var update = flag.Bool("update", false, "rewrite testdata/tokens.json")

func seeded(seed string) *bytes.Reader {
	var out []byte
	block := sha256.Sum256([]byte(seed))
	for len(out) < 4096 {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return bytes.NewReader(out)
}

func gen(tb testing.TB, name string) *identity.Identity {
	tb.Helper()
	id, err := identity.Generate(name, seeded(name))
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func TestTokenRoundTrip(t *testing.T) {
	alice := gen(t, "alice")
	tok := alice.Public().Token()
	p, err := identity.ParseToken("  " + tok + "\n")
	if err != nil {
		t.Fatalf("ParseToken(%q) = %v", tok, err)
	}
	if p.Token() != tok || p.User != alice.UserKey() || p.Name != "alice" {
		t.Fatalf("ParseToken(Token()) = %+v; want alice's identity", p)
	}
	if p.Fingerprint() != alice.Public().Fingerprint() || len(p.Fingerprint()) != 39 {
		t.Fatalf("Fingerprint() = %q", p.Fingerprint())
	}
}

func TestTokenRefusesSwappedKeysAndNames(t *testing.T) {
	alice, mallory := gen(t, "alice").Public(), gen(t, "mallory").Public()
	swapXKey := alice
	swapXKey.XKey = mallory.XKey
	swapUser := alice
	swapUser.User = mallory.User
	rename := alice
	rename.Name = "bob"
	for name, p := range map[string]identity.Public{"swapped xkey": swapXKey, "swapped user key": swapUser, "renamed": rename} {
		t.Run(name, func(t *testing.T) {
			if err := p.Verify(); !errors.Is(err, identity.ErrBadBinding) {
				t.Fatalf("Verify() = %v; want ErrBadBinding", err)
			}
			if _, err := identity.ParseToken(p.Token()); !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("ParseToken = %v; want ErrInvalidToken", err)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	cases := map[string]bool{
		"alice": true, "a": true, "bob.smith": true, "ops-bot_2": true, strings.Repeat("a", 64): true,
		"": false, ".alice": false, "-x": false, "al ice": false, "al:ice": false, "alice\n": false,
		strings.Repeat("a", 65): false, "ålice": false,
	}
	for name, want := range cases {
		if got := identity.ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v; want %v", name, got, want)
		}
	}
}

func TestIdentityFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unibus", "identity.json")
	alice := gen(t, "alice")
	if err := alice.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode = %v; want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	var fields map[string]string
	if err := json.Unmarshal(before, &fields); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fields["user_seed"], "SU") || !strings.HasPrefix(fields["xkey_seed"], "SX") || fields["name"] != "alice" {
		t.Fatalf("identity file fields = %v; want name, user_seed SU…, xkey_seed SX…", fields)
	}
	if err := gen(t, "bob").Save(path); !errors.Is(err, identity.ErrIdentityExists) {
		t.Fatalf("second Save = %v; want ErrIdentityExists", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("refused Save changed the file")
	}
	loaded, err := identity.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Public().Token() != alice.Public().Token() {
		t.Fatal("loaded identity differs from the saved one")
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	alice := gen(t, "alice")
	cases := map[string]string{
		"not json":      "hello",
		"unknown field": `{"name":"a","user_seed":"` + alice.UserSeed() + `","xkey_seed":"x","extra":1}`,
		"swapped seeds": `{"name":"a","user_seed":"x","xkey_seed":"` + alice.UserSeed() + `"}`,
		"bad name":      `{"name":"a b","user_seed":"","xkey_seed":""}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			os.WriteFile(p, []byte(content), 0o600)
			if _, err := identity.Load(p); err == nil {
				t.Fatalf("Load(%s) = nil error; want one", name)
			}
		})
	}
	if _, err := identity.Load(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "unibus id new") {
		t.Fatalf("Load(missing) = %v; want advice to run `unibus id new`", err)
	}
}

type tokenVector struct {
	Name  string `json:"name"`
	Token string `json:"token"`
	Valid bool   `json:"valid"`
}

func makeTokenVectors(t *testing.T) []tokenVector {
	alice, mallory := gen(t, "alice").Public(), gen(t, "mallory").Public()
	tok := alice.Token()
	swapped := alice
	swapped.XKey = mallory.XKey
	return []tokenVector{
		{"valid", tok, true},
		{"tampered name", strings.Replace(tok, ":alice:", ":alicf:", 1), false},
		{"wrong key (xkey swapped)", swapped.Token(), false},
		{"truncated", tok[:len(tok)-5], false},
		{"wrong version", strings.Replace(tok, "unibus1:", "unibus2:", 1), false},
		{"extra field", tok + ":x", false},
	}
}

func TestTokenVectors(t *testing.T) {
	path := filepath.Join("testdata", "tokens.json")
	if *update {
		b, _ := json.MarshalIndent(makeTokenVectors(t), "", "  ")
		os.WriteFile(path, append(b, '\n'), 0o644)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestTokenVectors -update)", err)
	}
	var vs []tokenVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		_, err := identity.ParseToken(v.Token)
		if (err == nil) != v.Valid {
			t.Errorf("%s: ParseToken = %v; want valid=%v", v.Name, err, v.Valid)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "tokens.json")); err == nil {
		var vs []tokenVector
		json.Unmarshal(b, &vs)
		for _, v := range vs {
			f.Add(v.Token)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := identity.ParseToken(s)
		if err != nil {
			if !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("ParseToken(%q) = untyped error %v", s, err)
			}
			return
		}
		if p.Token() != strings.TrimSpace(s) {
			t.Fatalf("ParseToken(%q).Token() = %q; want byte-exact round trip", s, p.Token())
		}
	})
}
