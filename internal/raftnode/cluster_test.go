package raftnode

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

func TestClusterElectsOneLeaderAndForwardsWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	f := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// A write sent to a follower is forwarded to the leader and answered with
	// the same result.
	r, err := put(ctx, c.nodes[f], "key6", "myvalue")
	if err != nil || r.Status != kv.StatusOK {
		t.Fatalf("put via follower %s: %+v, %v", f, r, err)
	}
	// Linearizable reads on every node, followers included, see it.
	for name, n := range c.nodes {
		got, ok, err := n.Get(ctx, []byte("key6"), true)
		if err != nil || !ok || string(got.Value) != "myvalue" || got.Revision != r.Revision {
			t.Fatalf("linearizable get on %s: %+v, %v, %v", name, got, ok, err)
		}
	}
}

// TestNoTwoLeadersInOneTerm samples every node's view while leaders are killed
// and restarted, and fails if two nodes ever claim leadership in one term.
func TestNoTwoLeadersInOneTerm(t *testing.T) {
	c := newCluster(t, 3, nil)
	var mu sync.Mutex
	leaders := map[uint64]string{}
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		for name, n := range c.nodes {
			s := n.Status()
			if s.Leader != name {
				continue
			}
			if prev, ok := leaders[s.Term]; ok && prev != name {
				t.Fatalf("term %d has two leaders: %s and %s", s.Term, prev, name)
			}
			leaders[s.Term] = name
		}
	}
	for round := 0; round < 4; round++ {
		leader := c.waitLeader(5 * time.Second)
		check()
		c.stop(leader)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			check()
			if l := c.nodes[c.follower("")].Status().Leader; l != "" && l != leader {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		c.start(leader)
	}
	if len(leaders) < 4 {
		t.Fatalf("saw leaders in only %d terms: %v", len(leaders), leaders)
	}
	t.Logf("leaders by term: %v", leaders)
}

func TestReelectionAfterLeaderLossKeepsAcknowledgedWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := put(ctx, c.nodes[leader], fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(leader)
	start := time.Now()
	newLeader := c.waitLeader(5 * time.Second)
	// Election timeout is 10 ticks of 10ms, randomized up to 2x.
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("new leader after %v", d)
	}
	if newLeader == leader {
		t.Fatal("stopped node still leader")
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := put(wctx, c.nodes[c.follower(newLeader)], "after", "failover"); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	c.start(leader)
	for i := 0; i < 50; i++ {
		got, ok, err := c.nodes[leader].Get(wctx, []byte(fmt.Sprintf("k%d", i)), true)
		if err != nil || !ok || string(got.Value) != "v" {
			t.Fatalf("restarted old leader: k%d = %+v %v %v", i, got, ok, err)
		}
	}
	if _, ok, err := c.nodes[leader].Get(wctx, []byte("after"), true); err != nil || !ok {
		t.Fatalf("restarted node missed the write made while it was down: %v %v", ok, err)
	}
}

