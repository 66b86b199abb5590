package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/enmanuel/unibus/pkg/api"
)

// Request bodies are decoded strictly (docs/api.md, "JSON bodies"): one
// object, nothing after it, and every key, at every depth, exactly the
// name of a field of the type it fills, once. encoding/json alone matches
// keys without regard to case ("NAME" and "Name" fill Name, and so does
// "ſ"-for-"s" folding), lets the last of two equal keys win and, with
// DisallowUnknownFields, still accepts both; two readers of one body could
// then see different requests. Go 1.26's encoding/json/v2, which is
// case-sensitive and refuses duplicates, is only built with
// GOEXPERIMENT=jsonv2, so keys are checked here, against the same type,
// before encoding/json decodes.

// errNotJSON stops the key check at malformed JSON, which json.Decoder
// then reports in full.
var errNotJSON = errors.New("not JSON")

// decodeJSON reads body into v strictly: see above. Every error is an
// invalid [api.Error] that says what is wrong and what to send.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return api.Errorf(api.CodeInvalid, "request body is empty: send a JSON object (see docs/api.md)")
	}
	kc := keyChecker{dec: json.NewDecoder(bytes.NewReader(body))}
	kc.dec.UseNumber()
	if err := kc.value(reflect.TypeOf(v), ""); err != nil && err != errNotJSON {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.CodeInvalid, "malformed JSON body: %v (see docs/api.md for the fields)", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.Errorf(api.CodeInvalid, "malformed JSON body: trailing data after the object: send one JSON object")
	}
	return nil
}

// keyChecker walks one JSON value and the Go type it will fill side by
// side, and refuses a key the type does not name exactly, or names twice.
// Where the type gives no field names (an interface, a map, a type with
// its own UnmarshalJSON, or a value of the wrong kind, which the decoder
// refuses anyway) only duplicates are refused.
type keyChecker struct{ dec *json.Decoder }

func (k *keyChecker) value(t reflect.Type, path string) error {
	tok, err := k.dec.Token()
	if err != nil {
		return errNotJSON
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	t = target(t)
	if d == '{' {
		return k.object(t, path)
	}
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	for i := 0; k.dec.More(); i++ {
		if err := k.value(elem, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
	}
	if _, err := k.dec.Token(); err != nil {
		return errNotJSON
	}
	return nil
}

func (k *keyChecker) object(t reflect.Type, path string) error {
	var (
		fields map[string]reflect.Type
		elem   reflect.Type
	)
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for k.dec.More() {
		tok, err := k.dec.Token()
		if err != nil {
			return errNotJSON
		}
		key, _ := tok.(string)
		at := key
		if path != "" {
			at = path + "." + key
		}
		if seen[key] {
			return api.Errorf(api.CodeInvalid, "field %q appears twice in the request body: send each field once", at)
		}
		seen[key] = true
		ft := elem
		if fields != nil {
			var ok bool
			if ft, ok = fields[key]; !ok {
				return unknownField(at, path, key, fields)
			}
		}
		if err := k.value(ft, at); err != nil {
			return err
		}
	}
	if _, err := k.dec.Token(); err != nil {
		return errNotJSON
	}
	return nil
}

// unknownField is the error for key, at path at, which no field of the
// object at path has exactly: a field's name in another case, or none.
func unknownField(at, path, key string, fields map[string]reflect.Type) error {
	names := make([]string, 0, len(fields))
	for n := range fields {
		if strings.EqualFold(n, key) {
			return api.Errorf(api.CodeInvalid, "field %q in the request body: field names are case-sensitive: write %q (see docs/api.md)", at, n)
		}
		names = append(names, strconv.Quote(n))
	}
	slices.Sort(names)
	where := "the request body"
	if path != "" {
		where = strconv.Quote(path)
	}
	if len(names) == 0 {
		return api.Errorf(api.CodeInvalid, "unknown field %q: %s takes no fields (see docs/api.md)", at, where)
	}
	return api.Errorf(api.CodeInvalid, "unknown field %q: the fields of %s are %s, named exactly so (see docs/api.md)", at, where, strings.Join(names, ", "))
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// target is the type a JSON value decodes into for a Go value of type t:
// pointers followed; nil where the type names no fields (an interface, a
// type with its own UnmarshalJSON).
func target(t reflect.Type) reflect.Type {
	for t != nil {
		if t.Implements(jsonUnmarshaler) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(jsonUnmarshaler) {
			return nil
		}
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Interface:
			return nil
		default:
			return t
		}
	}
	return nil
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields returns the JSON names of struct type t's fields, as
// encoding/json names them, and the type of each: the json tag's name or
// else the Go name, exported fields only, "-" skipped, the fields of
// untagged embedded structs promoted, the shallowest field of a name
// winning (at equal depth the one tagged, else none).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	type field struct {
		typ    reflect.Type
		depth  int
		tagged bool
		count  int // fields of this name and tag state at this depth
	}
	found := map[string]*field{}
	level, visited := []reflect.Type{t}, map[reflect.Type]bool{}
	for depth := 0; len(level) > 0; depth++ {
		var next []reflect.Type
		for _, st := range level {
			if visited[st] {
				continue
			}
			visited[st] = true
			for i := range st.NumField() {
				sf := st.Field(i)
				ft := sf.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if sf.Anonymous && !sf.IsExported() && ft.Kind() != reflect.Struct || !sf.Anonymous && !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, _, _ := strings.Cut(tag, ",")
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct {
					next = append(next, ft)
					continue
				}
				tagged := name != ""
				if !tagged {
					name = sf.Name
				}
				switch f := found[name]; {
				case f == nil:
					found[name] = &field{typ: sf.Type, depth: depth, tagged: tagged, count: 1}
				case f.depth < depth:
				case f.tagged == tagged:
					f.count++
				case tagged:
					*f = field{typ: sf.Type, depth: depth, tagged: true, count: 1}
				}
			}
		}
		level = next
	}
	m := map[string]reflect.Type{}
	for name, f := range found {
		if f.count == 1 {
			m[name] = f.typ
		}
	}
	fieldCache.Store(t, m)
	return m
}
