package identity

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The rules of names, user names and room names alike, live here and in
// pkg/api (room names), which calls [UnsafeRune]: the server, the SDK and
// both CLIs check names with the same code, and the CLI escapes on output
// exactly what the rule refuses on input ([Printable]).

// nameRule is what a user name may hold, as error messages say it.
const nameRule = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"

// UnsafeRune reports whether r may not appear in any name (user or room):
// every character that is not printable text, or that shows as nothing.
// That is, in Unicode terms:
//
//   - control characters (Cc): C0, DEL and C1, terminal escapes among them;
//   - format characters (Cf): the bidi embeddings, overrides and isolates
//     (U+202A–U+202E, U+2066–U+2069), the marks U+200E, U+200F and U+061C,
//     the zero-width space, joiners and word joiner (U+200B–U+200D,
//     U+2060), the byte order mark U+FEFF, the soft hyphen, tag characters;
//   - separators other than the ASCII space (Zs, Zl, Zp: no-break and
//     ideographic spaces, line and paragraph separators);
//   - private-use, surrogate and unassigned code points (Co, Cs, Cn);
//   - the printable characters that still show as nothing: the other
//     default-ignorable code points (Hangul fillers, the combining grapheme
//     joiner) and the variation selectors;
//   - U+FFFD, which is also what invalid UTF-8 decodes to.
//
// Refusing them keeps a name from reordering the text around it, from
// hiding part of itself, from carrying invisible data and from looking
// like another name that differs only in what cannot be seen. The cost:
// compound emoji, which are joined by U+200D and selected by U+FE0F, are
// refused in room names; plain emoji are accepted.
func UnsafeRune(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true
	case r == ' ':
		return false
	case !unicode.IsPrint(r):
		return true
	}
	return unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// FirstUnsafe returns the first rune of s that [UnsafeRune] refuses, or
// that is not valid UTF-8 (as utf8.RuneError), and its byte offset; ok is
// false when there is none.
func FirstUnsafe(s string) (r rune, at int, ok bool) {
	for i, r := range s {
		if UnsafeRune(r) {
			return r, i, true
		}
	}
	return 0, 0, false
}

// DescribeRune names r for an error message about an unsafe rune: its
// code point and what kind of character it is, never the raw rune.
func DescribeRune(r rune) string {
	kind := "an invisible character"
	switch {
	case r == utf8.RuneError:
		return "invalid UTF-8 or U+FFFD, the replacement character"
	case unicode.IsControl(r):
		kind = "a control character"
	case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c:
		kind = "a bidirectional-text control, which reorders the text around it"
	case r >= 0x200b && r <= 0x200d || r == 0x2060 || r == 0xfeff:
		kind = "a zero-width character"
	case unicode.Is(unicode.Cf, r):
		kind = "a format character, which shows as nothing"
	case unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp):
		kind = "a space or line break other than the plain space"
	case unicode.In(r, unicode.Co, unicode.Cs) || !unicode.IsPrint(r):
		kind = "an unassigned or private-use code point"
	case unicode.Is(unicode.Variation_Selector, r):
		kind = "a variation selector, which shows as nothing"
	}
	return fmt.Sprintf("U+%04X (%s)", r, kind)
}

// nameError is an invalid user name: its message says what is wrong and
// what to do; it matches ErrInvalidName under errors.Is.
type nameError struct{ msg string }

func (e *nameError) Error() string { return e.msg }
func (e *nameError) Unwrap() error { return ErrInvalidName }

// CheckName returns nil if name is acceptable as a user name, else an
// error that matches ErrInvalidName and says which character, if any, is
// wrong. A user name is 1 to [MaxNameLen] ASCII letters, digits, '.', '_'
// and '-', starting with a letter or digit: it holds no character
// [UnsafeRune] refuses, and no two names differ only in what looks alike.
func CheckName(name string) error {
	switch {
	case name == "":
		return &nameError{"invalid name: it is empty: " + nameRule}
	case len(name) > MaxNameLen:
		return &nameError{fmt.Sprintf("invalid name %q: it is %d bytes long: %s", name, len(name), nameRule)}
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case (r == '.' || r == '_' || r == '-') && i > 0:
		case UnsafeRune(r):
			return &nameError{fmt.Sprintf("invalid name %q: it holds %s at byte %d: %s", name, DescribeRune(r), i, nameRule)}
		default:
			return &nameError{fmt.Sprintf("invalid name %q: it holds %q at byte %d: %s", name, r, i, nameRule)}
		}
	}
	return nil
}

// FoldName is the form in which user names are unique: two names are the
// same name if their FoldName is equal ("Dave" and "dave" are). User names
// are ASCII, so it lower-cases ASCII letters only, as SQLite's lower()
// does, and leaves every other byte as it is.
func FoldName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Printable returns s as it may be shown on a terminal: unchanged unless
// it holds a character [UnsafeRune] refuses or invalid UTF-8, each of
// which is written as a Go escape (\x1b, \u202e, \ufe0f, \xff), the way
// strconv.Quote writes it. Everything else, the backslash included, is
// left as it is. It is for names (of users, rooms, files) received from
// others, including names stored before the rule refused such characters.
func Printable(s string) string {
	if _, _, bad := FirstUnsafe(s); !bad {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				fmt.Fprintf(&b, `\x%02x`, s[i])
			} else {
				b.WriteString(`\ufffd`)
			}
		case !UnsafeRune(r):
			b.WriteRune(r)
		case !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		case r > 0xffff:
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}
