package raftnode

import (
	"context"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// TestRequestProposedAgainAfterLeaderChange: a write with a request id that
// a follower forwards to a leader just cut off is proposed again to the new
// leader and answered, instead of waiting out its deadline, and is applied
// once even though it was proposed twice.
func TestRequestProposedAgainAfterLeaderChange(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(10 * time.Second)
	follower := c.follower(leader)
	c.nw.mu.Lock()
	for name := range c.nodes {
		if name != leader {
			c.nw.cut[[2]uint64{RaftID(name), RaftID(leader)}] = true
			c.nw.cut[[2]uint64{RaftID(leader), RaftID(name)}] = true
		}
	}
	c.nw.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v"),
		Request: kv.RequestID{Client: []byte("c1"), Request: []byte("r1")},
		Time:    time.Now().UnixNano(), TTL: int64(time.Hour)}
	start := time.Now()
	res, err := c.nodes[follower].Propose(ctx, cmd)
	if err != nil {
		t.Fatalf("write forwarded to a leader that was cut off: %v (after %v)", err, time.Since(start))
	}
	t.Logf("answered after %v at revision %d", time.Since(start), res.Revision)

	// Whichever copies reached the log, the key was written once.
	for name, n := range c.nodes {
		if name == leader {
			continue
		}
		got, ok, err := n.Get(ctx, []byte("k"), true)
		if err != nil || !ok || string(got.Value) != "v" || got.Version != 1 {
			t.Fatalf("%s reads %+v (found %v, %v); want v at version 1", name, got, ok, err)
		}
	}
	again, err := c.nodes[follower].Propose(ctx, cmd)
	if err != nil || again.Revision != res.Revision {
		t.Fatalf("the same request again: revision %d (%v), want the first answer's %d", again.Revision, err, res.Revision)
	}
}
