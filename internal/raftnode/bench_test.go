package raftnode

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// benchPropose measures acknowledged (committed, fsynced, applied) writes per
// second with clients concurrent proposers of 256-byte values; splitQPS as
// in benchGet.
func benchPropose(b *testing.B, clients, splitQPS int) {
	cfg := testConfig(b.TempDir())
	cfg.RangeSplitQPS = splitQPS
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

func BenchmarkPropose1(b *testing.B)  { benchPropose(b, 1, 0) }
func BenchmarkPropose64(b *testing.B) { benchPropose(b, 64, 0) }

// BenchmarkPropose64Tracked is BenchmarkPropose64 with the load measured
// (see benchGet): the loop's look at the log every 10 ticks.
func BenchmarkPropose64Tracked(b *testing.B) { benchPropose(b, 64, 1<<30) }

// benchGet measures reads of one key by 32 goroutines per core. With
// splitQPS, the node measures its load (a threshold no benchmark reaches),
// as a server does by default: the figure to compare with splitQPS 0 is the
// cost of counting.
func benchGet(b *testing.B, linearizable bool, splitQPS int) {
	cfg := testConfig(b.TempDir())
	cfg.RangeSplitQPS = splitQPS
	n, err := Open(cfg)
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
	for splitQPS > 0 && n.load.Load() == nil {
		time.Sleep(time.Millisecond) // the leader's first look at its load makes the tracker
	}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok, err := n.Get(ctx, []byte("k"), linearizable); err != nil || !ok {
				b.Error(err, ok)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}

func BenchmarkLinearizableGet64(b *testing.B)        { benchGet(b, true, 0) }
func BenchmarkLinearizableGet64Tracked(b *testing.B) { benchGet(b, true, 1<<30) }

// BenchmarkStaleGet64 is the read path without a read round: what a request
// costs the node beyond the state machine's lookup.
func BenchmarkStaleGet64(b *testing.B)        { benchGet(b, false, 0) }
func BenchmarkStaleGet64Tracked(b *testing.B) { benchGet(b, false, 1<<30) }
