package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/reqsig"
)

// scrape is one parsed scrape of /metrics, by series name.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics GETs url and parses it with the Prometheus text parser.
func scrapeMetrics(t testing.TB, url string) scrape {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d; want 200", url, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q; want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: parse: %v", url, err)
	}
	return fams
}

// value returns the value of the series name{labels} (pairs of label
// name and value; the series may have more labels): a counter's or a
// gauge's value, a histogram's sample count. ok is false if no series
// matches.
func (s scrape) value(name string, labels ...string) (v float64, ok bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		case dto.MetricType_UNTYPED:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
		}) {
			return false
		}
	}
	return true
}

// series names a series and the labels that pick it.
type series struct {
	name   string
	labels []string
}

func (s series) String() string { return s.name + fmt.Sprint(s.labels) }

func s(name string, labels ...string) series { return series{name, labels} }

// check is what one series should say.
type check struct {
	series
	want float64
}

// TestMetricsAfterAScriptedRun runs SDK commands against a membershipd
// under enforce, with each store (create a room, add a member, send,
// read, remove the member while they hold a reader, revoke them), sends a
// forged and an unsigned request and a burst past a user's rate limit,
// then scrapes /metrics on the API port and checks what each series
// says.
func TestMetricsAfterAScriptedRun(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "kv"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testMetricsAfterAScriptedRun(t, backend)
		})
	}
}