func TestMinorityCannotWriteOrReadLinearizably(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	c.nw.isolate(RaftID(leader))
	short, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := put(short, c.nodes[leader], "minority", "x"); err == nil {
		t.Fatal("isolated leader acknowledged a write")
	}
	if _, _, err := c.nodes[leader].Get(short, []byte("minority"), true); err == nil {
		t.Fatal("isolated leader answered a linearizable read")
	}
	// The majority elects a new leader and serves.
	var majority []string
	for name := range c.nodes {
		if name != leader {
			majority = append(majority, name)
		}
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	var err error
	for ctx.Err() == nil {
		if _, err = put(ctx, c.nodes[majority[0]], "majority", "y"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("majority could not write: %v", err)
	}
	c.nw.heal()
	for ctx.Err() == nil {
		v, ok, err := c.nodes[leader].Get(ctx, []byte("majority"), true)
		if err == nil && ok && string(v.Value) == "y" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, ok, _ := c.nodes[leader].Get(ctx, []byte("minority"), true); ok {
		t.Fatalf("the write refused on the minority side appeared: %+v", got)
	}
}

func TestLaggingFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 200
		cfg.LogEntriesKept = 50
	})
	leader := c.waitLeader(5 * time.Second)
	lagger := c.follower(leader)
	c.stop(lagger)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 1000; i++ {
		if _, err := put(ctx, c.nodes[leader], fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	n := c.start(lagger)
	waitCaughtUp(t, 30*time.Second, n, c.nodes[leader])
	if n.snapsInstalled.Load() == 0 {
		t.Fatal("the lagging follower caught up without a snapshot: the log was not compacted far enough")
	}
	for i := 0; i < 1000; i++ {
		got, ok := n.KV().Get([]byte(fmt.Sprintf("k%04d", i)))
		if !ok || string(got.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%04d on the caught-up follower = %+v, %v", i, got, ok)
		}
	}
	// It restarts from its own snapshot too.
	c.stop(lagger)
	n = c.start(lagger)
	if got, ok, err := n.Get(ctx, []byte("k0999"), true); err != nil || !ok {
		t.Fatalf("after restart: %+v %v %v", got, ok, err)
	}
}

func TestMembershipAddPromoteRemove(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		put(ctx, c.nodes[leader], fmt.Sprintf("k%d", i), "v")
	}
	n := c.join(ctx, c.follower(leader), Member{Name: "n4", Peer: "mem:4", HTTP: "127.0.0.1:8004"})
	waitCaughtUp(t, 15*time.Second, n, c.nodes[leader])
	if got, ok := n.KV().Get([]byte("k19")); !ok || string(got.Value) != "v" {
		t.Fatal("learner did not catch up")
	}
	if err := c.nodes[leader].PromoteMember(ctx, "n4"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	gone := c.follower(leader)
	if err := c.nodes[leader].RemoveMember(ctx, gone); err != nil && !errors.Is(err, ErrStopped) {
		t.Fatalf("remove: %v", err)
	}
	// The removed member learns it and stops itself.
	select {
	case <-c.nodes[gone].Done():
		if err := c.nodes[gone].Err(); !errors.Is(err, ErrRemoved) {
			t.Fatalf("removed member stopped with %v, want ErrRemoved", err)
		}
	case <-ctx.Done():
		t.Fatal("removed member is still running")
	}
	if _, err := put(ctx, c.nodes[leader], "after", "membership"); err != nil {
		t.Fatalf("write after membership changes: %v", err)
	}
	st := c.nodes[leader].Status()
	if len(st.Members) != 3 {
		t.Fatalf("members after add+remove = %+v, want 3", st.Members)
	}
}

// TestTransportNamesMembers: the transport learns every member's name, for
// its log lines: the initial members' when a node opens, a new member's when
// its addition is applied.
func TestTransportNamesMembers(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c.join(ctx, leader, Member{Name: "n4", Peer: "mem:4", HTTP: "127.0.0.1:8004"})
	for _, self := range []string{"n1", "n2", "n3", "n4"} {
		want := map[uint64]string{}
		for _, m := range []string{"n1", "n2", "n3", "n4"} {
			if m != self {
				want[RaftID(m)] = m
			}
		}
		tr := c.nodes[self].host.cfg.Transport.(*memTransport)
		waitUntil(t, 5*time.Second, self+"'s transport names its peers",
			func() bool { return maps.Equal(tr.namesOf(), want) },
			func() string { return fmt.Sprintf("names %v, want %v", tr.namesOf(), want) })
	}
}

func TestLeaderTransfer(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	target := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.nodes[leader].TransferLeader(ctx, target); err != nil {
		t.Fatal(err)
	}
	if got := c.waitLeader(5 * time.Second); got != target {
		t.Fatalf("leader = %s after transfer to %s", got, target)
	}
}

// TestLeaderTransferFromAFollower: a follower asked to move leadership gets
// it moved (Raft forwards the request to the leader): to another follower,
// to itself when no target is named, and at once to the member that already
// leads.
func TestLeaderTransferFromAFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader := c.waitLeader(5 * time.Second)
	var asker, target string
	for name := range c.nodes {
		switch {
		case name == leader:
		case asker == "":
			asker = name
		default:
			target = name
		}
	}
	if err := c.nodes[asker].TransferLeader(ctx, target); err != nil {
		t.Fatalf("%s asked to move leadership from %s to %s: %v", asker, leader, target, err)
	}
	if got := c.waitLeader(5 * time.Second); got != target {
		t.Fatalf("leader = %s after %s asked for %s", got, asker, target)
	}
	// No target named: the follower asking is the one.
	if err := c.nodes[asker].TransferLeader(ctx, ""); err != nil {
		t.Fatalf("%s asked to move leadership from %s: %v", asker, target, err)
	}
	if got := c.waitLeader(5 * time.Second); got != asker {
		t.Fatalf("leader = %s after %s asked for it", got, asker)
	}
	start := time.Now()
	if err := c.nodes[target].TransferLeader(ctx, asker); err != nil || time.Since(start) > time.Second {
		t.Fatalf("transfer to the leader %s took %v: %v", asker, time.Since(start), err)
	}
}

// TestLeaderTransferRefusals: a transfer that cannot succeed is refused at
// once, saying why, and one to the leader itself succeeds at once.
func TestLeaderTransferRefusals(t *testing.T) {
	n := openNode(t, testConfig(t.TempDir()))
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.AddMember(ctx, Member{Name: "n2", Peer: "127.0.0.1:9002"}, true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		to   string
		want error
		text string
	}{
		{"n2", ErrTransferRefused, "leadership transfer refused: member n2 is a learner, which cannot lead; promote it to a voter first"},
		{"", ErrTransferRefused, "leadership transfer refused: no other voter to transfer leadership to"},
		{"n9", ErrUnknownMember, `no such member: "n9"`},
		{"n1", nil, ""},
	} {
		err := n.TransferLeader(ctx, tc.to)
		if !errors.Is(err, tc.want) || (err != nil && err.Error() != tc.text) {
			t.Errorf("transfer to %q: %v, want %q", tc.to, err, tc.text)
		}
	}
}

// TestLossyNetworkLosesNoAcknowledgedWrite runs writes through followers while
// the network drops, duplicates and delays messages, then heals it and checks
// that every acknowledged write is on every node.
func TestLossyNetworkLosesNoAcknowledgedWrite(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.waitLeader(5 * time.Second)
	c.nw.mu.Lock()
	c.nw.drop, c.nw.dup, c.nw.delay = 0.1, 0.1, time.Millisecond
	c.nw.mu.Unlock()
	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	for w, name := range []string{"n1", "n2", "n3"} {
		wg.Add(1)
		go func(w int, n *Node) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("v%d", i)
				if r, err := put(ctx, n, k, v); err == nil && r.Status == kv.StatusOK {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				}
				cancel()
			}
		}(w, c.nodes[name])
	}
	wg.Wait()
	c.nw.heal()
	if len(acked) < 30 {
		t.Fatalf("only %d writes acknowledged on the lossy network", len(acked))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, n := range c.nodes {
		for k, v := range acked {
			got, ok, err := n.Get(ctx, []byte(k), true)
			if err != nil || !ok || string(got.Value) != v {
				t.Fatalf("%s: acknowledged %s=%s reads %+v %v %v", name, k, v, got, ok, err)
			}
		}
	}
	t.Logf("%d writes acknowledged through a lossy network, all on every node", len(acked))
}

