package ranges

import (
	"fmt"
	"iter"
	"math/rand/v2"
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
