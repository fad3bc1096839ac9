package raftnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/wal"
)

type snapResult struct {
	meta snap.Meta
	cs   raftpb.ConfState
	err  error
}

// maybeSnapshot starts writing a snapshot when enough entries were applied
// since the last one, or when Compact asks for one. The state machine is
// cloned here, on the loop, in O(1); the file is written by another goroutine
// while the loop goes on.
//
// Enough is SnapshotEntries entries, whose bytes add up to at least half the
// state's (its keys and values, and the versions it keeps): a snapshot
// writes the whole state, so a large one (many keys, or a long history of
// a few hot ones) is written no more often than every half its size of log,
// and snapshots cost at most about twice the bytes the log takes.
func (n *Node) maybeSnapshot() {
	if n.snapshotting {
		return
	}
	applied := n.applied.Load()
	due := (applied >= n.snapIndex+n.cfg.SnapshotEntries && n.logGrewEnough()) || (n.snapshotSoon && applied > n.snapIndex)
	// Compact's request is not held back by the wait after a failure.
	asked := len(n.compactWaiters) > 0 && applied > n.snapIndex
	if !asked && (!due || applied < n.snapRetryAt) {
		return
	}
	if err := n.startSnapshot(applied); err != nil {
		n.logger.Warn("snapshot skipped", "index", applied, "err", err)
		n.settleCompactions(Compaction{}, err)
	}
}

// logGrewEnough reports whether the entries appended since the last
// snapshot began hold at least half the bytes of the state's keys and values
// and of the versions it keeps (see maybeSnapshot).
func (n *Node) logGrewEnough() bool {
	_, hist := n.kv.HistoryStats()
	return n.logBytes.Load()-n.logBytesAtSnap >= (n.kv.Bytes()+hist)/2
}

// startSnapshot starts writing a snapshot of the state machine, which has
// applied up to applied.
func (n *Node) startSnapshot(applied uint64) error {
	n.snapshotSoon = false
	term, err := n.storage.Term(applied)
	if err != nil {
		return fmt.Errorf("term of applied entry %d unknown: %w", applied, err)
	}
	extra, err := json.Marshal(n.memberState())
	if err != nil {
		return fmt.Errorf("encode membership: %w", err)
	}
	meta := snap.Meta{Shard: n.cfg.Shard, Index: applied, Term: term, Extra: extra}
	view := n.kv.Snapshot()
	n.logBytesAtSnap = n.logBytes.Load()
	n.snapshotting = true
	n.snapStarted = time.Now()
	cs := n.confState
	n.goAsync(func(context.Context) {
		err := n.snaps.Save(meta, view.SnapshotPairs())
		// Never blocks: snapDone holds one result, there is one writer at
		// a time, and the loop takes its result even as it exits
		// (shutdown).
		n.snapDone <- snapResult{meta: meta, cs: cs, err: err}
	})
	return nil
}

