package main

import (
	"flag"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completionScript runs `unibus completion SHELL` and writes the script
// to a file, whose path it returns.
func completionScript(t *testing.T, shell string) (path, script string) {
	t.Helper()
	r := runCLI(t, "", "completion", shell)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("unibus completion %s = exit %d, stderr %q; want 0 and nothing", shell, r.code, r.stderr)
	}
	path = filepath.Join(t.TempDir(), "unibus."+shell)
	writeFile(t, path, []byte(r.stdout))
	return path, r.stdout
}

// TestCompletionListsEveryCommand checks that each script names every
// command word and every flag of the command table.
func TestCompletionListsEveryCommand(t *testing.T) {
	for _, shell := range completionShells {
		t.Run(shell, func(t *testing.T) {
			_, script := completionScript(t, shell)
			for _, c := range commands {
				for _, w := range strings.Fields(c.name) {
					if !strings.Contains(script, w) {
						t.Errorf("the %s script does not name %q (of %q)", shell, w, c.name)
					}
				}
				var o options
				newFlagSet(c, &o).VisitAll(func(f *flag.Flag) {
					if !strings.Contains(script, f.Name) {
						t.Errorf("the %s script does not offer --%s of %q", shell, f.Name, c.name)
					}
				})
			}
		})
	}
}

// TestCompletionFlagsAgree keeps one meaning per flag name: the scripts
// skip a flag's value by its name alone, whatever the command.
func TestCompletionFlagsAgree(t *testing.T) {
	takes := map[string]bool{}
	for _, c := range commands {
		var o options
		fs := newFlagSet(c, &o)
		fs.VisitAll(func(f *flag.Flag) {
			v := takesValue(fs, f.Name)
			if prev, ok := takes[f.Name]; ok && prev != v {
				t.Errorf("--%s takes a value in one command and not in another (%q): the completion scripts cannot tell", f.Name, c.name)
			}
			takes[f.Name] = v
		})
	}
}

func TestCompletionUnknownShell(t *testing.T) {
	r := runCLI(t, "", "completion", "tcsh")
	if r.code != 2 || !strings.Contains(r.stderr, `"tcsh"`) || !strings.Contains(r.stderr, "bash, zsh, fish") {
		t.Errorf("unibus completion tcsh = exit %d, stderr %q; want 2 naming the shells", r.code, r.stderr)
	}
}

// shellCompletes runs code in shell and returns what it printed.
func shellCompletes(t *testing.T, shell string, code string) string {
	t.Helper()
	out, err := exec.Command(shell, "-c", code).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", shell, err, out)
	}
	return string(out)
}

// completionCases are command lines, the cursor at their end, and words
// the completion must offer (and, after "!", must not).
var completionCases = []struct {
	line string
	want []string
}{
	{"unibus ", []string{"id", "user", "room", "send", "read", "fetch", "bench", "completion", "version", "help", "!create"}},
	{"unibus ro", []string{"room", "!read"}},
	{"unibus room ", []string{"create", "list", "show", "add", "remove", "rekey", "!send"}},
	{"unibus --server http://127.0.0.1:8470 room cr", []string{"create", "!list"}},
	{"unibus room create ops --", []string{"--cleartext", "--json", "--server", "--identity", "!--follow"}},
	{"unibus --identity alice.json read ops --", []string{"--last", "--follow", "--json", "!--cleartext"}},
	{"unibus fetch ops MSG -", []string{"-o", "--force"}},
	{"unibus completion ", []string{"bash", "zsh", "fish"}},
	{"unibus help room ", []string{"create", "rekey", "!send"}},
	{"unibus -", []string{"--version", "--server", "--help"}},
}

func checkOffers(t *testing.T, shell, line, out string, want []string) {
	t.Helper()
	got := strings.Fields(out)
	for _, w := range want {
		if neg, ok := strings.CutPrefix(w, "!"); ok {
			if slices.Contains(got, neg) {
				t.Errorf("%s completes %q with %q; want it not offered (got %q)", shell, line, neg, got)
			}
		} else if !slices.Contains(got, w) {
			t.Errorf("%s completes %q with %q; want %q among them", shell, line, got, w)
		}
	}
}

