// Command unibus is the command-line client of a unibus message bus: it
// makes and shows the caller's identity, manages users (admins) and rooms,
// and sends, reads and fetches end-to-end encrypted messages and files. It
// is a thin layer over the SDK in package client.
//
// # Commands
//
//	unibus id new --name NAME [--json]                    make the identity file (mode 0600)
//	unibus id show [--public] [--json]                    show it; --public prints only the public token
//	unibus id fingerprint [--json]                        the keys' fingerprint, to compare out of band
//	unibus user add TOKEN [--admin] [--json]              register a user (admins only)
//	unibus user list [--json]                             list the users (admins only)
//	unibus user revoke USER [--json]                      revoke a user (admins only)
//	unibus room create NAME [--cleartext] [--json]        create a room and print its id
//	unibus room list [--json]                             the caller's rooms
//	unibus room show ROOM [--json]                        one room with its epoch and members
//	unibus room add ROOM USER [--json]                    seal the current key to USER
//	unibus room remove ROOM USER [--json]                 remove USER and rekey in one step
//	unibus room rekey ROOM [--json]                       start a new epoch
//	unibus room leave ROOM [--json]                       leave the room; it is rekeyed without you
//	unibus room delete ROOM [--json]                      delete a room you administer, with all of it
//	unibus send ROOM [TEXT] [--file PATH] [--json]        send text (argument or stdin) and a file
//	unibus read ROOM [--last N] [--follow] [--json]       print the history, then live messages
//	unibus fetch ROOM MSGID [-o PATH] [--force] [--json]  download and decrypt an attachment
//	unibus bench [--msgs N] [--size BYTES] [--rate R] [--rekey-members N] [--json]
//	                                                      measure raw NATS against end to end, the API, a rekey
//	unibus completion bash|zsh|fish                       print a shell completion script
//	unibus version [--json], unibus --version             print the build's version and commit
//
// USER is a user's name or user key; ROOM is a room id or, where it is
// unambiguous among the caller's rooms, its name.
//
// # Client settings
//
// --server URL[,URL…] (env UNIBUS_SERVER, default http://127.0.0.1:8470;
// several URLs name the nodes of one cluster, tried in turn),
// --identity PATH (env UNIBUS_IDENTITY, default
// $XDG_CONFIG_HOME/unibus/identity.json, else ~/.config/unibus/identity.json),
// --ca PATH (env UNIBUS_CA), --nats URL[,URL…] (env UNIBUS_NATS) and
// --timeout D (env UNIBUS_TIMEOUT, default 30s: the longest any wait for
// the bus lasts) are accepted by every command, before or after it. Flags
// and positional arguments may be mixed in any order; "--" ends the flags.
//
// # Output and exit status
//
// --json prints one JSON document, or one JSON object per line for the
// stream of `read`. Errors go to stderr as `unibus: MESSAGE`. The exit status
// is 0 on success, 1 on failure and 2 on bad usage.
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/enmanuel/unibus/pkg/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A second signal kills the process the usual way.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options holds every flag of every command; each command defines the ones
// it takes.
type options struct {
	// Client settings, taken by every command.
	server, identity, ca, nats string
	timeout                    timeoutFlag

	json, public, admin, cleartext, follow, force bool
	name, file, out                               string
	last                                          int
	bench                                         benchOptions // bench.go
}

// invocation is one command being run: its flags and standard streams.
type invocation struct {
	opts   options
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// commands is the command table, for the commands that describe it
	// (completion): they cannot name the table they are in.
	commands []*command
}

// command is one unibus command.
type command struct {
	name   string   // "room create"
	pos    []string // positional arguments; "[TEXT]" is optional
	flags  string   // the flags, for the synopsis
	help   string   // one line
	define func(fs *flag.FlagSet, o *options)
	run    func(ctx context.Context, x *invocation, args []string) error
}

// synopsis is the command's usage line, without "usage: ".
func (c *command) synopsis() string {
	parts := append([]string{"unibus", c.name}, c.pos...)
	if c.flags != "" {
		parts = append(parts, c.flags)
	}
	return strings.Join(parts, " ")
}

// arity returns how many positional arguments the command takes.
func (c *command) arity() (min, max int) {
	for _, p := range c.pos {
		if !strings.HasPrefix(p, "[") {
			min++
		}
	}
	return min, len(c.pos)
}

