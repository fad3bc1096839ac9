package raftnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// bareRaft is a RawNode of member 1 of the group {1, 2, 3} without a Node
// around it, its storage written synchronously. As a follower it follows 2
// in term 2, and its log holds entries 1-3 (the membership, term 1) and 4-7
// (term 2), committed up to 5. As the leader it leads term 3, its empty
// entry 8 committed.
type bareRaft struct {
	rn *raft.RawNode
	s  *raft.MemoryStorage
}

func newBareRaft(t testing.TB, leader bool) *bareRaft {
	t.Helper()
	s := raft.NewMemoryStorage()
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: s,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, Logger: raftLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	b := &bareRaft{rn: rn, s: s}
	if err := rn.Bootstrap([]raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}); err != nil {
		t.Fatal(err)
	}
	b.settle(t)
	var ents []raftpb.Entry
	for i := uint64(4); i <= 7; i++ {
		ents = append(ents, raftpb.Entry{Index: i, Term: 2})
	}
	b.step(t, raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 3, LogTerm: 1, Entries: ents, Commit: 5})
	if leader {
		if err := rn.Campaign(); err != nil {
			t.Fatal(err)
		}
		b.settle(t)
		b.step(t, raftpb.Message{Type: raftpb.MsgVoteResp, From: 2, To: 1, Term: 3})
		b.step(t, raftpb.Message{Type: raftpb.MsgAppResp, From: 2, To: 1, Term: 3, Index: 8})
	}
	st := rn.BasicStatus()
	want := uint64(5)
	if leader {
		want = 8
	}
	if st.Commit != want || (st.RaftState == raft.StateLeader) != leader {
		t.Fatalf("bare raft is %v with commit %d; want leader %v, commit %d", st.RaftState, st.Commit, leader, want)
	}
	return b
}

func (b *bareRaft) step(t testing.TB, m raftpb.Message) {
	t.Helper()
	if err := b.rn.Step(m); err != nil {
		t.Fatalf("step %v: %v", m.Type, err)
	}
	b.settle(t)
}

func (b *bareRaft) settle(t testing.TB) {
	t.Helper()
	for b.rn.HasReady() {
		rd := b.rn.Ready()
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := b.s.ApplySnapshot(rd.Snapshot); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.s.Append(rd.Entries); err != nil {
			t.Fatal(err)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			if err := b.s.SetHardState(rd.HardState); err != nil {
				t.Fatal(err)
			}
		}
		b.rn.Advance(rd)
	}
}

// node returns a Node around b, enough for the guard: it has applied what b
// has committed, and its configuration is conf.
func (b *bareRaft) node(conf raftpb.ConfState) *Node {
	n := &Node{raftID: 1, rn: b.rn, storage: b.s, confState: conf, logger: slog.New(slog.DiscardHandler)}
	n.applied.Store(b.rn.BasicStatus().Commit)
	return n
}

// stepPanic steps m into rn and returns what Raft panicked with, "" if it
// did not.
func stepPanic(rn *raft.RawNode, m raftpb.Message) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	_ = rn.Step(m)
	return ""
}

// putPayload returns the entry payload of a put of k: a request id, then the
// command.
func putPayload(k string) []byte {
	cmd := kv.Command{Op: kv.OpPut, Key: []byte(k), Value: []byte("v")}
	return cmd.AppendMarshal(binary.BigEndian.AppendUint64(nil, 42))
}

// confChangeEntry returns an entry holding cc.
func confChangeEntry(cc raftpb.ConfChange) raftpb.Entry {
	data, err := cc.Marshal()
	if err != nil {
		panic(err)
	}
	return raftpb.Entry{Type: raftpb.EntryConfChange, Data: data}
}

// hostileCase is a message from the network to member 1 of a bareRaft.
type hostileCase struct {
	name   string
	leader bool // sent to the leader of term 3, else to the follower of 2 in term 2
	stream bool // a snapshot stream's MsgSnap
	conf   []uint64
	m      raftpb.Message
	// panics is what go.etcd.io/raft panics with when it steps m (a part of
	// it); "" if it does not panic at once.
	panics string
	why    why // why the guard drops it
}