// finishSnapshot compacts the logs behind a snapshot that is now durable. Only a
// WAL append error is returned (and is fatal), unless it is a full disk.
//
// Crash safety, step by step: the snapshot file is complete and durable
// before this runs (written, fsynced, renamed, directory fsynced), and
// recovery loads the newest intact file and replays only WAL entries after
// it, so a crash before the marker is appended, between the marker and the
// WAL compaction, or in the middle of either purge loses nothing: every
// deletion happens only behind a snapshot that is already durable, oldest
// segment first.
//
// The Compacts waiting are answered (settleCompactions), unless the error
// returned stops the node.
func (n *Node) finishSnapshot(res snapResult) error {
	n.snapshotting = false
	if res.err != nil {
		// The WAL still holds everything; try again after more entries.
		n.snapRetryAt = n.applied.Load() + n.cfg.SnapshotEntries/4 + 1
		n.logger.Error("snapshot failed; will retry", "index", res.meta.Index, "err", res.err)
		n.settleCompactions(Compaction{}, fmt.Errorf("snapshot at index %d failed: %w", res.meta.Index, res.err))
		return nil
	}
	idx := res.meta.Index
	if idx <= n.snapIndex {
		// A newer snapshot from the leader was installed meanwhile.
		n.settleCompactions(Compaction{}, nil)
		return nil
	}
	marker := n.snapshotMarker(res.meta)
	if err := n.wal.Append([]wal.Record{marker}, true); err != nil {
		if errors.Is(err, wal.ErrNoSpace) {
			// Nothing is compacted, so the WAL still holds everything after
			// the previous snapshot; the file just written is a valid (if
			// unannounced) snapshot. Try again after more entries.
			n.snapRetryAt = n.applied.Load() + n.cfg.SnapshotEntries/4 + 1
			n.logger.Warn("snapshot written but not recorded in the log: disk full; will retry", "index", idx, "err", err)
			n.settleCompactions(Compaction{}, fmt.Errorf("snapshot at index %d written but not recorded in the log: %w", idx, ErrNoSpace))
			return nil
		}
		return fmt.Errorf("wal append snapshot marker: %w", err)
	}
	if _, err := n.storage.CreateSnapshot(idx, &res.cs, nil); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		n.logger.Warn("raft snapshot", "index", idx, "err", err)
	}
	if idx > n.cfg.LogEntriesKept {
		if err := n.storage.Compact(idx - n.cfg.LogEntriesKept); err != nil && !errors.Is(err, raft.ErrCompacted) {
			n.logger.Warn("compact raft log", "err", err)
		}
	}
	// The WAL was compacted behind the oldest snapshot kept (or, on a new
	// node, holds everything).
	var compactedTo uint64
	if len(n.keptSnaps) > 0 {
		compactedTo = n.keptSnaps[0]
	}
	n.snapIndex = idx
	n.keptSnaps = append(n.keptSnaps, idx)
	if len(n.keptSnaps) > n.cfg.SnapshotsKept {
		n.keptSnaps = n.keptSnaps[len(n.keptSnaps)-n.cfg.SnapshotsKept:]
	}
	if err := n.snaps.Purge(n.cfg.Shard, n.cfg.SnapshotsKept); err != nil {
		n.logger.Warn("purge old snapshots", "err", err)
	}
	// Compact behind the oldest snapshot kept, so every kept snapshot plus the
	// WAL is a complete state.
	behind := n.keptSnaps[0]
	if n.unpinning {
		// The oldest WAL segment waits for this group (unpinWAL).
		behind, n.unpinning = idx, false
	}
	segments, err := n.wal.Compact(n.cfg.Shard, behind)
	if err != nil {
		n.logger.Warn("compact wal", "err", err)
	}
	c := Compaction{Time: time.Now(), SnapshotIndex: idx, EntriesRemoved: n.keptSnaps[0] - compactedTo,
		SegmentsRemoved: segments, Duration: time.Since(n.snapStarted)}
	n.recordCompaction(c)
	n.settleCompactions(c, nil)
	n.logger.Info("snapshot saved", "index", idx, "wal_bytes", n.wal.Size(), "wal_segments_removed", segments,
		"duration", c.Duration)
	return nil
}

// askUnpin asks the group to let go of the oldest WAL segment (see
// Host.relieveWAL). It never blocks.
func (n *Node) askUnpin() {
	select {
	case n.unpinc <- struct{}{}:
	default:
	}
}

// unpinWAL lets go of the entries of this group that keep the oldest segment
// of the shared WAL: it takes a snapshot and compacts the WAL behind it
// (finishSnapshot), or, with nothing applied since its newest snapshot,
// compacts behind that one now. Either way the WAL is compacted behind the
// newest snapshot instead of the oldest kept, so for those entries the group
// gives up falling back to an older snapshot should the newest be damaged.
func (n *Node) unpinWAL() {
	if n.snapshotting || n.applied.Load() > n.snapIndex {
		n.unpinning = true
		n.snapshotSoon = true
		n.maybeSnapshot()
		return
	}
	if n.snapIndex == 0 {
		return
	}
	if _, err := n.wal.Compact(n.cfg.Shard, n.snapIndex); err != nil {
		n.logger.Warn("compact wal", "err", err)
	}
}

// loadSnapshot restores the state machine from the newest intact snapshot.
func (n *Node) loadSnapshot() (snap.Meta, bool, error) {
	meta, err := n.snaps.Load(n.cfg.Shard, func(m snap.Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
		return n.kv.RestoreSnapshot(m.Index, pairs)
	})
	if errors.Is(err, snap.ErrNotFound) {
		return snap.Meta{}, false, nil
	}
	if err != nil {
		return snap.Meta{}, false, fmt.Errorf("load snapshot: %w", err)
	}
	return meta, true, nil
}

// snapshotMarker is the WAL record that says a snapshot at meta.Index exists.
func (n *Node) snapshotMarker(meta snap.Meta) wal.Record {
	return wal.Record{Shard: n.cfg.Shard, Type: wal.RecordSnapshot, Index: meta.Index, Data: meta.Extra}
}
