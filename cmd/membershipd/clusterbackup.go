package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// `membershipd cluster backup DIR` and `restore DIR` save and put back the
// whole state of a bus: every stream of the control account (the KV
// buckets, the blob Object Store) and of the bus account (the history),
// each as a JetStream snapshot taken by its leader. A stream's directory,
// DIR/<account>/<stream>, has the layout of `nats stream backup`
// (backup.json: the stream's configuration and state; stream.arc.s2: the
// snapshot), so `nats stream restore` reads it too. DIR/manifest.json lists
// them.
//
// The snapshots are taken one stream after another, each at its own
// instant. The order keeps what a backup holds consistent for the
// control plane's readers: the history first (a message refers to a key
// epoch that the room documents taken after it hold), then the KV buckets
// whose values name other data (rooms, blob records), and last the data
// they name (the room data bucket, the blob objects), which is written
// before whatever names it. A change committed while the backup runs is
// therefore either wholly in it or missing from the documents.

// backupFormat is the version of manifest.json.
const backupFormat = 1

// Files of a backup: the manifest, and in each stream's directory those
// of `nats stream backup` (jsm.go's SnapshotMetaFile and SnapshotDataFile
// for nats-server 2.15).
const (
	backupManifestFile = "manifest.json"
	streamMetaFile     = "backup.json"
	streamDataFile     = "stream.arc.s2"
)

// Timeouts of a backup and a restore.
const (
	snapshotChunkTimeout = 30 * time.Second // the next chunk of a snapshot
	restoreChunkSize     = 128 * 1024
	restoreFinishTimeout = 30 * time.Minute // the server's restore of what it received
	restoreRetryFor      = 30 * time.Second // a stream whose deletion is still settling
)

// backupManifest is DIR/manifest.json.
type backupManifest struct {
	Format  int            `json:"format"`
	Created time.Time      `json:"created"`
	Streams []backupStream `json:"streams"`
}

// backupStream is one stream of a backup.
type backupStream struct {
	Account  string `json:"account"`
	Name     string `json:"name"`
	Dir      string `json:"dir"` // relative to the backup directory, with /
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	Replicas int    `json:"replicas"`
}

// dataFlags are the flags of the commands that read or write the streams:
// the node, and the keys of its two accounts.
type dataFlags struct {
	nodeFlags
	controlKey, serviceKey string
}

func (f *dataFlags) register(fs *flag.FlagSet) {
	f.nodeFlags.register(fs, 30*time.Second)
	fs.StringVar(&f.controlKey, "control-key", "", "the control plane's key (KV store, blobs): the node's <nats-store>/"+controlKeyFile)
	fs.StringVar(&f.serviceKey, "service-key", "", "membershipd's key on the bus (history) under --bus-auth enforce: the node's <nats-store>/"+serviceKeyFile+"; without the file the tool connects as off and soft admit anyone")
}

// accountConns are connections to the node in the control and the bus
// account.
type accountConns map[string]*nats.Conn

func (c accountConns) close() {
	for _, nc := range c {
		nc.Close()
	}
}

// dial connects to both accounts and checks that each connection landed
// in its own.
func (f *dataFlags) dial(name string) (accountConns, error) {
	ctlPath := f.keyPath(f.controlKey, controlKeyFile)
	ctl, err := dialControl(name, f.natsURL, ctlPath, f.ca)
	if err != nil {
		return nil, err
	}
	conns := accountConns{embeddednats.ControlAccount: ctl}
	svcPath := f.keyPath(f.serviceKey, serviceKeyFile)
	if f.serviceKey == "" {
		if _, err := os.Stat(svcPath); errors.Is(err, fs.ErrNotExist) {
			svcPath = "" // a node not under enforce has no service key
		}
	}
	bus, err := f.nodeFlags.dial(name, svcPath, "service key", "--service-key")
	if err != nil {
		conns.close()
		return nil, err
	}
	conns[embeddednats.BusAccount] = bus
	if acc, err := accountOf(bus); err == nil && acc != embeddednats.BusAccount {
		conns.close()
		return nil, fmt.Errorf("the bus connection landed in account %s, not %s: pass --service-key with the node's <nats-store>/%s", acc, embeddednats.BusAccount, serviceKeyFile)
	}
	return conns, nil
}

// backupOrder ranks a stream for a backup: lower first (see the top of
// this file).
func backupOrder(account, stream string) int {
	switch {
	case account == embeddednats.BusAccount:
		return 0
	case strings.HasSuffix(stream, "_roomdata"), strings.HasPrefix(stream, "OBJ_"):
		return 2
	}
	return 1
}

