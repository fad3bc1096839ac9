package raftnode

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
)

// TestKeyExpiresEverywhereByOneEntry: a key put with a deadline 2 s away,
// through a follower, is gone from all three nodes within 3 s, deleted by a
// single OpExpire entry that every node applied; a key without a deadline
// stays.
func TestKeyExpiresEverywhereByOneEntry(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	f := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := time.Now()
	deadline := start.Add(2 * time.Second).UnixNano()
	r, err := c.nodes[f].Propose(ctx, kv.Command{Op: kv.OpPut, Key: []byte("temp"), Value: []byte("v"), Deadline: deadline})
	if err != nil || r.Status != kv.StatusOK {
		t.Fatalf("put with deadline via %s: %+v, %v", f, r, err)
	}
	if _, err := put(ctx, c.nodes[f], "kept", "v"); err != nil {
		t.Fatal(err)
	}
	for name, n := range c.nodes {
		got, ok, err := n.Get(ctx, []byte("temp"), true)
		if err != nil || !ok || got.Deadline != deadline {
			t.Fatalf("%s before the deadline: %+v %v %v, want the key with deadline %d", name, got, ok, err, deadline)
		}
	}

	var seen map[string]bool
	for {
		seen = map[string]bool{}
		for name, n := range c.nodes {
			_, ok := n.KV().Get([]byte("temp"))
			seen[name] = ok
		}
		gone := true
		for _, ok := range seen {
			gone = gone && !ok
		}
		if gone {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("3 s after a put with a 2 s deadline, nodes still holding the key: %v", seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Fatalf("key gone after %v, before its deadline", el)
	}

	// Exactly one entry after the put deleted it: an OpExpire at or past the
	// deadline, applied on every node.
	ln := c.nodes[leader]
	last := ln.KV().Applied()
	ents, err := ln.storage.Entries(uint64(r.Revision)+1, last+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var expires []uint64
	for _, e := range ents {
		if e.Type != raftpb.EntryNormal || len(e.Data) <= 8 {
			continue
		}
		cmd, err := kv.UnmarshalCommand(e.Data[8:])
		if err != nil {
			t.Fatalf("entry %d: %v", e.Index, err)
		}
		if cmd.Op == kv.OpExpire {
			if cmd.Now < deadline {
				t.Errorf("expire entry %d at %d, before the deadline %d", e.Index, cmd.Now, deadline)
			}
			expires = append(expires, e.Index)
		}
	}
	if len(expires) != 1 {
		t.Fatalf("expire entries after the put: %v, want one", expires)
	}
	for name, n := range c.nodes {
		if n.KV().Applied() < expires[0] {
			t.Errorf("%s applied %d, before the expire entry %d", name, n.KV().Applied(), expires[0])
		}
		if _, ok, err := n.Get(ctx, []byte("kept"), true); err != nil || !ok {
			t.Errorf("%s: the key without a deadline: %v %v", name, ok, err)
		}
		if d, ok := n.KV().NextDeadline(); ok {
			t.Errorf("%s still has a deadline %d", name, d)
		}
	}
}