// hostileCases are messages the guard drops: what Raft panics on, and shapes
// no member of the cluster sends. Each is addressed to member 1 from member
// 2 or 3 unless its point is otherwise.
func hostileCases() []hostileCase {
	snap := func(index, term uint64, cs raftpb.ConfState) *raftpb.Snapshot {
		return &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: index, Term: term, ConfState: cs}}
	}
	read := []raftpb.Entry{{Data: []byte("0123456789abcdef")}}
	put := func(index, term uint64) raftpb.Entry {
		return raftpb.Entry{Index: index, Term: term, Data: putPayload("k")}
	}
	return []hostileCase{
		// What go.etcd.io/raft v3.6.0 panics on.
		{name: "heartbeat commit beyond the log", m: raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 1, Term: 2, Commit: 207},
			panics: "tocommit(207) is out of range [lastIndex(7)]", why: commitBeyond},
		{name: "heartbeat commit beyond the log at a higher term", m: raftpb.Message{Type: raftpb.MsgHeartbeat, From: 3, To: 1, Term: 9, Commit: 207},
			panics: "tocommit(207) is out of range [lastIndex(7)]", why: commitBeyond},
		{name: "acknowledgement beyond the leader's log", leader: true, m: raftpb.Message{Type: raftpb.MsgAppResp, From: 3, To: 1, Term: 3, Index: 207},
			panics: "need non-empty snapshot", why: ackBeyond},
		{name: "append rewriting committed entries", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 5, LogTerm: 2,
			Entries: []raftpb.Entry{put(3, 2)}}, panics: "entry 3 conflict with committed entry [committed(5)]", why: gap},
		{name: "append with a hole", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 5, LogTerm: 2,
			Entries: []raftpb.Entry{put(9, 2)}}, panics: "index, 3, is out of range [1]", why: gap},
		{name: "empty proposal", leader: true, m: raftpb.Message{Type: raftpb.MsgProp, From: 2, To: 1},
			panics: "stepped empty MsgProp", why: emptyProposal},
		{name: "proposal of an undecodable membership change", leader: true, m: raftpb.Message{Type: raftpb.MsgProp, From: 2, To: 1,
			Entries: []raftpb.Entry{{Type: raftpb.EntryConfChange, Data: []byte{0xff}}}}, panics: "unexpected EOF", why: badEntry},
		{name: "proposal with a term", m: raftpb.Message{Type: raftpb.MsgProp, From: 3, To: 1, Term: 2, Entries: []raftpb.Entry{{Data: putPayload("k")}}},
			panics: "term should not be set when sending MsgProp", why: termOnForward},
		{name: "read request with a term", m: raftpb.Message{Type: raftpb.MsgReadIndex, From: 3, To: 1, Term: 2, Entries: read},
			panics: "term should not be set when sending MsgReadIndex", why: termOnForward},
		{name: "read request without a context", leader: true, m: raftpb.Message{Type: raftpb.MsgReadIndex, From: 2, To: 1},
			panics: "index out of range [0] with length 0", why: readShape},
		{name: "leadership transfer to a follower", m: raftpb.Message{Type: raftpb.MsgTransferLeader, From: 3, To: 1, Term: 2},
			panics: "term should not be set when sending MsgTransferLeader", why: transferNotLeader},
		{name: "negative message type", m: raftpb.Message{Type: -1, From: 2, To: 1, Term: 2},
			panics: "index out of range [-1]", why: unknownType},
		{name: "snapshot of a member both voter and learner", stream: true, m: raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2,
			Snapshot: snap(20, 2, raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{1}})}, panics: "not equivalent", why: snapConf},
		{name: "snapshot of a joint configuration without incoming voters", stream: true, m: raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2,
			Snapshot: snap(20, 2, raftpb.ConfState{VotersOutgoing: []uint64{1, 2, 3}})}, panics: "unable to restore config", why: snapConf},
		{name: "snapshot naming member 0", stream: true, m: raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2,
			Snapshot: snap(20, 2, raftpb.ConfState{Voters: []uint64{1, 0}})}, panics: "not equivalent", why: snapConf},
		{name: "storage response from the network", m: raftpb.Message{Type: raftpb.MsgStorageApplyResp, From: raft.LocalApplyThread, To: 1,
			Entries: []raftpb.Entry{{Index: 207}}}, panics: "applied(207) is out of range", why: noSender},

		// Shapes no member sends, which Raft would act on.
		{name: "not for this node", m: raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 3, Term: 2}, why: notForUs},
		{name: "no sender", m: raftpb.Message{Type: raftpb.MsgHeartbeat, To: 1, Term: 2}, why: noSender},
		{name: "from this node", m: raftpb.Message{Type: raftpb.MsgHeartbeat, From: 1, To: 1, Term: 2}, why: fromSelf},
		{name: "local message", m: raftpb.Message{Type: raftpb.MsgHup, From: 2, To: 1}, why: localType},
		{name: "forget the leader", m: raftpb.Message{Type: raftpb.MsgForgetLeader, From: 2, To: 1, Term: 2}, why: localType},
		{name: "unknown message type", m: raftpb.Message{Type: 77, From: 2, To: 1, Term: 2}, why: unknownType},
		{name: "snapshot outside a transfer", m: raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2,
			Snapshot: snap(20, 2, raftpb.ConfState{Voters: []uint64{1, 2, 3}})}, why: snapOutsideStream},
		{name: "empty snapshot", stream: true, m: raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2, Snapshot: &raftpb.Snapshot{}}, why: snapEmpty},
		{name: "snapshot of a later term", stream: true, m: raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2,
			Snapshot: snap(20, 3, raftpb.ConfState{Voters: []uint64{1, 2, 3}})}, why: snapTerm},
		{name: "snapshot without this node", stream: true, m: raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2,
			Snapshot: snap(20, 2, raftpb.ConfState{Voters: []uint64{2, 3}})}, why: snapNotMember},
		{name: "snapshot contradicting a committed entry", stream: true, m: raftpb.Message{Type: raftpb.MsgSnap, From: 3, To: 1, Term: 9,
			Snapshot: snap(4, 7, raftpb.ConfState{Voters: []uint64{1, 2, 3}})}, why: conflictsCommitted},
		{name: "append without a term", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Index: 7, LogTerm: 2, Commit: 7}, why: noTerm},
		{name: "append from a second leader", m: raftpb.Message{Type: raftpb.MsgApp, From: 3, To: 1, Term: 2, Index: 7, LogTerm: 2}, why: secondLeader},
		{name: "heartbeat to the leader from another", leader: true, m: raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 1, Term: 3}, why: secondLeader},
		{name: "append contradicting committed entries", m: raftpb.Message{Type: raftpb.MsgApp, From: 3, To: 1, Term: 9, Index: 3, LogTerm: 7,
			Entries: []raftpb.Entry{put(4, 7)}, Commit: 4}, why: conflictsCommitted},
		{name: "append of an entry of a later term", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{put(8, 5)}}, why: entryTermAhead},
		{name: "append whose terms go down", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{put(8, 1)}}, why: termsDecrease},
		{name: "append after an entry of a later term", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 4}, why: prevTermAhead},
		{name: "append past the last revision", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 1 << 63, LogTerm: 2}, why: indexRange},
		{name: "append of an undecodable command", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{{Index: 8, Term: 2, Data: []byte("12345678garbage")}}, Commit: 8}, why: badEntry},
		{name: "append of a short payload", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{{Index: 8, Term: 2, Data: []byte("abc")}}, Commit: 8}, why: badEntry},
		{name: "append of an entry of unknown type", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{{Index: 8, Term: 2, Type: 9}}, Commit: 8}, why: badEntry},
		{name: "membership change of unknown type", m: raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{func() raftpb.Entry {
				e := confChangeEntry(raftpb.ConfChange{Type: 7, NodeID: 4})
				e.Index, e.Term = 8, 2
				return e
			}()}}, why: badEntry},
		{name: "term beyond any cluster's", m: raftpb.Message{Type: raftpb.MsgVote, From: 2, To: 1, Term: 1 << 60, Index: 7, LogTerm: 2}, why: termRange},
		{name: "candidate whose log is ahead of its term", m: raftpb.Message{Type: raftpb.MsgVote, From: 3, To: 1, Term: 5, Index: 7, LogTerm: 6}, why: voteLogTermAhead},
		{name: "election order from a stranger", m: raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 3, To: 1, Term: 2}, why: timeoutNowStranger},
		{name: "election order from a later term", m: raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 2, To: 1, Term: 5}, why: timeoutNowStranger},
		{name: "rejection hinting past itself", leader: true, m: raftpb.Message{Type: raftpb.MsgAppResp, From: 3, To: 1, Term: 3, Index: 5,
			Reject: true, RejectHint: 9}, why: hintBeyond},
		{name: "read answer without a context", m: raftpb.Message{Type: raftpb.MsgReadIndexResp, From: 2, To: 1, Term: 2, Index: 5}, why: readShape},
		{name: "proposal from a stranger", leader: true, m: raftpb.Message{Type: raftpb.MsgProp, From: 9, To: 1,
			Entries: []raftpb.Entry{{Data: putPayload("k")}}}, why: proposalFromStranger},
		{name: "proposal of an undecodable command", leader: true, m: raftpb.Message{Type: raftpb.MsgProp, From: 2, To: 1,
			Entries: []raftpb.Entry{{Data: []byte("12345678garbage")}}}, why: badEntry},
		// Raft would take it and panic applying it: it removes the only voter.
		{name: "membership change that cannot apply", leader: true, conf: []uint64{1}, m: raftpb.Message{Type: raftpb.MsgProp, From: 2, To: 1,
			Entries: []raftpb.Entry{confChangeEntry(raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: 1})}}, why: badConfChange},
	}
}