// usageWidth is the width the usage fits in.
const usageWidth = 80

// sections names the section of the usage of a command outside the
// groups; the others are under "Messages:".
var sections = map[string]string{
	"bench":      "Tools:",
	"completion": "Tools:",
	"version":    "Tools:",
}

// groups names the commands that have sub-commands, with the title of
// their section in the usage.
var groups = map[string]string{
	"id":   "Your identity:",
	"user": "Users (admins only):",
	"room": "Rooms:",
}

// settingFlags are the client settings that take a value.
var settingFlags = map[string]bool{"server": true, "identity": true, "ca": true, "nats": true, "timeout": true}

var commands = []*command{
	{name: "id new", flags: "--name NAME [--json]", help: "make your identity file (mode 0600); refuses to overwrite one",
		define: with(nameFlag, jsonFlag("print the new identity as JSON")), run: idNew},
	{name: "id show", flags: "[--public] [--json]", help: "show your identity; --public prints only the public token",
		define: with(publicFlag, jsonFlag("print name, user, xkey, public and fingerprint as JSON")), run: idShow},
	{name: "id fingerprint", flags: "[--json]", help: "print your keys' fingerprint, to compare out of band",
		define: with(jsonFlag("print the fingerprint as JSON")), run: idFingerprint},

	{name: "user add", pos: []string{"TOKEN"}, flags: "[--admin] [--json]", help: "register a user from their public identity token",
		define: with(adminFlag, jsonFlag("print the user as JSON")), run: userAdd},
	{name: "user list", flags: "[--json]", help: "list the users",
		define: with(jsonFlag("print a JSON array of users")), run: userList},
	{name: "user revoke", pos: []string{"USER"}, flags: "[--json]", help: "revoke a user; their access ends at once",
		define: with(jsonFlag("print the user as JSON")), run: userRevoke},

	{name: "room create", pos: []string{"NAME"}, flags: "[--cleartext] [--json]", help: "create a room with you as its member; prints its id",
		define: with(cleartextFlag, jsonFlag("print the room as JSON")), run: roomCreate},
	{name: "room list", flags: "[--json]", help: "list your rooms",
		define: with(jsonFlag("print a JSON array of rooms")), run: roomList},
	{name: "room show", pos: []string{"ROOM"}, flags: "[--json]", help: "show a room with its epoch and members",
		define: with(jsonFlag("print the room as JSON")), run: roomShow},
	{name: "room add", pos: []string{"ROOM", "USER"}, flags: "[--json]", help: "add USER, sealing the current epoch's key to them",
		define: with(jsonFlag("print the room as JSON")), run: roomAdd},
	{name: "room remove", pos: []string{"ROOM", "USER"}, flags: "[--json]", help: "remove USER and rekey in one step",
		define: with(jsonFlag("print the room as JSON")), run: roomRemove},
	{name: "room rekey", pos: []string{"ROOM"}, flags: "[--json]", help: "start a new epoch with a fresh key",
		define: with(jsonFlag("print the room as JSON")), run: roomRekey},
	{name: "room leave", pos: []string{"ROOM"}, flags: "[--json]", help: "leave the room: it is rekeyed without you in the same step",
		define: with(jsonFlag("print the room as JSON")), run: roomLeave},
	{name: "room delete", pos: []string{"ROOM"}, flags: "[--json]", help: "delete a room you administer, with its keys, history and files",
		define: with(jsonFlag("print the deleted room as JSON")), run: roomDelete},

	{name: "send", pos: []string{"ROOM", "[TEXT]"}, flags: "[--file PATH] [--json]", help: "send text (argument or stdin) and maybe a file; prints its id",
		define: with(fileFlag, jsonFlag("print the message id and room as JSON")), run: send},
	{name: "read", pos: []string{"ROOM"}, flags: "[--last N] [--follow] [--json]", help: "print the room's messages; with --follow, live ones too",
		define: with(lastFlag, followFlag, jsonFlag("print one JSON object per message and line")), run: read},
	{name: "fetch", pos: []string{"ROOM", "MSGID"}, flags: "[-o PATH] [--force] [--json]", help: "download and decrypt a message's attachment",
		define: with(outFlag, forceFlag, jsonFlag("print what was saved as JSON")), run: fetch},
	{name: "bench", flags: "[--msgs N] [--size BYTES] [--rate R] [--rekey-members N] [--json]", help: "measure the deployment: raw NATS against end to end, the API, a rekey", define: benchFlags, run: runBench},
	{name: "completion", pos: []string{"SHELL"}, help: "print a completion script for SHELL: bash, zsh or fish", run: runCompletion},
	{name: "version", flags: "[--json]", help: "print this build's version and commit", define: with(jsonFlag("print the build as JSON")), run: runVersion},
}

