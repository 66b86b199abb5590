package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/membership"
)

const migrateUsage = `usage: membershipd migrate-to-kv [--db PATH] --nats-url URL [--control-key PATH] [--replicas N] [--ca CERT] [--store-dir DIR] [--no-backup] [--force]

Copies the whole control plane (users, rooms with their epochs, members,
every sealed key of every epoch, the signed membership histories, blob
records) from the SQLite database into the replicated JetStream KV buckets
that membershipd --store kv serves from. With --store-dir it also copies
the blob directory into the bus's Object Store, checking each blob's
digest.

It connects first, then compares what the buckets hold with the database:
  - the same state (nothing changed on either side since the last run):
    it writes nothing;
  - nothing the database does not hold (no buckets yet, or an earlier
    run's copy that the database has gone on from): it brings the buckets
    up to the database;
  - anything else: the KV store has moved on (served from with --store kv:
    a room rekeyed or a user revoked there, users, rooms or blobs only
    there), and it refuses and writes nothing, unless --force, which
    writes the database's records over the buckets' (their own records
    stay).
Before it writes, it backs the database up (VACUUM INTO, beside it) unless
--no-backup.

The natural path: run on SQLite, migrate into the running server's own NATS
(--nats-url nats://127.0.0.1:4250), restart with --store kv on the same
--nats-store. The buckets live in the control plane's own NATS account,
reached with membershipd's control key, which it makes in its --nats-store
at its first start (<nats-store>/control.nk, the default --control-key
for the default --nats-store). For an external NATS that keeps the control
plane in one account with the bus, pass --control-key ''.
`

// runMigrateCLI runs `membershipd migrate-to-kv ARGS` and returns the exit
// code: 0 on success, 1 on failure, 2 on bad usage.
func runMigrateCLI(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate-to-kv", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage) }
	var (
		db       = fs.String("db", defaultDBPath, "SQLite database path (the server's --db)")
		natsURL  = fs.String("nats-url", "", "NATS URL of the bus that holds the KV buckets (required)")
		replicas = fs.Int("replicas", 1, "copies of each bucket it makes (3 in a three-node cluster); existing buckets keep theirs (membershipd cluster replicas changes them)")
		ca       = fs.String("ca", "", "PEM CA to trust for a tls:// NATS URL")
		ctlKey   = fs.String("control-key", defaultControlKeyPath, "membershipd's control key (<nats-store>/"+controlKeyFile+"), to reach the control plane's account; '' connects without one")
		storeDir = fs.String("store-dir", "", "blob directory to copy into the bus's Object Store (the server's --store-dir)")
		noBackup = fs.Bool("no-backup", false, "do not back the database up first")
		force    = fs.Bool("force", false, "write the database over a KV store that has moved on past it (rooms whose history moved on break for their members)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "membershipd migrate-to-kv: unexpected argument %q\n%s", fs.Arg(0), migrateUsage)
		return 2
	}
	if *natsURL == "" {
		fmt.Fprintf(stderr, "membershipd migrate-to-kv: --nats-url is required\n%s", migrateUsage)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	m := migration{db: *db, natsURL: *natsURL, replicas: *replicas, ca: *ca, controlKey: *ctlKey, storeDir: *storeDir, backup: !*noBackup, force: *force, stdout: stdout, stderr: stderr}
	if err := m.run(ctx); err != nil {
		fmt.Fprintf(stderr, "membershipd migrate-to-kv: %v\n", err)
		return 1
	}
	return 0
}

type migration struct {
	db, natsURL, ca, controlKey, storeDir string
	replicas                              int
	backup, force                         bool
	stdout, stderr                        io.Writer
}

func (m migration) run(ctx context.Context) error {
	if _, err := os.Stat(m.db); err != nil {
		return fmt.Errorf("database %s: %w: pass the server's --db", m.db, err)
	}
	// Connect first: an attempt that cannot reach the bus leaves nothing
	// behind, not even a backup.
	nc, err := dialControl("membershipd migrate-to-kv", m.natsURL, m.controlKey, m.ca)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	opts := membership.MigrateOptions{
		KV:       membership.KVConfig{Replicas: m.replicas, Logger: m.warnings()},
		Force:    m.force,
		Progress: m.progress("control plane"),
	}
	if m.backup {
		opts.Backup = m.backUp
	}
	stats, err := membership.MigrateSQLiteToKV(ctx, m.db, js, opts)
	m.endProgress()
	var ahead *membership.KVAheadError
	if errors.As(err, &ahead) {
		return fmt.Errorf("the KV store at %s has moved on past %s since it was copied there; a copy now would write the older state over it (a room whose history goes back to an earlier head breaks for its members):\n%s\nnothing was written. If membershipd serves from the KV store (--store kv), the KV store is the current state: keep serving from it and do not migrate again. To write %s over the KV store anyway, pass --force", redactURL(m.natsURL), m.db, indentLines(ahead.Differences, maxListed), m.db)
	}
	if err != nil {
		return err
	}
	if len(stats.Overwritten) > 0 {
		fmt.Fprintf(m.stderr, "membershipd migrate-to-kv: --force: wrote %s over what the KV store had moved on to:\n%s\n", m.db, indentLines(stats.Overwritten, maxListed))
	}
	fmt.Fprintf(m.stdout, "migrated: %s\n", stats)
	if m.storeDir == "" {
		return nil
	}
	dir, err := blobstore.New(m.storeDir)
	if err != nil {
		return fmt.Errorf("blob directory: %w", err)
	}
	obj, err := blobstore.NewObjectStore(ctx, js, blobstore.ObjectConfig{Replicas: m.replicas, Logger: m.warnings()})
	if err != nil {
		return fmt.Errorf("blob object store: %w", err)
	}
	n, err := blobstore.CopyDirToObjectStore(ctx, dir, obj, m.progress("blobs"))
	m.endProgress()
	if err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "blobs: copied %d into object store %s\n", n, obj.Bucket())
	return nil
}

// backUp writes a backup of the database beside it, under a name no
// earlier backup has.
func (m migration) backUp(ctx context.Context) error {
	base := membership.BackupPath(m.db, time.Now())
	path := base
	for i := 2; fileExists(path); i++ {
		path = fmt.Sprintf("%s-%d", base, i)
	}
	if err := membership.BackupSQLite(ctx, m.db, path); err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "backup: %s\n", path)
	return nil
}

