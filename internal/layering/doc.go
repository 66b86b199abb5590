// Package layering holds the test that keeps unibus's package graph as
// docs/architecture.md draws it: which package may import which, and
// that every package says what it is in a doc comment. It has no code of
// its own; `go test ./internal/layering` runs the check.
package layering
