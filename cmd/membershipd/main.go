// Command membershipd is the unibus control-plane service: room metadata,
// member directory, sealed key distribution, and the media blob store. The data
// plane is NATS — if --nats-url is empty it starts an embedded nats-server with
// JetStream so the whole stack runs with `go run` and nothing to install.
//
// `membershipd user seed|list|revoke` is the host-local administration CLI
// (see usercli.go); `membershipd -h` lists every command (commands.go).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	server "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/blobstore"
	"github.com/enmanuel/unibus/pkg/busauth"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/membership/readers"
)

// defaultNATSStore is the embedded JetStream store of a membershipd started
// without --nats-store.
const defaultNATSStore = "./local_files/jetstream"

// version, when a release build sets it with
// -ldflags "-X main.version=v1.2.3", is the version --version prints and
// /v1/info reports; empty, it is the module's (internal/buildinfo).
var version = ""

// Timeouts of the start and the graceful shutdown.
const (
	shutdownTimeout    = 5 * time.Second // in-flight HTTP requests
	drainTimeout       = 5 * time.Second // membershipd's own NATS connection
	natsConnectTimeout = 5 * time.Second // retrying the first dial of --nats-url
)

// Default per-user ceilings of the data plane: far above what an SDK
// client holds (one connection, a handful of subscriptions), far below
// what exhausts a node.
const (
	defaultMaxConnsPerUser = 64
	defaultMaxSubs         = 1024
)

// Timeouts of the HTTP API's connections. A request body has its own,
// moving, deadline (httpapi.Server.BodyTimeout, then httpapi.MinBodyRate),
// set when the API reads it, so that a large blob upload is not cut by
// apiReadTimeout; apiReadTimeout bounds the rest: the headers and the wait
// before the body. There is no write timeout: blob downloads stream for as
// long as they take.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiReadTimeout       = time.Minute
	apiIdleTimeout       = 2 * time.Minute // a kept-alive connection between requests
)

func main() {
	// Subcommand dispatch: `membershipd user ...` (the local administration
	// CLI), `tls`, `migrate-to-kv` and the others of the subcommands table
	// (commands.go) run on the host and must be handled before the server
	// flag set parses os.Args. Add a command to that table, not here: -h
	// lists it from there.
	if len(os.Args) > 1 {
		if sub := findSubcommand(os.Args[1]); sub != nil {
			os.Exit(sub.run(os.Args[2:], os.Stdout, os.Stderr))
		}
	}

	// Graceful shutdown on SIGINT/SIGTERM: the signal cancels run's context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a command line that could not be understood (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode reports err on stderr and returns the process exit code: 0 for
// success or -h, 2 for bad usage, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		// The flag package has already printed the problem and the usage.
		return 2
	}
	fmt.Fprintf(stderr, "membershipd: %v\n", err)
	return 1
}

