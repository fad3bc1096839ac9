package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// Cluster-wide revisions. With a Stamper, the leader of a group gives each
// write it proposes a revision handed out by the timestamp oracle (package
// tso, on the leader of the meta range) instead of letting the write take
// its log index. Every write's revision is then greater than that of every
// write acknowledged before it started, whatever groups they went through:
// the stamps of a write come from a fetch that began after the write reached
// its leader (writes that arrive while a fetch is under way wait for the
// next), and the oracle hands out increasing values in real time.
//
// The leader stamps in the order it proposes, and proposes in the order the
// stamps came, so revisions also grow along the log: one fetch at a time,
// its writes proposed in the order they were queued. Followers do not stamp:
// their writes reach the leader as Raft proposals (MsgProp) and wait there
// like the leader's own. A write whose stamps come after this node stopped
// leading is proposed unstamped, which forwards it to the new leader, which
// stamps it. If a stamp is ever not above the group's revision when applied
// (kv.StatusStaleStamp), nothing is applied and the request is told so.
//
// Commands that write no key (OpAllocate, OpMark, OpSplit) take no stamp:
// the oracle's own marks are OpMark entries of the meta range, which must
// not wait for the oracle.

// A Stamper hands out revisions that grow across the cluster.
type Stamper interface {
	// Stamps returns the first of n consecutive revisions, each above
	// floor, handed out after the call began.
	Stamps(ctx context.Context, n int, floor uint64) (first uint64, err error)
}

// stampTimeout bounds one fetch of stamps.
const stampTimeout = 5 * time.Second

// stampItem is a write waiting for its stamp: a proposal of this node, or
// the payload of one a follower forwarded.
type stampItem struct {
	p    *proposal
	data []byte
	from uint64 // the follower that forwarded data
	// parkedAt: when Raft first refused a follower's write (a leadership
	// transfer under way; see parkForwarded).
	parkedAt time.Time
}

// stampBatch is the answer to one fetch: stamps first, first+1, ... for
// items, in order, or err.
type stampBatch struct {
	items []stampItem
	first uint64
	err   error
}

// stampsHere reports whether this node stamps the writes it proposes: the
// group has a Stamper and this node leads it.
func (n *Node) stampsHere() bool {
	return n.cfg.Stamper != nil && n.leader.Load() == n.raftID
}

// takesStamp reports whether a payload's command writes keys, and so takes
// a stamp.
func takesStamp(data []byte) bool {
	_, _, enc, err := DecodePayload(data)
	if err != nil {
		return false
	}
	switch op, _ := kv.CommandOp(enc); op {
	case kv.OpPut, kv.OpDelete, kv.OpTxn, kv.OpExpire, kv.OpAuth:
		return true
	}
	return false
}

// queueStamp adds it to the writes waiting for stamps and starts a fetch if
// none is under way.
func (n *Node) queueStamp(it stampItem) {
	n.stampq = append(n.stampq, it)
	n.fetchStamps()
}

// queueForwarded queues the writes among a follower's proposed entries for
// stamps and returns the other entries.
func (n *Node) queueForwarded(from uint64, ents []raftpb.Entry) []raftpb.Entry {
	rest := ents[:0:0]
	for _, e := range ents {
		if e.Type == raftpb.EntryNormal && takesStamp(e.Data) {
			n.stampq = append(n.stampq, stampItem{data: bytes.Clone(e.Data), from: from})
			continue
		}
		rest = append(rest, e)
	}
	n.fetchStamps()
	return rest
}

// fetchStamps starts a fetch for the queued writes unless one is under way.
// The stamps are above the group's revision and its last log index, so
// that they are above every revision the group's log gave, stamped or not.
func (n *Node) fetchStamps() {
	if n.stamping || len(n.stampq) == 0 {
		return
	}
	items := n.stampq
	n.stampq = nil
	n.stamping = true
	last, _ := n.storage.LastIndex()
	floor := max(uint64(max(n.kv.Revision(), 0)), last)
	stamper := n.cfg.Stamper
	n.goAsync(func(ctx context.Context) {
		fctx, cancel := context.WithTimeout(ctx, stampTimeout)
		first, err := stamper.Stamps(fctx, len(items), floor)
		cancel()
		if err == nil && first <= floor {
			err = fmt.Errorf("stamps from %d, not above %d", first, floor)
		}
		select {
		case n.stampedc <- stampBatch{items: items, first: first, err: err}:
		case <-ctx.Done():
		}
	})
}

