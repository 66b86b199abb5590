package main

import (
	"testing"
	"time"
)

// BenchmarkClusterColdStart times three membershipd processes, started
// together with --store kv --replicas 3 as docs/cluster.md has it, from
// the first start to every node's /readyz answering 200: on empty data
// directories (a new cluster), then again after all three were killed
// with SIGKILL (a whole cluster's power loss, its data kept). Each
// figure is in seconds per start (s/start).
//
//	go test -run '^$' -bench ClusterColdStart -benchtime 5x ./cmd/membershipd
func BenchmarkClusterColdStart(b *testing.B) {
	bin := membershipdBinary(b)
	coldStart := func(b *testing.B, nodes []*clusterNode, procs []*processNode) time.Duration {
		began := time.Now()
		for i, n := range nodes {
			procs[i] = n.startProcess(b, bin, "--replicas", "3")
		}
		waitAllReady(b, procs...)
		return time.Since(began)
	}
	b.Run("new", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			nodes := newClusterNodes(b, 3)
			procs := make([]*processNode, len(nodes))
			total += coldStart(b, nodes, procs)
			for _, p := range procs {
				p.kill(b)
			}
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/start")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("after-kill", func(b *testing.B) {
		nodes := newClusterNodes(b, 3)
		procs := make([]*processNode, len(nodes))
		coldStart(b, nodes, procs)
		var total time.Duration
		for b.Loop() {
			for _, p := range procs {
				p.kill(b)
			}
			total += coldStart(b, nodes, procs)
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/start")
		b.ReportMetric(0, "ns/op")
	})
}