// TestRaftPanicsOnHostileMessages shows that go.etcd.io/raft panics on the
// messages the guard exists for: stepped into a bare RawNode, each panics
// with the message given.
func TestRaftPanicsOnHostileMessages(t *testing.T) {
	for _, c := range hostileCases() {
		if c.panics == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			b := newBareRaft(t, c.leader)
			got := stepPanic(b.rn, c.m)
			if !strings.Contains(got, c.panics) {
				t.Fatalf("stepping %v panicked with %q, want %q", c.m.Type, got, c.panics)
			}
		})
	}
}

// TestGuardDropsHostileMessages: the guard drops each hostile message, for
// the reason it is hostile, and Raft, which never sees it, goes on.
func TestGuardDropsHostileMessages(t *testing.T) {
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			b := newBareRaft(t, c.leader)
			conf := raftpb.ConfState{Voters: []uint64{1, 2, 3}}
			if c.conf != nil {
				conf = raftpb.ConfState{Voters: c.conf, Learners: []uint64{2, 3}}
			}
			n := b.node(conf)
			g := &peerGuard{}
			g.begin(n.storage)
			before := b.rn.BasicStatus()
			m := c.m
			v := n.screen(g, &m, c.stream)
			if v.why != c.why {
				t.Fatalf("guard says %d (%s), want %d", v.why, v.text(n, &m), c.why)
			}
			if v.why != passed && v.text(n, &m) == "" {
				t.Fatal("no reason given")
			}
			if after := b.rn.BasicStatus(); after.HardState != before.HardState || after.Lead != before.Lead {
				t.Fatalf("screening changed Raft: %+v -> %+v", before, after)
			}
		})
	}
}

