package identity_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/enmanuel/unibus/pkg/identity"
)

func TestUnsafeRune(t *testing.T) {
	t.Parallel()
	unsafe := []rune{
		0x00, 0x07, 0x1b, '\t', '\n', '\r', 0x7f, 0x85, 0x9b, // C0, DEL, C1
		0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c, // bidi
		0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, 0x00ad, 0x180e, 0xe0001, 0xe0041, 0xe007f, // zero-width, format, tags
		0x00a0, 0x2000, 0x3000, 0x2028, 0x2029, // separators
		0xe000, 0xf8ff, 0x10fffd, 0x0378, // private use, unassigned
		0x115f, 0x1160, 0x3164, 0xffa0, 0x034f, 0x17b4, 0xfe00, 0xfe0f, 0xe0100, 0x180b, // fillers, CGJ, selectors
		utf8.RuneError,
	}
	for _, r := range unsafe {
		if !identity.UnsafeRune(r) {
			t.Errorf("UnsafeRune(%U) = false; want true", r)
		}
	}
	for _, r := range []rune{'a', 'Z', '0', ' ', '.', '-', '_', '\\', 'é', 0x0301, 'ß', 'ж', 'א', 'ع', '会', '✓', '🚀', '€'} {
		if identity.UnsafeRune(r) {
			t.Errorf("UnsafeRune(%U %q) = true; want false", r, r)
		}
	}
	// Every control and format character, whatever the Unicode version.
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if (unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r)) && !identity.UnsafeRune(r) {
			t.Fatalf("UnsafeRune(%U) = false for a Cc/Cf character", r)
		}
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string][]string{
		"":                      {"empty"},
		strings.Repeat("a", 65): {"65 bytes"},
		"alice\u202e":           {`"alice\u202e"`, "U+202E", "bidirectional", "byte 5"},
		"al\u200bice":           {"U+200B", "zero-width"},
		"alice\x1b[2J":          {`"alice\x1b[2J"`, "U+001B", "control"},
		"ali\u00adce":           {"U+00AD", "format character"},
		"al ice":                {`' '`},
		"ålice":                 {`'å'`},
		".alice":                {`'.' at byte 0`},
		"alice\xff":             {`"alice\xff"`, "invalid UTF-8"},
	} {
		err := identity.CheckName(name)
		if !errors.Is(err, identity.ErrInvalidName) {
			t.Errorf("CheckName(%q) = %v; want ErrInvalidName", name, err)
			continue
		}
		for _, w := range append(want, "use 1-64 letters, digits") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckName(%q) = %q; want it to say %q", name, err, w)
			}
		}
		if strings.ContainsFunc(err.Error(), identity.UnsafeRune) {
			t.Errorf("CheckName(%q) = %q prints the name raw", name, err)
		}
	}
	for _, name := range []string{"alice", "Bob.Smith", "ops-bot_2", strings.Repeat("a", 64)} {
		if err := identity.CheckName(name); err != nil {
			t.Errorf("CheckName(%q) = %v; want nil", name, err)
		}
	}
	// Every way to make or read an identity says the same.
	if _, err := identity.Generate("bob\u202e", nil); err == nil || !strings.Contains(err.Error(), "U+202E") {
		t.Errorf("Generate(bob\\u202e) = %v; want it to name U+202E", err)
	}
}

func TestFoldName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"dave": "dave", "Dave": "dave", "DAVE-2.X_y": "dave-2.x_y", "É\xff": "É\xff"} {
		if got := identity.FoldName(in); got != want {
			t.Errorf("FoldName(%q) = %q; want %q", in, got, want)
		}
	}
}

// FuzzPrintable: Printable leaves a name with nothing unsafe as it is,
// and otherwise returns valid UTF-8 without any unsafe character.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"ops", "ops\u202etxt", "\x1b[2J", "a\xffb", "\ufffd", "a\ufe0f", "\U000e0041", "tab\there", `back\slash`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := identity.Printable(s)
		_, _, bad := identity.FirstUnsafe(s)
		if !bad && got != s {
			t.Fatalf("Printable(%q) = %q; want it unchanged", s, got)
		}
		if _, _, still := identity.FirstUnsafe(got); still || !utf8.ValidString(got) {
			t.Fatalf("Printable(%q) = %q still holds an unsafe character", s, got)
		}
		if bad && !strings.Contains(got, `\`) {
			t.Fatalf("Printable(%q) = %q escapes nothing", s, got)
		}
		// Where the unsafe characters are those strconv escapes, the escape
		// is strconv's.
		strconvEscapes := !strings.ContainsFunc(s, func(r rune) bool { return strconv.IsPrint(r) && identity.UnsafeRune(r) }) && !strings.ContainsAny(s, `"\`)
		if q := strconv.Quote(s); bad && strconvEscapes && q[1:len(q)-1] != got {
			t.Fatalf("Printable(%q) = %q; strconv.Quote writes %s", s, got, q)
		}
	})
}
