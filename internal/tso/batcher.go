package tso

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrNotIncreasing: a fetch returned stamps not above those handed out
// before, which an Oracle never does; the batch is failed rather than
// handing out a revision that could go backwards.
var ErrNotIncreasing = errors.New("tso: fetched timestamps do not increase")

// Defaults of BatcherConfig.
const (
	DefaultFetchTimeout = 5 * time.Second
	DefaultMaxBatch     = 1 << 16
)

// BatcherConfig configures a Batcher.
type BatcherConfig struct {
	// Fetch asks the Oracle (on the meta leader, perhaps over the network)
	// for n consecutive stamps and returns the first. Required.
	Fetch func(ctx context.Context, n int) (first uint64, err error)
	// FetchTimeout bounds one Fetch.
	FetchTimeout time.Duration
	// MaxBatch bounds the stamps one Fetch asks for (at most MaxN); a
	// single Next asking for more is refused.
	MaxBatch int
}

// Validate reports a configuration NewBatcher would refuse.
func (c BatcherConfig) Validate() error {
	switch {
	case c.Fetch == nil:
		return errors.New("tso: BatcherConfig.Fetch is required")
	case c.FetchTimeout < 0:
		return fmt.Errorf("tso: BatcherConfig.FetchTimeout is %v; it must not be negative", c.FetchTimeout)
	case c.MaxBatch < 0 || c.MaxBatch > MaxN:
		return fmt.Errorf("tso: BatcherConfig.MaxBatch is %d; it must be from 1 to %d", c.MaxBatch, MaxN)
	}
	return nil
}

// Batcher is the client side of the Oracle for one range: it gathers the
// stamps wanted by concurrent proposals into one Fetch, with at most one
// Fetch in flight, and hands them out in the order the Next calls arrived.
// Safe for concurrent use.
type Batcher struct {
	cfg    BatcherConfig
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the fetch goroutine

	mu       sync.Mutex
	closed   bool
	queue    []*stampRequest // arrived, waiting for the next Fetch, in arrival order
	fetching bool            // Invariant: at most one Fetch in flight
	last     uint64          // the largest stamp handed out, 0 before the first
}

type stampRequest struct {
	n     int
	first uint64
	err   error
	done  chan struct{} // closed once first or err is set
}

// NewBatcher returns a Batcher that fetches through cfg.Fetch.
func NewBatcher(cfg BatcherConfig) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Batcher{cfg: cfg, ctx: ctx, cancel: cancel}, nil
}

// Next returns the first of n consecutive stamps. Calls are served in the
// order they arrive: a call that arrived after another (it started after
// the other's Next was entered and the other had queued) gets larger
// stamps. Stamps fetched for a caller that gave up (ctx) are skipped, never
// handed to anyone else.
func (b *Batcher) Next(ctx context.Context, n int) (first uint64, err error) {
	if n < 1 || n > b.cfg.MaxBatch {
		return 0, fmt.Errorf("tso: Next of %d stamps; it takes 1 to %d", n, b.cfg.MaxBatch)
	}
	req := &stampRequest{n: n, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, ErrClosed
	}
	b.queue = append(b.queue, req)
	if !b.fetching {
		b.fetchLocked()
	}
	b.mu.Unlock()
	select {
	case <-req.done:
		return req.first, req.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// fetchLocked takes the queued requests, as many as fit in MaxBatch and at
// least one, and fetches their stamps in a goroutine.
func (b *Batcher) fetchLocked() {
	total, k := 0, 0
	for k < len(b.queue) && total+b.queue[k].n <= b.cfg.MaxBatch {
		total += b.queue[k].n
		k++
	}
	batch := b.queue[:k:k]
	b.queue = b.queue[k:]
	b.fetching = true
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.FetchTimeout)
		first, err := b.cfg.Fetch(ctx, total)
		cancel()
		b.mu.Lock()
		defer b.mu.Unlock()
		if err == nil && first <= b.last {
			err = fmt.Errorf("%w: got %d after %d", ErrNotIncreasing, first, b.last)
		}
		if err == nil {
			b.last = first + uint64(total) - 1
		} else {
			err = fmt.Errorf("tso: fetch %d stamps: %w", total, err)
		}
		for _, req := range batch {
			req.first, req.err = first, err
			first += uint64(req.n)
			close(req.done)
		}
		b.fetching = false
		if len(b.queue) > 0 && !b.closed {
			b.fetchLocked()
		}
	}()
}

// Close fails the calls still queued (ErrClosed), cancels the Fetch in
// flight and waits for it to return.
func (b *Batcher) Close() {
	b.mu.Lock()
	b.closed = true
	for _, req := range b.queue {
		req.err = ErrClosed
		close(req.done)
	}
	b.queue = nil
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}
