package main

import (
	"context"

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
