package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// TestIDNewRefusesUnsafeNames: `unibus id new --name` refuses, before it
// writes anything, a name with control, bidi or invisible characters,
// and says which character and what a name may hold.
func TestIDNewRefusesUnsafeNames(t *testing.T) {
	t.Parallel()
	for name, code := range map[string]string{
		"alice\u202e":     "U+202E",
		"al\u2066ice":     "U+2066",
		"alice\u200f":     "U+200F",
		"ali\u061cce":     "U+061C",
		"al\u200bice":     "U+200B",
		"al\u200dice":     "U+200D",
		"\ufeffalice":     "U+FEFF",
		"alice\x1b[2J":    "U+001B",
		"alice\x07":       "U+0007",
		"alice\u0085":     "U+0085",
		"ali\u00adce":     "U+00AD",
		"alice\U000e0001": "U+E0001",
	} {
		path := filepath.Join(t.TempDir(), "id.json")
		r := runCLI(t, "", "id", "new", "--name", name, "--identity", path)
		r.wantFailure(t, "id new --name "+identity.Printable(name), "--name", "invalid name", code, "letters, digits")
		if strings.ContainsFunc(r.stderr, func(r rune) bool { return r != '\n' && identity.UnsafeRune(r) }) {
			t.Errorf("id new --name %s: the error prints the name raw: %q", identity.Printable(name), r.stderr)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("id new --name %s wrote %s (%v)", identity.Printable(name), path, err)
		}
	}
}

func TestPrintName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ops":                     "ops",
		"Ops room ✓ café 🚀":       "Ops room ✓ café 🚀",
		`back\slash`:              `back\slash`,
		"ops\u202etxt.exe":        `ops\u202etxt.exe`,
		"a\u2066b\u2069":          `a\u2066b\u2069`,
		"a\u200bb\u200db\ufeff":   `a\u200bb\u200db\ufeff`,
		"ops\x1b[2J\x1b]0;x\x07":  `ops\x1b[2J\x1b]0;x\a`,
		"a\nb\tc\rd":              `a\nb\tc\rd`,
		"a\u0085b\u009bc":         `a\u0085b\u009bc`,
		"a\u00a0b\u2028c":         `a\u00a0b\u2028c`,
		"a\u3164b\ufe0fc\u034fd":  `a\u3164b\ufe0fc\u034fd`,
		"tag\U000e0041":           `tag\U000e0041`,
		"bad\xff\xfeutf8":         `bad\xff\xfeutf8`,
		"replacement \ufffd char": `replacement \ufffd char`,
	} {
		if got := printName(in); got != want {
			t.Errorf("printName(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestReadLineEscapesNames: a read line shows the sender's name and an
// attachment's name escaped, whatever the server or the sender sent.
func TestReadLineEscapesNames(t *testing.T) {
	t.Parallel()
	m := client.Received{SenderName: "mal\u202elory\x1b[2J", Text: "hi", Time: time.Unix(0, 0),
		File: &client.FileRef{Name: "invoice\u202efdp.exe", Size: 3}}
	got := formatMessage(m)
	for _, want := range []string{`mal\u202elory\x1b[2J: hi`, `[file: invoice\u202efdp.exe, 3 B]`} {
		if !strings.Contains(got, want) {
			t.Errorf("formatMessage = %q; want it to hold %q", got, want)
		}
	}
	if _, _, bad := identity.FirstUnsafe(got); bad {
		t.Errorf("formatMessage = %q holds a raw unsafe character", got)
	}
	if _, err := safeName("invoice\u202efdp.exe"); err == nil {
		t.Error("safeName accepted a file name with U+202E")
	}
}

// TestNamesStoredBeforeTheRuleAreEscaped writes into the store, as a
// server from before the rule could have, a room whose name (and signed
// creation statement) holds a bidi override and terminal escapes, then
// checks that `room list`, `room show` and `read` print it escaped.
func TestNamesStoredBeforeTheRuleAreEscaped(t *testing.T) {
	s := startStack(t)
	alice := s.alice
	bad := "ops\u202e\x1b]0;pwned\x07\x1b[2J"
	id := api.NewRoomID()
	st, err := roomchain.Sign(roomchain.Statement{Version: roomchain.Version, Room: id, Seq: 1, Kind: roomchain.KindCreate, Actor: alice.id.UserKey(), Epoch: 1,
		Name: bad, Add: []roomchain.Member{{Public: alice.id.Public(), Role: roomchain.RoleAdmin}}, Admins: []string{alice.id.UserKey()}, Time: time.Now().UnixMilli()},
		alice.id.SigningKey())
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", s.bus.DBPath+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO rooms (id, name, encrypted, epoch, creator, created_at, head_seq, head_hash) VALUES (?, ?, 0, 1, ?, ?, 1, ?)`, []any{id, bad, alice.id.UserKey(), time.Now().UnixNano(), st.HashHex()}},
		{`INSERT INTO members (room, user_key, since) VALUES (?, ?, 1)`, []any{id, alice.id.UserKey()}},
		{`INSERT INTO statements (room, seq, hash, body, sig) VALUES (?, 1, ?, ?, ?)`, []any{id, st.HashHex(), st.Body, st.Sig}},
	} {
		if _, err := db.ExecContext(context.Background(), q.sql, q.args...); err != nil {
			t.Fatalf("write the old room: %v", err)
		}
	}
	alice.must(t, "", "send", id, "hello")
	escaped := `ops\u202e\x1b]0;pwned\a\x1b[2J`
	for _, args := range [][]string{{"room", "list"}, {"room", "show", id}, {"room", "rekey", id}, {"user", "list"}, {"read", id}} {
		out := alice.must(t, "", args...)
		for _, line := range strings.Split(out, "\n") {
			if r, at, bad := identity.FirstUnsafe(line); bad {
				t.Errorf("unibus %s printed %s raw at byte %d of %q", strings.Join(args, " "), identity.DescribeRune(r), at, line)
			}
		}
		if args[0] == "room" && !strings.Contains(out, escaped) {
			t.Errorf("unibus %s = %q; want the name shown as %s", strings.Join(args, " "), out, escaped)
		}
	}
}
