package raftnode

import (
	"sync/atomic"

	"go.etcd.io/raft/v3"

	"github.com/distkv/distkv/internal/wal"
)

// Metrics are a node's counters since Open and its state now, for
// monitoring (package metrics exports them). The counters are atomics that
// the node bumps once per rare event (a leader change, a snapshot, a failed
// proposal); the entry counts are derived from the commit and applied
// indexes, so the write path pays nothing for them.
type Metrics struct {
	Term uint64
	// Leader: this node leads its Raft group; HasLeader: it knows a leader.
	Leader, HasLeader bool
	// Invariant: AppliedIndex <= CommitIndex.
	CommitIndex, AppliedIndex uint64
	// LeaderChanges counts the times a leader became known that was not the
	// one known just before (a new leader, or one found again after none was
	// known).
	LeaderChanges uint64
	// EntriesCommitted and EntriesApplied count the log entries (writes,
	// member changes and each new leader's empty entry) this node learned
	// were committed, and applied, since Open: the replay of the log at Open
	// is applied again, and a snapshot from the leader counts every entry
	// it covers.
	EntriesCommitted, EntriesApplied uint64
	// ProposalsFailed counts the Propose calls that returned an error (no
	// leader, timed out, disk full, stopped), not those refused as invalid.
	ProposalsFailed uint64
	// ProposalsPending is the number of writes handed to Raft and not yet
	// answered.
	ProposalsPending int
	// SnapshotsTaken counts the snapshot files this node wrote,
	// SnapshotsSent the snapshots it streamed to a follower that installed
	// them, SnapshotsReceived those it installed from a leader.
	SnapshotsTaken, SnapshotsSent, SnapshotsReceived uint64
	// MessagesDropped counts Raft messages from peers dropped because the
	// loop was behind (Raft retransmits).
	MessagesDropped uint64
	// DiskFull: writes are refused until space is freed (see Status).
	DiskFull bool
	// WAL is the write-ahead log's counters and size.
	WAL wal.Stats
}

// nodeMetrics holds the counters behind Metrics that no other field of the
// Node keeps.
type nodeMetrics struct {
	// appliedAtOpen is the applied index the node opened with (its
	// snapshot's). Set by Open, then never changed.
	appliedAtOpen  uint64
	leaderChanges  atomic.Uint64
	failed         atomic.Uint64
	snapshotsTaken atomic.Uint64
	snapshotsSent  atomic.Uint64
	quiesced       atomic.Uint64 // times the group went quiet (quiesce.go)
}

// noteLeader counts a leader change when the loop learns that lead leads
// where prev was known (raft.None: none).
func (m *nodeMetrics) noteLeader(prev, lead uint64) {
	if lead != raft.None && lead != prev {
		m.leaderChanges.Add(1)
	}
}

// noteProposal counts a failed proposal; Propose defers it with its error.
func (m *nodeMetrics) noteProposal(err *error) {
	if *err != nil {
		m.failed.Add(1)
	}
}

// Metrics returns the node's counters and state. Safe for concurrent use;
// it takes the node's mutex briefly, never the loop's time.
func (n *Node) Metrics() Metrics {
	lead := n.leader.Load()
	m := Metrics{
		Term:              n.term.Load(),
		Leader:            lead == n.raftID,
		HasLeader:         lead != raft.None,
		LeaderChanges:     n.metrics.leaderChanges.Load(),
		ProposalsFailed:   n.metrics.failed.Load(),
		SnapshotsTaken:    n.metrics.snapshotsTaken.Load(),
		SnapshotsSent:     n.metrics.snapshotsSent.Load(),
		SnapshotsReceived: n.snapsInstalled.Load(),
		MessagesDropped:   n.dropped.Load(),
		DiskFull:          n.diskFull.Load(),
		WAL:               n.wal.Stats(),
	}
	// Applied first: read the other way round, an entry applied between
	// the two loads could show applied > commit.
	m.AppliedIndex = n.applied.Load()
	m.CommitIndex = max(n.commit.Load(), m.AppliedIndex)
	m.EntriesCommitted = m.CommitIndex - min(n.replayTo, m.CommitIndex)
	m.EntriesApplied = m.AppliedIndex - min(n.metrics.appliedAtOpen, m.AppliedIndex)
	n.mu.Lock()
	m.ProposalsPending = len(n.waiters)
	n.mu.Unlock()
	return m
}
