package raftnode

import (
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