const clusterBackupUsage = `usage: membershipd cluster backup [--nats-url URL] [--nats-store DIR] [--control-key PATH] [--service-key PATH] [--ca CERT] DIR

Snapshots every stream of the bus: the KV store and the blobs (the control
account, with the control key) and the history (the bus account, with the
service key under --bus-auth enforce) into DIR, which must not exist or be
empty. Each stream's leader takes its snapshot while the bus serves. Keep
DIR as secret as the disks: it holds what they hold (sealed keys and
ciphertext only, never a room key in the clear). docs/cluster.md, "Backup
and restore".
`

// runClusterBackup runs `membershipd cluster backup DIR`.
func runClusterBackup(args []string, stdout, stderr io.Writer) int {
	fs := clusterFlagSet("membershipd cluster backup", clusterBackupUsage, stderr)
	var df dataFlags
	df.register(fs)
	pos, code, ok := parseClusterFlags(fs, args, 1, "DIR", stderr)
	if !ok {
		return code
	}
	ctx, stop := signalContext()
	defer stop()
	if err := backupAll(ctx, &df, pos[0], stdout); err != nil {
		fmt.Fprintf(stderr, "membershipd cluster backup: %v\n", err)
		return 1
	}
	return 0
}

// backupAll snapshots every stream of both accounts into dir.
func backupAll(ctx context.Context, df *dataFlags, dir string, stdout io.Writer) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: give a new directory", dir)
	}
	conns, err := df.dial("membershipd cluster backup")
	if err != nil {
		return err
	}
	defer conns.close()
	var todo []backupStream
	for account, nc := range conns {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		names := js.StreamNames(ctx)
		for name := range names.Name() {
			todo = append(todo, backupStream{Account: account, Name: name, Dir: account + "/" + name})
		}
		if err := names.Err(); err != nil {
			return fmt.Errorf("list the streams of %s: %w", account, err)
		}
	}
	sort.Slice(todo, func(i, j int) bool {
		a, b := todo[i], todo[j]
		if ra, rb := backupOrder(a.Account, a.Name), backupOrder(b.Account, b.Name); ra != rb {
			return ra < rb
		}
		return a.Dir < b.Dir
	})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	m := backupManifest{Format: backupFormat, Created: time.Now().UTC().Truncate(time.Second), Streams: []backupStream{}}
	for _, s := range todo {
		cfg, state, err := snapshotStream(ctx, conns[s.Account], s.Name, filepath.Join(dir, filepath.FromSlash(s.Dir)), df.timeout)
		if err != nil {
			return fmt.Errorf("stream %s of %s: %w", s.Name, s.Account, err)
		}
		s.Messages, s.Bytes, s.Replicas = state.Msgs, state.Bytes, max(1, cfg.Replicas)
		m.Streams = append(m.Streams, s)
		fmt.Fprintf(stdout, "%s %s: %d messages, %d bytes\n", s.Account, s.Name, s.Messages, s.Bytes)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileSync(filepath.Join(dir, backupManifestFile), append(b, '\n')); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup of %d streams in %s\n", len(m.Streams), dir)
	return nil
}

// snapshotStream has the leader of stream snapshot it into dir, as `nats
// stream backup` lays it out, and returns the stream's configuration and
// state at the snapshot.
func snapshotStream(ctx context.Context, nc *nats.Conn, stream, dir string, timeout time.Duration) (*server.StreamConfig, *server.StreamState, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, nil, err
	}
	defer sub.Unsubscribe()
	sub.SetPendingLimits(-1, -1)

	req, _ := json.Marshal(server.JSApiStreamSnapshotRequest{DeliverSubject: inbox, NoConsumers: true})
	msg, err := request(ctx, nc, fmt.Sprintf(server.JSApiStreamSnapshotT, stream), req, timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("ask for a snapshot: %w", err)
	}
	var resp server.JSApiStreamSnapshotResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, nil, fmt.Errorf("the snapshot answer: %w", err)
	}
	if resp.Error != nil {
		return nil, nil, fmt.Errorf("snapshot refused: %s", resp.Error.Description)
	}
	if resp.Config == nil || resp.State == nil {
		return nil, nil, errors.New("the snapshot answer has no configuration or state")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, streamDataFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		m, err := sub.NextMsg(snapshotChunkTimeout)
		if err != nil {
			return nil, nil, fmt.Errorf("receive the snapshot: %w", err)
		}
		if len(m.Data) == 0 {
			// The end: status 204, or none, on success.
			if status := m.Header.Get("Status"); status != "" && status != "204" {
				return nil, nil, fmt.Errorf("the snapshot failed: %s %s", status, m.Header.Get("Description"))
			}
			break
		}
		if m.Reply != "" {
			// The ack that opens the server's window for the next chunks.
			if err := m.Respond(nil); err != nil {
				return nil, nil, err
			}
		}
		if _, err := f.Write(m.Data); err != nil {
			return nil, nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, nil, err
	}
	meta, _ := json.MarshalIndent(server.JSApiStreamRestoreRequest{Config: *resp.Config, State: *resp.State}, "", "  ")
	if err := writeFileSync(filepath.Join(dir, streamMetaFile), append(meta, '\n')); err != nil {
		return nil, nil, err
	}
	return resp.Config, resp.State, nil
}

