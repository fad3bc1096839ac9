package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/distkv/distkv/internal/kv"
)

// peerGuard keeps from Raft the messages from the network that it would panic
// on, and those that no member of this cluster can send. go.etcd.io/raft
// trusts its peers: among others, a heartbeat whose commit index lies beyond
// the end of this node's log, an acknowledgement of an entry the leader does
// not have (before its first snapshot), entries that are not consecutive, an
// empty proposal, a forwarded proposal that carries a term, a snapshot whose
// configuration is inconsistent and a message of a negative type each panic
// it, and so take the process down. Such messages come from a node of another
// cluster that has the same member names, a member whose data directory was
// wiped, a replay, or a frame corrupted in a way its checksum missed. The
// guard drops them before Raft sees them and logs why, at most one line per
// sender per second with the number dropped (a flood cannot fill the disk);
// the node carries on.
//
// It drops only what cannot be legitimate, with one exception: a heartbeat
// or an acknowledgement whose index this node cannot yet vouch for because an
// append stepped in the same batch may have shortened its log (logged at
// Debug; Raft sends both again).
//
// Owned by the loop. The checks allocate nothing on the common path (see
// BenchmarkGuardAdmit); they read the RawNode (BasicStatus) only for the
// message types whose legitimacy depends on its state.
type peerGuard struct {
	// last is the index of the last entry of Raft's log, durable or not, as
	// of the last append Raft handed out (noteAppend); known is false until
	// one carried entries or a snapshot, and until then Raft's log is the
	// storage's. Every change of Raft's last index reaches an append, and the
	// loop hands out every pending one before it takes the next event, so
	// last is exact when a batch of messages begins.
	last  uint64
	known bool
	// low and high bound Raft's last index while a batch is stepped: an
	// append stepped since it began may have cut the log short or extended
	// it. Invariant: low <= Raft's last index.
	low, high uint64
	// logs rate-limits the lines about drops, per sender (at most
	// guardLogSenders of them; the others share key 0).
	logs map[uint64]*dropLog
	// drops counts the messages dropped. Read by tests.
	drops atomic.Uint64
}

// dropLog is when the guard last logged a drop from one sender, and how many
// it dropped from it since.
type dropLog struct {
	at      time.Time
	dropped uint64
}

const (
	// guardLogEvery is the least time between two lines about drops from one
	// sender.
	guardLogEvery = time.Second
	// guardLogSenders bounds the senders the guard tracks for its log lines:
	// the sender of a hostile message is whatever the message says.
	guardLogSenders = 64
	// maxLogIndex is the highest log index a legitimate message carries: the
	// state machine takes an entry's index as its revision, an int64.
	maxLogIndex = math.MaxInt64
	// maxTerm is the highest term a legitimate message carries: at one
	// election a millisecond a cluster reaches it in 8,900 years. A stranger
	// must not push a node's term towards overflow.
	maxTerm = 1 << 48
)

// peerGuard returns n's guard.
func (n *Node) peerGuard() *peerGuard { return &n.guard }

// noteAppend takes m, an append Raft hands out (MsgStorageAppend).
func (g *peerGuard) noteAppend(m *raftpb.Message) {
	if m.Snapshot != nil {
		g.last, g.known = m.Snapshot.Metadata.Index, true
	}
	if k := len(m.Entries); k > 0 {
		g.last, g.known = m.Entries[k-1].Index, true
	}
}

// lastIndex returns the index of the last entry of Raft's log at the start
// of a batch.
func (g *peerGuard) lastIndex(s *raft.MemoryStorage) uint64 {
	if g.known {
		return g.last
	}
	last, _ := s.LastIndex()
	return last
}

// begin starts a batch of messages from the network: nothing pending from
// Raft is left unhanded.
func (g *peerGuard) begin(s *raft.MemoryStorage) {
	g.low = g.lastIndex(s)
	g.high = g.low
}

// stepRemote steps m, a message from the network, unless the guard drops it.
// The loop calls it for every such message, after g.begin.
func (n *Node) stepRemote(g *peerGuard, m raftpb.Message) {
	if !n.admit(g, &m) {
		return
	}
	n.step(m)
}

// admit reports whether m may be stepped; if not, it logs why.
func (n *Node) admit(g *peerGuard, m *raftpb.Message) bool {
	v := n.screen(g, m, false)
	if v.why == passed {
		if m.Type == raftpb.MsgApp && len(m.Entries) > 0 {
			last := m.Index + uint64(len(m.Entries))
			g.low, g.high = min(g.low, last), max(g.high, last)
		}
		return true
	}
	g.drop(n, m, v)
	return false
}

