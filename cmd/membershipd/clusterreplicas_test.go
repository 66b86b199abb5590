package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/api"
)

// TestClusterReplicasStandalone runs `membershipd cluster replicas` on a
// standalone node of each store: N must be a number of copies; 1 leaves
// every stream as it is; 3 is refused, a standalone NATS keeping one copy,
// and changes nothing. (TestClusterColdStartInAnyOrder changes a cluster's
// replicas both ways.)
func TestClusterReplicasStandalone(t *testing.T) {
	forEachStore(t, func(t *testing.T, store ...string) {
		dir := t.TempDir()
		s := startServer(t, dir, store...)
		node := []string{"--nats-url", natsURLOf(t, s), "--nats-store", filepath.Join(dir, "jetstream")}
		for _, tt := range []struct {
			args []string
			want string
		}{
			{nil, "missing N"},
			{[]string{"0"}, "1 or more"},
			{[]string{"three"}, "1 or more"},
			{[]string{"1", "2"}, `unexpected argument "2"`},
		} {
			if _, stderr := runCLI(t, 2, append([]string{"cluster", "replicas"}, tt.args...)...); !strings.Contains(stderr, tt.want) {
				t.Errorf("membershipd cluster replicas %q: stderr %q; want %q", tt.args, stderr, tt.want)
			}
		}
		out, _ := runCLI(t, 0, append(append([]string{"cluster", "replicas"}, node...), "1")...)
		if !regexp.MustCompile(api.HistoryStream + `\s+1 \(as asked\)`).MatchString(out) {
			t.Errorf("cluster replicas 1 printed\n%s\nwant the history stream left at 1", out)
		}
		if len(store) > 0 && !strings.Contains(out, "KV_unibus_users") {
			t.Errorf("cluster replicas 1 with --store kv printed\n%s\nwant the KV buckets too", out)
		}
		out, stderr := runCLI(t, 1, append(append([]string{"cluster", "replicas"}, node...), "3")...)
		if !strings.Contains(out, "a standalone NATS keeps one copy") || !strings.Contains(stderr, "not changed") {
			t.Errorf("cluster replicas 3 on a standalone node: stdout\n%s\nstderr %q; want each stream refused as standalone", out, stderr)
		}
	})
}
