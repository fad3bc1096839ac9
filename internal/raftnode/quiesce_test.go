package raftnode

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// quietCluster is three Hosts serving groups that quiesce, with a count of
// the Raft messages the network carried.
func quietCluster(t *testing.T, shards ...uint64) (*hostCluster, *atomic.Int64) {
	t.Helper()
	c := newHostCluster(t, 3, func(cfg *Config) { cfg.Quiesce = true })
	var carried atomic.Int64
	c.nw.lose = func(m raftpb.Message) bool {
		if m.Term == 0 {
			c.liveness.Add(1) // a Host's heartbeat, not a group's message
		} else {
			carried.Add(1)
		}
		return false
	}
	for _, m := range c.members {
		c.open(m.Name, shards...)
	}
	return c, &carried
}

// waitQuiet waits until every replica of the groups is quiesced.
func (c *hostCluster) waitQuiet(shards ...uint64) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		loud := ""
		for name, h := range c.hosts {
			for _, s := range shards {
				if !h.Group(s).Quiesced() {
					loud = fmt.Sprintf("group %d on %s", s, name)
				}
			}
		}
		if loud == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s is not quiesced after 10s", loud)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQuiescedGroupsSendNothing: once groups have nothing to do they
// quiesce, and then none of their messages crosses the network; the Hosts
// send each other one heartbeat per tick, however many groups they serve.
func TestQuiescedGroupsSendNothing(t *testing.T) {
	shards := []uint64{1, 2, 3, 4, 5, 6, 7, 8}
	c, carried := quietCluster(t, shards...)
	for _, s := range shards {
		c.leader(s)
	}
	c.waitQuiet(shards...)
	before, live := carried.Load(), c.liveness.Load()
	time.Sleep(20 * c.groupConfig(1).TickInterval)
	if n := carried.Load() - before; n != 0 {
		t.Fatalf("%d messages in 20 ticks between quiesced groups, want none", n)
	}
	// 3 Hosts, 2 peers each, 20 ticks (and one more tick or so of slack).
	if n := c.liveness.Load() - live; n > 3*2*22 {
		t.Fatalf("%d Host heartbeats in 20 ticks, want at most one per peer per tick", n)
	}
}

// TestQuiescedGroupWakesForAWrite: a write through a follower of a quiet
// group wakes it, is applied everywhere, and the group goes quiet again.
func TestQuiescedGroupWakesForAWrite(t *testing.T) {
	c, _ := quietCluster(t, 1)
	leader := c.leader(1)
	c.waitQuiet(1)
	var follower *Node
	for _, h := range c.hosts {
		if g := h.Group(1); g != leader {
			follower = g
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := put(ctx, follower, "woken", "yes"); err != nil {
		t.Fatal(err)
	}
	// A tick or two, not an election timeout: the leader woke on the
	// forwarded proposal.
	if took := time.Since(start); took > 5*c.groupConfig(1).TickInterval*time.Duration(c.groupConfig(1).ElectionTicks) {
		t.Fatalf("the write to a quiet group took %v", took)
	}
	if got := c.leader(1); got != leader {
		t.Fatalf("leader changed from %s to %s: waking must not cost an election", leader.cfg.Self.Name, got.cfg.Self.Name)
	}
	for name, h := range c.hosts {
		got, ok, err := h.Group(1).Get(ctx, []byte("woken"), true)
		if err != nil || !ok || string(got.Value) != "yes" {
			t.Fatalf("%s: linearizable read after the write: %+v %v %v", name, got, ok, err)
		}
	}
	c.waitQuiet(1)
}

// TestQuiescedGroupElectsAfterItsLeaderDies: the leader's node of a quiet
// group dies; a write sent to a follower wakes it, which finds no leader and
// campaigns, and the write succeeds under the new leader.
func TestQuiescedGroupElectsAfterItsLeaderDies(t *testing.T) {
	c, _ := quietCluster(t, 1)
	leader := c.leader(1)
	c.waitQuiet(1)
	c.close(leader.cfg.Self.Name)
	var follower *Node
	for _, h := range c.hosts {
		follower = h.Group(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		// A write forwarded to the dead leader is lost: each attempt
		// gives up after a second.
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err = put(actx, follower, "after", "death")
		acancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no write succeeded after the quiet leader died: %v", err)
	}
	if got := c.leader(1); got == leader {
		t.Fatal("the dead node still leads")
	}
}

// TestKeyWithDeadlineKeepsGroupAwakeUntilItExpires: the leader proposes the
// expiry of keys on its ticks, so a group does not quiesce while a key has a
// deadline; it expires on time, then the group goes quiet.
func TestKeyWithDeadlineKeepsGroupAwakeUntilItExpires(t *testing.T) {
	c, _ := quietCluster(t, 1)
	leader := c.leader(1)
	c.waitQuiet(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline := time.Now().Add(time.Second)
	if _, err := leader.Propose(ctx, kv.Command{Op: kv.OpPut, Key: []byte("temp"), Value: []byte("v"), Deadline: deadline.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline.Add(-100 * time.Millisecond)) {
		if leader.Quiesced() {
			t.Fatal("the group quiesced with a key whose deadline has not passed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		_, ok := leader.KV().Get([]byte("temp"))
		if !ok {
			break
		}
		if time.Since(deadline) > 3*time.Second {
			t.Fatal("the key was not expired within 3s of its deadline")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.waitQuiet(1)
}

// TestQuietGroupsElectWhenTheirLeadersNodeDies: the node leading quiet
// groups dies; with no request at all, the other nodes stop hearing its
// Host's heartbeats, wake those groups, and each elects a new leader.
func TestQuietGroupsElectWhenTheirLeadersNodeDies(t *testing.T) {
	shards := []uint64{1, 2, 3, 4, 5, 6}
	c, _ := quietCluster(t, shards...)
	led := map[string][]uint64{}
	for _, s := range shards {
		l := c.leader(s)
		led[l.cfg.Self.Name] = append(led[l.cfg.Self.Name], s)
	}
	c.waitQuiet(shards...)
	victim := ""
	for name, ss := range led {
		if victim == "" || len(ss) > len(led[victim]) {
			victim = name
		}
	}
	// While the leader's node lives, its Host's heartbeats keep the groups
	// quiet.
	time.Sleep(3 * time.Duration(c.groupConfig(1).ElectionTicks) * c.groupConfig(1).TickInterval)
	for name, h := range c.hosts {
		for _, s := range shards {
			if !h.Group(s).Quiesced() {
				t.Fatalf("group %d on %s woke with every node alive", s, name)
			}
		}
	}
	c.close(victim)
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range led[victim] {
		for {
			ok := true
			for _, h := range c.hosts {
				if l := h.Group(s).Status().Leader; l == "" || l == victim {
					ok = false
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("group %d has no leader but the dead %s 10s after it died, without requests", s, victim)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
