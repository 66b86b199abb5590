package embeddednats

import (
	"net/url"
	"slices"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterClientURLs returns the URLs clients can dial to reach ns's
// cluster: ns's own ([ClientURL]) first, then the client URLs the cluster
// gossips over its routes, as each server advertises them (its client
// advertise address, else its listen address, or every non-loopback
// address of its host when it listens on all interfaces, which lists ns
// again under those). A server that leaves the cluster leaves the list.
// The URLs carry ns's scheme, "tls://" when client TLS is on, else
// "nats://": a TLS client verifies each server's certificate against the
// address listed, so a node's certificate must be valid for the addresses
// it advertises.
//
// A standalone server returns its own URL alone.
func ClusterClientURLs(ns *server.Server) []string {
	own := ClientURL(ns)
	urls := []string{own}
	u, err := url.Parse(own)
	if err != nil {
		return urls
	}
	v, err := ns.Varz(nil)
	if err != nil {
		return urls
	}
	for _, hostPort := range v.ClientConnectURLs {
		if other := u.Scheme + "://" + hostPort; !slices.Contains(urls, other) {
			urls = append(urls, other)
		}
	}
	return urls
}
