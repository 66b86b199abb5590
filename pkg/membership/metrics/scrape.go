package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ScrapeTimeout bounds the JetStream request of one scrape.
const ScrapeTimeout = 2 * time.Second

// NATSServer is what the connection gauges read of the embedded NATS
// server (*server.Server is one).
type NATSServer interface {
	NumClients() int
	NumSlowConsumers() int64
}

// RegisterNATS registers the series read from the embedded NATS server
// ns at every scrape: the client connections it holds now
// (unibus_nats_connections, membershipd's own among them) and the slow
// consumers it has cut off since it started.
func (m *Metrics) RegisterNATS(ns NATSServer) error {
	conns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: ConnectionsName,
		Help: "Client connections the embedded NATS server of this node holds, membershipd's own included.",
	}, func() float64 { return float64(ns.NumClients()) })
	slow := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: SlowConsumersName,
		Help: "Connections the embedded NATS server of this node found too slow to keep up (and dropped messages to) since it started.",
	}, func() float64 { return float64(ns.NumSlowConsumers()) })
	for _, c := range []prometheus.Collector{conns, slow} {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("register NATS metrics: %w", err)
		}
	}
	return nil
}

// RegisterHistory registers the size of the history stream, read from
// JetStream at every scrape (one stream info request, bounded by
// [ScrapeTimeout]): its messages, bytes and consumers (the readers open
// on it). A failed read leaves them out of that scrape and is logged
// once, until a read works again.
func (m *Metrics) RegisterHistory(js jetstream.JetStream, stream string) error {
	c := &historyCollector{
		js:        js,
		stream:    stream,
		log:       m.log,
		msgs:      prometheus.NewDesc(HistoryMessagesName, "Messages the history stream holds.", nil, prometheus.Labels{"stream": stream}),
		bytes:     prometheus.NewDesc(HistoryBytesName, "Bytes the history stream holds.", nil, prometheus.Labels{"stream": stream}),
		consumers: prometheus.NewDesc(HistoryConsumersName, "Consumers of the history stream: the history readers open now, on every node.", nil, prometheus.Labels{"stream": stream}),
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("register history metrics: %w", err)
	}
	return nil
}

type historyCollector struct {
	js                     jetstream.JetStream
	stream                 string
	log                    *slog.Logger
	msgs, bytes, consumers *prometheus.Desc
	failing                atomic.Bool
}

func (c *historyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.msgs
	ch <- c.bytes
	ch <- c.consumers
}

func (c *historyCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	st, err := c.js.Stream(ctx, c.stream)
	if err != nil {
		if !c.failing.Swap(true) {
			c.log.Warn("metrics: cannot read the history stream's size: its series are left out of scrapes until it works again; check JetStream", "stream", c.stream, "err", err)
		}
		return
	}
	if c.failing.Swap(false) {
		c.log.Info("metrics: reading the history stream's size again", "stream", c.stream)
	}
	state := st.CachedInfo().State
	ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(state.Msgs))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(state.Bytes))
	ch <- prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(state.Consumers))
}
