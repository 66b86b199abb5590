package membership_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership"
	"github.com/enmanuel/unibus/pkg/reqsig"
)

// The API benchmarks send signed requests over loopback HTTP to the
// server of an in-process bus (internal/testbus), as a client does. Rooms
// and members are made through the SDK, so that the setup follows the
// protocol whatever it asks of a membership change; only the measured
// requests are made here.

// apiBench is a bus with alice, an admin, in an encrypted room. Her SDK
// client sends every request but a rekey, whose body it keeps in capture.
type apiBench struct {
	bus     *testbus.Bus
	alice   *identity.Identity
	sdk     *client.Client
	capture *rekeyCapture
	room    string
	hc      *http.Client
}

func newAPIBench(b *testing.B, mode membership.AuthMode) *apiBench {
	b.Helper()
	f := &apiBench{bus: testbus.Start(b, testbus.Options{Mode: mode})}
	// Keep a connection per concurrent caller: the default of 2 idle
	// connections per host would measure TCP set-up.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	f.hc = &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)
	f.alice = testbus.NewIdentity(b, "alice")
	f.bus.AddUser(b, f.alice, api.RoleAdmin)
	f.capture = &rekeyCapture{next: tr}
	sdk, err := client.New(client.Config{Server: f.bus.HTTP.URL, Identity: f.alice, HTTPClient: &http.Client{Transport: f.capture}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sdk.Close() })
	f.sdk = sdk
	room, err := f.sdk.CreateRoom(context.Background(), "bench", false)
	if err != nil {
		b.Fatal(err)
	}
	f.room = room.ID
	return f
}

// do sends one request signed by id and returns the status; the body is
// read and dropped.
func (f *apiBench) do(id *identity.Identity, method, path string, body []byte) (int, error) {
	req, err := http.NewRequest(method, f.bus.HTTP.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body == nil {
		req.Body = http.NoBody
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	sig, err := reqsig.Sign(id, method, req.URL.RequestURI(), sha256.Sum256(body), time.Now(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", sig.String())
	resp, err := f.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// runCall measures one request: one caller at a time ("serial"), and 16
// callers at a time ("c16", the concurrency of `unibus bench`).
func (f *apiBench) runCall(b *testing.B, id *identity.Identity, method, path string) {
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if st, err := f.do(id, method, path, nil); err != nil || st != http.StatusOK {
				b.Fatalf("%s %s = %d, %v", method, path, st, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
	b.Run("c16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if st, err := f.do(id, method, path, nil); err != nil || st != http.StatusOK {
					b.Errorf("%s %s = %d, %v", method, path, st, err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}

// BenchmarkAPI measures the calls a client makes most, with the server
// checking signatures (enforce) and not (off).
func BenchmarkAPI(b *testing.B) {
	for _, mode := range []membership.AuthMode{membership.AuthEnforce, membership.AuthOff} {
		b.Run(mode.String(), func(b *testing.B) {
			f := newAPIBench(b, mode)
			b.Run("room_list", func(b *testing.B) { f.runCall(b, f.alice, http.MethodGet, "/v1/rooms") })
			b.Run("key_fetch", func(b *testing.B) { f.runCall(b, f.alice, http.MethodGet, "/v1/rooms/"+f.room+"/keys") })
		})
	}
}

// errCaptured stops a request from reaching the server: captureRekey keeps
// its body instead.
var errCaptured = errors.New("captured, not sent")

// rekeyCapture is a transport that keeps the body of a rekey request and
// sends everything else.
type rekeyCapture struct {
	next http.RoundTripper
	mu   sync.Mutex
	body []byte
}

func (c *rekeyCapture) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/rekey") {
		return c.next.RoundTrip(req)
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.body = b
	c.mu.Unlock()
	return nil, errCaptured
}

// BenchmarkAPIBigRoom measures, in a room of 1,000 members, a member's key
// fetch and the rekey request: the server's checks of a body with a sealed
// key per member and its write in one transaction. The rekey body is the
// one the SDK makes (sealed keys and whatever else the protocol asks),
// captured before it is sent by the client that built the room; building
// it is not timed.
func BenchmarkAPIBigRoom(b *testing.B) {
	const members = 1000
	f := newAPIBench(b, membership.AuthEnforce)
	ctx := context.Background()
	others := make([]*identity.Identity, members-1)
	for i := range others {
		others[i] = testbus.NewIdentity(b, fmt.Sprintf("member%04d", i))
		f.bus.AddUser(b, others[i], api.RoleMember)
	}
	keys := make([]string, len(others))
	for i, id := range others {
		keys[i] = id.UserKey()
	}
	if _, err := f.sdk.AddMembers(ctx, f.room, keys); err != nil {
		b.Fatal(err)
	}

	b.Run("key_fetch", func(b *testing.B) {
		f.runCall(b, others[len(others)-1], http.MethodGet, "/v1/rooms/"+f.room+"/keys")
	})

	b.Run("rekey", func(b *testing.B) {
		path := "/v1/rooms/" + f.room + "/rekey"
		next := func() []byte {
			if _, err := f.sdk.Rekey(ctx, f.room); !errors.Is(err, errCaptured) {
				b.Fatalf("Rekey = %v; want the request captured", err)
			}
			f.capture.mu.Lock()
			defer f.capture.mu.Unlock()
			return f.capture.body
		}
		b.ReportAllocs()
		body := next()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if st, err := f.do(f.alice, http.MethodPost, path, body); err != nil || st != http.StatusOK {
				b.Fatalf("POST %s = %d, %v", path, st, err)
			}
			b.StopTimer()
			body = next()
			b.StartTimer()
		}
	})
}
