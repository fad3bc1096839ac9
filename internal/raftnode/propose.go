package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/lattrace"
)

type proposal struct {
	id   uint64
	data []byte
	done chan proposalResult // buffered, 1
	// idempotent: the command carries a client request id, so the state
	// machine applies it at most once however often it is in the log (see
	// kv.Command.Request). Such a proposal is proposed again after a leader
	// change (reproposeAfterLeaderChange).
	idempotent bool
	// handed: the proposal may have reached Raft's log (this node's or,
	// forwarded, the leader's). Until then a request that gives up knows the
	// write was not made. Guarded by Node.mu.
	handed bool
	// parkedAt is when Raft first dropped it (see pruneParked). Owned by
	// the loop.
	parkedAt time.Time
}

type proposalResult struct {
	res kv.Result
	err error
}

// Propose replicates cmd and returns its result once it is committed, durable
// and applied.
//
// A write whose stamp turned out not to be above the group's revision when
// it was applied (kv.StatusStaleStamp: a read at a revision closed that
// revision meanwhile, see readyAt) applied nothing; it is proposed
// again, to be stamped anew, until ctx ends.
func (n *Node) Propose(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	for {
		res, err := n.proposeAttempt(ctx, cmd)
		if errors.Is(err, kv.ErrStaleStamp) && ctx.Err() == nil {
			continue
		}
		return res, err
	}
}

// proposeAttempt is one attempt of Propose.
func (n *Node) proposeAttempt(ctx context.Context, cmd kv.Command) (_ kv.Result, err error) {
	// A command that every replica would fail to decode must never reach the
	// log: it would stop them all.
	if err := cmd.Validate(); err != nil {
		return kv.Result{}, err
	}
	defer n.metrics.noteProposal(&err)
	if n.diskFull.Load() {
		return kv.Result{}, ErrNoSpace
	}
	id := n.nextID.Add(1) &^ payloadStamped
	enc := cmd.Marshal()
	data := make([]byte, 8, 8+len(enc))
	binary.BigEndian.PutUint64(data, id)
	data = append(data, enc...)
	p := &proposal{id: id, data: data, done: make(chan proposalResult, 1), idempotent: !cmd.Request.IsZero()}
	if lattrace.Enabled() {
		lattrace.Mark(lattrace.Propose, id, 0)
		defer lattrace.Mark(lattrace.Answered, id, 0)
	}
	select {
	case n.propc <- p:
	case <-ctx.Done():
		return kv.Result{}, ctx.Err()
	case <-n.donec:
		return kv.Result{}, n.stoppedErr()
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.waiters, id)
		handed := p.handed
		n.mu.Unlock()
		select {
		case r := <-p.done:
			return r.res, r.err
		default:
		}
		if !handed {
			// Parked, and now it never will be proposed (the loop proposes
			// only what is still in waiters).
			return kv.Result{}, n.whyNotProposed(ctx.Err())
		}
		return kv.Result{}, n.whyTimedOut(ctx.Err())
	case <-n.donec:
		// The loop may have answered just before it exited.
		select {
		case r := <-p.done:
			return r.res, r.err
		default:
			return kv.Result{}, n.stoppedErr()
		}
	}
}

// whyTimedOut wraps a context error with what this node knows of why the
// request could not be served in time.
func (n *Node) whyTimedOut(err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if n.diskFull.Load() {
		// A write already handed to Raft may still commit once space is
		// freed: its outcome is unknown, so this is a timeout, not ErrNoSpace.
		return fmt.Errorf("this node's disk is full (no space left on device) and its log is stalled until space is freed: %w", err)
	}
	lead := n.leader.Load()
	switch {
	case lead == raft.None:
		return fmt.Errorf("no leader: the cluster has no quorum or is electing one: %w", err)
	case lead == n.raftID:
		return fmt.Errorf("%s: %w", leaderTimeoutReason(n.Status().Members), err)
	}
	return fmt.Errorf("leader %s did not answer in time: %w", n.memberName(lead), err)
}

// leaderTimeoutReason says why a leader may not have committed a write in
// time, from the voters it hears from (itself included).
func leaderTimeoutReason(members []MemberStatus) string {
	voters, reachable := 0, 0
	for _, m := range members {
		if m.Learner {
			continue
		}
		voters++
		if m.Reachable {
			reachable++
		}
	}
	if reachable > voters/2 {
		return fmt.Sprintf("this node leads and reaches %d of %d voters, a quorum, but the write was not committed in time (slow disks or network, or a leader that has just changed?)", reachable, voters)
	}
	return fmt.Sprintf("this node leads but reaches only %d of %d voters: no quorum", reachable, voters)
}

// whyNotProposed explains a write that gave up while parked: Raft would not
// take it for as long as the request waited.
func (n *Node) whyNotProposed(err error) error {
	if n.leader.Load() == raft.None {
		return notMadeError{fmt.Errorf("%w (none known for as long as the request could wait: %v)", ErrNoLeader, err)}
	}
	return notMadeError{fmt.Errorf("leader %s did not take the write while a leadership transfer was under way (%v)", n.memberName(n.leader.Load()), err)}
}

