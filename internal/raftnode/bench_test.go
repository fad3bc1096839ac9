package raftnode

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distkv/distkv/internal/kv"
)

// benchPropose measures acknowledged (committed, fsynced, applied) writes per
// second with clients concurrent proposers of 256-byte values.
func benchPropose(b *testing.B, clients int) {
	cfg := testConfig(b.TempDir())
	n, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Stop()
	for n.Ready() != nil {
	}
	val := []byte(strings.Repeat("x", 256))
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				key := []byte(fmt.Sprintf("key%012d", i))
				if _, err := n.Propose(ctx, kv.Command{Op: kv.OpPut, Key: key, Value: val}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

func BenchmarkPropose1(b *testing.B)  { benchPropose(b, 1) }
func BenchmarkPropose64(b *testing.B) { benchPropose(b, 64) }

func BenchmarkLinearizableGet64(b *testing.B) {
	n, err := Open(testConfig(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer n.Stop()
	for n.Ready() != nil {
	}
	ctx := context.Background()
	if _, err := n.Propose(ctx, kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok, err := n.Get(ctx, []byte("k"), true); err != nil || !ok {
				b.Error(err, ok)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}

// BenchmarkStaleGet64 is the read path without a read round: what a request
// costs the node beyond the state machine's lookup.
func BenchmarkStaleGet64(b *testing.B) {
	n, err := Open(testConfig(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer n.Stop()
	for n.Ready() != nil {
	}
	ctx := context.Background()
	if _, err := n.Propose(ctx, kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok, err := n.Get(ctx, []byte("k"), false); err != nil || !ok {
				b.Error(err, ok)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}
