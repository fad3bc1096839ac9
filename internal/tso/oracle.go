package tso

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrNotServing: the Oracle is not started, or was stopped (this node
	// does not lead the meta range); ask the leader.
	ErrNotServing = errors.New("tso: not serving timestamps")
	// ErrExhausted: the values would pass 2^64-1.
	ErrExhausted = errors.New("tso: timestamp space exhausted")
	// ErrClosed: Close was called.
	ErrClosed = errors.New("tso: closed")
)

// Defaults of Config.
const (
	DefaultWindow         = 3 * time.Second
	DefaultMinStep        = 1024
	DefaultMaxStep        = 1 << 24
	DefaultPersistTimeout = 5 * time.Second
	// MaxN is the most values one Next call may ask for.
	MaxN = 1 << 20
)

// Config configures an Oracle.
type Config struct {
	// Persist durably records the high-water mark hw (a Raft proposal on
	// the meta range). Once it returns nil, every later Start, on this node
	// or another, must be given a mark >= hw; its state machine keeps the
	// largest mark it applies. Required.
	Persist func(ctx context.Context, hw uint64) error
	// Lease reports whether this node still certainly leads the meta range:
	// a leader lease, as for lease-based reads (CheckQuorum, and a quorum
	// heard from within the election timeout less a margin for clock
	// drift). Next hands nothing out while it is false. Without it, a
	// deposed leader that has not yet noticed could hand out values from
	// memory below those its successor already handed out. Required; it
	// is called under the Oracle's lock on every Next, so it must be cheap
	// and must not call the Oracle.
	Lease func() bool
	// Window is how long, at the rate values were handed out since the last
	// persist, the values reserved by one persist last. A leader change
	// skips at most what is left of a reservation.
	Window time.Duration
	// MinStep and MaxStep bound the values one persist reserves beyond
	// what waiting callers need.
	MinStep, MaxStep uint64
	// PersistTimeout bounds one Persist call.
	PersistTimeout time.Duration
	// Now is the clock that measures the rate (time.Now if nil).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MinStep == 0 {
		c.MinStep = DefaultMinStep
	}
	if c.MaxStep == 0 {
		c.MaxStep = max(DefaultMaxStep, c.MinStep)
	}
	if c.PersistTimeout == 0 {
		c.PersistTimeout = DefaultPersistTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration New would refuse.
func (c Config) Validate() error {
	switch {
	case c.Persist == nil:
		return errors.New("tso: Config.Persist is required")
	case c.Lease == nil:
		return errors.New("tso: Config.Lease is required")
	case c.Window < 0:
		return fmt.Errorf("tso: Config.Window is %v; it must not be negative", c.Window)
	case c.MaxStep != 0 && c.MaxStep < c.MinStep:
		return fmt.Errorf("tso: Config.MaxStep %d is below MinStep %d", c.MaxStep, c.MinStep)
	case c.PersistTimeout < 0:
		return fmt.Errorf("tso: Config.PersistTimeout is %v; it must not be negative", c.PersistTimeout)
	}
	return nil
}

// Oracle hands out cluster-wide timestamps (revisions): strictly increasing
// values, none ever handed out twice, across restarts and leader changes.
// It serves only between Start and Stop; see the package documentation for
// how the leader of the meta range drives it. Safe for concurrent use.
type Oracle struct {
	cfg    Config
	ctx    context.Context // canceled by Close; parent of every persist's
	cancel context.CancelFunc
	wg     sync.WaitGroup // persist goroutines

	mu        sync.Mutex
	serving   bool
	closed    bool
	exhausted bool          // started at the top of the value space
	epoch     uint64        // bumped by Start and Stop: a persist of another epoch does not raise hw
	changed   chan struct{} // closed and replaced by Start and Stop, to wake waiters
	// next is the next value to hand out, hw the persisted high-water mark.
	// Every value handed out is at or below a mark already persisted:
	// next <= hw+1 while serving, unless a floor (NextAbove) raised next
	// above it, and then nothing is handed out until a persist covers it.
	next, hw uint64
	waiting  uint64       // values wanted by callers waiting for a persist
	inflight *persistCall // the persist of this epoch under way, if any
	// The rate estimate: since rateAt, next-rateNext values were handed
	// out; step is the reservation it gave last.
	rateAt   time.Time
	rateNext uint64
	step     uint64
}

type persistCall struct {
	target uint64
	done   chan struct{} // closed when Persist returned; err is set before
	err    error
}

// New returns a stopped Oracle.
func New(cfg Config) (*Oracle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Oracle{cfg: cfg, ctx: ctx, cancel: cancel, changed: make(chan struct{})}, nil
}

// Start makes the Oracle serve values above persistedHW, the largest mark
// Persist has recorded (read by the new meta leader once it has applied an
// entry of its own term, so every mark the old leader persisted is in it).
func (o *Oracle) Start(persistedHW uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	o.bumpEpochLocked()
	o.serving = true
	// At the very top of the space next would wrap to 0: nothing is left.
	o.exhausted = persistedHW == math.MaxUint64
	o.next, o.hw = persistedHW+1, persistedHW
	o.rateAt, o.rateNext, o.step = o.cfg.Now(), o.next, o.cfg.MinStep
}

// Stop makes the Oracle refuse Next (ErrNotServing) until the next Start:
// call it as soon as this node stops leading the meta range.
func (o *Oracle) Stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.serving = false
	o.bumpEpochLocked()
}

