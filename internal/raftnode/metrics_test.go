package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// TestMetricsMoveWithTheirEvents writes through the leader of a three-node
// cluster, lets a stopped follower fall behind the compacted log and catch
// up by snapshot, and checks that each counter of Metrics moved with what it
// counts.
func TestMetricsMoveWithTheirEvents(t *testing.T) {
	syncs := map[string]*atomic.Int64{}
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 200
		cfg.LogEntriesKept = 50
		if syncs[cfg.Self.Name] == nil {
			syncs[cfg.Self.Name] = &atomic.Int64{}
		}
		n := syncs[cfg.Self.Name]
		cfg.WALSyncObserver = func(d time.Duration) {
			if d > 0 {
				n.Add(1)
			}
		}
	})
	leader := c.waitLeader(5 * time.Second)
	lagger := c.follower(leader)
	for name, n := range c.nodes {
		m := n.Metrics()
		if m.LeaderChanges < 1 || m.Term < 1 || !m.HasLeader || m.Leader != (name == leader) {
			t.Errorf("%s after the election: %+v", name, m)
		}
	}
	before := c.nodes[leader].Metrics()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := put(ctx, c.nodes[leader], fmt.Sprintf("k%04d", i), "v"); err != nil {
				t.Fatal(err)
			}
		}
	}
	const writes = 300
	write(0, writes)
	after := c.nodes[leader].Metrics()
	t.Logf("leader %s before %+v after %+v", leader, before, after)
	if d := after.EntriesCommitted - before.EntriesCommitted; d < writes {
		t.Errorf("entries committed moved by %d, want >= %d", d, writes)
	}
	if d := after.EntriesApplied - before.EntriesApplied; d < writes {
		t.Errorf("entries applied moved by %d, want >= %d", d, writes)
	}
	if after.AppliedIndex > after.CommitIndex {
		t.Errorf("applied %d > committed %d", after.AppliedIndex, after.CommitIndex)
	}
	if d := after.WAL.Records - before.WAL.Records; d < writes {
		t.Errorf("WAL records moved by %d, want >= %d", d, writes)
	}
	if after.WAL.BytesWritten <= before.WAL.BytesWritten || after.WAL.Syncs <= before.WAL.Syncs {
		t.Errorf("WAL before %+v after %+v", before.WAL, after.WAL)
	}
	if got := syncs[leader].Load(); got != int64(after.WAL.Syncs) {
		t.Errorf("WALSyncObserver called %d times, WAL syncs %d", got, after.WAL.Syncs)
	}
	if after.SnapshotsTaken < 1 {
		t.Errorf("no snapshot taken after %d writes with SnapshotEntries 200", writes)
	}
	if after.ProposalsFailed != 0 || after.LeaderChanges != before.LeaderChanges {
		t.Errorf("failures or leader changes without a cause: %+v", after)
	}

	c.stop(lagger)
	write(writes, 1000)
	n := c.start(lagger)
	waitCaughtUp(t, 30*time.Second, n, c.nodes[leader])
	if m := n.Metrics(); m.SnapshotsReceived < 1 {
		t.Errorf("%s caught up: %+v", lagger, m)
	}
	waitUntil(t, 10*time.Second, "the leader counts the snapshot sent",
		func() bool { return c.nodes[leader].Metrics().SnapshotsSent >= 1 },
		func() string { return fmt.Sprintf("%+v", c.nodes[leader].Metrics()) })
}

// TestMetricsCountFailedProposals: a write the node cannot make is counted,
// one refused as invalid is not.
func TestMetricsCountFailedProposals(t *testing.T) {
	n := openNode(t, testConfig(t.TempDir()))
	ctx := context.Background()
	if _, err := n.Propose(ctx, kv.Command{Op: kv.Op(200), Key: []byte("k")}); !errors.Is(err, kv.ErrUnknownOp) {
		t.Fatalf("proposal of an unknown operation = %v", err)
	}
	if _, err := put(ctx, n, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if m := n.Metrics(); m.ProposalsFailed != 0 || m.EntriesApplied < 1 {
		t.Fatalf("after an invalid and a good write: %+v", m)
	}
	n.Stop()
	if _, err := put(ctx, n, "k", "v"); !errors.Is(err, ErrStopped) {
		t.Fatalf("put on a stopped node = %v", err)
	}
	if m := n.Metrics(); m.ProposalsFailed != 1 {
		t.Fatalf("after a write on a stopped node: %+v", m)
	}
}
