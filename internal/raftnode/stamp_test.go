package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// counterStamper hands out revisions from one counter, as the oracle does,
// and counts its fetches.
type counterStamper struct {
	mu      sync.Mutex
	next    uint64
	fetches atomic.Int64
	fail    atomic.Bool
}

func (s *counterStamper) Stamps(_ context.Context, n int, floor uint64) (uint64, error) {
	s.fetches.Add(1)
	if s.fail.Load() {
		return 0, fmt.Errorf("the oracle is away")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = max(s.next, floor+1)
	first := s.next
	s.next += uint64(n)
	return first, nil
}

// TestWritesTakeClusterWideRevisions: with a Stamper, two groups' writes,
// sent to leaders and to followers, take revisions from it: each above
// every revision acknowledged before the write started, in either group,
// growing along each group's log, the same on every replica.
func TestWritesTakeClusterWideRevisions(t *testing.T) {
	st := &counterStamper{next: 1_000_000}
	c := newHostCluster(t, 3, func(cfg *Config) { cfg.Stamper = st })
	for _, m := range c.members {
		c.open(m.Name, 1, 2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.leader(1)
	c.leader(2)
	var nodes []*Node
	for _, h := range c.hosts {
		nodes = append(nodes, h.Group(1), h.Group(2))
	}
	var mu sync.Mutex
	var acked int64 // the largest revision acknowledged so far
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				mu.Lock()
				before := acked
				mu.Unlock()
				n := nodes[(w+i)%len(nodes)]
				res, err := put(ctx, n, fmt.Sprintf("k%d-%d", w, i), "v")
				if err != nil {
					errs <- err
					return
				}
				if res.Revision <= before || res.Revision < 1_000_000 {
					errs <- fmt.Errorf("a write that started after revision %d was acknowledged got %d", before, res.Revision)
					return
				}
				mu.Lock()
				acked = max(acked, res.Revision)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st.fetches.Load() == 0 {
		t.Fatal("no stamps fetched")
	}
	// Every replica of a group holds the same revisions.
	for _, shard := range []uint64{1, 2} {
		lead := c.leader(shard)
		if err := lead.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{}
		for p := range lead.KV().Snapshot().All() {
			want[string(p.Key)] = p.Revision
		}
		for name, h := range c.hosts {
			g := h.Group(shard)
			for deadline := time.Now().Add(5 * time.Second); g.Status().AppliedIndex < lead.Status().CommitIndex; {
				if time.Now().After(deadline) {
					t.Fatalf("%s did not catch up on group %d", name, shard)
				}
				time.Sleep(10 * time.Millisecond)
			}
			for p := range g.KV().Snapshot().All() {
				if want[string(p.Key)] != p.Revision {
					t.Fatalf("group %d on %s: %s at revision %d, the leader has %d", shard, name, p.Key, p.Revision, want[string(p.Key)])
				}
			}
		}
	}
	t.Logf("200 writes, %d fetches of stamps, last revision %d", st.fetches.Load(), acked)

	// Without stamps, a write is refused as not made.
	st.fail.Store(true)
	_, err := put(ctx, c.leader(1), "after", "v")
	var nm interface{ NotMade() bool }
	if err == nil || !errors.As(err, &nm) {
		t.Fatalf("a write without stamps: %v; want one certainly not made", err)
	}
	if _, ok := c.leader(1).KV().Get([]byte("after")); ok {
		t.Fatal("a write without a stamp was applied")
	}
	// A meta-like command takes none.
	if _, err := c.leader(1).Propose(ctx, kv.Command{Op: kv.OpMark, Mark: 7}); err != nil {
		t.Fatalf("a mark while the oracle is away: %v", err)
	}
}

// TestFollowerWriteDuringATransferIsKept: a write sent to a follower while
// the leader transfers its leadership (to a node cut off, so that the
// transfer hangs until Raft gives it up after an election timeout) reaches
// the leader when Raft takes no proposal. It is kept and proposed once the
// transfer is over, and answered; dropped, as it was, its client waited out
// its whole deadline.
func TestFollowerWriteDuringATransferIsKept(t *testing.T) {
	const election = 500 * time.Millisecond
	st := &counterStamper{next: 1_000_000}
	c := newHostCluster(t, 3, func(cfg *Config) {
		cfg.Stamper = st
		cfg.ElectionTicks = int(election / cfg.TickInterval)
	})
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader(1)
	if _, err := put(ctx, leader, "before", "v"); err != nil {
		t.Fatal(err)
	}
	var follower, target *Node
	for _, h := range c.hosts {
		if g := h.Group(1); g != leader {
			if target == nil {
				target = g
			} else {
				follower = g
			}
		}
	}
	c.nw.isolate(target.raftID)
	go leader.TransferLeader(ctx, target.cfg.Self.Name) //nolint:errcheck // it fails: the target is cut off
	waitUntil(t, 5*time.Second, "the leader's transfer is under way", func() bool {
		var under bool
		onLoop(t, leader, func() { under = leader.rn.BasicStatus().LeadTransferee != 0 })
		return under
	}, func() string { return "no transfer" })
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 4*election)
	defer wcancel()
	res, err := put(wctx, follower, "during", "v")
	if err != nil {
		t.Fatalf("a write through a follower during the leader's transfer: %v after %v", err, time.Since(start))
	}
	if res.Revision < 1_000_000 {
		t.Fatalf("the write took revision %d, not a stamp", res.Revision)
	}
	t.Logf("answered after %v (election timeout %v)", time.Since(start), election)
}

// heldStamper is a counterStamper whose fetches wait while it is held.
type heldStamper struct {
	counterStamper
	mu   sync.Mutex
	gate chan struct{} // non-nil while held; closed to let the fetches go on
	held atomic.Int64  // fetches that have waited at the gate
}

func (s *heldStamper) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *heldStamper) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.gate)
	s.gate = nil
}

