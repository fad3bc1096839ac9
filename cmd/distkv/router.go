package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
)

// The key space is cut into ranges, each a Raft group (raftnode.Bounds).
// A node holds replicas of some of them (placement.go), and any node
// answers a request for any key: it runs it on its own replica of the key's
// range, which forwards a write to its leader as Raft does, or, holding
// none, sends it to a node that does (forward.go). A group that a split just
// made smaller answers ErrWrongRange; the request then asks again, as it
// does while a split opens the new group.

// routeRetry is how long the router waits before it looks again for the
// group of a key that a split is moving.
const routeRetry = time.Millisecond

// local is b answering only from this node's replicas (a request another
// node forwarded here).
func (b backend) local() backend {
	b.localOnly = true
	return b
}

// forwards reports whether b sends requests for ranges it does not hold to
// other nodes.
func (b backend) forwards() bool { return b.pl != nil && !b.localOnly }

// groups returns the node's groups sorted by the first key of their range.
func (b backend) groups() []*raftnode.Node {
	gs := b.n.Host().Groups()
	slices.SortFunc(gs, func(x, y *raftnode.Node) int { return bytes.Compare(x.Bounds().Start, y.Bounds().Start) })
	return gs
}

// groupFor returns the group that holds key, waiting while a split opens
// it. Without one here it returns nil if b forwards, errNotHere if it only
// answers from its own replicas.
func (b backend) groupFor(ctx context.Context, key []byte) (*raftnode.Node, error) {
	for {
		if g := b.n.Host().GroupFor(key); g != nil {
			return g, nil
		}
		if b.forwards() {
			return nil, nil
		}
		if b.pl != nil {
			return nil, errNotHere
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no range holds key %q on this node: %w", key, ctx.Err())
		case <-time.After(routeRetry):
		}
	}
}

// leaderlessWait is how long a request waits, asking again, while the
// replica it runs on knows no leader. A range that a split has just made
// elects its first leader in about a round trip, but a replica that opens
// late misses the vote and learns the leader from its first message; a
// replica cut off from the others fails the request after this wait, so
// that its client tries another node.
const leaderlessWait = time.Second

// routed runs f on the group that holds key, again when a split moved it
// or, for a while, when the group knows no leader; remote runs instead when
// no group here holds it.
func routed[T any](ctx context.Context, b backend, key []byte, f func(*raftnode.Node) (T, error), remote func() (T, error)) (T, error) {
	var leaderless time.Time
	for {
		g, err := b.groupFor(ctx, key)
		if err != nil {
			var zero T
			return zero, err
		}
		if g == nil {
			return remote()
		}
		v, err := f(g)
		if b.pl != nil && movedAway(err) && ctx.Err() == nil {
			// The replica here was just removed (placement moved it): the
			// range is elsewhere once the Host lets go of it.
			time.Sleep(routeRetry)
			continue
		}
		if l, ok := lockOf(err); ok && ctx.Err() == nil {
			// A transaction holds the key: wait for it, or end it.
			if err := b.meetLock(ctx, l, lockRetry); err != nil {
				return v, err
			}
			continue
		}
		if b.pl != nil && errors.Is(err, raftnode.ErrNoLeader) && ctx.Err() == nil {
			if leaderless.IsZero() {
				leaderless = time.Now()
			}
			if time.Since(leaderless) < leaderlessWait {
				time.Sleep(5 * time.Millisecond)
				continue
			}
		}
		if !errors.Is(err, raftnode.ErrWrongRange) || ctx.Err() != nil {
			return v, err
		}
	}
}

// movedAway reports whether err says the replica that answered was removed
// from this node, and that nothing the request asked was done (a write that
// may have reached the log before is not asked again).
func movedAway(err error) bool {
	var unknown interface{ OutcomeUnknown() bool }
	return errors.Is(err, raftnode.ErrRemoved) && !(errors.As(err, &unknown) && unknown.OutcomeUnknown())
}

