package ranges

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// tickEvery records rate requests a second for d, ticking every step from
// *now, keys chosen by key.
func tickEvery(lt *LoadTracker, now *time.Time, d, step time.Duration, rate float64, key func(i int) string) {
	per := int(rate * step.Seconds())
	for end := now.Add(d); now.Before(end); {
		for i := range per {
			lt.Record([]byte(key(i)))
		}
		*now = now.Add(step)
		lt.Tick(*now)
	}
}

func constKey(string) func(int) string { return func(int) string { return "k" } }

// TestLoadTrackerHot: a range is hot only once its rate over the whole
// window is above the threshold with no interval below half of it; a dip
// below half, a burst the window does not sustain, a pause between ticks
// (a quiet range) or a Reset starts the measure over.
func TestLoadTrackerHot(t *testing.T) {
	step := 100 * time.Millisecond
	newTracker := func() (*LoadTracker, *time.Time) {
		now := time.Unix(1_000_000, 0)
		lt := NewLoadTracker(time.Second, 3*step)
		lt.Tick(now)
		return lt, &now
	}
	key := constKey("k")

	lt, now := newTracker()
	tickEvery(lt, now, 900*time.Millisecond, step, 300, key)
	if lt.Hot(200) {
		t.Fatal("hot after 0.9 s of a 1 s window")
	}
	tickEvery(lt, now, step, step, 300, key)
	if !lt.Hot(200) {
		t.Fatalf("not hot after a whole window at 300/s (rate %v)", lt.Rate())
	}
	if lt.Hot(300) {
		t.Fatal("hot at the very rate it saw: it must be above")
	}
	if r := lt.Rate(); r < 299 || r > 301 {
		t.Fatalf("Rate = %v, want 300", r)
	}
	// An interval at 150/s, above half the threshold: still hot.
	tickEvery(lt, now, step, step, 150, key)
	if !lt.Hot(200) {
		t.Fatalf("not hot with one interval at 150/s (rate %v)", lt.Rate())
	}
	// One at 50/s: cold until it leaves the window.
	tickEvery(lt, now, step, step, 50, key)
	if lt.Hot(200) {
		t.Fatal("hot with one interval at 50/s in the window")
	}
	tickEvery(lt, now, 900*time.Millisecond, step, 300, key)
	if lt.Hot(200) {
		t.Fatal("hot while the dip is still in the window")
	}
	tickEvery(lt, now, step, step, 300, key)
	if !lt.Hot(200) {
		t.Fatal("not hot once the dip left the window")
	}
	// Every interval above half but the window's rate not above the
	// threshold: not hot.
	tickEvery(lt, now, time.Second, step, 190, key)
	if lt.Hot(200) {
		t.Fatalf("hot at 190/s (rate %v)", lt.Rate())
	}
	// A burst: 3000 requests in one interval and none in the others is a
	// rate of 300/s over the window, but not a hot range.
	lt, now = newTracker()
	tickEvery(lt, now, step, step, 30000, key)
	tickEvery(lt, now, 900*time.Millisecond, step, 0, key)
	if r := lt.Rate(); r < 2999 || r > 3001 || lt.Hot(200) {
		t.Fatalf("a burst: rate %v, hot %v; want 3000/s over the window, not hot", r, lt.Hot(200))
	}

	// A pause longer than maxGap: what was recorded during it is not
	// dated, so it cannot make the range hot, however much it is.
	lt, now = newTracker()
	for range 100_000 {
		lt.Record([]byte("k"))
	}
	*now = now.Add(time.Minute)
	lt.Tick(*now)
	tickEvery(lt, now, 500*time.Millisecond, step, 0, key)
	if lt.Hot(1) {
		t.Fatal("hot from requests recorded across a pause")
	}
	tickEvery(lt, now, time.Second, step, 300, key)
	if !lt.Hot(200) {
		t.Fatal("not hot after a whole window at 300/s after the pause")
	}
	lt.Reset()
	if lt.Hot(200) {
		t.Fatal("hot after Reset")
	}
	if _, ok := lt.SplitKey(func([]byte) bool { return true }); ok {
		t.Fatal("a split key after Reset")
	}
}

