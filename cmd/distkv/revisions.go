package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
	"github.com/distkv/distkv/internal/tso"
)

// Revisions across ranges. Every range's leader stamps its writes with
// revisions from one timestamp oracle (package tso), which the leader of
// group 1 (the meta range, on every node) runs: it hands revisions out from
// memory below a high-water mark it has written to group 1's log (OpMark),
// serves only under group 1's leader lease, and a new leader starts above
// the largest mark in the log. A range's leader on another node fetches its
// stamps over the peer link (methodStamps), one fetch at a time per range,
// each for every write that arrived meanwhile (raftnode/stamp.go).

// revisions is this node's side of the oracle: the Stamper of every group it
// opens, and the oracle itself while it leads group 1.
type revisions struct {
	meta   atomic.Pointer[raftnode.Node] // group 1, once open
	oracle *tso.Oracle
	tr     *transport.Transport
	logger *slog.Logger
	// used is when this node's oracle last handed out revisions (Unix
	// nanoseconds): while it is in use, run keeps group 1's lease fresh.
	used atomic.Int64
}

var _ raftnode.Stamper = (*revisions)(nil)

func newRevisions(tr *transport.Transport, logger *slog.Logger) (*revisions, error) {
	r := &revisions{tr: tr, logger: logger}
	o, err := tso.New(tso.Config{Persist: r.persist, Lease: r.lease})
	if err != nil {
		return nil, err
	}
	r.oracle = o
	return r, nil
}

func (r *revisions) persist(ctx context.Context, hw uint64) error {
	meta := r.meta.Load()
	if meta == nil {
		return errors.New("the meta range is not open")
	}
	_, err := meta.Propose(ctx, kv.Command{Op: kv.OpMark, Mark: hw})
	return err
}

func (r *revisions) lease() bool {
	meta := r.meta.Load()
	return meta != nil && meta.HoldsLease()
}

// run starts the oracle when this node comes to lead group 1 and stops it
// when it no longer does, until ctx ends.
func (r *revisions) run(ctx context.Context, meta *raftnode.Node) {
	r.meta.Store(meta)
	defer r.oracle.Close()
	var servingTerm uint64
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-meta.Done():
			return
		case <-t.C:
		}
		term, _, leads := meta.Leadership()
		switch {
		case leads && servingTerm == term:
			// The oracle serves only under the lease, which read rounds
			// renew; a cluster that only writes makes none. While the
			// oracle is in use, a barrier here renews it before it runs
			// out (it is answered from the lease until half of it is
			// gone), so a fetch of revisions seldom waits for a round.
			if time.Since(time.Unix(0, r.used.Load())) < time.Second {
				bctx, cancel := context.WithTimeout(ctx, time.Second)
				meta.ReadBarrier(bctx)
				cancel()
			}
		case leads:
			// Once this leader has applied an entry of its term, every
			// mark of the leaders before it is in its state.
			bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := meta.ReadBarrier(bctx)
			cancel()
			if err != nil {
				continue
			}
			if now, _, still := meta.Leadership(); !still || now != term {
				continue
			}
			r.oracle.Start(meta.KV().Mark())
			servingTerm = term
			r.logger.Debug("serving revisions", "term", term, "above", meta.KV().Mark())
		case servingTerm != 0:
			r.oracle.Stop()
			servingTerm = 0
		}
	}
}

// Stamps hands out n revisions above floor: from the oracle here if this
// node leads group 1, else from group 1's leader. A leader that has just
// changed is asked again until ctx ends.
func (r *revisions) Stamps(ctx context.Context, n int, floor uint64) (uint64, error) {
	for {
		first, err := r.stampsOnce(ctx, n, floor)
		if err == nil || ctx.Err() != nil {
			return first, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (r *revisions) stampsOnce(ctx context.Context, n int, floor uint64) (uint64, error) {
	meta := r.meta.Load()
	if meta == nil {
		return 0, errors.New("the meta range is not open")
	}
	_, leader, self := meta.Leadership()
	switch {
	case leader == 0:
		return 0, errors.New("the meta range has no leader")
	case self:
		return r.local(ctx, n, floor)
	}
	if r.tr == nil {
		return 0, errors.New("no peer transport")
	}
	b, err := r.tr.Call(ctx, leader, 0, methodStamps, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, uint32(n)), floor))
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("an answer of %d bytes to a request for revisions", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// local hands out stamps from this node's oracle; without a lease it makes
// one (a read round) and tries once more.
func (r *revisions) local(ctx context.Context, n int, floor uint64) (uint64, error) {
	r.used.Store(time.Now().UnixNano())
	first, err := r.oracle.NextAbove(ctx, n, floor)
	if errors.Is(err, tso.ErrNotServing) {
		if meta := r.meta.Load(); meta != nil && !meta.HoldsLease() {
			if berr := meta.ReadBarrier(ctx); berr == nil {
				first, err = r.oracle.NextAbove(ctx, n, floor)
			}
		}
	}
	return first, err
}

// serve answers methodStamps: 4 bytes n, 8 bytes floor, both big-endian.
func (r *revisions) serve(ctx context.Context, payload []byte) ([]byte, error) {
	if len(payload) != 12 {
		return nil, fmt.Errorf("a request for revisions of %d bytes, want 12", len(payload))
	}
	n, floor := binary.BigEndian.Uint32(payload), binary.BigEndian.Uint64(payload[4:])
	if n < 1 || n > tso.MaxN {
		return nil, fmt.Errorf("a request for %d revisions; 1 to %d may be asked", n, tso.MaxN)
	}
	first, err := r.local(ctx, int(n), floor)
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint64(nil, first), nil
}
