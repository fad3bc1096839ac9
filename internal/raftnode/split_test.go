package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// putKeys writes key000..key<n-1> = "v" through n.
func putKeys(t *testing.T, ctx context.Context, n *Node, count int) {
	t.Helper()
	for j := range count {
		if _, err := put(ctx, n, fmt.Sprintf("key%03d", j), "v"); err != nil {
			t.Fatalf("put key%03d: %v", j, err)
		}
	}
}

// keyNames returns the keys linearizableKeys finds in n's group.
func keyNames(t *testing.T, ctx context.Context, n *Node) []string {
	t.Helper()
	var out []string
	for _, kv := range linearizableKeys(t, ctx, n) {
		k, _, _ := cutLast(kv, "=")
		out = append(out, k)
	}
	return out
}

// cutLast splits s at the last sep.
func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func keyRange(from, to int) []string {
	var out []string
	for j := from; j < to; j++ {
		out = append(out, fmt.Sprintf("key%03d", j))
	}
	return out
}

// waitGroup waits until every host has group shard open.
func (c *hostCluster) waitGroup(shard uint64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := ""
		for name, h := range c.hosts {
			if h.Group(shard) == nil {
				missing = name
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("group %d is not open on %s after 10s", shard, missing)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSplitThroughTheLog splits a group of three at a key: every replica
// makes the new group from its own state at the split's index, the new group
// elects a leader and takes writes, each side holds exactly its keys (with
// their versions and revisions), a write for a key the group gave away is
// refused with ErrWrongRange, and everything is there after a restart.
func TestSplitThroughTheLog(t *testing.T) {
	c := newHostCluster(t, 3, nil)
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left := c.leader(1)
	putKeys(t, ctx, left, 100)
	before, _ := left.KV().Get([]byte("key070"))
	if err := left.Split(ctx, []byte("key050"), 2); err != nil {
		t.Fatalf("split: %v", err)
	}
	c.waitGroup(2)
	right := c.leader(2)
	for name, h := range c.hosts {
		if got := keyNames(t, ctx, h.Group(1)); !slices.Equal(got, keyRange(0, 50)) {
			t.Fatalf("group 1 on %s holds %v", name, got)
		}
		if got := keyNames(t, ctx, h.Group(2)); !slices.Equal(got, keyRange(50, 100)) {
			t.Fatalf("group 2 on %s holds %v", name, got)
		}
		if b := h.Group(2).Bounds(); string(b.Start) != "key050" || len(b.End) != 0 {
			t.Fatalf("group 2 on %s has bounds %v", name, b)
		}
	}
	if got, _ := right.KV().Get([]byte("key070")); got.Version != before.Version || got.Revision != before.Revision {
		t.Fatalf("key070 after the split: %+v, before %+v", got, before)
	}
	if _, err := put(ctx, c.leader(1), "key060", "x"); !errors.Is(err, ErrWrongRange) {
		t.Fatalf("a write to the group that gave key060 away: %v, want ErrWrongRange", err)
	}
	for _, linearizable := range []bool{true, false} {
		if _, _, err := c.leader(1).Get(ctx, []byte("key060"), linearizable); !errors.Is(err, ErrWrongRange) {
			t.Fatalf("a read (linearizable %v) of key060 from the group that gave it away: %v, want ErrWrongRange", linearizable, err)
		}
	}
	if _, _, err := c.leader(1).Range(ctx, []byte("key040"), nil, 0, true); !errors.Is(err, ErrWrongRange) {
		t.Fatalf("a scan past its range from group 1: %v, want ErrWrongRange", err)
	}
	res, err := put(ctx, right, "key060", "x")
	if err != nil || res.Revision <= before.Revision {
		t.Fatalf("a write to the new group: %+v %v (revision must pass %d)", res, err, before.Revision)
	}
	if err := c.leader(1).Split(ctx, []byte("key070"), 3); err == nil {
		t.Fatal("group 1 split at a key it no longer holds")
	}

	c.closeAll()
	for _, m := range c.members {
		h := c.open(m.Name, 1)
		for _, s := range []uint64{2} {
			if h.Group(s) == nil {
				// Group 1 may open it first, applying the split again.
				if _, err := h.OpenGroup(c.groupConfig(s)); err != nil && !errors.Is(err, ErrGroupOpen) {
					t.Fatalf("reopen group %d on %s: %v", s, m.Name, err)
				}
			}
		}
	}
	for name, h := range c.hosts {
		if got := keyNames(t, ctx, h.Group(1)); !slices.Equal(got, keyRange(0, 50)) {
			t.Fatalf("after the restart group 1 on %s holds %v", name, got)
		}
		if got := keyNames(t, ctx, h.Group(2)); !slices.Equal(got, keyRange(50, 100)) {
			t.Fatalf("after the restart group 2 on %s holds %v", name, got)
		}
	}
}

// TestSplitElectsAtOnce: the range a split makes has a leader well within an
// election timeout. Its replicas are all new, and a node grants no vote for
// an election timeout after a replica starts (holdsVotes) unless the replica
// was made by the split with no state of its own: with the hold, the former
// leader's campaign failed and the range stayed leaderless (its writes
// refused, "no leader") for at least the election timeout, 1 s here.
func TestSplitElectsAtOnce(t *testing.T) {
	const election = time.Second
	c := newHostCluster(t, 3, func(cfg *Config) { cfg.ElectionTicks = int(election / cfg.TickInterval) })
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	putKeys(t, ctx, c.leader(1), 20)
	for i, at := range []string{"key015", "key010", "key005"} {
		shard := uint64(i + 2)
		start := time.Now()
		if err := c.leader(1).Split(ctx, []byte(at), shard); err != nil {
			t.Fatalf("split at %s: %v", at, err)
		}
		c.waitGroup(shard)
		if _, err := put(ctx, c.leader(shard), at+"x", "v"); err != nil {
			t.Fatalf("a write to group %d: %v", shard, err)
		}
		if took := time.Since(start); took >= election/2 {
			t.Fatalf("the range split at %s took %v to elect a leader and take a write; want well under the election timeout, %v", at, took, election)
		}
		t.Logf("split at %s: leader and first write after %v", at, time.Since(start))
	}
}

// TestSplitReachesALaggingReplica: a replica cut off while the split is
// applied elsewhere, while the new group's leader already sends to it (its
// Host creates the group empty on that first message), applies the split
// once it is back, and ends with the same two groups as the others.
func TestSplitReachesALaggingReplica(t *testing.T) {
	c := newHostCluster(t, 3, nil)
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
	left := c.leader(1)
	putKeys(t, ctx, left, 40)
	var lagging string
	for name, h := range c.hosts {
		if h.Group(1) != left {
			lagging = name
		}
	}
	// Group 1's traffic to the lagging node is lost; the new group's is not.
	c.nw.loseShard(1, RaftID(lagging), true)
	if err := left.Split(ctx, []byte("key020"), 9); err != nil {
		t.Fatalf("split: %v", err)
	}
	// The others have group 9; its leader's messages create it, empty, on
	// the lagging node.
	deadline := time.Now().Add(10 * time.Second)
	for c.hosts[lagging].Group(9) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the new group's leader did not reach the lagging node")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Now the new group's traffic is lost instead, so that the empty group
	// gets nothing from its leader: the split must replace it.
	c.nw.loseShard(9, RaftID(lagging), true)
	empty := c.hosts[lagging].Group(9)
	c.nw.loseShard(1, RaftID(lagging), false)
	// The lagging node applies the split: its empty group 9 is replaced by
	// one made from its own state.
	deadline = time.Now().Add(10 * time.Second)
	for {
		g9, g1 := c.hosts[lagging].Group(9), c.hosts[lagging].Group(1)
		// Replaced, or (rarely: its leader's snapshot got there before the
		// new group's traffic was cut) kept because it holds the data.
		if g9 != nil && (g9 != empty || g9.applied.Load() > 0) && g1 != nil && g1.Bounds().Contains([]byte("key000")) && !g1.Bounds().Contains([]byte("key020")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lagging node did not apply the split (group 1 bounds %v)", c.hosts[lagging].Group(1).Bounds())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the group created on first contact was replaced by the split: %v", c.hosts[lagging].Group(9) != empty)
	c.nw.loseShard(9, RaftID(lagging), false)
	for name, h := range c.hosts {
		if got := keyNames(t, ctx, h.Group(9)); !slices.Equal(got, keyRange(20, 40)) {
			t.Fatalf("group 9 on %s holds %v", name, got)
		}
		if got := keyNames(t, ctx, h.Group(1)); !slices.Equal(got, keyRange(0, 20)) {
			t.Fatalf("group 1 on %s holds %v", name, got)
		}
	}
}

// route returns the group of h that holds key, or nil.
func route(h *Host, key []byte) *Node {
	for _, g := range h.Groups() {
		if g.Bounds().Contains(key) {
			return g
		}
	}
	return nil
}

// TestSplitsUnderLoadLoseNothing: writers put keys all over the key space
// through every node while the range splits three times, on a network that
// loses and duplicates messages; every acknowledged write is then found on
// every node, in the one group whose range holds its key, and no group
// holds a key outside its range.
func TestSplitsUnderLoadLoseNothing(t *testing.T) {
	c := newHostCluster(t, 3, nil)
	for _, m := range c.members {
		c.openWith(m.Name, func(hc *HostConfig) {
			hc.NewGroup = func(s uint64) (Config, bool) { return c.groupConfig(s), true }
		})
		if _, err := c.hosts[m.Name].OpenGroup(c.groupConfig(1)); err != nil {
			t.Fatal(err)
		}
	}
	c.leader(1)
	c.nw.mu.Lock()
	c.nw.drop, c.nw.dup = 0.02, 0.02
	c.nw.mu.Unlock()

	names := []string{"n1", "n2", "n3"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := make(chan struct{})
	type ack struct{ key, value string }
	acked := make(chan ack, 100000)
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%c/w%d/%05d", 'a'+(i*7+w*3)%26, w, i)
				value := fmt.Sprintf("v%d", i)
				h := c.hosts[names[(i+w)%3]]
				g := route(h, []byte(key))
				if g == nil {
					continue
				}
				wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
				_, err := put(wctx, g, key, value)
				wcancel()
				if err == nil {
					acked <- ack{key, value}
				}
			}
		}()
	}
	for i, at := range []string{"g", "n", "t"} {
		shard := uint64(10 + i)
		for {
			l := route(c.hosts[c.leader(1).cfg.Self.Name], []byte(at))
			sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
			err := l.Split(sctx, []byte(at), shard)
			scancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("split at %q: %v", at, err)
			}
		}
		c.waitGroup(shard)
		time.Sleep(300 * time.Millisecond)
	}
	close(stop)
	writers.Wait()
	close(acked)
	c.nw.heal()

	want := map[string]string{}
	for a := range acked {
		want[a.key] = a.value
	}
	if len(want) < 100 {
		t.Fatalf("only %d writes acknowledged", len(want))
	}
	shards := []uint64{1, 10, 11, 12}
	for _, s := range shards {
		c.leader(s)
	}
	for name, h := range c.hosts {
		found := map[string]string{}
		for _, s := range shards {
			g := h.Group(s)
			b := g.Bounds()
			for _, kv := range linearizableKeys(t, ctx, g) {
				k, v, _ := cutLast(kv, "=")
				if !b.Contains([]byte(k)) {
					t.Fatalf("group %d on %s holds %q outside its range %v", s, name, k, b)
				}
				if _, dup := found[k]; dup {
					t.Fatalf("%q is in two groups on %s", k, name)
				}
				found[k] = v
			}
		}
		for k, v := range want {
			if found[k] != v {
				t.Fatalf("%s: acknowledged %q=%q, found %q", name, k, v, found[k])
			}
		}
		t.Logf("%s: %d acknowledged writes found among %d keys in %d groups", name, len(want), len(found), len(shards))
	}
}

// putRouted writes key=value through the group of h that holds key, again
// while a split moves it.
func putRouted(ctx context.Context, h *Host, key, value string) error {
	for {
		g := route(h, []byte(key))
		if g == nil {
			// A split applied here is opening the group: ask again.
			if ctx.Err() != nil {
				return fmt.Errorf("no group of %s holds %q", h.cfg.Self.Name, key)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		_, err := put(ctx, g, key, value)
		switch {
		case errors.Is(err, ErrNoLeader) && ctx.Err() == nil:
			time.Sleep(10 * time.Millisecond) // a group new from a split elects
		case !errors.Is(err, ErrWrongRange):
			return err
		}
	}
}

// TestRangesSplitBySize: with RangeSplitBytes 4 KiB, 64 KiB written through
// the nodes make the range split again and again, each new group's id
// allocated by group 1's log; the groups tile the key space without gap or
// overlap on every node, and every key is read back from the group that
// holds it.
func TestRangesSplitBySize(t *testing.T) {
	c := newHostCluster(t, 3, func(cfg *Config) { cfg.RangeSplitBytes = 4 << 10 })
	for _, m := range c.members {
		c.openWith(m.Name, func(hc *HostConfig) {
			hc.NewGroup = func(s uint64) (Config, bool) { return c.groupConfig(s), true }
		})
		if _, err := c.hosts[m.Name].OpenGroup(c.groupConfig(1)); err != nil {
			t.Fatal(err)
		}
	}
	c.leader(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	value := string(make([]byte, 250))
	names := []string{"n1", "n2", "n3"}
	for j := range 256 {
		key := fmt.Sprintf("k%04d", (j*37)%256)
		if err := putRouted(ctx, c.hosts[names[j%3]], key, value); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	// Splits go on while groups pass the size: wait until no group does and
	// every node's groups tile the key space.
	tiling := func(h *Host) error {
		gs := h.Groups()
		slices.SortFunc(gs, func(a, b *Node) int { return bytes.Compare(a.Bounds().Start, b.Bounds().Start) })
		if len(gs) == 0 || len(gs[0].Bounds().Start) != 0 || len(gs[len(gs)-1].Bounds().End) != 0 {
			return fmt.Errorf("the groups do not reach both ends of the key space")
		}
		for i := 1; i < len(gs); i++ {
			if !bytes.Equal(gs[i-1].Bounds().End, gs[i].Bounds().Start) {
				return fmt.Errorf("group %d ends at %q, the next, %d, starts at %q", gs[i-1].Shard(), gs[i-1].Bounds().End, gs[i].Shard(), gs[i].Bounds().Start)
			}
		}
		for _, g := range gs {
			if g.KV().Bytes() > 4<<10 {
				return fmt.Errorf("group %d holds %d bytes", g.Shard(), g.KV().Bytes())
			}
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		for name, h := range c.hosts {
			if e := tiling(h); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ranges did not settle in 30s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for name, h := range c.hosts {
		gs := h.Groups()
		if len(gs) < 8 {
			t.Fatalf("%s has %d groups, want at least 8 for 64 KiB in 4 KiB ranges", name, len(gs))
		}
		for j := range 256 {
			key := []byte(fmt.Sprintf("k%04d", j))
			got, ok, err := route(h, key).Get(ctx, key, true)
			if err != nil || !ok || len(got.Value) != 250 {
				t.Fatalf("%s: %s: %v %v", name, key, ok, err)
			}
		}
		t.Logf("%s: %d groups", name, len(gs))
	}
}
