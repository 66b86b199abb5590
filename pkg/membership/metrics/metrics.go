package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/membership/readers"
)

// The names of the series this package makes.
const (
	BuildInfoName         = "unibus_build_info"
	RequestDurationName   = "unibus_api_request_duration_seconds"
	SignatureFailuresName = "unibus_api_signature_failures_total"
	RateLimitedName       = "unibus_api_rate_limited_total"
	ConnectionsName       = "unibus_nats_connections"
	SlowConsumersName     = "unibus_nats_slow_consumers_total"
	ConnectionsClosedName = "unibus_nats_connections_closed_total"
	ReadersOpenedName     = "unibus_history_readers_opened_total"
	ReadersClosedName     = "unibus_history_readers_closed_total"
	KeyDeliveriesName     = "unibus_key_deliveries_total"
	RekeysName            = "unibus_rekeys_total"
	HistoryMessagesName   = "unibus_history_messages"
	HistoryBytesName      = "unibus_history_bytes"
	HistoryConsumersName  = "unibus_history_consumers"
)

// Label values this package gives (the others come from the packages
// measured: [httpapi.SigReasons], [httpapi.RekeyTriggers],
// [readers.CloseReasons]).
const (
	UnmatchedRoute        = "unmatched"  // route: no route of the API took the request
	LimiterAddress        = "address"    // limiter: in front of the API, per source address
	LimiterUser           = "user"       // limiter: in the API, per verified user
	DeliveryDelivered     = "delivered"  // result of a key delivery
	DeliveryFailed        = "failed"     // result of a key delivery
	ClosedAfterMembership = "membership" // reason a connection was closed: its user's rooms changed
	ClosedAfterRevocation = "revocation" // reason a connection was closed: its user was revoked
)

// Limits of the scrape handler.
const (
	scrapeHandlerTimeout = 10 * time.Second
	maxScrapesAtOnce     = 4
)

// RequestBuckets are the API latency histogram's upper bounds, in
// seconds: from 1 ms (a cached read) to 2 minutes (a large blob).
var RequestBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120}

// Config configures [New].
type Config struct {
	// Version and Commit name the build: the version and revision labels
	// of unibus_build_info.
	Version, Commit string
	// Logger receives scrape failures; nil discards.
	Logger *slog.Logger
}

// Metrics holds membershipd's series on one registry. Make one with [New].
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	api           *apiSeries
	sigFailures   labeled
	rateLimited   labeled
	connsClosed   labeled
	readersOpened prometheus.Counter
	readersClosed labeled
	keyDeliveries labeled
	rekeys        labeled
}

// New makes membershipd's series and registers them on reg, with the Go
// runtime's and the process's standard collectors.
func New(reg *prometheus.Registry, cfg Config) (*Metrics, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: reg, log: log}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        BuildInfoName,
		Help:        "Always 1; its labels name the build of membershipd.",
		ConstLabels: prometheus.Labels{"version": cfg.Version, "revision": cfg.Commit, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    RequestDurationName,
		Help:    "Time to answer an API request, by route pattern and HTTP status; its _count is the number of requests.",
		Buckets: RequestBuckets,
	}, []string{"route", "code"})
	m.api = newAPISeries(duration)
	sig := counterVec(SignatureFailuresName, "API requests whose signature was refused, by reason (under --bus-auth soft, also those let through).", "reason")
	m.sigFailures = newLabeled(sig, httpapi.SigReasons...)
	limited := counterVec(RateLimitedName, "API requests answered 429 by a rate limiter: address (in front of the API) or user (once the signature verified).", "limiter")
	m.rateLimited = newLabeled(limited, LimiterAddress, LimiterUser)
	closed := counterVec(ConnectionsClosedName, "NATS connections this node closed so that their users reconnect with new permissions: after a membership change, or a revocation.", "reason")
	m.connsClosed = newLabeled(closed, ClosedAfterMembership, ClosedAfterRevocation)
	m.readersOpened = prometheus.NewCounter(prometheus.CounterOpts{Name: ReadersOpenedName, Help: "History readers this node opened for members."})
	readersClosed := counterVec(ReadersClosedName, "History readers this node closed, by reason: owner (its owner was done), removed (its owner was removed or revoked), swept (the sweep found its owner out of the room).", "reason")
	m.readersClosed = newLabeled(readersClosed, readers.CloseReasons...)
	deliveries := counterVec(KeyDeliveriesName, "Sealed room keys of rekeys published to their members on NATS, by result (delivered, failed).", "result")
	m.keyDeliveries = newLabeled(deliveries, DeliveryDelivered, DeliveryFailed)
	rekeys := counterVec(RekeysName, "Rekeys committed through this node's API, by trigger: removal, rotation (nobody removed), add (a rekeying add).", "trigger")
	m.rekeys = newLabeled(rekeys, httpapi.RekeyTriggers...)

	err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
		reg.Register(buildInfo),
		reg.Register(duration),
		reg.Register(sig),
		reg.Register(limited),
		reg.Register(closed),
		reg.Register(m.readersOpened),
		reg.Register(readersClosed),
		reg.Register(deliveries),
		reg.Register(rekeys),
	)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return m, nil
}