// maxListed is how many differences a refusal lists.
const maxListed = 20

// indentLines is lines, indented, one a line, at most limit of them.
func indentLines(lines []string, limit int) string {
	var b strings.Builder
	for i, l := range lines {
		if i == limit {
			fmt.Fprintf(&b, "  … and %d more\n", len(lines)-limit)
			break
		}
		fmt.Fprintf(&b, "  %s\n", l)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// dialControl connects a host tool to the control plane's account of the
// bus at url with the control key seed at keyPath (none when keyPath is
// empty), trusting the CA file ca when set.
func dialControl(name, url, keyPath, ca string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(10 * time.Second)}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	if keyPath != "" {
		kp, err := readControlKey(keyPath, "--control-key")
		if err != nil {
			return nil, err
		}
		opt, err := nkeyOption(kp)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if hint := caHint(err, ca); hint != "" {
			return nil, fmt.Errorf("connect to %s: %s", redactURL(url), hint)
		}
		return nil, fmt.Errorf("connect to %s: %w (is the bus up? --control-key must be the control key of the membershipd serving it)", redactURL(url), err)
	}
	// Under --bus-auth off membershipd's NATS admits anyone without its
	// control key into the bus account, where the tool would make an
	// empty store of its own.
	if acc, err := accountOf(nc); err == nil && acc == embeddednats.BusAccount {
		nc.Close()
		key := "no control key"
		if keyPath != "" {
			key = keyPath + " is not its control key"
		}
		return nil, fmt.Errorf("%s reached the bus account of %s, not the control plane's: %s; pass --control-key with the control key of the membershipd serving it (its <nats-store>/%s)", name, redactURL(url), key, controlKeyFile)
	}
	return nc, nil
}

// warnings is the stores' logger: their warnings on stderr (an existing
// bucket that keeps other replicas than --replicas asks), nothing else.
func (m migration) warnings() *slog.Logger {
	return newSlogger(log.New(m.stderr, "membershipd migrate-to-kv: ", 0), slog.LevelWarn)
}

// progress returns a progress callback that draws on a terminal only.
func (m migration) progress(what string) func(done, total int) {
	if !m.onTerminal() {
		return nil
	}
	return func(done, total int) {
		fmt.Fprintf(m.stderr, "\r%s: %d/%d", what, done, total)
	}
}

// endProgress ends the line progress drew.
func (m migration) endProgress() {
	if m.onTerminal() {
		fmt.Fprintln(m.stderr)
	}
}

// onTerminal reports whether stderr, where progress draws, is a terminal.
func (m migration) onTerminal() bool {
	f, ok := m.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
