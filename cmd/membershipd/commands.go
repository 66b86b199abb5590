package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/enmanuel/unibus/internal/buildinfo"
	"github.com/enmanuel/unibus/pkg/api"
)

// subcommand is a command membershipd runs on the bus host instead of the
// server: `membershipd NAME ARGS…`. It returns the exit code: 0 on
// success, 1 on failure, 2 on bad usage.
type subcommand struct {
	name     string
	synopsis string // what -h shows after the name
	help     string // one line
	run      func(args []string, stdout, stderr io.Writer) int
}

// subcommands is every command main dispatches before the server's flags
// are parsed. -h lists them from here and a mistyped one is matched
// against them, so a command added here is listed and suggested, and one
// dispatched elsewhere is caught by TestSubcommandsComeFromTheTable.
var subcommands = []subcommand{
	// `membershipd user ...` is the local administration CLI (seed, list,
	// revoke bus users; usercli.go). Running it on the bus host is trusted
	// by design (whoever has a shell there already controls the service),
	// which is how the first admin is seeded without a chicken-egg auth
	// problem.
	{"user", "seed|list|revoke", "register, list and revoke users, on the bus host", runUserCLI},
	// `membershipd tls ...` makes development certificates (tlscli.go).
	{"tls", "init|node", "make a development CA and certificates in deploy/tls/", runTLSCLI},
	// `membershipd migrate-to-kv` is the one-time, idempotent
	// SQLite->JetStream KV data move for decentralization (issue 0003c;
	// migratecli.go).
	{"migrate-to-kv", "--nats-url URL", "copy the SQLite control plane and blobs into JetStream KV", runMigrateCLI},
	// `membershipd cluster ...` is the operator's view and care of a
	// cluster, on a node's host (clustercli.go).
	{"cluster", "status|remove-peer|backup|restore|replicas", "the cluster's nodes and streams; remove a node; back up and restore the whole state; set every stream's replicas", runClusterCLI},
	{"version", "", "print the build's version (as --version does)", runVersion},
}

// signalContext is the context of a host command: cancelled by SIGINT or
// SIGTERM, as the server's is.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// findSubcommand returns the subcommand called name, or nil.
func findSubcommand(name string) *subcommand {
	for i := range subcommands {
		if subcommands[i].name == name {
			return &subcommands[i]
		}
	}
	return nil
}

// thisBuild is this binary's build: its version (main.version when a release
// build set it) and commit.
func thisBuild() buildinfo.Info { return buildinfo.Read(version) }

// apiBuild is the build as /v1/info reports it.
func apiBuild(b buildinfo.Info) api.Build {
	return api.Build{Version: b.Version, Commit: b.Commit, CommitTime: b.CommitTime, Modified: b.Modified}
}

// printVersion prints the build the way unibus --version does.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "membershipd %s\n", thisBuild())
}

// runVersion runs `membershipd version`.
func runVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("membershipd version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), "usage: membershipd version") }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "membershipd version: unexpected argument %q\nusage: membershipd version\n", fs.Arg(0))
		return 2
	}
	printVersion(stdout)
	return 0
}

const serverUsageIntro = `membershipd is the unibus control plane. With no command it runs the server:
an embedded NATS with JetStream, the SQLite store, the blob store and the API
on http://127.0.0.1:8470, loopback only.

usage: membershipd [FLAGS]          run the server
       membershipd COMMAND [ARGS]   run a command on the bus host

Commands:
`

const serverUsageOutro = `
Run ` + "`membershipd COMMAND -h`" + ` for a command's flags.

HTTPS: --tls-cert with --tls-key serves the API over HTTPS, and the embedded
NATS over TLS, with that certificate; TLS needs --bus-auth enforce.

Flags:
`

// printServerUsage prints the usage of membershipd: its commands, from
// subcommands, then the server's flags in fs.
func printServerUsage(w io.Writer, fs *flag.FlagSet) {
	io.WriteString(w, serverUsageIntro)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range subcommands {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+c.synopsis), c.help)
	}
	tw.Flush()
	io.WriteString(w, serverUsageOutro)
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

// unknownCommand is the one line for a word membershipd does not take:
// the closest command's name, when one is close.
func unknownCommand(word string) string {
	if findSubcommand(word) != nil {
		return fmt.Sprintf("%q must come first: membershipd %s ARGS (the server's flags do not apply to it)", word, word)
	}
	if best := closestCommand(word); best != "" {
		return fmt.Sprintf("unknown command %q: did you mean %q? (membershipd -h lists the commands and flags)", word, best)
	}
	names := make([]string, len(subcommands))
	for i, c := range subcommands {
		names[i] = c.name
	}
	return fmt.Sprintf("unknown command %q: membershipd takes flags, or a command first: %s (membershipd -h)", word, strings.Join(names, ", "))
}

// closestCommand returns the subcommand closest to word in edit distance,
// or "" when none is close: at most two edits (fewer than word has
// letters), or word is the start of a name.
func closestCommand(word string) string {
	best, bestDist := "", 3
	for _, c := range subcommands {
		if d := editDistance(word, c.name); d < bestDist && d < len(word) {
			best, bestDist = c.name, d
		}
	}
	if best == "" && len(word) >= 3 {
		for _, c := range subcommands {
			if strings.HasPrefix(c.name, word) {
				return c.name
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
