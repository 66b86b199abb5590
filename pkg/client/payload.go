package client

// Hand-written encoding and decoding of the message payload.
//
// The plaintext of a message is the encoding/json form of payload, and stays
// so: appendPayload writes exactly the bytes json.Marshal writes, and
// parsePayload returns exactly what json.Unmarshal returns. They are only
// faster. appendPayload encodes every payload itself, without reflection.
// parsePayload decodes by slicing the one shape json.Marshal writes for a
// message without a file and with plain strings; any other input, valid or
// not, goes to json.Unmarshal. payload_test.go checks both against
// encoding/json, by fuzzing among other things.

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendPayload appends the JSON encoding of p to dst and returns the
// extended slice. The bytes are exactly those of json.Marshal(p), for every
// p, including a nil one.
func appendPayload(dst []byte, p *payload) []byte {
	if p == nil {
		return append(dst, "null"...)
	}
	// Reserve room for the common case (no escapes) in one step, so that
	// a nil dst costs one allocation.
	n := len(`{}`)
	if p.Text != "" {
		n += len(`"text":"",`) + len(p.Text)
	}
	if f := p.File; f != nil {
		n += len(`"file":{"name":"","size":-9223372036854775808,"blob":"","key":""},`) +
			len(f.Name) + len(f.Blob) + base64.StdEncoding.EncodedLen(len(f.Key))
	}
	if h := p.Head; h != nil {
		n += len(`"head":{"seq":18446744073709551615,"hash":""}`) + len(h.Hash)
	}
	dst = slices.Grow(dst, n)

	dst = append(dst, '{')
	comma := false
	if p.Text != "" {
		dst = append(dst, `"text":`...)
		dst = appendJSONString(dst, p.Text)
		comma = true
	}
	if f := p.File; f != nil {
		if comma {
			dst = append(dst, ',')
		}
		dst = append(dst, `"file":{"name":`...)
		dst = appendJSONString(dst, f.Name)
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, f.Size, 10)
		dst = append(dst, `,"blob":`...)
		dst = appendJSONString(dst, f.Blob)
		dst = append(dst, `,"key":`...)
		if f.Key == nil {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, f.Key)
			dst = append(dst, '"')
		}
		dst = append(dst, '}')
		comma = true
	}
	if h := p.Head; h != nil {
		if comma {
			dst = append(dst, ',')
		}
		dst = append(dst, `"head":{"seq":`...)
		dst = strconv.AppendUint(dst, h.Seq, 10)
		dst = append(dst, `,"hash":`...)
		dst = appendJSONString(dst, h.Hash)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// The string scans look at 8 bytes at a time, as a little-endian uint64 x,
// to skip the bytes that need no closer look. When every byte of x is ASCII
// (x&swarHigh == 0), each byte of v = x ^ (swarOnes*c) is below 0x80, so
// (v-swarOnes)&swarHigh is non-zero exactly when some byte of x equals c
// (a zero byte is the only source of a borrow), and
// (x-swarOnes*0x20)&swarHigh exactly when some byte is below 0x20. OR-ing
// in x itself flags the words with a byte >= 0x80. Bits set spuriously
// above a match are harmless: a flagged word is examined byte by byte.
// '<' and '>' are found together as the bytes with x|2 == '>', and '"' and
// '&' as those with x|4 == '&'.
const (
	swarOnes = 0x0101010101010101
	swarHigh = 0x8080808080808080
)

// plainPrefix returns the length of the longest prefix of s that
// encoding/json copies unchanged into a string literal: ASCII bytes other
// than controls, '"', '\\', '<', '>' and '&'.
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		ctl := x - swarOnes*0x20
		quoteAmp := ((x | swarOnes*0x04) ^ swarOnes*'&') - swarOnes
		ltGt := ((x | swarOnes*0x02) ^ swarOnes*'>') - swarOnes
		backslash := (x ^ swarOnes*'\\') - swarOnes
		if (ctl|quoteAmp|ltGt|backslash|x)&swarHigh != 0 {
			break
		}
	}
	for ; i < len(s) && jsonPlain[s[i]]; i++ {
	}
	return i
}

// jsonPlain[b] reports whether encoding/json (with HTML escaping, as
// json.Marshal does) writes the byte b unchanged. Bytes >= 0x80 are false:
// they start a UTF-8 sequence that must be looked at as a whole.
var jsonPlain = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = true
	}
	t['"'], t['\\'], t['<'], t['>'], t['&'] = false, false, false, false, false
	return t
}()

