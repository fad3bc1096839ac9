package ranges

import (
	"bytes"
	"iter"
	"sync"
	"sync/atomic"
	"time"
)

// splitSamples bounds the keys SplitKey keeps: up to 2*splitSamples, so a
// range of any size is scanned in constant memory.
const splitSamples = 512

// SplitKey returns the key at which to split a range so that its two halves
// hold as close to the same number of bytes as possible: pairs yields the
// range's keys in ascending order, each with the bytes it takes. The key is
// never the range's first key, so both halves hold data; ok is false if the
// range holds fewer than two keys.
//
// It reads pairs once, keeping at most 1024 keys: with up to that many keys
// the answer is the best split. Beyond, it keeps a sample of 512 to 1024
// keys spread evenly by bytes and picks the best of them, so the halves
// differ by at most about 1/128 of the range's bytes (plus a few keys'
// sizes) more than the best split's (TestSplitKeyRandom). Negative sizes
// count as 0. The key returned is a copy; pairs may reuse its buffers.
func SplitKey(pairs iter.Seq2[[]byte, int64]) (key []byte, ok bool) {
	// Keep (key, bytes before it) samples; when too many, drop every other
	// one and sample half as often. Sample 0 is always the range's first key,
	// which is never a candidate.
	type sample struct {
		key    []byte
		before int64
	}
	var (
		samples []sample
		total   int64
		step    int64 // sample a key when at least step bytes precede it since the last sample
		n       int
	)
	for k, size := range pairs {
		n++
		if len(samples) == 0 || total-samples[len(samples)-1].before >= step {
			samples = append(samples, sample{bytes.Clone(k), total})
			if len(samples) > 2*splitSamples {
				kept := samples[:1]
				for i := 2; i < len(samples); i += 2 {
					kept = append(kept, samples[i])
				}
				samples = kept
				step = max(1, 2*step, total/splitSamples)
			}
		}
		total += max(size, 0)
	}
	if n < 2 || len(samples) < 2 {
		return nil, false
	}
	best := 1
	for i := 2; i < len(samples); i++ {
		if imbalance(samples[i].before, total) < imbalance(samples[best].before, total) {
			best = i
		}
	}
	return samples[best].key, true
}

// imbalance is |left - right| for a split with left bytes before it.
func imbalance(left, total int64) int64 {
	d := 2*left - total
	if d < 0 {
		return -d
	}
	return d
}

// LoadTracker measures a range's request rate over a sliding window of
// whole seconds (for --range-split-qps). Record is one atomic add, cheap
// enough for every request; the time is read only by Tick, which the node's
// ticker calls (every tick or so), and by Rate. Safe for concurrent use.
type LoadTracker struct {
	pending atomic.Int64 // recorded since the last Tick

	mu      sync.Mutex
	window  int64       // seconds
	buckets []loadCount // ring indexed by second mod len; len = window+1
}

type loadCount struct {
	sec int64 // Unix second counted; a bucket of another second is stale
	n   int64
}

// DefaultLoadWindow is the window of --range-split-qps: a range splits for
// load if it stays hot this long.
const DefaultLoadWindow = 10 * time.Second

// NewLoadTracker returns a tracker over the given window, rounded up to
// whole seconds (0: DefaultLoadWindow).
func NewLoadTracker(window time.Duration) *LoadTracker {
	if window <= 0 {
		window = DefaultLoadWindow
	}
	secs := int64((window + time.Second - 1) / time.Second)
	return &LoadTracker{window: secs, buckets: make([]loadCount, secs+1)}
}

// Record counts one request.
func (t *LoadTracker) Record() { t.pending.Add(1) }

// RecordN counts n requests (a batch).
func (t *LoadTracker) RecordN(n int64) { t.pending.Add(n) }

// Tick files the requests recorded since the last Tick under the second of
// now. Requests are so dated to within the interval between ticks.
func (t *LoadTracker) Tick(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tickLocked(now.Unix())
}

func (t *LoadTracker) tickLocked(sec int64) {
	n := t.pending.Swap(0)
	b := &t.buckets[mod(sec, int64(len(t.buckets)))]
	if b.sec != sec {
		*b = loadCount{sec: sec}
	}
	b.n += n
}

// Rate returns the requests per second over the window's whole seconds
// before now's second (Tick is implied). A tracker younger than the window
// counts the missing seconds as idle, so a range is reported hot only after
// it has been hot for the whole window.
func (t *LoadTracker) Rate(now time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	sec := now.Unix()
	t.tickLocked(sec)
	var sum int64
	for _, b := range t.buckets {
		if b.sec >= sec-t.window && b.sec < sec {
			sum += b.n
		}
	}
	return float64(sum) / float64(t.window)
}

func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}
