// Package metrics is membershipd's Prometheus instrumentation: the
// counters and histograms of the HTTP API, the request signatures and
// rate limits, the data plane's closed connections, the history readers,
// key deliveries and rekeys, and the collectors read at scrape time (the
// embedded NATS server's connections, the history stream's size). The
// store's own series are in package storemetrics. docs/metrics.md lists
// every series.
//
// Nothing is registered at import time, and nothing in the process-wide
// default registry is used: [New] registers on the registry membershipd
// passes in, and [Metrics.Handler] serves that registry alone.
//
// # Hooks
//
// The packages measured import nothing of Prometheus. Each declares the
// small interface it calls ([httpapi.Observer], [readers.Observer], the
// data plane's counter), or a func hook ([httpapi.RateLimiter.OnLimit]),
// and [Metrics] implements them.
//
// # Cost
//
// Every label value a hook can be told is resolved to its series when
// [New] runs, so counting is a map read and an atomic add. The API's
// series are resolved once per route and status and then read from a
// copy-on-write map: a request costs no allocation and takes no lock
// (BenchmarkAPI).
//
// # Concurrency
//
// A Metrics is safe for concurrent use.
package metrics