// TestStatusShowsHealthAndAddresses starts members that know only each
// other's peer addresses (as --cluster gives them) and checks that every
// node's HTTP address spreads through the log, and that the leader reports
// match index, lag and reachability, including a member that went down.
func TestStatusShowsHealthAndAddresses(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		ms := make([]Member, len(cfg.Members))
		for i, m := range cfg.Members {
			ms[i] = Member{Name: m.Name, Peer: m.Peer}
		}
		cfg.Members = ms
	})
	leader := c.waitLeader(5 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	var st Status
	for time.Now().Before(deadline) {
		st = c.nodes[leader].Status()
		ok := len(st.Members) == 3
		for _, m := range st.Members {
			ok = ok && m.HTTP != "" && m.Reachable && m.HasProgress && m.Lag == 0
		}
		if ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, m := range st.Members {
		if m.HTTP == "" || !m.Reachable || !m.HasProgress || m.Lag != 0 {
			t.Fatalf("leader's status of %s: %+v", m.Name, m)
		}
	}
	down := c.follower(leader)
	c.stop(down)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		if _, err := put(ctx, c.nodes[leader], fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	for ctx.Err() == nil {
		for _, m := range c.nodes[leader].Status().Members {
			if m.Name == down && !m.Reachable && m.Lag >= 20 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("leader never reported %s as unreachable and lagging: %+v", down, c.nodes[leader].Status().Members)
}

// TestStatusShowsConfigurationAtOnce: Status agrees with the applied
// configuration as soon as a change returns, not a tick later (the ticks
// are a second apart here): a new learner is a learner, a promoted one a
// voter. A node bootstrapped from a list of peer addresses reports its own
// HTTP address before it has published it through the log.
func TestStatusShowsConfigurationAtOnce(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.TickInterval = time.Second
	cfg.Members = []Member{{Name: cfg.Self.Name, Peer: cfg.Self.Peer}}
	n := openNode(t, cfg)
	defer n.Stop()
	role := func(name string) string {
		for _, m := range n.Status().Members {
			if m.Name == name {
				if m.Learner {
					return "learner"
				}
				return "voter"
			}
		}
		return "absent"
	}
	if st := n.Status(); len(st.Members) != 1 || st.Members[0].HTTP != cfg.Self.HTTP {
		t.Fatalf("a new node's own member: %+v, want its HTTP address %s", st.Members, cfg.Self.HTTP)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.AddMember(ctx, Member{Name: "n2", Peer: "127.0.0.1:9002", HTTP: "127.0.0.1:8002"}, true); err != nil {
		t.Fatal(err)
	}
	if got := role("n2"); got != "learner" {
		t.Fatalf("n2 just added as a learner is %s", got)
	}
	if err := n.PromoteMember(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if got := role("n2"); got != "voter" {
		t.Fatalf("n2 just promoted is %s", got)
	}
}

// TestLostReadIndexIsRetried loses every ReadIndex request and answer for a
// while: a linearizable read on a follower must still be answered soon after
// the network recovers, without a leader change to shake it loose.
func TestLostReadIndexIsRetried(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	f := c.nodes[c.follower(leader)]
	if _, err := put(context.Background(), c.nodes[leader], "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		return m.Type == raftpb.MsgReadIndex || m.Type == raftpb.MsgReadIndexResp
	}
	c.nw.mu.Unlock()
	time.AfterFunc(300*time.Millisecond, func() {
		c.nw.mu.Lock()
		c.nw.lose = nil
		c.nw.mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	got, ok, err := f.Get(ctx, []byte("k"), true)
	if err != nil || !ok || string(got.Value) != "v" {
		t.Fatalf("read after lost ReadIndex: %+v %v %v", got, ok, err)
	}
	// Lost for 300ms; retried every election timeout (100ms).
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("read took %v", d)
	}
	if l := c.nodes[leader].Status().Leader; l != leader {
		t.Fatalf("leader changed to %s: the test proves nothing", l)
	}
}

// TestStaleReadIndexAnswerIsIgnored delivers to a restarted follower a
// ReadIndex answer meant for its previous incarnation. It must not release a
// new read: that read would miss writes committed after the old answer.
func TestStaleReadIndexAnswerIsIgnored(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	name := c.follower(leader)
	id := RaftID(name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[leader], "k", "old"); err != nil {
		t.Fatal(err)
	}
	// Capture the leader's answer to one read of the follower.
	var captured []raftpb.Message
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		if m.Type == raftpb.MsgReadIndexResp && m.To == id {
			captured = append(captured, m)
			return true
		}
		return false
	}
	c.nw.mu.Unlock()
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	c.nodes[name].Get(short, []byte("k"), true)
	cancelShort()
	c.nw.heal()
	c.nw.mu.Lock()
	old := append([]raftpb.Message(nil), captured...)
	c.nw.mu.Unlock()
	if len(old) == 0 {
		t.Fatal("no ReadIndex answer captured")
	}

	c.stop(name)
	n := c.start(name)
	waitCaughtUp(t, 5*time.Second, n, c.nodes[leader])
	// Cut everything to the follower, commit a new value on the majority,
	// and read on the follower while only the stale answer reaches it.
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool { return m.To == id }
	c.nw.mu.Unlock()
	if _, err := put(ctx, c.nodes[leader], "k", "new"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		v   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		kvp, _, err := n.Get(ctx, []byte("k"), true)
		done <- result{string(kvp.Value), err}
	}()
	for i := 0; i < 5; i++ {
		time.Sleep(5 * time.Millisecond)
		n.HandleRaft(1, old)
	}
	select {
	case r := <-done:
		t.Fatalf("read released by a stale answer: got %q (%v) while the committed value is \"new\"", r.v, r.err)
	case <-time.After(30 * time.Millisecond):
	}
	c.nw.heal()
	r := <-done
	if r.err != nil || r.v != "new" {
		t.Fatalf("read after heal = %q, %v; want \"new\"", r.v, r.err)
	}
}

// A write that reached Raft when its node stopped may still be committed by
// the others: the caller is told its outcome is unknown, not that it failed.
func TestStopWithProposalInFlightSaysOutcomeUnknown(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	c.nw.isolate(RaftID(leader)) // the entry gets into its log but cannot commit
	n := c.nodes[leader]
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := put(ctx, n, "in-flight", "x")
		errc <- err
	}()
	// Stopped before the proposal reaches Raft, the node would refuse it
	// for certain (the other half of this test, below).
	waitUntil(t, 5*time.Second, "the proposal reaches the isolated leader's Raft",
		func() bool { return handedToRaft(t, n) > 0 },
		func() string {
			select {
			case err := <-errc:
				return fmt.Sprintf("the write returned already: %v", err)
			default:
				return fmt.Sprintf("none handed; status %+v", n.Status())
			}
		})
	c.stop(leader)
	err := <-errc
	var unknown interface{ OutcomeUnknown() bool }
	if err == nil || !errors.As(err, &unknown) || !unknown.OutcomeUnknown() {
		t.Fatalf("proposal in flight when its node stopped: %v (%T); want an outcome-unknown error", err, err)
	}
	// A write that never reached Raft is refused for certain.
	if _, err := put(context.Background(), n, "after-stop", "x"); err == nil || errors.As(err, &unknown) {
		t.Fatalf("write after stop: %v; want a definite error", err)
	}
}

// A member added after the newest snapshot, to a cluster whose log was
// compacted, is refused that snapshot by its own Raft (it is not in the
// snapshot's configuration). The leader takes a new one at once, without
// waiting for SnapshotEntries more writes, and the learner catches up on an
// otherwise idle cluster.
func TestNewMemberCatchesUpWhenNewestSnapshotPredatesIt(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 50
		cfg.LogEntriesKept = 5
	})
	leader := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 120; i++ { // two snapshots, log compacted behind them
		if _, err := put(ctx, c.nodes[leader], fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	n := c.join(ctx, leader, Member{Name: "n4", Peer: "mem:4", HTTP: "127.0.0.1:8004"})
	// No more writes: only a snapshot taken for n4 can bring it up to date.
	waitCaughtUp(t, 20*time.Second, n, c.nodes[leader])
	if got, ok := n.KV().Get([]byte("k119")); !ok || string(got.Value) != "v" {
		t.Fatalf("learner did not catch up: applied %d, leader %d", n.Status().AppliedIndex, c.nodes[leader].Status().AppliedIndex)
	}
}

// A joining node hears the leader's heartbeats (so it knows the leader, and a
// commit index of 0) before the log reaches it; it must not say it is ready
// until it has the log and is in the configuration it applied.
func TestJoiningNodeIsNotReadyBeforeItHasTheLog(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := 0; i < 10; i++ {
		if _, err := put(ctx, c.nodes[leader], fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	n4id := RaftID("n4")
	var blocked atomic.Bool
	var heartbeats atomic.Int64 // delivered to n4
	blocked.Store(true)
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		if m.To == n4id && m.Type == raftpb.MsgHeartbeat {
			heartbeats.Add(1)
		}
		return blocked.Load() && m.To == n4id && m.Type == raftpb.MsgApp
	}
	c.nw.mu.Unlock()
	n := c.join(ctx, leader, Member{Name: "n4", Peer: "mem:4", HTTP: "127.0.0.1:8004"})
	// Until it hears a heartbeat it has no leader; then the only thing it
	// lacks is the log.
	err := n.Ready()
	for ctx.Err() == nil && errors.Is(err, ErrNoLeader) {
		time.Sleep(10 * time.Millisecond)
		err = n.Ready()
	}
	if errors.Is(err, ErrNoLeader) {
		t.Fatal("the joining node never heard of the leader")
	}
	// Not ready at any point while several more heartbeats arrive: each
	// tells it the leader's commit index, none brings the log.
	const more = 5
	seen := heartbeats.Load()
	waitUntil(t, 5*time.Second, fmt.Sprintf("%d more heartbeats reach the joining node", more),
		func() bool {
			if err := n.Ready(); err == nil {
				t.Fatalf("joining node without the log (applied %d, %d heartbeats) says it is ready", n.Status().AppliedIndex, heartbeats.Load())
			}
			return heartbeats.Load() >= seen+more
		},
		func() string { return fmt.Sprintf("%d heartbeats so far, %d before", heartbeats.Load(), seen) })
	blocked.Store(false)
	waitReady(t, n)
	if got, ok := n.KV().Get([]byte("k9")); !ok || string(got.Value) != "v" {
		t.Fatal("ready, but the log has not arrived")
	}
}

// waitCaughtUp waits until n has applied everything leader has.
func waitCaughtUp(t *testing.T, timeout time.Duration, n, leader *Node) {
	t.Helper()
	waitUntil(t, timeout, n.cfg.Self.Name+" catches up with the leader",
		func() bool { return n.Status().AppliedIndex >= leader.Status().AppliedIndex },
		func() string {
			return fmt.Sprintf("applied %d, the leader %d", n.Status().AppliedIndex, leader.Status().AppliedIndex)
		})
}

// handedToRaft returns how many of n's waiting proposals are in its Raft
// log: handed to Raft and not dropped. It looks on n's loop, between two of
// its steps, where handed is settled.
func handedToRaft(t *testing.T, n *Node) int {
	t.Helper()
	handed := 0
	onLoop(t, n, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, p := range n.waiters {
			if p.handed {
				handed++
			}
		}
	})
	return handed
}
