package httpapi_test

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/httpapi"
)

// TestInfoListsTheClusterNATSURLs: nats_urls is absent unless the server
// knows the cluster's NATS URLs, and read again for every answer.
func TestInfoListsTheClusterNATSURLs(t *testing.T) {
	bus := testbus.Start(t, testbus.Options{})
	srv := httpapi.NewServer(bus.Store, nil, httpapi.AuthOff)
	srv.NATSURL = "nats://10.0.0.1:4250"
	info := func() api.Info {
		t.Helper()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/info", nil))
		var info api.Info
		if err := json.Unmarshal(rec.Body.Bytes(), &info); rec.Code != 200 || err != nil {
			t.Fatalf("GET /v1/info = %d %s (%v)", rec.Code, rec.Body, err)
		}
		return info
	}
	if got := info().NATSURLs; got != nil {
		t.Errorf("nats_urls of a server that knows no cluster = %q; want none", got)
	}
	nodes := []string{srv.NATSURL, "nats://10.0.0.2:4250", "nats://10.0.0.3:4250"}
	srv.NATSURLs = func() []string { return nodes }
	if got := info().NATSURLs; !slices.Equal(got, nodes) {
		t.Errorf("nats_urls = %q; want %q", got, nodes)
	}
	nodes = nodes[:2]
	if got := info().NATSURLs; !slices.Equal(got, nodes) {
		t.Errorf("nats_urls after a node left = %q; want %q", got, nodes)
	}
}
