package ranges

import (
	"bytes"
	"iter"
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
