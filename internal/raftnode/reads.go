package raftnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// readRound is one ReadIndex round. Every read that joined it before the
// loop handed it to Raft is answered once the read index Raft confirmed for
// it is applied: that index is at least the commit index when each of those
// reads arrived.
type readRound struct {
	done   chan struct{} // closed when answered; err is set before
	err    error
	index  uint64 // the read index Raft confirmed
	issued uint64 // the tick at which it was last handed to Raft
	// remote are followers' ReadIndex requests that joined the round on the
	// leader (see joinRemote). Owned by the loop.
	remote []remoteRead
}

// remoteRead is a follower's ReadIndex request (a MsgReadIndex).
type remoteRead struct {
	from uint64
	ctx  []byte
}

func (r *readRound) answer(err error) {
	r.err = err
	close(r.done)
}

// readQueue batches linearizable reads. Readers join the open round (join);
// the first to join wakes the loop, which closes the round to newcomers and
// hands it to Raft as one ReadIndex request, unless one is still awaiting
// Raft's answer: the reads that arrive meanwhile share the next round. So
// under load a round trip to the leader (and the leader's heartbeat round to
// confirm it still leads) serves many reads, a read costs the loop nothing
// of its own (no message to the loop, no channel of its own), and a lone read
// still goes out at once. Apart from join and the open round, it is owned by
// the loop goroutine.
type readQueue struct {
	mu   sync.Mutex
	open *readRound // the round new reads join; nil until one does

	wake chan struct{} // cap 1: a read opened a round

	pending  []*readRound            // closed to newcomers, not yet handed to Raft
	inflight map[uint64][]*readRound // handed to Raft, awaiting its ReadState
	waiting  []*readRound            // confirmed; awaiting apply up to index
	next     uint64
	nonce    uint64 // random per Node: makes request contexts unique
	ticks    uint64 // loop ticks so far

	// issued records, per request handed to Raft as the leader, when and in
	// which term (see Node.extendLease); issuedAsLeader and issueTerm say
	// what the node is when it calls issue.
	issued         map[uint64]leaderIssue
	issuedAsLeader bool
	issueTerm      uint64
}

// leaderIssue is when, and in which term, a leader handed a round to Raft.
type leaderIssue struct {
	at   time.Time
	term uint64
}

// idle reports whether no read waits: none open, pending, in flight or
// waiting for its index to apply.
func (q *readQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.open == nil && len(q.pending) == 0 && len(q.inflight) == 0 && len(q.waiting) == 0
}

// join returns the round a read arriving now is answered by.
func (q *readQueue) join() *readRound {
	q.mu.Lock()
	r := q.open
	if r == nil {
		r = &readRound{done: make(chan struct{})}
		q.open = r
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
		return r
	}
	q.mu.Unlock()
	return r
}

// joinRemote adds a follower's ReadIndex request (from, ctx), arriving now at
// this node, the leader, to the open round, and returns whether the round was
// opened by it. Called on the loop. The follower is answered with the round's
// read index as soon as Raft confirms it (observe), so that one heartbeat
// round of the leader serves its own reads and every follower's request that
// arrived before the round was handed to Raft, instead of one heartbeat round
// per request. Joining only a round not yet handed to Raft keeps the read
// linearizable: its quorum check and commit index are taken after the
// request arrived.
func (q *readQueue) joinRemote(from uint64, ctx []byte) {
	q.mu.Lock()
	r := q.open
	if r == nil {
		r = &readRound{done: make(chan struct{})}
		q.open = r
	}
	r.remote = append(r.remote, remoteRead{from: from, ctx: ctx})
	q.mu.Unlock()
}

// takeOpen closes the open round to newcomers and returns it (nil if no read
// opened one).
func (q *readQueue) takeOpen() *readRound {
	q.mu.Lock()
	r := q.open
	q.open = nil
	q.mu.Unlock()
	return r
}