// TestGuardPassesLegitimateMessages: what members send, including a vote
// request at a higher term with a longer log (a stranger's may look so too:
// keeping other clusters out is the handshake's job), passes.
func TestGuardPassesLegitimateMessages(t *testing.T) {
	snap := &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 20, Term: 2, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}
	cases := []struct {
		name   string
		leader bool
		stream bool
		m      raftpb.Message
	}{
		{"heartbeat", false, false, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 1, Term: 2, Commit: 7}},
		{"heartbeat of a new leader", false, false, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 3, To: 1, Term: 4, Commit: 5}},
		{"append", false, false, raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{{Index: 8, Term: 2, Data: putPayload("k")}, {Index: 9, Term: 2}}, Commit: 9}},
		{"append retransmitted", false, false, raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 3, LogTerm: 1,
			Entries: []raftpb.Entry{{Index: 4, Term: 2}}, Commit: 5}},
		{"append beyond the log", false, false, raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 30, LogTerm: 2, Commit: 40}},
		{"acknowledgement", true, false, raftpb.Message{Type: raftpb.MsgAppResp, From: 3, To: 1, Term: 3, Index: 8}},
		{"rejection", true, false, raftpb.Message{Type: raftpb.MsgAppResp, From: 3, To: 1, Term: 3, Index: 7, Reject: true, RejectHint: 6, LogTerm: 2}},
		{"late acknowledgement of an old term", false, false, raftpb.Message{Type: raftpb.MsgAppResp, From: 3, To: 1, Term: 1, Index: 300}},
		{"proposal", true, false, raftpb.Message{Type: raftpb.MsgProp, From: 2, To: 1, Entries: []raftpb.Entry{{Data: putPayload("k")}}}},
		{"membership change", true, false, raftpb.Message{Type: raftpb.MsgProp, From: 2, To: 1,
			Entries: []raftpb.Entry{confChangeEntry(raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode, NodeID: 4})}}},
		{"read request", true, false, raftpb.Message{Type: raftpb.MsgReadIndex, From: 2, To: 1, Entries: []raftpb.Entry{{Data: []byte("ctx")}}}},
		{"vote request with a longer log", false, false, raftpb.Message{Type: raftpb.MsgVote, From: 3, To: 1, Term: 9, Index: 207, LogTerm: 8}},
		{"pre-vote request", false, false, raftpb.Message{Type: raftpb.MsgPreVote, From: 3, To: 1, Term: 3, Index: 7, LogTerm: 2}},
		{"election order from the leader", false, false, raftpb.Message{Type: raftpb.MsgTimeoutNow, From: 2, To: 1, Term: 2}},
		{"leadership transfer request", true, false, raftpb.Message{Type: raftpb.MsgTransferLeader, From: 2, To: 1, Term: 3}},
		{"snapshot", false, true, raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1, Term: 2, Snapshot: snap}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBareRaft(t, c.leader)
			n := b.node(raftpb.ConfState{Voters: []uint64{1, 2, 3}})
			g := &peerGuard{}
			g.begin(n.storage)
			m := c.m
			if v := n.screen(g, &m, c.stream); v.why != passed {
				t.Fatalf("guard drops it: %s", v.text(n, &m))
			}
			if got := stepPanic(b.rn, c.m); got != "" {
				t.Fatalf("raft panicked on it: %s", got)
			}
		})
	}
}

