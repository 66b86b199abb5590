package client_test

import (
	"context"
	"crypto/rand"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
)

// The SDK benchmarks run against an in-process bus (internal/testbus): the
// SDK talks to it over loopback TCP, as it would to membershipd.

var benchMsgSizes = []int{64, 1 << 10, 16 << 10}

func benchSizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// benchRoom starts a bus with alice, an admin, in a fresh encrypted room.
func benchRoom(b *testing.B) (*testbus.Bus, *client.Client, string) {
	b.Helper()
	bus := testbus.Start(b, testbus.Options{})
	_, alice := bus.User(b, "alice", api.RoleAdmin)
	room, err := alice.CreateRoom(context.Background(), "bench", false)
	if err != nil {
		b.Fatal(err)
	}
	return bus, alice, room.ID
}

// BenchmarkSend measures Send: seal, sign, publish to JetStream and wait
// for the ack, one message at a time.
func BenchmarkSend(b *testing.B) {
	_, alice, room := benchRoom(b)
	ctx := context.Background()
	for _, size := range benchMsgSizes {
		msg := client.Message{Text: strings.Repeat("x", size)}
		b.Run(benchSizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := alice.Send(ctx, room, msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkSendParallel measures Send of 1 KiB from 16 goroutines sharing
// one client: how far concurrency hides the wait for the ack.
func BenchmarkSendParallel(b *testing.B) {
	_, alice, room := benchRoom(b)
	ctx := context.Background()
	msg := client.Message{Text: strings.Repeat("x", 1<<10)}
	b.SetBytes(1 << 10)
	b.ReportAllocs()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((16 + procs - 1) / procs)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := alice.Send(ctx, room, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkJetStreamPublish is the baseline of Send: a synchronous
// JetStream publish of an envelope-sized payload (1 KiB of text comes to
// about 1.2 KiB sealed) on a TCP connection, with no crypto.
func BenchmarkJetStreamPublish(b *testing.B) {
	bus := testbus.Start(b, testbus.Options{})
	nc, err := nats.Connect(bus.NATSURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	subject := api.RoomSubject(api.NewRoomID())
	payload := make([]byte, 1200)
	rand.Read(payload)
	ctx := context.Background()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := js.Publish(ctx, subject, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkRead measures Read of a room's history of 2,000 messages of
// 1 KiB: fetch from JetStream, verify, decrypt, decode, in order. One
// iteration reads them all.
func BenchmarkRead(b *testing.B) {
	const n = 2000
	bus, alice, room := benchRoom(b)
	ctx := context.Background()
	msg := client.Message{Text: strings.Repeat("x", 1<<10)}
	for range n {
		if _, err := alice.Send(ctx, room, msg); err != nil {
			b.Fatal(err)
		}
	}
	// A second client, as a receiver would be.
	reader := bus.Client(b, alice.Identity())
	b.SetBytes(n << 10)
	b.ReportAllocs()
	for b.Loop() {
		got := 0
		err := reader.Read(ctx, room, client.ReadOptions{}, func(m client.Received) error {
			if m.Err != nil {
				b.Fatal(m.Err)
			}
			got++
			return nil
		})
		if err != nil || got != n {
			b.Fatalf("Read = %d messages, %v; want %d", got, err, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
}