func (s *heldStamper) Stamps(ctx context.Context, n int, floor uint64) (uint64, error) {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		s.held.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return s.counterStamper.Stamps(ctx, n, floor)
}

// TestFollowerWriteWhoseLeaderStepsDownBeforeItsStampIsKept: a write sent to
// a follower reaches the leader, which fetches its stamp; meanwhile the
// leader hands its leadership over, and when the stamp comes it follows no
// one yet (the new leader's first message has not arrived), so Raft refuses
// the write, unstamped, as a proposal without a leader. It is kept and
// forwarded once the new leader is known, and answered; dropped, as it was,
// its client waited out its whole deadline ("leader n2 did not answer in
// time", bench/scaleout.sh's load pass).
func TestFollowerWriteWhoseLeaderStepsDownBeforeItsStampIsKept(t *testing.T) {
	const election = 500 * time.Millisecond
	st := &heldStamper{counterStamper: counterStamper{next: 1_000_000}}
	c := newHostCluster(t, 3, func(cfg *Config) {
		cfg.Stamper = st
		cfg.ElectionTicks = int(election / cfg.TickInterval)
	})
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader(1)
	if _, err := put(ctx, leader, "before", "v"); err != nil {
		t.Fatal(err)
	}
	var follower, target *Node
	for _, h := range c.hosts {
		if g := h.Group(1); g != leader {
			if target == nil {
				target = g
			} else {
				follower = g
			}
		}
	}

	st.hold()
	type answer struct {
		res kv.Result
		err error
	}
	answered := make(chan answer, 1)
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 4*election)
	defer wcancel()
	go func() {
		res, err := put(wctx, follower, "during", "v")
		answered <- answer{res, err}
	}()
	waitUntil(t, 5*time.Second, "the leader fetches the write's stamp", func() bool { return st.held.Load() > 0 },
		func() string { return "no fetch" })

	// The new leader's appends and heartbeats do not reach the old one, which
	// so follows no one once it has voted.
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		return m.From == target.raftID && m.To == leader.raftID && m.Term > 0 &&
			(m.Type == raftpb.MsgApp || m.Type == raftpb.MsgHeartbeat)
	}
	c.nw.mu.Unlock()
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	go leader.TransferLeader(tctx, target.cfg.Self.Name) //nolint:errcheck // cancelled once it is done
	waitUntil(t, 5*time.Second, "the target leads and the old leader follows no one", func() bool {
		var lead uint64
		onLoop(t, leader, func() { lead = leader.rn.BasicStatus().Lead })
		return target.Status().Leader == target.cfg.Self.Name && lead == 0
	}, func() string { return fmt.Sprintf("the target sees leader %q", target.Status().Leader) })
	tcancel()

	st.release()
	waitUntil(t, 5*time.Second, "the old leader has the stamp", func() bool {
		var stamping bool
		onLoop(t, leader, func() { stamping = leader.stamping })
		return !stamping
	}, func() string { return "still fetching" })
	c.nw.heal()

	a := <-answered
	if a.err != nil {
		t.Fatalf("a write through a follower whose leader stepped down before its stamp came: %v after %v", a.err, time.Since(start))
	}
	if a.res.Revision < 1_000_000 {
		t.Fatalf("the write took revision %d, not a stamp", a.res.Revision)
	}
	if v, ok := mustGet(t, target, "during"); !ok || v != "v" {
		t.Fatalf("the new leader reads %q (found %v), want v", v, ok)
	}
	t.Logf("answered after %v (election timeout %v)", time.Since(start), election)
}