func with(defs ...func(*flag.FlagSet, *options)) func(*flag.FlagSet, *options) {
	return func(fs *flag.FlagSet, o *options) {
		for _, d := range defs {
			d(fs, o)
		}
	}
}

func jsonFlag(usage string) func(*flag.FlagSet, *options) {
	return func(fs *flag.FlagSet, o *options) { fs.BoolVar(&o.json, "json", false, usage) }
}

func nameFlag(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.name, "name", "", "your user `NAME`: letters, digits, '.', '_' or '-'")
}

func publicFlag(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.public, "public", false, "print only the public identity token, for an admin")
}

func adminFlag(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.admin, "admin", false, "register the user as an admin")
}

func cleartextFlag(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.cleartext, "cleartext", false, "make a cleartext room, not end-to-end encrypted")
}

func fileFlag(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.file, "file", "", "attach the file at `PATH`; the text then comes from TEXT alone (stdin is not read)")
}

func lastFlag(fs *flag.FlagSet, o *options) {
	fs.IntVar(&o.last, "last", 0, "print only the last `N` messages of the history (0: all)")
}

func followFlag(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.follow, "follow", false, "keep printing new messages until interrupted")
}

func outFlag(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.out, "o", "", "write the file to `PATH` (a directory keeps the attachment's name; - is stdout)")
}

func forceFlag(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.force, "force", false, "overwrite an existing file")
}

// defineSettings defines the client settings, with their defaults read
// from the environment.
func defineSettings(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.server, "server", envOr("UNIBUS_SERVER", client.DefaultServer), "talk to the membershipd at `URL`; several, separated by commas, name the nodes of one cluster, tried in turn (env UNIBUS_SERVER)")
	fs.StringVar(&o.identity, "identity", envOr("UNIBUS_IDENTITY", defaultIdentityPath()), "your identity file at `PATH` (env UNIBUS_IDENTITY)")
	fs.StringVar(&o.ca, "ca", os.Getenv("UNIBUS_CA"), "trust the PEM CA at `PATH` for HTTPS and NATS TLS (env UNIBUS_CA)")
	fs.StringVar(&o.nats, "nats", os.Getenv("UNIBUS_NATS"), "connect to NATS at `URL` (or several, separated by commas), not where the server says (env UNIBUS_NATS)")
	o.timeout.fromEnv("UNIBUS_TIMEOUT", client.DefaultTimeout)
	fs.Var(&o.timeout, "timeout", "wait at most `D` for the bus: a request over every node, the NATS connection, a message's storage (env UNIBUS_TIMEOUT; bench: also each part, 2m unless given)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// defaultIdentityPath is $XDG_CONFIG_HOME/unibus/identity.json, else
// ~/.config/unibus/identity.json, or "" when there is no home directory.
func defaultIdentityPath() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "unibus", "identity.json")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".config", "unibus", "identity.json")
}

// connect makes an SDK client from the client settings, adjusted by
// each of adjust. The caller closes it.
func (x *invocation) connect(adjust ...func(*client.Config)) (*client.Client, error) {
	id, err := x.loadIdentity()
	if err != nil {
		return nil, err
	}
	tlsConfig, err := loadCA(x.opts.ca)
	if err != nil {
		return nil, err
	}
	if err := x.opts.timeout.err; err != nil {
		return nil, err
	}
	cfg := client.Config{Servers: serverList(x.opts.server), Timeout: x.opts.timeout.d, Identity: id, TLS: tlsConfig, NATSURL: x.opts.nats, PinFile: pinFile(x.opts.identity)}
	for _, a := range adjust {
		a(&cfg)
	}
	return client.New(cfg)
}

