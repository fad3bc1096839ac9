package ranges

import (
	"bytes"
	"slices"
	"sync/atomic"
	"time"
)

// DefaultLoadWindow is how long a range must stay above --range-split-qps
// before it splits for load.
const DefaultLoadWindow = 10 * time.Second

// loadSampleEvery: Record keeps the key of one request in this many (a power
// of two). loadSamples is the size of the ring of kept keys: at 2,500
// requests a second it holds the keys of the last 1.6 s or so.
const (
	loadSampleEvery = 16
	loadSamples     = 256
)

// minLoadShare is the least share of the sampled load that each side of a
// split for load must carry; below it the range is hot on one key (or a
// few), and splitting it would leave that key as hot as before.
const minLoadShare = 0.2

// LoadTracker measures the requests one range serves, to split a range that
// stays hot (--range-split-qps) and to choose where: a count of requests,
// and a sample of their keys weighted by the requests each stands for.
//
// Record, RecordN and Sample may be called from any goroutine and take no
// lock: Record is one atomic add, and for one request in 16 a copy of its
// key stored in a ring of 256 (BenchmarkLoadTrackerRecord), made by the
// first sample. Tick, Hot,
// Rate, SplitKey and Reset belong to one goroutine (the range's loop), which
// calls Tick at a steady interval with the time; the tracker reads no clock.
type LoadTracker struct {
	total atomic.Int64  // requests recorded, ever
	taken atomic.Uint64 // samples taken, ever: the next slot is taken % loadSamples
	// ring holds the samples, made by the first one after NewLoadTracker
	// or Reset: a tracker of an idle range stays small.
	ring atomic.Pointer[loadRing]

	// Owned by the goroutine that ticks.
	window, maxGap time.Duration
	last           time.Time // the last Tick; zero: none since the start or a Reset
	lastTotal      int64     // total at the last Tick
	// intervals are the rates between successive Ticks, oldest first, down
	// to the first one that began at or before last-window.
	intervals []loadInterval
}

type loadRing [loadSamples]atomic.Pointer[KeyLoad]

type loadInterval struct {
	start time.Time
	rate  float64 // requests per second from start to the next interval's start (or last)
}

// KeyLoad is a key and the requests it stands for in a sample.
type KeyLoad struct {
	Key    []byte
	Weight float64
}

// NewLoadTracker returns a tracker that reports a range hot once it has been
// for window (0: DefaultLoadWindow). Ticks are expected at a steady interval
// well below window; two Ticks more than maxGap apart start the measure over
// (the range was quiet, its loop held up): the requests recorded between them
// are of unknown times, so they cannot show that the range stayed hot.
func NewLoadTracker(window, maxGap time.Duration) *LoadTracker {
	if window <= 0 {
		window = DefaultLoadWindow
	}
	if maxGap <= 0 {
		maxGap = window
	}
	return &LoadTracker{window: window, maxGap: maxGap}
}

// Record counts one request for key. The key is copied if kept.
func (t *LoadTracker) Record(key []byte) {
	if t.total.Add(1)&(loadSampleEvery-1) == 0 {
		t.Sample(key, loadSampleEvery)
	}
}

// RecordN counts n requests whose keys the caller samples itself (Sample).
func (t *LoadTracker) RecordN(n int64) { t.total.Add(n) }

// Sample keeps a copy of key in the sample, standing for weight requests
// (recorded with RecordN), in place of the oldest key kept.
func (t *LoadTracker) Sample(key []byte, weight float64) {
	ring := t.ring.Load()
	if ring == nil {
		t.ring.CompareAndSwap(nil, new(loadRing))
		if ring = t.ring.Load(); ring == nil {
			return // a Reset meanwhile
		}
	}
	ring[(t.taken.Add(1)-1)%loadSamples].Store(&KeyLoad{Key: bytes.Clone(key), Weight: weight})
}

