// Package embeddednats runs the NATS server (with JetStream) inside the
// membershipd process.
//
// StartServer turns a small, validated ServerConfig into nats-server options,
// starts the server, routes its log lines to a log/slog logger and returns
// only once the server accepts connections. ClientURL gives the address that
// in-process and local clients should dial.
//
// Authentication is pluggable through ServerConfig.Auth (for example the
// nkey authenticator of pkg/busauth). When it is set the server always sends
// a fresh nonce in its INFO line so that clients can prove possession of
// their private key; without that option nats-server sends no nonce to
// clients of a custom authenticator and a signature would be replayable.
//
// # Accounts
//
// With ServerConfig.Accounts the server has two NATS accounts, both with
// JetStream, in place of nats-server's single global account ("$G"):
// [BusAccount] for the bus (members, room subjects and events, inboxes,
// the history stream) and [ControlAccount] for the control plane (the KV
// buckets and the blob Object Store). Subjects and streams of one account
// are invisible from the other, so nothing a client of the bus publishes,
// nor any reply subject it names (to which JetStream sends its
// acknowledgements), can reach the control plane. The accounts are static
// configuration, identical on every server of a cluster; routes carry
// both. The Auth must place each client in one of them.
//
// Such a server also declares nats-server's system account,
// [SystemAccount], before it starts, so that ServerConfig.System can hand
// it to the Auth: an operator admitted there reads every server of the
// cluster (`nats server list`, `nats server report jetstream`, the
// $SYS.REQ.SERVER.PING.* requests) and administers JetStream's peers
// ($JS.API.SERVER.REMOVE). It has no JetStream and receives no message
// published in the other accounts, but sees their metadata: connections,
// user keys, subscriptions, streams and their sizes.
package embeddednats

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The accounts of a server started with ServerConfig.Accounts. Their
// names are also the directories of their JetStream data under the store
// directory (StoreDir/jetstream/<account>).
const (
	// BusAccount holds the bus: members' and membershipd's bus
	// connections, room subjects, events and inboxes, and the history
	// stream.
	BusAccount = "UNIBUS"
	// ControlAccount holds the control plane's JetStream data: the KV
	// buckets and the blob Object Store. Only membershipd's control key
	// is admitted to it.
	ControlAccount = "UNIBUS_CONTROL"
	// SystemAccount is nats-server's system account, under its default
	// name: server monitoring and cluster administration, for the
	// operator only.
	SystemAccount = "$SYS"
)

// accountsConfig declares the two accounts in nats-server's configuration
// syntax, the one exported way to give a configured account JetStream
// before the server starts. "enabled" gives each account dynamic limits:
// both share the server's JetStream limits (JetStreamMaxMemory,
// JetStreamMaxStore) and neither reserves any of it. The system account is
// declared too, without JetStream, so that it exists, and can be given to
// ServerConfig.System, before the server starts (nats-server otherwise
// makes it during Start).
const accountsConfig = "accounts {\n" +
	"\t" + BusAccount + ": { jetstream: enabled }\n" +
	"\t" + ControlAccount + ": { jetstream: enabled }\n" +
	"\t\"" + SystemAccount + "\": {}\n" +
	"}\n"

// routeReconnectErrorReports is how many failed attempts to reconnect a
// route make one error in the log (the first failure always does); an
// attempt is made every second.
const routeReconnectErrorReports = 60

// readyTimeout bounds how long StartServer waits for the listeners to come up.
const readyTimeout = 10 * time.Second

// routeTLSTimeout is the TLS handshake timeout, in seconds, for route
// connections. Routes may cross slower links than local clients, so it is a
// little more generous than the nats-server default of two seconds.
const routeTLSTimeout = 5

