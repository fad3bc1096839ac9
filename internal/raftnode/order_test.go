package raftnode

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/vfs"
)

// tap is a Transport that calls before with each send's messages first.
type tap struct {
	Transport
	before func(msgs []raftpb.Message)
}

func (t *tap) Send(shard uint64, msgs []raftpb.Message) {
	t.before(msgs)
	t.Transport.Send(shard, msgs)
}

// sendGate, once armed, holds each send (through a tap) with a message match
// accepts: until the gate is disarmed, or for hold if it is not zero. The
// sending goroutine waits with it.
type sendGate struct {
	mu    sync.Mutex
	match func(m raftpb.Message) bool
	hold  time.Duration
	open  chan struct{} // nil: disarmed
}

func (g *sendGate) arm(match func(m raftpb.Message) bool, hold time.Duration) {
	g.mu.Lock()
	g.match, g.hold, g.open = match, hold, make(chan struct{})
	g.mu.Unlock()
}

func (g *sendGate) disarm() {
	g.mu.Lock()
	if g.open != nil {
		close(g.open)
		g.open = nil
	}
	g.mu.Unlock()
}

func (g *sendGate) wait(msgs []raftpb.Message) {
	g.mu.Lock()
	open, match, hold := g.open, g.match, g.hold
	g.mu.Unlock()
	if open == nil || !slices.ContainsFunc(msgs, match) {
		return
	}
	if hold == 0 {
		<-open
		return
	}
	select {
	case <-open:
	case <-time.After(hold):
	}
}

// gatedCluster is a cluster whose nodes send through sendGates and whose
// fsyncs take 30 ms more while slow is set for the node.
func gatedCluster(t *testing.T) (c *cluster, gates map[uint64]*sendGate, slow map[uint64]*atomic.Bool) {
	gates = map[uint64]*sendGate{}
	slow = map[uint64]*atomic.Bool{}
	var mu sync.Mutex
	c = newCluster(t, 3, func(cfg *Config) {
		mu.Lock()
		defer mu.Unlock()
		id := RaftID(cfg.Self.Name)
		if gates[id] == nil {
			gates[id] = &sendGate{}
			slow[id] = new(atomic.Bool)
		}
		cfg.Transport = &tap{Transport: cfg.Transport, before: gates[id].wait}
		s := slow[id]
		cfg.FS = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpSync && s.Load() {
				time.Sleep(30 * time.Millisecond)
			}
			return vfs.Fault{}
		})
	})
	t.Cleanup(func() {
		for _, g := range gates {
			g.disarm()
		}
	})
	return c, gates, slow
}