func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	path, _ := completionScript(t, "bash")
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "alice.json"), []byte("{}"))
	for _, tt := range append(completionCases, struct {
		line string
		want []string
	}{"unibus --identity ", []string{"alice.json"}}) {
		out := shellCompletes(t, "bash", `cd `+dir+` && source `+path+` && COMP_LINE='`+tt.line+`' && COMP_POINT=${#COMP_LINE} && _unibus && printf '%s\n' "${COMPREPLY[@]}"`)
		checkOffers(t, "bash", tt.line, out, tt.want)
	}
	if out := shellCompletes(t, "bash", `source `+path+` && complete -p unibus`); !strings.Contains(out, "_unibus") {
		t.Errorf("the bash script does not register _unibus for unibus: %q", out)
	}
}

// TestZshCompletion parses the zsh script and runs its function with
// printers standing in for the completion system's functions (the
// _describe one matching the word under the cursor, as compadd does).
func TestZshCompletion(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("no zsh: cannot check the zsh script")
	}
	path, _ := completionScript(t, "zsh")
	if out, err := exec.Command("zsh", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	stubs := `compdef() { :; }
_describe() { local -a a; a=("${(@P)${@[-1]}}"); a=("${a[@]%%:*}"); print -l -- ${(M)a:#${words[CURRENT]}*}; }
_files() { print FILES; }
_message() { print MESSAGE; }
source ` + path + "\n"
	for _, tt := range append(completionCases, struct {
		line string
		want []string
	}{"unibus --identity ", []string{"FILES"}}) {
		words := strings.Fields(tt.line)
		if strings.HasSuffix(tt.line, " ") {
			words = append(words, "")
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		code := stubs + "words=(" + strings.Join(quoted, " ") + "); CURRENT=${#words}; _unibus"
		out, _ := exec.Command("zsh", "-f", "-c", code).CombinedOutput()
		checkOffers(t, "zsh", tt.line, string(out), tt.want)
	}
}

func TestFishCompletion(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("no fish: cannot check the fish script")
	}
	path, _ := completionScript(t, "fish")
	if out, err := exec.Command("fish", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("fish -n: %v\n%s", err, out)
	}
	for _, tt := range completionCases {
		out := shellCompletes(t, "fish", "source "+path+"; complete -C'"+tt.line+"' | string replace -r '\\t.*' ''; true")
		checkOffers(t, "fish", tt.line, out, tt.want)
	}
}

// TestUsageFitsTheTerminal keeps every line of the usage within 80
// columns.
func TestUsageFitsTheTerminal(t *testing.T) {
	cases := [][]string{{"--help"}, {"help"}, {"room", "help"}, {"id", "--help"}, {"user", "help"}}
	for _, args := range cases {
		r := runCLI(t, "", args...)
		if r.code != 0 {
			t.Fatalf("unibus %q: exit %d", args, r.code)
		}
		for _, line := range strings.Split(r.stdout, "\n") {
			if len(line) > usageWidth {
				t.Errorf("unibus %q prints a line of %d columns; want at most %d:\n%s", args, len(line), usageWidth, line)
			}
		}
	}
	// Every command is in the usage.
	usage := runCLI(t, "", "--help").stdout
	for _, c := range commands {
		if !strings.Contains(usage, "unibus "+c.name) {
			t.Errorf("unibus --help does not list %q", c.name)
		}
	}
}

func TestWrap(t *testing.T) {
	tests := []struct {
		s     string
		width int
		want  []string
	}{
		{"", 10, nil},
		{"one two three", 7, []string{"one two", "three"}},
		{"one two three", 80, []string{"one two three"}},
		{"averyveryverylongword x", 5, []string{"averyveryverylongword", "x"}},
	}
	for _, tt := range tests {
		if got := wrap(tt.s, tt.width); !slices.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %d) = %q; want %q", tt.s, tt.width, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		r := runCLI(t, "", args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "unibus dev (") || strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("unibus %q = exit %d, %q; want 0 and one line \"unibus dev (…)\"", args, r.code, r.stdout)
		}
	}
	r := runCLI(t, "", "version", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"version": "dev"`) {
		t.Errorf("unibus version --json = exit %d, %q; want the build as JSON", r.code, r.stdout)
	}
	if r := runCLI(t, "", "version", "extra"); r.code != 2 {
		t.Errorf("unibus version extra = exit %d; want 2", r.code)
	}
}
