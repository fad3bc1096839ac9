package raftnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// ErrUnknownMember is returned for a membership change naming no member.
var ErrUnknownMember = errors.New("no such member")

// ErrMemberExists is returned when adding a member that is already one.
var ErrMemberExists = errors.New("member already exists")

// ErrChangeRefused is returned for a membership change that cannot apply to
// the current configuration, such as removing its last voter: Raft would
// accept it and then be unable to apply it.
var ErrChangeRefused = errors.New("membership change refused")

// confProposal carries a membership change to the loop.
type confProposal struct {
	cc   raftpb.ConfChange
	done chan proposalResult
}

// AddMember adds m to the group, as a learner (receives the log, does not
// vote) or as a voter. New members should join as learners, catch up, and be
// promoted: a voter that is far behind weakens the quorum.
func (n *Node) AddMember(ctx context.Context, m Member, learner bool) error {
	if m.Name == "" || m.Peer == "" {
		return errors.New("a member needs a name and a peer address")
	}
	t := raftpb.ConfChangeAddNode
	if learner {
		t = raftpb.ConfChangeAddLearnerNode
	}
	if _, ok := n.member(m.Name); ok {
		return fmt.Errorf("%w: %q", ErrMemberExists, m.Name)
	}
	return n.changeMembers(ctx, t, m)
}

// PromoteMember makes the learner called name a voter.
func (n *Node) PromoteMember(ctx context.Context, name string) error {
	m, ok := n.member(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	return n.changeMembers(ctx, raftpb.ConfChangeAddNode, m)
}

// RemoveMember removes the member called name from the group.
func (n *Node) RemoveMember(ctx context.Context, name string) error {
	m, ok := n.member(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	return n.changeMembers(ctx, raftpb.ConfChangeRemoveNode, m)
}

func (n *Node) member(name string) (Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.members[RaftID(name)]
	return m, ok
}

func (n *Node) changeMembers(ctx context.Context, t raftpb.ConfChangeType, m Member) error {
	mctx, err := json.Marshal(m)
	if err != nil {
		return err
	}
	id := n.nextID.Add(1)
	p := &proposal{id: id, done: make(chan proposalResult, 1)}
	cc := raftpb.ConfChange{ID: id, Type: t, NodeID: RaftID(m.Name), Context: mctx}
	return n.await(ctx, p, func() { n.proposeConfChange(p, cc) })
}

// await runs submit on the loop and waits for p's result.
func (n *Node) await(ctx context.Context, p *proposal, submit func()) error {
	select {
	case n.funcc <- submit:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.donec:
		return n.stoppedErr()
	}
	select {
	case r := <-p.done:
		return r.err
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.waiters, p.id)
		n.mu.Unlock()
		return ctx.Err()
	case <-n.donec:
		return n.stoppedErr()
	}
}

func (n *Node) proposeConfChange(p *proposal, cc raftpb.ConfChange) {
	n.mu.Lock()
	n.waiters[p.id] = p
	n.mu.Unlock()
	if data, err := cc.Marshal(); err == nil {
		if err := appliesTo(n.confState, &raftpb.Entry{Type: raftpb.EntryConfChange, Data: data}); err != nil {
			n.deliver(p.id, proposalResult{err: fmt.Errorf("%w: %v", ErrChangeRefused, err)})
			return
		}
	}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		if errors.Is(err, raft.ErrProposalDropped) {
			err = fmt.Errorf("%w (or a membership change is already in progress)", ErrNoLeader)
		}
		n.deliver(p.id, proposalResult{err: err})
	}
}

// ErrTransferRefused is returned for a leadership transfer that cannot
// succeed in the current configuration: its target is not a voter, or there
// is no other voter to pick. Asking again changes nothing until the
// configuration does.
var ErrTransferRefused = errors.New("leadership transfer refused")