// issue hands the pending rounds and the open one to Raft as one ReadIndex
// request, unless one is still awaiting Raft's answer.
func (q *readQueue) issue(rn *raft.RawNode, now time.Time) {
	if len(q.inflight) > 0 {
		return
	}
	if r := q.takeOpen(); r != nil {
		q.pending = append(q.pending, r)
	}
	if len(q.pending) == 0 {
		return
	}
	if q.inflight == nil {
		q.inflight = map[uint64][]*readRound{}
	}
	q.next++
	for _, r := range q.pending {
		r.issued = q.ticks
	}
	q.inflight[q.next] = q.pending
	q.pending = nil
	if q.issuedAsLeader {
		if q.issued == nil {
			q.issued = map[uint64]leaderIssue{}
		}
		q.issued[q.next] = leaderIssue{at: now, term: q.issueTerm}
	}
	// The context names the request uniquely across nodes and restarts:
	// the leader keys pending reads by it, and an answer meant for another
	// node, or for this node before a restart, must never release these
	// reads.
	var ctx [16]byte
	binary.BigEndian.PutUint64(ctx[:8], q.nonce)
	binary.BigEndian.PutUint64(ctx[8:], q.next)
	rn.ReadIndex(ctx[:])
}

// observe records the read indexes Raft confirmed, raised to floor (see
// Node.noticed), and returns the answers to the followers' requests that
// joined the rounds (MsgReadIndexResp from self at term), and the latest of
// the confirmed rounds that were handed to Raft as the leader (zero if none).
func (q *readQueue) observe(states []raft.ReadState, self, term, floor uint64) (out []raftpb.Message, confirmed leaderIssue) {
	for _, rs := range states {
		if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx) != q.nonce {
			continue
		}
		id := binary.BigEndian.Uint64(rs.RequestCtx[8:])
		rounds, ok := q.inflight[id]
		if !ok {
			continue
		}
		delete(q.inflight, id)
		if li, ok := q.issued[id]; ok {
			delete(q.issued, id)
			if li.at.After(confirmed.at) {
				confirmed = li
			}
		}
		index := max(rs.Index, floor)
		for _, r := range rounds {
			r.index = index
			for _, rr := range r.remote {
				out = append(out, raftpb.Message{Type: raftpb.MsgReadIndexResp, To: rr.from, From: self, Term: term,
					Index: index, Entries: []raftpb.Entry{{Data: rr.ctx}}})
			}
			r.remote = nil
		}
		q.waiting = append(q.waiting, rounds...)
	}
	return out, confirmed
}

// answerNow gives the open round and the pending ones read index index at
// once (the leader's lease holds; see Node.issueReads) and returns the
// answers to the followers' requests that joined them.
func (q *readQueue) answerNow(index, self, term uint64) []raftpb.Message {
	if r := q.takeOpen(); r != nil {
		q.pending = append(q.pending, r)
	}
	var out []raftpb.Message
	for _, r := range q.pending {
		r.index = index
		for _, rr := range r.remote {
			out = append(out, raftpb.Message{Type: raftpb.MsgReadIndexResp, To: rr.from, From: self, Term: term,
				Index: index, Entries: []raftpb.Entry{{Data: rr.ctx}}})
		}
		r.remote = nil
	}
	q.waiting = append(q.waiting, q.pending...)
	clear(q.pending)
	q.pending = q.pending[:0]
	return out
}

// renew hands Raft a read round of no reads, unless one is in flight, so
// that its confirmation extends the lease.
func (q *readQueue) renew(rn *raft.RawNode, now time.Time) {
	if len(q.inflight) > 0 {
		return
	}
	q.pending = append(q.pending, &readRound{done: make(chan struct{})})
	q.issue(rn, now)
}

// release answers the rounds whose read index has been applied.
func (q *readQueue) release(applied uint64) {
	kept := q.waiting[:0]
	for _, r := range q.waiting {
		if r.index > applied {
			kept = append(kept, r)
			continue
		}
		r.answer(nil)
	}
	clear(q.waiting[len(kept):])
	q.waiting = kept
}

// reissueAll hands the rounds still awaiting a ReadState to Raft again:
// after a leader change the old leader's answers will never come.
func (q *readQueue) reissueAll() {
	for id, rounds := range q.inflight {
		q.pending = append(q.pending, rounds...)
		delete(q.inflight, id)
	}
	clear(q.issued)
}

