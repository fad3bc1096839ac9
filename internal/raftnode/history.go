package raftnode

import (
	"bytes"
	"context"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// Compaction of the multi-version state (package kv, history.go). The store
// keeps every version that a write replaced or deleted until an OpCompact
// entry drops it; that entry goes through the log so that every replica
// drops the same versions at the same index. This node proposes one while it
// leads, on the loop's tick:
//
//   - by age: the versions retired more than Config.HistoryRetention ago.
//     Every replica notes its store's revision, with its clock's time, once
//     per retention/historySamples, and keeps historySamples such notes; the
//     leader compacts to the newest revision noted at least the retention
//     ago. So versions live between the retention and the retention plus
//     1/historySamples of it. A replica that became leader recently has
//     notes from while it followed.
//   - by size: once the retired versions' keys and values pass
//     Config.HistoryMaxBytes, the oldest of them, however recent, down to
//     half of it.
//
// A range that is quiet stops ticking (quiesce.go) and so compacts nothing;
// it writes nothing either, so its history does not grow meanwhile.

// compactTicks is how often, in ticks of the loop, a replica notes its
// revision and the leader looks for a compaction due: every tenth tick (1 s
// at the default tick).
const compactTicks = 10

// historySamples is how many revision notes a replica keeps.
const historySamples = 64

// compactTimeout bounds the wait for one OpCompact entry to be applied.
const compactTimeout = 5 * time.Second

// revisionNote is the store's revision at a time.
type revisionNote struct {
	at  time.Time
	rev int64
}

// noteRevision records the store's revision now if the last note is older
// than a sample's interval; called on each tick.
func (n *Node) noteRevision(now time.Time) {
	every := n.cfg.HistoryRetention / historySamples
	if k := len(n.revNotes); k > 0 && now.Sub(n.revNotes[k-1].at) < every {
		return
	}
	if len(n.revNotes) == historySamples+1 {
		n.revNotes = append(n.revNotes[:0], n.revNotes[1:]...)
	}
	n.revNotes = append(n.revNotes, revisionNote{at: now, rev: n.kv.Revision()})
}

// compactTarget is the revision this leader should compact to now, 0 if
// none is due.
func (n *Node) compactTarget(now time.Time) int64 {
	var target int64
	_, size := n.kv.HistoryStats()
	if size == 0 {
		return 0
	}
	if size > n.cfg.HistoryMaxBytes {
		target = n.kv.HistoryCut(size - n.cfg.HistoryMaxBytes/2)
	} else {
		for _, note := range n.revNotes {
			if now.Sub(note.at) < n.cfg.HistoryRetention {
				break
			}
			target = note.rev
		}
	}
	if target <= n.kv.Compacted() {
		return 0
	}
	return target
}

// maybeCompact notes the revision and, if this node leads, a compaction is
// due and none is under way, proposes it on a goroutine of its own.
func (n *Node) maybeCompact() {
	now := time.Now()
	n.noteRevision(now)
	if n.leader.Load() != n.raftID || n.compacting.Load() {
		return
	}
	target := n.compactTarget(now)
	if target == 0 {
		return
	}
	n.compacting.Store(true)
	n.goAsync(func(ctx context.Context) {
		defer n.compacting.Store(false)
		pctx, cancel := context.WithTimeout(ctx, compactTimeout)
		defer cancel()
		if _, err := n.CompactHistory(pctx, target); err != nil {
			// Not the leader any more, stopping, or a full disk: the next
			// leader (or this one, on a later tick) proposes it again.
			n.logger.Debug("compact history", "revision", target, "err", err)
		}
	})
}

// CompactHistory drops, on every replica of the group, the versions that no read at
// rev or later needs, and refuses reads below rev from then on; it returns
// the group's compaction revision after it (see kv.OpCompact: a rev above
// the group's revision compacts to that). The client's POST /compact and
// the leader's retention both come here.
func (n *Node) CompactHistory(ctx context.Context, rev int64) (int64, error) {
	res, err := n.Propose(ctx, kv.Command{Op: kv.OpCompact, Revision: rev})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// Reads at a revision. Revisions are the cluster's (stamped by the
// timestamp oracle), so a range's state at revision rev is final only once
// no write stamped at or below rev can still apply to it: a write stamped
// before rev was handed out may be in flight, proposed but not applied. So
// a read at rev first makes this replica current (a read barrier, as a
// linearizable read does) and then, if the group's revision is still below
// rev, proposes an OpAdvance to rev and waits for it here: every write
// stamped at or below rev applied before it, and any that comes after is
// refused (kv.StatusStaleStamp) and stamped again, above rev (Propose). What
// the replica then holds at rev cannot change, on any replica, so two reads
// at one revision agree, across ranges too. A busy range is usually past
// rev already and pays the barrier only.
//
// rev must not be above a revision the oracle has handed out: the group's
// revision would run ahead of the oracle, and its writes would be refused
// until the oracle caught up. The API checks it against the current
// revision first.

// readyAt makes this replica's state at rev final (see above).
func (n *Node) readyAt(ctx context.Context, rev int64) error {
	if err := n.ReadBarrier(ctx); err != nil {
		return err
	}
	if n.kv.Revision() >= rev {
		return nil
	}
	_, err := n.Propose(ctx, kv.Command{Op: kv.OpAdvance, Revision: rev})
	return err
}

// GetAt returns key's state at revision rev (see readyAt); an error wrapping
// kv.ErrCompacted (a *kv.CompactedError) if rev is below the group's
// compaction revision.
func (n *Node) GetAt(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	if err := n.readyAt(ctx, rev); err != nil {
		return kv.KeyValue{}, false, err
	}
	b := n.bounds.Load()
	if err := n.lockedAt(key, nil, rev); err != nil {
		return kv.KeyValue{}, false, err
	}
	v, ok, err := n.kv.GetAt(key, rev)
	if n.bounds.Load() != b || !b.Contains(key) {
		return kv.KeyValue{}, false, n.wrongRange(*n.bounds.Load())
	}
	n.noteRead(key)
	return v, ok, err
}

// RangeAt is Range at revision rev (see GetAt).
func (n *Node) RangeAt(ctx context.Context, start, end []byte, limit int, rev int64) ([]kv.KeyValue, bool, error) {
	if err := n.readyAt(ctx, rev); err != nil {
		return nil, false, err
	}
	b := n.bounds.Load()
	if err := n.lockedAt(start, rangeEnd(start, end), rev); err != nil {
		return nil, false, err
	}
	kvs, more, err := n.kv.RangeAt(start, end, rev, limit)
	if n.bounds.Load() != b || !b.Contains(start) || (len(b.End) > 0 && (len(end) == 0 || bytes.Compare(end, b.End) > 0)) {
		return nil, false, n.wrongRange(*n.bounds.Load())
	}
	n.noteRead(start)
	return kvs, more, err
}

// Changes returns the changes of the keys start <= key < end (within the
// group's bounds) with revisions in (after, upto], in revision order (see
// kv.Store.Changes), once upto is final here (see readyAt).
func (n *Node) Changes(ctx context.Context, start, end []byte, after, upto int64) ([]kv.Event, error) {
	if err := n.readyAt(ctx, upto); err != nil {
		return nil, err
	}
	b := n.bounds.Load()
	if err := n.lockedAt(start, rangeEnd(start, end), upto); err != nil {
		return nil, err
	}
	evs, err := n.kv.Changes(start, end, after, upto)
	if n.bounds.Load() != b || !b.Contains(start) || (len(b.End) > 0 && (len(end) == 0 || bytes.Compare(end, b.End) > 0)) {
		return nil, n.wrongRange(*n.bounds.Load())
	}
	return evs, err
}

// CurrentRevision returns, if the keys start <= key < end (end empty:
// unbounded) all lie in this group's range, a revision at which a read of
// them is linearizable and final here without a write: the group's revision
// once this replica is current (a read barrier). Every write acknowledged
// before the call is at or below it, and any write still to apply here
// takes a revision above it (a stamp at or below it is refused). ok is
// false if the keys reach beyond the range: a read across ranges needs the
// cluster's current revision instead.
func (n *Node) CurrentRevision(ctx context.Context, start, end []byte) (rev int64, ok bool, err error) {
	b := n.bounds.Load()
	if !b.Contains(start) || (len(b.End) > 0 && (len(end) == 0 || bytes.Compare(end, b.End) > 0)) {
		return 0, false, nil
	}
	if err := n.ReadBarrier(ctx); err != nil {
		return 0, false, err
	}
	if n.bounds.Load() != b {
		return 0, false, nil // split meanwhile
	}
	return max(n.kv.Revision(), 1), true, nil
}
