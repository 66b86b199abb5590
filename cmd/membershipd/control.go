package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// The control plane's JetStream data (the KV buckets of --store kv and the
// blob Object Store) lives in a NATS account of its own, which only
// membershipd's control key reaches (pkg/embeddednats, "Accounts"): a
// member's publish, or any reply subject it names, stays in the bus
// account. See docs/security.md ("Accounts").

// controlKeyFile is the control key's file in the --nats-store directory,
// and defaultControlKeyPath where it is with the default --nats-store: the
// host tools look there when given no --control-key.
const (
	controlKeyFile        = "control.nk"
	defaultControlKeyPath = defaultNATSStore + "/" + controlKeyFile
)

// keyFile is the key file a flag names (flagValue), or, when the flag is
// empty, the file name in the --nats-store directory natsStore: where
// membershipd makes its keys and the host tools look for them.
func keyFile(flagValue, natsStore, name string) string {
	if flagValue != "" {
		return flagValue
	}
	return filepath.Join(natsStore, name)
}

// loadOrCreateControlKey reads membershipd's control nkey seed from path,
// or makes one there (0600). Whoever holds the file has full rights over
// the control plane, like the host's `membershipd user` commands.
func loadOrCreateControlKey(path string) (nkeys.KeyPair, error) {
	return loadOrCreateSeed(path, "control key")
}

// loadOrCreateSeed reads the nkey seed file at path, or makes a new user
// seed there (0600, in a 0700 directory if it has to make one). what names
// the key in errors.
func loadOrCreateSeed(path, what string) (nkeys.KeyPair, error) {
	kp, err := readSeed(path)
	if err == nil {
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: fix it, or move it away to make a new one", what, err)
	}
	kp, err = nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", what, err)
	}
	seed, _ := kp.Seed()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%s directory: %w", what, err)
	}
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", what, err)
	}
	return kp, nil
}

// readControlKey reads the control key a host tool, or membershipd on an
// external NATS, connects with; a missing file is an error that says where
// the key comes from.
func readControlKey(path, flagName string) (nkeys.KeyPair, error) {
	kp, err := readSeed(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no control key at %s: pass %s with the %s that membershipd makes in its --nats-store at its first start (with an external NATS: the seed of a user of the control plane's account)", path, flagName, controlKeyFile)
	case err != nil:
		return nil, fmt.Errorf("control key: %w: pass %s with membershipd's <nats-store>/%s", err, flagName, controlKeyFile)
	}
	return kp, nil
}

// nkeyOption is the connect option that signs in with kp.
func nkeyOption(kp nkeys.KeyPair) (nats.Option, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("nkey: %w", err)
	}
	return nats.Nkey(pub, kp.Sign), nil
}

// sharedRisk says what it costs when the control plane shares the bus's
// account.
const sharedRisk = "the control plane (KV store, blob object store) is in the bus's NATS account, where a member's publish, or a reply subject it names, can overwrite it; give it an account of its own (docs/kv-store.md, \"Accounts\")"

// controlConn opens membershipd's connection to the control plane's
// account with opts (the control key): in-process to the embedded server
// ns, or to url. With no opts (an external NATS without --control-key) the
// control plane shares the bus connection, with a warning. A control
// connection that lands in the bus's account anyway is a warning with an
// external NATS and an error with the embedded one.
func controlConn(ctx context.Context, ns *server.Server, url string, bus *nats.Conn, opts []nats.Option, slogger *slog.Logger, logger *log.Logger) (*nats.Conn, error) {
	if opts == nil {
		logger.Printf("WARNING: no --control-key for the external NATS: %s", sharedRisk)
		return bus, nil
	}
	nc, err := connectNATS(ctx, ns, url, slogger, append(opts, nats.Name("membershipd control"))...)
	if err != nil {
		return nil, fmt.Errorf("control plane connection (--control-key): %w", err)
	}
	same, err := sameAccount(bus, nc)
	switch {
	case err != nil:
		logger.Printf("WARNING: cannot check that the control connection has an account of its own (%v); if not, %s", err, sharedRisk)
	case same && ns != nil:
		nc.Close()
		return nil, errors.New("the control connection landed in the bus account of the embedded NATS; this is a bug: do not serve the control plane from it")
	case same:
		logger.Printf("WARNING: --control-key connects to the bus's account: %s", sharedRisk)
	}
	return nc, nil
}

// probeTimeout bounds the check that two connections are in different
// accounts.
const probeTimeout = 2 * time.Second

// sameAccount reports whether a and b are connected to the same NATS
// account: a request from b on a subject only a listens to is answered
// only then; from another account it gets "no responders" at once.
func sameAccount(a, b *nats.Conn) (bool, error) {
	subject := "_UNIBUS_PROBE." + nats.NewInbox()
	sub, err := a.Subscribe(subject, func(m *nats.Msg) { m.Respond(nil) })
	if err != nil {
		return false, err
	}
	defer sub.Unsubscribe()
	if err := a.FlushTimeout(probeTimeout); err != nil {
		return false, err
	}
	_, err = b.Request(subject, nil, probeTimeout)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil
	}
	return false, err
}

// accountOf asks the server which account nc is in: "$SYS.REQ.USER.INFO"
// is answered in every account of a server with a system account.
func accountOf(nc *nats.Conn) (string, error) {
	m, err := nc.Request("$SYS.REQ.USER.INFO", nil, probeTimeout)
	if err != nil {
		return "", err
	}
	var resp struct {
		Data  server.UserInfo  `json:"data"`
		Error *server.ApiError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return "", err
	}
	if resp.Error != nil {
		return "", errors.New(resp.Error.Description)
	}
	return resp.Data.Account, nil
}

// oldGlobalStreams lists the JetStream streams that an earlier membershipd
// left in the global account of the embedded store at natsStore. The
// server no longer serves that account's JetStream, but it keeps the data.
func oldGlobalStreams(natsStore string) []string {
	entries, err := os.ReadDir(filepath.Join(natsStore, "jetstream", "$G", "streams"))
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}
