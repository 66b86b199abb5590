package api_test

import (
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/api"
)

func TestErrorCodesRoundTripThroughStatus(t *testing.T) {
	for _, code := range []string{api.CodeInvalid, api.CodeUnauthorized, api.CodeForbidden, api.CodeNotFound, api.CodeMethod, api.CodeConflict, api.CodeTooLarge, api.CodeUnsupported, api.CodeRateLimited, api.CodeInternal, api.CodeUnavailable} {
		if got := api.CodeForStatus(api.HTTPStatus(code)); got != code {
			t.Errorf("CodeForStatus(HTTPStatus(%q)) = %q; want %q", code, got, code)
		}
	}
	if got := api.ErrorCode(api.Errorf(api.CodeConflict, "x")); got != api.CodeConflict {
		t.Errorf("ErrorCode = %q; want conflict", got)
	}
}

func TestRoomIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := api.NewRoomID()
		if !api.ValidRoomID(id) || seen[id] {
			t.Fatalf("NewRoomID() = %q: invalid or repeated", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "abc", strings.Repeat("a", 25), strings.Repeat("a", 27), strings.Repeat("A", 26), strings.Repeat("a", 25) + "1", strings.Repeat("a", 25) + ".", "../../../../../../etc/passwd"} {
		if api.ValidRoomID(bad) {
			t.Errorf("ValidRoomID(%q) = true; want false", bad)
		}
	}
}

func FuzzRoomIDAndSubject(f *testing.F) {
	f.Add(api.NewRoomID())
	f.Add("a.b")
	f.Add(">")
	f.Fuzz(func(t *testing.T, s string) {
		if !api.ValidRoomID(s) {
			return
		}
		// A valid id is one plain subject token: no wildcard, separator or
		// space can reach a NATS subject through it.
		subj := api.RoomSubject(s)
		if strings.Count(subj, ".") != 3 || strings.ContainsAny(s, ".*> \t\r\n") {
			t.Fatalf("RoomSubject(%q) = %q", s, subj)
		}
	})
}

func TestRoomNames(t *testing.T) {
	cases := map[string]bool{"ops": true, "Ops room ✓": true, "": false, " ops": false, "ops ": false, "a\x00b": false, "a\nb": false, strings.Repeat("x", api.MaxRoomNameLen+1): false}
	for name, want := range cases {
		if got := api.ValidRoomName(name); got != want {
			t.Errorf("ValidRoomName(%q) = %v; want %v", name, got, want)
		}
	}
}
