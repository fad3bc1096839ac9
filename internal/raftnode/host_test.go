package raftnode

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// hostCluster is an in-process cluster of Hosts on a memNet, each serving
// the same groups.
type hostCluster struct {
	t       *testing.T
	nw      *memNet
	members []Member
	dirs    map[string]string
	hosts   map[string]*Host
	tweak   func(*Config)
	// liveness counts Host heartbeats, where a test counts them.
	liveness atomic.Int64
}

func newHostCluster(t *testing.T, size int, tweak func(*Config)) *hostCluster {
	t.Helper()
	c := &hostCluster{t: t, nw: newMemNet(time.Now().UnixNano()), dirs: map[string]string{}, hosts: map[string]*Host{}, tweak: tweak}
	base := t.TempDir()
	for i := 1; i <= size; i++ {
		name := fmt.Sprintf("n%d", i)
		c.members = append(c.members, Member{Name: name, Peer: fmt.Sprintf("mem:%d", i), HTTP: fmt.Sprintf("127.0.0.1:%d", 8000+i)})
		c.dirs[name] = filepath.Join(base, name)
	}
	t.Cleanup(c.closeAll)
	return c
}

func (c *hostCluster) groupConfig(shard uint64) Config {
	cfg := Config{Shard: shard, Members: c.members, TickInterval: 10 * time.Millisecond, ElectionTicks: 10}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

// open opens the Host of name and the given groups on it.
func (c *hostCluster) open(name string, shards ...uint64) *Host {
	c.t.Helper()
	h := c.openWith(name, nil)
	for _, s := range shards {
		if _, err := h.OpenGroup(c.groupConfig(s)); err != nil {
			c.t.Fatalf("open group %d on %s: %v", s, name, err)
		}
	}
	return h
}

// openWith opens the Host of name, its configuration changed by tweak.
func (c *hostCluster) openWith(name string, tweak func(*HostConfig)) *Host {
	c.t.Helper()
	var self Member
	for _, m := range c.members {
		if m.Name == name {
			self = m
		}
	}
	gc := c.groupConfig(0)
	hc := HostConfig{Self: self, DataDir: c.dirs[name], Transport: c.nw.transport(RaftID(name)),
		TickInterval: gc.TickInterval, WALSegmentSize: gc.WALSegmentSize}
	if tweak != nil {
		tweak(&hc)
	}
	h, err := OpenHost(hc)
	if err != nil {
		c.t.Fatalf("open host %s: %v", name, err)
	}
	c.nw.attachHost(RaftID(name), h)
	c.hosts[name] = h
	return h
}

func (c *hostCluster) close(name string) {
	c.t.Helper()
	h := c.hosts[name]
	if h == nil {
		return
	}
	c.nw.detach(RaftID(name))
	if err := h.Close(); err != nil {
		c.t.Errorf("close host %s: %v", name, err)
	}
	delete(c.hosts, name)
}

func (c *hostCluster) closeAll() {
	for name := range c.hosts {
		c.close(name)
	}
}

// leader waits until the members of group shard agree on a leader and
// returns its node.
func (c *hostCluster) leader(shard uint64) *Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var lead string
		agree := true
		for _, h := range c.hosts {
			g := h.Group(shard)
			if g == nil {
				continue
			}
			l := g.Status().Leader
			if l == "" || (lead != "" && l != lead) {
				agree = false
			}
			lead = l
		}
		if h, ok := c.hosts[lead]; agree && ok && h.Group(shard) != nil {
			return h.Group(shard)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("group %d has no agreed leader", shard)
	return nil
}

// TestHostGroupsShareOneWAL runs several groups on three Hosts: each group
// keeps its own keys, all of them write one WAL per node, and a restart
// recovers every group from it.
func TestHostGroupsShareOneWAL(t *testing.T) {
	const groups = 6
	shards := []uint64{1, 2, 3, 4, 5, 6}
	c := newHostCluster(t, 3, nil)
	for _, m := range c.members {
		c.open(m.Name, shards...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range shards {
		leader := c.leader(s)
		for j := range 20 {
			if _, err := put(ctx, leader, fmt.Sprintf("g%d/k%02d", s, j), fmt.Sprintf("v%d.%d", s, j)); err != nil {
				t.Fatalf("group %d put %d: %v", s, j, err)
			}
		}
	}
	// Each group holds exactly its own keys.
	check := func(when string) {
		t.Helper()
		for name, h := range c.hosts {
			for _, s := range shards {
				g := h.Group(s)
				got := linearizableKeys(t, ctx, g)
				var want []string
				for j := range 20 {
					want = append(want, fmt.Sprintf("g%d/k%02d=v%d.%d", s, j, s, j))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s: group %d on %s holds %v, want %v", when, s, name, got, want)
				}
			}
		}
	}
	check("before the restart")
	for _, m := range c.members {
		entries, err := os.ReadDir(filepath.Join(c.dirs[m.Name], "wal"))
		if err != nil || len(entries) == 0 {
			t.Fatalf("%s: no WAL segments in one WAL directory: %v", m.Name, err)
		}
	}
	c.closeAll()

	for _, m := range c.members {
		h := c.open(m.Name)
		got, err := h.RecoveredGroups()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, shards) {
			t.Fatalf("%s recovered groups %v, want %v", m.Name, got, shards)
		}
		for _, s := range shards {
			if _, err := h.OpenGroup(c.groupConfig(s)); err != nil {
				t.Fatalf("reopen group %d on %s: %v", s, m.Name, err)
			}
		}
	}
	for _, s := range shards {
		c.leader(s)
	}
	check("after the restart")
	if len(shards) != groups {
		t.Fatal("shards and groups disagree")
	}
}

// TestHostCompactionKeepsOtherGroupsEntries: one group's snapshots compact
// the shared WAL; a group that writes little and has no snapshot is asked to
// take one once its entries keep the oldest segment, so the WAL stays small,
// and both groups recover everything after a restart.
func TestHostCompactionKeepsOtherGroupsEntries(t *testing.T) {
	c := newHostCluster(t, 1, func(cfg *Config) {
		cfg.WALSegmentSize = 64 << 10
		cfg.SnapshotEntries = 200
		cfg.LogEntriesKept = 10
	})
	h := c.open("n1", 1, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := c.leader(2)
	for j := range 5 {
		if _, err := put(ctx, quiet, fmt.Sprintf("quiet%d", j), "kept"); err != nil {
			t.Fatal(err)
		}
	}
	busy := c.leader(1)
	// Random bytes, so that compression does not shrink the WAL.
	raw := make([]byte, 768)
	rand.Read(raw)
	value := hex.EncodeToString(raw)
	for j := range 1500 {
		if _, err := put(ctx, busy, fmt.Sprintf("busy%04d", j), value); err != nil {
			t.Fatal(err)
		}
	}
	if busy.Metrics().SnapshotsTaken == 0 {
		t.Fatal("the busy group took no snapshot")
	}
	// 1.5 MB of entries in 64 KiB segments: without the quiet group's
	// snapshot its first entries would keep all of them.
	deadline := time.Now().Add(10 * time.Second)
	keys := 1500
	for h.wal.Stats().Segments > walReliefSegments+2 || quiet.Metrics().SnapshotsTaken == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL keeps %d segments; the quiet group took %d snapshots; %v pin the oldest",
				h.wal.Stats().Segments, quiet.Metrics().SnapshotsTaken, h.wal.Pinning())
		}
		// A write to the busy group gives its appender the occasion to ask.
		if _, err := put(ctx, busy, "busy-tick", value); err != nil {
			t.Fatal(err)
		}
		keys = 1501
		time.Sleep(50 * time.Millisecond)
	}
	c.close("n1")
	h = c.open("n1", 1, 2)
	quiet = c.leader(2)
	got := linearizableKeys(t, ctx, quiet)
	want := []string{"quiet0=kept", "quiet1=kept", "quiet2=kept", "quiet3=kept", "quiet4=kept"}
	if !slices.Equal(got, want) {
		t.Fatalf("group 2 after restart holds %v, want %v", got, want)
	}
	if n := len(linearizableKeys(t, ctx, h.Group(1))); n != keys {
		t.Fatalf("group 1 after restart holds %d keys, want %d", n, keys)
	}
}