// ServerConfig describes one embedded NATS server.
type ServerConfig struct {
	// StoreDir is the JetStream storage directory. Required.
	StoreDir string
	// Host is the client listen address; empty means all interfaces.
	Host string
	// Port is the client listen port; 0 means the NATS default (4222) and
	// -1 picks a random free port (useful in tests).
	Port int
	// ServerName names this server. It is required when Cluster is set,
	// because JetStream clustering needs a unique, stable name per server.
	ServerName string
	// Cluster, when non-nil, makes this server a member of a cluster.
	Cluster *ClusterConfig
	// Auth authenticates client connections; nil means no authentication.
	Auth server.Authentication
	// Accounts, when non-nil, gives the server the two accounts
	// [BusAccount] and [ControlAccount], each with JetStream, in place of
	// the global account, and is called with them once the server exists
	// and before it accepts a client, so that Auth can place each client
	// in one (busauth.NkeyAuthenticator.BindAccounts does). It requires
	// Auth: a client left in the global account has no JetStream then.
	Accounts func(bus, control *server.Account)
	// System, when non-nil, is called with the server's system account
	// ([SystemAccount]) right after Accounts, so that Auth can admit an
	// operator's key there (busauth.NkeyAuthenticator.BindSystemAccount
	// does). It requires Accounts.
	System func(sys *server.Account)
	// TLS, when non-nil, makes TLS mandatory for client connections. If its
	// ClientAuth is tls.RequireAndVerifyClientCert, clients must also present
	// a certificate.
	TLS *tls.Config
	// Logger receives the nats-server log; nil discards it.
	Logger *slog.Logger
	// JetStreamMaxMemory limits JetStream memory storage in bytes; 0 lets
	// the server pick its default.
	JetStreamMaxMemory int64
	// JetStreamMaxStore limits JetStream file storage in bytes; 0 lets the
	// server pick its default.
	JetStreamMaxStore int64
	// MonitorPort enables the HTTP monitoring endpoint on 127.0.0.1 at this
	// port; 0 leaves it off and -1 picks a random free port.
	MonitorPort int
	// MaxSubs bounds the subscriptions of one client connection; 0 means
	// no bound. A subscription over it is refused with "maximum
	// subscriptions exceeded" and the connection stays open.
	MaxSubs int
	// SyncAlways makes JetStream sync every write to disk before
	// acknowledging it (nats-server's sync_interval: always). Without it
	// JetStream syncs lazily, and writes acknowledged shortly before a crash
	// of every replica are lost. It is server-wide and costs write
	// throughput; the control-plane KV store needs it.
	SyncAlways bool
}

// ClusterConfig describes how a server joins its cluster.
type ClusterConfig struct {
	// Name is the cluster name, identical on every member. Required.
	Name string
	// Host is the route listen address; empty means all interfaces.
	Host string
	// Port is the route listen port; -1 picks a random free port.
	Port int
	// Routes lists the route URLs of the cluster members, for example
	// "nats://10.0.0.2:6222". It may include this server itself. At least
	// one is required: JetStream clustering refuses to start without
	// configured routes. Routes without credentials get Username and
	// Password when those are set.
	Routes []string
	// Username and Password, when set, are required from peers connecting
	// to this server's route port and are sent to peers.
	Username string
	Password string
	// TLS, when non-nil, secures route connections. It is used both to
	// accept and to dial routes, so it should carry the node certificate,
	// the cluster CA as RootCAs and ClientCAs, and require client
	// certificates (see busauth.RouteTLSConfig).
	TLS *tls.Config
}

// StartServer validates cfg, starts an embedded NATS server with JetStream
// and waits until it accepts connections. The caller owns the returned server
// and must call Shutdown on it. The server does not install signal handlers.
//
// For a clustered server, JetStream becomes usable only once a quorum of the
// cluster is up and has elected a meta leader; StartServer does not wait for
// that.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	opts, err := buildOptions(cfg)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embeddednats: create server: %w", err)
	}
	logger := newLogAdapter(cfg.Logger)
	ns.SetLoggerV2(logger, logger.debugEnabled(), false, false)
	if cfg.Accounts != nil {
		// The server made its own copies of the configured accounts:
		// clients must be placed in those, and nobody connects before
		// Start.
		bus, err := ns.LookupAccount(BusAccount)
		if err != nil {
			return nil, fmt.Errorf("embeddednats: account %s: %w", BusAccount, err)
		}
		control, err := ns.LookupAccount(ControlAccount)
		if err != nil {
			return nil, fmt.Errorf("embeddednats: account %s: %w", ControlAccount, err)
		}
		cfg.Accounts(bus, control)
		if cfg.System != nil {
			sys, err := ns.LookupAccount(SystemAccount)
			if err != nil {
				return nil, fmt.Errorf("embeddednats: account %s: %w", SystemAccount, err)
			}
			cfg.System(sys)
		}
	}

	// Start runs the startup sequence synchronously; listener and JetStream
	// failures are reported through Fatalf, which the adapter records
	// instead of exiting the process.
	ns.Start()
	deadline := time.Now().Add(readyTimeout)
	for {
		if msg := logger.fatalMessage(); msg != "" {
			shutdown(ns)
			return nil, fmt.Errorf("embeddednats: server failed to start: %s", msg)
		}
		if ns.ReadyForConnections(100 * time.Millisecond) {
			return ns, nil
		}
		if time.Now().After(deadline) {
			shutdown(ns)
			return nil, fmt.Errorf("embeddednats: server not ready for connections after %s; check that the ports are free and the store dir is writable", readyTimeout)
		}
	}
}

