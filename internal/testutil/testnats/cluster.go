package testnats

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/enmanuel/unibus/internal/testutil/testnet"
	"github.com/enmanuel/unibus/pkg/embeddednats"
)

// StartCluster starts n servers routed to one another on loopback, server
// i (from 0) with the config node(i) (nil: an empty one), filled in as
// Start fills it. A server node leaves unnamed is n1, n2…; its Cluster
// (node's, or a new one), named "test" unless node names it, listens on
// 127.0.0.1 on a route port of its own, free a moment ago, with routes to
// all n. Each server is shut down when the test ends. StartCluster does
// not wait for the routes to form.
func StartCluster(t testing.TB, n int, node func(i int) embeddednats.ServerConfig) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ports[i] = testnet.FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		var cfg embeddednats.ServerConfig
		if node != nil {
			cfg = node(i)
		}
		if cfg.ServerName == "" {
			cfg.ServerName = fmt.Sprintf("n%d", i+1)
		}
		var cc embeddednats.ClusterConfig
		if cfg.Cluster != nil {
			cc = *cfg.Cluster
		}
		if cc.Name == "" {
			cc.Name = "test"
		}
		cc.Host, cc.Port, cc.Routes = "127.0.0.1", ports[i], routes
		cfg.Cluster = &cc
		servers[i] = Start(t, cfg)
	}
	return servers
}
