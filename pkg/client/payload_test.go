package client

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// payloadCases are payloads whose encoding is easy to get wrong.
var payloadCases = []payload{
	{},
	{Text: "hello"},
	{Text: "hello", Head: &head{Seq: 7, Hash: "ab12"}},
	{Head: &head{}},
	{Head: &head{Seq: 1<<64 - 1, Hash: strings.Repeat("f", 64)}},
	{Text: `say "hi" \ back\slash /`},
	{Text: "ctl \x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f end"},
	{Text: "<script>alert('&amp;')</script>"},
	{Text: "line\u2028para\u2029 nbsp\u00a0 \u2027\u202a"},
	{Text: "ünïcödé 日本語 🎉 \U0010FFFF \uFFFD"},
	{Text: "bad \xff utf8 \xc3\x28 \xed\xa0\x80 surrogate \xf4\x90\x80\x80 \xe2\x80", Head: &head{Hash: "\xfe"}},
	{Text: "12345678\"12345678<2345678\x0012345678é"},
	{Text: "a", File: &FileRef{}},
	{File: &FileRef{Name: "r\u00e9sum\u00e9 <1>.pdf", Size: -1, Blob: "B\"x", Key: []byte{}}},
	{File: &FileRef{Name: "a.bin", Size: 1 << 40, Blob: "blob", Key: []byte{0, 1, 2, 0xfb, 0xff}}},
	{Text: "t", File: &FileRef{Name: "n", Size: -9223372036854775808, Blob: "b", Key: []byte("x")}, Head: &head{Seq: 3, Hash: "h"}},
	{File: &FileRef{Key: []byte("xy")}, Head: &head{Seq: 0, Hash: ""}},
}

// TestAppendPayloadMatchesJSON checks appendPayload against json.Marshal,
// and that it appends to dst without touching what is there.
func TestAppendPayloadMatchesJSON(t *testing.T) {
	for _, p := range payloadCases {
		checkPayloadEncode(t, &p)
	}
	var nilP *payload
	checkPayloadEncode(t, nilP)
}

// checkPayloadEncode fails t unless appendPayload(dst, p) appends exactly
// json.Marshal(p) to dst.
func checkPayloadEncode(t *testing.T, p *payload) {
	t.Helper()
	want, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendPayload(nil, p); !bytes.Equal(got, want) {
		t.Fatalf("appendPayload(%+v)\n got %q\nwant %q", p, got, want)
	}
	prefix := []byte("prefix")
	if got := appendPayload(prefix[:len(prefix):len(prefix)], p); !bytes.Equal(got, append(prefix, want...)) {
		t.Fatalf("appendPayload(prefix, %+v) = %q", p, got)
	}
}

