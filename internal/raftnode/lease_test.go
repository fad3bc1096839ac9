package raftnode

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// onLoop runs f on n's loop and waits for it.
func onLoop(t *testing.T, n *Node, f func()) {
	t.Helper()
	done := make(chan struct{})
	select {
	case n.funcc <- func() { f(); close(done) }:
	case <-time.After(5 * time.Second):
		t.Fatal("loop busy")
	}
	<-done
}

// TestLeaderReadsOnLeaseTakeNoRound: once a read round has confirmed the
// lease, the leader answers its linearizable reads without heartbeat rounds,
// renewing the lease about twice per lease length; the reads still see every
// write acknowledged before them.
func TestLeaderReadsOnLeaseTakeNoRound(t *testing.T) {
	var rounds atomic.Int64
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	lid := RaftID(leader)
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		if m.From == lid && m.Type == raftpb.MsgHeartbeat && len(m.Context) == 16 {
			rounds.Add(1) // a read round's heartbeat, per follower
		}
		return false
	}
	c.nw.mu.Unlock()
	n := c.nodes[leader]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const reads = 300
	start := time.Now()
	for i := range reads {
		v := string(rune('a' + i%26))
		if _, err := put(ctx, c.nodes[c.follower(leader)], "k", v); err != nil {
			t.Fatal(err)
		}
		got, ok, err := n.Get(ctx, []byte("k"), true)
		if err != nil || !ok || string(got.Value) != v {
			t.Fatalf("read %d on the leader: %q, %v, %v; want %q", i, got.Value, ok, err, v)
		}
	}
	elapsed := time.Since(start)
	if n.leaseLength() <= 0 {
		t.Fatal("no lease with the default election timeout")
	}
	// Each round is a heartbeat to each of the two followers.
	perRound := rounds.Load() / 2
	renewals := int64(elapsed/(n.leaseLength()/2)) + 3
	t.Logf("%d reads in %v: %d rounds (lease %v)", reads, elapsed.Round(time.Millisecond), perRound, n.leaseLength())
	if perRound > renewals {
		t.Fatalf("%d read rounds for %d reads in %v; with the lease at most %d", perRound, reads, elapsed, renewals)
	}
}

// TestRestartedVoterCannotElectWithinLease: the follower that confirmed the
// leader's lease restarts, forgetting the leader, and the other follower,
// cut off from the leader, campaigns at once. If the restarted node voted, a
// new leader could commit a write that the old one, within its lease, would
// not see; so a node grants no vote for an election timeout after it starts.
func TestRestartedVoterCannotElectWithinLease(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.TickInterval = 100 * time.Millisecond // lease 720 ms, vote hold 1 s
	})
	leader := c.waitLeader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var acker, other string
	for name := range c.nodes {
		if name != leader {
			if acker == "" {
				acker = name
			} else {
				other = name
			}
		}
	}
	if _, err := put(ctx, c.nodes[leader], "k", "old"); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, c.nodes[other], c.nodes[leader].applied.Load())
	// other no longer hears the leader: only acker confirms its rounds.
	c.nw.mu.Lock()
	c.nw.cut[[2]uint64{RaftID(leader), RaftID(other)}] = true
	c.nw.cut[[2]uint64{RaftID(other), RaftID(leader)}] = true
	c.nw.mu.Unlock()
	// The cut holds from here on (the network delivers at once, nothing is
	// in flight), so the first read round, this one, is confirmed by acker
	// alone and gives the leader its lease.
	if v, _ := mustGet(t, c.nodes[leader], "k"); v != "old" {
		t.Fatalf("leader reads %q", v)
	}
	leaseEnd := heldLease(t, c.nodes[leader]).Add(-50 * time.Millisecond)
	// Cut the leader off entirely, restart acker, and let other campaign.
	c.nw.isolate(RaftID(leader))
	c.stop(acker)
	c.start(acker)
	c.nw.isolate(RaftID(leader)) // the restarted node's links too
	onLoop(t, c.nodes[other], func() { c.nodes[other].rn.Campaign() })
	if !putBefore(ctx, leaseEnd, c.nodes[other], "k", "new") {
		t.Logf("no write acknowledged by another leader before the lease ended (as expected)")
		return
	}
	got, ok, err := c.nodes[leader].Get(ctx, []byte("k"), true)
	if err == nil && ok && string(got.Value) == "old" {
		t.Fatalf("the old leader read %q within its lease after %q was acknowledged by a new leader", got.Value, "new")
	}
	t.Logf("a write was acknowledged; the old leader's read: %q, %v", got.Value, err)
}

// heldLease returns when n's lease ends, and fails the test if n holds none.
// The tests above try to have another leader acknowledge a write until 50 ms
// before then, so that the old leader's read that follows may still fall
// within the lease.
func heldLease(t *testing.T, n *Node) time.Time {
	t.Helper()
	var until time.Time
	onLoop(t, n, func() { until = n.leaseUntil })
	if !time.Now().Before(until) {
		t.Fatalf("%s holds no lease after a confirmed read round (until %v)", n.cfg.Self.Name, until)
	}
	return until
}

