package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// `membershipd cluster …` is the operator's view of a running cluster, on
// a node's host: status (clusterstatus.go), remove-peer, and backup and
// restore of the whole state (clusterbackup.go). It reaches the node's
// embedded NATS as the operator, with the system key that node makes in
// its --nats-store (system.nk), admitted into nats-server's system
// account (embeddednats.SystemAccount): every node's JetStream state,
// through $SYS.REQ.SERVER.PING.JSZ, and the cluster's peer administration.
// The same key serves the nats CLI:
//
//	nats --server nats://127.0.0.1:4250 --nkey <nats-store>/system.nk server list
//
// Backup and restore work on the data itself and so connect with the
// control key (the KV store and blobs) and the service key (the history);
// see docs/cluster.md.

// systemKeyFile is the system key's file in the --nats-store directory,
// and defaultSystemKeyPath where it is with the default --nats-store.
const (
	systemKeyFile        = "system.nk"
	defaultSystemKeyPath = defaultNATSStore + "/" + systemKeyFile
)

// defaultNodeNATSURL is where the host tools find the embedded NATS of a
// membershipd with the default --bind and --nats-port.
const defaultNodeNATSURL = "nats://127.0.0.1:4250"

// loadOrCreateSystemKey reads the operator's system nkey seed from path,
// or makes one there (0600). Whoever holds the file sees every node's
// state and can remove a node from the cluster, but reads no message and
// no control-plane data: that takes the control key.
func loadOrCreateSystemKey(path string) (nkeys.KeyPair, error) {
	return loadOrCreateSeed(path, "system key")
}

const clusterUsage = `usage:
  membershipd cluster status [--nats-url URL] [--system-key PATH] [--json]
        every node (its role, whether it answers) and every stream of the
        bus and control accounts (replicas, leader, each replica's lag)
  membershipd cluster remove-peer [--nats-url URL] [--system-key PATH] NAME
        remove a node that is gone for good from the cluster's JetStream
  membershipd cluster backup [--nats-url URL] [--control-key PATH] [--service-key PATH] DIR
        snapshot every stream (KV store, blobs, history) into DIR
  membershipd cluster restore [--nats-url URL] [--control-key PATH] [--service-key PATH] [--replace] DIR
        put the streams of a backup back; restart every node afterwards
  membershipd cluster replicas [--nats-url URL] [--control-key PATH] [--service-key PATH] N
        give every stream (KV store, blobs, history) N replicas, and wait
        for them to catch up: the one way to change an existing stream's
        replicas

Run them on a node's host: they connect to that node's embedded NATS
(--nats-url, default ` + defaultNodeNATSURL + `) with the keys membershipd keeps in
its --nats-store (default ` + defaultNATSStore + `): system.nk for status and
remove-peer, control.nk and service.nk for backup, restore and replicas. --nats-store
DIR names them all at once; --ca CERT trusts a CA for a TLS NATS.
docs/cluster.md says when to use each.
`

// runClusterCLI runs `membershipd cluster ARGS` and returns the exit code:
// 0 on success, 1 on failure, 2 on bad usage. A new cluster command is one
// more case here.
func runClusterCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	switch args[0] {
	case "status":
		return runClusterStatus(args[1:], stdout, stderr)
	case "remove-peer":
		return runClusterRemovePeer(args[1:], stdout, stderr)
	case "backup":
		return runClusterBackup(args[1:], stdout, stderr)
	case "restore":
		return runClusterRestore(args[1:], stdout, stderr)
	case "replicas":
		return runClusterReplicas(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, clusterUsage)
		return 0
	}
	fmt.Fprintf(stderr, "membershipd cluster: unknown command %q\n%s", args[0], clusterUsage)
	return 2
}

// nodeFlags are the flags every cluster command takes to reach the node
// on this host.
type nodeFlags struct {
	natsURL   string
	ca        string
	natsStore string
	timeout   time.Duration
}

// register adds the flags to fs, --timeout with the default timeout.
func (f *nodeFlags) register(fs *flag.FlagSet, timeout time.Duration) {
	fs.StringVar(&f.natsURL, "nats-url", defaultNodeNATSURL, "NATS URL of the node's embedded server")
	fs.StringVar(&f.ca, "ca", "", "PEM CA to trust for a TLS NATS (the node's --tls-cert)")
	fs.StringVar(&f.natsStore, "nats-store", defaultNATSStore, "the node's --nats-store, where its keys are")
	fs.DurationVar(&f.timeout, "timeout", timeout, "how long to wait for the nodes' answers")
}

// keyPath is the key file given by a flag, or name in --nats-store.
func (f *nodeFlags) keyPath(flagValue, name string) string {
	return keyFile(flagValue, f.natsStore, name)
}

// dial connects to the node with the nkey seed at keyPath (what names the
// key and flagName its flag, for errors); an empty keyPath connects
// without a key.
func (f *nodeFlags) dial(name, keyPath, what, flagName string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(f.timeout), nats.NoReconnect()}
	if f.ca != "" {
		opts = append(opts, nats.RootCAs(f.ca))
	}
	if keyPath != "" {
		kp, err := readSeed(keyPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("no %s at %s: pass %s, or --nats-store with the node's --nats-store (membershipd makes the key there at its start)", what, keyPath, flagName)
		case err != nil:
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		opt, err := nkeyOption(kp)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(f.natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w (is the node up? %s must be the %s of the node serving it; a TLS NATS needs --ca)", redactURL(f.natsURL), err, flagName, what)
	}
	return nc, nil
}

// dialSystem connects to the node as the operator, in the system account.
func (f *nodeFlags) dialSystem(name, systemKey string) (*nats.Conn, error) {
	return f.dial(name, f.keyPath(systemKey, systemKeyFile), "system key", "--system-key")
}

// systemFlags are the flags of the commands that reach the node as the
// operator (status, remove-peer): the node, and the system key.
type systemFlags struct {
	nodeFlags
	systemKey string
}

func (f *systemFlags) register(fs *flag.FlagSet) {
	f.nodeFlags.register(fs, 2*time.Second)
	fs.StringVar(&f.systemKey, "system-key", "", "the operator's key: the node's <nats-store>/"+systemKeyFile)
}

// clusterFlagSet is the flag set of the cluster command name: errors on
// stderr, and -h prints usage, then the flags.
func clusterFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	return fs
}

// parseClusterFlags parses args, flags before or after the positional
// arguments, and checks that nargs of them remain; it prints the problem
// and returns the exit code (0 for -h) when parsing fails.
func parseClusterFlags(fs *flag.FlagSet, args []string, nargs int, argName string, stderr io.Writer) ([]string, int, bool) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, 2, false
	}
	switch {
	case len(pos) < nargs:
		fmt.Fprintf(stderr, "%s: missing %s\n", fs.Name(), argName)
		fs.Usage()
		return nil, 2, false
	case len(pos) > nargs:
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), pos[nargs])
		fs.Usage()
		return nil, 2, false
	}
	return pos, 0, true
}