// TransferLeader hands leadership to the member called name and waits until
// that member leads (or ctx ends). Any member may ask: a follower's request
// goes to the leader through Raft (which forwards MsgTransferLeader), and is
// asked again every election timeout until the target leads, since the
// leader gives up a transfer that has not completed by then (the request may
// also have been lost, or the leader changed). A target that already leads
// is done at once.
//
// An empty name picks a voter other than the leader: the leader picks the
// most up-to-date one, a follower that is a voter itself, a learner the first
// other voter by name. Errors: ErrUnknownMember; ErrTransferRefused when the
// target is a learner (or otherwise not a voter) or there is no voter to
// pick; ErrNoLeader when no leader is known to ask.
func (n *Node) TransferLeader(ctx context.Context, name string) error {
	var target uint64
	if name != "" {
		if _, ok := n.member(name); !ok {
			return fmt.Errorf("%w: %q", ErrUnknownMember, name)
		}
		target = RaftID(name)
	}
	t, err := n.askTransfer(ctx, target)
	if err != nil {
		return err
	}
	again := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	for {
		if done, err := n.awaitLeader(ctx, t, again); done || err != nil {
			return err
		}
		// No leader known: an election under way, perhaps the target's.
		if _, err := n.askTransfer(ctx, t); err != nil && !errors.Is(err, ErrNoLeader) {
			if ctx.Err() != nil {
				return fmt.Errorf("leadership did not move to %s: %w", n.memberName(t), err)
			}
			return err
		}
	}
}

// askTransfer asks, on the loop, for leadership to move to target (0: pick
// one, see TransferLeader) and returns the target.
func (n *Node) askTransfer(ctx context.Context, target uint64) (uint64, error) {
	type answer struct {
		target uint64
		err    error
	}
	ac := make(chan answer, 1)
	submit := func() {
		t, err := n.startTransfer(target)
		ac <- answer{t, err}
	}
	select {
	case n.funcc <- submit:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.donec:
		return 0, n.stoppedErr()
	}
	a := <-ac // submit never blocks once it runs
	return a.target, a.err
}

// startTransfer runs on the loop: it checks target against the applied
// configuration and hands the transfer to Raft.
func (n *Node) startTransfer(target uint64) (uint64, error) {
	st := n.rn.Status()
	lead := st.Lead
	if lead == raft.None {
		return 0, ErrNoLeader
	}
	t := target
	if t == raft.None {
		if t = n.pickTransferee(st); t == raft.None {
			return 0, fmt.Errorf("%w: no other voter to transfer leadership to", ErrTransferRefused)
		}
	}
	if t == lead {
		return t, nil
	}
	switch {
	case slices.Contains(n.confState.Learners, t):
		return 0, fmt.Errorf("%w: member %s is a learner, which cannot lead; promote it to a voter first", ErrTransferRefused, n.memberName(t))
	case !slices.Contains(n.confState.Voters, t):
		return 0, fmt.Errorf("%w: member %s is not a voter", ErrTransferRefused, n.memberName(t))
	}
	n.rn.TransferLeader(t)
	return t, nil
}

// pickTransferee picks the voter to hand leadership to when none is named
// (see TransferLeader); 0 if there is none.
func (n *Node) pickTransferee(st raft.Status) uint64 {
	if st.RaftState == raft.StateLeader {
		var t, best uint64
		for id, pr := range st.Progress {
			if id != n.raftID && !pr.IsLearner && pr.Match >= best {
				t, best = id, pr.Match
			}
		}
		return t
	}
	if slices.Contains(n.confState.Voters, n.raftID) {
		return n.raftID
	}
	var t uint64
	name := ""
	for _, id := range n.confState.Voters {
		if m := n.memberName(id); id != st.Lead && (t == raft.None || m < name) {
			t, name = id, m
		}
	}
	return t
}

