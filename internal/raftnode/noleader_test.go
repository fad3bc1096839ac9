package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestWriteWithoutLeaderGivesUpNotMade: a node cut off from the others knows no
// leader; a write to it is refused at once, saying it was not made (not a
// timeout of unknown outcome), and indeed it never appears.
func TestWriteWithoutLeaderGivesUpNotMade(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	cut := c.follower(leader)
	c.nw.isolate(RaftID(cut))
	waitUntil(t, 5*time.Second, "the cut-off node forgets its leader", func() bool {
		return c.nodes[cut].Status().Leader == ""
	}, func() string { return fmt.Sprintf("%+v", c.nodes[cut].Status()) })

	// Refused at once, and certainly not made: the client may try another
	// node.
	const writes = 20
	var wg sync.WaitGroup
	errs := make([]error, writes)
	took := make([]time.Duration, writes)
	for i := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, errs[i] = put(ctx, c.nodes[cut], fmt.Sprintf("cut-%d", i), "x")
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		var nm notMadeError
		if !errors.As(err, &nm) || !errors.Is(err, ErrNoLeader) {
			t.Fatalf("write %d without a leader = %v, want a not-made ErrNoLeader", i, err)
		}
		// Well before the node would give up waiting for a leader.
		if limit := c.nodes[cut].leaderWait() / 2; took[i] > limit {
			t.Fatalf("write %d without a leader was refused after %v, want at once (under %v)", i, took[i], limit)
		}
	}
	if n := c.parkedLen(cut); n != 0 {
		t.Fatalf("%d parked proposals kept after their requests gave up", n)
	}

	c.nw.heal()
	waitUntil(t, 5*time.Second, "the healed node learns the leader", func() bool {
		return c.nodes[cut].Status().Leader != ""
	}, func() string { return fmt.Sprintf("%+v", c.nodes[cut].Status()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[cut], "after-heal", "y"); err != nil {
		t.Fatalf("write after the partition healed: %v", err)
	}
	for i := range writes {
		for name, n := range c.nodes {
			if v, ok := mustGet(t, n, fmt.Sprintf("cut-%d", i)); ok {
				t.Fatalf("%s: cut-%d = %q, though its write was reported not made", name, i, v)
			}
		}
	}
}

// parkedLen reads the node's parked proposals on its loop.
func (c *cluster) parkedLen(name string) int {
	c.t.Helper()
	// Pruning runs on a tick; give it a few.
	time.Sleep(5 * c.config(name).TickInterval)
	got := make(chan int, 1)
	select {
	case c.nodes[name].funcc <- func() { got <- len(c.nodes[name].parked) }:
	case <-time.After(5 * time.Second):
		c.t.Fatal("loop did not take a function in 5s")
	}
	return <-got
}

// TestFreedLeaderDoesNotClaimToLead: a leader whose disk stayed full for longer
// than the election timeout sent no heartbeats meanwhile. Once space is freed
// it must not go on claiming to lead, and report itself ready, until a message
// from the others happens to tell it otherwise: here it hears nothing (it is
// cut off), and it must still step down at once.
func TestFreedLeaderDoesNotClaimToLead(t *testing.T) {
	disks := map[string]*fullDisk{}
	for _, name := range []string{"n1", "n2", "n3"} {
		disks[name] = newFullDisk()
	}
	c := newCluster(t, 3, func(cfg *Config) { cfg.FS = disks[cfg.Self.Name] })
	old := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[old], "before", "v"); err != nil {
		t.Fatal(err)
	}
	disks[old].full.Store(true)
	go func() {
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
		defer wcancel()
		_, _ = put(wctx, c.nodes[old], "stalls", "s")
	}()
	waitUntil(t, 5*time.Second, "old leader stalls on its full disk", func() bool { return errors.Is(c.nodes[old].Ready(), ErrNoSpace) },
		func() string { return fmt.Sprint(c.nodes[old].Ready()) })
	c.nw.isolate(RaftID(old))
	// Several election timeouts (10 ticks of 10ms) without a heartbeat.
	time.Sleep(500 * time.Millisecond)
	disks[old].full.Store(false)
	waitUntil(t, 5*time.Second, "old leader's log is written again", func() bool { return !errors.Is(c.nodes[old].Ready(), ErrNoSpace) },
		func() string { return fmt.Sprint(c.nodes[old].Ready()) })
	st := c.nodes[old].Status()
	if st.Leader == old || c.nodes[old].Ready() == nil {
		t.Fatalf("freed after a long stall and cut off, %s still says it leads (leader %q, ready %v)", old, st.Leader, c.nodes[old].Ready())
	}
}
