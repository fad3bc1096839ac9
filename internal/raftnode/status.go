package raftnode

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/raft/v3"
)

// Status reports the node's view of its Raft group.
type Status struct {
	ID           string
	ClusterID    uint64 // 0: this data directory predates cluster ids
	Leader       string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// DiskFull: the log cannot be written for lack of space; writes are
	// refused with ErrNoSpace until space is freed.
	DiskFull bool
	Members  []MemberStatus
}

// MemberStatus is one member as this node sees it. Match and Lag are known
// only on the leader (HasProgress).
type MemberStatus struct {
	Member
	Learner bool
	// Reachable: this node heard from the member within two election
	// timeouts (always true for the node itself). Known only for the node
	// itself and, on a follower, its leader; the leader knows it for all.
	ReachKnown  bool
	Reachable   bool
	LastContact time.Time // zero if never heard from
	HasProgress bool
	Match       uint64 // highest log index known to be on the member
	Lag         uint64 // leader's last index minus Match
}

type progress struct {
	match   uint64
	learner bool
}

// Leadership returns, without building a Status, the term this node is in,
// the Raft id of the leader it knows (0 if none) and whether that is this
// node.
func (n *Node) Leadership() (term, leader uint64, self bool) {
	leader = n.leader.Load()
	return n.term.Load(), leader, leader != 0 && leader == n.raftID
}

// Status returns a consistent-enough snapshot of the node's Raft state.
// Version returns, without building a Status, what a Status's leader,
// term, applied index and members change with: the applied index (every
// entry, a change of members included), the term, the leader's Raft id,
// and whether the group is quiet. Two equal Versions of a group, with no
// learner catching up, mean an equal Status but for the contact times.
func (n *Node) Version() (applied, term, leader uint64, quiet bool) {
	return n.applied.Load(), n.term.Load(), n.leader.Load(), n.quietFlag.Load()
}

func (n *Node) Status() Status {
	s := Status{
		ID:           n.cfg.Self.Name,
		ClusterID:    n.clusterID,
		Term:         n.term.Load(),
		CommitIndex:  n.commit.Load(),
		AppliedIndex: n.applied.Load(),
		DiskFull:     n.diskFull.Load(),
	}
	lead := n.leader.Load()
	now := time.Now()
	window := 2 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	prog := n.progress.Load()
	n.mu.Lock()
	if m, ok := n.members[lead]; ok {
		s.Leader = m.Name
	}
	learners := map[uint64]bool{}
	for _, id := range n.learnersPub {
		learners[id] = true
	}
	for id, m := range n.members {
		ms := MemberStatus{Member: m, Learner: learners[id]}
		t, heard := n.contact[id]
		switch {
		case id == n.raftID:
			ms.ReachKnown, ms.Reachable, ms.LastContact = true, true, now
			// The cluster's record of this node has its HTTP address once
			// publishSelf got it through the log (members bootstrapped from
			// a list of peers start without one); this node knows it now.
			if n.cfg.Self.HTTP != "" {
				ms.HTTP = n.cfg.Self.HTTP
			}
		case lead == n.raftID || id == lead:
			ms.ReachKnown = true
			ms.Reachable = heard && now.Sub(t) < window
		}
		if heard && id != n.raftID {
			ms.LastContact = t
		}
		if prog != nil && lead == n.raftID {
			if p, ok := (*prog)[id]; ok {
				ms.HasProgress, ms.Match = true, p.match
				if last := n.lastIndexPub; last > p.match {
					ms.Lag = last - p.match
				}
			}
		}
		s.Members = append(s.Members, ms)
	}
	n.mu.Unlock()
	slices.SortFunc(s.Members, func(a, b MemberStatus) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// publishLearnersLocked makes Status report the learners of the applied
// configuration. It runs on the loop, with n.mu held, wherever the
// configuration changes, in the same critical section as the members, so
// that Status shows a member that was just added with its role.
func (n *Node) publishLearnersLocked() {
	n.learnersPub = append(n.learnersPub[:0], n.confState.Learners...)
}

// publishProgress refreshes what Status reports about replication. It runs on
// the loop at every tick.
func (n *Node) publishProgress() {
	st := n.rn.Status()
	var prog map[uint64]progress
	if st.RaftState == raft.StateLeader {
		prog = make(map[uint64]progress, len(st.Progress))
		for id, pr := range st.Progress {
			prog[id] = progress{match: pr.Match, learner: pr.IsLearner}
		}
	}
	n.progress.Store(&prog)
	last, _ := n.storage.LastIndex()
	n.mu.Lock()
	n.lastIndexPub = last
	n.mu.Unlock()
}

// WALDirect reports whether the node's WAL writes directly (see
// wal.WAL.Direct).
func (n *Node) WALDirect() bool { return n.wal.Direct() }

// Ready returns nil when the node knows a leader and has applied everything it
// knows to be committed.
func (n *Node) Ready() error {
	select {
	case <-n.donec:
		return n.stoppedErr()
	default:
	}
	if n.diskFull.Load() {
		return ErrNoSpace
	}
	if n.leader.Load() == raft.None {
		return ErrNoLeader
	}
	if !n.inConfig.Load() {
		return errors.New("joining: waiting for the leader's log or snapshot, which makes this node a member")
	}
	// Against the commit index of a tick ago: under load the newest commits
	// are always a moment from being applied, which is not catching up.
	if a, c := n.applied.Load(), n.commitTickAgo.Load(); a < c {
		return fmt.Errorf("catching up: applied %d of %d committed entries", a, n.commit.Load())
	}
	return nil
}
