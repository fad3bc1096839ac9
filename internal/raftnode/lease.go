package raftnode

import (
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// A leader lease lets the leader answer its own linearizable reads without a
// heartbeat round (the Raft thesis, 6.4.1), which under load halves the
// messages linearizable reads cost and answers the leader's reads at once.
//
// Why it is safe. Raft runs with CheckQuorum, under which a follower that has
// heard from its leader within the election timeout (ElectionTicks ticks)
// neither grants a vote nor campaigns. When a read round that the leader
// handed to Raft at time t is confirmed, a quorum of voters answered its
// heartbeat, each after t, in the leader's term: until t plus ElectionTicks-1
// ticks (a tick can come at most one early, the one the ticker buffered),
// none of them votes for another candidate, so no leader of a later term can
// be elected, and the leader's commit index covers every write acknowledged
// before a read that arrives meanwhile (with no entry of its term committed
// yet, or the durable-notice floor above its commit, the same rules as a
// ReadIndex round apply; see readIndexAtOnce). The lease lasts one tick less
// than that, nine tenths of it, measured on the leader's monotonic clock: a
// leader paused for longer (SIGSTOP, a long GC) finds it expired. What would
// still break it, and is assumed not to happen: clocks whose rates differ by
// more than the margin, or a monotonic clock that stops while the process is
// frozen (some virtual machines' during live migration).
//
// Three events would let a leader of a later term appear within a lease, and
// end it:
//   - a leadership transfer: the target campaigns at once and voters grant it
//     (a forced campaign); the lease ends when this leader sends MsgTimeoutNow,
//     and no lease is used while Raft reports a transfer under way;
//   - a configuration change, after which the voters that confirmed the
//     lease may no longer make a quorum's majority; the lease ends when one is
//     applied, and is used only with at most three voters, not joint;
//   - a voter that restarts, which forgets the leader it heard from and would
//     vote at once: a node grants no vote (MsgVote or MsgPreVote) for one
//     election timeout after it starts (see holdsVotes). A replica that a
//     split has just made, with no state of its own from before, is exempt:
//     it has never heard from any leader of its range, so no lease counts
//     on it, and holding its votes kept every new range leaderless for an
//     election timeout, failing the writes that reached it meanwhile.
//
// A lease needs at least three ticks of election timeout; with fewer, every
// linearizable read takes a round.

// leaseLength is how long after a confirmed round's issue the lease lasts.
func (n *Node) leaseLength() time.Duration {
	if n.cfg.ElectionTicks < 3 {
		return 0
	}
	return time.Duration(n.cfg.ElectionTicks-2) * n.cfg.TickInterval * 9 / 10
}

// holdsVotes reports whether this node, started less than an election
// timeout ago, must not grant votes yet (see the top of this file).
func (n *Node) holdsVotes(m *raftpb.Message) bool {
	if m.Type != raftpb.MsgVote && m.Type != raftpb.MsgPreVote || n.cfg.bornBySplit {
		return false
	}
	return time.Since(n.startedAt) < time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval
}

// extendLease records that a read round handed to Raft at issued, as the
// leader in term, was confirmed by a quorum.
func (n *Node) extendLease(issued time.Time, term uint64) {
	d := n.leaseLength()
	if d == 0 || issued.IsZero() || n.leader.Load() != n.raftID || term != n.term.Load() {
		return
	}
	if until := issued.Add(d); until.After(n.leaseUntil) {
		n.leaseUntil, n.leaseTerm = until, term
		n.leasePub.Store(&leaseTime{until: until, term: term})
	}
}

// endLease ends the lease.
func (n *Node) endLease() {
	n.leaseUntil, n.leaseTerm = time.Time{}, 0
	n.leasePub.Store(nil)
}

// leaseTime is the lease as the loop last published it, for other
// goroutines (HoldsLease).
type leaseTime struct {
	until time.Time // with the monotonic clock reading of time.Now
	term  uint64
}

// HoldsLease reports whether this node leads the group under a leader lease
// now: no leader of a later term can have been elected (see the top of this
// file). The timestamp oracle hands out revisions only while it holds. A
// lease is made by a confirmed read round; ReadBarrier makes one when none
// holds.
func (n *Node) HoldsLease() bool {
	l := n.leasePub.Load()
	return l != nil && time.Now().Before(l.until) && l.term == n.term.Load() && n.leader.Load() == n.raftID
}

// leaseReadIndex returns the read index with which this leader answers a read
// arriving now without a round, or false if it cannot (no valid lease, or a
// condition of pairReadIndex fails). Called on the loop.
func (n *Node) leaseReadIndex(now time.Time) (uint64, bool) {
	if n.leaseUntil.IsZero() || !now.Before(n.leaseUntil) {
		return 0, false
	}
	st := n.rn.BasicStatus()
	if st.Term != n.leaseTerm || st.LeadTransferee != raft.None {
		return 0, false
	}
	// Paired with itself: only the conditions on the configuration and the
	// term are checked; the voters that confirmed the lease did so already.
	return n.pairReadIndex(&st, n.raftID)
}

// issueReads answers the reads waiting for a round from the lease if it
// holds, renewing it once half of it is gone, and otherwise hands them to
// Raft as a read round. Called on the loop.
func (n *Node) issueReads() {
	now := time.Now()
	n.reads.issuedAsLeader = n.leader.Load() == n.raftID
	n.reads.issueTerm = n.term.Load()
	index, ok := n.leaseReadIndex(now)
	if !ok {
		n.reads.issue(n.rn, now)
		return
	}
	n.send(n.withDeferred(n.reads.answerNow(index, n.raftID, n.leaseTerm)))
	n.reads.release(n.applied.Load())
	if n.leaseUntil.Sub(now) < n.leaseLength()/2 {
		n.reads.renew(n.rn, now)
	}
}
