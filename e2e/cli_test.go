package e2e

import (
	"bytes"
	debugbuildinfo "debug/buildinfo"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildTools builds unibus and membershipd from this module, with the VCS
// stamping the go command manages here and the extra build flags, into a
// directory of the test's, and returns it.
func buildTools(t *testing.T, flags ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	bin := t.TempDir()
	args := append([]string{"build", "-buildvcs=auto"}, flags...)
	args = append(args, "-o", bin+string(filepath.Separator), "./cmd/unibus", "./cmd/membershipd")
	build := exec.Command("go", args...)
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// ran is what one run of a program left behind.
type ran struct {
	code           int
	stdout, stderr string
}

// runTool runs the program at path with args, in dir, and waits for it.
func runTool(t *testing.T, dir, path string, args ...string) ran {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s %q: %v", filepath.Base(path), args, err)
	}
	return ran{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// TestVersions runs --version and version of both programs, built as a
// developer builds them, and reads /v1/info of the server: one line, the
// same build, from the binary's own build information.
func TestVersions(t *testing.T) {
	bin := buildTools(t)
	dir := t.TempDir()
	unibus, membershipd := filepath.Join(bin, "unibus"), filepath.Join(bin, "membershipd")

	bi, err := debugbuildinfo.ReadFile(unibus)
	if err != nil {
		t.Fatal(err)
	}
	version := bi.Main.Version
	if version == "" || version == "(devel)" {
		version = "dev"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	commit := settings["vcs.revision"]
	if root := moduleRoot(t); commit == "" {
		// The go command stamps a build made in a Git clone (.git a
		// directory, git on the PATH); a work tree made with `git worktree`
		// or a tarball has no stamp to show.
		if fi, err := os.Stat(filepath.Join(root, ".git")); err == nil && fi.IsDir() {
			if _, err := exec.LookPath("git"); err == nil {
				t.Errorf("a build in the Git clone %s has no vcs.revision", root)
			}
		}
		t.Logf("this build has no VCS stamp: only the version is checked")
	} else if head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil && strings.TrimSpace(string(head)) != commit {
		t.Errorf("vcs.revision %s; want HEAD, %s", commit, head)
	}

	for _, tt := range []struct {
		path string
		args []string
	}{
		{unibus, []string{"--version"}},
		{unibus, []string{"version"}},
		{membershipd, []string{"--version"}},
		{membershipd, []string{"version"}},
	} {
		name := filepath.Base(tt.path)
		r := runTool(t, dir, tt.path, tt.args...)
		line := strings.TrimSuffix(r.stdout, "\n")
		if r.code != 0 || r.stderr != "" || strings.Contains(line, "\n") {
			t.Errorf("%s %q = exit %d, stdout %q, stderr %q; want exit 0 and one line", name, tt.args, r.code, r.stdout, r.stderr)
			continue
		}
		if want := name + " " + version + " ("; !strings.HasPrefix(line, want) {
			t.Errorf("%s %q = %q; want it to start %q", name, tt.args, line, want)
		}
		if commit != "" && !strings.Contains(line, "commit "+commit[:12]) {
			t.Errorf("%s %q = %q; want the commit %s", name, tt.args, line, commit[:12])
		}
		if modified := settings["vcs.modified"] == "true"; strings.Contains(line, "modified") != modified {
			t.Errorf("%s %q = %q; want \"modified\" only when vcs.modified is true (%v)", name, tt.args, line, modified)
		}
		if !strings.HasSuffix(line, bi.GoVersion+" "+settings["GOOS"]+"/"+settings["GOARCH"]+")") {
			t.Errorf("%s %q = %q; want it to end with the toolchain and platform", name, tt.args, line)
		}
	}
	// Both say it the same way.
	if u, m := runTool(t, dir, unibus, "--version").stdout, runTool(t, dir, membershipd, "--version").stdout; strings.TrimPrefix(u, "unibus ") != strings.TrimPrefix(m, "membershipd ") {
		t.Errorf("unibus --version = %q, membershipd --version = %q; want the same build", u, m)
	}

	// The server reports the same build in /v1/info.
	url := startMembershipd(t, membershipd, dir)
	resp, err := http.Get(url + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		Version    string    `json:"version"`
		Commit     string    `json:"commit"`
		CommitTime time.Time `json:"commit_time"`
		Modified   bool      `json:"modified"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	if info.Version != version || info.Commit != commit || info.Modified != (settings["vcs.modified"] == "true") {
		t.Errorf("/v1/info = %+v; want version %s, commit %q, modified %s", info, version, commit, settings["vcs.modified"])
	}
	if commit != "" && info.CommitTime.Format(time.RFC3339) != settings["vcs.time"] {
		t.Errorf("/v1/info commit_time = %s; want %s", info.CommitTime, settings["vcs.time"])
	}
}

// TestVersionFromLdflags builds both programs the way a release does,
// with -ldflags "-X main.version=…": the version given wins.
func TestVersionFromLdflags(t *testing.T) {
	bin := buildTools(t, "-ldflags", "-X main.version=v9.8.7-test")
	dir := t.TempDir()
	for _, name := range []string{"unibus", "membershipd"} {
		r := runTool(t, dir, filepath.Join(bin, name), "--version")
		if want := name + " v9.8.7-test ("; r.code != 0 || !strings.HasPrefix(r.stdout, want) {
			t.Errorf("%s --version = exit %d, %q; want exit 0 and %q…", name, r.code, r.stdout, want)
		}
	}
	url := startMembershipd(t, filepath.Join(bin, "membershipd"), dir)
	resp, err := http.Get(url + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Version string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.Version != "v9.8.7-test" {
		t.Errorf("/v1/info version = %q (%v); want v9.8.7-test", info.Version, err)
	}
}

// TestCommandLines runs what a newcomer types to find their way: the
// usages, a mistyped command, the completion scripts.
func TestCommandLines(t *testing.T) {
	bin := buildTools(t)
	dir := t.TempDir()
	unibus, membershipd := filepath.Join(bin, "unibus"), filepath.Join(bin, "membershipd")

	t.Run("membershipd -h", func(t *testing.T) {
		r := runTool(t, dir, membershipd, "-h")
		if r.code != 0 {
			t.Fatalf("membershipd -h: exit %d; want 0", r.code)
		}
		for _, want := range []string{"\n  user ", "\n  tls ", "\n  migrate-to-kv ", "\n  version ", "--tls-cert", "HTTPS", "-bus-auth"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("membershipd -h does not show %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("mistyped membershipd commands", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"usr", "list"}, `did you mean "user"?`},
			{[]string{"migrate-to-k"}, `did you mean "migrate-to-kv"?`},
			{[]string{"tsl", "init"}, `did you mean "tls"?`},
		} {
			r := runTool(t, dir, membershipd, tt.args...)
			if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("membershipd %q = exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", tt.args, r.code, r.stdout, r.stderr, tt.want)
			}
		}
	})

	// The commands unibus --help lists, "room create" and the like.
	var commands []string
	t.Run("unibus --help", func(t *testing.T) {
		r := runTool(t, dir, unibus, "--help")
		if r.code != 0 {
			t.Fatalf("unibus --help: exit %d", r.code)
		}
		for _, line := range strings.Split(r.stdout, "\n") {
			if len(line) > 80 {
				t.Errorf("unibus --help has a line of %d columns; want at most 80:\n%s", len(line), line)
			}
			if rest, ok := strings.CutPrefix(line, "  unibus "); ok {
				var words []string
				for _, w := range strings.Fields(rest) {
					if strings.ToLower(w) != w || strings.HasPrefix(w, "[") || strings.HasPrefix(w, "-") {
						break
					}
					words = append(words, w)
				}
				commands = append(commands, strings.Join(words, " "))
			}
		}
		if len(commands) < 15 {
			t.Errorf("unibus --help lists %d commands: %q; want every one", len(commands), commands)
		}
	})

	t.Run("completion", func(t *testing.T) {
		for _, shell := range []string{"bash", "zsh", "fish"} {
			r := runTool(t, dir, unibus, "completion", shell)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("unibus completion %s = exit %d, stderr %q", shell, r.code, r.stderr)
			}
			for _, c := range commands {
				for _, w := range strings.Fields(c) {
					if !strings.Contains(r.stdout, w) {
						t.Errorf("unibus completion %s does not name %q (of %q)", shell, w, c)
					}
				}
			}
			if _, err := exec.LookPath(shell); err != nil {
				t.Logf("no %s here: its script is not parsed", shell)
				continue
			}
			script := filepath.Join(dir, "unibus."+shell)
			if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(shell, "-n", script).CombinedOutput(); err != nil {
				t.Errorf("%s -n on the output of unibus completion %s: %v\n%s", shell, shell, err, out)
			}
		}
		if r := runTool(t, dir, unibus, "completion", "tcsh"); r.code != 2 {
			t.Errorf("unibus completion tcsh = exit %d; want 2", r.code)
		}
	})
}
