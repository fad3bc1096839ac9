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

// commitGate is a Transport whose sends of the commit index block, once
// armed: a MsgApp from the node from whose commit index is at least commit
// waits in Send until the gate opens. The sending loop waits with it.
type commitGate struct {
	Transport
	mu     sync.Mutex
	from   uint64
	commit uint64
	open   chan struct{} // nil: disarmed
}

func (g *commitGate) arm(from, commit uint64) {
	g.mu.Lock()
	g.from, g.commit, g.open = from, commit, make(chan struct{})
	g.mu.Unlock()
}

func (g *commitGate) disarm() {
	g.mu.Lock()
	if g.open != nil {
		close(g.open)
		g.open = nil
	}
	g.mu.Unlock()
}

func (g *commitGate) wait(msgs []raftpb.Message) {
	g.mu.Lock()
	open, from, commit := g.open, g.from, g.commit
	g.mu.Unlock()
	if open == nil {
		return
	}
	for _, m := range msgs {
		if m.From == from && m.Type == raftpb.MsgApp && m.Commit >= commit {
			<-open
			return
		}
	}
}

func (g *commitGate) Send(shard uint64, msgs []raftpb.Message) {
	g.wait(msgs)
	g.Transport.Send(shard, msgs)
}

func (g *commitGate) SendNow(shard uint64, msgs []raftpb.Message) {
	g.wait(msgs)
	g.Transport.SendNow(shard, msgs)
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
	gates := map[uint64]*commitGate{}
	slow := map[uint64]*atomic.Bool{}
	var mu sync.Mutex
	c := newCluster(t, 3, func(cfg *Config) {
		mu.Lock()
		defer mu.Unlock()
		id := RaftID(cfg.Self.Name)
		if gates[id] == nil {
			gates[id] = &commitGate{}
			slow[id] = new(atomic.Bool)
		}
		gates[id].Transport = cfg.Transport
		cfg.Transport = gates[id]
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
	answered := 0
	for attempt := 0; attempt < 3 && answered == 0; attempt++ {
		l := c.waitLeader(5 * time.Second)
		ln := c.nodes[l]
		// Everything before is committed and applied everywhere.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := put(ctx, ln, "warm", "x"); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		commit := ln.Status().CommitIndex
		for _, n := range c.nodes {
			for n.Status().AppliedIndex < commit {
				time.Sleep(time.Millisecond)
			}
		}
		for id, s := range slow {
			s.Store(id != RaftID(l))
		}
		gates[RaftID(l)].arm(RaftID(l), commit+1)
		ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := put(ctx, ln, "k", "v")
		cancel()
		gates[RaftID(l)].disarm()
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

// recorder is a Transport that records the messages of each send.
type recorder struct {
	Transport
	mu    sync.Mutex
	sends [][]raftpb.Message
}

func (r *recorder) record(msgs []raftpb.Message) {
	r.mu.Lock()
	r.sends = append(r.sends, slices.Clone(msgs))
	r.mu.Unlock()
}

func (r *recorder) Send(shard uint64, msgs []raftpb.Message) {
	r.record(msgs)
	r.Transport.Send(shard, msgs)
}

func (r *recorder) SendNow(shard uint64, msgs []raftpb.Message) {
	r.record(msgs)
	r.Transport.SendNow(shard, msgs)
}

// TestLeaderSendsToTheOriginFirst: a write forwarded by the follower that
// Raft would send to last reaches that follower first.
func TestLeaderSendsToTheOriginFirst(t *testing.T) {
	recs := map[uint64]*recorder{}
	var mu sync.Mutex
	c := newCluster(t, 3, func(cfg *Config) {
		mu.Lock()
		defer mu.Unlock()
		r := &recorder{Transport: cfg.Transport}
		recs[RaftID(cfg.Self.Name)] = r
		cfg.Transport = r
	})
	l := c.waitLeader(5 * time.Second)
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
			t.Fatal(err)
		}
		if c.nodes[l].Status().Leader != l {
			t.Skip("leader changed")
		}
		index := c.nodes[origin].Status().AppliedIndex
		mu.Lock()
		r := recs[RaftID(l)]
		mu.Unlock()
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
}
