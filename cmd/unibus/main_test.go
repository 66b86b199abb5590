package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// result is what one run of the command line left behind.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs unibus with args and stdin.
func runCLI(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// wantFailure reports an error unless the run failed (exit 1) with an
// error message, "unibus: …", that contains every one of wants.
func (r result) wantFailure(t testing.TB, what string, wants ...string) {
	t.Helper()
	ok := r.code == 1 && strings.HasPrefix(r.stderr, "unibus: ")
	for _, w := range wants {
		ok = ok && strings.Contains(r.stderr, w)
	}
	if !ok {
		t.Errorf("%s = exit %d, stderr %q; want exit 1 and an error containing %q", what, r.code, r.stderr, wants)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("UNIBUS_IDENTITY", t.TempDir()+"/none.json")
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no arguments", nil, "usage: unibus COMMAND"},
		{"only settings", []string{"--server", "http://127.0.0.1:1"}, "missing command"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown sub-command", []string{"room", "paint", "ops"}, `unknown command "room paint"`},
		{"group alone", []string{"room"}, "missing room command"},
		{"unknown flag", []string{"room", "create", "--bogus", "ops"}, "flag provided but not defined: -bogus"},
		{"unknown flag after", []string{"room", "list", "--verbose"}, "-verbose"},
		{"missing ROOM", []string{"read"}, "missing ROOM"},
		{"missing ROOM of show", []string{"room", "show", "--json"}, "missing ROOM"},
		{"missing USER", []string{"room", "add", "ops"}, "missing USER"},
		{"missing MSGID", []string{"fetch", "ops"}, "missing MSGID"},
		{"missing TOKEN", []string{"user", "add", "--admin"}, "missing TOKEN"},
		{"extra argument", []string{"room", "list", "extra"}, `unexpected argument "extra"`},
		{"extra after text", []string{"send", "ops", "hello", "world"}, `unexpected argument "world"`},
		{"negative last", []string{"read", "ops", "--last", "-1"}, "--last -1"},
		{"bad last", []string{"read", "ops", "--last", "many"}, "invalid value"},
		{"value missing", []string{"read", "ops", "--last"}, "flag needs an argument"},
		{"id new without name", []string{"id", "new"}, "--name is required"},
		{"help on nothing", []string{"help", "nothing"}, `no command "nothing"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", tt.args...)
			if r.code != 2 {
				t.Fatalf("unibus %q: exit %d; want 2 (stderr %q)", tt.args, r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("unibus %q: stderr %q does not contain %q", tt.args, r.stderr, tt.want)
			}
			if !strings.Contains(r.stderr, "usage:") {
				t.Errorf("unibus %q: stderr %q shows no usage", tt.args, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("unibus %q: stdout %q; want nothing", tt.args, r.stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"help"}, "unibus room create NAME [--cleartext] [--json]"},
		{[]string{"-h"}, "Client settings"},
		{[]string{"--help"}, "unibus read ROOM [--last N] [--follow] [--json]"},
		{[]string{"room", "help"}, "unibus room rekey ROOM"},
		{[]string{"room", "-h"}, "unibus room remove ROOM USER"},
		{[]string{"help", "room"}, "unibus room add ROOM USER"},
		{[]string{"help", "send"}, "--file PATH"},
		{[]string{"room", "create", "-h"}, "--cleartext"},
		{[]string{"fetch", "--help"}, "-o PATH"},
	}
	for _, tt := range tests {
		r := runCLI(t, "", tt.args...)
		if r.code != 0 || !strings.Contains(r.stdout, tt.want) {
			t.Errorf("unibus %q = exit %d, stdout %q; want exit 0 and %q", tt.args, r.code, r.stdout, tt.want)
		}
	}
}

func TestCAErrors(t *testing.T) {
	dir := t.TempDir()
	id := dir + "/id.json"
	if r := runCLI(t, "", "id", "new", "--name", "alice", "--identity", id); r.code != 0 {
		t.Fatalf("id new: exit %d: %s", r.code, r.stderr)
	}
	notPEM := dir + "/not.pem"
	writeFile(t, notPEM, []byte("not a certificate\n"))
	tests := []struct {
		ca   string
		want string
	}{
		{dir + "/missing.pem", "read the CA certificate"},
		{notPEM, "no PEM certificate in " + notPEM},
	}
	for _, tt := range tests {
		runCLI(t, "", "room", "list", "--identity", id, "--ca", tt.ca, "--server", "http://127.0.0.1:1").wantFailure(t, "room list --ca "+tt.ca, tt.want)
	}
}
