package reqsig_test

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
	"time"

	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/reqsig"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// seeded returns a reader of deterministic bytes, for vectors.
func seeded(seed string) *bytes.Reader {
	var out []byte
	block := sha256.Sum256([]byte(seed))
	for len(out) < 4096 {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return bytes.NewReader(out)
}

func testIdentity(tb testing.TB, name string) *identity.Identity {
	tb.Helper()
	id, err := identity.Generate(name, seeded("identity "+name))
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func TestSignVerifyRoundTrip(t *testing.T) {
	alice := testIdentity(t, "alice")
	body := []byte(`{"name":"ops"}`)
	now := time.UnixMilli(1_764_000_000_000)
	sig, err := reqsig.Sign(alice, "POST", "/v1/rooms?x=1", sha256.Sum256(body), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := reqsig.Parse(sig.String())
	if err != nil {
		t.Fatalf("Parse(%q) = %v", sig.String(), err)
	}
	if parsed.String() != sig.String() {
		t.Fatalf("round trip changed the header:\n%s\n%s", parsed.String(), sig.String())
	}
	if err := parsed.Verify("POST", "/v1/rooms?x=1"); err != nil {
		t.Fatalf("Verify = %v; want nil", err)
	}
	if parsed.Body != sha256.Sum256(body) || parsed.TimeValue() != now || parsed.User != alice.UserKey() {
		t.Fatalf("parsed fields differ: %+v", parsed)
	}
}

func TestVerifyRefusesAlteredRequests(t *testing.T) {
	alice := testIdentity(t, "alice")
	mallory := testIdentity(t, "mallory")
	sig, err := reqsig.Sign(alice, "POST", "/v1/rooms", reqsig.EmptyBody, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(s *reqsig.Signature) (method, uri string)
	}{
		{"other method", func(s *reqsig.Signature) (string, string) { return "GET", "/v1/rooms" }},
		{"other path", func(s *reqsig.Signature) (string, string) { return "POST", "/v1/users" }},
		{"added query", func(s *reqsig.Signature) (string, string) { return "POST", "/v1/rooms?admin=true" }},
		{"other body", func(s *reqsig.Signature) (string, string) { s.Body[0] ^= 1; return "POST", "/v1/rooms" }},
		{"other time", func(s *reqsig.Signature) (string, string) { s.Time++; return "POST", "/v1/rooms" }},
		{"other nonce", func(s *reqsig.Signature) (string, string) { s.Nonce[3] ^= 1; return "POST", "/v1/rooms" }},
		{"claimed by another user", func(s *reqsig.Signature) (string, string) { s.User = mallory.UserKey(); return "POST", "/v1/rooms" }},
		{"flipped signature bit", func(s *reqsig.Signature) (string, string) { s.Sig[10] ^= 4; return "POST", "/v1/rooms" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := sig
			s.Sig = append([]byte(nil), sig.Sig...)
			method, uri := tc.mutate(&s)
			if err := s.Verify(method, uri); !errors.Is(err, reqsig.ErrBadSig) {
				t.Fatalf("Verify = %v; want ErrBadSig", err)
			}
		})
	}
}

func TestParseRefusesMalformedHeaders(t *testing.T) {
	alice := testIdentity(t, "alice")
	good, _ := reqsig.Sign(alice, "GET", "/v1/me", reqsig.EmptyBody, time.UnixMilli(1), nil)
	g := good.String()
	cases := map[string]string{
		"empty":               "",
		"other scheme":        strings.Replace(g, reqsig.Scheme, "Bearer", 1),
		"fields reordered":    strings.Replace(strings.Replace(g, "user=", "XX=", 1), "time=", "user=", 1),
		"missing field":       g[:strings.Index(g, ",sig=")],
		"extra field":         g + ",x=1",
		"upper-case hex body": strings.Replace(g, "body=e3b0", "body=E3B0", 1),
		"short nonce":         strings.Replace(g, "nonce=", "nonce=0", 1),
		"padded sig":          g + "==",
		"negative time":       strings.Replace(g, "time=1", "time=-1", 1),
		"leading zero time":   strings.Replace(g, "time=1", "time=01", 1),
		"bad user key":        strings.Replace(g, "user=U", "user=X", 1),
		"too long":            g + strings.Repeat("a", reqsig.MaxHeaderLen),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := reqsig.Parse(h); err == nil {
				t.Fatalf("Parse(%q) = nil error; want one", h)
			} else if !errors.Is(err, reqsig.ErrMalformed) && !errors.Is(err, reqsig.ErrMissing) {
				t.Fatalf("Parse(%q) = %v; want ErrMalformed or ErrMissing", h, err)
			}
		})
	}
}

// vector is one test vector of docs/request-signature.md.
type vector struct {
	Name       string `json:"name"`
	UserSeed   string `json:"user_seed,omitempty"`
	Method     string `json:"method"`
	RequestURI string `json:"request_uri"`
	Body       string `json:"body"`
	Header     string `json:"header"`
	Valid      bool   `json:"valid"`
	Error      string `json:"error,omitempty"`
}

func makeVectors(t *testing.T) []vector {
	alice := testIdentity(t, "alice")
	mallory := testIdentity(t, "mallory")
	sign := func(id *identity.Identity, method, uri, body string, ms int64, nonce string) reqsig.Signature {
		s, err := reqsig.Sign(id, method, uri, sha256.Sum256([]byte(body)), time.UnixMilli(ms), seeded(nonce))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	post := sign(alice, "POST", "/v1/rooms", `{"name":"ops"}`, 1764000000000, "n1")
	get := sign(alice, "GET", "/v1/rooms/abcdefghijklmnopqrstuvwxyz/keys?epoch=2", "", 1764000000001, "n2")
	forged := post
	forged.User = mallory.UserKey()
	vs := []vector{
		{Name: "valid post", UserSeed: alice.UserSeed(), Method: "POST", RequestURI: "/v1/rooms", Body: `{"name":"ops"}`, Header: post.String(), Valid: true},
		{Name: "valid get with query", UserSeed: alice.UserSeed(), Method: "GET", RequestURI: "/v1/rooms/abcdefghijklmnopqrstuvwxyz/keys?epoch=2", Header: get.String(), Valid: true},
		{Name: "tampered body", Method: "POST", RequestURI: "/v1/rooms", Body: `{"name":"opz"}`, Header: post.String(), Error: "body"},
		{Name: "tampered path", Method: "POST", RequestURI: "/v1/users", Body: `{"name":"ops"}`, Header: post.String(), Error: "ErrBadSig"},
		{Name: "tampered query", Method: "GET", RequestURI: "/v1/rooms/abcdefghijklmnopqrstuvwxyz/keys?epoch=1", Header: get.String(), Error: "ErrBadSig"},
		{Name: "wrong key", Method: "POST", RequestURI: "/v1/rooms", Body: `{"name":"ops"}`, Header: forged.String(), Error: "ErrBadSig"},
		{Name: "truncated", Method: "POST", RequestURI: "/v1/rooms", Body: `{"name":"ops"}`, Header: post.String()[:len(post.String())-3], Error: "ErrMalformed"},
		{Name: "missing", Method: "GET", RequestURI: "/v1/me", Header: "", Error: "ErrMissing"},
	}
	return vs
}

// check applies a vector the way a server does: parse, verify, compare the
// body digest. It returns the name of the failure, or "" for valid.
func check(v vector) string {
	s, err := reqsig.Parse(v.Header)
	switch {
	case errors.Is(err, reqsig.ErrMissing):
		return "ErrMissing"
	case err != nil:
		return "ErrMalformed"
	}
	if err := s.Verify(v.Method, v.RequestURI); err != nil {
		return "ErrBadSig"
	}
	if s.Body != sha256.Sum256([]byte(v.Body)) {
		return "body"
	}
	return ""
}

func TestVectors(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	if *update {
		b, _ := json.MarshalIndent(makeVectors(t), "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestVectors -update to make it)", err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			if got := check(v); got != v.Error {
				t.Fatalf("check = %q; want %q", got, v.Error)
			}
			if v.Valid != (v.Error == "") {
				t.Fatalf("vector says valid=%v with error %q", v.Valid, v.Error)
			}
		})
	}
	// The vectors are reproducible from their seeds: generation is deterministic.
	again := makeVectors(t)
	if len(again) != len(vs) {
		t.Fatalf("generated %d vectors, file has %d: rerun with -update", len(again), len(vs))
	}
	for i := range again {
		if again[i] != vs[i] {
			t.Fatalf("vector %q differs from the file: rerun with -update if the scheme changed on purpose", vs[i].Name)
		}
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "vectors.json")); err == nil {
		var vs []vector
		json.Unmarshal(b, &vs)
		for _, v := range vs {
			f.Add(v.Header)
		}
	}
	f.Add("Unibus-Ed25519 user=U,time=0,nonce=,body=,sig=")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := reqsig.Parse(h)
		if err != nil {
			if !errors.Is(err, reqsig.ErrMalformed) && !errors.Is(err, reqsig.ErrMissing) {
				t.Fatalf("Parse(%q) = untyped error %v", h, err)
			}
			return
		}
		if got := s.String(); got != h {
			t.Fatalf("Parse(%q).String() = %q; want byte-exact round trip", h, got)
		}
	})
}
