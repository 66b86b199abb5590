package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/membership"
)

// The values of --sync. JetStream's sync is one setting of the whole
// server (nats-server's sync_interval), not of a stream: it applies to
// the history, the KV buckets, the blob bucket and the cluster's RAFT
// logs alike (docs/cluster.md, "Sync").
const (
	// syncAlways syncs each write to disk before acknowledging it
	// (server.Options.SyncAlways): nothing acknowledged is lost when the
	// power goes, even on every node at once.
	syncAlways = "always"
	// syncInterval leaves writes in the OS's page cache, synced every
	// two minutes (nats-server's default sync_interval): a power loss of
	// a standalone node, or of a quorum of a cluster's nodes together,
	// loses what was acknowledged since the last sync.
	syncInterval = "interval"
)

// syncDescription is --sync as the start's log line says it.
func syncDescription(mode string) string {
	if mode == syncAlways {
		return "before each acknowledgement (--sync always)"
	}
	return "every 2 minutes (--sync interval: a power loss loses what was acknowledged since)"
}

// checkDurability checks --replicas (taking --kv-replicas, its older
// name, when only that is given), --sync and --start-timeout against each
// other and the rest of the command line.
func checkDurability(fs *flag.FlagSet, replicas *int, kvReplicas int, syncMode, storeKind, natsURL, clusterName string, startTimeout time.Duration) error {
	if anyFlagSet(fs, "kv-replicas") {
		if anyFlagSet(fs, "replicas") && *replicas != kvReplicas {
			return errors.New("--replicas and --kv-replicas (its older name) disagree: give --replicas only")
		}
		*replicas = kvReplicas
	}
	if *replicas < 1 {
		return fmt.Errorf("--replicas %d: use 1 or more (3 in a three-node cluster)", *replicas)
	}
	if *replicas > 1 && natsURL == "" && clusterName == "" {
		return fmt.Errorf("--replicas %d needs a cluster (--cluster-name, --server-name, --routes): a standalone node keeps one copy of each stream", *replicas)
	}
	switch syncMode {
	case syncAlways:
	case syncInterval:
		if storeKind == "kv" {
			return errors.New("--sync interval with --store kv: the KV store needs --sync always, or a power loss of every node loses acknowledged control-plane writes (a revocation, a rekey); the setting is the whole server's, so it holds for the history too")
		}
	default:
		return fmt.Errorf("invalid --sync %q: use always or interval", syncMode)
	}
	if natsURL != "" && anyFlagSet(fs, "sync") {
		return errors.New("--sync applies to the embedded NATS: with --nats-url, set sync_interval in that server's configuration (docs/cluster.md)")
	}
	if startTimeout < 0 {
		return fmt.Errorf("--start-timeout %s: use a positive duration, or 0 to wait forever", startTimeout)
	}
	return nil
}

// anyFlagSet reports whether any of the named flags was given on the
// command line.
func anyFlagSet(fs *flag.FlagSet, names ...string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		for _, n := range names {
			if f.Name == n {
				set = true
			}
		}
	})
	return set
}

// controlStreams are the streams of the control account that /readyz
// checks: the KV buckets and the blob bucket.
func controlStreams() []string {
	return append(membership.KVStreams(""), "OBJ_"+blobstore.DefaultBucket)
}
