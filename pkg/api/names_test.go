package api_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/api"
)

func TestCheckRoomName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"":                       "needs a name",
		strings.Repeat("x", 129): "129 bytes",
		" ops":                   "starts or ends with a space",
		"ops ":                   "starts or ends with a space",
		"ops\u202etxt.exe":       "U+202E (a bidirectional-text control",
		"ops\u2067":              "U+2067",
		"o\u200bps":              "U+200B (a zero-width character)",
		"o\u200dps":              "U+200D",
		"\ufeffops":              "U+FEFF",
		"ops\x1b[31m":            "U+001B (a control character)",
		"ops\u0085":              "U+0085",
		"ops\u00a0":              "U+00A0",
		"ops\u3164":              "U+3164",
		"ops\ufe0f":              "U+FE0F (a variation selector",
		"ops\xff":                "invalid UTF-8",
		"\tops":                  "U+0009",
	} {
		err := api.CheckRoomName(name)
		if api.ErrorCode(err) != api.CodeInvalid || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckRoomName(%q) = %v; want an invalid error saying %q", name, err, want)
			continue
		}
		if !strings.Contains(err.Error(), "use 1 to "+strconv.Itoa(api.MaxRoomNameLen)+" bytes") {
			t.Errorf("CheckRoomName(%q) = %q; want it to say what a room name may hold", name, err)
		}
		if api.ValidRoomName(name) {
			t.Errorf("ValidRoomName(%q) = true", name)
		}
	}
	for _, name := range []string{"ops", "Ops room ✓", "café", "cafe\u0301", "חדר", "غرفة", "会议室", "🚀 launch", `a\b`, strings.Repeat("x", 128)} {
		if err := api.CheckRoomName(name); err != nil {
			t.Errorf("CheckRoomName(%q) = %v; want nil", name, err)
		}
	}
}
