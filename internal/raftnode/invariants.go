package raftnode

import (
	"fmt"
	"slices"
)

// Invariant checks. They are compiled in only with the build tag invariants
// (invariants_on.go), as pebble does: `make test` runs this package's tests
// once with it. In any other build invariants is the constant false and every
// check folds away. A check that fails panics with what it saw: it means a
// bug in this package, not a fault of the disk or the network.

// checkInvariants checks, on the loop between two of its turns, what the
// Node's fields promise (see their comments).
func (n *Node) checkInvariants() {
	if !invariants {
		return
	}
	applied, commit := n.applied.Load(), n.commit.Load()
	if n.snapIndex > applied || applied > commit {
		n.invariantBroken("snapIndex %d <= applied %d <= committed %d", n.snapIndex, applied, commit)
	}
	if c := n.rn.BasicStatus().Commit; commit > c {
		n.invariantBroken("published commit index %d above Raft's %d", commit, c)
	}
	// Raft hands out for applying only entries that the appender reported
	// durable, and the storage takes only those: nothing is applied that
	// is not in the durable log. The applied mark covers every applied
	// entry but those of a snapshot, which is durable itself.
	if last, _ := n.storage.LastIndex(); applied > last {
		n.invariantBroken("applied %d beyond the durable log's last index %d", applied, last)
	}
	if applied > max(n.mark.index, n.snapIndex) {
		n.invariantBroken("applied %d beyond the applied mark %d and the snapshot %d", applied, n.mark.index, n.snapIndex)
	}
	if n.appending < 0 {
		n.invariantBroken("appending %d < 0", n.appending)
	}
	stalled := n.stall != nil
	if full := n.diskFull.Load(); full != stalled {
		n.invariantBroken("diskFull %v but stall %v between turns", full, n.stall)
	}
	if !stalled && (len(n.held) > 0 || len(n.stalledLocal) > 0 || len(n.snapStatusLater) > 0) {
		n.invariantBroken("not stalled, yet %d held applies, %d held responses, %d held snapshot results",
			len(n.held), len(n.stalledLocal), len(n.snapStatusLater))
	}
	if len(n.compactWaiters) > 0 && !n.snapshotting {
		n.invariantBroken("%d compactions wait, but no snapshot is being written", len(n.compactWaiters))
	}
	if n.pendingSnap != nil {
		n.invariantBroken("received snapshot %d still pending between turns", n.pendingSnap.Meta.Index)
	}
	if k := len(n.keptSnaps); (k == 0) != (n.snapIndex == 0) || (k > 0 && n.keptSnaps[k-1] != n.snapIndex) ||
		!slices.IsSorted(n.keptSnaps) {
		n.invariantBroken("kept snapshots %v, newest snapshot %d", n.keptSnaps, n.snapIndex)
	}
}

// checkMarkDurable checks, before the applied mark is advanced to index, that
// index names an entry of the durable log (see appliedmark.go): the mark must
// never name one that a restart might not find.
func (n *Node) checkMarkDurable(index uint64) {
	if !invariants {
		return
	}
	if last, _ := n.storage.LastIndex(); index > last {
		n.invariantBroken("applied mark %d beyond the durable log's last index %d", index, last)
	}
}

func (n *Node) invariantBroken(format string, args ...any) {
	panic(fmt.Sprintf("raftnode: invariant broken on node %s: %s", n.cfg.Self.Name, fmt.Sprintf(format, args...)))
}
