package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzPeerMessages feeds arbitrary Raft messages to a running node's peer
// handler (HandleRaft) and checks, after every input, that the node has not
// stopped and its loop still answers, and every 64 inputs (or second) that
// a write through it still succeeds. A Raft panic would kill the process.
//
// The node is the only voter of its group, with two learners that do not
// exist, so that it leads, follows whoever claims a higher term, answers for
// its learners' acknowledgements, and always gets back to leading by itself:
// whatever a stranger makes it do, it must serve again within an election
// timeout. One node serves all the inputs of a process.
//
// An input is a sequence of chunks: a mode byte, a 2-byte length and that
// many bytes of a raftpb.Message. Unless the mode says to keep them, the
// message is addressed to the node, comes from a learner, and carries the
// node's term (see fuzzTarget.message), so that most inputs get past the
// cheapest checks.
func FuzzPeerMessages(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	h := startFuzzTarget(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h.feed(t, data)
	})
}

// Mode bits of a chunk.
const (
	fuzzKeepTo   = 1 << 0 // To as decoded, else the node
	fuzzKeepFrom = 1 << 1 // From as decoded, else a learner
	fuzzKeepTerm = 1 << 2 // Term as decoded, else the node's term + delta
	fuzzFitLog   = 1 << 3 // indexes moved next to the end of the node's log
	fuzzFromN3   = 1 << 4 // the learner is n3, else n2
	// Bits 5-6 are the term delta plus one: -1, 0, 1 or 2. A forwarded
	// proposal or read request gets no term at delta -1.
	fuzzDeltaShift = 5
)

// fuzzTarget is the node under fuzzing.
type fuzzTarget struct {
	n           *Node
	ids         [3]uint64 // n1 (the node), n2, n3
	inputs      int
	lastPropose time.Time
}

