package raftnode

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// TestFollowerCommitsOnLeadersNotice: with three voters, a write through a
// follower is acknowledged once the follower's append is durable and the
// leader has said its own is, even though no acknowledgement of any follower
// reaches the leader (so the leader never commits it by itself); after the
// network heals, the leader and the third node have it too. With five voters
// the leader and one follower are no majority: the same write must not be
// acknowledged.
func TestFollowerCommitsOnLeadersNotice(t *testing.T) {
	for _, size := range []int{3, 5} {
		c := newCluster(t, size, nil)
		l := c.waitLeader(5 * time.Second)
		f := c.follower(l)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if _, err := put(ctx, c.nodes[f], "k", "old"); err != nil {
			t.Fatal(err)
		}
		lid := RaftID(l)
		// f may have answered on the leader's notice before the leader heard
		// f's acknowledgement: wait for the leader to commit "old" too.
		want := c.nodes[f].Status().CommitIndex
		waitUntil(t, 5*time.Second, "the leader commits the first write", func() bool {
			return c.nodes[l].Status().CommitIndex >= want
		}, func() string {
			return fmt.Sprintf("leader at %d, follower at %d", c.nodes[l].Status().CommitIndex, want)
		})
		base := c.nodes[l].Status().CommitIndex
		g := ""
		for name := range c.nodes {
			if name != l && name != f && g == "" {
				g = name
			}
		}
		gid := RaftID(g)
		c.nw.mu.Lock()
		// No acknowledgement reaches the leader; g hears no notice, so g
		// cannot learn either that the write is committed.
		c.nw.lose = func(m raftpb.Message) bool {
			_, notice := decodeNotice(&m)
			return (m.To == lid && m.Type == raftpb.MsgAppResp) || (m.To == gid && notice)
		}
		c.nw.mu.Unlock()
		short, cancelShort := context.WithTimeout(ctx, time.Second)
		_, err := put(short, c.nodes[f], "k", "new")
		cancelShort()
		if got := c.nodes[l].Status().CommitIndex; got != base {
			t.Fatalf("%d voters: the leader's commit index moved from %d to %d without acknowledgements: the test proves nothing", size, base, got)
		}
		switch {
		case size == 3 && err != nil:
			t.Fatalf("3 voters: write through follower %s not acknowledged although it and the leader hold it durably: %v", f, err)
		case size == 5 && err == nil:
			t.Fatalf("5 voters: write through follower %s acknowledged with only it and the leader holding it", f)
		}
		if size == 3 {
			// The write is acknowledged: a linearizable read anywhere must
			// see it or fail, even where nothing has applied it yet (the
			// leader, which has not heard it is committed, and g).
			for _, name := range []string{l, g} {
				short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
				got, _, err := c.nodes[name].Get(short, []byte("k"), true)
				cancelShort()
				if err == nil && string(got.Value) != "new" {
					t.Fatalf("linearizable read on %s answered %q after \"new\" was acknowledged", name, got.Value)
				}
			}
		}
		c.nw.heal()
		if size == 3 {
			for name, n := range c.nodes {
				got, _, err := n.Get(ctx, []byte("k"), true)
				if err != nil || string(got.Value) != "new" {
					t.Fatalf("after heal, %s reads %q, %v; want the acknowledged \"new\"", name, got.Value, err)
				}
			}
		}
		cancel()
		c.stopAll()
	}
}

// fakeLog is a durable log of entries 1..len(terms): entry i has term
// terms[i-1] and is a configuration change if conf[i].
type fakeLog struct {
	terms []uint64
	conf  map[uint64]bool
}

func (l fakeLog) Term(i uint64) (uint64, error) {
	if i == 0 || i > uint64(len(l.terms)) {
		return 0, raft.ErrUnavailable
	}
	return l.terms[i-1], nil
}

func (l fakeLog) Entries(lo, hi, _ uint64) ([]raftpb.Entry, error) {
	if lo == 0 || hi > uint64(len(l.terms))+1 {
		return nil, raft.ErrUnavailable
	}
	var ents []raftpb.Entry
	for i := lo; i < hi; i++ {
		e := raftpb.Entry{Index: i, Term: l.terms[i-1]}
		if l.conf[i] {
			e.Type = raftpb.EntryConfChangeV2
		}
		ents = append(ents, e)
	}
	return ents, nil
}