// TestParsePayloadMatchesJSON checks parsePayload against json.Unmarshal on
// canonical payloads and on inputs that are almost canonical, and that the
// canonical ones take the fast path while the others do not.
func TestParsePayloadMatchesJSON(t *testing.T) {
	canonical := []string{
		`{}`,
		`{"text":"hello"}`,
		`{"text":""}`,
		"{\"text\":\"ünï 日本 🎉 raw \u2028\u2029\x7f\"}",
		`{"text":"<>&' /"}`,
		`{"head":{"seq":0,"hash":""}}`,
		`{"head":{"seq":18446744073709551615,"hash":"abc"}}`,
		`{"text":"hi","head":{"seq":42,"hash":"0123abcd"}}`,
		`{"text":"1234567","head":{"seq":1,"hash":"12345678"}}`,
	}
	for _, in := range canonical {
		checkPayloadDecode(t, []byte(in))
		if _, ok := parseCanonicalPayload([]byte(in)); !ok {
			t.Errorf("%s: not decoded by the fast path", in)
		}
	}
	notCanonical := []string{
		``, `{`, `}`, `null`, `[]`, `""`, `{} `, ` {}`, `{}{}`, `{},`, `{"text":"a"}x`,
		`{"text":"a"} `, "{\"text\":\"a\"}\n",
		`{"Text":"a"}`, `{"TEXT":"a"}`, `{"text":"a","text":"b"}`, `{"text":"a","Text":"b"}`,
		`{"text":"a","head":{"seq":1,"hash":"x"},"text":"b"}`,
		`{"head":{"seq":1,"hash":"x"},"text":"a"}`, `{"head":{"seq":1,"hash":"x"},"head":{"seq":2,"hash":"y"}}`,
		`{"head":{"hash":"x","seq":1}}`, `{"head":{"seq":1,"hash":"x","seq":2}}`, `{"head":{"seq":1}}`,
		`{"head":{"seq":1,"hash":"x","extra":1}}`, `{"head":{"seq":1,"hash":"x"}`, `{"head":{"seq":1,"hash":"x"}}}`,
		`{"text":"a","extra":"b"}`, `{"extra":1}`, `{"text":"a",}`, `{,"text":"a"}`,
		`{"text":"a""head":{"seq":1,"hash":"x"}}`, `{"text":"a"}"}`, `{"text":"a","}`, `{"text":"a","head":null}`,
		`{"text":null}`, `{"head":null}`, `{"file":null}`, `{"text":1}`, `{"text":true}`, `{"head":{"seq":"1","hash":"x"}}`,
		`{"head":{"seq":1,"hash":null}}`, `{"head":{"seq":null,"hash":"x"}}`, `{"head":[]}`, `{"head":{}}`,
		`{"head":{"seq":01,"hash":"x"}}`, `{"head":{"seq":00,"hash":"x"}}`, `{"head":{"seq":-1,"hash":"x"}}`,
		`{"head":{"seq":-0,"hash":"x"}}`, `{"head":{"seq":+1,"hash":"x"}}`, `{"head":{"seq":1.0,"hash":"x"}}`,
		`{"head":{"seq":1e3,"hash":"x"}}`, `{"head":{"seq":1E3,"hash":"x"}}`, `{"head":{"seq":,"hash":"x"}}`,
		`{"head":{"seq":18446744073709551616,"hash":"x"}}`, `{"head":{"seq":99999999999999999999,"hash":"x"}}`,
		`{"head":{"seq":184467440737095516150,"hash":"x"}}`,
		`{"text":"a\"b"}`, `{"text":"a\\b"}`, `{"text":"\u0041"}`, `{"text":"\ud800"}`, `{"text":"a\/b"}`, `{"text":"\x"}`,
		"{\"text\":\"tab\there\"}", "{\"text\":\"nul\x00\"}", "{\"text\":\"\x1f\"}",
		"{\"text\":\"bad \xff\"}", "{\"text\":\"\xed\xa0\x80\"}", "{\"text\":\"trunc \xe2\x80\"}",
		"{\"head\":{\"seq\":1,\"hash\":\"\xc0\xaf\"}}",
		`{"text":"unterminated}`, `{"text":"a}`, `{"text":"a"`, `{"text":`, `{"text"}`, `{"text" :"a"}`, `{ "text":"a"}`,
		`{"text":"a" ,"head":{"seq":1,"hash":"x"}}`, `{"text":"a","head":{"seq": 1,"hash":"x"}}`,
		`{"file":{"name":"n","size":1,"blob":"b","key":"eHk="}}`, `{"file":{"name":"n","size":1,"blob":"b","key":null}}`,
		`{"file":{"name":"n","size":1,"blob":"b","key":"!!"}}`, `{"text":"a","file":{},"head":{"seq":1,"hash":"x"}}`,
		`{"file":{"size":1.5}}`, `{"file":{"size":9223372036854775808}}`,
	}
	for _, in := range notCanonical {
		checkPayloadDecode(t, []byte(in))
		if p, ok := parseCanonicalPayload([]byte(in)); ok {
			t.Errorf("%q: decoded by the fast path as %+v", in, p)
		}
	}
	for _, p := range payloadCases {
		b, _ := json.Marshal(p)
		checkPayloadDecode(t, b)
	}
}