// pinFile is where the client remembers the keys and room history heads it
// has verified, beside the identity file: alice.json pins to
// alice.pins.json.
func pinFile(identityPath string) string {
	return strings.TrimSuffix(identityPath, filepath.Ext(identityPath)) + ".pins.json"
}

// loadCA returns a TLS configuration trusting the PEM certificates in the
// file at path, or nil when path is empty.
func loadCA(path string) (*tls.Config, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificate: %w (pass the bus CA's PEM file with --ca or UNIBUS_CA)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no PEM certificate in %s: --ca needs the bus CA's certificate", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// usageError is bad usage of a command: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// run runs unibus with args (without the program name) and returns the exit
// status. Cancelling ctx interrupts the command.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	words, rest := splitCommand(args)
	if len(words) == 0 {
		if hasHelpFlag(rest) {
			printUsage(stdout)
			return 0
		}
		if len(rest) > 0 && isVersionFlag(rest[0]) {
			printVersion(stdout)
			return 0
		}
		if len(rest) > 0 {
			fmt.Fprintln(stderr, "unibus: missing command")
		}
		printUsage(stderr)
		return 2
	}
	if words[0] == "help" {
		return help(positionals(rest), stdout, stderr)
	}
	if groups[words[0]] != "" {
		switch {
		case len(words) == 1 && hasHelpFlag(rest):
			printGroupUsage(stdout, words[0])
			return 0
		case len(words) == 1:
			fmt.Fprintf(stderr, "unibus: missing %s command\n", words[0])
			printGroupUsage(stderr, words[0])
			return 2
		case words[1] == "help":
			printGroupUsage(stdout, words[0])
			return 0
		}
	}
	name := strings.Join(words, " ")
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "unibus: unknown command %q\n", name)
		if groups[words[0]] != "" {
			printGroupUsage(stderr, words[0])
		} else {
			fmt.Fprint(stderr, shortUsage)
		}
		return 2
	}

	x := &invocation{stdin: stdin, stdout: stdout, stderr: stderr, commands: commands}
	fs := newFlagSet(cmd, &x.opts)
	pos, err := parseArgs(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(stdout, cmd, fs)
			return 0
		}
		return usageFail(stderr, cmd, err)
	}
	if min, max := cmd.arity(); len(pos) < min {
		return usageFail(stderr, cmd, usagef("missing %s", cmd.pos[len(pos)]))
	} else if len(pos) > max {
		return usageFail(stderr, cmd, usagef("unexpected argument %q", pos[max]))
	}
	err = cmd.run(ctx, x, pos)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return usageFail(stderr, cmd, err)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintln(stderr, "unibus: interrupted")
	default:
		fmt.Fprintf(stderr, "unibus: %v\n", err)
	}
	return 1
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// newFlagSet returns the command's flag set. It prints nothing itself: run
// reports parse errors on stderr in its own words.
func newFlagSet(cmd *command, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("unibus "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defineSettings(fs, o)
	if cmd.define != nil {
		cmd.define(fs, o)
	}
	return fs
}

func usageFail(stderr io.Writer, cmd *command, err error) int {
	fmt.Fprintf(stderr, "unibus: %v\nusage: %s\nRun `unibus help %s` for details.\n", err, cmd.synopsis(), cmd.name)
	return 2
}

func hasHelpFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// positionals returns the arguments that are not flags.
func positionals(args []string) []string {
	var pos []string
	for _, a := range args {
		if !isFlag(a) {
			pos = append(pos, a)
		}
	}
	return pos
}

// help runs `unibus help [COMMAND]`.
func help(topic []string, stdout, stderr io.Writer) int {
	name := strings.Join(topic, " ")
	switch {
	case name == "":
		printUsage(stdout)
		return 0
	case groups[name] != "":
		printGroupUsage(stdout, name)
		return 0
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "unibus: no command %q\n%s", name, shortUsage)
		return 2
	}
	var o options
	printCommandHelp(stdout, cmd, newFlagSet(cmd, &o))
	return 0
}

// shortUsage follows an unknown command.
const shortUsage = "usage: unibus COMMAND [ARGUMENTS] [FLAGS]\nRun `unibus help` for the list of commands.\n"

const usageIntro = `unibus is the command-line client of a unibus message bus.

usage: unibus COMMAND [ARGUMENTS] [FLAGS]

`