// TestGuardLogIsRateLimited: a flood of hostile messages from one sender
// makes one log line a second, which counts them; a flood that claims ever
// new senders makes at most one line per tracked sender.
func TestGuardLogIsRateLimited(t *testing.T) {
	b := newBareRaft(t, false)
	n := b.node(raftpb.ConfState{Voters: []uint64{1, 2, 3}})
	var logs syncBuffer
	n.logger = slog.New(slog.NewTextHandler(&logs, nil))
	g := &peerGuard{}
	g.begin(n.storage)
	hostile := raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 1, Term: 2, Commit: 207}
	for range 10000 {
		m := hostile
		if n.admit(g, &m) {
			t.Fatal("hostile heartbeat admitted")
		}
	}
	if lines := strings.Count(logs.String(), "\n"); lines != 1 {
		t.Fatalf("%d log lines for 10000 drops from one sender:\n%s", lines, logs.String())
	}
	if !strings.Contains(logs.String(), "leader 2 believes this node has index 207 but its log ends at 7: its data directory may have been wiped or belong to another cluster") {
		t.Fatalf("log line does not say why:\n%s", logs.String())
	}
	g.logs[2].at = time.Now().Add(-guardLogEvery)
	m := hostile
	n.admit(g, &m)
	if !strings.Contains(logs.String(), "dropped=10000") {
		t.Fatalf("second line does not count the drops since the first:\n%s", logs.String())
	}
	for from := uint64(100); from < 10100; from++ {
		m := hostile
		m.From = from
		n.admit(g, &m)
	}
	if lines := strings.Count(logs.String(), "\n"); lines > 2+guardLogSenders {
		t.Fatalf("%d log lines for drops from 10000 senders", lines)
	}
	if got := g.drops.Load(); got != 20001 {
		t.Fatalf("counted %d drops, want 20001", got)
	}
}