// TestFollowerWriteToAnOldLeaderThatFollowsNoOneIsKept: a follower that has
// not yet heard of a new leader forwards a write to the old one, which has
// voted for the new leader and follows no one until its first append
// arrives. Raft refuses the proposal there; it is kept and forwarded once
// the new leader is known, and answered. Dropped, as it was, its client
// waited out its whole deadline ("leader n1 did not answer in time").
func TestFollowerWriteToAnOldLeaderThatFollowsNoOneIsKept(t *testing.T) {
	const election = time.Second
	c := newHostCluster(t, 3, func(cfg *Config) {
		cfg.Stamper = &counterStamper{next: 1_000_000}
		cfg.ElectionTicks = int(election / cfg.TickInterval)
	})
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader(1)
	if _, err := put(ctx, leader, "before", "v"); err != nil {
		t.Fatal(err)
	}
	var follower, target *Node
	for _, h := range c.hosts {
		if g := h.Group(1); g != leader {
			if target == nil {
				target = g
			} else {
				follower = g
			}
		}
	}

	// Nothing of the target reaches the follower, which so goes on
	// following the old leader; the target's appends and heartbeats do not
	// reach the old leader, which so follows no one once it has voted.
	var delivered atomic.Bool // the follower's write has reached the old leader
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		if m.From == follower.raftID && m.To == leader.raftID && m.Type == raftpb.MsgProp {
			delivered.Store(true)
		}
		return m.From == target.raftID && m.To == follower.raftID ||
			m.From == target.raftID && m.To == leader.raftID && m.Term > 0 &&
				(m.Type == raftpb.MsgApp || m.Type == raftpb.MsgHeartbeat)
	}
	c.nw.mu.Unlock()
	tctx, tcancel := context.WithCancel(ctx)
	defer tcancel()
	go leader.TransferLeader(tctx, target.cfg.Self.Name) //nolint:errcheck // cancelled once it is done
	waitUntil(t, 5*time.Second, "the target leads and the old leader follows no one", func() bool {
		var lead uint64
		onLoop(t, leader, func() { lead = leader.rn.BasicStatus().Lead })
		return target.Status().Leader == target.cfg.Self.Name && lead == 0
	}, func() string { return fmt.Sprintf("the target sees leader %q", target.Status().Leader) })
	tcancel()
	if l := follower.Status().Leader; l != leader.cfg.Self.Name {
		t.Fatalf("the follower sees leader %q, want the old one, %s", l, leader.cfg.Self.Name)
	}

	type answer struct {
		res kv.Result
		err error
	}
	answered := make(chan answer, 1)
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 2*election)
	defer wcancel()
	go func() {
		res, err := put(wctx, follower, "during", "v")
		answered <- answer{res, err}
	}()
	waitUntil(t, 5*time.Second, "the old leader has taken the follower's write", func() bool {
		return delivered.Load() && len(leader.recvc) == 0
	}, func() string {
		return fmt.Sprintf("delivered %v, %d batches queued", delivered.Load(), len(leader.recvc))
	})
	onLoop(t, leader, func() {}) // the turn that stepped it is over
	c.nw.heal()

	a := <-answered
	if a.err != nil {
		t.Fatalf("a write through a follower that reached the old leader after it voted for the new one: %v after %v", a.err, time.Since(start))
	}
	if a.res.Revision < 1_000_000 {
		t.Fatalf("the write took revision %d, not a stamp", a.res.Revision)
	}
	if v, ok := mustGet(t, target, "during"); !ok || v != "v" {
		t.Fatalf("the new leader reads %q (found %v), want v", v, ok)
	}
	t.Logf("answered after %v (election timeout %v)", time.Since(start), election)
}