// proposeRemote forwards cmd, whose keys start with key, to a node that
// holds key's range.
func (b backend) proposeRemote(ctx context.Context, key []byte, cmd kv.Command) (kv.Result, error) {
	rep, err := b.forward(ctx, key, forwardRequest{Kind: forwardPropose, Cmd: cmd.Marshal()})
	if err != nil {
		return kv.Result{}, err
	}
	res, err := kv.UnmarshalResult(rep.Result)
	if err != nil {
		return kv.Result{}, fmt.Errorf("the result of a forwarded write: %w", err)
	}
	res.Replayed = rep.Replayed
	return res, nil
}

// Propose sends a write to the range that holds its keys. A transaction
// whose keys one range holds is one entry of its log; one whose keys lie in
// several ranges is coordinated here (txn.go), or refused with
// ErrCrossRange by a node that answers only from its own replicas, so that
// the node it came from coordinates it. Commands of no key (the expiry of
// keys, auth changes) are group 1's. A write that meets a transaction's
// lock waits for it (routed).
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
		res, err := routed(ctx, b, keys[0], func(g *raftnode.Node) (kv.Result, error) {
			bounds := g.Bounds()
			for _, k := range keys {
				if !bounds.Contains(k) {
					return kv.Result{}, fmt.Errorf("%w: %q and %q are in different ranges", httpapi.ErrCrossRange, keys[0], k)
				}
			}
			return lockedErr(g.Propose(ctx, cmd))
		}, func() (kv.Result, error) { return lockedErr(b.proposeRemote(ctx, keys[0], cmd)) })
		if errors.Is(err, httpapi.ErrCrossRange) && b.forwards() {
			return b.crossRangeTxn(ctx, cmd)
		}
		return res, err
	case kv.OpLock, kv.OpCommit, kv.OpResolve, kv.OpRecover, kv.OpForget:
		return b.proposeIntent(ctx, cmd)
	default:
		return b.n.Propose(ctx, cmd)
	}
	return routed(ctx, b, key, func(g *raftnode.Node) (kv.Result, error) { return lockedErr(g.Propose(ctx, cmd)) },
		func() (kv.Result, error) { return lockedErr(b.proposeRemote(ctx, key, cmd)) })
}

// lockOf returns the lock that err says a request met, if it does.
func lockOf(err error) (kv.Intent, bool) {
	if err == nil {
		return kv.Intent{}, false
	}
	var locked *kv.LockedError
	if errors.As(err, &locked) {
		return locked.Lock, true
	}
	return kv.Intent{}, false
}

// lockedErr turns the result of a write that met a transaction's lock
// (applied nothing) into its *kv.LockedError, for routed to wait on.
func lockedErr(res kv.Result, err error) (kv.Result, error) {
	if err == nil && res.Status == kv.StatusLocked {
		return kv.Result{}, res.Err()
	}
	return res, err
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
	}, func() (got, error) {
		rep, err := b.forward(ctx, key, forwardRequest{Kind: forwardGet, Key: key, Linearizable: linearizable})
		if err != nil || rep.KV == nil {
			return got{}, err
		}
		return got{*rep.KV, true}, nil
	})
	return r.v, r.ok, err
}

// Versions reads the retained versions of key from the range that holds it.
func (b backend) Versions(ctx context.Context, key []byte, linearizable bool) ([]kv.KeyValue, error) {
	return routed(ctx, b, key, func(g *raftnode.Node) ([]kv.KeyValue, error) {
		return g.Versions(ctx, key, linearizable)
	}, func() ([]kv.KeyValue, error) {
		rep, err := b.forward(ctx, key, forwardRequest{Kind: forwardVersions, Key: key, Linearizable: linearizable})
		return rep.KVs, err
	})
}