const lowerHex = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal exactly as
// json.Marshal writes it: '"' and '\\' backslash-escaped; \b, \f, \n, \r
// and \t by name; other control bytes and '<', '>', '&' as \u00XX; U+2028
// and U+2029 as \u2028 and \u2029; each byte of invalid UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	i := plainPrefix(s)
	if i == len(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	dst = append(dst, s[:i]...)
	start := i
	for i < len(s) {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonPlain[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[b>>4], lowerHex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// parsePayload decodes a payload. It returns exactly what
// json.Unmarshal(b, &p) leaves in a zero p, and an error exactly when
// json.Unmarshal returns one (the same error: the decoding is then
// json.Unmarshal's). The form appendPayload writes for a message without a
// file and with strings free of escapes is decoded by slicing.
func parsePayload(b []byte) (payload, error) {
	if p, ok := parseCanonicalPayload(b); ok {
		return p, nil
	}
	var p payload
	err := json.Unmarshal(b, &p)
	return p, err
}

// parseCanonicalPayload decodes b when it is exactly one of
//
//	{}
//	{"text":S}
//	{"head":{"seq":N,"hash":S}}
//	{"text":S,"head":{"seq":N,"hash":S}}
//
// with no whitespace, each S a string literal of valid UTF-8 without
// backslashes or control bytes, and N a decimal uint64 without sign,
// exponent, fraction or leading zero. ok is false for anything else, which
// then needs json.Unmarshal: not necessarily invalid, just not this shape.
// On such input json.Unmarshal yields the same payload.
func parseCanonicalPayload(b []byte) (p payload, ok bool) {
	const (
		textKey = `"text":`
		headKey = `"head":{"seq":`
		hashKey = `,"hash":`
	)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return payload{}, false
	}
	i := 1
	if hasPrefixAt(b, i, textKey) {
		p.Text, i, ok = scanPlainString(b, i+len(textKey))
		if !ok {
			return payload{}, false
		}
		if i == len(b)-1 { // {"text":S}
			return p, true
		}
		// Otherwise a comma and the head must follow.
		if i >= len(b) || b[i] != ',' || !hasPrefixAt(b, i+1, headKey) {
			return payload{}, false
		}
		i++
	}
	if hasPrefixAt(b, i, headKey) {
		var h head
		h.Seq, i, ok = scanUint64(b, i+len(headKey))
		if !ok || !hasPrefixAt(b, i, hashKey) {
			return payload{}, false
		}
		h.Hash, i, ok = scanPlainString(b, i+len(hashKey))
		if !ok || i >= len(b) || b[i] != '}' {
			return payload{}, false
		}
		i++
		p.Head = &h
	}
	if i != len(b)-1 { // b[len(b)-1] == '}' was checked above
		return payload{}, false
	}
	return p, true
}

// hasPrefixAt reports whether b[i:] starts with s.
func hasPrefixAt(b []byte, i int, s string) bool {
	return len(b)-i >= len(s) && string(b[i:i+len(s)]) == s
}

// scanPlainString decodes the string literal starting at b[i] when its
// contents need no unescaping: no backslash, no control byte, valid UTF-8.
// It returns the string and the index just past the closing quote; ok is
// false for anything else.
func scanPlainString(b []byte, i int) (s string, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	ascii := true
	for j := start; ; j++ {
		// Skip 8 bytes at a time while none is a control byte, '"', '\\'
		// or >= 0x80. See swarOnes.
		for ; j+8 <= len(b); j += 8 {
			x := binary.LittleEndian.Uint64(b[j:])
			ctl := x - swarOnes*0x20
			quote := (x ^ swarOnes*'"') - swarOnes
			backslash := (x ^ swarOnes*'\\') - swarOnes
			if (ctl|quote|backslash|x)&swarHigh != 0 {
				break
			}
		}
		if j >= len(b) {
			return "", 0, false
		}
		switch c := b[j]; {
		case c == '"':
			if !ascii && !utf8.Valid(b[start:j]) {
				return "", 0, false
			}
			return string(b[start:j]), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
}

// scanUint64 decodes the unsigned decimal number starting at b[i], in the
// form json.Marshal writes a uint64: "0", or digits without a leading zero,
// fitting in 64 bits. It returns the value and the index just past its last
// digit; ok is false for anything else (including a longer number, or one
// followed directly by '.', 'e' or 'E').
func scanUint64(b []byte, i int) (v uint64, end int, ok bool) {
	j := i
	for ; j < len(b) && '0' <= b[j] && b[j] <= '9'; j++ {
		d := uint64(b[j] - '0')
		if v > (^uint64(0)-d)/10 {
			return 0, 0, false
		}
		v = v*10 + d
	}
	switch {
	case j == i, b[i] == '0' && j-i > 1:
		return 0, 0, false
	case j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E'):
		return 0, 0, false
	}
	return v, j, true
}
