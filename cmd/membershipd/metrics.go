package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/membership/metrics"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/membership/storemetrics"
)

// Where the metrics are served (docs/metrics.md): --metrics-addr off
// serves none; HOST:PORT serves them there, on a listener of their own;
// empty, the default, serves them at /metrics on the API port under a
// loopback --bind, and on defaultMetricsAddr, loopback only, under a
// public one, so that a public API never shows them.
const (
	metricsOff         = "off"
	defaultMetricsAddr = "127.0.0.1:9470"
	metricsPath        = "/metrics"
)

// metricsPlace decides where the metrics are served: on the API listener
// (onAPI), on a listener of their own at addr, or nowhere (neither).
func metricsPlace(flagValue, bind string) (addr string, onAPI bool) {
	switch {
	case flagValue == metricsOff:
		return "", false
	case flagValue != "":
		return flagValue, false
	case isLoopbackBind(bind):
		return "", true
	default:
		return defaultMetricsAddr, false
	}
}

// serverMetrics is membershipd's registry and the series on it.
type serverMetrics struct {
	*metrics.Metrics
	reg   *prometheus.Registry
	store *storemetrics.Metrics
}

// newServerMetrics makes a registry of membershipd's own, with every
// series that needs nothing started yet.
func newServerMetrics(logger *slog.Logger) (*serverMetrics, error) {
	reg := prometheus.NewRegistry()
	b := thisBuild()
	m, err := metrics.New(reg, metrics.Config{Version: b.Version, Commit: b.Commit, Logger: logger})
	if err != nil {
		return nil, err
	}
	st, err := storemetrics.New(reg)
	if err != nil {
		return nil, err
	}
	return &serverMetrics{Metrics: m, reg: reg, store: st}, nil
}

// countStore registers the users and rooms gauges, read from s at every
// scrape, if s counts them.
func (m *serverMetrics) countStore(s membership.Store, logger *slog.Logger) error {
	c, ok := s.(store.Counter)
	if !ok {
		return nil
	}
	if err := m.reg.Register(storemetrics.NewCollector(c, logger)); err != nil {
		return fmt.Errorf("register store metrics: %w", err)
	}
	return nil
}

// withMetrics serves GET and HEAD /metrics from m and everything else
// from api: the metrics on the API port, outside the API's rate limits
// and its request series.
func withMetrics(api http.Handler, m http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == metricsPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			m.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// countLimits counts the refusals of the address limiter in front of
// the API and of the user limiter in it (either may be nil).
func (m *serverMetrics) countLimits(perAddress, perUser *httpapi.RateLimiter) {
	if perAddress != nil {
		perAddress.OnLimit = m.RateLimited(metrics.LimiterAddress)
	}
	if perUser != nil {
		perUser.OnLimit = m.RateLimited(metrics.LimiterUser)
	}
}

// serveMetrics serves the metrics on a listener of their own at addr
// (none when addr is empty), in plain HTTP, until stop is called, which
// waits at most shutdownTimeout for scrapes under way; serveErr receives
// a failure to serve.
func serveMetrics(addr string, h http.Handler, logger *log.Logger, slogger *slog.Logger) (serveErr <-chan error, stop func(), err error) {
	if addr == "" {
		return nil, func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listen (--metrics-addr %s): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    membership.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(slogger.Handler(), slog.LevelWarn),
	}
	where := ln.Addr().String()
	if host, _, _ := net.SplitHostPort(where); !isLoopbackBind(host) {
		logger.Printf("metrics: http://%s%s (reachable beyond this host: --metrics-addr)", where, metricsPath)
	} else {
		logger.Printf("metrics: http://%s%s", where, metricsPath)
	}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return errc, func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			logger.Printf("metrics shutdown: %v", err)
		}
	}, nil
}
