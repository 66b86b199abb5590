package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
)

// localClusterScript is deploy/local-cluster.sh, from this package's
// directory.
const localClusterScript = "../../deploy/local-cluster.sh"

// localCluster runs the script with its settings.
type localCluster struct {
	dir string
	env []string
}

// run runs the script with args and returns its stdout; it fails the
// test unless the script exits 0.
func (lc *localCluster) run(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{localClusterScript}, args...)...)
	cmd.Env = append(os.Environ(), lc.env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("local-cluster.sh %s: %v\nstdout:\n%s\nstderr:\n%s\n%s", strings.Join(args, " "), err, out.String(), errOut.String(), lc.logs())
	}
	if verbose() {
		t.Logf("local-cluster.sh %s:\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	}
	return out.String()
}

// pids returns the pids the script recorded for the running nodes.
func (lc *localCluster) pids() []int {
	var pids []int
	for _, n := range []string{"node1", "node2", "node3"} {
		b, err := os.ReadFile(filepath.Join(lc.dir, n, "pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// logs renders the nodes' logs for a failure.
func (lc *localCluster) logs() string {
	var b strings.Builder
	for _, n := range []string{"node1", "node2", "node3"} {
		log, _ := os.ReadFile(filepath.Join(lc.dir, n, "membershipd.log"))
		b.WriteString("--- " + n + "\n" + string(log))
	}
	return b.String()
}

// alive reports whether the process pid exists.
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestLocalClusterScript runs deploy/local-cluster.sh with the membershipd
// built here: three nodes come up on loopback with route TLS, enforce and
// the KV store on three replicas; the admin it seeds from a token talks
// to the cluster through the settings it prints, a write through one node
// is read through another; status sees the three nodes; stop stops them.
func TestLocalClusterScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds membershipd and starts three processes; skipped in short mode")
	}
	for _, tool := range []string{"bash", "curl", "go", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH", tool)
		}
	}
	t.Parallel()
	bin := membershipdBinary(t)
	ports := func() string {
		p := make([]string, 3)
		for i := range p {
			p[i] = strconv.Itoa(freePort(t))
		}
		return strings.Join(p, " ")
	}
	lc := &localCluster{dir: filepath.Join(t.TempDir(), "cluster")}
	lc.env = []string{
		"UNIBUS_CLUSTER_DIR=" + lc.dir,
		"MEMBERSHIPD=" + bin,
		"HTTP_PORTS=" + ports(),
		"NATS_PORTS=" + ports(),
		"ROUTE_PORTS=" + ports(),
		"START_TIMEOUT=90",
	}
	t.Cleanup(func() {
		pids := lc.pids()
		lc.run(t, "stop")
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("node pid %d still runs after stop", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	admin := testbus.NewIdentity(t, "admin")
	out := lc.run(t, "start", admin.Public().Token())
	settings := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && strings.HasPrefix(line, "export ") {
			settings[k] = v
		}
	}
	servers := strings.Split(settings["UNIBUS_SERVER"], ",")
	if len(servers) != 3 || settings["UNIBUS_CA"] == "" {
		t.Fatalf("start printed %q; want UNIBUS_SERVER with three URLs and UNIBUS_CA", out)
	}
	for _, s := range servers {
		if !strings.HasPrefix(s, "https://127.0.0.1:") {
			t.Errorf("server URL %q; want https on loopback", s)
		}
	}
	if len(lc.pids()) != 3 {
		t.Fatalf("pids %v; want three nodes", lc.pids())
	}

	pem, err := os.ReadFile(settings["UNIBUS_CA"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("UNIBUS_CA %s holds no certificate", settings["UNIBUS_CA"])
	}
	connect := func(url string, id *identity.Identity) *client.Client {
		c, err := client.New(client.Config{Server: url, Identity: id, TLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	viaNode2, viaNode3 := connect(servers[1], admin), connect(servers[2], admin)
	room, err := viaNode2.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatalf("create a room through node2: %v\n%s", err, lc.logs())
	}
	if _, err := viaNode2.Send(ctxT(t), room.ID, client.Message{Text: "hello cluster"}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, viaNode3, room.ID); len(got) != 1 || got[0] != "hello cluster" {
		t.Errorf("history through node3 = %q; want the message sent through node2", got)
	}

	var st clusterStatus
	if err := json.Unmarshal([]byte(lc.run(t, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.MetaLeader == "" || len(st.Nodes) != 3 {
		t.Fatalf("status = %+v; want three nodes and a meta leader", st)
	}
	for _, n := range st.Nodes {
		if !n.Reachable {
			t.Errorf("node %s not reachable", n.Name)
		}
	}
	if len(st.Streams) != 7 {
		t.Errorf("status lists %d streams; want 7 (five KV buckets, the blob bucket, the history)", len(st.Streams))
	}
	for _, s := range st.Streams {
		if s.Replicas != 3 || len(s.Peers) != 3 {
			t.Errorf("stream %s of %s: %d replicas asked, on %d nodes; want 3 on 3", s.Name, s.Account, s.Replicas, len(s.Peers))
		}
	}

	// A second start finds the nodes running and seeds nobody again.
	lc.run(t, "start")
	pids := lc.pids()
	lc.run(t, "stop")
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("node pid %d still runs after stop", pid)
		}
	}
}
