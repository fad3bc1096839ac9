package raftnode

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// TestLeaderDefersCommitOnlyAppends: with writes forwarded one at a time by
// one follower, the leader sends that follower each new commit index at once
// (its client waits on it) but holds the other follower's, which the next
// write's append carries; the last one goes out within commitDeferral.
func TestLeaderDefersCommitOnlyAppends(t *testing.T) {
	c, recorderOf := recordingCluster(t, func(cfg *Config) {
		// Heartbeats, which also take a held append along, every 100 ms.
		cfg.TickInterval = 100 * time.Millisecond
	})
	c.withStableLeader(func(l string, term uint64) string {
		return deferCommitOnlyAppends(t, c, recorderOf, l, term)
	})
}

// deferCommitOnlyAppends is one run of TestLeaderDefersCommitOnlyAppends with
// leader l of term; it returns what it saw if the leader changed meanwhile.
func deferCommitOnlyAppends(t *testing.T, c *cluster, recorderOf func(uint64) *recorder, l string, term uint64) (moved string) {
	settled(t, c, l)
	o := c.follower(l)
	q := ""
	for name := range c.nodes {
		if name != l && name != o {
			q = name
		}
	}
	lid, oid, qid := RaftID(l), RaftID(o), RaftID(q)
	r := recorderOf(lid)
	r.mu.Lock()
	r.sends = nil
	r.mu.Unlock()
	const writes = 40
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range writes {
		if _, err := put(ctx, c.nodes[o], "k", "v"); err != nil {
			if moved := c.leaderMoved(l, term); moved != "" {
				return moved
			}
			t.Fatal(err)
		}
	}
	last := c.nodes[o].Status().AppliedIndex
	if moved := c.leaderMoved(l, term); moved != "" {
		return moved
	}
	// commitOnly counts the leader's appends without entries to id, and
	// reports whether one carried commit index last.
	commitOnly := func(id uint64) (n int, sawLast bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, msgs := range r.sends {
			for _, m := range msgs {
				if m.From == lid && m.To == id && m.Type == raftpb.MsgApp && len(m.Entries) == 0 {
					n++
					sawLast = sawLast || m.Commit >= last
				}
			}
		}
		return n, sawLast
	}
	toO, _ := commitOnly(oid)
	if toO < writes/2 {
		t.Errorf("the leader sent the follower that forwarded the writes %d appends with only a commit index for %d writes; want one for most (not held)", toO, writes)
	}
	// The last commit index goes to q on its own once commitDeferral is
	// over; 50 ms allows for a busy machine and is half the heartbeat
	// interval.
	deadline := time.Now().Add(50 * time.Millisecond)
	toQ, sawLast := commitOnly(qid)
	for !sawLast && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
		toQ, sawLast = commitOnly(qid)
	}
	if moved := c.leaderMoved(l, term); !sawLast && moved != "" {
		return moved // the next leader sends its own commit index
	}
	if toQ > writes/2 {
		t.Errorf("the leader sent the other follower %d appends with only a commit index for %d writes; want few (held, then carried by the next write's append)", toQ, writes)
	}
	if !sawLast {
		t.Errorf("the leader held the other follower's commit index %d for more than %v", last, 50*time.Millisecond)
	}
	return ""
}