// run is the server: it starts everything, serves until ctx is cancelled,
// then shuts down gracefully and returns nil. A configuration or startup
// failure is returned as an error; bad usage as a usageError.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("membershipd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// -h prints the usage on stdout once Parse returns; a parse error is
	// one line from the flag package and a pointer to -h.
	fs.Usage = func() {}
	var (
		bind      = fs.String("bind", "127.0.0.1", "network interface to bind the HTTP API and the embedded NATS to; use 0.0.0.0 to accept LAN/remote peers")
		natsURL   = fs.String("nats-url", "", "external NATS url; empty starts an embedded server")
		httpPort  = fs.String("http-port", "8470", "HTTP port for the control-plane API")
		dbPath    = fs.String("db", defaultDBPath, "SQLite database path")
		storeDir  = fs.String("store-dir", "./local_files/blobs", "blob store directory")
		natsPort  = fs.Int("nats-port", 4250, "embedded NATS listen port (when --nats-url empty)")
		natsStore = fs.String("nats-store", defaultNATSStore, "embedded JetStream store dir")
		busAuth   = fs.String("bus-auth", "off", "control-plane auth rollout: off|soft|enforce (feature flag bus-auth)")
		tlsCert   = fs.String("tls-cert", "", "PATH to the server certificate (deploy/tls/server.crt); serves the API over HTTPS and enables TLS on the embedded data plane")
		tlsKey    = fs.String("tls-key", "", "path to the NATS server private key (deploy/tls/server.key); required with --tls-cert")
		// Cluster (issue 0003a): empty --cluster-name keeps the server standalone.
		clusterName  = fs.String("cluster-name", "", "NATS cluster name (identical on every node); empty = standalone, no HA")
		serverName   = fs.String("server-name", "", "unique node name within the cluster (required by JetStream RAFT when clustered)")
		clusterPort  = fs.Int("cluster-port", 6250, "route listener port for server-to-server cluster traffic")
		routesCSV    = fs.String("routes", "", "comma-separated nats-route URLs of the OTHER nodes, e.g. nats://user:pass@10.0.0.2:6250")
		clusterUser  = fs.String("cluster-user", "", "shared route secret username (gates the route listener)")
		clusterPass  = fs.String("cluster-pass", "", "shared route secret password")
		routeTLSCert = fs.String("route-tls-cert", "", "this node's route certificate (CA-signed); enables mutual route TLS with --route-tls-key/--route-tls-ca")
		routeTLSKey  = fs.String("route-tls-key", "", "this node's route private key")
		routeTLSCA   = fs.String("route-tls-ca", "", "bus CA that signs every node's route certificate (deploy/tls/ca.crt)")
		// Media and history limits.
		maxBlobBytes       = fs.Int64("max-blob-bytes", membership.DefaultMaxBlobBytes, "largest media blob accepted, in bytes")
		historyMaxAge      = fs.Duration("history-max-age", 0, "how long room history is kept in JetStream, e.g. 720h; 0 keeps it forever")
		historyMaxBytes    = fs.Int64("history-max-bytes", -1, "size ceiling of the whole history stream in bytes, oldest messages dropped first; -1 = unlimited")
		historyMaxMsgsRoom = fs.Int64("history-max-msgs-per-room", -1, "messages kept per room, oldest dropped first; -1 = unlimited")
		storeKind          = fs.String("store", "sqlite", "control-plane store: sqlite (the --db file, blobs in --store-dir) or kv (replicated JetStream KV buckets on the bus, blobs in its Object Store; see migrate-to-kv)")
		replicas           = fs.Int("replicas", 1, "copies of every stream the bus keeps, when it makes them: the KV buckets and the blob bucket with --store kv, and the message history (3 in a three-node cluster); existing streams keep theirs (membershipd cluster replicas changes them)")
		syncMode           = fs.String("sync", syncAlways, "when the embedded JetStream writes to disk: always (each write synced before it is acknowledged; --store kv needs it) or interval (synced every 2 minutes: faster, but a power loss of a standalone node, or of most of a cluster's nodes at once, loses what was acknowledged since; docs/cluster.md)")
		startTimeout       = fs.Duration("start-timeout", defaultStartTimeout, "how long the start waits for JetStream (a cluster's meta leader and quorum, its streams and buckets) before giving up; /readyz answers 503 meanwhile; 0 waits forever")
		serviceKeyPath     = fs.String("service-key", "", "file with membershipd's own NATS nkey seed for the bus under --bus-auth enforce, made (0600) if missing; empty: <nats-store>/service.nk")
		controlKeyPath     = fs.String("control-key", "", "file with the NATS nkey seed of the control plane's account (KV store, blob object store), made (0600) if missing with the embedded NATS; the host tools (user --store kv, migrate-to-kv) use it; empty: <nats-store>/control.nk, or with --nats-url none (see docs/kv-store.md)")
		systemKeyPath      = fs.String("system-key", "", "file with the NATS nkey seed the embedded NATS admits into its system account, for the operator (membershipd cluster status, nats server list), made (0600) if missing; empty: <nats-store>/system.nk")
		apiRate            = fs.Float64("api-rate", httpapi.DefaultRatePerSecond, "API requests per second allowed to one user (bursts of --api-burst); answered 429 beyond; 0 = unlimited")
		apiBurst           = fs.Int("api-burst", httpapi.DefaultRateBurst, "API request burst allowed to one user")
		metricsAddrFlag    = fs.String("metrics-addr", "", "HOST:PORT of a listener of its own for the Prometheus metrics (/metrics); off serves none; empty: on the API port under a loopback --bind, on "+defaultMetricsAddr+" under a public one (docs/metrics.md)")
		monitorPort        = fs.Int("monitor-port", 0, "port of the embedded NATS server's monitoring endpoint (/varz, /connz, /jsz), on 127.0.0.1 only; 0 = off, -1 = a free port")
		maxConnsPerUser    = fs.Int("max-connections-per-user", defaultMaxConnsPerUser, "NATS connections one user may hold to this node under --bus-auth enforce; refused beyond; 0 = unlimited")
		maxSubs            = fs.Int("max-subscriptions", defaultMaxSubs, "subscriptions one NATS connection may hold on the embedded server; refused beyond; 0 = unlimited")
		maxReaders         = fs.Int("max-readers", readers.DefaultMaxPerUser, "history readers (reads of a room under way) one user may hold at once, over all nodes; refused beyond; -1 = unlimited")
		showVersion        = fs.Bool("version", false, "print the build's version and exit")
		logLevel           slog.Level
	)
	fs.TextVar(&logLevel, "log-level", slog.LevelInfo, "structured log level: debug|info|warn|error")
	kvReplicas := fs.Int("kv-replicas", 1, "older name of --replicas")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServerUsage(stdout, fs)
			return err
		}
		fmt.Fprintln(stderr, "Run `membershipd -h` for the flags and commands.")
		return usageError{err}
	}
	if fs.NArg() > 0 {
		if fs.Arg(0) == "help" {
			printServerUsage(stdout, fs)
			return flag.ErrHelp
		}
		err := errors.New(unknownCommand(fs.Arg(0)))
		fmt.Fprintf(stderr, "membershipd: %v\n", err)
		return usageError{err}
	}
	if *showVersion {
		printVersion(stdout)
		return nil
	}

	authMode, err := membership.ParseAuthMode(*busAuth)
	if err != nil {
		return err
	}
	// Fail-open guard (audit H2): a non-loopback bind, or any TLS flag, demands
	// --bus-auth enforce. This makes an insecure public startup impossible rather
	// than silently exposing the bus with the appearance of security.
	if err := validateBootConfig(*bind, authMode, *tlsCert, *tlsKey); err != nil {
		return err
	}
	// Cluster route guard (issue 0003a): a public cluster needs a route secret
	// and mutual route TLS, and the route-TLS flags are all-or-nothing.
	if err := validateClusterConfig(*clusterName, *bind, *clusterUser, *clusterPass, *routeTLSCert, *routeTLSKey, *routeTLSCA); err != nil {
		return err
	}
	if *tlsCert != "" || *tlsKey != "" {
		if *tlsCert == "" || *tlsKey == "" {
			return errors.New("--tls-cert and --tls-key must be set together")
		}
	}
	if *storeKind != "sqlite" && *storeKind != "kv" {
		return fmt.Errorf("invalid --store %q: use sqlite or kv", *storeKind)
	}
	if err := checkDurability(fs, replicas, *kvReplicas, *syncMode, *storeKind, *natsURL, *clusterName, *startTimeout); err != nil {
		return err
	}
	if *maxBlobBytes <= 0 {
		return fmt.Errorf("--max-blob-bytes %d: use a positive number of bytes", *maxBlobBytes)
	}
	if *historyMaxAge < 0 {
		return fmt.Errorf("--history-max-age %s: use a positive duration, or 0 to keep history forever", *historyMaxAge)
	}
	if *monitorPort != 0 && *natsURL != "" {
		return errors.New("--monitor-port is the embedded NATS server's: an external NATS serves its own monitoring (nats-server -m)")
	}
	metricsAddr, metricsOnAPI := metricsPlace(*metricsAddrFlag, *bind)
	// One certificate serves the embedded data plane and the HTTPS API:
	// read it once, before anything starts.
	var serverTLS *tls.Config
	if *tlsCert != "" {
		if serverTLS, err = busauth.ServerTLSConfig(*tlsCert, *tlsKey); err != nil {
			return fmt.Errorf("load TLS (--tls-cert, --tls-key): %w", err)
		}
	}
	var routeTLS *tls.Config
	if *routeTLSCert != "" && *natsURL == "" && *clusterName != "" {
		if routeTLS, err = busauth.RouteTLSConfig(*routeTLSCert, *routeTLSKey, *routeTLSCA); err != nil {
			return fmt.Errorf("load route TLS: %w", err)
		}
	}

	// Service log lines go through a standard logger with the service
	// prefix; structured logs (request failures, NATS) go through the same
	// logger so both read alike. The server prints nothing on stdout.
	logger := log.New(stderr, "[membershipd] ", log.LstdFlags|log.Lmsgprefix)
	slogger := newSlogger(logger, logLevel)

	// Metrics go to a registry of membershipd's own (docs/metrics.md).
	mx, err := newServerMetrics(slogger)
	if err != nil {
		return err
	}

	// Deferred calls undo the start in reverse: NATS connection drain, NATS
	// server shutdown, store close, and "bye" last after a graceful stop.
	graceful := false
	defer func() {
		if graceful {
			logger.Printf("bye")
		}
	}()

	// One membershipd per data directory (datadir.go): its locks first,
	// before anything is opened; what a failed start made is removed.
	claim, err := claimStart(startPaths{store: *storeKind, db: *dbPath, storeDir: *storeDir, natsStore: *natsStore,
		embedded: *natsURL == "", enforce: authMode == membership.AuthEnforce, controlKey: *controlKeyPath, serviceKey: *serviceKeyPath, systemKey: *systemKeyPath})
	if err != nil {
		return err
	}
	defer claim.release()
	served := false
	defer func() {
		if !served && !graceful {
			claim.undo()
		}
	}()

	// The HTTP API listens from the start (startup.go): /healthz answers
	// 200 at once; /readyz, and the rest of the API, 503 with what the
	// node waits for until everything below is up. A busy port is a
	// startup error; --http-port 0 picks a free one.
	ready := newReadiness(logger)
	door := &frontDoor{ready: ready}
	httpSrv := &http.Server{
		Handler: door,
		// Bound request header size so a peer cannot exhaust memory with huge
		// headers before any body limit applies (the body ceilings live in the
		// membership middleware).
		MaxHeaderBytes:    membership.MaxHeaderBytes,
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		IdleTimeout:       apiIdleTimeout,
		ErrorLog:          slog.NewLogLogger(slogger.Handler(), slog.LevelWarn),
	}
	if serverTLS != nil {
		// Serve the control plane over TLS with the same CA-signed cert as the
		// data plane (audit H5): metadata (subjects, pubkeys, sealed keys, the
		// social graph) is no longer readable by a network MITM. The fail-open
		// guard already requires --bus-auth enforce alongside these flags.
		// A copy: net/http adds its protocols to the configuration it serves.
		httpSrv.TLSConfig = serverTLS.Clone()
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*bind, *httpPort))
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	addr, scheme := ln.Addr().String(), "http"
	serveErr := make(chan error, 1)
	if httpSrv.TLSConfig != nil {
		scheme = "https"
		go func() { serveErr <- httpSrv.ServeTLS(ln, "", "") }()
	} else {
		go func() { serveErr <- httpSrv.Serve(ln) }()
	}
	// A start that fails stops it here; a graceful stop shuts it down first.
	defer httpSrv.Close()
	logger.Printf("HTTP API listening on %s://%s (/readyz: 503 until this node is ready)", scheme, addr)
	start := newStarter(logger, *startTimeout, ready)
	// stopped reports a start that the signal cut short: not a failure.
	stopped := func() bool {
		if ctx.Err() == nil {
			return false
		}
		graceful = true
		logger.Printf("shutting down...")
		return true
	}

	// Control plane store first: the NATS authenticator consults IsAuthorized, so
	// the store must exist before the embedded server starts. The KV store
	// lives on the bus itself, so it opens once NATS is up; until then the
	// authenticator admits only membershipd's own service key.
	var (
		store membership.Store
		blobs membership.Blobs
	)
	switch *storeKind {
	case "sqlite":
		st, err := membership.Open(*dbPath)
		if err != nil {
			return fmt.Errorf("open membership store: %w", err)
		}
		defer st.Close()
		store = mx.store.Wrap(st, "sqlite")
		logger.Printf("membership store: %s", *dbPath)

		dir, err := blobstore.New(*storeDir, blobstore.WithLogger(slogger))
		if err != nil {
			return fmt.Errorf("open blob store: %w", err)
		}
		blobs = dir
		logger.Printf("blob store: %s", *storeDir)
	case "kv":
	}

	// Data plane: embedded or external NATS. For the embedded server, enforce
	// turns on the nkey authenticator (only allowlisted identities may connect)
	// and --tls-cert/--tls-key turn on TLS. An external NATS manages its own
	// auth/TLS, so those flags do not apply to it.
	var ns *server.Server
	var guard *dataPlane // set with the embedded server in enforce mode
	var natsOpts []nats.Option
	var ctlOpts []nats.Option // the control connection's; nil: it shares the bus connection
	natsClientURL := *natsURL
	if natsClientURL == "" {
		cfg := embeddednats.ServerConfig{
			// Bind the embedded NATS to the same interface as the HTTP API so a
			// single --bind flag governs reachability: 127.0.0.1 keeps the whole
			// stack loopback-only; 0.0.0.0 exposes both planes to the LAN.
			StoreDir:   *natsStore,
			Host:       *bind,
			Port:       *natsPort,
			ServerName: *serverName,
			Logger:     natsLogger(logger, logLevel),
			// --sync always (the default, and what the KV store needs):
			// every write synced before it is acknowledged, so that an
			// acknowledged write survives a power loss of every replica.
			SyncAlways: *syncMode == syncAlways,
			MaxSubs:    max(0, *maxSubs),
		}
		cfg.MonitorPort = *monitorPort
		// Cluster (issue 0003a): with a cluster name, join the route layer for HA.
		if *clusterName != "" {
			cc := &embeddednats.ClusterConfig{
				Name:     *clusterName,
				Host:     *bind,
				Port:     *clusterPort,
				Routes:   splitRoutes(*routesCSV),
				Username: *clusterUser,
				Password: *clusterPass,
			}
			if routeTLS != nil {
				cc.TLS = routeTLS
				logger.Printf("cluster route TLS: ON (mutual, CA %s)", *routeTLSCA)
			}
			cfg.Cluster = cc
			logger.Printf("cluster: %q node %q, route port %d, %d peer route(s)", *clusterName, *serverName, *clusterPort, len(cc.Routes))
		}
		// The authenticator runs in every mode and places each client in
		// its account (docs/security.md, "Accounts"): the control key in
		// the control account, which holds the KV store and the blob
		// object store, everyone else in the bus account. The control
		// account, and so the store, is the same whatever --bus-auth.
		ctlPath := keyFile(*controlKeyPath, *natsStore, controlKeyFile)
		ctl, err := loadOrCreateControlKey(ctlPath)
		if err != nil {
			return err
		}
		ctlOpt, err := nkeyOption(ctl)
		if err != nil {
			return err
		}
		ctlOpts = []nats.Option{ctlOpt}
		auth := busauth.NewNkeyAuthenticator(nil)
		if authMode == membership.AuthEnforce {
			// membershipd connects to its own data plane (room events, the
			// history stream) with its service key, kept in --service-key:
			// admitted next to the active users.
			svc, err := loadOrCreateSeed(keyFile(*serviceKeyPath, *natsStore, serviceKeyFile), "service key")
			if err != nil {
				return err
			}
			svcKey, err := svc.PublicKey()
			if err != nil {
				return fmt.Errorf("service nkey: %w", err)
			}
			// Per-room subject permissions and instant revocation: see
			// dataplane.go.
			guard = &dataPlane{serviceKey: svcKey, log: slogger, maxConns: max(0, *maxConnsPerUser)}
			guard.setStore(store)
			auth = busauth.NewNkeyAuthenticator(guard.authorized)
			auth.Permissions = guard.permissions
			natsOpts = append(natsOpts, nats.Nkey(svcKey, svc.Sign))
			logger.Printf("NATS nkey authentication: ON (enforce)")
		} else {
			// off and soft take everyone on trust, as before, but into
			// the bus account only.
			auth.Open = true
		}
		auth.ControlKey, _ = ctl.PublicKey()
		// The operator's key: the system account, every node's state
		// (membershipd cluster …, nats server …; clustercli.go).
		sysPath := keyFile(*systemKeyPath, *natsStore, systemKeyFile)
		sys, err := loadOrCreateSystemKey(sysPath)
		if err != nil {
			return err
		}
		auth.SystemKey, _ = sys.PublicKey()
		auth.Logger = slogger
		cfg.Auth, cfg.Accounts, cfg.System = auth, auth.BindAccounts, auth.BindSystemAccount
		logger.Printf("NATS accounts: %s (bus), %s (control plane; control key %s)", embeddednats.BusAccount, embeddednats.ControlAccount, ctlPath)
		logger.Printf("NATS system account: operator key %s (membershipd cluster status)", sysPath)
		if old := oldGlobalStreams(*natsStore); len(old) > 0 {
			logger.Printf("WARNING: JetStream data of an earlier membershipd in the global account is not served: %v in %s; to keep it, stop membershipd and move it into the accounts' directories, or run migrate-to-kv from a SQLite backup (docs/kv-store.md, \"Accounts\")", old, filepath.Join(*natsStore, "jetstream", "$G", "streams"))
		}
		if serverTLS != nil {
			cfg.TLS = serverTLS
			logger.Printf("NATS TLS: ON (%s)", *tlsCert)
		}
		ns, err = embeddednats.StartServer(cfg)
		if err != nil {
			return fmt.Errorf("start embedded nats: %w", err)
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		natsClientURL = embeddednats.ClientURL(ns)
		if *monitorPort != 0 {
			logger.Printf("embedded NATS monitoring: http://%s (loopback only)", ns.MonitorAddr())
		}
		if err := mx.RegisterNATS(ns); err != nil {
			return err
		}
		if guard != nil {
			guard.ns = ns
		}
		logger.Printf("embedded NATS (JetStream) ready: %s; writes synced: %s", natsClientURL, syncDescription(*syncMode))
	} else {
		logger.Printf("using external NATS: %s; its own sync_interval decides what a power loss keeps (run it with sync_interval: always, docs/cluster.md)", redactURL(natsClientURL))
		if *controlKeyPath != "" {
			ctl, err := readControlKey(*controlKeyPath, "--control-key")
			if err != nil {
				return err
			}
			ctlOpt, err := nkeyOption(ctl)
			if err != nil {
				return err
			}
			ctlOpts = []nats.Option{ctlOpt}
		}
	}

	claim.setNATS(natsClientURL)

	// A cluster's JetStream answers once a quorum of its nodes has
	// elected a meta leader: wait for it, saying what this node sees.
	start.ns, start.clustered, start.routes = ns, ns != nil && *clusterName != "", len(splitRoutes(*routesCSV))
	if err := start.waitMeta(ctx); err != nil {
		if stopped() {
			return nil
		}
		return err
	}

	// membershipd's own NATS connection: room change events and the history
	// stream. It is drained after the HTTP server stops and before the
	// embedded NATS server shuts down (defers run in reverse).
	nc, err := connectNATS(ctx, ns, natsClientURL, slogger, natsOpts...)
	if err != nil {
		return err
	}
	defer drainNATS(nc, logger)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// What /readyz checks once started: these connections, the meta
	// leader, and a quorum for every stream the node serves from.
	check := &nodeCheck{bus: nc, busJS: js}
	if *storeKind == "kv" {
		check.ctlStreams = controlStreams()
		// The KV store and the blob object store open on a connection
		// to the control plane's account; everything else stays on nc.
		ctlNC, err := controlConn(ctx, ns, natsClientURL, nc, ctlOpts, slogger, logger)
		if err != nil {
			return err
		}
		if ctlNC != nc {
			defer drainNATS(ctlNC, logger)
		}
		ctlJS, err := jetstream.New(ctlNC)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		var kv membership.Store
		err = start.step(ctx, "the KV store", kvOpenTimeout, func(ctx context.Context) error {
			var err error
			kv, err = membership.OpenKV(ctx, ctlJS, membership.KVConfig{Replicas: *replicas, Logger: slogger})
			return err
		})
		if err != nil {
			if stopped() {
				return nil
			}
			return fmt.Errorf("open KV store: %w", err)
		}
		defer kv.Close()
		store = mx.store.Wrap(kv, "kv")
		if guard != nil {
			guard.setStore(store)
		}
		var obj *blobstore.ObjectStore
		err = start.step(ctx, "the blob object store", blobOpenTimeout, func(ctx context.Context) error {
			var err error
			obj, err = blobstore.NewObjectStore(ctx, ctlJS, blobstore.ObjectConfig{Replicas: *replicas, Logger: slogger})
			return err
		})
		if err != nil {
			if stopped() {
				return nil
			}
			return fmt.Errorf("open blob object store: %w", err)
		}
		blobs = obj
		logger.Printf("membership store: JetStream KV; blobs: object store %s", obj.Bucket())
		check.ctl, check.ctlJS = ctlNC, ctlJS
	}
	// The history stream: --replicas copies when made; its limits from
	// the --history-* flags, kept as they are when none is given.
	limits := membership.HistoryLimits{MaxAge: *historyMaxAge, MaxBytes: *historyMaxBytes, MaxMsgsPerSubject: *historyMaxMsgsRoom,
		Replicas: *replicas, KeepLimits: !anyFlagSet(fs, "history-max-age", "history-max-bytes", "history-max-msgs-per-room")}
	if err := ensureHistory(ctx, start, js, limits, logger); err != nil {
		if stopped() {
			return nil
		}
		return err
	}

	// The series read at every scrape: the history stream's size, the
	// store's users and rooms.
	if err := mx.RegisterHistory(js, api.HistoryStream); err != nil {
		return err
	}
	if err := mx.countStore(store, slogger); err != nil {
		return err
	}

	// Members read only through the history readers membershipd opens for
	// them (package readers); every node sweeps away those of users who
	// lost access.
	rdrs := readers.New(readers.Config{JS: js, Members: store, MaxPerUser: *maxReaders, Logger: slogger, Observer: mx})
	sweepCtx, stopSweep := context.WithCancel(ctx)
	sweepDone := make(chan struct{})
	go func() { defer close(sweepDone); rdrs.Run(sweepCtx, readers.DefaultSweep) }()
	defer func() { stopSweep(); <-sweepDone }()

	// The data plane follows revocations from every source (this API,
	// the host CLI, another node): readers closed, rooms told, and under
	// enforce, connections closed.
	if guard == nil {
		guard = &dataPlane{log: slogger}
		guard.setStore(store)
	}
	guard.readers = rdrs
	guard.metrics = mx
	guardCtx, stopGuard := context.WithCancel(ctx)
	guardDone := make(chan struct{})
	go func() { defer close(guardDone); guard.run(guardCtx, nc) }()
	defer func() { stopGuard(); <-guardDone }()
	if guard.ns != nil {
		logger.Printf("NATS per-room permissions: ON; revocations close connections within %s", revocationPoll)
	}

	srv := membership.NewServer(store, blobs, authMode)
	srv.NATSURL = natsClientURL
	if ns != nil && *clusterName != "" {
		srv.NATSURLs = clusterNATSURLs(ns)
	}
	srv.Build = apiBuild(thisBuild())
	srv.Logger = slogger
	srv.MaxBlobBytes = *maxBlobBytes
	srv.Events = nc
	srv.Readers = rdrs
	srv.Observer = mx
	// On a public (non-loopback) bind, disable cleartext rooms: the embedded NATS
	// has no per-subject ACL, so cleartext content would be readable by any
	// registered peer. Forcing E2E keeps message content confidential regardless
	// (audit H4 minimum defense; see dev/0004d-dataplane-acl.md).
	if !isLoopbackBind(*bind) {
		srv.RequireEncryptedRooms = true
		logger.Printf("cleartext rooms: DISABLED (public bind requires end-to-end encryption)")
	}
	logger.Printf("control-plane auth: %s", authMode)

	// Flood protection: per address in front of the API (ten times as
	// generous, since one address may serve several users), and per user
	// in it, once the user's signature has verified: a request whose
	// signature does not verify counts against its address only. Limits
	// are per node.
	var handler http.Handler = srv
	if *apiRate > 0 {
		srv.UserLimit = httpapi.NewRateLimiter(httpapi.RateLimit{PerSecond: *apiRate, Burst: *apiBurst})
		perIP := httpapi.NewRateLimiter(httpapi.RateLimit{PerSecond: 10 * *apiRate, Burst: 10 * *apiBurst})
		handler = perIP.Middleware(srv, httpapi.RemoteIPKey)
		mx.countLimits(perIP, srv.UserLimit)
		logger.Printf("API rate limit: %g requests/s per user (burst %d), %g per address", *apiRate, *apiBurst, 10**apiRate)
	}
	// Every API request measured; the metrics on the API port, or on a
	// listener of their own (metrics.go).
	handler = mx.API(handler)
	if metricsOnAPI {
		handler = withMetrics(handler, mx.Handler())
		logger.Printf("metrics: %s on the API port", metricsPath)
	}
	metricsErr, stopMetrics, err := serveMetrics(metricsAddr, mx.Handler(), logger, slogger)
	if err != nil {
		return err
	}
	defer stopMetrics()

	// Started: the API takes over from the start's 503s.
	door.serve(handler)
	ready.started(check.check)
	served = true
	if scheme == "https" {
		logger.Printf("HTTPS control-plane API: https://%s", addr)
		logger.Printf(" health: https://%s/healthz, readiness: https://%s/readyz", addr, addr)
		logger.Printf("control-plane TLS: ON (%s)", *tlsCert)
	} else {
		logger.Printf("HTTP control-plane API: http://%s", addr)
		logger.Printf(" health: http://%s/healthz, readiness: http://%s/readyz", addr, addr)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	case err := <-metricsErr:
		return fmt.Errorf("metrics server: %w", err)
	}

	logger.Printf("shutting down...")
	graceful = true
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.Printf("http shutdown: %v", err)
	}
	// The deferred calls now drain the NATS connection, shut the embedded
	// NATS server down, close the store and say bye.
	return nil
}

