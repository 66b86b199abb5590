package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
)

// defaultDBPath is the database of a membershipd started without --db.
const defaultDBPath = "./local_files/unibus.db"

const userUsage = `usage:
  membershipd user seed [--db PATH] [--admin] TOKEN   register a user from their public identity token
  membershipd user list [--db PATH] [--json]          list the users
  membershipd user revoke [--db PATH] USER            revoke a user (name or user key)

The user CLI works on the database directly, on the bus host, and may run
while membershipd serves: the server reads users on every call, so a change
takes effect at once. --db must name the server's database (default %s).
For a server with --store kv, pass --store kv [--nats-url URL]
[--control-key PATH] [--ca CERT]: the change is written to the KV buckets,
in the control plane's own account of the bus, which membershipd's
control key reaches (<nats-store>/control.nk, by default
%s), and every node applies it within a second.
While a membershipd serves --store kv for the data directory of --db (it
holds <db>.lock), the commands refuse that database and say what to pass.
`

// userCmd is one sub-command of `membershipd user`.
type userCmd struct {
	name  string
	args  string // the flags and arguments, for usage messages
	arg   string // the positional argument, if any
	nargs int
	run   func(ctx context.Context, store membership.Store, opts userOpts, pos []string, stdout io.Writer) error
}

// userOpts are the flags of the user sub-commands.
type userOpts struct {
	db      string
	admin   bool
	json    bool
	store   string
	natsURL string
	ctlKey  string
	ca      string
}

var userCmds = []userCmd{
	{name: "seed", args: "[--admin] TOKEN", arg: "TOKEN", nargs: 1, run: seedUser},
	{name: "list", args: "[--json]", nargs: 0, run: listUsers},
	{name: "revoke", args: "USER", arg: "USER", nargs: 1, run: revokeUser},
}

