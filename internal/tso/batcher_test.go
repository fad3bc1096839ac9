package tso

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeFetch hands out stamps from a counter, optionally waiting for a gate
// before each fetch, and records the size of every fetch.
type fakeFetch struct {
	mu     sync.Mutex
	next   uint64
	sizes  []int
	gate   chan struct{} // if set, each fetch takes one value from it
	fail   error
	repeat bool // hand out the same stamps again (a broken oracle)
}

func (f *fakeFetch) fetch(ctx context.Context, n int) (uint64, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sizes = append(f.sizes, n)
	if f.fail != nil {
		return 0, f.fail
	}
	if f.repeat {
		return 1, nil
	}
	first := f.next + 1
	f.next += uint64(n)
	return first, nil
}

func (f *fakeFetch) fetches() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.sizes...)
}

func newBatcher(t *testing.T, f *fakeFetch) *Batcher {
	t.Helper()
	b, err := NewBatcher(BatcherConfig{Fetch: f.fetch})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func queued(b *Batcher) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// TestBatcherOrderAndBatching: while one fetch is in flight, calls queue;
// the next fetch serves them all, in the order they arrived.
func TestBatcherOrderAndBatching(t *testing.T) {
	f := &fakeFetch{gate: make(chan struct{})}
	b := newBatcher(t, f)
	type result struct {
		first uint64
		err   error
	}
	const callers = 50
	results := make([]chan result, callers+1)
	call := func(i, n int) {
		results[i] = make(chan result, 1)
		go func() {
			first, err := b.Next(context.Background(), n)
			results[i] <- result{first, err}
		}()
	}
	call(0, 1) // its fetch waits at the gate
	waitFor(t, "the first fetch to start", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.fetching
	})
	for i := 1; i <= callers; i++ {
		call(i, 1+i%4)
		waitFor(t, "the call to queue", func() bool { return queued(b) == i })
	}
	f.gate <- struct{}{}
	f.gate <- struct{}{}
	var prevEnd uint64
	for i := 0; i <= callers; i++ {
		r := <-results[i]
		if r.err != nil {
			t.Fatalf("call %d: %v", i, r.err)
		}
		n := uint64(1)
		if i > 0 {
			n = uint64(1 + i%4)
		}
		if r.first != prevEnd+1 {
			t.Fatalf("call %d got %d; the call before it ended at %d (stamps out of arrival order or with a gap)", i, r.first, prevEnd)
		}
		prevEnd = r.first + n - 1
	}
	if sizes := f.fetches(); len(sizes) != 2 || sizes[0] != 1 {
		t.Fatalf("fetches of %v stamps; want the first call alone, then every queued call in one", sizes)
	}
}

// TestBatcherWithOracle: several ranges' Batchers over one Oracle, many
// concurrent proposals each: every stamp unique, and a proposal that
// started after another returned gets a larger stamp, whatever the ranges.
func TestBatcherWithOracle(t *testing.T) {
	meta := &fakeMeta{}
	o := newOracle(t, meta, Config{MinStep: 16, MaxStep: 256})
	o.Start(0)
	var fetches atomic.Int64
	var batchers []*Batcher
	for range 3 {
		b, err := NewBatcher(BatcherConfig{Fetch: func(ctx context.Context, n int) (uint64, error) {
			fetches.Add(1)
			return o.Next(ctx, n)
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		batchers = append(batchers, b)
	}
	var log stampLog
	var wg sync.WaitGroup
	const perRange, calls = 8, 100
	for r, b := range batchers {
		for g := range perRange {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range calls {
					n := 1 + (r+g+i)%3
					before := log.before()
					first, err := b.Next(context.Background(), n)
					if err != nil {
						t.Errorf("Next: %v", err)
						return
					}
					log.record(t, before, first, n)
				}
			}()
		}
	}
	wg.Wait()
	log.checkUnique(t)
	total := int64(len(batchers) * perRange * calls)
	t.Logf("%d Next calls, %d fetches, %d persists", total, fetches.Load(), meta.count())
	if fetches.Load() >= total {
		t.Fatalf("%d fetches for %d calls: nothing was batched", fetches.Load(), total)
	}
}

func TestBatcherFetchError(t *testing.T) {
	boom := errors.New("meta leader unreachable")
	f := &fakeFetch{fail: boom}
	b := newBatcher(t, f)
	if _, err := b.Next(context.Background(), 2); !errors.Is(err, boom) {
		t.Fatalf("Next with a failing fetch = %v, want it to wrap %v", err, boom)
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	if first, err := b.Next(context.Background(), 2); err != nil || first != 1 {
		t.Fatalf("Next after the fetch recovered = %d, %v", first, err)
	}
	f.mu.Lock()
	f.repeat = true
	f.mu.Unlock()
	if _, err := b.Next(context.Background(), 1); !errors.Is(err, ErrNotIncreasing) {
		t.Fatalf("fetch returning old stamps: Next = %v, want ErrNotIncreasing", err)
	}
}

// TestBatcherCancelAndClose: a caller that gives up returns at once; the
// stamps fetched for it are not handed to anyone; Close fails the queued
// calls and cancels the fetch in flight.
func TestBatcherCancelAndClose(t *testing.T) {
	f := &fakeFetch{gate: make(chan struct{})}
	b, err := NewBatcher(BatcherConfig{Fetch: f.fetch})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Next(ctx, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with a blocked fetch = %v, want the deadline", err)
	}
	done := make(chan uint64, 1)
	go func() {
		first, err := b.Next(context.Background(), 1)
		if err != nil {
			t.Errorf("Next: %v", err)
		}
		done <- first
	}()
	waitFor(t, "the call to queue", func() bool { return queued(b) == 1 })
	f.gate <- struct{}{} // the abandoned call's fetch
	f.gate <- struct{}{}
	if first := <-done; first != 4 {
		t.Fatalf("call after an abandoned one got %d, want 4 (1-3 went to the abandoned call)", first)
	}

	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := b.Next(context.Background(), 1)
			errc <- err
		}()
	}
	waitFor(t, "one call in flight and one queued", func() bool { return queued(b) == 1 })
	b.Close()
	for range 2 {
		if err := <-errc; !errors.Is(err, ErrClosed) && !errors.Is(err, context.Canceled) {
			t.Fatalf("Next during Close = %v, want ErrClosed or the canceled fetch", err)
		}
	}
	if _, err := b.Next(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if _, err := NewBatcher(BatcherConfig{}); err == nil {
		t.Fatal("NewBatcher without Fetch accepted")
	}
	if _, err := b.Next(context.Background(), DefaultMaxBatch+1); err == nil {
		t.Fatal("Next beyond MaxBatch accepted")
	}
}