// shutdown stops ns and waits until it has released its resources.
func shutdown(ns *server.Server) {
	ns.Shutdown()
	ns.WaitForShutdown()
}

// buildOptions validates cfg and converts it to nats-server options.
func buildOptions(cfg ServerConfig) (*server.Options, error) {
	if strings.TrimSpace(cfg.StoreDir) == "" {
		return nil, errors.New("embeddednats: store dir is empty; set a JetStream storage directory")
	}
	if err := checkPort("port", cfg.Port); err != nil {
		return nil, err
	}
	if err := checkPort("monitor port", cfg.MonitorPort); err != nil {
		return nil, err
	}
	if strings.ContainsAny(cfg.ServerName, " \t\r\n") {
		return nil, fmt.Errorf("embeddednats: server name %q contains whitespace; use a name without spaces", cfg.ServerName)
	}
	if cfg.JetStreamMaxMemory < 0 || cfg.JetStreamMaxStore < 0 {
		return nil, errors.New("embeddednats: jetstream limits must not be negative; use 0 for the server defaults")
	}

	opts := &server.Options{
		ServerName:             cfg.ServerName,
		Host:                   cfg.Host,
		Port:                   cfg.Port,
		JetStream:              true,
		SyncAlways:             cfg.SyncAlways,
		StoreDir:               cfg.StoreDir,
		JetStreamMaxMemory:     cfg.JetStreamMaxMemory,
		JetStreamMaxStore:      cfg.JetStreamMaxStore,
		NoSigs:                 true,
		DisableJetStreamBanner: true,
		MaxSubs:                cfg.MaxSubs,
		// A route to a node that is down is retried every second; by
		// default each failed retry of a route that was up is logged as
		// an error, several a second while a peer is away (a restart, a
		// lost node). Say it at the first failure and once a minute.
		ReconnectErrorReports: routeReconnectErrorReports,
	}
	if cfg.MonitorPort != 0 {
		opts.HTTPHost = "127.0.0.1"
		opts.HTTPPort = cfg.MonitorPort
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS.Clone()
		opts.TLS = true
		opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.AllowNonTLS = false
	}
	if cfg.Accounts != nil {
		if cfg.Auth == nil {
			return nil, errors.New("embeddednats: accounts without an authenticator; set Auth to place each client in an account")
		}
		var conf server.Options
		if err := conf.ProcessConfigString(accountsConfig); err != nil {
			return nil, fmt.Errorf("embeddednats: accounts configuration: %w", err)
		}
		opts.Accounts = conf.Accounts
		opts.SystemAccount = SystemAccount
	} else if cfg.System != nil {
		return nil, errors.New("embeddednats: a system account callback without accounts; set Accounts too")
	}
	if cfg.Auth != nil {
		opts.CustomClientAuthentication = cfg.Auth
		// nats-server only puts a nonce in INFO when it knows nkey users
		// itself; a custom authenticator needs this to get one.
		opts.AlwaysEnableNonce = true
	}
	if cfg.Cluster != nil {
		if err := applyCluster(opts, cfg); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// applyCluster validates cfg.Cluster and fills the cluster options.
func applyCluster(opts *server.Options, cfg ServerConfig) error {
	cc := cfg.Cluster
	if cfg.ServerName == "" {
		return errors.New("embeddednats: cluster needs a server name; JetStream clustering requires a unique name per server")
	}
	if strings.TrimSpace(cc.Name) == "" {
		return errors.New("embeddednats: cluster name is empty; set the same cluster name on every member")
	}
	if strings.ContainsAny(cc.Name, " \t\r\n") {
		return fmt.Errorf("embeddednats: cluster name %q contains whitespace; use a name without spaces", cc.Name)
	}
	if cc.Port == 0 {
		return errors.New("embeddednats: cluster port is 0; set the route listen port")
	}
	if err := checkPort("cluster port", cc.Port); err != nil {
		return err
	}
	if cc.Username == "" && cc.Password != "" {
		return errors.New("embeddednats: cluster password set without a username; set both or neither")
	}
	if cc.Username != "" && cc.Password == "" {
		return errors.New("embeddednats: cluster username set without a password; set both or neither")
	}
	routes, err := parseRoutes(cc.Routes, cc.Username, cc.Password)
	if err != nil {
		return err
	}
	opts.Cluster = server.ClusterOpts{
		Name:     cc.Name,
		Host:     cc.Host,
		Port:     cc.Port,
		Username: cc.Username,
		Password: cc.Password,
	}
	if cc.TLS != nil {
		opts.Cluster.TLSConfig = cc.TLS.Clone()
		opts.Cluster.TLSTimeout = routeTLSTimeout
		// Peers are verified by the TLS configuration (CA and client
		// certificates), not by mapping certificate subjects to users.
		opts.Cluster.TLSMap = false
	}
	opts.Routes = routes
	return nil
}

// parseRoutes parses route URLs, adding the cluster credentials to those
// that carry none.
func parseRoutes(raw []string, user, pass string) ([]*url.URL, error) {
	var routes []*url.URL
	for i, r := range raw {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("embeddednats: route %d %q is not a valid url; use nats://host:port", i+1, redactRoute(r))
		}
		if u.Scheme != "nats" && u.Scheme != "nats-route" {
			return nil, fmt.Errorf("embeddednats: route %q has scheme %q; use nats://host:port", u.Redacted(), u.Scheme)
		}
		if u.Hostname() == "" || u.Port() == "" {
			return nil, fmt.Errorf("embeddednats: route %q needs a host and a port; use nats://host:port", u.Redacted())
		}
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("embeddednats: route %q has an invalid port; use a port between 1 and 65535", u.Redacted())
		}
		if u.User == nil && user != "" {
			u.User = url.UserPassword(user, pass)
		}
		routes = append(routes, u)
	}
	if len(routes) == 0 {
		return nil, errors.New("embeddednats: cluster has no routes; list the route urls of the cluster members (this server may be included)")
	}
	return routes, nil
}

