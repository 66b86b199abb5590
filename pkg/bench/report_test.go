package bench_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/enmanuel/unibus/pkg/bench"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt from the reports in testdata/*.json")

// reports are the reports in testdata: NAME.json is the document `unibus
// bench --json` printed for it and NAME.txt the text it printed, both
// written by the command before the bench had a package of its own.
var reports = []string{"full", "partial", "empty"}

// TestWriteText checks the text of each report against its golden file.
func TestWriteText(t *testing.T) {
	t.Parallel()
	for _, name := range reports {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rep := readReport(t, name)
			var got bytes.Buffer
			if err := rep.WriteText(&got); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".txt")
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != string(want) {
				t.Errorf("WriteText(%s) =\n%s\nwant (%s)\n%s", name, got.String(), golden, want)
			}
		})
	}
}

// TestReportJSON checks that a report decodes from and encodes to the
// document of `unibus bench --json` byte for byte: every field keeps its
// name, its order and its omitempty.
func TestReportJSON(t *testing.T) {
	t.Parallel()
	for _, name := range reports {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(readReport(t, name), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if got = append(got, '\n'); !bytes.Equal(got, want) {
				t.Errorf("json.Marshal(%s) =\n%s\nwant\n%s", name, got, want)
			}
		})
	}
}

func readReport(t testing.TB, name string) *bench.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var rep bench.Report
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("%s.json: %v", name, err)
	}
	return &rep
}
