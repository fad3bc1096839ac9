package raftnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
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

// TransferLeader asks the leader to hand leadership to the member called name
// and waits until that member leads (or ctx ends). An empty name picks the
// most up-to-date other voter.
func (n *Node) TransferLeader(ctx context.Context, name string) error {
	var target uint64
	if name != "" {
		m, ok := n.member(name)
		if !ok {
			return fmt.Errorf("%w: %q", ErrUnknownMember, name)
		}
		target = RaftID(m.Name)
	}
	errc := make(chan error, 1)
	submit := func() {
		st := n.rn.Status()
		if st.RaftState != raft.StateLeader {
			errc <- fmt.Errorf("this node is not the leader (leader: %s)", n.memberName(st.Lead))
			return
		}
		t := target
		if t == 0 {
			var best uint64
			for id, pr := range st.Progress {
				if id != n.raftID && !pr.IsLearner && pr.Match >= best {
					t, best = id, pr.Match
				}
			}
		}
		if t == 0 {
			errc <- errors.New("no other voter to transfer leadership to")
			return
		}
		if pr, ok := st.Progress[t]; !ok || pr.IsLearner {
			errc <- fmt.Errorf("member %s is not a voter", n.memberName(t))
			return
		}
		target = t
		n.rn.TransferLeader(t)
		errc <- nil
	}
	select {
	case n.funcc <- submit:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.donec:
		return n.stoppedErr()
	}
	if err := <-errc; err != nil {
		return err
	}
	for {
		if n.leader.Load() == target {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("leadership did not move to %s: %w", n.memberName(target), ctx.Err())
		case <-n.donec:
			return n.stoppedErr()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// memberState is what a snapshot carries besides the key-value pairs.
type memberState struct {
	ConfState raftpb.ConfState `json:"conf_state"`
	Members   []Member         `json:"members"`
	// ClusterID is the cluster's id (clusterid.go); absent in snapshots of
	// clusters from before cluster ids.
	ClusterID string `json:"cluster_id,omitempty"`
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
func (n *Node) applyMemberChange(t raftpb.ConfChangeType, id uint64, ctx []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.publishLearnersLocked()
	switch t {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
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
			n.goAsync(func(ctx context.Context) { n.tellRemoved(ctx, id) })
		}
	}
}