func startFuzzTarget(f *testing.F) *fuzzTarget {
	nw := newMemNet(1)
	members := []Member{
		{Name: "n1", Peer: "mem:1", HTTP: "127.0.0.1:8001"},
		{Name: "n2", Peer: "mem:2", HTTP: "127.0.0.1:8002"},
		{Name: "n3", Peer: "mem:3", HTTP: "127.0.0.1:8003"},
	}
	h := &fuzzTarget{ids: [3]uint64{RaftID("n1"), RaftID("n2"), RaftID("n3")}}
	// The guard's log lines are formatted, then thrown away.
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := Open(Config{
		Self:          members[0],
		Members:       members[:1],
		DataDir:       filepath.Join(f.TempDir(), "n1"),
		TickInterval:  10 * time.Millisecond,
		ElectionTicks: 10,
		Transport:     nw.transport(h.ids[0]),
		Logger:        logger,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Stop() })
	nw.attach(n)
	h.n = n
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n.Ready() != nil {
		if ctx.Err() != nil {
			f.Fatalf("node not ready: %v", n.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, m := range members[1:] {
		if err := n.AddMember(ctx, m, true); err != nil {
			f.Fatalf("add learner %s: %v", m.Name, err)
		}
	}
	return h
}

// feed hands the messages of data to the node and checks it.
func (h *fuzzTarget) feed(t *testing.T, data []byte) {
	var msgs []raftpb.Message
	for len(data) >= 3 {
		mode := data[0]
		size := int(binary.LittleEndian.Uint16(data[1:3]))
		data = data[3:]
		size = min(size, len(data))
		var m raftpb.Message
		if err := m.Unmarshal(data[:size]); err == nil {
			if h.message(&m, mode) {
				msgs = append(msgs, m)
			}
		}
		data = data[size:]
	}
	if len(msgs) > 0 {
		h.n.HandleRaft(h.n.cfg.Shard, msgs)
	}
	h.stepped(t)
	h.inputs++
	if h.inputs%64 == 0 || time.Since(h.lastPropose) > time.Second {
		h.serves(t)
		h.lastPropose = time.Now()
	}
}

// message adapts m as mode says and reports whether to send it. Membership
// changes are not sent: a member may legitimately remove this node or add
// voters that do not exist, and the node then stops or loses its quorum, as
// it should.
func (h *fuzzTarget) message(m *raftpb.Message, mode byte) bool {
	if mode&fuzzKeepTo == 0 {
		m.To = h.ids[0]
	}
	if mode&fuzzKeepFrom == 0 {
		m.From = h.ids[1]
		if mode&fuzzFromN3 != 0 {
			m.From = h.ids[2]
		}
	}
	if mode&fuzzKeepTerm == 0 {
		delta := int64(mode>>fuzzDeltaShift&3) - 1
		term := int64(h.n.term.Load()) + delta
		if delta < 0 && (m.Type == raftpb.MsgProp || m.Type == raftpb.MsgReadIndex) {
			term = 0
		}
		m.Term = uint64(max(term, 0))
	}
	if mode&fuzzFitLog != 0 {
		last, _ := h.n.storage.LastIndex()
		near := func(x uint64) uint64 { return uint64(max(int64(last)-8+int64(x%32), 0)) }
		m.Index = near(m.Index)
		m.Commit = near(m.Commit)
		m.RejectHint = near(m.RejectHint)
		if m.Type == raftpb.MsgApp && m.LogTerm == 0 {
			m.LogTerm, _ = h.n.storage.Term(m.Index)
		}
		for i := range m.Entries {
			m.Entries[i].Index = m.Index + 1 + uint64(i)
		}
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != raftpb.EntryConfChange && e.Type != raftpb.EntryConfChangeV2 {
			continue
		}
		if _, err := decodeConfChange(e); err == nil && (m.Type == raftpb.MsgProp || m.Type == raftpb.MsgApp) {
			return false
		}
	}
	return true
}

// stepped waits until the loop has stepped what HandleRaft queued, and fails
// if the node stopped.
func (h *fuzzTarget) stepped(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.n.recvc) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
	}
	select {
	case h.n.funcc <- func() {}:
	case <-h.n.Done():
		t.Fatalf("node stopped: %v", h.n.Err())
	case <-time.After(time.Until(deadline)):
		t.Fatalf("loop does not answer (%d messages queued)", len(h.n.recvc))
	}
	if err := h.n.Err(); err != nil {
		t.Fatalf("node failed: %v", err)
	}
}

// serves fails unless a write through the node succeeds within 20 seconds.
func (h *fuzzTarget) serves(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil {
		// A write forwarded to a leader that does not exist is lost; the
		// node leads again within an election timeout (at most 200 ms).
		actx, acancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err = put(actx, h.n, "fuzz", "v")
		acancel()
		if err == nil {
			return
		}
		if errors.Is(err, ErrStopped) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("node no longer serves writes: %v (status %+v)", err, h.n.Status())
}

// fuzzSeeds encodes the hostile messages of hostileCases, and a few
// legitimate ones, as inputs.
func fuzzSeeds() [][]byte {
	ids := map[uint64]uint64{1: RaftID("n1"), 2: RaftID("n2"), 3: RaftID("n3")}
	var seeds [][]byte
	for _, c := range hostileCases() {
		m := c.m
		mode := byte(1 << fuzzDeltaShift) // the node's term
		if id, ok := ids[m.To]; ok {
			m.To = id
		}
		if c.m.To != 1 {
			mode |= fuzzKeepTo
		}
		switch m.From {
		case 2:
		case 3:
			mode |= fuzzFromN3
		default:
			if id, ok := ids[m.From]; ok {
				m.From = id
			}
			mode |= fuzzKeepFrom
		}
		switch {
		case m.Term == 0 && (m.Type == raftpb.MsgProp || m.Type == raftpb.MsgReadIndex):
			mode &^= 3 << fuzzDeltaShift // delta -1: no term
		case m.Term == 0 || m.Term > 9:
			mode |= fuzzKeepTerm
		case m.Term > 3:
			mode = mode&^(3<<fuzzDeltaShift) | 3<<fuzzDeltaShift
		}
		seeds = append(seeds, fuzzChunk(nil, mode, m))
	}
	put := raftpb.Entry{Data: putPayload("seed")}
	seeds = append(seeds,
		fuzzChunk(nil, 1<<fuzzDeltaShift|fuzzFitLog, raftpb.Message{Type: raftpb.MsgHeartbeat, Commit: 9}),
		fuzzChunk(nil, 2<<fuzzDeltaShift|fuzzFitLog, raftpb.Message{Type: raftpb.MsgApp, Index: 8, Commit: 9, Entries: []raftpb.Entry{put, put}}),
		fuzzChunk(fuzzChunk(nil, 1<<fuzzDeltaShift|fuzzFitLog, raftpb.Message{Type: raftpb.MsgAppResp, Index: 8}),
			1<<fuzzDeltaShift|fuzzFitLog|fuzzFromN3, raftpb.Message{Type: raftpb.MsgAppResp, Index: 12, Reject: true, RejectHint: 9}),
		fuzzChunk(nil, 0, raftpb.Message{Type: raftpb.MsgProp, Entries: []raftpb.Entry{put}}),
		fuzzChunk(nil, 0, raftpb.Message{Type: raftpb.MsgReadIndex, Entries: []raftpb.Entry{{Data: []byte("ctx")}}}),
		fuzzChunk(nil, 3<<fuzzDeltaShift, raftpb.Message{Type: raftpb.MsgVote, Index: 207, LogTerm: 1}),
		fuzzChunk(nil, 1<<fuzzDeltaShift, raftpb.Message{Type: raftpb.MsgTimeoutNow}),
	)
	return seeds
}

// fuzzChunk appends m as a chunk of mode to b.
func fuzzChunk(b []byte, mode byte, m raftpb.Message) []byte {
	data, err := m.Marshal()
	if err != nil {
		panic(err)
	}
	b = append(b, mode)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}
