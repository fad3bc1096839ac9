package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
)

// Reads at a revision across ranges (httpapi.RevisionReader). The current
// revision is a fresh value of the timestamp oracle (revisions.go): above
// the revision of every write acknowledged before it was handed out, below
// that of every write stamped after. Each range reads at it once its state
// there is final (raftnode.Node.GetAt), so the ranges of one scan show one
// moment of the database.

var _ httpapi.RevisionReader = backend{}

// Revision returns the cluster's current revision.
func (b backend) Revision(ctx context.Context) (int64, error) {
	if b.pl == nil || b.pl.revs == nil {
		// One group, no oracle: its own revision, once current.
		if err := b.n.ReadBarrier(ctx); err != nil {
			return 0, err
		}
		return max(b.n.KV().Revision(), 1), nil
	}
	rev, err := b.pl.revs.Stamps(ctx, 1, 0)
	return int64(rev), err
}

// ScanRevision returns the revision a linearizable scan of start <= key <
// end reads at: the current revision of its range if this node holds one
// that covers it all (no write needed to make it final there; see
// raftnode.Node.CurrentRevision), else the cluster's current revision.
func (b backend) ScanRevision(ctx context.Context, start, end []byte) (int64, error) {
	if g := b.n.Host().GroupFor(start); g != nil {
		rev, ok, err := g.CurrentRevision(ctx, start, end)
		if err != nil && !errors.Is(err, raftnode.ErrWrongRange) {
			return 0, err
		}
		if ok {
			return rev, nil
		}
	}
	return b.Revision(ctx)
}

// GetAt reads key at revision rev from the range that holds it.
func (b backend) GetAt(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	type got struct {
		v  kv.KeyValue
		ok bool
	}
	r, err := routed(ctx, b, key, func(g *raftnode.Node) (got, error) {
		v, ok, err := g.GetAt(ctx, key, rev)
		return got{v, ok}, err
	}, func() (got, error) {
		rep, err := b.forward(ctx, key, forwardRequest{Kind: forwardGet, Key: key, Revision: rev})
		if err != nil || rep.KV == nil {
			return got{}, err
		}
		return got{*rep.KV, true}, nil
	})
	return r.v, r.ok, err
}

// RangeAt reads the ranges that [start, end) overlaps at revision rev, in
// key order, until limit pairs.
func (b backend) RangeAt(ctx context.Context, start, end []byte, limit int, rev int64) ([]kv.KeyValue, bool, error) {
	return b.walk(ctx, start, end, limit, true, rev)
}

// CompactHistory compacts every range to rev, in key order: each range from
// where the one before ended, so that a range split meanwhile is compacted
// on both sides.
func (b backend) CompactHistory(ctx context.Context, rev int64) error {
	from := []byte{}
	for {
		end, err := routed(ctx, b, from, func(g *raftnode.Node) ([]byte, error) {
			_, err := g.CompactHistory(ctx, rev)
			return g.Bounds().End, err
		}, func() ([]byte, error) {
			rep, err := b.forward(ctx, from, forwardRequest{Kind: forwardCompact, Key: from, Revision: rev})
			return rep.End, err
		})
		if err != nil || len(end) == 0 {
			return err
		}
		from = end
	}
}

// changesPageEvents and changesPageBytes bound the changes one range
// answers for at a time (a forwarded answer's frame has a size limit); the
// watcher asks again from where they end.
const (
	changesPageEvents = 1000
	changesPageBytes  = 4 << 20
)

// clipEnd is the smaller of two range ends ("" for both: unbounded).
func clipEnd(end, bound []byte) []byte {
	if len(bound) > 0 && (len(end) == 0 || bytes.Compare(end, bound) > 0) {
		return bound
	}
	return end
}

// Changes returns the changes of the keys start <= key < end with revisions
// in (after, upto], from every range the span overlaps, in revision order
// (then key), and the revision through which they are complete: upto,
// unless a range cut its answer short (see kv.TrimEvents); the changes
// above it are left for the next call.
func (b backend) Changes(ctx context.Context, start, end []byte, after, upto int64) ([]kv.Event, int64, error) {
	var all []kv.Event
	through := upto
	from := start
	for {
		g, err := b.groupFor(ctx, from)
		if err != nil {
			return nil, 0, err
		}
		var evs []kv.Event
		var thr int64
		var rangeEnd []byte
		if g == nil {
			rep, err := b.forward(ctx, from, forwardRequest{Kind: forwardChanges, Key: from, End: end, After: after, Revision: upto})
			if err != nil {
				return nil, 0, err
			}
			evs, thr, rangeEnd = rep.Events, rep.Through, rep.End
		} else {
			bounds := g.Bounds()
			evs, err = g.Changes(ctx, from, clipEnd(end, bounds.End), after, upto)
			if (errors.Is(err, raftnode.ErrWrongRange) || (b.pl != nil && movedAway(err))) && ctx.Err() == nil {
				time.Sleep(routeRetry)
				continue
			}
			if l, ok := lockOf(err); ok && ctx.Err() == nil {
				// A transaction may still write below upto: wait for it.
				if err := b.meetLock(ctx, l, lockRetry); err != nil {
					return nil, 0, err
				}
				continue
			}
			if err != nil {
				return nil, 0, err
			}
			evs, thr = kv.TrimEvents(evs, changesPageEvents, changesPageBytes, upto)
			rangeEnd = bounds.End
		}
		all = append(all, evs...)
		through = min(through, thr)
		if len(rangeEnd) == 0 || (len(end) > 0 && bytes.Compare(end, rangeEnd) <= 0) {
			break
		}
		from = rangeEnd
	}
	all = slices.DeleteFunc(all, func(e kv.Event) bool { return e.KV.Revision > through })
	slices.SortStableFunc(all, func(a, b kv.Event) int {
		if c := cmp.Compare(a.KV.Revision, b.KV.Revision); c != 0 {
			return c
		}
		return bytes.Compare(a.KV.Key, b.KV.Key)
	})
	return all, through, nil
}