// TestHostKeepsPeerWhileAGroupNeedsIt: a peer one group removes stays
// reachable for the groups that still have it.
func TestHostKeepsPeerWhileAGroupNeedsIt(t *testing.T) {
	rec := &peerRecorder{}
	ht := &hostTransport{Transport: rec, users: map[uint64]map[uint64]bool{}}
	g1, g2 := ht.forGroup(1), ht.forGroup(2)
	g1.AddPeer(7, "a")
	g1.AddPeer(7, "a") // again: a group re-adds peers as addresses change
	g2.AddPeer(7, "a")
	g1.RemovePeer(7)
	if rec.removed != 0 {
		t.Fatal("peer removed while group 2 still has it")
	}
	g2.RemovePeer(7)
	if rec.removed != 1 {
		t.Fatalf("peer removed %d times once no group has it, want 1", rec.removed)
	}
}

type peerRecorder struct {
	memTransport
	removed int
}

func (p *peerRecorder) RemovePeer(uint64) { p.removed++ }

// linearizableKeys returns "key=value" for every key of n's group, after a
// linearizable read (so n has applied everything committed before).
func linearizableKeys(t *testing.T, ctx context.Context, n *Node) []string {
	t.Helper()
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("linearizable read: %v", err)
	}
	var out []string
	for kvp := range n.KV().Snapshot().All() {
		out = append(out, string(kvp.Key)+"="+string(kvp.Value))
	}
	return out
}

