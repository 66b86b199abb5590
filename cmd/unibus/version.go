package main

import (
	"context"
	"fmt"
	"io"

	"github.com/enmanuel/unibus/internal/buildinfo"
)

// version, when a release build sets it with
// -ldflags "-X main.version=v1.2.3", is the version --version prints;
// empty, it is the module's (internal/buildinfo).
var version = ""

// printVersion prints the build the way membershipd --version does.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "unibus %s\n", buildinfo.Read(version))
}

// runVersion runs `unibus version`.
func runVersion(ctx context.Context, x *invocation, args []string) error {
	if x.opts.json {
		return writeJSON(x.stdout, buildinfo.Read(version))
	}
	printVersion(x.stdout)
	return nil
}

// isVersionFlag reports whether a asks for the version: --version or
// -version.
func isVersionFlag(a string) bool { return a == "--version" || a == "-version" }