const clusterRestoreUsage = `usage: membershipd cluster restore [--nats-url URL] [--nats-store DIR] [--control-key PATH] [--service-key PATH] [--ca CERT] [--replace] [--replicas N] DIR

Puts every stream of the backup in DIR (membershipd cluster backup) back
into the bus, each with the configuration it had (--replicas N: with N
copies instead, for a cluster of another size). A stream that exists
already is deleted first if it holds no message (a freshly started node
makes its streams empty); one holding messages is refused unless
--replace, which deletes it: what it held that the backup does not is lost.
Then restart every membershipd, one after another: a running one keeps what
it read before the restore. docs/cluster.md, "Backup and restore".
`

// runClusterRestore runs `membershipd cluster restore DIR`.
func runClusterRestore(args []string, stdout, stderr io.Writer) int {
	fs := clusterFlagSet("membershipd cluster restore", clusterRestoreUsage, stderr)
	var df dataFlags
	df.register(fs)
	replace := fs.Bool("replace", false, "delete existing streams that hold messages and restore the backup's")
	replicas := fs.Int("replicas", 0, "copies of each restored stream; 0 keeps the backup's")
	pos, code, ok := parseClusterFlags(fs, args, 1, "DIR", stderr)
	if !ok {
		return code
	}
	if *replicas < 0 {
		fmt.Fprintf(stderr, "membershipd cluster restore: --replicas %d: use a positive number, or 0 to keep the backup's\n", *replicas)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	if err := restoreAll(ctx, &df, pos[0], *replace, *replicas, stdout); err != nil {
		fmt.Fprintf(stderr, "membershipd cluster restore: %v\n", err)
		return 1
	}
	return 0
}

// restoreAll restores every stream of the backup in dir.
func restoreAll(ctx context.Context, df *dataFlags, dir string, replace bool, replicas int, stdout io.Writer) error {
	b, err := os.ReadFile(filepath.Join(dir, backupManifestFile))
	if err != nil {
		return fmt.Errorf("%w: give the directory of a finished `membershipd cluster backup`", err)
	}
	var m backupManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", backupManifestFile, err)
	}
	if m.Format != backupFormat {
		return fmt.Errorf("%s: format %d; this membershipd reads format %d", backupManifestFile, m.Format, backupFormat)
	}
	conns, err := df.dial("membershipd cluster restore")
	if err != nil {
		return err
	}
	defer conns.close()
	// Every stream is checked before any is touched.
	for _, s := range m.Streams {
		nc, ok := conns[s.Account]
		if !ok {
			return fmt.Errorf("stream %s is of account %q, which this bus does not have (a unibus backup holds accounts %s and %s): give the directory of a `membershipd cluster backup`", s.Name, s.Account, embeddednats.ControlAccount, embeddednats.BusAccount)
		}
		if !jetstreamName(s.Name) || filepath.ToSlash(filepath.Clean(filepath.FromSlash(s.Dir))) != s.Account+"/"+s.Name {
			return fmt.Errorf("%s: stream %q in %q: not a stream of a backup", backupManifestFile, s.Name, s.Dir)
		}
		st, err := streamOf(ctx, nc, s.Name, df.timeout)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
		case err != nil:
			return fmt.Errorf("stream %s of %s: %w", s.Name, s.Account, err)
		case st.CachedInfo().State.Msgs > 0 && !replace:
			return fmt.Errorf("stream %s of %s holds %d messages: pass --replace to delete it and restore the backup's", s.Name, s.Account, st.CachedInfo().State.Msgs)
		}
	}
	for _, s := range m.Streams {
		nc := conns[s.Account]
		// A deleted stream goes from the meta group at once but from each
		// node's store a moment later; a restore that meets it there
		// fails, and leaves an empty stream, deleted on the next try.
		var info *server.StreamInfo
		var err error
		for deadline, wait := time.Now().Add(restoreRetryFor), 100*time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
			if err = deleteStream(ctx, nc, s.Name, df.timeout); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("delete stream %s of %s: %w", s.Name, s.Account, err)
			}
			info, err = restoreStream(ctx, nc, filepath.Join(dir, filepath.FromSlash(s.Dir)), replicas, df.timeout)
			if !errors.Is(err, errNameInUse) || time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		if err != nil {
			return fmt.Errorf("stream %s of %s: %w", s.Name, s.Account, err)
		}
		fmt.Fprintf(stdout, "%s %s: %d messages restored\n", s.Account, s.Name, info.State.Msgs)
	}
	fmt.Fprintf(stdout, "restored %d streams from %s; now restart every membershipd, one after another\n", len(m.Streams), dir)
	return nil
}

