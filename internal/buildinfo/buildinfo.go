// Package buildinfo says which build of a unibus program is running: its
// version and the commit it was built from, read from the build
// information the Go toolchain writes into every binary
// (runtime/debug.ReadBuildInfo). Both unibus and membershipd print it
// the same way for --version, and membershipd reports it in /v1/info.
//
// # Where the version comes from
//
// A release sets it with -ldflags "-X main.version=v1.2.3", passed to
// [Read] as override. Otherwise it is the main module's version as the
// go command recorded it: a tag (v1.2.3), a pseudo-version
// (v0.0.0-20260102030405-0123456789ab, with +dirty for a modified work
// tree) for `go build` in a Git checkout, or [Unversioned] when there is
// none (`go run`, `go test`, -buildvcs=false). The commit (vcs.revision),
// its time (vcs.time) and whether the work tree was modified
// (vcs.modified) come from the build settings when the go command
// stamped them.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Unversioned is the version of a build that has none.
const Unversioned = "dev"

// Info is a build of a program.
type Info struct {
	Version    string    `json:"version"`
	Commit     string    `json:"commit,omitempty"`     // the full VCS revision
	CommitTime time.Time `json:"commit_time,omitzero"` // the revision's time, UTC
	Modified   bool      `json:"modified,omitempty"`   // the work tree had uncommitted changes
	Go         string    `json:"go"`                   // the toolchain: go1.26.0
	Platform   string    `json:"platform"`             // GOOS/GOARCH
}

// Read returns the running binary's build. A non-empty override (what
// -ldflags "-X main.version=…" set) is the version; otherwise it is the
// main module's.
func Read(override string) Info {
	bi, _ := debug.ReadBuildInfo() // nil when the binary has none
	return fromBuildInfo(bi, override)
}

// fromBuildInfo is Read on the build information bi, which may be nil.
func fromBuildInfo(bi *debug.BuildInfo, override string) Info {
	info := Info{Version: Unversioned, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if bi.GoVersion != "" {
			info.Go = bi.GoVersion
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.time":
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					info.CommitTime = t.UTC()
				}
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if override = strings.TrimSpace(override); override != "" {
		info.Version = override
	}
	return info
}

// ShortCommit is the commit's first 12 hex digits, as Go's
// pseudo-versions write it, or "" when the build recorded none.
func (i Info) ShortCommit() string {
	if len(i.Commit) > 12 {
		return i.Commit[:12]
	}
	return i.Commit
}

// String is the build on one line, as --version prints it after the
// program's name:
//
//	v1.2.3 (commit 0123456789ab, 2026-01-02T03:04:05Z, modified; go1.26.0 linux/amd64)
func (i Info) String() string {
	var vcs []string
	if c := i.ShortCommit(); c != "" {
		vcs = append(vcs, "commit "+c)
	}
	if !i.CommitTime.IsZero() {
		vcs = append(vcs, i.CommitTime.Format(time.RFC3339))
	}
	if i.Modified {
		vcs = append(vcs, "modified")
	}
	detail := strings.TrimSpace(i.Go + " " + i.Platform)
	if len(vcs) > 0 {
		detail = strings.Join(vcs, ", ") + "; " + detail
	}
	return fmt.Sprintf("%s (%s)", i.Version, detail)
}
