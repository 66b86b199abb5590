package layering_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/enmanuel/unibus"

// prometheus is the Prometheus client: only the packages that measure
// (metrics, storemetrics) and membershipd import it; the packages they
// measure declare hooks instead.
const prometheus = "github.com/prometheus/client_golang/prometheus"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	GoFiles    []string
	Deps       []string // every package it imports, directly or not
	Imports    []string // what it imports directly
}

// listAll lists every package of the module, with its dependencies.
func listAll(t *testing.T) map[string]pkg {
	t.Helper()
	// go test puts its own go command first on the PATH.
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	all := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		all[p.ImportPath] = p
	}
	if len(all) < 10 {
		t.Fatalf("go list found %d packages of %s; want the whole module", len(all), module)
	}
	return all
}

// The rules: a package (or, with a trailing "/...", every package below
// it) must not depend, directly or not, on any of the forbidden ones.
var rules = []struct {
	pkgs   []string
	forbid []string
	why    string
}{
	{
		pkgs:   []string{"pkg/client", "pkg/bench", "cmd/unibus"},
		forbid: []string{"github.com/nats-io/nats-server/v2/server", "modernc.org/sqlite", module + "/pkg/membership", module + "/pkg/membership/...", module + "/pkg/busauth", module + "/pkg/embeddednats", module + "/pkg/blobstore", prometheus},
		why:    "a client binary carries no SQLite, no nats-server, no Prometheus and none of the server's packages",
	},
	{
		pkgs:   []string{"pkg/membership/store"},
		forbid: []string{"modernc.org/sqlite", "database/sql", "github.com/nats-io/nats.go", "github.com/nats-io/nats.go/jetstream", "github.com/nats-io/nats-server/v2/server", "net/http", prometheus, module + "/pkg/membership/..."},
		why:    "the Store contract and its rules import no backend driver, no NATS client and no net/http",
	},
	{
		pkgs:   []string{"pkg/membership/sqlitestore"},
		forbid: []string{module + "/pkg/membership/kvstore", module + "/pkg/membership/httpapi", module + "/pkg/membership", "github.com/nats-io/nats.go", "net/http", prometheus},
		why:    "a backend sees only the contract",
	},
	{
		pkgs:   []string{"pkg/membership/kvstore"},
		forbid: []string{module + "/pkg/membership/sqlitestore", module + "/pkg/membership/httpapi", module + "/pkg/membership", "modernc.org/sqlite", "database/sql", prometheus},
		why:    "a backend sees only the contract",
	},
	{
		pkgs:   []string{"pkg/membership/readers"},
		forbid: []string{module + "/pkg/membership/sqlitestore", module + "/pkg/membership/kvstore", module + "/pkg/membership/httpapi", module + "/pkg/membership", "modernc.org/sqlite", prometheus},
		why:    "the history readers see JetStream and the membership they ask about, nothing else of the server; their Observer is how they are measured",
	},
	{
		pkgs:   []string{"pkg/membership/httpapi"},
		forbid: []string{module + "/pkg/membership/sqlitestore", module + "/pkg/membership/kvstore", module + "/pkg/membership/readers", module + "/pkg/membership", "modernc.org/sqlite", "github.com/nats-io/nats.go", "github.com/nats-io/nats-server/v2/server", prometheus},
		why:    "the HTTP API sees only the contract and the interfaces it declares (its Observer among them), never a concrete backend",
	},
	{
		pkgs:   []string{"pkg/membership/storemetrics"},
		forbid: []string{module + "/pkg/membership/sqlitestore", module + "/pkg/membership/kvstore", module + "/pkg/membership/httpapi", module + "/pkg/membership", "modernc.org/sqlite", "github.com/nats-io/nats.go"},
		why:    "the store's measure wraps the contract, whatever the backend",
	},
	{
		pkgs:   []string{"pkg/membership/metrics"},
		forbid: []string{module + "/pkg/membership/sqlitestore", module + "/pkg/membership/kvstore", module + "/pkg/membership", "modernc.org/sqlite", "github.com/nats-io/nats-server/v2/server"},
		why:    "the metrics implement the hooks of the packages measured and read the embedded NATS server through an interface",
	},
	{
		pkgs:   []string{"pkg/api", "pkg/e2ee", "pkg/identity", "pkg/roomchain", "pkg/reqsig", "pkg/subjects"},
		forbid: []string{"github.com/nats-io/nats.go", "github.com/nats-io/nats-server/v2/server", "modernc.org/sqlite", prometheus, module + "/pkg/client", module + "/pkg/membership", module + "/pkg/membership/..."},
		why:    "the wire types, envelope and identity both sides share depend on nothing of either side",
	},
}

// matches reports whether path is named by pattern (a path, or a path
// ending in "/..." for everything below it).
func matches(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func TestDependencyRules(t *testing.T) {
	all := listAll(t)
	for _, r := range rules {
		for _, name := range r.pkgs {
			p, ok := all[module+"/"+name]
			if !ok {
				t.Errorf("package %s is gone: update the rules and docs/architecture.md", name)
				continue
			}
			for _, dep := range p.Deps {
				for _, f := range r.forbid {
					if matches(f, dep) && dep != p.ImportPath {
						t.Errorf("%s depends on %s (via %s): %s", name, dep, via(all, p, dep), r.why)
					}
				}
			}
		}
	}
}

// via names the direct import of p through which it reaches dep.
func via(all map[string]pkg, p pkg, dep string) string {
	for _, imp := range p.Imports {
		if imp == dep || slices.Contains(all[imp].Deps, dep) {
			return imp
		}
	}
	return "?"
}

// TestEveryPackageHasADoc keeps a package comment on every package, as
// the style guide asks: what it is, in the words of its first sentence.
func TestEveryPackageHasADoc(t *testing.T) {
	for path, p := range listAll(t) {
		if len(p.GoFiles) == 0 {
			continue // tests only: their comment is in a _test.go file
		}
		if p.Name == "main" {
			if !strings.HasPrefix(p.Doc, "Command ") {
				t.Errorf("%s: the package comment should start \"Command %s …\"", path, filepath.Base(path))
			}
			continue
		}
		if !strings.HasPrefix(p.Doc, "Package "+p.Name+" ") {
			t.Errorf("%s: no package comment starting \"Package %s …\": add one to doc.go saying what the package is", path, p.Name)
		}
	}
}
