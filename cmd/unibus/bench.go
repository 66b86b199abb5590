package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/enmanuel/unibus/pkg/bench"
)

// `unibus bench` measures a running deployment with the caller's identity
// (package bench does the measuring): this file turns its flags into
// bench.Options and prints the bench.Report.

// benchOptions are the flags of `unibus bench`: the bench's options, with
// --skip as written and the command's own --cpuprofile.
type benchOptions struct {
	bench.Options
	skip, cpuprofile string
}

func benchFlags(fs *flag.FlagSet, o *options) {
	b, d := &o.bench, bench.DefaultOptions()
	fs.IntVar(&b.Size, "size", d.Size, "message payload size in `BYTES` (at least 24)")
	fs.IntVar(&b.Msgs, "msgs", d.Msgs, "`N` messages in all for the raw NATS run and, the same, for the end-to-end run")
	fs.IntVar(&b.Pub, "pub", d.Pub, "`N` publishers, each with its own connection; they share --msgs")
	fs.IntVar(&b.Sub, "sub", d.Sub, "`N` subscribers, each with its own connection; each receives every message")
	fs.IntVar(&b.Rate, "rate", d.Rate, "publish `R` messages a second in all, for a latency run (0: as fast as possible)")
	fs.IntVar(&b.Concurrency, "concurrency", d.Concurrency, "`C` signed requests at a time for the API run and the rekey's setup and fetches")
	fs.DurationVar(&b.Duration, "duration", d.Duration, "run each API call for `D`")
	fs.IntVar(&b.Requests, "requests", d.Requests, "stop each API call after `N` requests instead of after --duration (0: use --duration)")
	fs.IntVar(&b.RekeyMembers, "rekey-members", d.RekeyMembers, "time the rekey of a scratch room of `N` members, N-1 of them throwaway users (admins only; 0: no rekey run)")
	fs.StringVar(&b.skip, "skip", "", "skip the comma-separated `PARTS` among raw, e2e, api, rekey")
	fs.StringVar(&b.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (the client side) to `PATH`")
	jsonFlag("print one JSON document with every figure")(fs, o)
}

// options returns the bench's options from the flags, without the client
// settings but --timeout, which also bounds each part when given.
func (b *benchOptions) options(timeout timeoutFlag) bench.Options {
	o := b.Options
	o.Timeout = bench.DefaultOptions().Timeout
	if timeout.set {
		o.Timeout = timeout.d
	}
	o.Skip = nil
	for _, p := range strings.Split(b.skip, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.Skip = append(o.Skip, p)
		}
	}
	return o
}

func runBench(ctx context.Context, x *invocation, _ []string) error {
	o := x.opts.bench.options(x.opts.timeout)
	if err := o.Validate(); err != nil {
		return usagef("%v", err)
	}
	id, err := x.loadIdentity()
	if err != nil {
		return err
	}
	tlsConfig, err := loadCA(x.opts.ca)
	if err != nil {
		return err
	}
	// The bench measures one node: the first of --server.
	o.Server, o.Identity, o.TLS, o.NATSURL = firstServer(x.opts.server), id, tlsConfig, x.opts.nats
	if isTerminal(x.stderr) {
		o.Progress = x.stderr
	}
	if path := x.opts.bench.cpuprofile; path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("create the CPU profile: %w (pass a writable --cpuprofile PATH)", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, o)
	// A failed run still prints what it measured and what it left.
	if rep != nil {
		var werr error
		if x.opts.json {
			werr = writeJSON(x.stdout, rep)
		} else {
			werr = rep.WriteText(x.stdout)
		}
		if err == nil {
			err = werr
		}
	}
	return err
}
