package raftnode

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/vfs"
)

// A read that arrives after its node handed a round to Raft must not be
// answered by that round: the round's read index may predate a write
// acknowledged before the read arrived. It joins the next round, which goes
// out only once the first is answered, and gets its own read index.
func TestReadJoinsOnlyARoundNotYetIssued(t *testing.T) {
	st := raft.NewMemoryStorage()
	if err := st.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{
		Index: 1, Term: 1, ConfState: raftpb.ConfState{Voters: []uint64{1}}}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1,
		Storage: st, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 4})
	if err != nil {
		t.Fatal(err)
	}
	q := readQueue{wake: make(chan struct{}, 1), nonce: 7}

	a, b := q.join(), q.join()
	if a != b {
		t.Fatal("two reads before any round was issued got different rounds")
	}
	// Followers' requests reaching this node as leader join rounds the same way.
	q.joinRemote(2, []byte("early"))
	q.issue(rn, time.Now())
	if len(q.inflight) != 1 {
		t.Fatalf("%d rounds in flight after issue, want 1", len(q.inflight))
	}
	late := q.join()
	if late == a {
		t.Fatal("a read that arrived after its round was handed to Raft joined that round")
	}
	q.joinRemote(3, []byte("late"))
	q.issue(rn, time.Now()) // one round in flight: the late read waits for the next
	if len(q.inflight) != 1 {
		t.Fatalf("%d rounds in flight, want 1", len(q.inflight))
	}

	// The request context issue gave round id: nonce, then id.
	ctx := func(id uint64) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint64(b, q.nonce)
		binary.BigEndian.PutUint64(b[8:], id)
		return b
	}
	out, _ := q.observe([]raft.ReadState{{Index: 5, RequestCtx: ctx(1)}}, 1, 9, 0)
	if len(out) != 1 || out[0].Type != raftpb.MsgReadIndexResp || out[0].To != 2 || out[0].Index != 5 || out[0].Term != 9 ||
		len(out[0].Entries) != 1 || string(out[0].Entries[0].Data) != "early" {
		t.Fatalf("answers to followers after the first round = %+v, want the early request's only, at index 5", out)
	}
	q.release(4)
	select {
	case <-a.done:
		t.Fatal("round answered before its read index was applied")
	default:
	}
	q.release(5)
	<-a.done
	if a.err != nil {
		t.Fatal(a.err)
	}
	select {
	case <-late.done:
		t.Fatal("the late read was answered with the earlier round's read index")
	default:
	}
	q.issue(rn, time.Now())
	if _, ok := q.inflight[2]; !ok || len(q.inflight[2]) != 1 || q.inflight[2][0] != late {
		t.Fatalf("the late read's round was not issued next: %v", q.inflight)
	}
	out, _ = q.observe([]raft.ReadState{{Index: 8, RequestCtx: ctx(2)}}, 1, 9, 0)
	if len(out) != 1 || out[0].To != 3 || out[0].Index != 8 || string(out[0].Entries[0].Data) != "late" {
		t.Fatalf("answers after the second round = %+v, want the late request's, at index 8", out)
	}
}

// readRoundsDuring counts the leader's heartbeats that carry a read context
// (ReadIndex rounds) while fn runs.
func readRoundsDuring(c *cluster, leader string, fn func()) int {
	id := RaftID(leader)
	var rounds int
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		if m.From == id && m.Type == raftpb.MsgHeartbeat && len(m.Context) > 0 {
			rounds++
		}
		return false
	}
	c.nw.mu.Unlock()
	fn()
	c.nw.mu.Lock()
	c.nw.lose = nil
	n := rounds
	c.nw.mu.Unlock()
	return n
}