// tick counts a loop tick and sends again the rounds that have waited longer
// than timeout ticks for Raft's answer: a ReadIndex request or its answer can
// be lost on the network without any change of leader.
func (q *readQueue) tick(timeout uint64) {
	q.ticks++
	for id, rounds := range q.inflight {
		if q.ticks-rounds[0].issued >= timeout {
			q.pending = append(q.pending, rounds...)
			delete(q.inflight, id)
			delete(q.issued, id)
		}
	}
}

// failAll answers every round, the open one included, with err.
func (q *readQueue) failAll(err error) {
	if r := q.takeOpen(); r != nil {
		r.answer(err)
	}
	for _, r := range q.pending {
		r.answer(err)
	}
	for _, rounds := range q.inflight {
		for _, r := range rounds {
			r.answer(err)
		}
	}
	for _, r := range q.waiting {
		r.answer(err)
	}
	q.pending, q.inflight, q.waiting = nil, nil, nil
	clear(q.issued)
}

// ReadBarrier returns once this node's state machine reflects every write that
// was committed before ReadBarrier was called (Raft ReadIndex), so that a read
// of local state after it is linearizable.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if n.hooked(hookLocalReads) {
		return nil
	}
	select {
	case <-n.donec:
		return n.stoppedErr()
	default:
	}
	r := n.reads.join()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return n.whyTimedOut(ctx.Err())
	case <-n.donec:
		select {
		case <-r.done:
			return r.err
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
	// A split moves keys out of the state after it shrinks the bounds
	// (applySplit): bounds unchanged across the read, and holding key, mean
	// the state read still held it.
	b := n.bounds.Load()
	if linearizable {
		if err := n.lockedAt(key, nil, math.MaxInt64); err != nil {
			return kv.KeyValue{}, false, err
		}
	}
	v, ok := n.kv.Get(key)
	if n.bounds.Load() != b || !b.Contains(key) {
		return kv.KeyValue{}, false, n.wrongRange(*n.bounds.Load())
	}
	n.noteRead(key)
	return v, ok, nil
}

// Versions returns the retained versions of key's current life, oldest
// first (kv.Store.Versions); nil if the key does not exist. See Get for
// linearizable.
func (n *Node) Versions(ctx context.Context, key []byte, linearizable bool) ([]kv.KeyValue, error) {
	if linearizable {
		if err := n.ReadBarrier(ctx); err != nil {
			return nil, err
		}
	} else if err := n.waitReplayed(ctx); err != nil {
		return nil, err
	}
	b := n.bounds.Load()
	if linearizable {
		if err := n.lockedAt(key, nil, math.MaxInt64); err != nil {
			return nil, err
		}
	}
	vs := n.kv.Versions(key)
	if n.bounds.Load() != b || !b.Contains(key) {
		return nil, n.wrongRange(*n.bounds.Load())
	}
	n.noteRead(key)
	return vs, nil
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
	b := n.bounds.Load()
	if linearizable {
		if err := n.lockedAt(start, rangeEnd(start, end), math.MaxInt64); err != nil {
			return nil, false, err
		}
	}
	kvs, more := n.kv.Range(start, end, limit)
	if n.bounds.Load() != b || !b.Contains(start) || (len(b.End) > 0 && (len(end) == 0 || bytes.Compare(end, b.End) > 0)) {
		return nil, false, n.wrongRange(*n.bounds.Load())
	}
	n.noteRead(start)
	return kvs, more, nil
}

// readIndexAtOnce returns the read index (and this leader's term) with which a
// follower's ReadIndex request, from from and arriving now, can be answered
// without a heartbeat round, or false if it cannot.
//
// A read index is safe if, after the reads it answers arrived, a quorum of
// voters was not yet in any term above the leader's, and the leader still
// leads: then no other leader can have been elected before those reads
// arrived, so every write acknowledged before them was committed in this
// leader's term or earlier, and its commit index covers them once it has
// committed an entry of its own term (Raft's leader completeness). The
// heartbeat round Raft's ReadIndex runs finds such a quorum. But the
// follower's request is itself evidence of one member: the follower sent it
// after its reads arrived, to this node as the leader of the follower's term
// at that moment, so the follower was then in no term above this leader's
// current one. With this leader, that is a quorum of a configuration of at
// most three voters (two of three, or both of two): a leader of a later term
// would need the vote of one of the two, but this node still leads, and the
// follower had voted in no later term when it sent the request. So there the
// answer is this leader's commit index, at once; elsewhere (more voters, a
// joint configuration, a learner, no entry of this term committed yet) the
// request joins the next heartbeat round.
//
// Called on the loop.
func (n *Node) readIndexAtOnce(from uint64) (index, term uint64, ok bool) {
	st := n.rn.BasicStatus()
	index, ok = n.pairReadIndex(&st, from)
	return index, st.Term, ok
}