// proposeQueued proposes p and the proposals queued behind it, up to
// MaxProposalBatch in all, before the loop handles Raft's next Ready.
func (n *Node) proposeQueued(p *proposal) {
	n.propose(p)
	for i := 1; i < n.cfg.MaxProposalBatch; i++ {
		select {
		case p := <-n.propc:
			n.propose(p)
			continue
		default:
		}
		break
	}
}

func (n *Node) propose(p *proposal) {
	n.mu.Lock()
	n.waiters[p.id] = p
	n.mu.Unlock()
	lattrace.Mark(lattrace.Proposed, p.id, 0)
	n.proposeOnce(p)
}

// proposeOnce hands p to Raft. A proposal Raft drops while a leader is known
// (a leadership transfer under way) is parked and retried; its request's
// deadline and leaderWait bound the wait. With no leader known it is refused
// at once.
func (n *Node) proposeOnce(p *proposal) {
	if n.stampsHere() && takesStamp(p.data) {
		n.queueStamp(stampItem{p: p})
		return
	}
	n.proposeData(p, p.data)
}

// proposeData is proposeOnce with data, p's payload or p's payload stamped.
func (n *Node) proposeData(p *proposal, data []byte) {
	n.mu.Lock()
	p.handed = true
	n.mu.Unlock()
	err := n.rn.Propose(data)
	if err == nil {
		return
	}
	if errors.Is(err, raft.ErrProposalDropped) && n.leader.Load() == raft.None {
		// No leader known: refuse at once (certainly not made), so that the
		// client tries another node. Waiting here for an election cost a
		// client of a node cut off from the majority its whole wait, on
		// every request: a soak with a fixed seed made 64,484 operations in
		// 3 minutes with waits of up to 3 s, 116,758 without.
		n.deliver(p.id, proposalResult{err: notMadeError{ErrNoLeader}})
		return
	}
	if errors.Is(err, raft.ErrProposalDropped) {
		n.mu.Lock()
		p.handed = false
		n.mu.Unlock()
		if p.parkedAt.IsZero() {
			p.parkedAt = time.Now()
		}
		n.parked = append(n.parked, p)
		return
	}
	n.deliver(p.id, proposalResult{err: err})
}

// reproposeAfterLeaderChange proposes again, to the new leader, the waiting
// proposals that carry a client request id. A follower forwards a proposal
// to the leader it knows, and Raft drops it silently if that leader is gone:
// the request would wait out its whole deadline and answer "may still have
// been applied". Proposed again, it commits under the new leader. Only
// requests with an id can be: if the first proposal reached the old leader's
// log and commits too, the state machine applies the second as a retry of
// the first, changing nothing and answering the same.
func (n *Node) reproposeAfterLeaderChange() {
	n.mu.Lock()
	var again []*proposal
	for _, p := range n.waiters {
		if p.idempotent && p.handed {
			again = append(again, p)
		}
	}
	n.mu.Unlock()
	for _, p := range again {
		n.proposeOnce(p)
	}
	if len(again) > 0 {
		n.logger.Debug("proposed again after a leader change", "requests", len(again), "leader", n.memberName(n.leader.Load()))
	}
}

// proposeParked proposes again the parked proposals whose requests still wait.
func (n *Node) proposeParked() {
	parked := n.parked
	n.parked = nil
	for i, p := range parked {
		parked[i] = nil
		n.mu.Lock()
		_, waiting := n.waiters[p.id]
		n.mu.Unlock()
		if waiting {
			n.proposeOnce(p)
		}
	}
}

// pruneParked forgets parked proposals whose requests have given up, so that
// a long spell without a leader does not hold every refused write.
//
// A proposal parked for longer than leaderWait is refused: an election takes
// one to two election timeouts, so a node that has known no leader for longer
// is most likely cut off from the majority, and its client had better try
// another node (as the distkv CLI does on this answer) than wait out its
// whole deadline.
func (n *Node) pruneParked() {
	kept := n.parked[:0]
	var expired []*proposal
	wait := n.leaderWait()
	n.mu.Lock()
	for _, p := range n.parked {
		if _, waiting := n.waiters[p.id]; !waiting {
			continue
		}
		if time.Since(p.parkedAt) >= wait {
			expired = append(expired, p)
			continue
		}
		kept = append(kept, p)
	}
	n.mu.Unlock()
	clear(n.parked[len(kept):])
	n.parked = kept
	for _, p := range expired {
		n.deliver(p.id, proposalResult{err: notMadeError{fmt.Errorf("%w (none for %v)", ErrNoLeader, wait)}})
	}
}

// leaderWait is how long a write waits for a leader to be known: three
// election timeouts.
func (n *Node) leaderWait() time.Duration {
	return 3 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}

// failParked answers every parked proposal with err: they never reached the
// log, so err is definite.
func (n *Node) failParked(err error) {
	for _, p := range n.parked {
		n.deliver(p.id, proposalResult{err: err})
	}
	n.parked = nil
}

func (n *Node) deliver(id uint64, r proposalResult) {
	n.mu.Lock()
	p, ok := n.waiters[id]
	delete(n.waiters, id)
	n.mu.Unlock()
	if ok {
		p.done <- r
	}
}

// hasWaiters reports whether requests wait for proposals of this node. Called
// by the appender.
func (n *Node) hasWaiters() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiters) > 0
}
