package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestPermute(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Bool("json", false, "")
	fs.Bool("follow", false, "")
	fs.Int("last", 0, "")
	fs.String("o", "", "")
	fs.String("server", "", "")

	tests := []struct {
		args      []string
		wantFlags []string
		wantPos   []string
	}{
		{nil, nil, nil},
		{[]string{"ops"}, nil, []string{"ops"}},
		{[]string{"ops", "--json"}, []string{"--json"}, []string{"ops"}},
		{[]string{"--json", "ops"}, []string{"--json"}, []string{"ops"}},
		{[]string{"-json", "ops"}, []string{"-json"}, []string{"ops"}},
		{[]string{"ops", "--last", "5", "--follow"}, []string{"--last", "5", "--follow"}, []string{"ops"}},
		{[]string{"ops", "--last=5"}, []string{"--last=5"}, []string{"ops"}},
		{[]string{"--last", "-1", "ops"}, []string{"--last", "-1"}, []string{"ops"}},
		{[]string{"ops", "--json=false", "hi"}, []string{"--json=false"}, []string{"ops", "hi"}},
		{[]string{"ops", "--server", "http://x", "hi"}, []string{"--server", "http://x"}, []string{"ops", "hi"}},
		{[]string{"room", "msg", "-o", "-"}, []string{"-o", "-"}, []string{"room", "msg"}},
		{[]string{"room", "-", "x"}, nil, []string{"room", "-", "x"}},
		{[]string{"ops", "--", "--json", "-5 degrees"}, nil, []string{"ops", "--json", "-5 degrees"}},
		{[]string{"--json", "--"}, []string{"--json"}, nil},
		{[]string{"ops", "--last"}, []string{"--last"}, []string{"ops"}},
		{[]string{"--bogus", "ops"}, []string{"--bogus"}, []string{"ops"}},
	}
	for _, tt := range tests {
		flags, pos := permute(fs, tt.args)
		if !slices.Equal(flags, tt.wantFlags) || !slices.Equal(pos, tt.wantPos) {
			t.Errorf("permute(%q) = %q, %q; want %q, %q", tt.args, flags, pos, tt.wantFlags, tt.wantPos)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args      []string
		wantWords []string
		wantRest  []string
	}{
		{args: nil},
		{args: []string{"room", "create", "ops"}, wantWords: []string{"room", "create"}, wantRest: []string{"ops"}},
		{args: []string{"--server", "http://x", "room", "create", "ops"}, wantWords: []string{"room", "create"}, wantRest: []string{"--server", "http://x", "ops"}},
		{args: []string{"room", "--identity=/id", "list", "--json"}, wantWords: []string{"room", "list"}, wantRest: []string{"--identity=/id", "--json"}},
		{args: []string{"--json", "send", "ops", "hi"}, wantWords: []string{"send"}, wantRest: []string{"--json", "ops", "hi"}},
		{args: []string{"read", "--", "ops"}, wantWords: []string{"read"}, wantRest: []string{"--", "ops"}},
		{args: []string{"--", "read"}, wantRest: []string{"--", "read"}},
		{args: []string{"-h"}, wantRest: []string{"-h"}},
	}
	for _, tt := range tests {
		words, rest := splitCommand(tt.args)
		if !slices.Equal(words, tt.wantWords) || !slices.Equal(rest, tt.wantRest) {
			t.Errorf("splitCommand(%q) = %q, %q; want %q, %q", tt.args, words, rest, tt.wantWords, tt.wantRest)
		}
	}
}

func TestHumanSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{3 << 20, "3.0 MiB"},
		{5 << 30, "5.0 GiB"},
	}
	for _, tt := range tests {
		if got := humanSize(tt.n); got != tt.want {
			t.Errorf("humanSize(%d) = %q; want %q", tt.n, got, tt.want)
		}
	}
}

func TestSafeName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want string // "" means refused
	}{
		{"report.pdf", "report.pdf"},
		{"dir/report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{"/abs/path.txt", "path.txt"},
		{"", ""},
		{".", ""},
		{"..", ""},
		{"/", ""},
		{`a\b`, ""},
		{"bell\a", ""},
	}
	for _, tt := range tests {
		got, err := safeName(tt.name)
		if (tt.want == "") != (err != nil) || got != tt.want {
			t.Errorf("safeName(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
