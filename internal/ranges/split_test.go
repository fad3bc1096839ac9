package ranges

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

type pair struct {
	key  string
	size int64
}

func seq(pairs []pair) iter.Seq2[[]byte, int64] {
	return func(yield func([]byte, int64) bool) {
		buf := make([]byte, 0, 64)
		for _, p := range pairs {
			// Reuse one buffer, as a storage iterator may: SplitKey must copy.
			buf = append(buf[:0], p.key...)
			if !yield(buf, p.size) {
				return
			}
		}
	}
}

// bestImbalance is the smallest |left - right| over the split points at
// keys 1..n-1, by brute force.
func bestImbalance(pairs []pair) int64 {
	var total int64
	for _, p := range pairs {
		total += max(p.size, 0)
	}
	best := int64(-1)
	var before int64
	for i, p := range pairs {
		if i > 0 && (best < 0 || imbalance(before, total) < best) {
			best = imbalance(before, total)
		}
		before += max(p.size, 0)
	}
	return best
}

func imbalanceAt(pairs []pair, key string) (int64, bool) {
	var total, before int64
	at := -1
	for i, p := range pairs {
		if p.key == key {
			at = i
			before = total
		}
		total += max(p.size, 0)
	}
	if at <= 0 {
		return 0, false // not a key of the range, or its first
	}
	return imbalance(before, total), true
}

func TestSplitKeySmall(t *testing.T) {
	tests := []struct {
		name  string
		pairs []pair
		want  string // "" for none
	}{
		{"empty", nil, ""},
		{"one key", []pair{{"a", 1000}}, ""},
		{"two keys", []pair{{"a", 1}, {"b", 1000}}, "b"},
		{"even halves", []pair{{"a", 10}, {"b", 10}, {"c", 10}, {"d", 10}}, "c"},
		{"heavy first key", []pair{{"a", 100}, {"b", 1}, {"c", 1}}, "b"},
		{"heavy last key", []pair{{"a", 1}, {"b", 1}, {"c", 100}}, "c"},
		{"heavy middle", []pair{{"a", 1}, {"b", 100}, {"c", 1}}, "b"},
		{"all zero", []pair{{"a", 0}, {"b", 0}, {"c", 0}}, "b"},
		{"negative sizes count as zero", []pair{{"a", -5}, {"b", 4}, {"c", 4}}, "c"},
	}
	for _, tt := range tests {
		key, ok := SplitKey(seq(tt.pairs))
		if got := string(key); ok != (tt.want != "") || got != tt.want {
			t.Errorf("%s: SplitKey = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}

// TestSplitKeyRandom compares SplitKey with the brute-force best split:
// equal up to 1024 keys, close beyond.
func TestSplitKeyRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for round := range 60 {
		n := 2 + rng.IntN(1023)
		if round%3 == 0 {
			n = 1025 + rng.IntN(20000)
		}
		maxSize := int64(1 + rng.IntN(5000))
		pairs := make([]pair, n)
		var total, largest int64
		for i := range pairs {
			size := rng.Int64N(maxSize)
			if rng.IntN(50) == 0 {
				size *= 20 // a few big values
			}
			pairs[i] = pair{fmt.Sprintf("key%08d", i), size}
			total += size
			largest = max(largest, size)
		}
		key, ok := SplitKey(seq(pairs))
		if !ok {
			t.Fatalf("round %d: %d keys, no split key", round, n)
		}
		got, inside := imbalanceAt(pairs, string(key))
		if !inside {
			t.Fatalf("round %d: split key %q is not a key after the first", round, key)
		}
		best := bestImbalance(pairs)
		slack := int64(0)
		if n > 2*splitSamples {
			slack = total/128 + 4*largest
		}
		if got > best+slack {
			t.Fatalf("round %d (%d keys, %d bytes): split at %q leaves halves %d apart; the best split leaves %d (allowed slack %d)",
				round, n, total, key, got, best, slack)
		}
	}
}

func TestLoadTrackerRate(t *testing.T) {
	base := time.Unix(1_000_000, 0)
	lt := NewLoadTracker(0)
	at := func(sec float64) time.Time { return base.Add(time.Duration(sec * float64(time.Second))) }

	// 100 requests a second for 5 seconds, ticking every 100ms.
	for ms := 0; ms < 5000; ms += 100 {
		lt.RecordN(10)
		lt.Tick(at(float64(ms) / 1000))
	}
	// Half the window was busy: the rate counts the other half as idle.
	if got := lt.Rate(at(5)); got != 50 {
		t.Fatalf("after 5 s at 100/s: Rate = %v, want 50", got)
	}
	for ms := 5000; ms < 12000; ms += 100 {
		for range 10 {
			lt.Record()
		}
		lt.Tick(at(float64(ms) / 1000))
	}
	if got := lt.Rate(at(12)); got != 100 {
		t.Fatalf("after 12 s at 100/s: Rate = %v, want 100", got)
	}
	// Quiet for 4 s: the window still holds 6 busy seconds.
	if got := lt.Rate(at(16)); got != 60 {
		t.Fatalf("4 s after the load stopped: Rate = %v, want 60", got)
	}
	if got := lt.Rate(at(30)); got != 0 {
		t.Fatalf("long after: Rate = %v, want 0", got)
	}
	// Requests not yet ticked are counted by Rate in the current second,
	// which the window reaches one second later.
	lt.RecordN(500)
	if got := lt.Rate(at(30.5)); got != 0 {
		t.Fatalf("current second counted early: Rate = %v", got)
	}
	if got := lt.Rate(at(31)); got != 50 {
		t.Fatalf("Rate = %v, want 500 requests over 10 s", got)
	}
	// A shorter window.
	short := NewLoadTracker(2500 * time.Millisecond) // rounds up to 3 s
	short.RecordN(300)
	short.Tick(at(0))
	if got := short.Rate(at(1)); got != 100 {
		t.Fatalf("3 s window: Rate = %v, want 100", got)
	}
}

func TestLoadTrackerConcurrent(t *testing.T) {
	lt := NewLoadTracker(time.Second)
	now := time.Unix(5000, 0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10000 {
				lt.Record()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 100 {
			lt.Tick(now)
		}
	}()
	wg.Wait()
	lt.Tick(now) // what was recorded after the ticker's last Tick
	if got := lt.Rate(now.Add(time.Second)); got != 40000 {
		t.Fatalf("Rate = %v, want every one of 40000 requests counted", got)
	}
}

// BenchmarkLoadTrackerRecord is the cost a request pays for load tracking.
func BenchmarkLoadTrackerRecord(b *testing.B) {
	lt := NewLoadTracker(0)
	for b.Loop() {
		lt.Record()
	}
}

// BenchmarkLoadTrackerRecordParallel is that cost with every core recording
// on one hot range.
func BenchmarkLoadTrackerRecordParallel(b *testing.B) {
	lt := NewLoadTracker(0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lt.Record()
		}
	})
}

func BenchmarkSplitKey(b *testing.B) {
	pairs := make([]pair, 100000)
	for i := range pairs {
		pairs[i] = pair{fmt.Sprintf("key%08d", i), int64(100 + i%900)}
	}
	for b.Loop() {
		if _, ok := SplitKey(seq(pairs)); !ok {
			b.Fatal("no split key")
		}
	}
}
