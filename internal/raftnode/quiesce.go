package raftnode

import (
	"bytes"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Quiescence: a group with nothing to do stops ticking, so that a node can
// host thousands of idle groups for almost nothing (CockroachDB's quiesced
// ranges, TiKV's hibernate regions). Only groups opened with Config.Quiesce
// do it.
//
// The leader decides, on a tick, when everything is settled: every entry is
// committed, applied and on every member (each follower's Match is the last
// index, and each answered recently), nothing waits (proposals, reads,
// appends, snapshots, a leadership transfer), and no key has a deadline (the
// leader proposes their expiry on its ticks). It then sends each member a
// heartbeat marked with quiesceContext and stops ticking: no heartbeats, no
// quorum checks. A follower that receives that heartbeat from its leader, in
// its term, stops ticking too: no election timeout runs.
//
// Anything else wakes a group: a proposal, a read, a message from the
// network that is not a quiesce heartbeat or its answer, a membership or
// snapshot event. Its ticks resume where they stopped. A follower woken by a
// client's request forwards it to the leader, which wakes on it and
// replicates as usual. If the leader died while its group was quiet, a
// follower woken by a request hears nothing from it, times out after an
// election timeout of ticks and campaigns; the other followers, woken by its
// (pre-)vote, grant it once their own election timeout has passed with no
// word from the old leader. Raft's safety never depends on ticks: a
// quiesced group only waits longer to notice a dead leader, on demand.
//
// Leases stay safe: a quiesced follower does not tick, so it keeps refusing
// votes for at least as long as a ticking one would; the leader's lease is
// measured on its clock (lease.go) and simply expires while it is quiet.

// quiesceContext marks the heartbeat that quiets a group, and its answer.
var quiesceContext = []byte("distkv/quiesce")

// isQuiesceMessage reports whether m is a quiesce heartbeat or its answer.
func isQuiesceMessage(m *raftpb.Message) bool {
	return (m.Type == raftpb.MsgHeartbeat || m.Type == raftpb.MsgHeartbeatResp) && bytes.Equal(m.Context, quiesceContext)
}

// Quiesced reports whether the group is quiet (see quiesce.go).
func (n *Node) Quiesced() bool { return n.quietFlag.Load() }

// quiesce stops the group's ticks; wake resumes them.
func (n *Node) quiesce() {
	n.quiet = true
	n.quietFlag.Store(true)
	n.metrics.quiesced.Add(1)
	n.host.setQuiet(n, true)
}

func (n *Node) wake() {
	if !n.quiet {
		return
	}
	n.quiet = false
	n.quietFlag.Store(false)
	n.host.setQuiet(n, false)
}

// maybeQuiesce quiets the group, on a tick of its leader before Raft's, if
// everything is settled (see the top of this file), and reports whether it
// did.
func (n *Node) maybeQuiesce() bool {
	if !n.cfg.Quiesce || n.quiet || n.leader.Load() != n.raftID || !n.settled() {
		return false
	}
	bs := n.rn.BasicStatus()
	last, err := n.storage.LastIndex()
	if err != nil || bs.RaftState != raft.StateLeader || bs.LeadTransferee != raft.None ||
		bs.Commit != last || bs.Applied != last || n.applied.Load() != last {
		return false
	}
	caughtUp := true
	var peers []uint64
	n.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == n.raftID {
			return
		}
		if pr.Match != last || pr.State != tracker.StateReplicate || !pr.RecentActive {
			caughtUp = false
		}
		peers = append(peers, id)
	})
	if !caughtUp {
		return false
	}
	msgs := make([]raftpb.Message, 0, len(peers))
	for _, id := range peers {
		msgs = append(msgs, raftpb.Message{Type: raftpb.MsgHeartbeat, To: id, From: n.raftID,
			Term: bs.Term, Commit: last, Context: quiesceContext})
	}
	n.send(msgs)
	n.quiesce()
	return true
}

// settled reports whether nothing of the loop's waits on a tick or on Raft:
// no proposal or read waiting, no write waiting for its revision, no append,
// snapshot or transfer under way, nothing held back, no key with a
// deadline, no split due, and a leader's load tracker made.
func (n *Node) settled() bool {
	if n.appending > 0 || len(n.parked) > 0 || len(n.propc) > 0 || n.snapshotting ||
		n.snapsSending.Load() > 0 || len(n.deferred) > 0 || len(n.laterAcks) > 0 || n.stall != nil ||
		n.stamping || len(n.stampq) > 0 {
		return false
	}
	if _, ok := n.kv.NextDeadline(); ok {
		return false
	}
	if n.cfg.RangeSplitBytes > 0 && n.kv.Bytes() > n.cfg.RangeSplitBytes {
		return false // its leader splits it on a tick (maybeSplit)
	}
	if !n.reads.idle() {
		return false
	}
	t := n.load.Load()
	if t == nil && n.cfg.RangeSplitQPS > 0 && n.leader.Load() == n.raftID {
		return false // a leader's first look at its load (on a tick) makes the tracker that counts reads while it is quiet
	}
	if t != nil && t.Rate() > float64(n.cfg.RangeSplitQPS)/2 {
		return false // busy with reads that do not wake it: its load is watched on ticks
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiters) == 0
}

// quietOnHeartbeat quiets a follower on its leader's quiesce heartbeat m,
// which it has just stepped.
func (n *Node) quietOnHeartbeat(m *raftpb.Message) {
	if m.Type != raftpb.MsgHeartbeat || n.quiet || m.From != n.leader.Load() || m.Term != n.term.Load() {
		return
	}
	if n.rn.BasicStatus().RaftState != raft.StateFollower || !n.settled() {
		return
	}
	n.quiesce()
}