// Tick closes the interval since the previous Tick, at now.
func (t *LoadTracker) Tick(now time.Time) {
	total := t.total.Load()
	n := total - t.lastTotal
	t.lastTotal = total
	if t.last.IsZero() || !now.After(t.last) || now.Sub(t.last) > t.maxGap {
		t.intervals = t.intervals[:0]
		t.last = now
		return
	}
	t.intervals = append(t.intervals, loadInterval{start: t.last, rate: float64(n) / now.Sub(t.last).Seconds()})
	t.last = now
	cut := now.Add(-t.window)
	drop := 0
	for drop+1 < len(t.intervals) && !t.intervals[drop+1].start.After(cut) {
		drop++
	}
	t.intervals = slices.Delete(t.intervals, 0, drop)
}

// Hot reports whether, as of the last Tick, the range has stayed hot for
// the whole window: its rate over the window is above qps requests a
// second, and in no interval between Ticks was it below half of that. The
// half is slack for ticks that come late and clients that pause; a burst
// that the rest of the window does not sustain is not hot.
func (t *LoadTracker) Hot(qps float64) bool {
	if len(t.intervals) == 0 || t.intervals[0].start.After(t.last.Add(-t.window)) {
		return false
	}
	for _, iv := range t.intervals {
		if iv.rate < qps/2 {
			return false
		}
	}
	return t.Rate() > qps
}

// Rate returns the requests per second over the intervals Hot looks at (0
// before the second Tick): the window, and the part of the oldest interval
// before it.
func (t *LoadTracker) Rate() float64 {
	if len(t.intervals) == 0 {
		return 0
	}
	var sum float64
	for i, iv := range t.intervals {
		end := t.last
		if i+1 < len(t.intervals) {
			end = t.intervals[i+1].start
		}
		sum += iv.rate * end.Sub(iv.start).Seconds()
	}
	return sum / t.last.Sub(t.intervals[0].start).Seconds()
}

// SplitKey returns the key at which to split the range so that the sampled
// load of the keys for which keep is true divides most evenly (see
// LoadSplitKey).
func (t *LoadTracker) SplitKey(keep func(key []byte) bool) ([]byte, bool) {
	ring := t.ring.Load()
	if ring == nil {
		return nil, false
	}
	var loads []KeyLoad
	for i := range ring {
		if s := ring[i].Load(); s != nil && keep(s.Key) {
			loads = append(loads, *s)
		}
	}
	return LoadSplitKey(loads)
}

// Reset forgets what was measured and sampled: the range changed (it split,
// or this node just became its leader).
func (t *LoadTracker) Reset() {
	t.last = time.Time{}
	t.intervals = t.intervals[:0]
	t.ring.Store(nil)
}

// LoadSplitKey returns the key at which to split a range so that the load of
// loads (keys with the requests each stands for, in any order, a key any
// number of times) divides as evenly as possible between the keys before it
// and the keys from it on. The key is one of loads' and never the least, so
// both sides carry load. ok is false if no split leaves each side at least a
// fifth of the load: all of it (or most) is on one key. The key returned is
// a copy.
func LoadSplitKey(loads []KeyLoad) (key []byte, ok bool) {
	loads = slices.DeleteFunc(slices.Clone(loads), func(l KeyLoad) bool { return !(l.Weight > 0) })
	slices.SortFunc(loads, func(a, b KeyLoad) int { return bytes.Compare(a.Key, b.Key) })
	merged := loads[:0]
	var total float64
	for _, l := range loads {
		total += l.Weight
		if len(merged) > 0 && bytes.Equal(merged[len(merged)-1].Key, l.Key) {
			merged[len(merged)-1].Weight += l.Weight
			continue
		}
		merged = append(merged, l)
	}
	best, bestGap := -1, 0.0
	left := 0.0
	for i := 1; i < len(merged); i++ {
		left += merged[i-1].Weight
		gap := 2*left - total
		if gap < 0 {
			gap = -gap
		}
		if best < 0 || gap < bestGap {
			best, bestGap = i, gap
		}
	}
	if best < 0 || (total-bestGap)/2 < minLoadShare*total {
		return nil, false
	}
	return bytes.Clone(merged[best].Key), true
}