var _ = kv.OpPut

// TestHostMovesAReplica moves a group's replica from one node to another
// the way the placement controller will: the leader adds a fourth node as a
// learner, whose Host creates the group on the first message and catches up
// (by snapshot: the leader's log is compacted), the learner is promoted,
// and the first node is removed, whose Host then buries the group: no
// snapshot, no WAL entry needed, and a late message does not bring it back,
// not even after a restart.
func TestHostMovesAReplica(t *testing.T) {
	const shard = 7
	c := newHostCluster(t, 4, func(cfg *Config) {
		cfg.SnapshotEntries = 50
		cfg.LogEntriesKept = 5
	})
	voters := c.members[:3]
	c.members, c.tweak = voters, func(cfg *Config) {
		cfg.SnapshotEntries = 50
		cfg.LogEntriesKept = 5
	}
	for _, m := range voters {
		c.open(m.Name, shard)
	}
	newcomer := Member{Name: "n4", Peer: "mem:4", HTTP: "127.0.0.1:8004"}
	c.members = append(c.members, newcomer)
	c.dirs["n4"] = filepath.Join(t.TempDir(), "n4")
	h4 := c.openWith("n4", func(hc *HostConfig) {
		hc.NewGroup = func(s uint64) (Config, bool) { return c.groupConfig(s), s == shard }
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader(shard)
	for j := range 200 {
		if _, err := put(ctx, leader, fmt.Sprintf("k%03d", j), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := leader.AddMember(ctx, newcomer, true); err != nil {
		t.Fatalf("add learner: %v", err)
	}
	var g4 *Node
	deadline := time.Now().Add(10 * time.Second)
	for g4 == nil || g4.Status().AppliedIndex < leader.Status().CommitIndex {
		if time.Now().After(deadline) {
			t.Fatalf("n4 did not create and catch up group %d (group: %v)", shard, g4 != nil)
		}
		time.Sleep(10 * time.Millisecond)
		g4 = h4.Group(shard)
	}
	if g4.Metrics().SnapshotsReceived == 0 {
		t.Fatal("n4 caught up without a snapshot: the test meant to show one")
	}
	if err := leader.PromoteMember(ctx, "n4"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	victim := "n1"
	if leader.cfg.Self.Name == victim {
		victim = "n2"
	}
	if err := leader.RemoveMember(ctx, victim); err != nil {
		t.Fatalf("remove %s: %v", victim, err)
	}
	hv := c.hosts[victim]
	for hv.Group(shard) != nil {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("group %d still open on %s after its removal", shard, victim)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !hv.Buried(shard) {
		t.Fatalf("%s does not record group %d as removed", victim, shard)
	}
	if got, _ := hv.snaps.Indexes(shard); len(got) != 0 {
		t.Fatalf("%s keeps snapshots %v of the removed group", victim, got)
	}
	if slices.Contains(hv.wal.Pinning(), shard) {
		t.Fatalf("the WAL of %s still needs entries of the removed group", victim)
	}
	// Writes go on with n4 as a voter.
	leader = c.leader(shard)
	if _, err := put(ctx, leader, "after-move", "v"); err != nil {
		t.Fatal(err)
	}
	if got := len(linearizableKeys(t, ctx, g4)); got != 201 {
		t.Fatalf("n4 holds %d keys, want 201", got)
	}
	// A late message of the group does not recreate it, before or after a
	// restart.
	hv.HandleRaft(shard, []raftpb.Message{{Type: raftpb.MsgHeartbeat, To: RaftID(victim), From: leader.raftID, Term: leader.Status().Term}})
	c.close(victim)
	hv = c.openWith(victim, func(hc *HostConfig) {
		hc.NewGroup = func(s uint64) (Config, bool) { return c.groupConfig(s), true }
	})
	if got, _ := hv.RecoveredGroups(); slices.Contains(got, shard) {
		t.Fatalf("%s recovers the removed group after a restart: %v", victim, got)
	}
	hv.HandleRaft(shard, []raftpb.Message{{Type: raftpb.MsgHeartbeat, To: RaftID(victim), From: leader.raftID, Term: leader.Status().Term}})
	time.Sleep(100 * time.Millisecond)
	if hv.Group(shard) != nil {
		t.Fatalf("a late message recreated the removed group on %s", victim)
	}
}

// TestHostAddsAReplicaBack removes a replica of a group from a node and then
// adds it back, as placement does when a node that lost a range is the best
// home for it again: the node takes the group again (Unbury), gets a
// snapshot from after its new addition, not one from before its removal
// that would make it apply its own removal again, and stays a working
// replica.
func TestHostAddsAReplicaBack(t *testing.T) {
	const shard = 9
	c := newHostCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 1000 // the newest snapshot stays old: from before the removal
		cfg.LogEntriesKept = 5
	})
	c.openTakingBack(shard)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader(shard)
	victim := followerName(leader)
	hv := c.hosts[victim]
	for j := range 50 {
		if _, err := put(ctx, leader, fmt.Sprintf("a%03d", j), "v"); err != nil {
			t.Fatal(err)
		}
	}
	// A snapshot now, with the victim a member: the one a careless leader
	// would send it later.
	if _, err := leader.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	var m Member
	for _, x := range c.members {
		if x.Name == victim {
			m = x
		}
	}
	if err := leader.RemoveMember(ctx, victim); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); hv.Group(shard) != nil || !hv.Buried(shard); {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not let go of group %d", victim, shard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for j := range 50 {
		if _, err := put(ctx, leader, fmt.Sprintf("b%03d", j), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := hv.Unbury(shard); err != nil {
		t.Fatal(err)
	}
	if err := leader.AddMember(ctx, m, true); err != nil {
		t.Fatalf("add %s back: %v", victim, err)
	}
	var g *Node
	for deadline := time.Now().Add(10 * time.Second); g == nil || g.Status().AppliedIndex < leader.Status().CommitIndex; {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take group %d again (open: %v, buried: %v)", victim, shard, g != nil, hv.Buried(shard))
		}
		time.Sleep(10 * time.Millisecond)
		g = hv.Group(shard)
	}
	if err := leader.PromoteMember(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if _, err := put(ctx, leader, "after", "v"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if hv.Group(shard) == nil || hv.Buried(shard) || g.Err() != nil {
		t.Fatalf("%s removed itself again after it was added back: %v", victim, g.Err())
	}
	if got := len(linearizableKeys(t, ctx, g)); got != 101 {
		t.Fatalf("%s holds %d keys, want 101", victim, got)
	}
}

// TestRemovalNoticeIsForALaggingMember: a member's notice that this node was
// removed at index R stops it only while it has applied less than R; one
// that applied past R (it was added back since) ignores a late notice.
func TestRemovalNoticeIsForALaggingMember(t *testing.T) {
	c := newHostCluster(t, 3, nil)
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leader := c.leader(1)
	if _, err := put(ctx, leader, "k", "v"); err != nil {
		t.Fatal(err)
	}
	var follower *Node
	for _, h := range c.hosts {
		if g := h.Group(1); g != leader {
			follower = g
		}
	}
	for deadline := time.Now().Add(5 * time.Second); follower.Status().AppliedIndex < leader.Status().CommitIndex; {
		if time.Now().After(deadline) {
			t.Fatal("the follower did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	notice := func(at uint64) error {
		_, err := follower.HandleCall(ctx, leader.raftID, 1, methodRemoved, binary.BigEndian.AppendUint64(nil, at))
		return err
	}
	if err := notice(1); err != nil {
		t.Fatal(err)
	}
	if follower.isRemoved() {
		t.Fatal("a notice of a removal this node applied past stopped it")
	}
	if _, err := follower.HandleCall(ctx, leader.raftID, 1, methodRemoved, []byte{1, 2, 3}); err == nil || follower.isRemoved() {
		t.Fatalf("a malformed notice: %v, removed %v", err, follower.isRemoved())
	}
	if err := notice(follower.Status().AppliedIndex + 100); err != nil {
		t.Fatal(err)
	}
	if !follower.isRemoved() {
		t.Fatal("a notice of a removal this node has not applied yet did not stop it")
	}
}

// TestHostTellsAReplicaRemovedWhileDown: a replica removed from its group
// while its node was down never applies its removal; once it restarts and
// sends the group messages, a member tells it, and the node lets go of it
// instead of keeping a leaderless copy of the range.
func TestHostTellsAReplicaRemovedWhileDown(t *testing.T) {
	const shard = 9
	c := newHostCluster(t, 3, nil)
	tweak := c.openTakingBack(shard)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.leader(shard)
	victim := followerName(leader)
	if _, err := put(ctx, leader, "a", "v"); err != nil {
		t.Fatal(err)
	}
	c.close(victim)
	if err := leader.RemoveMember(ctx, victim); err != nil {
		t.Fatal(err)
	}
	// The members tell a removed member for 3 s (tellRemoved); it is down
	// longer.
	time.Sleep(4 * time.Second)
	hv := c.openWith(victim, tweak)
	if _, err := hv.OpenGroup(c.groupConfig(shard)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); hv.Group(shard) != nil || !hv.Buried(shard); {
		if time.Now().After(deadline) {
			t.Fatalf("%s kept group %d, from which it was removed while it was down", victim, shard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Opened again (the server opens every group it found on disk, and the
	// notice may come first), it is not started afresh.
	cfg := c.groupConfig(shard)
	cfg.Members = nil
	if g, err := hv.OpenGroup(cfg); !errors.Is(err, ErrGroupRemoved) {
		t.Fatalf("opening the removed group again: %v (open: %v)", err, g != nil)
	}
	if _, err := put(ctx, leader, "b", "v"); err != nil {
		t.Fatalf("the group after: %v", err)
	}
}

// TestRangeWithoutMembersWaitsForItsLeader: a group other than the first
// opened without members and without state waits for its leader; it never
// starts as a group of one (which would elect itself and take writes for a
// range another group serves).
func TestRangeWithoutMembersWaitsForItsLeader(t *testing.T) {
	c := newHostCluster(t, 1, nil)
	h := c.openWith("n1", nil)
	cfg := c.groupConfig(5)
	cfg.Members = nil
	g, err := h.OpenGroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // 5 election timeouts of groupConfig
	if st := g.Status(); st.Leader != "" || len(st.Members) != 0 {
		t.Fatalf("a range opened without members: leader %q, members %v", st.Leader, st.Members)
	}
}

// openTakingBack opens a Host for every member with group shard, whose
// NewGroup lets the node take the group again once it was removed (a group
// of no members, waiting for its leader), and returns that Host tweak for
// reopening one.
func (c *hostCluster) openTakingBack(shard uint64) func(*HostConfig) {
	c.t.Helper()
	tweak := func(hc *HostConfig) {
		hc.NewGroup = func(s uint64) (Config, bool) {
			cfg := c.groupConfig(s)
			cfg.Members = nil
			return cfg, s == shard
		}
	}
	for _, m := range c.members {
		if _, err := c.openWith(m.Name, tweak).OpenGroup(c.groupConfig(shard)); err != nil {
			c.t.Fatal(err)
		}
	}
	return tweak
}

// followerName returns n3, or n2 if n3 leads.
func followerName(leader *Node) string {
	if leader.cfg.Self.Name == "n3" {
		return "n2"
	}
	return "n3"
}