// pairReadIndex returns this node's read index if, as the leader in st, it
// and voter with make a quorum (at most three voters, not joint) and it has
// committed an entry of its term, or false: the conditions shared by a
// follower's request answered at once and the leader's lease. The index is
// the commit index, raised to the durable-notice floor (Node.noticed).
func (n *Node) pairReadIndex(st *raft.BasicStatus, with uint64) (uint64, bool) {
	if st.RaftState != raft.StateLeader {
		return 0, false
	}
	cs := &n.confState
	if len(cs.VotersOutgoing) > 0 || len(cs.Voters) > 3 ||
		!slices.Contains(cs.Voters, n.raftID) || !slices.Contains(cs.Voters, with) {
		return 0, false
	}
	if n.termStartTerm != st.Term || st.Commit < n.termStart {
		return 0, false // no entry of this term committed yet
	}
	return max(st.Commit, n.noticed), true
}

// answerReads takes the read indexes a Ready confirmed: it answers the
// followers' requests that joined those rounds, extends the lease, hands Raft
// the next round and answers the reads whose index is applied already.
func (n *Node) answerReads(states []raft.ReadState) {
	answers, confirmed := n.reads.observe(states, n.raftID, n.term.Load(), n.readFloor())
	n.send(n.withDeferred(answers))
	n.extendLease(confirmed.at, confirmed.term)
	// The batch just answered may have held back the next one.
	n.issueReads()
	// Reads whose index is applied already.
	n.reads.release(n.applied.Load())
}

// readFloor is the least read index this node may answer a read round with:
// the durable-notice floor (Node.noticed) and, as the leader, the first entry
// of its term. Raft answers the read rounds of a lone voter at once with its
// commit index, even before it has committed an entry of its term; after a
// restart that lost the hard states recording the last commits (written but
// not yet synced, as in a power failure) that index is behind writes already
// acknowledged, which the term's first entry, committed once durable here,
// covers. (With more voters Raft holds the rounds until then itself.) Called
// on the loop.
func (n *Node) readFloor() uint64 {
	floor := n.noticed
	if n.leader.Load() == n.raftID && n.termStartTerm == n.term.Load() {
		floor = max(floor, n.termStart)
	}
	return floor
}

// noteTermStart records the first entry of ents this node appends as the
// leader of its current term (see readIndexAtOnce). Called on the loop with
// each append handed out.
func (n *Node) noteTermStart(ents []raftpb.Entry) {
	term := n.term.Load()
	if n.termStartTerm == term || n.leader.Load() != n.raftID {
		return
	}
	for _, e := range ents {
		if e.Term == term {
			n.termStart, n.termStartTerm = e.Index, term
			return
		}
	}
}

// lockedAt returns a *kv.LockedError if a transaction's write lock on key
// (end nil) or on a key of [key, end) (end empty but not nil: to the end)
// may hide a write that a read at revision rev must see (kv.Store.LockOn):
// the read must wait for it, or end its transaction (package main). Called
// before the read: a lock taken after it hides only writes above rev.
func (n *Node) lockedAt(key, end []byte, rev int64) error {
	var l kv.Intent
	var ok bool
	if end == nil {
		l, ok = n.kv.LockOn(key, rev)
	} else {
		l, ok = n.kv.LockIn(key, end, rev)
	}
	if ok {
		return &kv.LockedError{Lock: l}
	}
	return nil
}

// rangeEnd returns end as lockedAt takes it for the keys start <= key < end.
func rangeEnd(start, end []byte) []byte {
	if end == nil {
		return []byte{}
	}
	return end
}