// TestStrangerCannotTakeClusterDown plays a node of another cluster with the
// same member names (so the same Raft ids), a longer log and a higher term,
// talking to a follower and to the leader of a 3-node cluster, and messages
// that would have panicked Raft. No node stops, the cluster keeps serving,
// the acknowledged writes are all there, and the log says what happened.
func TestStrangerCannotTakeClusterDown(t *testing.T) {
	var logs syncBuffer
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", cfg.Self.Name)
	})
	leader := c.waitLeader(5 * time.Second)
	f := c.follower(leader)
	stranger := ""
	for name := range c.nodes {
		if name != leader && name != f {
			stranger = name
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var acked []string
	for i := range 20 {
		k := fmt.Sprintf("k%d", i)
		if _, err := put(ctx, c.nodes[leader], k, "v"); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		acked = append(acked, k)
	}
	ln, fn := c.nodes[leader], c.nodes[f]
	s, term := RaftID(stranger), ln.Status().Term
	if fn.Status().Term != term {
		t.Fatalf("follower at term %d, leader at %d", fn.Status().Term, term)
	}
	garbage := []raftpb.Entry{{Data: []byte("12345678garbage")}}
	toFollower := []raftpb.Message{
		{Type: raftpb.MsgHeartbeat, From: s, To: fn.raftID, Term: term + 5, Commit: 207},
		{Type: raftpb.MsgApp, From: s, To: fn.raftID, Term: term + 5, Index: 2, LogTerm: term + 4,
			Entries: []raftpb.Entry{{Index: 3, Term: term + 4, Data: putPayload("x")}}, Commit: 207},
		{Type: raftpb.MsgApp, From: s, To: fn.raftID, Term: term, Index: 2, LogTerm: 1},
		{Type: raftpb.MsgApp, From: s, To: fn.raftID, Term: term + 5, Index: 30, LogTerm: term,
			Entries: []raftpb.Entry{{Index: 300, Term: term + 5}}},
		{Type: raftpb.MsgProp, From: s, To: fn.raftID, Term: term, Entries: []raftpb.Entry{{Data: putPayload("x")}}},
		{Type: raftpb.MsgReadIndex, From: s, To: fn.raftID, Term: term, Entries: []raftpb.Entry{{Data: []byte("ctx")}}},
		{Type: raftpb.MsgTransferLeader, From: s, To: fn.raftID, Term: term},
		{Type: -1, From: s, To: fn.raftID, Term: term},
		{Type: raftpb.MsgSnap, From: s, To: fn.raftID, Term: term + 5, Snapshot: &raftpb.Snapshot{}},
		{Type: raftpb.MsgStorageApplyResp, From: raft.LocalApplyThread, To: fn.raftID, Entries: []raftpb.Entry{{Index: 207}}},
	}
	toLeader := []raftpb.Message{
		{Type: raftpb.MsgAppResp, From: s, To: ln.raftID, Term: term, Index: 207},
		{Type: raftpb.MsgProp, From: s, To: ln.raftID},
		{Type: raftpb.MsgProp, From: s, To: ln.raftID, Entries: garbage},
		{Type: raftpb.MsgReadIndex, From: s, To: ln.raftID},
		{Type: raftpb.MsgHeartbeat, From: s, To: ln.raftID, Term: term, Commit: 1},
		{Type: raftpb.MsgHeartbeat, From: s, To: ln.raftID, Term: term + 5, Commit: 207},
	}
	// Legitimate in shape, so not the guard's to drop: the members, hearing
	// from their leader, ignore them (CheckQuorum).
	votes := []raftpb.Message{
		{Type: raftpb.MsgPreVote, From: s, To: fn.raftID, Term: term + 6, Index: 207, LogTerm: term + 5},
		{Type: raftpb.MsgVote, From: s, To: fn.raftID, Term: term + 6, Index: 207, LogTerm: term + 5},
	}
	fDrops, lDrops := fn.peerGuard().drops.Load(), ln.peerGuard().drops.Load()
	fn.HandleRaft(fn.cfg.Shard, toFollower)
	fn.HandleRaft(fn.cfg.Shard, votes)
	ln.HandleRaft(ln.cfg.Shard, toLeader)
	waitUntil(t, 10*time.Second, "hostile messages dropped", func() bool {
		return fn.peerGuard().drops.Load()-fDrops >= uint64(len(toFollower)) && ln.peerGuard().drops.Load()-lDrops >= uint64(len(toLeader))
	}, func() string {
		return fmt.Sprintf("follower dropped %d, leader %d", fn.peerGuard().drops.Load()-fDrops, ln.peerGuard().drops.Load()-lDrops)
	})
	for name, n := range c.nodes {
		select {
		case <-n.Done():
			t.Fatalf("%s stopped: %v", name, n.Err())
		default:
		}
		if err := n.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, name := range []string{f, leader} {
		k := "after-" + name
		if _, err := put(ctx, c.nodes[name], k, "v"); err != nil {
			t.Fatalf("put via %s after the stranger: %v", name, err)
		}
		acked = append(acked, k)
	}
	for name, n := range c.nodes {
		for _, k := range acked {
			got, ok, err := n.Get(ctx, []byte(k), true)
			if err != nil || !ok || string(got.Value) != "v" {
				t.Fatalf("%s: get %s = %+v %v %v", name, k, got, ok, err)
			}
		}
		if _, ok, _ := n.Get(ctx, []byte("x"), false); ok {
			t.Fatalf("%s applied the stranger's write", name)
		}
	}
	out := logs.String()
	t.Logf("warnings:\n%s", out)
	for _, want := range []string{
		fmt.Sprintf("leader %s believes this node has index 207 but its log ends at", stranger),
		fmt.Sprintf("%s acknowledges index 207 but this leader's log ends at", stranger),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// BenchmarkGuardAdmit measures the guard on the messages of the common path:
// an append of a put to a follower, its acknowledgement and a heartbeat.
func BenchmarkGuardAdmit(b *testing.B) {
	cases := []struct {
		name   string
		leader bool
		m      raftpb.Message
	}{
		{"append", false, raftpb.Message{Type: raftpb.MsgApp, From: 2, To: 1, Term: 2, Index: 7, LogTerm: 2,
			Entries: []raftpb.Entry{{Index: 8, Term: 2, Data: putPayload("0123456789abcdef")}}, Commit: 7}},
		{"acknowledgement", true, raftpb.Message{Type: raftpb.MsgAppResp, From: 3, To: 1, Term: 3, Index: 8}},
		{"heartbeat", false, raftpb.Message{Type: raftpb.MsgHeartbeat, From: 2, To: 1, Term: 2, Commit: 5}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			br := newBareRaft(b, c.leader)
			n := br.node(raftpb.ConfState{Voters: []uint64{1, 2, 3}})
			g := &peerGuard{}
			g.begin(n.storage)
			b.ReportAllocs()
			for b.Loop() {
				m := c.m
				if !n.admit(g, &m) {
					b.Fatal("dropped")
				}
			}
		})
	}
}

// TestHostileSnapshotStreamIsRefused: a snapshot stream to a joining node
// whose file is sound but whose message carries a configuration Raft cannot
// restore (it would panic) is refused, the sender is told why, and the node
// goes on without it.
func TestHostileSnapshotStreamIsRefused(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SnapshotEntries = 5
	n1 := openNode(t, cfg)
	defer n1.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := put(ctx, n1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	var idx uint64
	waitUntil(t, 10*time.Second, "a snapshot", func() bool {
		indexes, err := n1.snaps.Indexes(n1.cfg.Shard)
		if err == nil && len(indexes) > 0 {
			idx = indexes[len(indexes)-1]
		}
		return idx > 0
	}, func() string { return "none" })
	f, err := n1.snaps.Open(n1.cfg.Shard, idx)
	if err != nil {
		t.Fatal(err)
	}
	file, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	cfg2 := testConfig(t.TempDir())
	cfg2.Self = Member{Name: "n2", Peer: "127.0.0.1:9002", HTTP: "127.0.0.1:8002"}
	cfg2.Members = []Member{cfg.Self, cfg2.Self}
	cfg2.Join = true
	cfg2.Transport = newMemNet(1).transport(RaftID("n2"))
	n2, err := Open(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Stop()
	term := n1.Status().Term
	send := func(cs raftpb.ConfState) error {
		m := raftpb.Message{Type: raftpb.MsgSnap, From: n1.raftID, To: n2.raftID, Term: term,
			Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: idx, Term: term, ConfState: cs}}}
		hdr, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		stream := binary.BigEndian.AppendUint32(nil, uint32(len(hdr)))
		stream = append(append(stream, hdr...), file...)
		return n2.HandleSnapshot(n1.raftID, n2.cfg.Shard, bytes.NewReader(stream))
	}
	err = send(raftpb.ConfState{VotersOutgoing: []uint64{n1.raftID, n2.raftID}})
	if err == nil || !strings.Contains(err.Error(), "snapshot refused: a snapshot with an inconsistent configuration") {
		t.Fatalf("hostile snapshot stream: %v", err)
	}
	select {
	case <-n2.Done():
		t.Fatalf("joining node stopped: %v", n2.Err())
	case <-time.After(100 * time.Millisecond):
	}
	if st := n2.Status(); st.AppliedIndex != 0 {
		t.Fatalf("joining node applied %d entries from the hostile snapshot", st.AppliedIndex)
	}
}
