package raftnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/ranges"
	"github.com/distkv/distkv/internal/snap"
)

// A group serves the keys of one range [Start, End) of the key space; the
// first group of a cluster serves all of it. A split, proposed like a write
// and applied at the same log index by every replica, cuts the range at a
// key: the group keeps the keys before it, and the keys from it on become a
// new group, with the same members, on every node that applies the split.
// No data crosses the network: each replica makes the new group's first
// snapshot from its own state (the keys it moves, at the split's index) and
// opens the group from it, as a restart would. Its log then continues from
// that index, so the revisions of the keys it took keep growing.
//
// A write whose keys the range does not (or no longer) hold is not applied:
// it gets ErrWrongRange, whose caller sends it to the range that holds them.

// ErrWrongRange is the outcome of a write or read of keys outside the
// group's range: sent to the wrong group, or across a split.
var ErrWrongRange = errors.New("key is not in this range")

// Bounds is a range of keys, [Start, End); an empty End is the end of the
// key space.
type Bounds struct {
	Start []byte `json:"start,omitempty"`
	End   []byte `json:"end,omitempty"`
}

// noKeys is the range of a group that holds no keys yet: it contains none.
var noKeys = Bounds{Start: []byte{0}, End: []byte{0}}

// Contains reports whether key lies in b.
func (b Bounds) Contains(key []byte) bool {
	return bytes.Compare(key, b.Start) >= 0 && (len(b.End) == 0 || bytes.Compare(key, b.End) < 0)
}

func (b Bounds) String() string {
	end := fmt.Sprintf("%q", b.End)
	if len(b.End) == 0 {
		end = "the end"
	}
	return fmt.Sprintf("[%q, %s)", b.Start, end)
}

// holds reports whether every key cmd reads or writes lies in b (a
// transaction's op: its keys, and the primary where the record is kept).
func (b Bounds) holds(cmd *kv.Command) bool {
	if in := cmd.Intent; in != nil {
		for _, op := range in.Keys {
			if !b.Contains(op.Key) {
				return false
			}
		}
		switch cmd.Op {
		case kv.OpCommit, kv.OpRecover, kv.OpForget:
			return b.Contains(in.Primary)
		}
		return true
	}
	switch cmd.Op {
	case kv.OpPut, kv.OpDelete:
		return b.Contains(cmd.Key)
	case kv.OpTxn:
		if cmd.Txn == nil {
			return true
		}
		for _, c := range cmd.Txn.Compares {
			if !b.Contains(c.Key) {
				return false
			}
		}
		for _, ops := range [][]kv.TxnOp{cmd.Txn.Success, cmd.Txn.Failure} {
			for _, op := range ops {
				if !b.Contains(op.Key) {
					return false
				}
			}
		}
	}
	return true
}

// wrongRange is the error of a command outside the group's range.
func (n *Node) wrongRange(b Bounds) error {
	return fmt.Errorf("%w: group %d holds %v", ErrWrongRange, n.cfg.Shard, b)
}

// Shard returns the group's id.
func (n *Node) Shard() uint64 { return n.cfg.Shard }

// Bounds returns the range of keys the group holds, as of the last entry it
// applied.
func (n *Node) Bounds() Bounds { return *n.bounds.Load() }

// Split proposes to cut the group's range at key: the keys from key on
// become group shard, on every node that holds a replica. It returns once
// this node has applied the split. key must lie strictly inside the range,
// and shard must be a group no node serves (the caller allocates it).
func (n *Node) Split(ctx context.Context, key []byte, shard uint64) error {
	b := n.Bounds()
	if !b.Contains(key) || bytes.Equal(key, b.Start) {
		return fmt.Errorf("split at %q: not strictly inside %v", key, b)
	}
	if shard == 0 || shard == n.cfg.Shard {
		return fmt.Errorf("split at %q: %d cannot be the new group", key, shard)
	}
	_, err := n.Propose(ctx, kv.Command{Op: kv.OpSplit, Key: key, Shard: shard})
	return err
}

// applySplit applies the split cmd, log entry index, on the loop: the keys
// from cmd.Key on leave this group's state, and the Host opens the new group
// from a snapshot of them. A split of a key outside the range (proposed
// before another split moved it) changes nothing and answers ErrWrongRange.
func (n *Node) applySplit(index uint64, cmd kv.Command) error {
	b := n.Bounds()
	if !b.Contains(cmd.Key) || bytes.Equal(cmd.Key, b.Start) {
		return n.wrongRange(b)
	}
	// The bounds shrink before the keys leave the state: see Get.
	rb := Bounds{Start: slices.Clone(cmd.Key), End: b.End}
	n.bounds.Store(&Bounds{Start: b.Start, End: rb.Start})
	right, err := n.kv.Split(index, cmd.Key)
	if err != nil {
		return fmt.Errorf("apply split at entry %d: %w", index, err)
	}
	term, err := n.storage.Term(index)
	if err != nil {
		return fmt.Errorf("apply split at entry %d: its term: %w", index, err)
	}
	ms := n.memberState()
	ms.Range = &rb
	extra, err := json.Marshal(ms)
	if err != nil {
		return err
	}
	if !inConfState(n.confState, n.raftID) {
		// This node was not a member of the group when it split: it is
		// catching up on a log from before it joined (a new node replays
		// group 1's), and the new group's replicas are elsewhere.
		return nil
	}
	// Groups made by splits quiesce: a node may hold thousands.
	cfg := n.cfg
	cfg.Shard, cfg.Join, cfg.Members, cfg.Quiesce = cmd.Shard, false, nil, true
	cfg.Campaign = n.rn.BasicStatus().RaftState == raft.StateLeader
	return n.host.openSplit(cfg, snap.Meta{Shard: cmd.Shard, Index: index, Term: term, Extra: extra}, right)
}

