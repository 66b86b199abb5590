package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/enmanuel/unibus/pkg/membership/httpapi"
	"github.com/enmanuel/unibus/pkg/membership/metrics"
	"github.com/enmanuel/unibus/pkg/membership/readers"
)

func newMetrics(t testing.TB) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Config{Version: "v1.2.3", Commit: "0123456789ab"})
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// values gathers reg: the value of every series of the family name (a
// counter's or gauge's value, a histogram's count) by its labels, as
// "k=v,k=v" in the registry's order.
func values(t testing.TB, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			k := ""
			for i, l := range m.GetLabel() {
				if i > 0 {
					k += ","
				}
				k += l.GetName() + "=" + l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[k] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[k] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[k] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func wantValues(t testing.TB, reg *prometheus.Registry, name string, want map[string]float64) {
	t.Helper()
	got := values(t, reg, name)
	if len(got) != len(want) {
		t.Errorf("%s = %v; want %v", name, got, want)
		return
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s{%s} = %v (present %v); want %v", name, k, g, ok, v)
		}
	}
}

// TestEverySeriesIsThereFromTheStart: the families of known label values
// exist at zero before anything happens, so that rate() and alerts see
// them from the first scrape.
func TestEverySeriesIsThereFromTheStart(t *testing.T) {
	_, reg := newMetrics(t)
	wantValues(t, reg, metrics.BuildInfoName, map[string]float64{"goversion=" + goVersion(t, reg) + ",revision=0123456789ab,version=v1.2.3": 1})
	wantValues(t, reg, metrics.SignatureFailuresName, map[string]float64{"reason=missing": 0, "reason=malformed": 0, "reason=clock": 0, "reason=invalid": 0, "reason=body": 0, "reason=replay": 0})
	wantValues(t, reg, metrics.RateLimitedName, map[string]float64{"limiter=address": 0, "limiter=user": 0})
	wantValues(t, reg, metrics.ConnectionsClosedName, map[string]float64{"reason=membership": 0, "reason=revocation": 0})
	wantValues(t, reg, metrics.ReadersOpenedName, map[string]float64{"": 0})
	wantValues(t, reg, metrics.ReadersClosedName, map[string]float64{"reason=owner": 0, "reason=removed": 0, "reason=swept": 0})
	wantValues(t, reg, metrics.KeyDeliveriesName, map[string]float64{"result=delivered": 0, "result=failed": 0})
	wantValues(t, reg, metrics.RekeysName, map[string]float64{"trigger=removal": 0, "trigger=rotation": 0, "trigger=add": 0})
	if got := values(t, reg, "go_goroutines"); len(got) != 1 {
		t.Errorf("go_goroutines = %v; want the Go collector's gauge", got)
	}
}

// goVersion is the goversion label of unibus_build_info.
func goVersion(t testing.TB, reg *prometheus.Registry) string {
	t.Helper()
	fams, _ := reg.Gather()
	for _, f := range fams {
		if f.GetName() == metrics.BuildInfoName {
			for _, l := range f.GetMetric()[0].GetLabel() {
				if l.GetName() == "goversion" {
					return l.GetValue()
				}
			}
		}
	}
	t.Fatal("no unibus_build_info")
	return ""
}

func TestHooksCount(t *testing.T) {
	m, reg := newMetrics(t)
	m.SignatureFailed(httpapi.SigInvalid)
	m.SignatureFailed(httpapi.SigInvalid)
	m.SignatureFailed("a reason added later")
	m.KeysDelivered(3, 0)
	m.KeysDelivered(1, 2)
	m.Rekeyed(httpapi.RekeyRemoval)
	m.Rekeyed(httpapi.RekeyAdd)
	m.ReaderOpened()
	m.ReadersClosed(readers.ClosedSwept, 4)
	m.ReadersClosed(readers.ClosedByOwner, 0)
	m.ConnectionsClosed(metrics.ClosedAfterRevocation, 2)
	limited := m.RateLimited(metrics.LimiterAddress)
	limited()
	limited()

	wantValues(t, reg, metrics.SignatureFailuresName, map[string]float64{"reason=missing": 0, "reason=malformed": 0, "reason=clock": 0, "reason=invalid": 2, "reason=body": 0, "reason=replay": 0, "reason=a reason added later": 1})
	wantValues(t, reg, metrics.KeyDeliveriesName, map[string]float64{"result=delivered": 4, "result=failed": 2})
	wantValues(t, reg, metrics.RekeysName, map[string]float64{"trigger=removal": 1, "trigger=rotation": 0, "trigger=add": 1})
	wantValues(t, reg, metrics.ReadersOpenedName, map[string]float64{"": 1})
	wantValues(t, reg, metrics.ReadersClosedName, map[string]float64{"reason=owner": 0, "reason=removed": 0, "reason=swept": 4})
	wantValues(t, reg, metrics.ConnectionsClosedName, map[string]float64{"reason=membership": 0, "reason=revocation": 2})
	wantValues(t, reg, metrics.RateLimitedName, map[string]float64{"limiter=address": 2, "limiter=user": 0})
}

// natsServer is a NATSServer that reports what it is told.
type natsServer struct {
	clients int
	slow    int64
}

func (n *natsServer) NumClients() int         { return n.clients }
func (n *natsServer) NumSlowConsumers() int64 { return n.slow }

func TestNATSSeriesAreReadAtScrapeTime(t *testing.T) {
	m, reg := newMetrics(t)
	ns := &natsServer{clients: 3}
	if err := m.RegisterNATS(ns); err != nil {
		t.Fatal(err)
	}
	wantValues(t, reg, metrics.ConnectionsName, map[string]float64{"": 3})
	ns.clients, ns.slow = 7, 2
	wantValues(t, reg, metrics.ConnectionsName, map[string]float64{"": 7})
	wantValues(t, reg, metrics.SlowConsumersName, map[string]float64{"": 2})
}

func TestHandlerServesTheRegistryAlone(t *testing.T) {
	m, _ := newMetrics(t)
	// A series of the process-wide default registry is not served.
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "unibus_test_default_registry_total"})
	prometheus.DefaultRegisterer.MustRegister(c)
	t.Cleanup(func() { prometheus.DefaultRegisterer.Unregister(c) })
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := w.Body.String()
	if w.Code != http.StatusOK || !contains(body, "unibus_build_info{") || contains(body, "unibus_test_default_registry_total") {
		t.Errorf("GET /metrics = %d:\n%s\nwant 200 with unibus_build_info and nothing of the default registry", w.Code, body)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