// TestFollowerReadWithoutRoundInThreeVoters: with three voters a follower's
// ReadIndex request and the leader make a quorum, so the leader answers it at
// once, with no heartbeat round; the read still sees the write just
// acknowledged through another node. With five voters, or from a learner, the
// request is not enough and a round must run.
func TestFollowerReadWithoutRoundInThreeVoters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read := func(t *testing.T, n *Node, want string) {
		t.Helper()
		got, ok, err := n.Get(ctx, []byte("k"), true)
		if err != nil || !ok || string(got.Value) != want {
			t.Fatalf("linearizable read on %s = %q %v %v, want %q", n.cfg.Self.Name, got.Value, ok, err, want)
		}
	}
	others := func(c *cluster, leader string) (a, b string) {
		for name := range c.nodes {
			if name == leader {
				continue
			}
			if a == "" {
				a = name
			} else {
				b = name
			}
		}
		return a, b
	}

	t.Run("three voters", func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.waitLeader(5 * time.Second)
		f, g := others(c, leader)
		for i := range 20 {
			v := fmt.Sprintf("v%d", i)
			if _, err := put(ctx, c.nodes[g], "k", v); err != nil {
				t.Fatal(err)
			}
			if r := readRoundsDuring(c, leader, func() { read(t, c.nodes[f], v) }); r != 0 {
				t.Fatalf("follower read %d ran %d heartbeat rounds on the leader, want 0", i, r)
			}
		}
	})

	t.Run("five voters", func(t *testing.T) {
		c := newCluster(t, 5, nil)
		leader := c.waitLeader(5 * time.Second)
		f := c.follower(leader)
		if _, err := put(ctx, c.nodes[leader], "k", "v"); err != nil {
			t.Fatal(err)
		}
		if r := readRoundsDuring(c, leader, func() { read(t, c.nodes[f], "v") }); r == 0 {
			t.Fatal("a follower read among five voters ran no heartbeat round on the leader")
		}
	})

	t.Run("learner", func(t *testing.T) {
		c := newCluster(t, 3, nil)
		leader := c.waitLeader(5 * time.Second)
		if _, err := put(ctx, c.nodes[leader], "k", "v"); err != nil {
			t.Fatal(err)
		}
		n := c.join(ctx, leader, Member{Name: "n4", Peer: "mem:4", HTTP: "127.0.0.1:8004"})
		for ctx.Err() == nil && n.Status().AppliedIndex < c.nodes[leader].Status().AppliedIndex {
			time.Sleep(5 * time.Millisecond)
		}
		if r := readRoundsDuring(c, leader, func() { read(t, n, "v") }); r == 0 {
			t.Fatal("a learner's read ran no heartbeat round on the leader")
		}
	})
}