// runUserCLI runs `membershipd user ARGS` and returns the exit code: 0 on
// success, 1 on failure, 2 on bad usage.
func runUserCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, userUsage, defaultDBPath, defaultControlKeyPath)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stdout, userUsage, defaultDBPath, defaultControlKeyPath)
		return 0
	}
	var cmd *userCmd
	for i := range userCmds {
		if userCmds[i].name == args[0] {
			cmd = &userCmds[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "membershipd user: unknown command %q\n", args[0])
		fmt.Fprintf(stderr, userUsage, defaultDBPath, defaultControlKeyPath)
		return 2
	}

	var opts userOpts
	fs := flag.NewFlagSet("membershipd user "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: membershipd user %s [--db PATH] %s\n", cmd.name, cmd.args)
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.db, "db", defaultDBPath, "SQLite database path of the membershipd server")
	fs.StringVar(&opts.store, "store", "sqlite", "the server's store: sqlite (--db) or kv (the KV buckets on the bus at --nats-url)")
	fs.StringVar(&opts.natsURL, "nats-url", defaultNodeNATSURL, "with --store kv: NATS URL of the bus")
	fs.StringVar(&opts.ctlKey, "control-key", defaultControlKeyPath, "with --store kv: membershipd's control key (<nats-store>/"+controlKeyFile+"); '' connects without one")
	fs.StringVar(&opts.ca, "ca", "", "with --store kv: PEM CA for a tls:// NATS URL")
	switch cmd.name {
	case "seed":
		fs.BoolVar(&opts.admin, "admin", false, "register the user as an admin (admins manage users over the API)")
	case "list":
		fs.BoolVar(&opts.json, "json", false, "print one JSON array of users")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(pos) != cmd.nargs {
		switch {
		case len(pos) < cmd.nargs:
			fmt.Fprintf(stderr, "membershipd user %s: missing %s\n", cmd.name, cmd.arg)
		default:
			fmt.Fprintf(stderr, "membershipd user %s: unexpected argument %q\n", cmd.name, pos[cmd.nargs])
		}
		fs.Usage()
		return 2
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var store membership.Store
	switch opts.store {
	case "sqlite":
		// A server serving --store kv for this data directory would
		// never see a change to the SQLite file (datadir.go).
		if h, ok := kvServer(opts.db); ok {
			fmt.Fprintf(stderr, "membershipd user %s: %s serves the data directory of %s from the KV store, so a change to this SQLite file would not reach it; nothing was changed: pass --store kv%s\n", cmd.name, h, opts.db, kvFlags(h))
			return 1
		}
		if cmd.name != "seed" {
			// Only seed may create the database: listing or revoking in a
			// database that does not exist means --db names the wrong file.
			if _, err := os.Stat(opts.db); err != nil {
				fmt.Fprintf(stderr, "membershipd user %s: no database at %s: pass the server's --db path\n", cmd.name, opts.db)
				return 1
			}
		}
		if store, err = membership.Open(opts.db); err != nil {
			fmt.Fprintf(stderr, "membershipd user %s: open %s: %v\n", cmd.name, opts.db, err)
			return 1
		}
	case "kv":
		// The KV store lives on the bus: every node sees the change (a
		// revocation within a second, through the nodes' watches).
		nc, err := dialControl("membershipd user", opts.natsURL, opts.ctlKey, opts.ca)
		if err != nil {
			fmt.Fprintf(stderr, "membershipd user %s: %v\n", cmd.name, err)
			return 1
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err == nil {
			store, err = membership.OpenKV(ctx, js, membership.KVConfig{})
		}
		if err != nil {
			fmt.Fprintf(stderr, "membershipd user %s: open the KV store at %s: %v\n", cmd.name, redactURL(opts.natsURL), err)
			return 1
		}
	default:
		fmt.Fprintf(stderr, "membershipd user %s: invalid --store %q: use sqlite or kv\n", cmd.name, opts.store)
		return 2
	}
	err = cmd.run(ctx, store, opts, pos, stdout)
	if cerr := store.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the store: %w", cerr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "membershipd user %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

// kvFlags are the flags, beyond --store kv, that reach the KV store of
// the server h, where they differ from the defaults.
func kvFlags(h holder) string {
	var b strings.Builder
	if h.NATSURL != "" && h.NATSURL != defaultNodeNATSURL {
		fmt.Fprintf(&b, " --nats-url %s", h.NATSURL)
	}
	if def, _ := filepath.Abs(defaultControlKeyPath); h.ControlKey != "" && h.ControlKey != def {
		fmt.Fprintf(&b, " --control-key %s", h.ControlKey)
	}
	return b.String()
}

// parseInterspersed parses flags that may come before or after the
// positional arguments, which it returns in order. Everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func seedUser(ctx context.Context, store membership.Store, opts userOpts, pos []string, stdout io.Writer) error {
	pub, err := identity.ParseToken(pos[0])
	if err != nil {
		return err
	}
	u := api.User{Public: pub, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: time.Now().UTC()}
	if opts.admin {
		u.Role = api.RoleAdmin
	}
	if err := store.CreateUser(ctx, u); err != nil {
		if api.IsCode(err, api.CodeConflict) {
			// The store's message says which: the key, or the name in
			// some case (names are unique regardless of case).
			return fmt.Errorf("user %s (%s) not seeded: %v (see `membershipd user list`)", u.Name, u.User, err)
		}
		return err
	}
	fmt.Fprintf(stdout, "seeded %s (%s) %s\n", identity.Printable(u.Name), u.Role, u.User)
	return nil
}

func listUsers(ctx context.Context, store membership.Store, opts userOpts, pos []string, stdout io.Writer) error {
	users, err := store.ListUsers(ctx)
	if err != nil {
		return err
	}
	if opts.json {
		if users == nil {
			users = []api.User{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(users)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tUSER\tFINGERPRINT")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", identity.Printable(u.Name), u.Role, u.Status, u.User, u.Fingerprint())
	}
	return tw.Flush()
}

func revokeUser(ctx context.Context, store membership.Store, opts userOpts, pos []string, stdout io.Writer) error {
	before, err := store.GetUser(ctx, pos[0])
	if err != nil {
		if api.IsCode(err, api.CodeNotFound) {
			return fmt.Errorf("no user %q: give a name or user key from `membershipd user list`", pos[0])
		}
		return err
	}
	u, err := store.RevokeUser(ctx, before.User, time.Now().UTC())
	if err != nil {
		return err
	}
	if !before.Active() {
		fmt.Fprintf(stdout, "%s was already revoked\n", identity.Printable(u.Name))
		return nil
	}
	fmt.Fprintf(stdout, "revoked %s\n", identity.Printable(u.Name))
	return nil
}
