//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package main

import "os"

// tryLock has no flock to use on this system: every lock is granted, so
// nothing keeps a second membershipd off a data directory here.
func tryLock(f *os.File, exclusive bool) (bool, error) { return true, nil }