// TestNewLeaderAnswersNoReadBeforeItCommits: a new leader may not yet know
// that its predecessor committed an entry, so its commit index is no read
// index until it has committed an entry of its own term. Here the old leader
// o commits "new" with l alone, l never hears of the commit, o stops and l
// is elected; while l cannot commit in its term, a linearizable read on
// follower f must not be answered with "old".
func TestNewLeaderAnswersNoReadBeforeItCommits(t *testing.T) {
	c := newCluster(t, 3, nil)
	o := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[o], "k", "old"); err != nil {
		t.Fatal(err)
	}
	var l, f string
	for name := range c.nodes {
		switch {
		case name == o:
		case l == "":
			l = name
		default:
			f = name
		}
	}
	for ctx.Err() == nil && c.nodes[f].Status().AppliedIndex < c.nodes[o].Status().CommitIndex {
		time.Sleep(time.Millisecond)
	}
	oid, lid, fid := RaftID(o), RaftID(l), RaftID(f)
	base := c.nodes[o].Status().CommitIndex
	c.nw.mu.Lock()
	c.nw.cut[[2]uint64{oid, fid}] = true
	c.nw.cut[[2]uint64{fid, oid}] = true
	// l stores "new" and acknowledges it, but never learns it is committed
	// (neither from the commit index nor from o's durable notice).
	oldCommit := func(m raftpb.Message) bool {
		_, notice := decodeNotice(&m)
		return m.From == oid && m.To == lid && (m.Commit > base || notice)
	}
	c.nw.lose = oldCommit
	c.nw.mu.Unlock()
	if _, err := put(ctx, c.nodes[o], "k", "new"); err != nil {
		t.Fatal(err)
	}
	// l leads next (f's log lacks "new", so f cannot win), but its appends
	// to f are lost: its own term's first entry cannot commit. o's commit
	// index may still be on its way (o answers before it sends it): it
	// stays lost.
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		return oldCommit(m) || m.From == lid && m.To == fid && m.Type == raftpb.MsgApp
	}
	c.nw.mu.Unlock()
	c.stop(o)
	deadline := time.Now().Add(5 * time.Second)
	for c.nodes[f].Status().Leader != l || c.nodes[l].Status().Leader != l {
		if time.Now().After(deadline) {
			t.Fatalf("%s not elected: %+v / %+v", l, c.nodes[l].Status(), c.nodes[f].Status())
		}
		time.Sleep(time.Millisecond)
	}
	if got := c.nodes[l].Status().CommitIndex; got > base {
		t.Fatalf("new leader's commit index %d is past %d: the test proves nothing", got, base)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	got, _, err := c.nodes[f].Get(short, []byte("k"), true)
	cancelShort()
	if err == nil {
		t.Fatalf("linearizable read on %s answered %q before the new leader committed in its term (the acknowledged value is \"new\")", f, got.Value)
	}
	c.nw.heal()
	got, _, err = c.nodes[f].Get(ctx, []byte("k"), true)
	if err != nil || string(got.Value) != "new" {
		t.Fatalf("read after heal = %q, %v; want \"new\"", got.Value, err)
	}
}

// TestLoneVoterReadAfterLostCommitRecord: a lone voter whose hard state
// recording a commit was written but not synced when the machine failed
// restarts with an older commit index on disk, and its log holds the
// acknowledged write beyond it. A linearizable read right after the restart
// must wait for the leader's first entry of its new term (which commits the
// write again) and not be answered with the old commit index, as Raft
// answers a lone voter's read rounds at once.
func TestLoneVoterReadAfterLostCommitRecord(t *testing.T) {
	for i := range 5 {
		dir := t.TempDir()
		var fail atomic.Bool
		efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpSync && fail.Load() && strings.HasSuffix(path, ".wal") {
				return vfs.Fault{Err: vfs.ErrInjected, DropUnsynced: true}
			}
			return vfs.Fault{}
		})
		cfg := testConfig(dir)
		cfg.FS = efs
		n := openNode(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := put(ctx, n, "k", "acknowledged"); err != nil {
			cancel()
			t.Fatal(err)
		}
		// The hard state that commits the write is written (or, with the
		// direct WAL, kept in memory), not synced: a commit index alone
		// needs no fsync. The next write's fsync fails and loses it, as a
		// power failure would.
		fail.Store(true)
		if _, err := put(ctx, n, "other", "x"); err == nil {
			t.Fatal("write acknowledged after its fsync failed")
		}
		cancel()
		<-n.Done()
		// A power failure loses the applied mark too: it is never synced.
		if err := os.Remove(filepath.Join(dir, appliedMarkName)); err != nil {
			t.Fatal(err)
		}

		// Restarted with fsyncs slowed by 50 ms, so that the read comes
		// while the new term's first entry is being made durable.
		cfg.FS = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpSync {
				time.Sleep(50 * time.Millisecond)
			}
			return vfs.Fault{}
		})
		n2, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for n2.Status().Leader == "" {
			runtime.Gosched()
		}
		if v, ok := mustGet(t, n2, "k"); !ok || v != "acknowledged" {
			t.Fatalf("try %d: linearizable read after the restart = %q, %v; want the acknowledged write", i, v, ok)
		}
		n2.Stop()
	}
}