// TestLoadTrackerSplitKey: the key chosen from a tracker's sample divides
// the load, not the keys: 90% of the requests on k00..k09 and 10% on
// k10..k99 split near k05.
func TestLoadTrackerSplitKey(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	lt := NewLoadTracker(time.Second, 0)
	for range 20_000 {
		k := rng.IntN(90)
		if rng.IntN(10) < 9 {
			k = rng.IntN(10)
		} else {
			k = 10 + k
		}
		lt.Record([]byte(fmt.Sprintf("k%02d", k)))
	}
	key, ok := lt.SplitKey(func([]byte) bool { return true })
	if !ok || string(key) < "k03" || string(key) > "k07" {
		t.Fatalf("split key %q %v, want about k05", key, ok)
	}
	// keep leaves out the keys the range no longer holds.
	key, ok = lt.SplitKey(func(k []byte) bool { return string(k) >= "k10" })
	if !ok || string(key) <= "k10" {
		t.Fatalf("split key of k10.. %q %v, want one after k10", key, ok)
	}
}

func TestLoadSplitKey(t *testing.T) {
	kl := func(k string, w float64) KeyLoad { return KeyLoad{Key: []byte(k), Weight: w} }
	for _, tc := range []struct {
		name  string
		loads []KeyLoad
		want  string // "" : no split
	}{
		{"nothing", nil, ""},
		{"one key", []KeyLoad{kl("a", 5), kl("a", 7)}, ""},
		{"two keys", []KeyLoad{kl("b", 1), kl("a", 1)}, "b"},
		{"by load not by keys", []KeyLoad{kl("a", 1), kl("b", 1), kl("c", 1), kl("d", 5), kl("e", 2)}, "d"},
		{"weights add up per key", []KeyLoad{kl("c", 1), kl("a", 1), kl("b", 1), kl("a", 1), kl("a", 1)}, "b"},
		{"hot key on the left", []KeyLoad{kl("a", 50), kl("b", 25), kl("c", 25)}, "b"},
		{"one key holds 85%", []KeyLoad{kl("a", 5), kl("b", 85), kl("c", 10)}, ""},
		{"exactly a fifth aside", []KeyLoad{kl("a", 20), kl("b", 80)}, "b"},
		{"zero and negative weights ignored", []KeyLoad{kl("a", 0), kl("b", -3), kl("c", 1)}, ""},
		{"the least key is never chosen", []KeyLoad{kl("a", 1), kl("b", 1000), kl("c", 1000)}, "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, ok := LoadSplitKey(tc.loads)
			if tc.want == "" {
				if ok {
					t.Fatalf("split at %q, want no split", key)
				}
				return
			}
			if !ok || string(key) != tc.want {
				t.Fatalf("split at %q (%v), want %q", key, ok, tc.want)
			}
		})
	}
}

// TestLoadTrackerConcurrent: Record from many goroutines while the loop
// ticks loses no request.
func TestLoadTrackerConcurrent(t *testing.T) {
	lt := NewLoadTracker(time.Hour, time.Hour)
	now := time.Unix(5000, 0)
	lt.Tick(now)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10000 {
				lt.Record([]byte(fmt.Sprintf("g%d-%d", g, i%100)))
			}
		}()
	}
	for range 100 {
		lt.Tick(now.Add(time.Millisecond))
		now = now.Add(time.Millisecond)
		_, _ = lt.SplitKey(func([]byte) bool { return true })
	}
	wg.Wait()
	now = now.Add(time.Second)
	lt.Tick(now)
	if got := lt.Rate() * now.Sub(time.Unix(5000, 0)).Seconds(); got < 39999.5 || got > 40000.5 {
		t.Fatalf("%v requests counted, want 40000", got)
	}
}

// BenchmarkLoadTrackerRecord is the cost a request pays for load tracking.
func BenchmarkLoadTrackerRecord(b *testing.B) {
	lt := NewLoadTracker(0, 0)
	key := []byte("user/000123/profile")
	for b.Loop() {
		lt.Record(key)
	}
}

// BenchmarkLoadTrackerRecordParallel is that cost with every core recording
// on one hot range.
func BenchmarkLoadTrackerRecordParallel(b *testing.B) {
	lt := NewLoadTracker(0, 0)
	key := []byte("user/000123/profile")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lt.Record(key)
		}
	})
}
