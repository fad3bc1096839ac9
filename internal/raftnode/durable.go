package raftnode

import (
	"encoding/binary"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/lattrace"
)

// A leader's durable notice tells the followers how far its own log is
// durable, so that with at most three voters a follower can learn that an
// entry is committed without waiting for the leader to hear its
// acknowledgement and send the commit index back.
//
// An entry is committed once the leader that created it has it on a majority
// of the voters (the Raft paper, 5.4.2); etcd's Raft counts the leader once
// its own append is durable and a follower once its acknowledgement arrives.
// With at most three voters the leader and one follower are a majority. So a
// follower that holds, durably, the entry at index X of term T, and hears
// from the leader of T that the leader holds X of T durably, knows X is
// committed: both logs match up to X (one leader per term, Raft's log
// matching), and two of at most three voters hold it. The leader itself would
// commit X on the follower's acknowledgement, which the follower then sends
// anyway. The configuration must be the one that decides X's commitment: the
// follower's applied configuration, with no configuration change between it
// and X in the log (etcd's Raft takes changes into effect when applied), and
// not a joint one.
//
// Followers of a write forwarded by a follower gain most: the write is
// acknowledged once the follower's own append is durable and the leader's
// notice has arrived, instead of after a further round trip to the leader
// (follower acknowledgement, leader commit, commit index back).
//
// The notice travels as a MsgHeartbeat whose context is the notice and whose
// commit index is 0: a node of an earlier version treats it as a heartbeat
// that changes nothing (it answers it, and the leader ignores an answer whose
// context names no read), while this version takes it off the wire (see
// Node.step).

const (
	noticeSize  = 20
	noticeMagic = 0x6e64_6b64 // "dkdn" in little endian
)

// durableNotice is a leader's claim: it is the leader of term, and its log
// holds the entry at index, of term term, durably.
type durableNotice struct {
	from, term, index uint64
}

func encodeNotice(index, term uint64) []byte {
	b := make([]byte, noticeSize)
	binary.LittleEndian.PutUint32(b, noticeMagic)
	binary.LittleEndian.PutUint64(b[4:], index)
	binary.LittleEndian.PutUint64(b[12:], term)
	return b
}

// decodeNotice reads a notice from m, a message from a peer; false if m is
// not one.
func decodeNotice(m *raftpb.Message) (durableNotice, bool) {
	b := m.Context
	if m.Type != raftpb.MsgHeartbeat || len(b) != noticeSize || binary.LittleEndian.Uint32(b) != noticeMagic {
		return durableNotice{}, false
	}
	n := durableNotice{from: m.From, term: m.Term, index: binary.LittleEndian.Uint64(b[4:])}
	if binary.LittleEndian.Uint64(b[12:]) != n.term || n.index == 0 {
		return durableNotice{}, false // only entries of the leader's own term
	}
	return n, true
}

// smallConfig reports whether cs is a configuration, not joint, of at most
// three voters among which are a and b: then a and b are a majority.
func smallConfig(cs *raftpb.ConfState, a, b uint64) bool {
	return len(cs.VotersOutgoing) == 0 && len(cs.Voters) <= 3 &&
		slices.Contains(cs.Voters, a) && slices.Contains(cs.Voters, b)
}

// noteForwarded records, as the leader, that ents, an append it hands out,
// hold the proposals the followers in n.forwarders forwarded since the last
// one. Called on the loop with each append handed out.
func (n *Node) noteForwarded(ents []raftpb.Entry) {
	if len(n.forwarders) == 0 || len(ents) == 0 {
		return
	}
	if n.forwarded == nil {
		n.forwarded = map[uint64]uint64{}
	}
	for _, id := range n.forwarders {
		n.forwarded[id] = ents[len(ents)-1].Index
	}
	n.forwarders = n.forwarders[:0]
}