// connectNATS opens membershipd's own connection: in-process to the embedded
// server ns, or else to url, retrying a failed first dial for a few seconds
// (the bus may be starting alongside membershipd).
func connectNATS(ctx context.Context, ns *server.Server, url string, logger *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("membershipd"),
		nats.MaxReconnects(-1),
		nats.DrainTimeout(drainTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("nats reconnected", "url", redactURL(c.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			logger.Warn("nats error", "err", err)
		}),
	}
	opts = append(opts, extra...)
	if ns != nil {
		nc, err := nats.Connect("", append(opts, nats.InProcessServer(ns))...)
		if err != nil {
			return nil, fmt.Errorf("connect to the embedded NATS: %w", err)
		}
		return nc, nil
	}
	deadline := time.Now().Add(natsConnectTimeout)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to NATS at %s: %w: check --nats-url and that the server is running and reachable", redactURL(url), err)
		}
		logger.Debug("nats connect failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(url), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// drainNATS drains nc (pending publishes flushed, subscriptions ended) and
// waits for it to close, at most drainTimeout.
func drainNATS(nc *nats.Conn, logger *log.Logger) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(drainTimeout + time.Second):
		logger.Printf("nats drain timed out; closing")
		nc.Close()
	}
}

// ensureHistory makes or brings up to date the history stream, waiting
// with start for JetStream to answer; a server without JetStream is a
// startup error. An existing stream keeps its replicas: a --replicas that
// differs is a warning.
func ensureHistory(ctx context.Context, start *starter, js jetstream.JetStream, limits membership.HistoryLimits, logger *log.Logger) error {
	var st jetstream.Stream
	err := start.step(ctx, "the history stream", startAttemptTimeout, func(ctx context.Context) error {
		var err error
		st, err = membership.EnsureHistoryStream(ctx, js, limits)
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		// Nobody answers the JetStream API: JetStream is off. (A cluster
		// still electing its leader answers "unavailable" instead.)
		return fmt.Errorf("%w: the NATS server needs JetStream enabled (nats-server -js) to keep room history", err)
	case errors.Is(err, context.Canceled), errors.Is(err, errStartTimeout):
		return err
	default:
		return fmt.Errorf("%w: check the --history-* and --replicas flags", err)
	}
	cfg := st.CachedInfo().Config
	limits.MaxAge, limits.MaxBytes, limits.MaxMsgsPerSubject = cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgsPerSubject
	logger.Printf("history stream: %s, %d replica(s)", historyDescription(limits), cfg.Replicas)
	if want := max(1, limits.Replicas); cfg.Replicas != want {
		logger.Printf("WARNING: history stream %s keeps its %d replica(s), not the %d of --replicas; change them with `membershipd cluster replicas N`", api.HistoryStream, cfg.Replicas, want)
	}
	return nil
}

// historyDescription renders the history stream limits for the log.
func historyDescription(l membership.HistoryLimits) string {
	age, size, perRoom := "forever", "unlimited", "unlimited"
	if l.MaxAge > 0 {
		age = l.MaxAge.String()
	}
	if l.MaxBytes > 0 {
		size = fmt.Sprintf("%d bytes", l.MaxBytes)
	}
	if l.MaxMsgsPerSubject > 0 {
		perRoom = fmt.Sprintf("%d", l.MaxMsgsPerSubject)
	}
	return fmt.Sprintf("stream %s, kept %s, size %s, per room %s", api.HistoryStream, age, size, perRoom)
}
