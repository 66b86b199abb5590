package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/enmanuel/unibus/pkg/membership"
)

// validateBootConfig is the fail-open guard (audit H2): a non-loopback bind,
// or any TLS flag, demands --bus-auth enforce. An insecure public startup is
// made impossible rather than silently exposing the bus with the appearance
// of security.
func validateBootConfig(bind string, mode membership.AuthMode, tlsCert, tlsKey string) error {
	if mode == membership.AuthEnforce {
		return nil
	}
	if !isLoopbackBind(bind) {
		return fmt.Errorf("--bind %q is not a loopback address, so the bus would be reachable from the network with --bus-auth %s: add --bus-auth enforce (and seed a user first with `membershipd user seed --admin TOKEN`), or bind 127.0.0.1", bind, mode)
	}
	if tlsCert != "" || tlsKey != "" {
		return fmt.Errorf("--tls-cert/--tls-key are set with --bus-auth %s, which would look secure without checking anyone: add --bus-auth enforce", mode)
	}
	return nil
}

// validateClusterConfig is the cluster route guard (issue 0003a). The
// route-TLS flags (--route-tls-cert, --route-tls-key, --route-tls-ca) are
// all-or-nothing in every case. A clustered (--cluster-name set) node on a
// public (non-loopback) bind needs a route secret (--cluster-user and
// --cluster-pass) and mutual route TLS (all three route-TLS flags), so that
// nobody on the network can join the route layer or read route traffic.
func validateClusterConfig(clusterName, bind, clusterUser, clusterPass, routeTLSCert, routeTLSKey, routeTLSCA string) error {
	set := 0
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"--route-tls-cert", routeTLSCert},
		{"--route-tls-key", routeTLSKey},
		{"--route-tls-ca", routeTLSCA},
	} {
		if f.value != "" {
			set++
		} else {
			missing = append(missing, f.name)
		}
	}
	if set > 0 && set < 3 {
		return fmt.Errorf("route TLS needs --route-tls-cert, --route-tls-key and --route-tls-ca together: add %s", strings.Join(missing, " and "))
	}
	if clusterName == "" || isLoopbackBind(bind) {
		return nil
	}
	var errs []error
	if clusterUser == "" || clusterPass == "" {
		errs = append(errs, fmt.Errorf("cluster %q on public bind %q needs a route secret: add --cluster-user and --cluster-pass (the same on every node)", clusterName, bind))
	}
	if set == 0 {
		errs = append(errs, fmt.Errorf("cluster %q on public bind %q needs mutual route TLS: add --route-tls-cert, --route-tls-key and --route-tls-ca", clusterName, bind))
	}
	return errors.Join(errs...)
}

// isLoopbackBind reports whether bind keeps the listeners on this host:
// "localhost", or a loopback IP (127.0.0.0/8, ::1). The empty string and
// 0.0.0.0 mean every interface and are not loopback.
func isLoopbackBind(bind string) bool {
	host := strings.TrimSuffix(strings.TrimPrefix(bind, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// splitRoutes splits the --routes list on commas, dropping blanks.
func splitRoutes(csv string) []string {
	var routes []string
	for _, r := range strings.Split(csv, ",") {
		if r = strings.TrimSpace(r); r != "" {
			routes = append(routes, r)
		}
	}
	return routes
}