// settled puts a value through the leader l and waits until every node has
// applied it; it returns the commit index.
func settled(t *testing.T, c *cluster, l string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[l], "warm", "x"); err != nil {
		t.Fatal(err)
	}
	commit := c.nodes[l].Status().CommitIndex
	for _, n := range c.nodes {
		for n.Status().AppliedIndex < commit {
			if ctx.Err() != nil {
				t.Fatalf("%s applied %d of %d", n.Status().ID, n.Status().AppliedIndex, commit)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return commit
}

// TestLeaderAnswersBeforeItSendsTheCommit: a write the leader commits is
// answered before the leader sends the followers the new commit index, so
// that those sends (each a loopback write that runs the receiver's TCP input)
// do not delay the answer. With the followers' commit messages held, the
// leader must still answer.
//
// With one P, as distkv dev runs each node, the loop lets the appender write
// the hard state that commits the write before it applies; the Go scheduler
// takes its global queue first on one schedule in 61, and then the loop runs
// on before the appender has written, the apply waits for that write and the
// commit index goes out first (correct, only later). So the test tries three
// times and wants one answer; answering only after the sends, the leader
// answers none. The followers' fsyncs are slowed meanwhile, so that the
// write commits once the leader's own append is durable (two followers'
// acknowledgements would commit it while the leader's fsync, which its hard
// state's write waits for, is still under way).
func TestLeaderAnswersBeforeItSendsTheCommit(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// Commit indexes sent at once, not held for the next message: held,
	// this Ready would send nothing to hold up. (The order matters where a
	// commit index goes out with the Ready: to a follower whose write it
	// commits, or with new entries under load.) Restored after the nodes
	// stop.
	held := commitDeferral
	commitDeferral = 0
	t.Cleanup(func() { commitDeferral = held })
	c, gates, slow := gatedCluster(t)
	answered := 0
	for attempt := 0; attempt < 3 && answered == 0; attempt++ {
		l := c.waitLeader(5 * time.Second)
		ln, lid := c.nodes[l], RaftID(l)
		commit := settled(t, c, l)
		for id, s := range slow {
			s.Store(id != lid)
		}
		gates[lid].arm(func(m raftpb.Message) bool {
			return m.From == lid && m.Type == raftpb.MsgApp && m.Commit > commit
		}, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := put(ctx, ln, "k", "v")
		cancel()
		gates[lid].disarm()
		for _, s := range slow {
			s.Store(false)
		}
		if err == nil {
			answered++
		} else {
			t.Logf("attempt %d: the leader did not answer while its commit index was held: %v (%+v)", attempt+1, err, ln.Status())
		}
	}
	if answered == 0 {
		t.Fatal("the leader answered no write while its sends of the commit index were held: it answers only after sending them")
	}
}

// TestOriginAnswersBeforeItAcknowledges: a follower whose client waits for a
// write it forwarded answers once the write is durable here and known
// committed, before it sends the leader its acknowledgement (each send a
// loopback write of 10-20 us). Its acknowledgements are held for 300 ms; the
// write is committed meanwhile by the leader and the other follower, whose
// commit index reaches it while its own fsync (slowed by 30 ms) is under way,
// so it can answer in about 30 ms.
//
// As in TestLeaderAnswersBeforeItSendsTheCommit, one schedule in 61 lets the
// loop apply before the hard state that commits the write is written, and the
// answer waits for the held send; so three tries, and one answer wanted.
func TestOriginAnswersBeforeItAcknowledges(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const hold = 300 * time.Millisecond
	c, gates, slow := gatedCluster(t)
	answered := 0
	for attempt := 0; attempt < 3 && answered == 0; attempt++ {
		l := c.waitLeader(5 * time.Second)
		o := c.follower(l)
		lid, oid := RaftID(l), RaftID(o)
		commit := settled(t, c, l)
		slow[oid].Store(true)
		gates[oid].arm(func(m raftpb.Message) bool {
			return m.Type == raftpb.MsgAppResp && m.To == lid && m.Index > commit
		}, hold)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := put(ctx, c.nodes[o], "k", "v")
		took := time.Since(start)
		cancel()
		gates[oid].disarm()
		slow[oid].Store(false)
		if err == nil && took < hold/2 {
			answered++
		} else {
			t.Logf("attempt %d: %s answered its write after %v (err %v) with its acknowledgements held for %v", attempt+1, o, took.Round(time.Millisecond), err, hold)
		}
	}
	if answered == 0 {
		t.Fatalf("the origin of a write answered only after its acknowledgement to the leader, held %v, had gone", hold)
	}
}

// TestOriginsFirst: the leader's messages to the followers whose proposals it
// appends go out before the others, each peer's messages in their order.
func TestOriginsFirst(t *testing.T) {
	msgs := []raftpb.Message{
		{To: 2, Type: raftpb.MsgApp, Index: 10},
		{To: 2, Type: raftpb.MsgHeartbeat},
		{To: 3, Type: raftpb.MsgApp, Index: 11},
		{To: 3, Type: raftpb.MsgHeartbeat},
		{To: 4, Type: raftpb.MsgApp, Index: 12},
	}
	type sent struct {
		to uint64
		t  raftpb.MessageType
	}
	order := func(ms []raftpb.Message) []sent {
		var out []sent
		for _, m := range ms {
			out = append(out, sent{m.To, m.Type})
		}
		return out
	}
	for _, tc := range []struct {
		origins []uint64
		want    []sent
	}{
		{nil, []sent{{2, raftpb.MsgApp}, {2, raftpb.MsgHeartbeat}, {3, raftpb.MsgApp}, {3, raftpb.MsgHeartbeat}, {4, raftpb.MsgApp}}},
		{[]uint64{3}, []sent{{3, raftpb.MsgApp}, {3, raftpb.MsgHeartbeat}, {2, raftpb.MsgApp}, {2, raftpb.MsgHeartbeat}, {4, raftpb.MsgApp}}},
		{[]uint64{4, 3}, []sent{{3, raftpb.MsgApp}, {3, raftpb.MsgHeartbeat}, {4, raftpb.MsgApp}, {2, raftpb.MsgApp}, {2, raftpb.MsgHeartbeat}}},
		{[]uint64{2}, []sent{{2, raftpb.MsgApp}, {2, raftpb.MsgHeartbeat}, {3, raftpb.MsgApp}, {3, raftpb.MsgHeartbeat}, {4, raftpb.MsgApp}}},
	} {
		ms := slices.Clone(msgs)
		originsFirst(ms, tc.origins)
		if got := order(ms); !slices.Equal(got, tc.want) {
			t.Errorf("originsFirst(origins %v) sends %v, want %v", tc.origins, got, tc.want)
		}
	}
}

// recorder records the messages of each send (through a tap).
type recorder struct {
	mu    sync.Mutex
	sends [][]raftpb.Message
}

func (r *recorder) record(msgs []raftpb.Message) {
	r.mu.Lock()
	r.sends = append(r.sends, slices.Clone(msgs))
	r.mu.Unlock()
}

// recordingCluster is a 3-node cluster whose nodes send through recorders;
// recorderOf returns the recorder of a node's Raft ID. tweak, if not nil,
// changes each node's configuration further.
func recordingCluster(t *testing.T, tweak func(*Config)) (c *cluster, recorderOf func(uint64) *recorder) {
	recs := map[uint64]*recorder{}
	var mu sync.Mutex
	c = newCluster(t, 3, func(cfg *Config) {
		mu.Lock()
		defer mu.Unlock()
		r := &recorder{}
		recs[RaftID(cfg.Self.Name)] = r
		cfg.Transport = &tap{Transport: cfg.Transport, before: r.record}
		if tweak != nil {
			tweak(cfg)
		}
	})
	return c, func(id uint64) *recorder {
		mu.Lock()
		defer mu.Unlock()
		return recs[id]
	}
}

// TestLeaderSendsToTheOriginFirst: a write forwarded by the follower that
// Raft would send to last reaches that follower first.
func TestLeaderSendsToTheOriginFirst(t *testing.T) {
	c, recorderOf := recordingCluster(t, nil)
	c.withStableLeader(func(l string, term uint64) string {
		return sendToTheOriginFirst(t, c, recorderOf(RaftID(l)), l, term)
	})
}

// sendToTheOriginFirst is one run of TestLeaderSendsToTheOriginFirst with
// leader l of term, whose sends r records; it returns what it saw if the
// leader changed meanwhile.
func sendToTheOriginFirst(t *testing.T, c *cluster, r *recorder, l string, term uint64) (moved string) {
	settled(t, c, l) // both followers' progress replicating, none probed
	// Sends of an earlier run (in an earlier term) may carry the same
	// indexes.
	r.mu.Lock()
	r.sends = nil
	r.mu.Unlock()
	origin := ""
	for name := range c.nodes {
		if name != l && (origin == "" || RaftID(name) > RaftID(origin)) {
			origin = name
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := put(ctx, c.nodes[origin], "k", "v"); err != nil {
			if moved := c.leaderMoved(l, term); moved != "" {
				return moved
			}
			t.Fatal(err)
		}
		if moved := c.leaderMoved(l, term); moved != "" {
			return moved
		}
		index := c.nodes[origin].Status().AppliedIndex
		r.mu.Lock()
		var first []uint64
		for _, msgs := range r.sends {
			for _, m := range msgs {
				if m.Type == raftpb.MsgApp && len(m.Entries) > 0 && m.Entries[len(m.Entries)-1].Index == index {
					first = append(first, m.To)
				}
			}
			if len(first) > 0 {
				break
			}
		}
		r.mu.Unlock()
		if len(first) == 0 {
			t.Fatalf("write %d: no MsgApp from the leader carries index %d", i, index)
		}
		if first[0] != RaftID(origin) {
			t.Fatalf("write %d (index %d) forwarded by %s (%x): the leader's appends went to %x in that order; want the origin first", i, index, origin, RaftID(origin), first)
		}
	}
	return ""
}
