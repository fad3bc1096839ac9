package raftnode

import (
	"encoding/binary"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// Deliberately broken builds, to show that the chaos test (test/chaos) finds
// real bugs. Each is off unless its build tag is given:
//
//	-tags broken_localreads  a linearizable read is served from local state
//	                         without ReadIndex (brokenLocalReads)
//	-tags broken_earlyack    the leader acknowledges an unconditional put once
//	                         it is in its own log, before a quorum has it
//	                         (brokenEarlyAck)
//
// Never ship either: DISTKV_TAGS=broken_earlyack go test ./test/chaos builds
// the tested binary with one.

// ackEarly answers, on the leader, each unconditional put among ents (just
// persisted in its own log, not yet committed) as if it had been applied at
// its index. Only for the broken_earlyack build.
func (n *Node) ackEarly(ents []raftpb.Entry) {
	if n.leader.Load() != n.raftID {
		return
	}
	for _, e := range ents {
		if e.Type != raftpb.EntryNormal || len(e.Data) < 8 {
			continue
		}
		cmd, err := kv.UnmarshalCommand(e.Data[8:])
		if err != nil || cmd.Op != kv.OpPut || cmd.Cond != (kv.Cond{}) {
			continue
		}
		n.deliver(binary.BigEndian.Uint64(e.Data), proposalResult{res: kv.Result{Status: kv.StatusOK, Revision: int64(e.Index)}})
	}
}