// Range reads the ranges that [start, end) overlaps, in key order, each as
// linearizable as asked (each range's read is; together they are not one
// moment of the database: RangeAt is), until limit pairs (limit <= 0: no
// limit).
func (b backend) Range(ctx context.Context, start, end []byte, limit int, linearizable bool) ([]kv.KeyValue, bool, error) {
	return b.walk(ctx, start, end, limit, linearizable, 0)
}

// walk reads the ranges that [start, end) overlaps, in key order, until
// limit pairs: at revision rev if rev > 0 (one moment of the database),
// otherwise each range's current state, linearizable as asked.
func (b backend) walk(ctx context.Context, start, end []byte, limit int, linearizable bool, rev int64) ([]kv.KeyValue, bool, error) {
	var out []kv.KeyValue
	from := start
	for {
		g, err := b.groupFor(ctx, from)
		if err != nil {
			return nil, false, err
		}
		want := 0
		if limit > 0 {
			want = limit - len(out)
		}
		if g == nil {
			rep, err := b.forward(ctx, from, forwardRequest{Kind: forwardRange, Key: from, End: end, Limit: want, Linearizable: linearizable, Revision: rev})
			if err != nil {
				return nil, false, err
			}
			out = append(out, rep.KVs...)
			last := len(rep.End) == 0 || (len(end) > 0 && bytes.Compare(end, rep.End) <= 0)
			switch {
			case limit > 0 && len(out) >= limit:
				return out, rep.More || !last, nil
			case rep.More && len(rep.KVs) > 0:
				// The page ended inside the range: on from its last key.
				from = append(slices.Clone(rep.KVs[len(rep.KVs)-1].Key), 0)
			case last:
				return out, false, nil
			default:
				from = rep.End
			}
			continue
		}
		bounds := g.Bounds()
		to := end
		last := len(bounds.End) == 0 || (len(end) > 0 && bytes.Compare(end, bounds.End) <= 0)
		if !last {
			to = bounds.End
		}
		var kvs []kv.KeyValue
		var more bool
		if rev > 0 {
			kvs, more, err = g.RangeAt(ctx, from, to, want, rev)
		} else {
			kvs, more, err = g.Range(ctx, from, to, want, linearizable)
		}
		if (errors.Is(err, raftnode.ErrWrongRange) || (b.pl != nil && movedAway(err))) && ctx.Err() == nil {
			// Split or moved meanwhile: ask the groups again from here.
			time.Sleep(routeRetry)
			continue
		}
		if l, ok := lockOf(err); ok && ctx.Err() == nil {
			if err := b.meetLock(ctx, l, lockRetry); err != nil {
				return nil, false, err
			}
			continue
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
// of them, since a request names no key here; with placement, on this node
// first, then on the others.
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
	if !b.forwards() {
		return kv.Record{}, false, nil
	}
	payload, err := json.Marshal(forwardRequest{Kind: forwardSession, Client: id.Client, Request: id.Request, Op: op, Linearizable: linearizable})
	if err != nil {
		return kv.Record{}, false, err
	}
	self := b.n.Status().ID
	for _, m := range b.n.Status().Members {
		if m.Name == self {
			continue
		}
		out, err := b.pl.call(ctx, m.Name, 0, methodForward, payload)
		if err != nil {
			continue // down: its ranges have replicas on the others
		}
		var rep forwardReply
		if err := json.Unmarshal(out, &rep); err != nil {
			return kv.Record{}, false, fmt.Errorf("answer of %s: %w", m.Name, err)
		}
		if rep.Code != "" {
			return kv.Record{}, false, remoteError{rep.Code, rep.Detail}
		}
		if rep.Record != nil {
			res, err := kv.UnmarshalResult(rep.Result)
			if err != nil {
				return kv.Record{}, false, fmt.Errorf("answer of %s: %w", m.Name, err)
			}
			return kv.Record{Key: rep.Record.Key, Result: res, Revision: rep.Record.Index, Expires: rep.Record.Expires}, true, nil
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
