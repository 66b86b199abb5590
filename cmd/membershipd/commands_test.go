package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// runCLI runs `membershipd ARGS`, args[0] a command of the subcommands
// table, as main dispatches it; it checks the exit code and returns stdout
// and stderr.
func runCLI(t testing.TB, wantCode int, args ...string) (stdout, stderr string) {
	t.Helper()
	var sub *subcommand
	if len(args) > 0 {
		sub = findSubcommand(args[0])
	}
	if sub == nil {
		t.Fatalf("membershipd %q: not a command of the subcommands table", args)
	}
	var out, errOut bytes.Buffer
	if code := sub.run(args[1:], &out, &errOut); code != wantCode {
		t.Fatalf("membershipd %q = exit %d; want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

func TestClosestCommand(t *testing.T) {
	t.Parallel()
	tests := []struct{ word, want string }{
		{"usr", "user"},
		{"users", "user"},
		{"migrate-to-k", "migrate-to-kv"},
		{"migrate_to_kv", "migrate-to-kv"},
		{"migrate", "migrate-to-kv"},
		{"tsl", "tls"},
		{"verison", "version"},
		{"serve", ""},
		{"x", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := closestCommand(tt.word); got != tt.want {
			t.Errorf("closestCommand(%q) = %q; want %q", tt.word, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"user", "user", 0}, {"usr", "user", 1}, {"", "tls", 3}, {"kitten", "sitting", 3}, {"tsl", "tls", 2},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestUnknownCommand runs the server's command line with a word it does
// not take: one line on stderr, naming the closest command, and exit 2.
func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	var names []string
	for _, c := range subcommands {
		names = append(names, c.name)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"usr", "list"}, `unknown command "usr": did you mean "user"?`},
		{[]string{"migrate-to-k", "--nats-url", "nats://127.0.0.1:1"}, `did you mean "migrate-to-kv"?`},
		{[]string{"serve"}, `unknown command "serve": membershipd takes flags, or a command first: ` + strings.Join(names, ", ")},
		{[]string{"--db", "x.db", "user", "list"}, `"user" must come first`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), tt.args, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 2 {
			t.Errorf("membershipd %q: exit %d; want 2", tt.args, code)
		}
		if got := stderr.String(); !strings.Contains(got, tt.want) || strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "membershipd: ") {
			t.Errorf("membershipd %q: stderr %q; want one line \"membershipd: …\" containing %q", tt.args, got, tt.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("membershipd %q: stdout %q; want nothing", tt.args, stdout.String())
		}
	}
}

func TestServerUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) || exitCode(err, io.Discard) != 0 {
			t.Errorf("membershipd %q = %v; want flag.ErrHelp, exit 0", args, err)
		}
		out := stdout.String()
		for _, c := range subcommands {
			if !strings.Contains(out, "\n  "+c.name) {
				t.Errorf("membershipd %q does not list the %s command:\n%s", args, c.name, out)
			}
		}
		for _, want := range []string{"--tls-cert", "HTTPS", "-bus-auth", "-version"} {
			if !strings.Contains(out, want) {
				t.Errorf("membershipd %q does not mention %s", args, want)
			}
		}
		if stderr.Len() != 0 {
			t.Errorf("membershipd %q: stderr %q; want nothing", args, stderr.String())
		}
	}
}

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	want := "membershipd " + thisBuild().String() + "\n"
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &stdout, io.Discard); err != nil || stdout.String() != want {
		t.Errorf("membershipd --version = %v, %q; want nil, %q", err, stdout.String(), want)
	}
	stdout.Reset()
	if code := runVersion(nil, &stdout, io.Discard); code != 0 || stdout.String() != want {
		t.Errorf("membershipd version = exit %d, %q; want 0, %q", code, stdout.String(), want)
	}
	if code := runVersion([]string{"extra"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("membershipd version extra = exit %d; want 2", code)
	}
}

// TestSubcommandsComeFromTheTable keeps -h from drifting from what main
// dispatches: main.go may not pick a command out of os.Args itself, and
// every command in the table is listed.
func TestSubcommandsComeFromTheTable(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			be, ok := n.(*ast.BinaryExpr)
			if !ok || (be.Op != token.EQL && be.Op != token.NEQ) {
				return true
			}
			for _, side := range [][2]ast.Expr{{be.X, be.Y}, {be.Y, be.X}} {
				if isOSArg1(side[0]) {
					if lit, ok := side[1].(*ast.BasicLit); ok {
						word, _ := strconv.Unquote(lit.Value)
						t.Errorf("%s: main dispatches %q itself: add it to subcommands (commands.go) so that -h lists it", fset.Position(be.Pos()), word)
					}
				}
			}
			return true
		})
	}
}

// isOSArg1 reports whether e is os.Args[1].
func isOSArg1(e ast.Expr) bool {
	ix, ok := e.(*ast.IndexExpr)
	if !ok {
		return false
	}
	sel, ok := ix.X.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Args" {
		return false
	}
	if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "os" {
		return false
	}
	lit, ok := ix.Index.(*ast.BasicLit)
	return ok && lit.Value == "1"
}
