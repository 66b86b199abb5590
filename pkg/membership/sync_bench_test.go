package membership_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/embeddednats"
	"github.com/enmanuel/unibus/pkg/membership"
)

// BenchmarkHistorySync measures what membershipd's --sync costs the
// history stream: 1 KiB messages published to UNIBUS_HISTORY and
// acknowledged, with every write synced before its acknowledgement
// (always) or left to the 2-minute sync (interval), on one node (R1) and
// on an in-process three-node cluster (R3). "one" waits for each
// acknowledgement before the next publish, as `unibus send` does; "window"
// keeps 256 in flight, as the SDK's sender does. Figures in BENCHMARKS.md.
//
//	go test -run x -bench HistorySync -benchtime 5000x ./pkg/membership/
func BenchmarkHistorySync(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		for _, mode := range []string{"always", "interval"} {
			b.Run(fmt.Sprintf("R%d/sync=%s", nodes, mode), func(b *testing.B) {
				js := historyOn(b, nodes, mode == "always")
				payload := make([]byte, 1024)
				b.Run("one", func(b *testing.B) {
					ctx := context.Background()
					b.SetBytes(int64(len(payload)))
					for i := 0; b.Loop(); i++ {
						if _, err := js.Publish(ctx, api.RoomSubject("benchroom"), payload); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				})
				b.Run("window", func(b *testing.B) {
					async, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(256))
					if err != nil {
						b.Fatal(err)
					}
					b.SetBytes(int64(len(payload)))
					b.ResetTimer()
					for range b.N {
						if _, err := async.PublishAsync(api.RoomSubject("benchroom"), payload, jetstream.WithStallWait(time.Minute)); err != nil {
							b.Fatal(err)
						}
					}
					select {
					case <-async.PublishAsyncComplete():
					case <-time.After(time.Minute):
						b.Fatal("acknowledgements did not all arrive within a minute")
					}
					b.StopTimer()
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				})
			})
		}
	}
}

// historyOn starts nodes in-process servers (routed as a cluster when
// more than one) with sync always or not, makes the history stream with
// one replica per node, and returns a JetStream context on the first.
func historyOn(b *testing.B, nodes int, syncAlways bool) jetstream.JetStream {
	b.Helper()
	var first *server.Server
	if nodes == 1 {
		first = testnats.Start(b, embeddednats.ServerConfig{SyncAlways: syncAlways, Logger: testnats.Logger()})
	} else {
		first = testnats.StartCluster(b, nodes, func(i int) embeddednats.ServerConfig {
			return embeddednats.ServerConfig{
				ServerName: fmt.Sprintf("b%d", i+1), SyncAlways: syncAlways, Logger: testnats.Logger(),
				Cluster: &embeddednats.ClusterConfig{Name: "sync-bench"},
			}
		})[0]
	}
	js := testnats.JetStream(b, first)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := membership.EnsureHistoryStream(ctx, js, membership.HistoryLimits{Replicas: nodes})
		cancel()
		if err == nil {
			return js
		}
		if time.Now().After(deadline) {
			b.Fatalf("history stream on %d node(s): %v", nodes, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