// redactRoute hides credentials in a route string that did not parse.
func redactRoute(r string) string {
	at := strings.LastIndex(r, "@")
	if at < 0 {
		return r
	}
	start := strings.Index(r, "://")
	if start < 0 || start+3 > at {
		return "xxxxx" + r[at:]
	}
	return r[:start+3] + "xxxxx" + r[at:]
}

// checkPort accepts -1 (random), 0 and 1..65535.
func checkPort(what string, p int) error {
	if p < -1 || p > 65535 {
		return fmt.Errorf("embeddednats: %s %d is out of range; use 1-65535, or -1 for a random port", what, p)
	}
	return nil
}

// ClientURL returns the URL a local client should dial to reach ns:
// "nats://host:port", or "tls://host:port" when client TLS is on. A server
// listening on all interfaces is reached through the loopback address.
func ClientURL(ns *server.Server) string {
	u, err := url.Parse(ns.ClientURL())
	if err != nil {
		return ns.ClientURL()
	}
	host := u.Hostname()
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	if addr, ok := ns.Addr().(*net.TCPAddr); ok && addr != nil {
		u.Host = net.JoinHostPort(host, strconv.Itoa(addr.Port))
	} else {
		u.Host = net.JoinHostPort(host, u.Port())
	}
	return u.String()
}
