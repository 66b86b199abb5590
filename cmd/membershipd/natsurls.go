package main

import (
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// natsURLsMaxAge bounds how old the list of the cluster's NATS URLs in
// /v1/info may be: reading it costs a look at the whole server's state,
// and /v1/info is open to anyone.
const natsURLsMaxAge = time.Second

// clusterNATSURLs returns the function that lists, for /v1/info, the
// client URLs of every node of the embedded server ns's cluster, ns's
// own first (embeddednats.ClusterClientURLs), read again at most every
// natsURLsMaxAge.
func clusterNATSURLs(ns *server.Server) func() []string {
	var (
		mu   sync.Mutex
		urls []string
		at   time.Time
	)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		if urls == nil || time.Since(at) >= natsURLsMaxAge {
			urls, at = embeddednats.ClusterClientURLs(ns), time.Now()
		}
		return slices.Clone(urls)
	}
}