func testMetricsAfterAScriptedRun(t *testing.T, backend string) {
	e := startEnforce(t, "--store", backend, "--api-rate", "50", "--api-burst", "20")
	ctx := ctxT(t)
	bob := e.bobID.UserKey()

	room, err := e.alice.CreateRoom(ctx, "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.alice.AddMember(ctx, room.ID, bob); err != nil {
		t.Fatal(err)
	}
	if _, err := e.alice.Send(ctx, room.ID, client.Message{Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	var read []string
	if err := e.bob.Read(ctx, room.ID, client.ReadOptions{}, func(m client.Received) error {
		read = append(read, m.Text)
		return nil
	}); err != nil || !slices.Equal(read, []string{"hello"}) {
		t.Fatalf("bob's read = %q, %v; want [hello]", read, err)
	}
	// The SDK closes its reader in the background: wait for it, so that
	// the reader bob holds next is the only one the removal closes.
	svc := serviceJS(t, e)
	waitFor(t, 10*time.Second, "bob's SDK reader closed", func() bool { return len(readersOf(t, svc, bob)) == 0 })
	nc := e.rawConn(t, e.bobID, nil)
	if _, _, status := openRawReader(t, e.srv.URL, nc, e.bobID, room.ID); status != http.StatusCreated {
		t.Fatalf("bob's own reader = %d; want 201", status)
	}
	if _, err := e.alice.RemoveMember(ctx, room.ID, bob); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bob's connection closed after his removal", func() bool { return nc.IsClosed() })

	// A forged signature claiming alice, and no signature at all.
	sig := reqsig.Signature{User: e.aliceID.UserKey(), Time: time.Now().UnixMilli(), Body: reqsig.EmptyBody, Sig: make([]byte, 64)}
	rand.Read(sig.Nonce[:])
	forged := mustRequest(t, http.MethodGet, e.srv.URL+"/v1/me")
	forged.Header.Set("Authorization", sig.String())
	if code := doJSON(t, forged, nil); code != http.StatusUnauthorized {
		t.Fatalf("forged request = %d; want 401", code)
	}
	if code := doJSON(t, mustRequest(t, http.MethodGet, e.srv.URL+"/v1/me"), nil); code != http.StatusUnauthorized {
		t.Fatalf("unsigned request = %d; want 401", code)
	}
	// A burst past bob's 20.
	limited := 0
	for range 40 {
		if getMe(t, e.srv.URL, e.bobID) == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("a burst of 40 past a burst of 20 was never answered 429")
	}
	// bob revoked while connected.
	nc = e.rawConn(t, e.bobID, nil)
	if _, err := e.alice.RevokeUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bob's connection closed after his revocation", func() bool { return nc.IsClosed() })

	exact := []check{
		{s("unibus_build_info", "version", thisBuild().Version), 1},
		{s("unibus_api_request_duration_seconds", "route", "POST /v1/rooms", "code", "201"), 1},
		{s("unibus_api_request_duration_seconds", "route", "POST /v1/rooms/{room}/members", "code", "200"), 1},
		{s("unibus_api_request_duration_seconds", "route", "POST /v1/rooms/{room}/rekey", "code", "200"), 1},
		{s("unibus_api_request_duration_seconds", "route", "POST /v1/rooms/{room}/readers", "code", "201"), 2},
		{s("unibus_api_request_duration_seconds", "route", "GET /v1/me", "code", "401"), 2},
		{s("unibus_api_request_duration_seconds", "route", "GET /v1/me", "code", "429"), float64(limited)},
		{s("unibus_api_request_duration_seconds", "route", "POST /v1/users/{user}/revoke", "code", "200"), 1},
		{s("unibus_api_signature_failures_total", "reason", "invalid"), 1},
		{s("unibus_api_signature_failures_total", "reason", "missing"), 1},
		{s("unibus_api_signature_failures_total", "reason", "clock"), 0},
		{s("unibus_api_signature_failures_total", "reason", "replay"), 0},
		{s("unibus_api_rate_limited_total", "limiter", "user"), float64(limited)},
		{s("unibus_api_rate_limited_total", "limiter", "address"), 0},
		{s("unibus_rekeys_total", "trigger", "removal"), 1},
		{s("unibus_rekeys_total", "trigger", "rotation"), 0},
		{s("unibus_rekeys_total", "trigger", "add"), 0},
		{s("unibus_key_deliveries_total", "result", "delivered"), 1}, // alice's key of the new epoch
		{s("unibus_key_deliveries_total", "result", "failed"), 0},
		{s("unibus_history_readers_opened_total"), 2},
		{s("unibus_history_readers_closed_total", "reason", "owner"), 1},
		{s("unibus_history_readers_closed_total", "reason", "removed"), 1},
		{s("unibus_users", "status", "active"), 1},
		{s("unibus_users", "status", "revoked"), 1},
		{s("unibus_rooms"), 1},
		{s("unibus_history_messages", "stream", api.HistoryStream), 1},
		{s("unibus_store_operation_duration_seconds", "backend", backend, "op", "create_room"), 1},
		{s("unibus_store_operation_duration_seconds", "backend", backend, "op", "rekey"), 1},
		{s("unibus_store_operation_duration_seconds", "backend", backend, "op", "revoke_user"), 1},
	}
	atLeast := []check{
		{s("unibus_nats_connections_closed_total", "reason", "membership"), 1},
		{s("unibus_nats_connections_closed_total", "reason", "revocation"), 1},
		{s("unibus_nats_connections"), 1},
		{s("unibus_history_bytes", "stream", api.HistoryStream), 1},
		{s("unibus_store_operation_duration_seconds", "backend", backend, "op", "is_authorized"), 1},
		{s("unibus_store_operation_duration_seconds", "backend", backend, "op", "get_user"), 1},
		{s("go_goroutines"), 1},
		{s("process_resident_memory_bytes"), 1},
	}
	// Some counts move in the background (the sweep, the data plane's
	// kicks): scrape until every series says what it should.
	var problems []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrapeMetrics(t, e.srv.URL+"/metrics")
		problems = problems[:0]
		for _, c := range exact {
			if got, ok := m.value(c.name, c.labels...); !ok || got != c.want {
				problems = append(problems, fmt.Sprintf("%s = %v (present %v); want %v", c.series, got, ok, c.want))
			}
		}
		for _, c := range atLeast {
			if got, ok := m.value(c.name, c.labels...); !ok || got < c.want {
				problems = append(problems, fmt.Sprintf("%s = %v (present %v); want at least %v", c.series, got, ok, c.want))
			}
		}
		if f := m["unibus_api_request_duration_seconds"]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
			problems = append(problems, "unibus_api_request_duration_seconds is not a histogram")
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// metricsLine matches the log line that gives a metrics listener's URL.
var metricsLine = regexp.MustCompile(`\] metrics: (http://\S+/metrics)$`)

// TestMetricsOnTheirOwnListener: with --metrics-addr the metrics are
// served there, and not on the API port; --monitor-port serves the
// embedded NATS server's monitoring on loopback.
func TestMetricsOnTheirOwnListener(t *testing.T) {
	t.Parallel()
	srv := startServer(t, t.TempDir(), "--metrics-addr", "127.0.0.1:0", "--monitor-port", "-1")
	var url, monitor string
	for _, l := range srv.Logs.Lines() {
		if m := metricsLine.FindStringSubmatch(l); m != nil {
			url = m[1]
		}
		if _, after, ok := strings.Cut(l, "embedded NATS monitoring: "); ok {
			monitor, _, _ = strings.Cut(after, " ")
		}
	}
	if url == "" || monitor == "" {
		t.Fatalf("no metrics or monitoring URL in the log:\n%s", strings.Join(srv.Logs.Lines(), "\n"))
	}
	if v, ok := scrapeMetrics(t, url).value("unibus_build_info"); !ok || v != 1 {
		t.Errorf("unibus_build_info at %s = %v (present %v); want 1", url, v, ok)
	}
	if code := getJSON(t, srv.URL+"/metrics", nil); code != http.StatusNotFound {
		t.Errorf("GET /metrics on the API port with --metrics-addr = %d; want 404", code)
	}
	if !strings.HasPrefix(monitor, "http://127.0.0.1:") {
		t.Errorf("monitoring at %q; want loopback", monitor)
	}
	resp, err := http.Get(monitor + "/varz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s/varz = %d; want 200", monitor, resp.StatusCode)
	}
}

func TestMetricsPlace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flag, bind string
		addr       string
		onAPI      bool
	}{
		{"", "127.0.0.1", "", true},
		{"", "localhost", "", true},
		{"", "::1", "", true},
		{"", "0.0.0.0", defaultMetricsAddr, false},
		{"", "192.0.2.7", defaultMetricsAddr, false},
		{"127.0.0.1:9999", "127.0.0.1", "127.0.0.1:9999", false},
		{"0.0.0.0:9999", "0.0.0.0", "0.0.0.0:9999", false},
		{"off", "127.0.0.1", "", false},
		{"off", "0.0.0.0", "", false},
	}
	for _, tt := range tests {
		if addr, onAPI := metricsPlace(tt.flag, tt.bind); addr != tt.addr || onAPI != tt.onAPI {
			t.Errorf("metricsPlace(%q, %q) = %q, %v; want %q, %v", tt.flag, tt.bind, addr, onAPI, tt.addr, tt.onAPI)
		}
	}
}

func TestMonitorPortNeedsTheEmbeddedNATS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"--db", dir + "/u.db", "--store-dir", dir + "/b", "--http-port", "0", "--nats-url", "nats://127.0.0.1:1", "--monitor-port", "8222"}
	err := run(context.Background(), args, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--monitor-port") {
		t.Errorf("run with --nats-url and --monitor-port = %v; want an error naming --monitor-port", err)
	}
}