// TestNoticeCommitsOnlyWhenSafe: each condition under which a follower takes a
// leader's notice as a commit, broken alone, must make it refuse: otherwise a
// follower could call committed an entry that no majority holds.
func TestNoticeCommitsOnlyWhenSafe(t *testing.T) {
	type input struct {
		nt      durableNotice
		st      raft.BasicStatus
		cs      raftpb.ConfState
		applied uint64
		log     fakeLog
	}
	base := func() input {
		in := input{
			nt:      durableNotice{from: 1, term: 5, index: 8},
			cs:      raftpb.ConfState{Voters: []uint64{1, 2, 3}},
			applied: 5,
			log:     fakeLog{terms: []uint64{1, 1, 3, 3, 5, 5, 5, 5, 5}},
		}
		in.st.RaftState, in.st.Term, in.st.Lead, in.st.Commit = raft.StateFollower, 5, 1, 6
		return in
	}
	in := base()
	if !noticeCommits(in.nt, in.st, &in.cs, 2, in.applied, in.log) {
		t.Fatalf("the safe case is refused: %+v", in)
	}
	for _, tc := range []struct {
		name   string
		change func(*input)
	}{
		{"this node is a candidate", func(in *input) { in.st.RaftState = raft.StateCandidate }},
		{"this node is in a later term", func(in *input) { in.st.Term = 6 }},
		{"this node follows another leader", func(in *input) { in.st.Lead = 3 }},
		{"the commit index covers the entry already", func(in *input) { in.st.Commit = 8 }},
		{"four voters", func(in *input) { in.cs.Voters = []uint64{1, 2, 3, 4} }},
		{"a joint configuration", func(in *input) { in.cs.VotersOutgoing = []uint64{1, 3, 4} }},
		{"this node is a learner", func(in *input) { in.cs.Voters, in.cs.Learners = []uint64{1, 3, 4}, []uint64{2} }},
		{"the leader is not a voter", func(in *input) { in.cs.Voters = []uint64{2, 3, 4} }},
		{"this node does not hold the entry", func(in *input) { in.log.terms = in.log.terms[:7] }},
		{"this node holds another term's entry there", func(in *input) { in.log.terms[7] = 4 }},
		{"a configuration change between applied and the entry", func(in *input) { in.log.conf = map[uint64]bool{7: true} }},
		{"a configuration change at the entry", func(in *input) { in.log.conf = map[uint64]bool{8: true} }},
		{"too far behind to check", func(in *input) {
			in.applied = 0
			in.nt.index = maxNoticeScan + 2
			in.log.terms = make([]uint64, maxNoticeScan+2)
			for i := range in.log.terms {
				in.log.terms[i] = 5
			}
		}},
	} {
		in := base()
		tc.change(&in)
		if noticeCommits(in.nt, in.st, &in.cs, 2, in.applied, in.log) {
			t.Errorf("%s: the notice is taken as a commit", tc.name)
		}
	}
}

// FuzzDecodeNotice: a peer's message is a notice only if it is whole and
// names an entry of the sender's own term; decoding never panics, and what
// decodes encodes back to the same bytes.
func FuzzDecodeNotice(f *testing.F) {
	f.Add(encodeNotice(7, 3), uint64(3))
	f.Add(encodeNotice(7, 2), uint64(3))
	f.Add([]byte("dkdn"), uint64(1))
	f.Add([]byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, ctx []byte, term uint64) {
		m := raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, Term: term, Context: ctx}
		nt, ok := decodeNotice(&m)
		if !ok {
			return
		}
		if nt.term != term || nt.from != 2 || nt.index == 0 {
			t.Fatalf("%x at term %d decodes to %+v", ctx, term, nt)
		}
		if again := encodeNotice(nt.index, nt.term); !bytes.Equal(again, ctx) {
			t.Fatalf("%x decodes to %+v, which encodes as %x", ctx, nt, again)
		}
		m.Type = raftpb.MsgHeartbeatResp
		if _, ok := decodeNotice(&m); ok {
			t.Fatalf("a %v is taken for a notice", m.Type)
		}
	})
}
