package raftnode

import (
	"context"
	"slices"
	"time"
)

// Compaction is one snapshot and the compaction of the log behind it.
type Compaction struct {
	// Time is when it finished: the WAL was compacted.
	Time time.Time
	// SnapshotIndex is the last log index the snapshot covers.
	SnapshotIndex uint64
	// EntriesRemoved is how far the WAL's compaction point moved: the log
	// entries the WAL no longer keeps. The WAL keeps every entry after the
	// oldest of the Config.SnapshotsKept snapshots, so with two kept this is
	// what the previous snapshot covered beyond the one before it, and 0 at
	// the second snapshot of a new node.
	EntriesRemoved uint64
	// SegmentsRemoved is how many WAL segment files were deleted.
	SegmentsRemoved int
	// Duration is from the start of the snapshot (the clone of the state
	// machine) until the WAL was compacted.
	Duration time.Duration
}

// compactionsKept is how many compactions Compactions reports.
const compactionsKept = 10

// compactWaiter is a Compact waiting for a snapshot that covers want.
type compactWaiter struct {
	want uint64 // the applied index when Compact was called
	// acc sums the compactions finished while it waited (a snapshot already
	// under way may not cover want, and one more is then taken).
	acc  Compaction
	done chan compactOutcome // buffered: never blocks the loop
}

type compactOutcome struct {
	c   Compaction
	err error
}

// Compact takes a snapshot of everything this node has applied, compacts
// the log behind it, and returns what that removed. A snapshot already being
// written is waited for, and followed by another if it does not cover what
// was applied when Compact was called; the result then sums both. A node that
// has applied nothing since its last snapshot answers at once, with its
// SnapshotIndex and nothing removed. A failed snapshot is returned as an
// error (the node goes on, and retries by itself later); ErrNoSpace while the
// disk is full. Compaction is per node: the other members are not asked.
//
// When ctx ends first, the snapshot still completes.
func (n *Node) Compact(ctx context.Context) (Compaction, error) {
	if n.diskFull.Load() {
		return Compaction{}, ErrNoSpace
	}
	done := make(chan compactOutcome, 1)
	select {
	case n.funcc <- func() { n.requestCompaction(done) }:
	case <-ctx.Done():
		return Compaction{}, ctx.Err()
	case <-n.donec:
		return Compaction{}, n.stoppedErr()
	}
	select {
	case o := <-done:
		return o.c, o.err
	case <-ctx.Done():
		return Compaction{}, ctx.Err()
	case <-n.donec:
		return Compaction{}, n.stoppedErr()
	}
}

// requestCompaction runs Compact's request on the loop.
func (n *Node) requestCompaction(done chan compactOutcome) {
	applied := n.applied.Load()
	if !n.snapshotting && applied <= n.snapIndex {
		done <- compactOutcome{c: Compaction{SnapshotIndex: n.snapIndex}}
		return
	}
	n.compactWaiters = append(n.compactWaiters, &compactWaiter{want: applied, done: done})
	// Starts one unless one is being written; a snapshot that cannot start
	// answers the waiters with why.
	n.maybeSnapshot()
}

// settleCompactions tells the waiting Compacts how a snapshot ended: err, or
// c (zero when a newer snapshot from the leader made it moot). Those whose
// applied index the newest snapshot covers are answered; the others wait
// for the next one, which maybeSnapshot then starts.
func (n *Node) settleCompactions(c Compaction, err error) {
	if len(n.compactWaiters) == 0 {
		return
	}
	kept := n.compactWaiters[:0]
	for _, w := range n.compactWaiters {
		if err != nil {
			w.done <- compactOutcome{err: err}
			continue
		}
		w.acc.SnapshotIndex = n.snapIndex
		w.acc.EntriesRemoved += c.EntriesRemoved
		w.acc.SegmentsRemoved += c.SegmentsRemoved
		w.acc.Duration += c.Duration
		if !c.Time.IsZero() {
			w.acc.Time = c.Time
		}
		if n.snapIndex >= w.want {
			w.done <- compactOutcome{c: w.acc}
			continue
		}
		kept = append(kept, w)
	}
	clear(n.compactWaiters[len(kept):])
	n.compactWaiters = kept
}

// recordCompaction adds c to what Compactions reports.
func (n *Node) recordCompaction(c Compaction) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.compactions = append(n.compactions, c)
	if k := len(n.compactions); k > compactionsKept {
		n.compactions = slices.Delete(n.compactions, 0, k-compactionsKept)
	}
}

// Compactions returns the last compactions this node made since it started
// (at most 10), oldest first: every snapshot it took, whether every
// Config.SnapshotEntries entries or asked for by Compact.
func (n *Node) Compactions() []Compaction {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.compactions)
}
