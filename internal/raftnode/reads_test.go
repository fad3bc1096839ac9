package raftnode

import (
	"encoding/binary"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// A read that arrives after its node handed a round to Raft must not be
// answered by that round: the round's read index may predate a write
// acknowledged before the read arrived. It joins the next round, which goes
// out only once the first is answered, and gets its own read index.
func TestReadJoinsOnlyARoundNotYetIssued(t *testing.T) {
	st := raft.NewMemoryStorage()
	if err := st.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{
		Index: 1, Term: 1, ConfState: raftpb.ConfState{Voters: []uint64{1}}}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1,
		Storage: st, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 4})
	if err != nil {
		t.Fatal(err)
	}
	q := readQueue{wake: make(chan struct{}, 1), nonce: 7}

	a, b := q.join(), q.join()
	if a != b {
		t.Fatal("two reads before any round was issued got different rounds")
	}
	// Followers' requests reaching this node as leader join rounds the same way.
	q.joinRemote(2, []byte("early"))
	q.issue(rn)
	if len(q.inflight) != 1 {
		t.Fatalf("%d rounds in flight after issue, want 1", len(q.inflight))
	}
	late := q.join()
	if late == a {
		t.Fatal("a read that arrived after its round was handed to Raft joined that round")
	}
	q.joinRemote(3, []byte("late"))
	q.issue(rn) // one round in flight: the late read waits for the next
	if len(q.inflight) != 1 {
		t.Fatalf("%d rounds in flight, want 1", len(q.inflight))
	}

	// The request context issue gave round id: nonce, then id.
	ctx := func(id uint64) []byte {
		b := make([]byte, 16)
		binary.BigEndian.PutUint64(b, q.nonce)
		binary.BigEndian.PutUint64(b[8:], id)
		return b
	}
	out := q.observe([]raft.ReadState{{Index: 5, RequestCtx: ctx(1)}}, 1, 9)
	if len(out) != 1 || out[0].Type != raftpb.MsgReadIndexResp || out[0].To != 2 || out[0].Index != 5 || out[0].Term != 9 ||
		len(out[0].Entries) != 1 || string(out[0].Entries[0].Data) != "early" {
		t.Fatalf("answers to followers after the first round = %+v, want the early request's only, at index 5", out)
	}
	q.release(4)
	select {
	case <-a.done:
		t.Fatal("round answered before its read index was applied")
	default:
	}
	q.release(5)
	<-a.done
	if a.err != nil {
		t.Fatal(a.err)
	}
	select {
	case <-late.done:
		t.Fatal("the late read was answered with the earlier round's read index")
	default:
	}
	q.issue(rn)
	if _, ok := q.inflight[2]; !ok || len(q.inflight[2]) != 1 || q.inflight[2][0] != late {
		t.Fatalf("the late read's round was not issued next: %v", q.inflight)
	}
	out = q.observe([]raft.ReadState{{Index: 8, RequestCtx: ctx(2)}}, 1, 9)
	if len(out) != 1 || out[0].To != 3 || out[0].Index != 8 || string(out[0].Entries[0].Data) != "late" {
		t.Fatalf("answers after the second round = %+v, want the late request's, at index 8", out)
	}
}
