package raftnode

import (
	"context"
	"encoding/binary"

	"go.etcd.io/raft/v3"

	"github.com/distkv/distkv/internal/kv"
)

type readRequest struct {
	done chan error // buffered, 1
}

type readBatch struct {
	reqs   []*readRequest
	index  uint64 // the read index Raft confirmed
	issued uint64 // the tick at which it was handed to Raft
}

// readQueue batches linearizable reads. One ReadIndex request is in flight at
// a time: the reads that arrive meanwhile share the next one, so under load a
// round trip to the leader (and the leader's heartbeat round to confirm it
// still leads) serves many reads instead of a few, and a lone read still goes
// out at once. It is owned by the loop goroutine.
type readQueue struct {
	pending  []*readRequest        // not yet handed to Raft
	inflight map[uint64]*readBatch // handed to Raft, awaiting its ReadState
	waiting  []*readBatch          // confirmed; awaiting apply up to index
	next     uint64
	nonce    uint64 // random per Node: makes request contexts unique
	ticks    uint64 // loop ticks so far
}

func (q *readQueue) add(r *readRequest) { q.pending = append(q.pending, r) }

// issue hands the pending reads to Raft as one ReadIndex request, unless one
// is still awaiting Raft's answer.
func (q *readQueue) issue(rn *raft.RawNode) {
	if len(q.pending) == 0 || len(q.inflight) > 0 {
		return
	}
	if q.inflight == nil {
		q.inflight = map[uint64]*readBatch{}
	}
	q.next++
	q.inflight[q.next] = &readBatch{reqs: q.pending, issued: q.ticks}
	q.pending = nil
	// The context names the batch uniquely across nodes and restarts: the
	// leader keys pending reads by it, and an answer meant for another node,
	// or for this node before a restart, must never release these reads.
	var ctx [16]byte
	binary.BigEndian.PutUint64(ctx[:8], q.nonce)
	binary.BigEndian.PutUint64(ctx[8:], q.next)
	rn.ReadIndex(ctx[:])
}

// observe records the read indexes Raft confirmed.
func (q *readQueue) observe(states []raft.ReadState) {
	for _, rs := range states {
		if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx) != q.nonce {
			continue
		}
		id := binary.BigEndian.Uint64(rs.RequestCtx[8:])
		b, ok := q.inflight[id]
		if !ok {
			continue
		}
		delete(q.inflight, id)
		b.index = rs.Index
		q.waiting = append(q.waiting, b)
	}
}

// release answers the reads whose read index has been applied.
func (q *readQueue) release(applied uint64) {
	kept := q.waiting[:0]
	for _, b := range q.waiting {
		if b.index > applied {
			kept = append(kept, b)
			continue
		}
		for _, r := range b.reqs {
			r.done <- nil
		}
	}
	clear(q.waiting[len(kept):])
	q.waiting = kept
}

// reissueAll sends the reads still awaiting a ReadState again: after a leader
// change the old leader's answers will never come.
func (q *readQueue) reissueAll() {
	for id, b := range q.inflight {
		q.pending = append(q.pending, b.reqs...)
		delete(q.inflight, id)
	}
}

// tick counts a loop tick and sends again the reads that have waited longer
// than timeout ticks for Raft's answer: a ReadIndex request or its answer can
// be lost on the network without any change of leader.
func (q *readQueue) tick(timeout uint64) {
	q.ticks++
	for id, b := range q.inflight {
		if q.ticks-b.issued >= timeout {
			q.pending = append(q.pending, b.reqs...)
			delete(q.inflight, id)
		}
	}
}

func (q *readQueue) failAll(err error) {
	for _, r := range q.pending {
		r.done <- err
	}
	for _, b := range q.inflight {
		for _, r := range b.reqs {
			r.done <- err
		}
	}
	for _, b := range q.waiting {
		for _, r := range b.reqs {
			r.done <- err
		}
	}
	q.pending, q.inflight, q.waiting = nil, nil, nil
}

// ReadBarrier returns once this node's state machine reflects every write that
// was committed before ReadBarrier was called (Raft ReadIndex), so that a read
// of local state after it is linearizable.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if brokenLocalReads {
		return nil
	}
	r := &readRequest{done: make(chan error, 1)}
	select {
	case n.readc <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.donec:
		return n.stoppedErr()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return n.whyTimedOut(ctx.Err())
	case <-n.donec:
		select {
		case err := <-r.done:
			return err
		default:
			return n.stoppedErr()
		}
	}
}

// Get returns key's value. If linearizable, the read reflects every write
// acknowledged before the call; otherwise it is served from local state at
// once, except just after a restart, until the state machine has applied
// every entry known committed on disk (see waitReplayed).
func (n *Node) Get(ctx context.Context, key []byte, linearizable bool) (kv.KeyValue, bool, error) {
	if linearizable {
		if err := n.ReadBarrier(ctx); err != nil {
			return kv.KeyValue{}, false, err
		}
	} else if err := n.waitReplayed(ctx); err != nil {
		return kv.KeyValue{}, false, err
	}
	v, ok := n.kv.Get(key)
	return v, ok, nil
}

// Range returns up to limit pairs with start <= key < end, and whether more
// exist; see Get for linearizable.
func (n *Node) Range(ctx context.Context, start, end []byte, limit int, linearizable bool) ([]kv.KeyValue, bool, error) {
	if linearizable {
		if err := n.ReadBarrier(ctx); err != nil {
			return nil, false, err
		}
	} else if err := n.waitReplayed(ctx); err != nil {
		return nil, false, err
	}
	kvs, more := n.kv.Range(start, end, limit)
	return kvs, more, nil
}
