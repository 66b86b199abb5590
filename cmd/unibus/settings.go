package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// serverList splits --server (or UNIBUS_SERVER) into the nodes' URLs:
// URL[,URL…], spaces around each allowed.
func serverList(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// firstServer is the first URL of --server, or "" (the SDK's default).
func firstServer(s string) string {
	if l := serverList(s); len(l) > 0 {
		return l[0]
	}
	return ""
}

// timeoutFlag is --timeout: a positive duration (30s, 2m) or a number of
// seconds. Its default comes from an environment variable; a bad value
// there is reported (err) only when the flag does not replace it.
type timeoutFlag struct {
	d   time.Duration
	set bool  // given on the command line
	err error // UNIBUS_TIMEOUT did not parse
}

// fromEnv sets the default: the variable name's value, else def.
func (f *timeoutFlag) fromEnv(name string, def time.Duration) {
	f.d = def
	v := os.Getenv(name)
	if v == "" {
		return
	}
	d, err := parseTimeout(v)
	if err != nil {
		f.err = usagef("%s=%q: %v", name, v, err)
		return
	}
	f.d = d
}

func (f *timeoutFlag) String() string { return f.d.String() }

func (f *timeoutFlag) Set(s string) error {
	d, err := parseTimeout(s)
	if err != nil {
		return err
	}
	f.d, f.set, f.err = d, true, nil
	return nil
}

func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseFloat(s, 64)
		if nerr != nil {
			return 0, fmt.Errorf("%q is not a duration: use one such as 30s or 2m", s)
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: use a positive duration such as 30s", s)
	}
	return d, nil
}