const usageOutro = `
Client settings (on every command, before or after it):
  --server URL[,URL…]  membershipd URLs (env UNIBUS_SERVER,
                       default http://127.0.0.1:8470); several name
                       the nodes of one cluster, tried in turn
  --identity PATH      identity file (env UNIBUS_IDENTITY, default
                       $XDG_CONFIG_HOME/unibus/identity.json,
                       else ~/.config/unibus/identity.json)
  --ca PATH            trust this PEM CA for HTTPS and NATS TLS
                       (env UNIBUS_CA)
  --nats URL[,URL…]    NATS URLs instead of the ones the server
                       advertises (env UNIBUS_NATS)
  --timeout D          wait at most D for the bus, then fail naming the
                       nodes tried (env UNIBUS_TIMEOUT, default 30s)

USER is a user's name or user key; ROOM is a room id or, where unambiguous
among your rooms, its name. Flags may come before or after the arguments;
"--" ends them. --json prints one JSON document, or one object per line for
a stream. Exit status: 0 success, 1 failure, 2 bad usage.
`

// printUsage prints every command, section by section, in usageWidth
// columns.
func printUsage(w io.Writer) {
	io.WriteString(w, usageIntro)
	section := ""
	for _, c := range commands {
		title := groups[strings.Fields(c.name)[0]]
		if title == "" {
			title = cmp.Or(sections[c.name], "Messages:")
		}
		if title != section {
			if section != "" {
				fmt.Fprintln(w)
			}
			fmt.Fprintln(w, title)
			section = title
		}
		printEntry(w, c)
	}
	io.WriteString(w, usageOutro)
	fmt.Fprintln(w, "Run `unibus help COMMAND` for a command's flags.")
}

func printGroupUsage(w io.Writer, group string) {
	fmt.Fprintln(w, "usage:")
	for _, c := range commands {
		if strings.Fields(c.name)[0] == group {
			printEntry(w, c)
		}
	}
	fmt.Fprintf(w, "\nRun `unibus help %s COMMAND` for a command's flags.\n", group)
}

// printEntry prints a command's synopsis and, below it, what it does,
// both wrapped to usageWidth.
func printEntry(w io.Writer, c *command) {
	synopsis := []string{c.synopsis()}
	if 2+len(synopsis[0]) > usageWidth {
		synopsis = wrap(synopsis[0], usageWidth-4)
	}
	for i, l := range synopsis {
		if i > 0 {
			l = "  " + l
		}
		fmt.Fprintf(w, "  %s\n", l)
	}
	for _, l := range wrap(c.help, usageWidth-6) {
		fmt.Fprintf(w, "      %s\n", l)
	}
}

// wrap breaks s into lines of at most width bytes, between words; a word
// longer than width gets a line of its own.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// writeColumns prints lines of two aligned columns, without trailing
// spaces, wrapping the second column to fit usageWidth.
func writeColumns(w io.Writer, lines [][2]string) {
	left := 0
	for _, l := range lines {
		if l[1] != "" {
			left = max(left, len(l[0]))
		}
	}
	for _, l := range lines {
		if l[1] == "" {
			fmt.Fprintln(w, l[0])
			continue
		}
		pad := strings.Repeat(" ", left+2)
		for i, part := range wrap(l[1], max(usageWidth-left-2, 20)) {
			first := pad
			if i == 0 {
				first = l[0] + strings.Repeat(" ", left+2-len(l[0]))
			}
			fmt.Fprintf(w, "%s%s\n", first, part)
		}
	}
}

func printCommandHelp(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s.\n", cmd.synopsis(), upperFirst(cmd.help))
	var lines [][2]string
	for _, settings := range []bool{false, true} {
		title := "Flags:"
		if settings {
			title = "Client settings:"
		}
		lines = append(lines, [2]string{}, [2]string{title})
		fs.VisitAll(func(f *flag.Flag) {
			if settingFlags[f.Name] != settings {
				return
			}
			arg, usage := flag.UnquoteUsage(f)
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			if arg != "" {
				arg = " " + arg
			}
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				usage += fmt.Sprintf(" (default %s)", f.DefValue)
			}
			lines = append(lines, [2]string{"  " + dash + f.Name + arg, usage})
		})
	}
	writeColumns(w, lines)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