func counterVec(name, help, label string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
}

// labeled is a counter family of one label whose values are known in
// advance, each resolved to its series once: counting is a map read and
// an atomic add. A value not known in advance is still counted, at the
// cost of a lookup in the family.
type labeled struct {
	vec *prometheus.CounterVec
	by  map[string]prometheus.Counter // read-only after newLabeled
}

func newLabeled(vec *prometheus.CounterVec, values ...string) labeled {
	l := labeled{vec: vec, by: make(map[string]prometheus.Counter, len(values))}
	for _, v := range values {
		l.by[v] = vec.WithLabelValues(v)
	}
	return l
}

func (l labeled) add(value string, n int) {
	if n <= 0 {
		return
	}
	c, ok := l.by[value]
	if !ok {
		c = l.vec.WithLabelValues(value)
	}
	c.Add(float64(n))
}

// Handler serves the registry's series in the Prometheus exposition
// formats. A collector that fails leaves its series out of that scrape
// (and the failure in the log); at most a few scrapes run at once.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            promLogger{m.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapesAtOnce,
		Timeout:             scrapeHandlerTimeout,
	})
}

// promLogger is the log of the scrape handler.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("metrics scrape", "err", fmt.Sprint(v...)) }

// SignatureFailed counts a refused request signature
// ([httpapi.Observer]).
func (m *Metrics) SignatureFailed(reason string) { m.sigFailures.add(reason, 1) }

// KeysDelivered counts the sealed keys of a rekey published and not
// ([httpapi.Observer]).
func (m *Metrics) KeysDelivered(delivered, failed int) {
	m.keyDeliveries.add(DeliveryDelivered, delivered)
	m.keyDeliveries.add(DeliveryFailed, failed)
}

// Rekeyed counts a committed rekey ([httpapi.Observer]).
func (m *Metrics) Rekeyed(trigger string) { m.rekeys.add(trigger, 1) }

// ReaderOpened counts a history reader opened ([readers.Observer]).
func (m *Metrics) ReaderOpened() { m.readersOpened.Inc() }

// ReadersClosed counts history readers closed ([readers.Observer]).
func (m *Metrics) ReadersClosed(reason string, n int) { m.readersClosed.add(reason, n) }

// ConnectionsClosed counts NATS connections the data plane closed, for
// reason ClosedAfterMembership or ClosedAfterRevocation.
func (m *Metrics) ConnectionsClosed(reason string, n int) { m.connsClosed.add(reason, n) }

// RateLimited returns the hook of a [httpapi.RateLimiter] (its OnLimit)
// that counts its refusals under limiter (LimiterAddress, LimiterUser).
func (m *Metrics) RateLimited(limiter string) func() {
	c, ok := m.rateLimited.by[limiter]
	if !ok {
		c = m.rateLimited.vec.WithLabelValues(limiter)
	}
	return c.Inc
}

// Check at compile time that Metrics is what the hooks want.
var (
	_ httpapi.Observer = (*Metrics)(nil)
	_ readers.Observer = (*Metrics)(nil)
)
