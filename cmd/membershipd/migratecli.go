package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/term"

	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/membership"
)

const migrateUsage = `usage: membershipd migrate-to-kv [--db PATH] --nats-url URL [--replicas N] [--ca CERT] [--nkey PATH] [--store-dir DIR] [--no-backup]

Copies the whole control plane (users, rooms with their epochs, members,
every sealed key of every epoch, the signed membership histories, blob
records) from the SQLite database into the replicated JetStream KV buckets
that membershipd --store kv serves from. It backs the database up first
(VACUUM INTO, beside it) unless --no-backup, and converges when re-run:
every write is an overwrite. With --store-dir it also copies the blob
directory into the bus's Object Store, checking each blob's digest.

The natural path: run on SQLite, migrate into the running server's own NATS
(--nats-url nats://127.0.0.1:4250), restart with --store kv on the same
--nats-store. Against a bus with --bus-auth enforce, pass --nkey with
membershipd's service key (<nats-store>/service.nk); it is found there by
default.
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
		replicas = fs.Int("replicas", 1, "copies of each bucket (3 in a three-node cluster)")
		ca       = fs.String("ca", "", "PEM CA to trust for a tls:// NATS URL")
		nkeyPath = fs.String("nkey", "", "nkey seed file to connect with (default: "+defaultServiceKeyPath+" if present)")
		storeDir = fs.String("store-dir", "", "blob directory to copy into the bus's Object Store (the server's --store-dir)")
		noBackup = fs.Bool("no-backup", false, "do not back the database up first")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := migration{db: *db, natsURL: *natsURL, replicas: *replicas, ca: *ca, nkey: *nkeyPath, storeDir: *storeDir, backup: !*noBackup, stdout: stdout, stderr: stderr}
	if err := m.run(ctx); err != nil {
		fmt.Fprintf(stderr, "membershipd migrate-to-kv: %v\n", err)
		return 1
	}
	return 0
}

type migration struct {
	db, natsURL, ca, nkey, storeDir string
	replicas                        int
	backup                          bool
	stdout, stderr                  io.Writer
}

func (m migration) run(ctx context.Context) error {
	if _, err := os.Stat(m.db); err != nil {
		return fmt.Errorf("database %s: %w: pass the server's --db", m.db, err)
	}
	if m.backup {
		base := membership.BackupPath(m.db, time.Now())
		path := base
		for i := 2; fileExists(path); i++ {
			path = fmt.Sprintf("%s-%d", base, i)
		}
		if err := membership.BackupSQLite(ctx, m.db, path); err != nil {
			return err
		}
		fmt.Fprintf(m.stdout, "backup: %s\n", path)
	}
	nc, err := dialBus("membershipd migrate-to-kv", m.natsURL, m.nkey, m.ca)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	progress := m.progress("control plane")
	stats, err := membership.MigrateSQLiteToKV(ctx, m.db, js, membership.KVConfig{Replicas: m.replicas}, progress)
	m.endProgress()
	if err != nil {
		return err
	}
	fmt.Fprintf(m.stdout, "migrated: %s\n", stats)
	if m.storeDir == "" {
		return nil
	}
	dir, err := blobstore.New(m.storeDir)
	if err != nil {
		return fmt.Errorf("blob directory: %w", err)
	}
	obj, err := blobstore.NewObjectStore(ctx, js, blobstore.ObjectConfig{Replicas: m.replicas})
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

// dialBus connects a host tool to the bus at url, trusting the CA file ca
// when set, with the nkey seed at nkeyPath, or else with the service key at
// defaultServiceKeyPath if there is one.
func dialBus(name, url, nkeyPath, ca string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(10 * time.Second)}
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	path := nkeyPath
	if path == "" {
		path = defaultServiceKeyPath
	}
	kp, err := readSeed(path)
	switch {
	case err == nil:
		pub, _ := kp.PublicKey()
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	case nkeyPath == "" && errors.Is(err, fs.ErrNotExist):
		// No service key beside the default JetStream store: no nkey.
	default:
		return nil, fmt.Errorf("nkey: %w: pass --nkey with membershipd's service key (<nats-store>/%s)", err, serviceKeyFile)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w (is the bus up? under --bus-auth enforce pass --nkey with the service key)", redactURL(url), err)
	}
	return nc, nil
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
