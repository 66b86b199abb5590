// Package e2e drives unibus from the outside, as a newcomer would: real
// membershipd and unibus processes built from this module, talking over
// loopback.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testio"
)

// moduleRoot is the directory holding go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// quickstart returns the shell block between the quickstart markers of the
// README.
func quickstart(t testing.TB, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- quickstart:begin -->\\s*```sh\\n(.*?)```\\s*<!-- quickstart:end -->")
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md has no quickstart block between the quickstart markers")
	}
	return string(m[1])
}

// runMembershipd runs the server binary in dir with args until the test
// ends, and returns the URL of its control-plane API once it announces it
// ("HTTP control-plane API: http://…", or HTTPS and https:// when scheme
// is "https"). Its log is shown if the test fails or with
// UNIBUS_TEST_LOG=debug.
func runMembershipd(t testing.TB, bin, dir, scheme string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	logs := &testio.SyncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = logs, io.MultiWriter(logs, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		pw.Close()
		if t.Failed() || os.Getenv("UNIBUS_TEST_LOG") == "debug" {
			t.Logf("membershipd log:\n%s", logs.String())
		}
	})
	label := strings.ToUpper(scheme)
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(label + ` control-plane API: (` + scheme + `://\S+)`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	var url string
	select {
	case url = <-found:
	case <-time.After(60 * time.Second):
		t.Fatalf("membershipd did not report its %s address; log:\n%s", label, logs.String())
	}
	return url
}

// waitReady polls ready until it returns nil, failing the test after 20
// seconds with what was not ready and ready's last error.
func waitReady(t testing.TB, what string, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("membershipd %s not ready: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startMembershipd runs the real server binary in dir with free ports and
// returns its HTTP URL once /healthz answers.
func startMembershipd(t testing.TB, bin, dir string) string {
	t.Helper()
	url := runMembershipd(t, bin, dir, "http", "--http-port", "0", "--nats-port", "-1")
	waitReady(t, "/healthz", func() error {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return url
}

// TestREADMEQuickstart runs the README's quickstart as written, in a fresh
// directory, against a real membershipd process: the newcomer's path. It
// runs it twice in the same directory against the same server, as a
// newcomer who pastes it again does, and checks that what it leaves
// there is in .gitignore.
func TestREADMEQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	root := moduleRoot(t)
	script := quickstart(t, root)
	work := t.TempDir()
	// Build the binaries the way the script's first line does, from the
	// module root, into the work directory's bin/.
	bin := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/unibus", "./cmd/membershipd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	url := startMembershipd(t, filepath.Join(bin, "membershipd"), work)

	// The script's own build line would rebuild in the work directory,
	// which is not the module: drop it, the binaries are already in bin/.
	var lines []string
	for _, l := range strings.Split(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "go build ") {
			continue
		}
		lines = append(lines, l)
	}
	env := append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"UNIBUS_SERVER="+url,
		"XDG_CONFIG_HOME="+filepath.Join(work, "config"),
		"HOME="+work,
	)
	var lastRun time.Time
	for run := 1; run <= 2; run++ {
		// The quickstart names its room after the second it runs in; a
		// newcomer pasting it again is seconds later, and so is this run.
		for time.Now().Unix() == lastRun.Unix() {
			time.Sleep(10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		sh := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", strings.Join(lines, "\n"))
		sh.WaitDelay = 10 * time.Second
		sh.Dir = work
		sh.Env = env
		var out testio.SyncBuffer
		sh.Stdout, sh.Stderr = &out, &out
		err := sh.Run()
		timedOut := ctx.Err() != nil
		cancel()
		lastRun = time.Now()
		if timedOut {
			t.Fatalf("quickstart run %d did not finish in 3 minutes:\n%s", run, out.String())
		} else if err != nil {
			t.Fatalf("quickstart run %d failed: %v\n%s", run, err, out.String())
		}
		got := out.String()
		for _, want := range []string{
			"alice: hello bob",
			"bob: hi alice",
			"quarterly numbers: 42",
			"bob is refused: he is no longer a member",
			"alice: bob cannot read this",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("quickstart run %d output lacks %q", run, want)
			}
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("quickstart run %d output:\n%s", run, got)
		}
		// Only alice's read, after bob's refusal, may show the message sent
		// after bob's removal.
		if idx := strings.Index(got, "bob is refused"); idx >= 0 && strings.Contains(got[:idx], "bob cannot read this") {
			t.Errorf("run %d: bob read the message sent after his removal:\n%s", run, got)
		}
	}

	// Each run made a room of its own name: a name stays unambiguous.
	list := exec.Command(filepath.Join(bin, "unibus"), "room", "list", "--json")
	list.Dir, list.Env = work, append(env, "UNIBUS_IDENTITY=alice.json")
	b, err := list.Output()
	if err != nil {
		t.Fatalf("unibus room list: %v", err)
	}
	var rooms []struct{ Name string }
	if err := json.Unmarshal(b, &rooms); err != nil {
		t.Fatalf("unibus room list --json: %v\n%s", err, b)
	}
	if len(rooms) != 2 || rooms[0].Name == rooms[1].Name {
		t.Errorf("after two runs alice's rooms are %+v; want two of different names", rooms)
	}

	// What the quickstart leaves in the directory is ignored by git
	// (config/ is this test's XDG_CONFIG_HOME).
	entries, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "config" {
			continue
		}
		if e.IsDir() {
			name += "/"
		}
		check := exec.Command("git", "check-ignore", "--no-index", "-q", name)
		check.Dir = root
		if err := check.Run(); err != nil {
			t.Errorf("the quickstart makes %s, which .gitignore does not ignore (git check-ignore: %v)", name, err)
		}
	}

	if fi, err := os.Stat(filepath.Join(work, "alice.json")); err != nil {
		t.Errorf("alice.json: %v; want the identity file, mode 0600", err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("alice.json mode = %v; want 0600", fi.Mode().Perm())
	}
}
