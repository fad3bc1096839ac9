package raftnode

import (
	"fmt"
	"os"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// Test hooks: deliberately broken behaviour, to show that the chaos test's
// checker (test/chaos) finds real bugs. They are compiled in only with the
// build tag testhooks (testhooks_on.go); in any other build testHooksBuilt is
// the constant false and every hook below folds away. A binary built with the
// tag breaks the one thing DISTKV_TESTHOOK names when a node opens:
//
//	localreads  a linearizable read is served from local state without
//	            ReadIndex
//	earlyack    the leader acknowledges an unconditional put once it is in
//	            its own log, before a quorum has it
//
// `make chaos-selfcheck` builds the tagged binary and passes only if a chaos
// round fails on each. Never ship it.
type testHook uint8

const (
	hookNone testHook = iota
	hookLocalReads
	hookEarlyAck
)

// TestHookEnv names the environment variable that picks the hook.
const TestHookEnv = "DISTKV_TESTHOOK"

// testHookFromEnv reads DISTKV_TESTHOOK. Setting it for a binary without
// hooks is an error rather than a silent no-op: a self-check that ran the
// real binary would pass for the wrong reason.
func testHookFromEnv() (testHook, error) {
	v := os.Getenv(TestHookEnv)
	if v == "" {
		return hookNone, nil
	}
	if !testHooksBuilt {
		return hookNone, fmt.Errorf("%s=%s: this binary has no test hooks (build it with -tags testhooks)", TestHookEnv, v)
	}
	switch v {
	case "localreads":
		return hookLocalReads, nil
	case "earlyack":
		return hookEarlyAck, nil
	}
	return hookNone, fmt.Errorf("%s=%q: want localreads or earlyack", TestHookEnv, v)
}

// hooked reports whether this node runs with test hook h.
func (n *Node) hooked(h testHook) bool { return testHooksBuilt && n.testHook == h }

// ackEarly answers, on the leader, each unconditional put among ents (just
// persisted in its own log, not yet committed) as if it had been applied at
// its index: the earlyack hook.
func (n *Node) ackEarly(ents []raftpb.Entry) {
	if n.leader.Load() != n.raftID {
		return
	}
	for _, e := range ents {
		if e.Type != raftpb.EntryNormal {
			continue
		}
		id, _, enc, err := DecodePayload(e.Data)
		if err != nil {
			continue
		}
		cmd, err := kv.UnmarshalCommand(enc)
		if err != nil || cmd.Op != kv.OpPut || cmd.Cond != (kv.Cond{}) {
			continue
		}
		n.deliver(id, proposalResult{res: kv.Result{Status: kv.StatusOK, Revision: int64(e.Index)}})
	}
}
