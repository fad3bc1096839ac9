package tso

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeMeta stands for the meta range: it keeps the largest mark persisted,
// as its state machine must.
type fakeMeta struct {
	mu    sync.Mutex
	mark  uint64
	calls int
	fail  error
	hold  chan struct{} // if set, Persist waits for it to be closed
	delay func() time.Duration
}

func (f *fakeMeta) persist(ctx context.Context, hw uint64) error {
	f.mu.Lock()
	f.calls++
	fail, hold, delay := f.fail, f.hold, f.delay
	f.mu.Unlock()
	if delay != nil {
		time.Sleep(delay())
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail
	}
	f.mu.Lock()
	f.mark = max(f.mark, hw)
	f.mu.Unlock()
	return nil
}

func (f *fakeMeta) persisted() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mark
}

func (f *fakeMeta) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeMeta) set(fn func(*fakeMeta)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func newOracle(t *testing.T, meta *fakeMeta, cfg Config) *Oracle {
	t.Helper()
	cfg.Persist = meta.persist
	if cfg.Lease == nil {
		cfg.Lease = func() bool { return true }
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return o
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConfigValidate(t *testing.T) {
	persist := func(context.Context, uint64) error { return nil }
	lease := func() bool { return true }
	for _, c := range []Config{
		{},
		{Persist: persist},
		{Lease: lease},
		{Persist: persist, Lease: lease, Window: -1},
		{Persist: persist, Lease: lease, MinStep: 10, MaxStep: 5},
		{Persist: persist, Lease: lease, PersistTimeout: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// stampLog checks the guarantee users see: a Next that started after
// another returned gets larger values, and no value is handed out twice.
type stampLog struct {
	mu        sync.Mutex
	completed atomic.Uint64 // the largest value of every Next that has returned
	got       []uint64
}

func (l *stampLog) before() uint64 { return l.completed.Load() }

func (l *stampLog) record(t *testing.T, before, first uint64, n int) {
	if first <= before {
		t.Errorf("Next returned %d, not above %d, returned before it started", first, before)
	}
	last := first + uint64(n) - 1
	for {
		cur := l.completed.Load()
		if last <= cur || l.completed.CompareAndSwap(cur, last) {
			break
		}
	}
	l.mu.Lock()
	for v := first; v <= last; v++ {
		l.got = append(l.got, v)
	}
	l.mu.Unlock()
}

func (l *stampLog) checkUnique(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.got)
	slices.Sort(s)
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			t.Fatalf("value %d handed out twice", s[i])
		}
	}
}

// TestOracleMonotonicConcurrent: many callers, small steps so that persists
// happen all the time and callers wait for them.
func TestOracleMonotonicConcurrent(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	meta := &fakeMeta{}
	var rngMu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 3))
	meta.delay = func() time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		return time.Duration(rng.IntN(200)) * time.Microsecond
	}
	o := newOracle(t, meta, Config{MinStep: 8, MaxStep: 64})
	o.Start(0)
	var log stampLog
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				n := 1 + (g+i)%5
				before := log.before()
				first, err := o.Next(context.Background(), n)
				if err != nil {
					t.Errorf("Next: %v", err)
					return
				}
				if first+uint64(n)-1 > meta.persisted() {
					t.Errorf("handed out %d..%d above the persisted mark %d", first, first+uint64(n)-1, meta.persisted())
				}
				log.record(t, before, first, n)
			}
		}()
	}
	wg.Wait()
	log.checkUnique(t)
	if len(log.got) != 8*300*3 {
		t.Fatalf("%d values handed out, want %d", len(log.got), 8*300*3)
	}
	if calls := meta.count(); calls < 10 {
		t.Fatalf("only %d persists for %d values with steps of at most 64", calls, len(log.got))
	}
}

// TestOraclePersistFailure: a failing persist surfaces as an error and
// nothing is handed out beyond the mark persisted before it.
func TestOraclePersistFailure(t *testing.T) {
	meta := &fakeMeta{}
	o := newOracle(t, meta, Config{MinStep: 10, MaxStep: 10})
	o.Start(100)
	ctx := context.Background()
	first, err := o.Next(ctx, 1)
	if err != nil || first != 101 {
		t.Fatalf("first Next = %d, %v; want 101", first, err)
	}
	boom := errors.New("meta range unavailable")
	meta.set(func(f *fakeMeta) { f.fail = boom })
	mark := meta.persisted()
	var last uint64
	for {
		v, err := o.Next(ctx, 1)
		if err != nil {
			if !errors.Is(err, boom) {
				t.Fatalf("Next error %v does not wrap the persist error", err)
			}
			break
		}
		if v > mark {
			t.Fatalf("handed out %d above the persisted mark %d", v, mark)
		}
		last = v
	}
	if last != mark {
		t.Fatalf("stopped at %d; the persisted mark %d should have been handed out to the end", last, mark)
	}
	// Still failing: still an error, still nothing more.
	if _, err := o.Next(ctx, 3); !errors.Is(err, boom) {
		t.Fatalf("second Next with failing persist: %v", err)
	}
	if hw, next := o.HighWater(); hw != mark || next != mark+1 {
		t.Fatalf("after failures: hw %d next %d, want %d and %d", hw, next, mark, mark+1)
	}
	// Recovered: values continue above.
	meta.set(func(f *fakeMeta) { f.fail = nil })
	v, err := o.Next(ctx, 1)
	if err != nil || v != mark+1 {
		t.Fatalf("Next after recovery = %d, %v; want %d", v, err, mark+1)
	}
}