// noticeDurable sends, as the leader, a durable notice for the entry at index
// of term logTerm, which its own append has just made durable, to the
// followers that wait for a write they forwarded (the entries holding it are
// not known committed yet), unless the commit index already covers it: a
// notice to any other follower would only wake it. Called on the loop after
// that append's response is stepped.
func (n *Node) noticeDurable(index, logTerm uint64) {
	st := n.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.Term != logTerm || st.Commit >= index ||
		!smallConfig(&n.confState, n.raftID, n.raftID) {
		return
	}
	var ctx []byte
	msgs := n.noticeBuf[:0]
	for _, id := range n.confState.Voters {
		if fwd, ok := n.forwarded[id]; ok && id != n.raftID {
			if fwd <= st.Commit {
				delete(n.forwarded, id)
				continue
			}
			if ctx == nil {
				ctx = encodeNotice(index, logTerm)
			}
			msgs = append(msgs, raftpb.Message{Type: raftpb.MsgHeartbeat, To: id, From: n.raftID, Term: st.Term, Context: ctx})
		}
	}
	if len(msgs) == 0 {
		return
	}
	n.noticed = max(n.noticed, index)
	lattrace.Mark(lattrace.NoticeSent, index, 0)
	n.send(msgs)
	clear(msgs)
	n.noticeBuf = msgs[:0]
}

// takeNotice keeps a notice from the leader, the newest, and commits what it
// lets this follower commit. Called on the loop.
func (n *Node) takeNotice(nt durableNotice) {
	if nt.term < n.notice.term || (nt.term == n.notice.term && nt.index <= n.notice.index) {
		return
	}
	n.notice = nt
	lattrace.Mark(lattrace.NoticeTaken, nt.index, 0)
	n.commitNoticed()
}

// commitNoticed makes Raft commit, on this follower, the entry of the newest
// notice if that is safe (see the top of this file). Called on the loop when
// a notice arrives and when an append of this node becomes durable.
func (n *Node) commitNoticed() {
	nt := n.notice
	if nt.index == 0 {
		return
	}
	st := n.rn.BasicStatus()
	if st.Term > nt.term || st.Commit >= nt.index {
		n.notice = durableNotice{} // from an earlier term, or covered
		return
	}
	if !noticeCommits(nt, st, &n.confState, n.raftID, n.applied.Load(), n.storage) {
		return
	}
	// As if the leader had sent this commit index: Raft checks the log
	// matches at index, commits it and acknowledges it to the leader (true:
	// it is durable here).
	if err := n.rn.Step(raftpb.Message{Type: raftpb.MsgApp, From: nt.from, To: n.raftID, Term: nt.term,
		Index: nt.index, LogTerm: nt.term, Commit: nt.index}); err != nil {
		n.logger.Debug("noticed commit not taken", "index", nt.index, "err", err)
	}
	n.notice = durableNotice{}
}

// logReader is the part of the durable log noticeCommits reads.
type logReader interface {
	Term(i uint64) (uint64, error)
	Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error)
}

// noticeCommits reports whether nt lets self, a node in state st with
// configuration cs that has applied up to applied and whose durable log is
// log, take nt's entry as committed: self follows nt's sender in nt's term,
// the two are a majority of a configuration of at most three voters that no
// change between applied and the entry alters, and self holds the entry of
// nt's term durably (so both logs match up to it).
func noticeCommits(nt durableNotice, st raft.BasicStatus, cs *raftpb.ConfState, self, applied uint64, log logReader) bool {
	if st.RaftState != raft.StateFollower || st.Term != nt.term || st.Lead != nt.from || st.Commit >= nt.index {
		return false
	}
	if !smallConfig(cs, self, nt.from) {
		return false
	}
	if t, err := log.Term(nt.index); err != nil || t != nt.term {
		return false
	}
	if nt.index <= applied || nt.index-applied > maxNoticeScan {
		return false
	}
	ents, err := log.Entries(applied+1, nt.index+1, noLimit)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Type != raftpb.EntryNormal {
			return false // a configuration change not yet in effect here
		}
	}
	return true
}

const (
	// maxNoticeScan bounds the entries a follower checks for configuration
	// changes before it takes a notice; one further behind waits for the
	// leader's commit index.
	maxNoticeScan = 4096
	noLimit       = ^uint64(0)
)
