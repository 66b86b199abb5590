package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/api"
)

// requestTypes are the bodies the API decodes, each as a fresh value.
var requestTypes = []func() any{
	func() any { return new(api.CreateRoomRequest) },
	func() any { return new(api.AddUserRequest) },
	func() any { return new(api.AddMembersRequest) },
	func() any { return new(api.RekeyRequest) },
	func() any { return new(struct{}) },
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 73))
	cases := []struct {
		body string
		v    func() any
		want string // "" accepts; else a part of the error
	}{
		{`{"id":"a","name":"ops","cleartext":true}`, requestTypes[0], ""},
		{`{"name":"ops","sealed_key":"` + key + `","statement":{"body":"e30=","sig":"AA=="}}`, requestTypes[0], ""},
		{`{"n\u0061me":"ops"}`, requestTypes[0], ""}, // the same key, escaped
		{`{"epoch":1,"members":[{"member":"bob","sealed_key":"AQ=="}],"statement":null}`, requestTypes[2], ""},
		{`{}`, requestTypes[4], ""},
		{` {"name":"ops"} `, requestTypes[0], ""},

		// Case: encoding/json alone accepts every one of these.
		{`{"NAME":"ops"}`, requestTypes[0], `field "NAME" in the request body: field names are case-sensitive: write "name"`},
		{`{"Name":"ops"}`, requestTypes[0], `write "name"`},
		{`{"name":"ops","Cleartext":true}`, requestTypes[0], `field "Cleartext"`},
		{`{"token":"x","Admin":true}`, requestTypes[1], `write "admin"`},
		{`{"statement":{"Body":"e30=","sig":"AA=="}}`, requestTypes[0], `field "statement.Body" in the request body: field names are case-sensitive: write "body"`},
		{`{"registration":{"body":"e30=","SIG":"AA=="}}`, requestTypes[1], `field "registration.SIG"`},
		{`{"epoch":1,"members":[{"member":"a"},{"Member":"b"}]}`, requestTypes[2], `field "members[1].Member"`},
		{`{"from_epoch":1,"keys":[{"member":"a","Sealed_Key":"AQ=="}]}`, requestTypes[3], `field "keys[0].Sealed_Key"`},
		{`{"ſealed_key":"AQ=="}`, requestTypes[0], `write "sealed_key"`}, // U+017F folds to s
		{`{"to\u212Aen":"x"}`, requestTypes[1], `write "token"`},         // U+212A KELVIN SIGN folds to k
		{`{"FROM_EPOCH":1}`, requestTypes[3], `write "from_epoch"`},

		// Unknown fields, at every depth, name the field and the fields.
		{`{"name":"ops","owner":"x"}`, requestTypes[0], `unknown field "owner": the fields of the request body are "cleartext", "id", "name", "sealed_key", "statement"`},
		{`{"statement":{"body":"e30=","sig":"AA==","by":"x"}}`, requestTypes[0], `unknown field "statement.by": the fields of "statement" are "body", "sig"`},
		{`{"now":true}`, requestTypes[4], `unknown field "now": the request body takes no fields`},

		// Duplicates: encoding/json takes the last.
		{`{"name":"ops","name":"admins"}`, requestTypes[0], `field "name" appears twice in the request body`},
		{`{"name":"ops","n\u0061me":"admins"}`, requestTypes[0], `field "name" appears twice`},
		{`{"statement":{"sig":"AA==","sig":"AQ=="}}`, requestTypes[0], `field "statement.sig" appears twice`},

		// What the decoder refused before still is.
		{``, requestTypes[0], "request body is empty"},
		{`{"name":`, requestTypes[0], "malformed JSON body"},
		{`{"name":"ops"} {}`, requestTypes[0], "trailing data"},
		{`{"name":5}`, requestTypes[0], "malformed JSON body"},
		{`[]`, requestTypes[0], "malformed JSON body"},
	}
	for _, c := range cases {
		v := c.v()
		err := decodeJSON([]byte(c.body), v)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("decodeJSON(%s, %T) = %v; want nil", c.body, v, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("decodeJSON(%s, %T) = %v; want an error with %q", c.body, v, err, c.want)
		case err != nil && api.ErrorCode(err) != api.CodeInvalid:
			t.Errorf("decodeJSON(%s, %T) = %v (code %q); want code invalid", c.body, v, err, api.ErrorCode(err))
		}
	}
}