// TestOracleRestartAndLeaderChange: leadership moves between Oracles
// (other nodes) and an Oracle restarts; each new leader starts at the
// persisted mark and never repeats a value, even with callers on the old
// leader until it stops.
func TestOracleRestartAndLeaderChange(t *testing.T) {
	meta := &fakeMeta{}
	var log stampLog
	var prev *Oracle
	for round := range 6 {
		o := prev
		if round%2 == 0 || o == nil {
			// Another node (or a restarted process): a fresh Oracle.
			var err error
			if o, err = New(Config{Persist: meta.persist, Lease: func() bool { return true }, MinStep: 50, MaxStep: 50}); err != nil {
				t.Fatal(err)
			}
		}
		if prev != nil {
			prev.Stop()
		}
		// The new leader reads the mark after the old leader's last
		// persist; persists in flight either landed or will fail.
		o.Start(meta.persisted())
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					before := log.before()
					first, err := o.Next(context.Background(), 1+i%3)
					if err != nil {
						t.Errorf("round %d: Next: %v", round, err)
						return
					}
					log.record(t, before, first, 1+i%3)
				}
			}()
		}
		wg.Wait()
		if prev != nil && prev != o {
			if _, err := prev.Next(context.Background(), 1); !errors.Is(err, ErrNotServing) {
				t.Fatalf("stopped Oracle: Next = %v, want ErrNotServing", err)
			}
			prev.Close()
		}
		prev = o
	}
	prev.Close()
	if _, err := prev.Next(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed Oracle: Next = %v, want ErrClosed", err)
	}
	log.checkUnique(t)
}

// TestOracleBatchesPersists: callers that arrive while a persist is in
// flight share the next one.
func TestOracleBatchesPersists(t *testing.T) {
	hold := make(chan struct{})
	meta := &fakeMeta{hold: hold}
	o := newOracle(t, meta, Config{MinStep: 1, MaxStep: 1})
	o.Start(0)
	const callers = 100
	var log stampLog
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, err := o.Next(context.Background(), 1)
			if err != nil {
				t.Errorf("Next: %v", err)
				return
			}
			log.record(t, 0, first, 1)
		}()
	}
	waitFor(t, "every caller to wait for the persist", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.waiting == callers
	})
	meta.set(func(f *fakeMeta) { f.hold = nil })
	close(hold)
	wg.Wait()
	log.checkUnique(t)
	// The first persist covered those waiting when it started (perhaps
	// one); the second every caller left.
	if calls := meta.count(); calls > 2 {
		t.Fatalf("%d concurrent callers made %d persists, want at most 2", callers, calls)
	}
	if hw, _ := o.HighWater(); hw < callers {
		t.Fatalf("high-water mark %d below the %d values handed out", hw, callers)
	}
}

// TestOracleStopWakesWaiters: callers waiting for a persist when the node
// loses leadership get ErrNotServing at once, not after the persist.
func TestOracleStopWakesWaiters(t *testing.T) {
	hold := make(chan struct{})
	meta := &fakeMeta{hold: hold}
	o := newOracle(t, meta, Config{})
	o.Start(0)
	errc := make(chan error, 1)
	go func() {
		_, err := o.Next(context.Background(), 1)
		errc <- err
	}()
	waitFor(t, "the caller to wait", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.waiting == 1
	})
	o.Stop()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrNotServing) {
			t.Fatalf("waiting Next after Stop = %v, want ErrNotServing", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not wake the waiting caller")
	}
	// The old epoch's persist landing later must not let a new epoch hand
	// out values below its start.
	o.Start(5000)
	close(hold)
	v, err := o.Next(context.Background(), 1)
	if err != nil || v != 5001 {
		t.Fatalf("Next after Start(5000) = %d, %v; want 5001", v, err)
	}
}

