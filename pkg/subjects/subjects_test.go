package subjects_test

import (
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/subjects"
)

func TestInboxPrefix(t *testing.T) {
	const key = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
	got := subjects.InboxPrefix(key)
	if want := "_INBOX_" + key; got != want {
		t.Fatalf("InboxPrefix(%q) = %q; want %q", key, got, want)
	}
	// One token, and never below the NATS default "_INBOX." namespace.
	if strings.ContainsAny(got, ".*> \t") {
		t.Errorf("InboxPrefix(%q) = %q; want a single subject token", key, got)
	}
	if strings.HasPrefix(got+".", "_INBOX.") {
		t.Errorf("InboxPrefix(%q) = %q overlaps the default inbox namespace", key, got)
	}
}

func TestNewConsumerPrefix(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		p := subjects.NewConsumerPrefix()
		if len(p) != 26 || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("NewConsumerPrefix() = %q; want 26 characters of [a-z2-7]", p)
		}
		if seen[p] {
			t.Fatalf("NewConsumerPrefix() repeated %q", p)
		}
		seen[p] = true
	}
}