// admitSnapshot screens m, the MsgSnap of a snapshot stream, and returns why
// it is refused (it is logged as well), or nil.
func (n *Node) admitSnapshot(m *raftpb.Message) error {
	g := n.peerGuard()
	g.begin(n.storage)
	v := n.screen(g, m, true)
	if v.why == passed {
		return nil
	}
	g.drop(n, m, v)
	return fmt.Errorf("snapshot refused: %s", v.text(n, m))
}

// why a message is dropped.
type why uint8

const (
	passed why = iota
	notForUs
	noSender
	fromSelf
	unknownType
	localType
	snapOutsideStream
	noTerm
	termOnForward
	termRange
	secondLeader
	emptyProposal
	proposalFromStranger
	badEntry
	badConfChange
	readShape
	prevTermAhead
	indexRange
	gap
	termsDecrease
	entryTermAhead
	conflictsCommitted
	commitBeyond
	ackBeyond
	hintBeyond
	voteLogTermAhead
	timeoutNowStranger
	transferNotLeader
	snapEmpty
	snapTerm
	snapConf
	snapNotMember
)

// verdict is the outcome of screening a message.
type verdict struct {
	why     why
	a, b, c uint64 // figures the reason's text shows
	err     error
	// unsure: a member may have sent it, but this node cannot vouch for it
	// now (Debug, not Warn).
	unsure bool
}

// screen checks m, from the network (a snapshot stream if stream). It reads
// the RawNode only for the few messages whose legitimacy depends on its
// state.
func (n *Node) screen(g *peerGuard, m *raftpb.Message, stream bool) verdict {
	switch {
	case m.To != n.raftID:
		return verdict{why: notForUs, a: m.To}
	case m.From == raft.None || raft.IsLocalMsgTarget(m.From):
		return verdict{why: noSender}
	case m.From == n.raftID:
		return verdict{why: fromSelf}
	case m.Type < 0 || m.Type > raftpb.MsgForgetLeader:
		// Raft indexes a table with the type: a negative one panics it.
		return verdict{why: unknownType, a: uint64(int64(m.Type))}
	case raft.IsLocalMsg(m.Type) || m.Type == raftpb.MsgForgetLeader:
		return verdict{why: localType}
	case m.Type == raftpb.MsgSnap && !stream:
		// A snapshot's data comes in a stream (HandleSnapshot): Raft
		// would accept the message and the loop find no file to install.
		return verdict{why: snapOutsideStream}
	}
	// Raft sends forwarded proposals and read requests without a term (and
	// panics forwarding one that has one), every other message with one (a
	// message without one skips Raft's term checks).
	if forwarded := m.Type == raftpb.MsgProp || m.Type == raftpb.MsgReadIndex; forwarded != (m.Term == 0) {
		if forwarded {
			return verdict{why: termOnForward, a: m.Term}
		}
		return verdict{why: noTerm}
	}
	if m.Term > maxTerm {
		return verdict{why: termRange, a: m.Term}
	}
	if m.Type == raftpb.MsgApp || m.Type == raftpb.MsgHeartbeat || m.Type == raftpb.MsgSnap {
		// One leader a term: once this node knows it, no other member
		// sends what only a leader sends.
		if st := n.rn.BasicStatus(); m.Term == st.Term && st.Lead != raft.None && m.From != st.Lead {
			return verdict{why: secondLeader, a: m.Term, b: st.Lead}
		}
	}
	switch m.Type {
	case raftpb.MsgApp:
		return n.screenApp(g, m)
	case raftpb.MsgHeartbeat:
		// A leader sends min(its commit index, this node's match), and
		// entries once matched here stay in this node's log.
		if m.Commit > g.low {
			return verdict{why: commitBeyond, a: m.Commit, b: g.low, unsure: m.Commit <= g.high}
		}
	case raftpb.MsgAppResp:
		if m.Reject && m.RejectHint > m.Index {
			return verdict{why: hintBeyond, a: m.RejectHint, b: m.Index}
		}
		// A follower acknowledges only entries the leader sent it, all in
		// the leader's log before this batch began.
		if !m.Reject && m.Index > g.low {
			if st := n.rn.BasicStatus(); st.RaftState == raft.StateLeader && m.Term == st.Term {
				return verdict{why: ackBeyond, a: m.Index, b: g.low, unsure: m.Index <= g.high}
			}
		}
	case raftpb.MsgProp:
		return n.screenProposal(m)
	case raftpb.MsgReadIndex, raftpb.MsgReadIndexResp:
		if len(m.Entries) != 1 {
			return verdict{why: readShape, a: uint64(len(m.Entries))}
		}
	case raftpb.MsgVote, raftpb.MsgPreVote:
		// A candidate's log ends in a term before the one it campaigns for.
		if m.LogTerm > m.Term {
			return verdict{why: voteLogTermAhead, a: m.LogTerm, b: m.Term}
		}
		if m.Index > maxLogIndex {
			return verdict{why: indexRange, a: m.Index}
		}
	case raftpb.MsgTimeoutNow:
		// Only the leader of this node's term sends it, to a follower that
		// has its whole log (so is in its term).
		st := n.rn.BasicStatus()
		if m.Term > st.Term || (m.Term == st.Term && st.Lead != raft.None && m.From != st.Lead) {
			return verdict{why: timeoutNowStranger, a: m.Term, b: st.Term}
		}
	case raftpb.MsgTransferLeader:
		// A follower forwards it to the leader; Raft, not leading, would
		// forward it on and panic on its term.
		if n.rn.BasicStatus().RaftState != raft.StateLeader {
			return verdict{why: transferNotLeader, unsure: true}
		}
	case raftpb.MsgSnap:
		return n.screenSnapshot(m)
	}
	return verdict{}
}