// TestParsePayloadNearMisses checks parsePayload against json.Unmarshal on
// every input one byte away (deleted, replaced or inserted) from a
// canonical payload, with bytes chosen to break the canonical shape.
func TestParsePayloadNearMisses(t *testing.T) {
	bases := []string{
		`{}`,
		`{"text":"hi"}`,
		`{"head":{"seq":0,"hash":""}}`,
		`{"text":"hé 12345678","head":{"seq":42,"hash":"0123abcd"}}`,
	}
	edits := []byte("\"{}[],:0129-+.eEtT nu\x00\x1f\x7f\x80\xe2\xff")
	for _, base := range bases {
		for i := 0; i <= len(base); i++ {
			if i < len(base) {
				checkPayloadDecode(t, []byte(base[:i]+base[i+1:]))
			}
			for _, c := range edits {
				if i < len(base) {
					checkPayloadDecode(t, []byte(base[:i]+string([]byte{c})+base[i+1:]))
				}
				checkPayloadDecode(t, []byte(base[:i]+string([]byte{c})+base[i:]))
			}
		}
	}
}

// checkPayloadDecode fails t unless parsePayload(b) returns the value
// json.Unmarshal gives, and an error exactly when it returns one.
func checkPayloadDecode(t testing.TB, b []byte) {
	t.Helper()
	var want payload
	wantErr := json.Unmarshal(b, &want)
	got, err := parsePayload(b)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("parsePayload(%q): error %v, json.Unmarshal: error %v", b, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsePayload(%q)\n got %s\nwant %s", b, dumpPayload(got), dumpPayload(want))
	}
}

// dumpPayload formats p with its pointers followed, for failure messages.
func dumpPayload(p payload) string {
	s := "{Text:" + strconv.Quote(p.Text)
	if p.File != nil {
		s += " File:" + strconv.Quote(p.File.Name) + "," + strconv.Quote(p.File.Blob)
	}
	if p.Head != nil {
		s += " Head:" + strconv.Quote(p.Head.Hash)
	}
	return s + "}"
}

// TestPayloadAllocs pins the allocation counts of the fast paths: one for
// the growth of a nil dst (none with room in dst) when encoding, and one per
// string plus the head when decoding.
func TestPayloadAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	p := benchPayload()
	if n := testing.AllocsPerRun(100, func() { _ = appendPayload(nil, &p) }); n > 1 {
		t.Errorf("appendPayload(nil, …): %v allocations, want at most 1", n)
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = appendPayload(buf[:0], &p) }); n != 0 {
		t.Errorf("appendPayload(buf, …): %v allocations, want 0", n)
	}
	b := appendPayload(nil, &p)
	if n := testing.AllocsPerRun(100, func() { _, _ = parsePayload(b) }); n > 3 {
		t.Errorf("parsePayload: %v allocations, want at most 3", n)
	}
}

// FuzzPayloadDecode checks that parsePayload agrees with json.Unmarshal on
// any input.
func FuzzPayloadDecode(f *testing.F) {
	seeds := []string{
		`{}`, `{"text":"hello"}`, `{"head":{"seq":0,"hash":""}}`,
		`{"text":"hi","head":{"seq":42,"hash":"0123abcd"}}`,
		`{"text":"ünï 日本 🎉","head":{"seq":18446744073709551615,"hash":"abc"}}`,
		`{"text":"a","head":{"seq":18446744073709551616,"hash":"x"}}`,
		`{"text":"a","head":{"seq":01,"hash":"x"}}`, `{"text":"a","head":{"seq":1e3,"hash":"x"}}`,
		`{"text":"a""head":{"seq":1,"hash":"x"}}`, `{"text":"a",}`,
		`{"Text":"a"}`, `{"text":"a","text":"b"}`, `{"head":{"seq":1,"hash":"x"},"text":"a"}`,
		`{"text":"a\"b\\c\u0041"}`, `{"text":null,"head":null}`, `{"text":"a"} `, `{"text":"a","extra":[1,{}]}`,
		"{\"text\":\"bad \xff\"}", "{\"text\":\"\t\"}",
		`{"file":{"name":"n","size":1,"blob":"b","key":"eHk="},"head":{"seq":1,"hash":"x"}}`,
	}
	// Tails of canonical payloads, which the fuzz function also tries
	// after each of decodePrefixes: they steer the fuzzer to the points
	// where the fast path decides.
	seeds = append(seeds, `"}`, `","head":{"seq":1,"hash":"x"}}`, `,"head":{"seq":1,"hash":"x"}}`,
		`"head":{"seq":1,"hash":"x"}}`, `1,"hash":"x"}}`, `"x"}}`, `"}}`)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	for _, p := range payloadCases {
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	decodePrefixes := []string{`{"text":"`, `{"text":"a"`, `{"text":"a","head":{"seq":`, `{"head":{"seq":1,"hash":`}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkPayloadDecode(t, b)
		for _, prefix := range decodePrefixes {
			checkPayloadDecode(t, append([]byte(prefix), b...))
		}
	})
}