// memberState is the group's membership (and range, unless it is the whole
// key space), as snapshots keep it.
func (n *Node) memberState() memberState {
	n.mu.Lock()
	ms := memberState{ConfState: n.confState, ClusterID: n.clusterIDString()}
	for _, m := range n.members {
		ms.Members = append(ms.Members, m)
	}
	n.mu.Unlock()
	slices.SortFunc(ms.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	if b := n.Bounds(); len(b.Start) > 0 || len(b.End) > 0 {
		ms.Range = &b
	}
	return ms
}

// openSplit opens the group a split made, from a snapshot of its state right
// at the split (meta.Index), which it writes first, unless the group is
// already here with a state of its own (it got one from its leader before
// this node applied the split, or the split is applied again after a
// restart). A group created empty by its leader's first message (see
// create) is replaced.
func (h *Host) openSplit(cfg Config, meta snap.Meta, state *kv.Store) error {
	if h.Buried(cfg.Shard) || !h.claim(cfg.Shard, true) {
		return nil // since moved off this node, or stopping
	}
	defer h.unclaim(cfg.Shard)
	// The group starts in the term of the split's entry, having applied it.
	hs := raftpb.HardState{Term: meta.Term, Commit: meta.Index}
	// New here unless a replica ran before: opened empty by its leader's
	// first message (it may have answered that leader), or from this node's
	// disk (the split applied again after a restart).
	cfg.bornBySplit = true
	if g := h.Group(cfg.Shard); g != nil {
		cfg.bornBySplit = false
		if g.applied.Load() > 0 {
			return nil
		}
		// Empty: the leader's first message got here before this split. Its
		// term and vote stand: it must not vote twice in a term.
		if err := g.Stop(); err != nil && !errors.Is(err, ErrStopped) {
			return fmt.Errorf("replace the empty group %d: %w", cfg.Shard, err)
		}
		if old, _, err := g.storage.InitialState(); err == nil && old.Term >= hs.Term {
			hs.Term, hs.Vote = old.Term, old.Vote
		}
	}
	h.mu.Lock()
	if h.recovered[cfg.Shard] != nil {
		cfg.bornBySplit = false
	}
	if rl := h.recovered[cfg.Shard]; rl != nil && rl.hs.Term > hs.Term {
		hs.Term, hs.Vote = rl.hs.Term, rl.hs.Vote
	}
	if h.recovered[cfg.Shard] == nil || len(h.recovered[cfg.Shard].ents) == 0 {
		h.recovered[cfg.Shard] = &recoveredLog{hs: hs}
	}
	h.mu.Unlock()
	if idx, err := h.snaps.Indexes(cfg.Shard); err != nil {
		return err
	} else if len(idx) > 0 {
		// The node stopped after the group's first snapshot was written; the
		// group opens from it (or a later one) below.
		cfg.bornBySplit = false
	} else if err := h.snaps.Save(meta, state.Snapshot().SnapshotPairs()); err != nil {
		return fmt.Errorf("first snapshot of group %d: %w", cfg.Shard, err)
	}
	if _, err := h.openClaimed(cfg, false); err != nil {
		return fmt.Errorf("open group %d made by a split: %w", cfg.Shard, err)
	}
	return nil
}

// splitCheckTicks is how often, in ticks, a leader looks at its range's
// size and load (see maybeSplit).
const splitCheckTicks = 10

// maybeSplit starts splitting the range, on a tick of its leader, once its
// keys and values pass Config.RangeSplitBytes, at the key that halves its
// bytes; or else once it has stayed above Config.RangeSplitQPS for
// Config.RangeLoadWindow, at the key that divides its load (loadsplit.go).
// The new group's id is allocated by the first group's log (so group 1 must
// be open on this node). The work runs on a goroutine of its own, one split
// at a time, whatever its reason.
func (n *Node) maybeSplit() {
	load := n.trackLoad()
	if n.leader.Load() != n.raftID || n.splitting.Load() {
		return
	}
	if n.cfg.RangeSplitBytes > 0 && n.kv.Bytes() > n.cfg.RangeSplitBytes {
		view := n.kv.Snapshot()
		n.startSplit("size", func() ([]byte, bool) {
			return ranges.SplitKey(func(yield func([]byte, int64) bool) {
				for kv := range view.All() {
					if !yield(kv.Key, int64(len(kv.Key)+len(kv.Value))) {
						return
					}
				}
			})
		})
		return
	}
	if key, ok := n.loadSplitKey(load); ok {
		qps := load.Rate()
		load.Reset() // the next split for load needs a new window of load
		n.startSplit("load", func() ([]byte, bool) { return key, true }, "qps", int(qps))
	}
}

// startSplit splits the range at the key pick returns (on the split's own
// goroutine), unless it returns false (one key: nothing to split). by is
// the reason, for the log, with the attributes attrs.
func (n *Node) startSplit(by string, pick func() ([]byte, bool), attrs ...any) {
	meta := n.host.Group(1)
	if meta == nil {
		return
	}
	n.splitting.Store(true)
	n.goAsync(func(ctx context.Context) {
		defer n.splitting.Store(false)
		key, ok := pick()
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		res, err := meta.Propose(ctx, kv.Command{Op: kv.OpAllocate})
		if err == nil {
			err = n.Split(ctx, key, uint64(res.Revision))
		}
		if err != nil {
			n.logger.Warn("split by "+by, append([]any{"key", key, "err", err}, attrs...)...)
			return
		}
		n.logger.Info("range split by "+by, append([]any{"at", key, "new_group", res.Revision}, attrs...)...)
	})
}
