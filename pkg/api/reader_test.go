package api_test

import (
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/subjects"
)

const readerUser = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"

func TestValidReaderSubject(t *testing.T) {
	t.Parallel()
	inbox := subjects.InboxPrefix(readerUser)
	other := subjects.InboxPrefix("UAFXDDXRE37T7TTFLAWXJUP52PR3Q6SLRQRPYKTWSTIYTVXGJFMMZGDI")
	for _, tc := range []struct {
		subject string
		want    bool
	}{
		{inbox + ".r.abc", true},
		{inbox + ".r." + subjects.NewConsumerPrefix(), true},
		{inbox + ".r.A-b_9", true},
		{inbox + ".r." + strings.Repeat("a", 64), true},
		{inbox + ".r." + strings.Repeat("a", 65), false},
		{inbox + ".r.", false},
		{inbox + ".r", false},
		{inbox + ".r.*", false},
		{inbox + ".r.>", false},
		{inbox + ".r.a.b", false},
		{inbox + ".r.a b", false},
		{inbox + ".keys", false},
		{inbox + ".x.abc", false},
		{other + ".r.abc", false},
		{"_INBOX.r.abc", false},
		{api.RoomEventSubject(api.NewRoomID()), false},
		{"", false},
	} {
		if got := api.ValidReaderSubject(readerUser, tc.subject); got != tc.want {
			t.Errorf("ValidReaderSubject(%q) = %v; want %v", tc.subject, got, tc.want)
		}
	}
}

// FuzzValidReaderSubject checks that every subject accepted is a literal
// subject of three tokens in the user's own inbox: <inbox>.r.<token>.
func FuzzValidReaderSubject(f *testing.F) {
	inbox := subjects.InboxPrefix(readerUser)
	for _, s := range []string{inbox + ".r.abc", inbox + ".r.*", inbox + ".r.a.b", inbox + ".keys", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !api.ValidReaderSubject(readerUser, s) {
			return
		}
		tokens := strings.Split(s, ".")
		if len(tokens) != 3 || tokens[0] != inbox || tokens[1] != api.ReaderSubjectToken || strings.ContainsAny(s, "*> \t\r\n") {
			t.Fatalf("ValidReaderSubject accepted %q", s)
		}
	})
}