// awaitLeader waits up to d for target to lead, as this node sees it.
func (n *Node) awaitLeader(ctx context.Context, target uint64, d time.Duration) (bool, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for n.leader.Load() != target {
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("leadership did not move to %s: %w", n.memberName(target), ctx.Err())
		case <-n.donec:
			return false, n.stoppedErr()
		case <-timer.C:
			return false, nil
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true, nil
}

// memberState is what a snapshot carries besides the key-value pairs.
type memberState struct {
	ConfState raftpb.ConfState `json:"conf_state"`
	Members   []Member         `json:"members"`
	// ClusterID is the cluster's id (clusterid.go); absent in snapshots of
	// clusters from before cluster ids.
	ClusterID string `json:"cluster_id,omitempty"`
	// Range is the group's range of keys (split.go); absent for the whole
	// key space.
	Range *Bounds `json:"range,omitempty"`
}

// publishSelf makes the cluster's record of this node carry its current peer
// and HTTP addresses (members bootstrapped from --cluster know only each
// other's peer addresses; a restarted node may have moved). It retries until
// the record matches or ctx (the node's) ends.
func (n *Node) publishSelf(ctx context.Context) {
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		// Raft takes one membership change at a time and silently drops the
		// others, so members publishing at once retry at random moments.
		jitter := time.Duration(mrand.Int64N(int64(delay)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay/2 + jitter):
		}
		m, ok := n.member(n.cfg.Self.Name)
		if !ok {
			continue // not (yet) a member: joining, or removed
		}
		if m == n.cfg.Self {
			return
		}
		if n.leader.Load() == raft.None {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := n.changeMembers(cctx, raftpb.ConfChangeUpdateNode, n.cfg.Self)
		cancel()
		if err != nil {
			n.logger.Debug("publishing own addresses", "err", err)
		}
	}
}

// adoptMembers takes the membership carried by a snapshot.
func (n *Node) adoptMembers(extra []byte) error {
	var ms memberState
	if err := json.Unmarshal(extra, &ms); err != nil {
		return fmt.Errorf("decode snapshot membership: %w", err)
	}
	if err := n.checkLogClusterID("the snapshot", ms.ClusterID); err != nil {
		return err
	}
	n.confState = ms.ConfState
	n.inConfig.Store(inConfState(n.confState, n.raftID))
	if ms.Range != nil {
		n.bounds.Store(ms.Range)
	} else {
		n.bounds.Store(&Bounds{})
	}
	n.mu.Lock()
	old := n.members
	n.members = map[uint64]Member{}
	for _, m := range ms.Members {
		n.members[RaftID(m.Name)] = m
	}
	cur := n.members
	n.publishLearnersLocked()
	n.mu.Unlock()
	if n.cfg.Transport != nil {
		for id := range old {
			if _, ok := cur[id]; !ok && id != n.raftID {
				n.cfg.Transport.RemovePeer(id)
			}
		}
		for id, m := range cur {
			if id != n.raftID {
				n.addPeer(id, m)
			}
		}
	}
	return nil
}

// applyMemberChange records a change that n.confState already includes.
// index is the change's log entry.
func (n *Node) applyMemberChange(index uint64, t raftpb.ConfChangeType, id uint64, ctx []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.publishLearnersLocked()
	switch t {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		if _, known := n.members[id]; !known {
			if n.addedAt == nil {
				n.addedAt = map[uint64]uint64{}
			}
			n.addedAt[id] = index
		}
		var m Member
		if err := json.Unmarshal(ctx, &m); err == nil && m.Name != "" {
			n.members[id] = m
			if id != n.raftID && n.cfg.Transport != nil {
				n.addPeer(id, m)
			}
		}
	case raftpb.ConfChangeUpdateNode:
		var m Member
		if err := json.Unmarshal(ctx, &m); err == nil && m.Name != "" {
			if _, known := n.members[id]; known {
				n.members[id] = m
				if id != n.raftID && n.cfg.Transport != nil {
					n.addPeer(id, m)
				}
			}
		}
	case raftpb.ConfChangeRemoveNode:
		delete(n.members, id)
		if id == n.raftID {
			n.removed = true
		}
		if id != n.raftID && n.cfg.Transport != nil {
			n.goAsync(func(ctx context.Context) { n.tellRemoved(ctx, id, index) })
		}
	}
}