// waitApplied waits until n has applied index.
func waitApplied(t *testing.T, n *Node, index uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n.applied.Load() < index {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d, want %d", n.applied.Load(), index)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestTransferEndsLease: a leader that hands leadership over (MsgTimeoutNow)
// lets its target be elected at once, lease or not, so its lease ends there:
// cut off from what follows, it must not answer a read from the lease after
// the new leader acknowledged a write.
func TestTransferEndsLease(t *testing.T) {
	// The scenario needs the target to be elected and acknowledge a write
	// within the old leader's lease (720 ms); on a loaded machine it may not
	// be, which proves nothing either way: then it runs again.
	for attempt := 1; attempt <= 3; attempt++ {
		if transferEndsLease(t) {
			return
		}
		t.Logf("attempt %d: the transfer target did not acknowledge a write within the old leader's lease; again", attempt)
	}
	t.Fatal("the transfer target never acknowledged a write within the old leader's lease: the test proves nothing")
}

// transferEndsLease runs TestTransferEndsLease's scenario once on a new
// cluster; false if the target was too slow for it to prove anything.
func transferEndsLease(t *testing.T) bool {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.TickInterval = 100 * time.Millisecond // lease 720 ms
	})
	defer c.stopAll() // an attempt that proves nothing must not load the next
	leader := c.waitLeader(10 * time.Second)
	target := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[leader], "k", "old"); err != nil {
		t.Fatal(err)
	}
	if v, _ := mustGet(t, c.nodes[leader], "k"); v != "old" {
		t.Fatalf("leader reads %q", v)
	}
	// Raft hands leadership only to a target it knows is up to date, and the
	// leader will hear nothing more once the transfer starts: it must know
	// already that the target has its whole log.
	waitApplied(t, c.nodes[target], c.nodes[leader].applied.Load())
	waitUntil(t, 5*time.Second, "the leader knows that "+target+" has its whole log",
		func() bool {
			for _, m := range c.nodes[leader].Status().Members {
				if m.Name == target {
					return m.HasProgress && m.Lag == 0
				}
			}
			return false
		},
		func() string {
			return fmt.Sprintf("the leader's view of the members: %+v", c.nodes[leader].Status().Members)
		})
	if v, _ := mustGet(t, c.nodes[leader], "k"); v != "old" {
		t.Fatalf("leader reads %q", v)
	}
	leaseEnd := heldLease(t, c.nodes[leader]).Add(-50 * time.Millisecond)
	// The leader still sends but hears nobody.
	c.nw.mu.Lock()
	for name := range c.nodes {
		if name != leader {
			c.nw.cut[[2]uint64{RaftID(name), RaftID(leader)}] = true
		}
	}
	c.nw.mu.Unlock()
	go func() {
		tctx, tcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer tcancel()
		c.nodes[leader].TransferLeader(tctx, target)
	}()
	if !putBefore(ctx, leaseEnd, c.nodes[target], "k", "new") {
		for name, n := range c.nodes {
			st := n.Status()
			t.Logf("%s: leader %q term %d commit %d since start %v", name, st.Leader, n.term.Load(), n.commit.Load(), time.Since(n.startedAt))
		}
		return false
	}
	rctx, cancel3 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel3()
	got, ok, err := c.nodes[leader].Get(rctx, []byte("k"), true)
	if err == nil && ok && string(got.Value) == "old" {
		t.Fatalf("the old leader read %q from its lease after handing over leadership and %q being acknowledged", got.Value, "new")
	}
	return true
}

// putBefore tries to write k=v through n until deadline, in short attempts
// (one forwarded to a leader that is cut off is lost), and reports whether a
// write was acknowledged.
func putBefore(ctx context.Context, deadline time.Time, n *Node, k, v string) bool {
	short, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for short.Err() == nil {
		actx, acancel := context.WithTimeout(short, 50*time.Millisecond)
		_, err := put(actx, n, k, v)
		acancel()
		if err == nil {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// TestConfChangeEndsLease: the voters that confirmed a lease may not make a
// majority of the next configuration, so applying a configuration change ends
// it; the next read takes a round again.
func TestConfChangeEndsLease(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.TickInterval = 100 * time.Millisecond // lease 720 ms
	})
	leader := c.waitLeader(10 * time.Second)
	n := c.nodes[leader]
	if _, err := put(context.Background(), n, "k", "v"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, n, "k")
	var until time.Time
	onLoop(t, n, func() { until = n.leaseUntil })
	if !time.Now().Before(until) {
		t.Fatalf("no lease after a confirmed read round (until %v)", until)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.AddMember(ctx, Member{Name: "n4", Peer: "mem:4", HTTP: "127.0.0.1:8004"}, true); err != nil {
		t.Fatal(err)
	}
	onLoop(t, n, func() { until = n.leaseUntil })
	if !until.IsZero() {
		t.Fatalf("lease still held until %v after a configuration change was applied", until)
	}
}
