package raftnode

import (
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// commitDeferral bounds how long a leader holds an append that carries only a
// new commit index.
//
// Once a write commits, Raft sends every follower an empty append with the
// new commit index. With one write at a time each of them costs the leader a
// loopback write (10-20 us here) and wakes the follower to write a hard state
// and apply, CPU taken from the next write just when it arrives; the next
// write's append, due a fraction of a millisecond later, would carry the same
// index. So the leader holds such an append, per follower, until it sends
// that follower anything else (an append that carries entries makes it
// redundant; anything else takes it along in the same write) or for at most
// commitDeferral. It never holds one for a follower that forwarded a write
// the new index commits (that follower's client waits on it), nor for one
// whose progress is not replicating (a probe must go out).
//
// What this costs: a follower that the leader has nothing else to send learns
// a commit index up to commitDeferral later, so its stale reads show a write
// that much later. Its linearizable reads do not wait on it: the leader's
// answer to its read request takes the held append along. Holding a message
// is safe in Raft, which tolerates any delay or loss.
//
// A variable so that a test can turn holding off (0).
var commitDeferral = time.Millisecond

// isCommitOnly reports whether m is an append with no entries: from a leader,
// one that tells a follower a new commit index.
func isCommitOnly(m *raftpb.Message) bool {
	return m.Type == raftpb.MsgApp && len(m.Entries) == 0
}

// deferCommits takes out of msgs, the leader's messages of a Ready, the
// appends that carry only a commit index and may wait (see commitDeferral),
// and returns the rest with whatever was held for their recipients.
// prevCommit is the commit index before this Ready. Called on the loop.
func (n *Node) deferCommits(msgs []raftpb.Message, prevCommit uint64) []raftpb.Message {
	if commitDeferral > 0 && n.leader.Load() == n.raftID && slices.ContainsFunc(msgs, func(m raftpb.Message) bool { return isCommitOnly(&m) }) {
		n.replicating = n.replicating[:0]
		n.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if pr.State == tracker.StateReplicate {
				n.replicating = append(n.replicating, id)
			}
		})
		kept := msgs[:0]
		for _, m := range msgs {
			if isCommitOnly(&m) && slices.Contains(n.replicating, m.To) && n.forwarded[m.To] <= prevCommit {
				if n.deferred == nil {
					n.deferred = map[uint64]raftpb.Message{}
				}
				n.deferred[m.To] = m
				continue
			}
			kept = append(kept, m)
		}
		clear(msgs[len(kept):])
		msgs = kept
	}
	msgs = n.withDeferred(msgs)
	if len(n.deferred) > 0 && !n.deferArmed {
		if n.deferTimer == nil {
			n.deferTimer = time.NewTimer(commitDeferral)
		} else {
			n.deferTimer.Reset(commitDeferral)
		}
		n.deferArmed = true
	}
	return msgs
}

// withDeferred returns msgs with the held append of each follower they go to:
// dropped if msgs hold an append to it (which carries the commit index too),
// else put before its first message. Called on the loop before a send.
func (n *Node) withDeferred(msgs []raftpb.Message) []raftpb.Message {
	for id, d := range n.deferred {
		i := slices.IndexFunc(msgs, func(m raftpb.Message) bool { return m.To == id })
		if i < 0 {
			continue
		}
		delete(n.deferred, id)
		if !slices.ContainsFunc(msgs[i:], func(m raftpb.Message) bool { return m.To == id && m.Type == raftpb.MsgApp }) {
			msgs = slices.Insert(msgs, i, d)
		}
	}
	return msgs
}

// flushDeferred sends every held append. Called on the loop.
func (n *Node) flushDeferred() {
	if len(n.deferred) == 0 {
		return
	}
	msgs := make([]raftpb.Message, 0, len(n.deferred))
	for _, m := range n.deferred {
		msgs = append(msgs, m)
	}
	clear(n.deferred)
	n.send(msgs)
}

// deferC is the channel on which the loop hears that held appends are due.
func (n *Node) deferC() <-chan time.Time {
	if n.deferTimer == nil {
		return nil
	}
	return n.deferTimer.C
}
