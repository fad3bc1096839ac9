package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests of splits for load use a threshold of 200 requests a second
// over a window of 1 s, and drive several times that.
const (
	testSplitQPS    = 200
	testLoadWindow  = time.Second
	testQuietWindow = 3 * testLoadWindow // how long a test waits for a split that must not come
)

// loadCluster is three Hosts serving group 1, which splits for load (not
// for size), holding key000..key099; logs collects their debug logs.
func loadCluster(t *testing.T, quiesce bool) (c *hostCluster, logs *syncBuffer) {
	t.Helper()
	logs = &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c = newHostCluster(t, 3, func(cfg *Config) {
		cfg.RangeSplitQPS, cfg.RangeLoadWindow, cfg.Quiesce = testSplitQPS, testLoadWindow, quiesce
		cfg.Logger = logger
		if quiesce {
			// A follower wakes if it hears nothing of its leader's node
			// for an election timeout: 100 ms would be a busy machine's
			// pause, not a dead leader.
			cfg.ElectionTicks = 50
		}
	})
	for _, m := range c.members {
		c.openWith(m.Name, func(hc *HostConfig) {
			hc.NewGroup = func(s uint64) (Config, bool) { return c.groupConfig(s), true }
		})
		if _, err := c.hosts[m.Name].OpenGroup(c.groupConfig(1)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	putKeys(t, ctx, c.leader(1), 100)
	return c, logs
}

// load runs workers goroutines that each call req in a loop, every pause
// apart (0: none), until stop is called or the test ends; stop waits for
// them and reports the first error. A test that fails early leaves no
// worker spinning into the tests after it.
func load(t testing.TB, workers int, pause time.Duration, req func(i int) error) (stop func() error) {
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += workers {
				select {
				case <-done:
					return
				case <-time.After(pause):
				}
				if err := req(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var once sync.Once
	stop = func() error {
		once.Do(func() { close(done) })
		wg.Wait()
		select {
		case err := <-errs:
			return err
		default:
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

// followersKeepNoTracker fails t unless, within a few looks at the load,
// no replica of group 1 that does not lead it holds a load tracker. A node
// that led for a while under load (a slow machine can move leadership)
// drops its tracker at the loop's next look, so the check waits for it.
func (c *hostCluster) followersKeepNoTracker(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second) // many looks, each splitCheckTicks ticks apart
	for {
		var holding []string
		for name, h := range c.hosts {
			g := h.Group(1)
			if g.leader.Load() != g.raftID && g.load.Load() != nil {
				holding = append(holding, name)
			}
		}
		if len(holding) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("followers %v measure the load", holding)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaderAndFollower returns group 1's leader and one of its followers.
func (c *hostCluster) leaderAndFollower() (lead, follower *Node) {
	lead = c.leader(1)
	for _, h := range c.hosts {
		if g := h.Group(1); g != lead {
			follower = g
		}
	}
	return lead, follower
}

// waitSplit waits until group 1 has split on every host and the group made
// by the split is open there, and returns the key it split at.
func (c *hostCluster) waitSplit(within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		at, ok := "", true
		for _, h := range c.hosts {
			end := h.Group(1).Bounds().End
			if len(end) == 0 || (at != "" && string(end) != at) || h.GroupFor(end) == nil {
				ok = false
				break
			}
			at = string(end)
		}
		if ok {
			return at, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "", fmt.Errorf("no split after %v", within)
}

// splitLines returns the lines of logs about splits.
func splitLines(logs *syncBuffer) string {
	var out []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "split") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// noSplit fails the test if any host's group 1 split within d.
func (c *hostCluster) noSplit(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for name, h := range c.hosts {
			if b := h.Group(1).Bounds(); len(b.End) != 0 || len(h.Groups()) != 1 {
				c.t.Fatalf("group 1 on %s split: now %v", name, b)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSplitByLoad: a range its leader serves at several times
// RangeSplitQPS splits, through its log like a split by size, at a key from
// the load, not at the middle of its keys: reads of key080..key099 (stale
// and linearizable) split it within key081..key099, and writes forwarded by
// a follower to key000..key019 split it within key001..key019 (counted from
// the leader's log: the follower's Propose is not the leader's).
func TestSplitByLoad(t *testing.T) {
	for _, tc := range []struct {
		name     string
		from, to int // the hot keys
		req      func(ctx context.Context, lead, follower *Node, i int, key string) error
	}{
		{"reads", 80, 100, func(ctx context.Context, lead, _ *Node, i int, key string) error {
			_, _, err := lead.Get(ctx, []byte(key), i%2 == 0)
			return err
		}},
		{"writes through a follower", 0, 20, func(ctx context.Context, _, follower *Node, _ int, key string) error {
			_, err := put(ctx, follower, key, "w")
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, logs := loadCluster(t, false)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			lead, follower := c.leaderAndFollower()
			stop := load(t, 8, 0, func(i int) error {
				key := fmt.Sprintf("key%03d", tc.from+i%(tc.to-tc.from))
				if err := tc.req(ctx, lead, follower, i, key); err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				return nil
			})
			at, err := c.waitSplit(30 * time.Second) // generous: CI runs the packages side by side on two cores
			if werr := stop(); werr != nil && !strings.Contains(werr.Error(), "not in this range") {
				t.Fatalf("load: %v", werr)
			}
			if err != nil {
				t.Fatalf("%v; logs:\n%s", err, splitLines(logs))
			}
			lo, hi := fmt.Sprintf("key%03d", tc.from), fmt.Sprintf("key%03d", tc.to-1)
			if at <= lo || at > hi {
				t.Fatalf("split at %q, want a key from the load, in (%s, %s]", at, lo, hi)
			}
			if !strings.Contains(logs.String(), "range split by load") {
				t.Fatalf("the split is not logged as one by load:\n%s", splitLines(logs))
			}
			for name, h := range c.hosts {
				if b := h.Group(1).Bounds(); string(b.End) != at {
					t.Fatalf("group 1 on %s holds %v after the split at %q", name, b, at)
				}
			}
			t.Logf("split at %q", at)
		})
	}
}

// TestNoSplitByLoad: a range does not split for load below RangeSplitQPS,
// nor when its load is on one key (which its leader logs once at debug
// level), nor for reads its followers serve; a follower keeps no tracker.
func TestNoSplitByLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		pause   time.Duration
		req     func(ctx context.Context, lead, follower *Node, i int) error
	}{
		{"below the threshold", 1, 20 * time.Millisecond, func(ctx context.Context, lead, _ *Node, i int) error {
			_, _, err := lead.Get(ctx, []byte(fmt.Sprintf("key%03d", i%100)), true)
			return err
		}},
		{"one hot key", 8, 0, func(ctx context.Context, lead, _ *Node, i int) error {
			_, _, err := lead.Get(ctx, []byte("key050"), i%2 == 0)
			return err
		}},
		{"reads on a follower", 8, 0, func(ctx context.Context, _, follower *Node, i int) error {
			_, _, err := follower.Get(ctx, []byte(fmt.Sprintf("key%03d", i%100)), false)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, logs := loadCluster(t, false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			lead, follower := c.leaderAndFollower()
			stop := load(t, tc.workers, tc.pause, func(i int) error { return tc.req(ctx, lead, follower, i) })
			c.noSplit(testQuietWindow)
			c.followersKeepNoTracker(t)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			refused := strings.Count(logs.String(), "range is hot but not split")
			if tc.name == "one hot key" && refused != 1 {
				t.Fatalf("the refusal to split a range hot on one key is logged %d times, want once:\n%s", refused, splitLines(logs))
			}
			if tc.name != "one hot key" && refused != 0 {
				t.Fatalf("a range that is not hot is reported hot:\n%s", splitLines(logs))
			}
		})
	}
}

// TestLoadTrackingDoesNotWakeQuietRanges: reads served by the leader of a
// quiesced range are counted without waking it.
func TestLoadTrackingDoesNotWakeQuietRanges(t *testing.T) {
	c, _ := loadCluster(t, true)
	c.waitQuiet(1)
	lead := c.leader(1)
	if lead.load.Load() == nil {
		t.Fatal("the leader keeps no tracker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20_000 {
		if _, _, err := lead.Get(ctx, []byte(fmt.Sprintf("key%03d", i%100)), false); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * testLoadWindow)
	for time.Now().Before(deadline) {
		for name, h := range c.hosts {
			if g := h.Group(1); !g.Quiesced() {
				t.Fatalf("group 1 on %s woke (the leader: %v)", name, g == lead)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSplitByLoadWaitsForAnotherSplit: while another split of the range is
// under way (its flag held), a hot range does not start one; once it is
// over, it splits for load.
func TestSplitByLoadWaitsForAnotherSplit(t *testing.T) {
	c, logs := loadCluster(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lead, _ := c.leaderAndFollower()
	lead.splitting.Store(true)
	stop := load(t, 8, 0, func(i int) error {
		_, _, err := lead.Get(ctx, []byte(fmt.Sprintf("key%03d", i%100)), false)
		if err != nil && !strings.Contains(err.Error(), "not in this range") {
			return err
		}
		return nil
	})
	defer func() {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}()
	c.noSplit(testQuietWindow)
	lead.splitting.Store(false)
	at, err := c.waitSplit(30 * time.Second) // generous: CI runs the packages side by side on two cores
	if err != nil {
		t.Fatalf("%v once the other split was over; logs:\n%s", err, splitLines(logs))
	}
	if at <= "key000" || at > "key099" {
		t.Fatalf("split at %q", at)
	}
	t.Logf("split at %q", at)
}
