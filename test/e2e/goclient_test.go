package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/distkv/distkv/client"
)

// TestGoClient drives a real three-node cluster with package client: a
// client given one follower learns the other members with Sync and starts
// with the leader; writes, conditional writes, a transaction and a paged
// scan go through; then the leader is killed, and the client's next write
// fails over to a survivor and waits out the election.
func TestGoClient(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader(10 * time.Second)
	var follower string
	for _, n := range c.names {
		if n != leader {
			follower = n
			break
		}
	}
	c.waitHTTPAddrs(follower)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.New(client.Config{Endpoints: []string{c.http[follower]}, Timeout: 3 * time.Second, RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range c.names {
		want = append(want, "http://"+c.http[n])
	}
	got := cl.Endpoints()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("endpoints after Sync: %q, want every member's %q", got, want)
	}

	res, err := cl.Put(ctx, "config", "v1")
	if err != nil || res.Version != 1 || res.Key != "config" || res.Revision == 0 {
		t.Fatalf("put: %+v %v", res, err)
	}
	if _, err := cl.Put(ctx, "config", "v2", client.PrevVersion(1)); err != nil {
		t.Fatal(err)
	}
	_, err = cl.Put(ctx, "config", "v3", client.PrevVersion(1))
	var conflict *client.ConflictError
	if !errors.As(err, &conflict) || conflict.Version != 2 || conflict.Key != "config" || conflict.Revision <= res.Revision {
		t.Fatalf("put with a stale version: %v", err)
	}
	kv, err := cl.Get(ctx, "config")
	if err != nil || kv.Value != "v2" || kv.Version != 2 || kv.Revision != conflict.Revision {
		t.Fatalf("get: %+v %v", kv, err)
	}
	txn, err := cl.Txn(ctx, client.Txn{
		Compare: []client.Compare{client.CompareVersion("config", "==", 2), client.KeyMissing("lock")},
		Success: []client.Op{client.OpPutJSON("lock", []byte(`{"owner":"me"}`)), client.OpGet("config")},
	})
	if err != nil || !txn.Succeeded || len(txn.Responses) != 2 || txn.Responses[1].KV == nil || txn.Responses[1].KV.Value != "v2" {
		t.Fatalf("txn: %+v %v", txn, err)
	}
	for i := range 5 {
		if _, err := cl.Put(ctx, fmt.Sprintf("scan/%d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for kv, err := range cl.Scan(ctx, client.Range{Prefix: "scan/", PageSize: 2}, client.Stale()) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, kv.Key)
	}
	// A stale read through the node that took the writes (the leader, which
	// the client prefers after Sync) sees them all.
	if !slices.Equal(keys, []string{"scan/0", "scan/1", "scan/2", "scan/3", "scan/4"}) {
		t.Fatalf("scan: %q", keys)
	}

	c.servers[leader].kill9()
	res, err = cl.Put(ctx, "after", "failover")
	if err != nil || res.Version != 1 {
		t.Fatalf("put after the leader %s was killed: %+v %v", leader, res, err)
	}
	kv, err = cl.Get(ctx, "after")
	if err != nil || kv.Value != "failover" {
		t.Fatalf("get after failover: %+v %v", kv, err)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.Leader == "" || st.Leader == leader || st.ID == leader {
		t.Fatalf("status after failover: %+v %v", st, err)
	}
	if _, err := cl.Delete(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Get(ctx, "after"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}
