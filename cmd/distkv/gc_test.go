package main

import (
	"runtime/metrics"
	"testing"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		live uint64
		want int
	}{
		{0, 100},
		{1 * mib, 100},        // small heaps keep the runtime's default
		{64 * mib, 100},       // headroom 64 MiB = live
		{128 * mib, 50},       // headroom 64 MiB
		{256 * mib, 25},       // headroom 64 MiB = live/4
		{1024 * mib, 25},      // headroom live/4
		{40 * 1024 * mib, 25}, // however large
		{100*mib + 1, 63},     // 64 MiB of ~100 MiB, rounded down
	}
	for _, c := range cases {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live/mib, got, c.want)
		}
	}
}

// The metric tuneGC reads exists in this runtime with the kind it expects;
// otherwise tuneGC would silently do nothing.
func TestLiveHeapMetricExists(t *testing.T) {
	s := []metrics.Sample{{Name: liveHeapMetricName}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Fatalf("%s: kind %v, want uint64", liveHeapMetricName, s[0].Value.Kind())
	}
}