// restoreStream restores the stream whose `nats stream backup` layout is
// in dir, with replicas copies (0: the backup's), and returns its info.
func restoreStream(ctx context.Context, nc *nats.Conn, dir string, replicas int, timeout time.Duration) (*server.StreamInfo, error) {
	b, err := os.ReadFile(filepath.Join(dir, streamMetaFile))
	if err != nil {
		return nil, err
	}
	var req server.JSApiStreamRestoreRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("%s: %w", streamMetaFile, err)
	}
	if replicas > 0 {
		req.Config.Replicas = replicas
	}
	body, _ := json.Marshal(req)
	msg, err := request(ctx, nc, fmt.Sprintf(server.JSApiStreamRestoreT, req.Config.Name), body, timeout)
	if err != nil {
		return nil, fmt.Errorf("ask for a restore: %w", err)
	}
	var resp server.JSApiStreamRestoreResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("the restore answer: %w", err)
	}
	if err := restoreError("restore refused", resp.Error); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, streamDataFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	chunk := make([]byte, restoreChunkSize)
	for {
		n, err := io.ReadFull(f, chunk)
		if n > 0 {
			ack, rerr := request(ctx, nc, resp.DeliverSubject, chunk[:n], timeout)
			if rerr != nil {
				return nil, fmt.Errorf("send the snapshot: %w", rerr)
			}
			if len(ack.Data) > 0 {
				return nil, fmt.Errorf("the server stopped the restore: %s", apiErrorText(ack.Data))
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	// The end of the data; the server answers once it has restored it.
	msg, err = request(ctx, nc, resp.DeliverSubject, nil, restoreFinishTimeout)
	if err != nil {
		return nil, fmt.Errorf("finish the restore: %w", err)
	}
	var done server.JSApiStreamCreateResponse
	if err := json.Unmarshal(msg.Data, &done); err != nil {
		return nil, fmt.Errorf("the restore's result: %w", err)
	}
	if err := restoreError("the restore failed", done.Error); err != nil {
		return nil, err
	}
	if done.StreamInfo == nil {
		return nil, errors.New("the restore's result has no stream")
	}
	return done.StreamInfo, nil
}

// streamOf looks the stream called name up through nc.
func streamOf(ctx context.Context, nc *nats.Conn, name string, timeout time.Duration) (jetstream.Stream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return js.Stream(ctx, name)
}

// deleteStream deletes the stream called name through nc.
func deleteStream(ctx context.Context, nc *nats.Conn, name string, timeout time.Duration) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return js.DeleteStream(ctx, name)
}

// errNameInUse is a restore that met a stream of the same name.
var errNameInUse = errors.New("stream name already in use")

// restoreError is e as an error, what prefixing it; errNameInUse for a
// stream of the same name; nil for no error.
func restoreError(what string, e *server.ApiError) error {
	switch {
	case e == nil:
		return nil
	case e.ErrCode == uint16(server.JSStreamNameExistRestoreFailedErr):
		return fmt.Errorf("%s: %w", what, errNameInUse)
	}
	return fmt.Errorf("%s: %s", what, e.Description)
}

// apiErrorText is the description of the JetStream API error in data, or
// data itself.
func apiErrorText(data []byte) string {
	var r server.ApiResponse
	if err := json.Unmarshal(data, &r); err == nil && r.Error != nil {
		return r.Error.Description
	}
	return string(data)
}

// jetstreamName reports whether name can be a stream's name, and so a
// directory name without a path separator.
func jetstreamName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\ \t\r\n*>.")
}

// request sends a request on nc and waits for its answer, at most
// timeout.
func request(ctx context.Context, nc *nats.Conn, subject string, data []byte, timeout time.Duration) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return nc.RequestWithContext(ctx, subject, data)
}

// writeFileSync writes b to a new file at path (0600) and syncs it.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