// screenApp checks an append: its entries follow its base index one by one,
// their terms never go down and never exceed the leader's, they decode, and
// none contradicts an entry this node has applied (so committed).
func (n *Node) screenApp(g *peerGuard, m *raftpb.Message) verdict {
	if m.LogTerm > m.Term {
		return verdict{why: prevTermAhead, a: m.LogTerm, b: m.Term}
	}
	k := uint64(len(m.Entries))
	if m.Index > maxLogIndex-k {
		return verdict{why: indexRange, a: m.Index + k}
	}
	term := m.LogTerm
	for i := range m.Entries {
		e := &m.Entries[i]
		if want := m.Index + 1 + uint64(i); e.Index != want {
			return verdict{why: gap, a: e.Index, b: want}
		}
		if e.Term < term {
			return verdict{why: termsDecrease, a: e.Index, b: e.Term}
		}
		if e.Term > m.Term {
			return verdict{why: entryTermAhead, a: e.Term, b: m.Term}
		}
		term = e.Term
		if err := checkEntry(e); err != nil {
			return verdict{why: badEntry, a: e.Index, err: err}
		}
	}
	// Entries up to the applied index are committed and durable here, and
	// every leader's log holds them. Checked only for an append that reaches
	// back there (a retransmission, or a stranger): its base, and its last
	// entry at or below the applied index.
	if applied := n.applied.Load(); m.Index < applied {
		if v := n.conflictsApplied(m.Index, m.LogTerm); v.why != passed {
			return v
		}
		if k > 0 {
			i := min(applied, m.Index+k)
			if v := n.conflictsApplied(i, m.Entries[i-m.Index-1].Term); v.why != passed {
				return v
			}
		}
	}
	return verdict{}
}

// conflictsApplied reports an entry (index, term) that contradicts this
// node's entry at index, which it has applied.
func (n *Node) conflictsApplied(index, term uint64) verdict {
	if index == 0 {
		return verdict{}
	}
	ours, err := n.storage.Term(index)
	if err != nil || ours == term {
		return verdict{} // compacted: the snapshot vouches for it
	}
	return verdict{why: conflictsCommitted, a: index, b: term, c: ours}
}

// screenProposal checks a forwarded proposal: it has entries, they decode,
// its sender is a member, and a membership change in it applies to this
// leader's configuration.
func (n *Node) screenProposal(m *raftpb.Message) verdict {
	if len(m.Entries) == 0 {
		return verdict{why: emptyProposal}
	}
	if !inConfState(n.confState, m.From) {
		return verdict{why: proposalFromStranger}
	}
	leader := false
	for i := range m.Entries {
		e := &m.Entries[i]
		if err := checkEntry(e); err != nil {
			return verdict{why: badEntry, a: uint64(i), err: err}
		}
		if e.Type == raftpb.EntryNormal {
			continue
		}
		// Raft takes one change at a time and blanks the others; a change
		// that does not apply to the configuration would panic Raft when
		// applied. A follower forwarding it leaves this to the leader.
		if !leader && n.rn.BasicStatus().RaftState != raft.StateLeader {
			continue
		}
		leader = true
		if err := appliesTo(n.confState, e); err != nil {
			return verdict{why: badConfChange, a: uint64(i), err: err}
		}
	}
	return verdict{}
}