// TestJSONFields: field names as encoding/json gives them, embedded
// structs included, so that the check refuses nothing it accepts.
func TestJSONFields(t *testing.T) {
	t.Parallel()
	type inner struct {
		A string `json:"a"`
		B string
		C string `json:"-"`
		//lint:ignore U1000 an unexported field, which JSON does not fill
		d string
	}
	type other struct {
		A string `json:"a"`
		E string `json:"e"`
	}
	type outer struct {
		inner
		*other
		E     string `json:"e"` // shallower: wins over other.E
		Named inner  `json:"named"`
		F     int    `json:"f,omitempty"`
	}
	got := jsonFields(reflect.TypeFor[outer]())
	want := []string{"B", "e", "f", "named"} // "a" is at depth 1 twice, both tagged: none
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, want) {
		t.Fatalf("jsonFields(outer) = %v; want %v", names, want)
	}
	// And encoding/json agrees on what each body fills.
	for _, body := range []string{`{"B":"x","e":"y","f":1,"named":{"a":"z","B":"w"}}`} {
		var strict, loose outer
		if err := decodeJSON([]byte(body), &strict); err != nil {
			t.Fatalf("decodeJSON(%s) = %v", body, err)
		}
		if err := json.Unmarshal([]byte(body), &loose); err != nil || !reflect.DeepEqual(strict, loose) {
			t.Fatalf("decodeJSON(%s) = %+v; json.Unmarshal = %+v, %v", body, strict, loose, err)
		}
	}
}

// names returns every JSON name declared anywhere in t's tree of structs,
// read from the tags alone: the fuzzer's independent view of the rule.
func names(t reflect.Type, into map[string]bool) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		names(t.Elem(), into)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if n, _, _ := strings.Cut(f.Tag.Get("json"), ","); n != "" && n != "-" {
				into[n] = true
			}
			names(f.Type, into)
		}
	}
}

// keysOf returns every object key of the JSON value in b, at any depth,
// and whether some object holds a key twice.
func keysOf(b []byte) (keys []string, dup bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		object bool
		seen   map[string]bool
		key    bool // the next token of this object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return keys, dup
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].object {
				stack[len(stack)-1].key = true
			}
			continue
		}
		if top != nil && top.object && top.key {
			k := tok.(string)
			keys = append(keys, k)
			dup = dup || top.seen[k]
			top.seen[k] = true
			top.key = false
			continue
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, &frame{object: d == '{', seen: map[string]bool{}, key: d == '{'})
			continue
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

// FuzzDecodeJSON: decodeJSON never panics, refuses only with an invalid
// api.Error, and never accepts what the rule refuses: every key of an
// accepted body is exactly a name its type declares, none twice, the same
// body in upper case is refused, and encoding/json fills the same value.
func FuzzDecodeJSON(f *testing.F) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 73))
	for _, s := range []string{
		`{"id":"aaaaaaaaaaaaaaaaaaaaaaaaaa","name":"ops","cleartext":true}`,
		`{"name":"ops","sealed_key":"` + key + `","statement":{"body":"e30=","sig":"AA=="}}`,
		`{"token":"unibus1:a:b:c:d","admin":true,"registration":{"body":"e30=","sig":"AA=="}}`,
		`{"epoch":1,"members":[{"member":"bob","sealed_key":"AQ=="}],"statement":{"body":"","sig":""}}`,
		`{"from_epoch":1,"remove":["x"],"keys":[{"member":"y","sealed_key":"AQ=="}],"statement":{"body":"e30=","sig":"AA=="}}`,
		`{"NAME":"ops"}`, `{"name":"a","name":"b"}`, `{"statement":{"Body":"e30="}}`, `{"ſig":1}`, `{"n\u0061me":"x"}`,
		`{"members":[{"Member":"x"}]}`, `{}`, `null`, `[]`, `{"name":`, `{"a":{"b":{"c":[1,{"d":2}]}}}`,
	} {
		for i := range requestTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		mk := requestTypes[int(which)%len(requestTypes)]
		v := mk()
		err := decodeJSON(body, v)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodeInvalid || e.Message == "" {
				t.Fatalf("decodeJSON(%q, %T) = %#v; want an invalid api.Error", body, v, err)
			}
			return
		}
		declared := map[string]bool{}
		names(reflect.TypeOf(v), declared)
		keys, dup := keysOf(body)
		if dup {
			t.Fatalf("decodeJSON(%q, %T) accepted a key twice", body, v)
		}
		lower := false
		for _, k := range keys {
			if !declared[k] {
				t.Fatalf("decodeJSON(%q, %T) accepted key %q, which the type does not declare", body, v, k)
			}
			lower = lower || strings.ContainsAny(k, "abcdefghijklmnopqrstuvwxyz")
		}
		if lower {
			if err := decodeJSON(bytes.ToUpper(body), mk()); err == nil {
				t.Fatalf("decodeJSON accepted %q and, in upper case, %q", body, bytes.ToUpper(body))
			}
		}
		loose := mk()
		if err := json.Unmarshal(body, loose); err != nil || !reflect.DeepEqual(v, loose) {
			t.Fatalf("decodeJSON(%q) = %+v; json.Unmarshal = %+v, %v", body, v, loose, err)
		}
	})
}