func TestOracleNextContext(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	meta := &fakeMeta{hold: hold}
	o := newOracle(t, meta, Config{})
	if _, err := o.Next(context.Background(), 1); !errors.Is(err, ErrNotServing) {
		t.Fatalf("Next before Start = %v, want ErrNotServing", err)
	}
	o.Start(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := o.Next(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with a blocked persist = %v, want the context's deadline", err)
	}
	for _, n := range []int{0, -1, MaxN + 1} {
		if _, err := o.Next(context.Background(), n); err == nil {
			t.Errorf("Next(%d) accepted", n)
		}
	}
}

// TestOracleStepFollowsRate: the reservation grows to Window's worth of
// values at the rate they are handed out.
func TestOracleStepFollowsRate(t *testing.T) {
	var now atomic.Int64
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	meta := &fakeMeta{}
	o := newOracle(t, meta, Config{MinStep: 100, MaxStep: 1 << 30, Window: 3 * time.Second, Now: clock})
	o.Start(0)
	ctx := context.Background()
	// 10,000 values a second for a few seconds of the fake clock. In the
	// first second the rate is unknown and every persist reserves MinStep.
	var firstSecond int
	for sec := range 5 {
		if sec == 1 {
			firstSecond = meta.count()
		}
		for range 100 {
			if _, err := o.Next(ctx, 100); err != nil {
				t.Fatal(err)
			}
		}
		now.Add(int64(time.Second))
	}
	waitFor(t, "the prefetch to land", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.inflight == nil
	})
	hw, next := o.HighWater()
	// About 3 s at 10,000/s are reserved ahead; MinStep alone would give 100.
	if ahead := hw - (next - 1); ahead < 5000 || ahead > 60000 {
		t.Fatalf("%d values reserved ahead at 10,000/s with a 3 s window", ahead)
	}
	if later := meta.count() - firstSecond; later > 8 {
		t.Fatalf("%d persists for 40,000 values once the rate was known", later)
	}
}

// TestOracleLease: without a lease (the node may have been deposed without
// knowing) Next hands out nothing, not even values already reserved.
func TestOracleLease(t *testing.T) {
	var held atomic.Bool
	held.Store(true)
	meta := &fakeMeta{}
	o := newOracle(t, meta, Config{MinStep: 100, MaxStep: 100, Lease: held.Load})
	o.Start(0)
	ctx := context.Background()
	first, err := o.Next(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	held.Store(false)
	if _, err := o.Next(ctx, 1); !errors.Is(err, ErrNotServing) {
		t.Fatalf("Next without the lease = %v, want ErrNotServing", err)
	}
	if _, next := o.HighWater(); next != first+1 {
		t.Fatalf("next is %d after a refused Next, want %d", next, first+1)
	}
	held.Store(true)
	if v, err := o.Next(ctx, 1); err != nil || v != first+1 {
		t.Fatalf("Next with the lease back = %d, %v; want %d", v, err, first+1)
	}
}

// TestOracleExhausted: at the top of the value space Next refuses rather
// than wrap around to values handed out long ago.
func TestOracleExhausted(t *testing.T) {
	meta := &fakeMeta{}
	o := newOracle(t, meta, Config{MinStep: 4, MaxStep: 4})
	ctx := context.Background()
	o.Start(math.MaxUint64 - 10)
	var last uint64
	for {
		v, err := o.Next(ctx, 3)
		if err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Next near the top = %v, want ErrExhausted", err)
			}
			break
		}
		if v <= last || v+2 < v {
			t.Fatalf("Next returned %d after %d", v, last)
		}
		last = v + 2
	}
	if last < math.MaxUint64-3 {
		t.Fatalf("stopped at %d, well below the top", last)
	}
	o.Start(math.MaxUint64)
	if _, err := o.Next(ctx, 1); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Next after Start(MaxUint64) = %v, want ErrExhausted", err)
	}
}

// BenchmarkOracleNext is the cost of a stamp from memory.
func BenchmarkOracleNext(b *testing.B) {
	o, err := New(Config{Persist: func(context.Context, uint64) error { return nil }, Lease: func() bool { return true }})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	o.Start(0)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := o.Next(ctx, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestNextAboveSkipsToTheFloor: values handed out with a floor are above it,
// only once a mark covering them is persisted, and later values stay above.
func TestNextAboveSkipsToTheFloor(t *testing.T) {
	var mu sync.Mutex
	var top uint64 // the largest mark persisted
	o, err := New(Config{
		Persist: func(_ context.Context, hw uint64) error { mu.Lock(); top = max(top, hw); mu.Unlock(); return nil },
		Lease:   func() bool { return true },
		MinStep: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	o.Start(0)
	ctx := context.Background()
	first, err := o.NextAbove(ctx, 3, 5000)
	if err != nil || first != 5001 {
		t.Fatalf("NextAbove(3, 5000) = %d, %v; want 5001", first, err)
	}
	mu.Lock()
	persisted := top
	mu.Unlock()
	if hw, _ := o.HighWater(); hw < 5003 || persisted < 5003 {
		t.Fatalf("handed out 5001..5003 under mark %d (persisted %d)", hw, persisted)
	}
	if next, err := o.NextAbove(ctx, 1, 10); err != nil || next != 5004 {
		t.Fatalf("a floor below the values: %d, %v; want 5004", next, err)
	}
	if next, err := o.Next(ctx, 1); err != nil || next != 5005 {
		t.Fatalf("Next after: %d, %v; want 5005", next, err)
	}
}
