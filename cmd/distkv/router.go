package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
)

// The key space is cut into ranges, each a Raft group on the node's Host
// (raftnode.Bounds). Every node holds a replica of every range (placement
// across nodes is not built yet), so a request for a key goes to the local
// group whose range holds it, which forwards a write to its leader as Raft
// does. A group that a split just made smaller answers ErrWrongRange; the
// request then asks again, as it does while a split opens the new group.

// routeRetry is how long the router waits before it looks again for the
// group of a key that a split is moving.
const routeRetry = time.Millisecond

// groups returns the node's groups sorted by the first key of their range.
func (b backend) groups() []*raftnode.Node {
	gs := b.n.Host().Groups()
	slices.SortFunc(gs, func(x, y *raftnode.Node) int { return bytes.Compare(x.Bounds().Start, y.Bounds().Start) })
	return gs
}

// groupFor returns the group that holds key, waiting while a split opens it.
func (b backend) groupFor(ctx context.Context, key []byte) (*raftnode.Node, error) {
	for {
		if g := b.n.Host().GroupFor(key); g != nil {
			return g, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no range holds key %q on this node: %w", key, ctx.Err())
		case <-time.After(routeRetry):
		}
	}
}

// routed runs f on the group that holds key, again when a split moved it.
func routed[T any](ctx context.Context, b backend, key []byte, f func(*raftnode.Node) (T, error)) (T, error) {
	for {
		g, err := b.groupFor(ctx, key)
		if err != nil {
			var zero T
			return zero, err
		}
		v, err := f(g)
		if !errors.Is(err, raftnode.ErrWrongRange) || ctx.Err() != nil {
			return v, err
		}
	}
}

// Propose sends a write to the range that holds its keys. A transaction
// whose keys lie in several ranges is refused whole (ErrCrossRange): one
// range's log orders it, so all its keys must be that range's. Commands of
// no key (the expiry of keys, auth changes) are group 1's.
func (b backend) Propose(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	var key []byte
	switch cmd.Op {
	case kv.OpPut, kv.OpDelete:
		key = cmd.Key
	case kv.OpTxn:
		keys := txnKeys(cmd.Txn)
		if len(keys) == 0 {
			return b.n.Propose(ctx, cmd)
		}
		return routed(ctx, b, keys[0], func(g *raftnode.Node) (kv.Result, error) {
			bounds := g.Bounds()
			for _, k := range keys {
				if !bounds.Contains(k) {
					return kv.Result{}, fmt.Errorf("%w: %q and %q are in different ranges; a transaction over several ranges is not built yet", httpapi.ErrCrossRange, keys[0], k)
				}
			}
			return g.Propose(ctx, cmd)
		})
	default:
		return b.n.Propose(ctx, cmd)
	}
	return routed(ctx, b, key, func(g *raftnode.Node) (kv.Result, error) { return g.Propose(ctx, cmd) })
}

// txnKeys returns the keys a transaction compares or writes.
func txnKeys(t *kv.Txn) [][]byte {
	if t == nil {
		return nil
	}
	var keys [][]byte
	for _, c := range t.Compares {
		keys = append(keys, c.Key)
	}
	for _, ops := range [][]kv.TxnOp{t.Success, t.Failure} {
		for _, op := range ops {
			keys = append(keys, op.Key)
		}
	}
	return keys
}

// Get reads key from the range that holds it.
func (b backend) Get(ctx context.Context, key []byte, linearizable bool) (kv.KeyValue, bool, error) {
	type got struct {
		v  kv.KeyValue
		ok bool
	}
	r, err := routed(ctx, b, key, func(g *raftnode.Node) (got, error) {
		v, ok, err := g.Get(ctx, key, linearizable)
		return got{v, ok}, err
	})
	return r.v, r.ok, err
}

// Range reads the ranges that [start, end) overlaps, in key order, each as
// linearizable as asked (each range's read is; together they are not one
// moment of the database), until limit pairs (limit <= 0: no limit).
func (b backend) Range(ctx context.Context, start, end []byte, limit int, linearizable bool) ([]kv.KeyValue, bool, error) {
	var out []kv.KeyValue
	from := start
	for {
		g, err := b.groupFor(ctx, from)
		if err != nil {
			return nil, false, err
		}
		bounds := g.Bounds()
		to := end
		last := len(bounds.End) == 0 || (len(end) > 0 && bytes.Compare(end, bounds.End) <= 0)
		if !last {
			to = bounds.End
		}
		want := 0
		if limit > 0 {
			want = limit - len(out)
		}
		kvs, more, err := g.Range(ctx, from, to, want, linearizable)
		if errors.Is(err, raftnode.ErrWrongRange) && ctx.Err() == nil {
			continue // split meanwhile: ask the groups again from here
		}
		if err != nil {
			return nil, false, err
		}
		out = append(out, kvs...)
		if limit > 0 && len(out) >= limit {
			// More if this range has more, or a later range may.
			return out, more || !last, nil
		}
		if last {
			return out, more, nil
		}
		from = bounds.End
	}
}

// Session finds the record of a request in the range that applied it: any
// of them, since a request names no key here.
func (b backend) Session(ctx context.Context, id kv.RequestID, op kv.Op, linearizable bool) (kv.Record, bool, error) {
	for _, g := range b.groups() {
		if linearizable {
			if err := g.ReadBarrier(ctx); err != nil {
				return kv.Record{}, false, err
			}
		}
		if rec, ok := g.KV().Record(id, op); ok {
			return rec, true, nil
		}
	}
	return kv.Record{}, false, nil
}

// SessionStats sums the client-session tables of the node's ranges (a
// split copies the table to both sides, so a record made before it counts
// once per side).
func (b backend) SessionStats() kv.SessionStats {
	var s kv.SessionStats
	for _, g := range b.groups() {
		t := g.KV().SessionStats()
		s.Records += t.Records
		s.Requests += t.Requests
		s.Clients += t.Clients
		s.Bytes += t.Bytes
		s.Dropped += t.Dropped
	}
	return s
}
