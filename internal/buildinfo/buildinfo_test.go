package buildinfo

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	vcs := []debug.BuildSetting{
		{Key: "-buildmode", Value: "exe"},
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	clean := append([]debug.BuildSetting(nil), vcs[:4]...)
	clean = append(clean, debug.BuildSetting{Key: "vcs.modified", Value: "false"})
	platform := " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
	tests := []struct {
		name     string
		bi       *debug.BuildInfo
		override string
		want     string
	}{
		{"no build info", nil, "", "dev (" + runtime.Version() + platform},
		{"go run", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}, "", "dev (go1.26.0" + platform},
		{"empty module version", &debug.BuildInfo{GoVersion: "go1.26.0"}, "", "dev (go1.26.0" + platform},
		{"tag", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: clean}, "",
			"v1.2.3 (commit 0123456789ab, 2026-01-02T03:04:05Z; go1.26.0" + platform},
		{"pseudo-version of a modified tree",
			&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.0.0-20260102030405-0123456789ab+dirty"}, Settings: vcs}, "",
			"v0.0.0-20260102030405-0123456789ab+dirty (commit 0123456789ab, 2026-01-02T03:04:05Z, modified; go1.26.0" + platform},
		{"ldflags override", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "v9.9.9",
			"v9.9.9 (commit 0123456789ab, 2026-01-02T03:04:05Z, modified; go1.26.0" + platform},
		{"override beats the tag", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}}, " v2.0.0 ", "v2.0.0 (go1.26.0" + platform},
		{"unparsable time", &debug.BuildInfo{GoVersion: "go1.26.0", Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.time", Value: "yesterday"}}}, "",
			"dev (commit abc; go1.26.0" + platform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := fromBuildInfo(tt.bi, tt.override).String(); got != tt.want {
				t.Errorf("fromBuildInfo(…, %q).String() = %q; want %q", tt.override, got, tt.want)
			}
		})
	}
}

func TestInfoJSON(t *testing.T) {
	t.Parallel()
	i := Info{Version: "v1.2.3", Commit: "0123456789abcdef", CommitTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Modified: true, Go: "go1.26.0", Platform: "linux/amd64"}
	b, err := json.Marshal(i)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":"v1.2.3","commit":"0123456789abcdef","commit_time":"2026-01-02T03:04:05Z","modified":true,"go":"go1.26.0","platform":"linux/amd64"}`
	if string(b) != want {
		t.Errorf("json.Marshal(%+v) = %s; want %s", i, b, want)
	}
	b, _ = json.Marshal(Info{Version: "dev", Go: "go1.26.0", Platform: "linux/amd64"})
	if strings.Contains(string(b), "commit") || strings.Contains(string(b), "modified") {
		t.Errorf("json of a build without VCS information = %s; want no commit, commit_time or modified", b)
	}
}

// TestRead reads the test binary's own build: go test records no module
// version, so it is unversioned unless overridden.
func TestRead(t *testing.T) {
	t.Parallel()
	if got := Read("").Version; got != Unversioned {
		t.Errorf("Read(\"\").Version = %q; want %q in a test binary", got, Unversioned)
	}
	if got := Read("v1.0.0").Version; got != "v1.0.0" {
		t.Errorf("Read(\"v1.0.0\").Version = %q; want v1.0.0", got)
	}
}
