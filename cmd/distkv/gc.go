package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The state machine lives on the Go heap. With the runtime's default GOGC=100
// the heap grows to twice the live data before a collection, so a node holding
// 500 MB of pairs would sit at 1 GB. tuneGC caps the growth between
// collections at max(gcMinHeadroom, live/gcHeadroomDivisor): GOGC=100 while
// the live heap is below 4 x gcMinHeadroom, falling to 25 for large ones.
// It costs more frequent collections only on large heaps, where the memory
// saved is largest. GOGC set in the environment turns it off.
const (
	gcMinHeadroom      = 64 << 20
	gcHeadroomDivisor  = 4
	gcMaxPercent       = 100
	gcMinPercent       = 10
	gcTuneInterval     = time.Second
	liveHeapMetricName = "/gc/heap/live:bytes"
)

// gcPercentFor is the GOGC value that lets a heap with live bytes of live data
// grow by max(gcMinHeadroom, live/gcHeadroomDivisor) before the next
// collection, clamped to [gcMinPercent, gcMaxPercent].
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcMaxPercent
	}
	headroom := max(uint64(gcMinHeadroom), live/gcHeadroomDivisor)
	p := headroom * 100 / live
	return int(min(max(p, gcMinPercent), gcMaxPercent))
}

// tuneGC adjusts GOGC to the live heap once per gcTuneInterval until ctx ends.
func tuneGC(ctx context.Context, logger *slog.Logger) {
	if _, set := os.LookupEnv("GOGC"); set {
		logger.Info("GOGC set in the environment: heap headroom not tuned")
		return
	}
	sample := []metrics.Sample{{Name: liveHeapMetricName}}
	current := gcMaxPercent
	t := time.NewTicker(gcTuneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not provided by this runtime
		}
		if p := gcPercentFor(sample[0].Value.Uint64()); p != current {
			debug.SetGCPercent(p)
			current = p
		}
	}
}