// screenSnapshot checks the MsgSnap of a snapshot stream: a snapshot of an
// index and a term, no later than the leader's, of a consistent
// configuration that includes this node, which agrees with the entry this
// node has at that index if it has applied it.
func (n *Node) screenSnapshot(m *raftpb.Message) verdict {
	if m.Snapshot == nil || m.Snapshot.Metadata.Index == 0 {
		return verdict{why: snapEmpty}
	}
	md := &m.Snapshot.Metadata
	if md.Index > maxLogIndex {
		return verdict{why: indexRange, a: md.Index}
	}
	if md.Term == 0 || md.Term > m.Term {
		return verdict{why: snapTerm, a: md.Term, b: m.Term}
	}
	if err := validConfState(md.ConfState); err != nil {
		return verdict{why: snapConf, err: err}
	}
	if !inConfState(md.ConfState, n.raftID) {
		return verdict{why: snapNotMember}
	}
	if md.Index <= n.applied.Load() {
		return n.conflictsApplied(md.Index, md.Term)
	}
	return verdict{}
}

// checkEntry reports why e could not be applied: an unknown type, a payload
// that is not a request id and a valid command, or a membership change that
// does not decode or names an unknown kind of change. Applying such an entry
// would stop the node (or panic Raft).
func checkEntry(e *raftpb.Entry) error {
	switch e.Type {
	case raftpb.EntryNormal:
		if len(e.Data) == 0 {
			return nil // a new leader's empty entry
		}
		_, _, enc, err := DecodePayload(e.Data)
		if err != nil {
			return err
		}
		cmd, err := kv.UnmarshalCommand(enc)
		if err != nil {
			return err
		}
		return cmd.Validate()
	case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
		cc, err := decodeConfChange(e)
		if err != nil {
			return err
		}
		if cc.Transition < raftpb.ConfChangeTransitionAuto || cc.Transition > raftpb.ConfChangeTransitionJointExplicit {
			return fmt.Errorf("membership change of unknown transition %d", cc.Transition)
		}
		for _, c := range cc.Changes {
			if c.Type < raftpb.ConfChangeAddNode || c.Type > raftpb.ConfChangeAddLearnerNode {
				return fmt.Errorf("membership change of unknown type %d", c.Type)
			}
		}
		return nil
	}
	return fmt.Errorf("entry of unknown type %d", e.Type)
}

// decodeConfChange decodes e, a membership change, as a ConfChangeV2.
func decodeConfChange(e *raftpb.Entry) (raftpb.ConfChangeV2, error) {
	if e.Type == raftpb.EntryConfChange {
		var cc raftpb.ConfChange
		if err := cc.Unmarshal(e.Data); err != nil {
			return raftpb.ConfChangeV2{}, fmt.Errorf("decode membership change: %w", err)
		}
		return cc.AsV2(), nil
	}
	var cc raftpb.ConfChangeV2
	if err := cc.Unmarshal(e.Data); err != nil {
		return raftpb.ConfChangeV2{}, fmt.Errorf("decode membership change: %w", err)
	}
	return cc, nil
}

// appliesTo reports why the membership change in e cannot be applied to the
// configuration cs, as Raft would apply it.
func appliesTo(cs raftpb.ConfState, e *raftpb.Entry) error {
	cc, err := decodeConfChange(e)
	if err != nil {
		return err
	}
	trk, err := restoreConfState(cs)
	if err != nil {
		return fmt.Errorf("this node's configuration: %w", err)
	}
	chg := confchange.Changer{Tracker: trk, LastIndex: 1}
	if cc.LeaveJoint() {
		_, _, err = chg.LeaveJoint()
	} else if auto, ok := cc.EnterJoint(); ok {
		_, _, err = chg.EnterJoint(auto, cc.Changes...)
	} else {
		_, _, err = chg.Simple(cc.Changes...)
	}
	return err
}

// validConfState reports why Raft could not restore cs (it would panic).
func validConfState(cs raftpb.ConfState) error {
	trk, err := restoreConfState(cs)
	if err != nil {
		return err
	}
	return cs.Equivalent(trk.ConfState())
}

// restoreConfState returns a progress tracker in configuration cs.
func restoreConfState(cs raftpb.ConfState) (tracker.ProgressTracker, error) {
	trk := tracker.MakeProgressTracker(1, 0)
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: trk, LastIndex: 1}, cs)
	if err != nil {
		return trk, err
	}
	trk.Config, trk.Progress = cfg, prs
	return trk, nil
}

