package raftnode

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/lattrace"
	"github.com/distkv/distkv/internal/wal"
)

// applyAll applies the committed entries of MsgStorageApply messages and
// steps their responses. Raft hands out only entries that are durable here;
// before they are applied, the applied mark records the last of them, so that
// a restart replays at least as far as this node applied before (stale reads
// never go back in time; see appliedmark.go).
func (n *Node) applyAll(applies []raftpb.Message) error {
	n.held = append(n.held, applies...)
	return n.applyHeld()
}

// applyHeld applies the held messages, unless the loop is stalled on a full
// disk (they are applied once the stall is over).
func (n *Node) applyHeld() error {
	if len(n.held) == 0 || n.stall != nil {
		return nil
	}
	if err := n.advanceMark(); errors.Is(err, wal.ErrNoSpace) {
		// Not on a file system that overwrites in place, but one may not:
		// like an append that finds the disk full, wait for space.
		n.startStall(&pendingAppend{markOnly: true}, err)
		return nil
	} else if err != nil {
		return err
	}
	for _, m := range n.held {
		if err := n.apply(m.Entries); err != nil {
			return err
		}
		for _, r := range m.Responses {
			n.step(r)
		}
	}
	clear(n.held)
	n.held = n.held[:0]
	n.reads.release(n.applied.Load())
	n.noteReplayed()
	n.maybeSnapshot()
	return nil
}

// advanceMark writes the applied mark for the held entries, before they are
// applied.
func (n *Node) advanceMark() error {
	index := lastHeld(n.held)
	n.checkMarkDurable(index)
	return n.mark.advance(index)
}

// lastHeld returns the index of the last entry of held, 0 if none.
func lastHeld(held []raftpb.Message) uint64 {
	last := uint64(0)
	for _, m := range held {
		if k := len(m.Entries); k > 0 {
			last = max(last, m.Entries[k-1].Index)
		}
	}
	return last
}

func (n *Node) apply(ents []raftpb.Entry) error {
	for i := range ents {
		e := &ents[i]
		switch e.Type {
		case raftpb.EntryNormal:
			if len(e.Data) == 0 {
				break // a new leader's empty entry
			}
			id, stamp, enc, err := DecodePayload(e.Data)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			cmd, err := kv.UnmarshalCommand(enc)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			if cmd.Op == kv.OpSplit {
				err := n.applySplit(e.Index, cmd)
				if err != nil && !errors.Is(err, ErrWrongRange) {
					return err
				}
				n.deliver(id, proposalResult{err: err})
				break
			}
			if b := n.Bounds(); !b.holds(&cmd) {
				// Not applied: the keys are another group's now.
				n.deliver(id, proposalResult{err: n.wrongRange(b)})
				break
			}
			res, err := n.kv.ApplyStamped(e.Index, stamp, cmd)
			lattrace.Mark(lattrace.Applied, e.Index, id)
			if err != nil {
				return fmt.Errorf("apply entry %d: %w", e.Index, err)
			}
			if res.Status == kv.StatusStaleStamp {
				// Not applied (revisions would have gone back): the request
				// may be sent again.
				n.deliver(id, proposalResult{err: notMadeError{kv.ErrStaleStamp}})
				break
			}
			n.deliver(id, proposalResult{res: res})
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("entry %d: decode conf change: %w", e.Index, err)
			}
			if err := n.checkConfChangeClusterID(e.Index, cc.Context); err != nil {
				return err
			}
			if err := appliesTo(n.confState, e); err != nil {
				return n.unappliableChange(e, err)
			}
			n.confState = *n.rn.ApplyConfChange(cc)
			n.inConfig.Store(inConfState(n.confState, n.raftID))
			n.endLease()
			n.applyMemberChange(e.Index, cc.Type, cc.NodeID, cc.Context)
			n.deliver(cc.ID, proposalResult{})
		case raftpb.EntryConfChangeV2:
			var cc raftpb.ConfChangeV2
			if err := cc.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("entry %d: decode conf change: %w", e.Index, err)
			}
			if err := appliesTo(n.confState, e); err != nil {
				return n.unappliableChange(e, err)
			}
			n.confState = *n.rn.ApplyConfChange(cc)
			n.inConfig.Store(inConfState(n.confState, n.raftID))
			n.endLease()
			for _, c := range cc.Changes {
				n.applyMemberChange(e.Index, c.Type, c.NodeID, cc.Context)
			}
		}
		n.applied.Store(e.Index)
	}
	return nil
}

// noteReplayed closes replayed once the state machine has caught up with the
// commit index found on disk at Open.
func (n *Node) noteReplayed() {
	if !n.replayedSet && n.applied.Load() >= n.replayTo {
		n.replayedSet = true
		close(n.replayed)
	}
}

// waitReplayed returns once the state machine has applied every entry known
// committed when the node opened, so that a stale read after a restart never
// shows an older state than the node could have shown before it.
func (n *Node) waitReplayed(ctx context.Context) error {
	select {
	case <-n.replayed:
		return nil
	default:
	}
	select {
	case <-n.replayed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (this node is still applying its log after a restart)", ctx.Err())
	case <-n.donec:
		return n.stoppedErr()
	}
}

// unappliableChange is the error for a committed membership change that Raft
// would panic applying (removing the last voter, say): the node stops, saying
// where the log holds it.
func (n *Node) unappliableChange(e *raftpb.Entry, err error) error {
	return fmt.Errorf("entry %d: membership change cannot apply: %w (the log in %s holds it)", e.Index, err, n.cfg.walDir())
}
