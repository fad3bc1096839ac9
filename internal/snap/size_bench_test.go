package snap

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/distkv/distkv/internal/kv"
)

// BenchmarkStateSize1M reports the Go heap that 1M keys (16-byte keys,
// 100-byte values, each written once) take in a kv.Store, and the size of
// their snapshot file: the figures the multi-version state must keep within
// 10% of the single-version store's when nothing is overwritten.
func BenchmarkStateSize1M(b *testing.B) {
	const keys = 1_000_000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := kv.NewStore()
		value := make([]byte, 100)
		for i := range keys {
			copy(value, fmt.Sprintf("value-%d-%x", i, i*7919))
			if _, err := s.Apply(uint64(i+1), kv.Command{Op: kv.OpPut, Key: fmt.Appendf(nil, "key-%012d", i), Value: value}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		var w countWriter
		if err := Encode(&w, Meta{Shard: 1, Index: keys}, s.Snapshot().SnapshotPairs()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(w)/(1<<20), "snapshot-MiB")
		runtime.KeepAlive(s)
	}
}