func (o *Oracle) bumpEpochLocked() {
	o.epoch++
	o.inflight = nil
	close(o.changed)
	o.changed = make(chan struct{})
}

// Close stops the Oracle for good and waits for its persists to return
// (their contexts are canceled).
func (o *Oracle) Close() {
	o.mu.Lock()
	if !o.closed {
		o.closed = true
		o.serving = false
		o.bumpEpochLocked()
	}
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
}

// Next hands out n consecutive values first, first+1, ..., first+n-1, each
// greater than every value this Oracle or any before it handed out. It
// returns from memory while the persisted mark covers them; otherwise it
// waits for a persist, which it shares with every caller waiting at the
// time. A failed persist fails the callers that waited for it (the error
// wraps Persist's) and hands out nothing beyond the mark persisted before.
func (o *Oracle) Next(ctx context.Context, n int) (first uint64, err error) {
	return o.NextAbove(ctx, n, 0)
}

// NextAbove is Next with first > floor: the values skip to floor+1 when
// floor is at or above the next one (a range whose revisions came from
// elsewhere, such as log indexes written before its cluster stamped, asks
// for values above its own). The skipped values are never handed out.
func (o *Oracle) NextAbove(ctx context.Context, n int, floor uint64) (first uint64, err error) {
	if n < 1 || n > MaxN {
		return 0, fmt.Errorf("tso: Next of %d values; it takes 1 to %d", n, MaxN)
	}
	want := uint64(n)
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		switch {
		case o.closed:
			return 0, ErrClosed
		case !o.serving || !o.cfg.Lease():
			return 0, ErrNotServing
		case o.exhausted || floor > math.MaxUint64-want || o.next > math.MaxUint64-want:
			return 0, ErrExhausted
		}
		if o.next <= floor {
			o.next = floor + 1 // handed out only once a persisted mark covers it
		}
		if o.next+want-1 <= o.hw {
			first = o.next
			o.next += want
			o.prefetchLocked()
			return first, nil
		}
		o.waiting += want
		call := o.inflight
		if call == nil {
			if call, err = o.startPersistLocked(); err != nil {
				o.waiting -= want
				return 0, err
			}
		}
		changed := o.changed
		o.mu.Unlock()
		select {
		case <-call.done:
		case <-changed:
		case <-ctx.Done():
		}
		o.mu.Lock()
		o.waiting -= want
		select {
		case <-call.done:
			if call.err != nil {
				return 0, call.err
			}
		default:
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
	}
}

// prefetchLocked starts the next persist once less than a quarter of the
// last step is left, so that callers rarely wait. It does not read the
// clock: Next from memory stays a few instructions under the lock.
func (o *Oracle) prefetchLocked() {
	if o.inflight == nil && o.hw-(o.next-1) < o.step/4 {
		o.startPersistLocked() // an error (exhaustion) surfaces on a later Next
	}
}

// stepLocked is the reservation beyond demand: Window's worth of values at
// the rate measured over the last rateInterval or more, within [MinStep,
// MaxStep].
func (o *Oracle) stepLocked(now time.Time) uint64 {
	elapsed := now.Sub(o.rateAt)
	if elapsed < rateInterval {
		return o.step
	}
	rate := float64(o.next-o.rateNext) / elapsed.Seconds()
	step := rate * o.cfg.Window.Seconds()
	switch {
	case step < float64(o.cfg.MinStep):
		o.step = o.cfg.MinStep
	case step > float64(o.cfg.MaxStep):
		o.step = o.cfg.MaxStep
	default:
		o.step = uint64(step)
	}
	o.rateAt, o.rateNext = now, o.next
	return o.step
}

// rateInterval is the shortest time the rate is measured over, so that a
// burst within one instant does not read as no rate or an infinite one.
const rateInterval = time.Second

// startPersistLocked persists a mark covering every waiting caller plus a
// step, in a goroutine of its own: callers wait for it with their own
// contexts, and one leaving does not cancel it for the others.
func (o *Oracle) startPersistLocked() (*persistCall, error) {
	step := o.stepLocked(o.cfg.Now())
	base := max(o.hw, o.next-1) // the values still in memory are kept; a floor may have raised next above hw
	need := o.waiting + step
	if base > math.MaxUint64-need {
		need = math.MaxUint64 - base
		if need < o.waiting {
			return nil, ErrExhausted
		}
	}
	call := &persistCall{target: base + need, done: make(chan struct{})}
	o.inflight = call
	epoch := o.epoch
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		ctx, cancel := context.WithTimeout(o.ctx, o.cfg.PersistTimeout)
		err := o.cfg.Persist(ctx, call.target)
		cancel()
		o.mu.Lock()
		if err != nil {
			call.err = fmt.Errorf("tso: persist high-water mark %d: %w", call.target, err)
		} else if o.epoch == epoch && call.target > o.hw {
			o.hw = call.target
		}
		if o.inflight == call {
			o.inflight = nil
		}
		o.mu.Unlock()
		close(call.done)
	}()
	return call, nil
}

// HighWater returns the persisted mark this Oracle serves below, and the
// next value it would hand out (for status and tests).
func (o *Oracle) HighWater() (hw, next uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hw, o.next
}
