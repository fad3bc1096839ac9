package raftnode

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

// syncGate is a file system whose fsyncs block, once armed, until released.
type syncGate struct {
	*vfs.ErrorFS
	armed   atomic.Bool
	entered chan struct{} // closed when a sync blocks
	release chan struct{}
	once    sync.Once
	freed   sync.Once
}

// free releases blocked syncs and disarms the gate.
func (g *syncGate) free() {
	g.armed.Store(false)
	g.freed.Do(func() { close(g.release) })
}

func newSyncGate() *syncGate {
	g := &syncGate{entered: make(chan struct{}), release: make(chan struct{})}
	g.ErrorFS = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if op == vfs.OpSync && g.armed.Load() {
			g.once.Do(func() { close(g.entered) })
			<-g.release
		}
		return vfs.Fault{}
	})
	return g
}

// TestLeaderServesWhileItsLogSyncs: the leader's Raft loop does not wait for
// its own disk. While an fsync of its log is stuck, it still answers a
// linearizable read (which needs a quorum's heartbeat answers, not its disk)
// and keeps taking proposals, and the write stuck behind the fsync completes
// once it returns.
func TestLeaderServesWhileItsLogSyncs(t *testing.T) {
	gates := map[string]*syncGate{}
	for _, name := range []string{"n1", "n2", "n3"} {
		gates[name] = newSyncGate()
	}
	c := newCluster(t, 3, func(cfg *Config) { cfg.FS = gates[cfg.Self.Name] })
	// Registered after the cluster's cleanup, so it runs first: a stuck
	// fsync would keep the nodes from stopping.
	t.Cleanup(func() {
		for _, g := range gates {
			g.free()
		}
	})
	leader := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[leader], "k", "before"); err != nil {
		t.Fatal(err)
	}
	g := gates[leader]
	// The followers' acknowledgements of what follows are held back: two of
	// them would commit k2 without the leader's disk, and a read index past
	// k2 cannot be served before the leader has k2 durably and applied it,
	// so whether the read below was answered depended on which came first
	// (it failed 2 in 30 runs). Heartbeat answers still flow, and they are
	// all the read needs.
	lid := RaftID(leader)
	k3 := kv.Command{Op: kv.OpPut, Key: []byte("k3"), Value: []byte("also")}.Marshal()
	isK3 := func(e raftpb.Entry) bool { return bytes.HasSuffix(e.Data, k3) }
	k3To := map[uint64]bool{} // the followers sent k3's entry; guarded by c.nw.mu
	c.nw.mu.Lock()
	c.nw.lose = func(m raftpb.Message) bool {
		if m.From == lid && m.Type == raftpb.MsgApp && slices.ContainsFunc(m.Entries, isK3) {
			k3To[m.To] = true
		}
		return m.To == lid && m.Type == raftpb.MsgAppResp
	}
	c.nw.mu.Unlock()
	g.armed.Store(true)
	stuck := make(chan error, 1)
	go func() {
		_, err := put(ctx, c.nodes[leader], "k2", "stuck")
		stuck <- err
	}()
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the leader never synced its log")
	}
	start := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	got, ok, err := c.nodes[leader].Get(rctx, []byte("k"), true)
	rcancel()
	if err != nil || !ok || string(got.Value) != "before" {
		t.Fatalf("linearizable read on the leader while its fsync is stuck: %q %v %v after %v", got.Value, ok, err, time.Since(start))
	}
	took := time.Since(start)
	// Another write is taken (it reaches the followers) meanwhile.
	second := make(chan error, 1)
	go func() {
		_, err := put(ctx, c.nodes[leader], "k3", "also")
		second <- err
	}()
	sentK3 := func() int {
		c.nw.mu.Lock()
		defer c.nw.mu.Unlock()
		return len(k3To)
	}
	waitUntil(t, 5*time.Second, "the leader sends k3 to both followers while its fsync is stuck",
		func() bool { return sentK3() == 2 },
		func() string { return fmt.Sprintf("sent to %d", sentK3()) })
	c.nw.heal()
	g.free()
	for _, ch := range []chan error{stuck, second} {
		if err := <-ch; err != nil {
			t.Fatalf("write stuck behind the fsync: %v", err)
		}
	}
	if v, ok := mustGet(t, c.nodes[c.follower(leader)], "k3"); !ok || v != "also" {
		t.Fatalf("k3 = %q %v", v, ok)
	}
	t.Logf("linearizable read answered in %v while the leader's fsync was stuck", took)
}