// drop counts m as dropped and logs it, at most once a second per sender.
func (g *peerGuard) drop(n *Node, m *raftpb.Message, v verdict) {
	g.drops.Add(1)
	level := slog.LevelWarn
	if v.unsure {
		level = slog.LevelDebug
	}
	if !n.logger.Enabled(context.Background(), level) {
		return
	}
	if g.logs == nil {
		g.logs = map[uint64]*dropLog{}
	}
	key := m.From
	l := g.logs[key]
	if l == nil && len(g.logs) >= guardLogSenders {
		key = 0
		l = g.logs[key]
	}
	if l == nil {
		l = &dropLog{}
		g.logs[key] = l
	}
	l.dropped++
	now := time.Now()
	if now.Sub(l.at) < guardLogEvery {
		return
	}
	n.logger.Log(context.Background(), level, "dropped a message from the network",
		"from", n.memberName(m.From), "type", m.Type, "term", m.Term, "why", v.text(n, m),
		"dropped", l.dropped)
	l.at, l.dropped = now, 0
}

// text says why m was dropped.
func (v verdict) text(n *Node, m *raftpb.Message) string {
	from := n.memberName(m.From)
	switch v.why {
	case notForUs:
		return fmt.Sprintf("addressed to %s, not to this node", n.memberName(v.a))
	case noSender:
		return "it names no sender"
	case fromSelf:
		return "it claims to come from this node itself"
	case unknownType:
		return fmt.Sprintf("unknown message type %d", int64(v.a))
	case localType:
		return "a message type only a node's own Raft uses"
	case snapOutsideStream:
		return "a snapshot outside a snapshot transfer"
	case noTerm:
		return "it carries no term"
	case termOnForward:
		return fmt.Sprintf("a forwarded proposal or read request carries term %d (Raft sends none)", v.a)
	case termRange:
		return fmt.Sprintf("term %d is beyond any cluster's", v.a)
	case secondLeader:
		return fmt.Sprintf("%s acts as the leader of term %d, which %s leads", from, v.a, n.memberName(v.b))
	case emptyProposal:
		return "a proposal without entries"
	case proposalFromStranger:
		return fmt.Sprintf("a proposal from %s, which is not a member", from)
	case badEntry:
		return fmt.Sprintf("entry %d cannot be applied: %v", v.a, v.err)
	case badConfChange:
		return fmt.Sprintf("the membership change in entry %d does not apply to this configuration: %v", v.a, v.err)
	case readShape:
		return fmt.Sprintf("a read request or answer with %d entries instead of 1", v.a)
	case prevTermAhead:
		return fmt.Sprintf("an append of term %d follows an entry of later term %d", v.b, v.a)
	case indexRange:
		return fmt.Sprintf("log index %d is beyond any log's", v.a)
	case gap:
		return fmt.Sprintf("entry %d where entry %d belongs: the entries are not consecutive", v.a, v.b)
	case termsDecrease:
		return fmt.Sprintf("entry %d has term %d, lower than the entry before it", v.a, v.b)
	case entryTermAhead:
		return fmt.Sprintf("an append of term %d carries an entry of later term %d", v.b, v.a)
	case conflictsCommitted:
		return fmt.Sprintf("%s has entry %d of term %d but this node committed it with term %d: %s belongs to another cluster or its log was damaged", from, v.a, v.b, v.c, from)
	case commitBeyond:
		return fmt.Sprintf("leader %s believes this node has index %d but its log ends at %d: its data directory may have been wiped or belong to another cluster", from, v.a, v.b)
	case ackBeyond:
		return fmt.Sprintf("%s acknowledges index %d but this leader's log ends at %d: %s may belong to another cluster", from, v.a, v.b, from)
	case hintBeyond:
		return fmt.Sprintf("a rejection hints at index %d, beyond the rejected index %d", v.a, v.b)
	case voteLogTermAhead:
		return fmt.Sprintf("a candidate for term %d whose log ends in later term %d", v.b, v.a)
	case timeoutNowStranger:
		return fmt.Sprintf("an order to campaign at term %d from %s, which does not lead this node's term %d", v.a, from, v.b)
	case transferNotLeader:
		return "a leadership transfer request, but this node does not lead"
	case snapEmpty:
		return "an empty snapshot"
	case snapTerm:
		return fmt.Sprintf("a snapshot of term %d sent at term %d", v.a, v.b)
	case snapConf:
		return fmt.Sprintf("a snapshot with an inconsistent configuration: %v", v.err)
	case snapNotMember:
		return "a snapshot whose configuration does not include this node"
	}
	return fmt.Sprintf("reason %d", v.why)
}