// FuzzPayloadEncode checks that appendPayload agrees with json.Marshal on
// payloads built from fuzzed fields, and that parsePayload decodes the
// result as json.Unmarshal does (by the fast path whenever the payload has
// the canonical shape).
func FuzzPayloadEncode(f *testing.F) {
	f.Add("hello", false, "", int64(0), "", []byte(nil), true, uint64(7), "ab12")
	f.Add("", false, "", int64(0), "", []byte(nil), false, uint64(0), "")
	f.Add("<&> \"\\\x00\u2028\xff", true, "n\u2029", int64(-5), "b\x7f", []byte{}, true, uint64(1<<64-1), "\xc3")
	f.Add("ünï 日本", true, "a.pdf", int64(1<<40), "blob", []byte{0, 0xff}, false, uint64(0), "")
	f.Fuzz(func(t *testing.T, text string, hasFile bool, name string, size int64, blob string, key []byte, hasHead bool, seq uint64, hash string) {
		p := payload{Text: text}
		if hasFile {
			p.File = &FileRef{Name: name, Size: size, Blob: blob, Key: key}
		}
		if hasHead {
			p.Head = &head{Seq: seq, Hash: hash}
		}
		checkPayloadEncode(t, &p)
		b := appendPayload(nil, &p)
		checkPayloadDecode(t, b)
		if !hasFile && !bytes.Contains(b, []byte{'\\'}) {
			if _, ok := parseCanonicalPayload(b); !ok {
				t.Fatalf("%q: not decoded by the fast path", b)
			}
		}
		if utf8.ValidString(text) && utf8.ValidString(name) && utf8.ValidString(blob) && utf8.ValidString(hash) {
			got, err := parsePayload(b)
			if err != nil || !reflect.DeepEqual(got, p) {
				t.Fatalf("round trip of %q: got %s, %v", b, dumpPayload(got), err)
			}
		}
	})
}

// benchPayload is a 1 KiB plain-ASCII text with a head, the common case.
func benchPayload() payload {
	const line = "The quick brown fox jumps over the lazy dog, again (and again)! 12345.\n"
	text := strings.Repeat(strings.TrimSuffix(line, "\n")+" ", 1024/len(line)+1)[:1024]
	return payload{Text: text, Head: &head{Seq: 123456, Hash: strings.Repeat("3fa9c1d2", 8)}}
}

// BenchmarkPayloadEncode compares appendPayload with json.Marshal.
func BenchmarkPayloadEncode(b *testing.B) {
	p := benchPayload()
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendPayload(nil, &p)
		}
	})
	b.Run("fast-reuse", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendPayload(buf[:0], &p)
		}
	})
}

// BenchmarkPayloadDecode compares parsePayload with json.Unmarshal.
func BenchmarkPayloadDecode(b *testing.B) {
	p := benchPayload()
	in := appendPayload(nil, &p)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var q payload
			if err := json.Unmarshal(in, &q); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parsePayload(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