// proposeStamped proposes the writes of a fetch, stamped, in order; if this
// node no longer leads, unstamped (Raft forwards them to the leader, which
// stamps them). A failed fetch fails this node's writes, which were not
// proposed; a follower's are dropped, as Raft drops proposals it cannot
// take (the follower's request times out or is proposed again). A
// follower's write that Raft refuses is kept (parkForwarded).
func (n *Node) proposeStamped(b stampBatch) {
	n.stamping = false
	if b.err != nil {
		n.logger.Debug("no revisions for writes", "writes", len(b.items), "err", b.err)
	}
	leads := n.stampsHere()
	for i, it := range b.items {
		stamped := b.err == nil && leads
		if it.p == nil {
			data := it.data
			if stamped {
				data = stampPayload(data, b.first+uint64(i))
			} else if b.err != nil && leads {
				continue
			}
			switch err := n.rn.Propose(data); {
			case err == nil && stamped:
				n.noteForwarder(it.from) // its client waits for the commit
			case errors.Is(err, raft.ErrProposalDropped):
				n.parkForwarded(it)
			}
			continue
		}
		n.mu.Lock()
		_, waiting := n.waiters[it.p.id]
		n.mu.Unlock()
		switch {
		case !waiting:
		case stamped:
			n.proposeData(it.p, stampPayload(it.p.data, b.first+uint64(i)))
		case b.err != nil && leads:
			n.deliver(it.p.id, proposalResult{err: notMadeError{fmt.Errorf("no revision for the write: %w", b.err)}})
		default:
			n.proposeData(it.p, it.p.data)
		}
	}
	n.fetchStamps()
}

// parkForwarded keeps a follower's write that Raft refused: this leader is
// transferring its leadership, and Raft takes no proposal until the
// transfer ends; or this node has stopped leading while the write waited
// for its stamps and knows no leader yet (a transfer ends with the old
// leader a follower of no one until the new leader's first message).
// Dropped, the write was lost without a word and the follower's client
// waited out its whole deadline ("did not answer in time"); placement
// transfers leadership often. It is proposed again, unstamped (stamps must
// follow the log's order), once a leader is known and no transfer is under
// way (proposeParkedForwarded), for up to leaderWait. Raft refused it, so
// it is in no log: proposed again, it is proposed once.
func (n *Node) parkForwarded(it stampItem) {
	if it.parkedAt.IsZero() {
		it.parkedAt = time.Now()
	}
	n.parkedFwd = append(n.parkedFwd, it)
}

// parkRefused parks the writes of a follower's proposal that Raft refused as
// it came (parkForwarded): the follower forwarded it to the leader it knew,
// and this node has since stopped leading and follows no one yet, or leads
// but is transferring its leadership and the entries take no stamp.
// Changes of membership are left out: proposed again they would be normal
// entries, and their proposer waits for them itself.
func (n *Node) parkRefused(from uint64, ents []raftpb.Entry) {
	for _, e := range ents {
		if e.Type == raftpb.EntryNormal {
			n.parkForwarded(stampItem{data: bytes.Clone(e.Data), from: from})
		}
	}
}

// proposeParkedForwarded proposes the parked writes of followers again once
// no transfer is under way: stamped if this node still leads, else
// forwarded to the leader. Called on the loop.
func (n *Node) proposeParkedForwarded() {
	if n.rn.BasicStatus().LeadTransferee != raft.None {
		return
	}
	parked := n.parkedFwd
	n.parkedFwd = nil
	wait := n.leaderWait()
	for _, it := range parked {
		switch {
		case time.Since(it.parkedAt) >= wait:
			// Its client has given up: Raft drops proposals it cannot take.
		case n.stampsHere() && takesStamp(it.data):
			n.queueStamp(it)
		default:
			if err := n.rn.Propose(it.data); errors.Is(err, raft.ErrProposalDropped) {
				n.parkForwarded(it)
			}
		}
	}
}
