package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
)

// Transactions over several ranges: this node coordinates them, in two
// phases over the ranges' logs (see package kv, intent.go, for the ops and
// why they are safe): lock every key the transaction compares, reads or
// writes, range by range; take the commit revision from the oracle;
// evaluate the transaction on the states the locks returned; commit on the
// range of its first key (the primary), which keeps the record; resolve
// the other ranges; forget the record. A transaction that meets another's
// lock releases its own, waits, and starts again; one whose locks outlive
// txnLockTTL may be ended by whoever meets them (meetLock).

// txnLockTTL is how long a coordinator's locks stand before whoever meets
// one may end its transaction: aborted if it has not committed. A
// coordinator needs a few round trips between its locks and its commit; a
// reader or writer that meets the locks of a coordinator that died waits
// this long.
const txnLockTTL = 2 * time.Second

// lockRetry is how long a request that met a lock waits before it asks
// again; lockRetryMax caps the wait of a transaction that keeps meeting
// locks (it doubles each time).
const (
	lockRetry    = time.Millisecond
	lockRetryMax = 50 * time.Millisecond
)

// crossRangeTxn runs cmd, a transaction whose keys lie in several ranges.
func (b backend) crossRangeTxn(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	b.localOnly = false
	plan := lockPlan(cmd.Txn)
	wait := lockRetry
	for {
		res, met, err := b.txnAttempt(ctx, cmd, plan)
		if met == nil {
			return res, err
		}
		// Another transaction holds a key: ours let go of its locks; wait
		// for it, or end it if its time is up, and start again.
		// The wait is random, so that two that keep meeting each other's
		// locks part.
		if err := b.meetLock(ctx, *met, wait/2+mrand.N(wait/2+1)); err != nil {
			return kv.Result{}, err
		}
		wait = min(2*wait, lockRetryMax)
	}
}

// lockPlan returns the keys of t, each once, in the order they first
// appear, as lock ops: TxnPut for a key either branch writes, TxnGet for
// one it only compares or reads. The first is the primary.
func lockPlan(t *kv.Txn) []kv.TxnOp {
	var plan []kv.TxnOp
	at := map[string]int{}
	add := func(key []byte, write bool) {
		i, ok := at[string(key)]
		if !ok {
			i = len(plan)
			at[string(key)] = i
			plan = append(plan, kv.TxnOp{Type: kv.TxnGet, Key: key})
		}
		if write {
			plan[i].Type = kv.TxnPut
		}
	}
	for _, c := range t.Compares {
		add(c.Key, false)
	}
	for _, ops := range [][]kv.TxnOp{t.Success, t.Failure} {
		for _, op := range ops {
			add(op.Key, op.Type != kv.TxnGet)
		}
	}
	return plan
}

// txnAttempt runs cmd's transaction once. met is the lock of another
// transaction that stopped it (after it released its own locks); otherwise
// res and err are the transaction's outcome. A request id goes with the
// primary's lock, which answers the recorded outcome if the request was
// applied before, and with the commit, which records it.
func (b backend) txnAttempt(ctx context.Context, cmd kv.Command, plan []kv.TxnOp) (res kv.Result, met *kv.Intent, err error) {
	t := cmd.Txn
	id := make([]byte, kv.TxnIDSize)
	rand.Read(id)
	primary := plan[0].Key
	groups, err := b.groupKeys(ctx, plan)
	if err != nil {
		return kv.Result{}, nil, err
	}
	start := time.Now()
	lock := kv.Intent{ID: id, Primary: primary, Time: start.UnixNano(), TTL: int64(txnLockTTL)}
	results := make([]kv.Result, len(groups))
	errs := make([]error, len(groups))
	parallel(len(groups), func(i int) {
		in := lock
		in.Keys = groups[i]
		lc := kv.Command{Op: kv.OpLock, Intent: &in}
		if bytes.Equal(groups[i][0].Key, primary) {
			lc.Request, lc.Time, lc.TTL = cmd.Request, cmd.Time, cmd.TTL
		}
		results[i], errs[i] = b.proposeIntent(ctx, lc)
	})
	abort := func() {
		// Best effort, and not bounded by the request's deadline: a lock
		// left behind is ended by whoever meets it once its time is up.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), txnLockTTL)
		defer cancel()
		b.resolveKeys(actx, id, primary, 0, plan)
	}
	states := map[string]kv.TxnResponse{}
	for i := range groups {
		if errs[i] == nil && results[i].Replayed {
			// Applied before: its recorded outcome.
			abort()
			return results[i], nil, nil
		}
	}
	for i := range groups {
		switch {
		case errs[i] != nil:
			abort()
			if errors.Is(errs[i], httpapi.ErrCrossRange) && ctx.Err() == nil {
				// A range split under the grouping: group again.
				b.refreshDirectory(ctx)
				return kv.Result{}, &kv.Intent{}, nil
			}
			return kv.Result{}, nil, errs[i]
		case results[i].Status == kv.StatusLocked && results[i].Intent != nil:
			abort()
			return kv.Result{}, results[i].Intent, nil
		case results[i].Status != kv.StatusOK || results[i].Txn == nil || len(results[i].Txn.Responses) != len(groups[i]):
			abort()
			if results[i].Status == kv.StatusAborted {
				// Refused as late: this node's clock is behind the range's.
				return kv.Result{}, &kv.Intent{}, nil
			}
			return kv.Result{}, nil, fmt.Errorf("lock of %d keys answered %v", len(groups[i]), results[i].Err())
		}
		for j, r := range results[i].Txn.Responses {
			states[string(groups[i][j].Key)] = r
		}
	}

	// Every key is locked: nothing changes them until the locks go. The
	// commit revision comes after the locks, so it is above every revision
	// a reader that did not wait for them can read at.
	rev, err := b.Revision(ctx)
	if err != nil {
		abort()
		return kv.Result{}, nil, err
	}
	out, writes := t.Evaluate(rev, func(key []byte) (kv.KeyValue, bool) {
		r := states[string(key)]
		return r.KV, r.Found
	})
	res = kv.Result{Status: kv.StatusOK, Revision: rev, Txn: out}
	if len(writes) == 0 {
		// Read only: it held at rev, while every key was locked.
		abort()
		return res, nil, nil
	}
	record := make([]kv.TxnOp, len(plan))
	written := map[string]kv.TxnOp{}
	for _, w := range writes {
		written[string(w.Key)] = w
	}
	for i, p := range plan {
		record[i] = kv.TxnOp{Type: kv.TxnGet, Key: p.Key}
		if w, ok := written[string(p.Key)]; ok {
			record[i] = w
		}
	}
	if time.Since(start) > txnLockTTL/2 {
		// Too close to the time others may end it: let go instead.
		abort()
		return kv.Result{}, nil, fmt.Errorf("transaction took %v to lock its keys; aborted", time.Since(start).Round(time.Millisecond))
	}
	commit := kv.Command{Op: kv.OpCommit, Revision: rev, Intent: &kv.Intent{ID: id, Primary: primary, Record: record}}
	if !cmd.Request.IsZero() {
		commit.Request, commit.Time, commit.TTL = cmd.Request, cmd.Time, cmd.TTL
		commit.Intent.Answer = res.Marshal()
	}
	committed, err := b.commit(ctx, commit)
	if err != nil {
		// Outcome unknown: a committed transaction is finished by whoever
		// meets its locks, from its record.
		return kv.Result{}, nil, err
	}
	if !committed {
		// Ended by another who met a lock of it, thinking it dead.
		abort()
		return kv.Result{}, &kv.Intent{}, nil
	}
	b.finishTxn(ctx, id, primary, rev, record)
	return res, nil, nil
}

// commit proposes cmd, a transaction's OpCommit without its Keys, to its
// primary's range with the keys of that range, asking again while the
// answer is unknown (a commit is applied once: its record answers a
// repeat); false if the transaction was aborted.
func (b backend) commit(ctx context.Context, cmd kv.Command) (bool, error) {
	for {
		bounds, err := b.boundsOf(ctx, cmd.Intent.Primary)
		if err != nil {
			return false, err
		}
		in := *cmd.Intent
		in.Keys = nil
		for _, op := range in.Record {
			if bounds.Contains(op.Key) {
				in.Keys = append(in.Keys, op)
			}
		}
		cmd.Intent = &in
		res, err := b.proposeIntent(ctx, cmd)
		switch {
		case err == nil && res.Status == kv.StatusOK:
			return true, nil
		case err == nil && res.Status == kv.StatusAborted:
			return false, nil
		case err == nil:
			return false, fmt.Errorf("commit answered %v", res.Err())
		case ctx.Err() != nil:
			return false, err
		case errors.Is(err, httpapi.ErrCrossRange):
			b.refreshDirectory(ctx)
		default:
			time.Sleep(lockRetryMax)
		}
	}
}

// finishTxn resolves the locks of a committed transaction on every range
// with its record's writes at rev, then, without waiting, drops its record.
// If ctx ends first, the record stays: the readers that meet its locks, or
// the leader of its range, finish it (sweepTxns).
func (b backend) finishTxn(ctx context.Context, id, primary []byte, rev int64, record []kv.TxnOp) {
	if err := b.resolveKeys(ctx, id, primary, rev, record); err != nil {
		return
	}
	go func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), txnLockTTL)
		defer cancel()
		b.proposeIntent(fctx, kv.Command{Op: kv.OpForget, Intent: &kv.Intent{ID: id, Primary: primary}})
	}()
}

// resolveKeys resolves the transaction's locks on ops's keys, range by
// range, with their writes at rev (0: aborted, none), until every range
// has answered or ctx ends.
func (b backend) resolveKeys(ctx context.Context, id, primary []byte, rev int64, ops []kv.TxnOp) error {
	for {
		groups, err := b.groupKeys(ctx, ops)
		if err != nil {
			return err
		}
		errs := make([]error, len(groups))
		parallel(len(groups), func(i int) {
			_, errs[i] = b.proposeIntent(ctx, kv.Command{Op: kv.OpResolve, Revision: rev, Intent: &kv.Intent{ID: id, Primary: primary, Keys: groups[i]}})
		})
		ops = ops[:0:0]
		for i, err := range errs {
			if err != nil {
				ops = append(ops, groups[i]...)
			}
		}
		if len(ops) == 0 {
			return nil
		}
		if err := errors.Join(errs...); ctx.Err() != nil {
			return err
		}
		b.refreshDirectory(ctx)
		time.Sleep(lockRetry)
	}
}

// meetLock is what a request that met a transaction's lock does before it
// asks again: wait a little while the lock's time runs, and once it is up
// end the transaction, as committed or aborted (OpRecover on its primary's
// range), and resolve its locks.
func (b backend) meetLock(ctx context.Context, l kv.Intent, wait time.Duration) error {
	b.localOnly = false
	now := time.Now().UnixNano()
	if len(l.ID) == 0 || !l.Expired(now) {
		// A lock that has stood a while is likely to stand a while
		// longer (its coordinator may be gone): ask less often.
		if l.Time > 0 {
			wait = max(wait, min(time.Duration(now-l.Time)/8, 20*time.Millisecond))
		}
		return sleepCtx(ctx, wait)
	}
	res, err := b.proposeIntent(ctx, kv.Command{Op: kv.OpRecover, Now: time.Now().UnixNano(),
		Intent: &kv.Intent{ID: l.ID, Primary: l.Primary, Time: l.Time, TTL: l.TTL}})
	if err != nil {
		return err
	}
	switch res.Status {
	case kv.StatusOK:
		if res.Intent == nil {
			return fmt.Errorf("a recover without its record")
		}
		b.finishTxn(ctx, l.ID, l.Primary, res.Revision, res.Intent.Keys)
		return nil
	case kv.StatusAborted:
		// Aborted: the lock met goes (the others go as they are met).
		return b.resolveKeys(ctx, l.ID, l.Primary, 0, l.Keys)
	}
	return sleepCtx(ctx, wait)
}

// proposeIntent proposes a transaction's op to the range that holds its
// keys (the primary for a recover or a forget). ErrCrossRange: its keys
// are no longer all in one range.
func (b backend) proposeIntent(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	key := cmd.Intent.Primary
	if len(cmd.Intent.Keys) > 0 {
		key = cmd.Intent.Keys[0].Key
	}
	return routed(ctx, b, key, func(g *raftnode.Node) (kv.Result, error) {
		bounds := g.Bounds()
		for _, op := range cmd.Intent.Keys {
			if !bounds.Contains(op.Key) {
				return kv.Result{}, fmt.Errorf("%w: %q and %q", httpapi.ErrCrossRange, key, op.Key)
			}
		}
		if cmd.Op != kv.OpLock && cmd.Op != kv.OpResolve && !bounds.Contains(cmd.Intent.Primary) {
			return kv.Result{}, fmt.Errorf("%w: %q and %q", httpapi.ErrCrossRange, key, cmd.Intent.Primary)
		}
		return g.Propose(ctx, cmd)
	}, func() (kv.Result, error) { return b.proposeRemote(ctx, key, cmd) })
}

// groupKeys groups ops by the range that holds their keys, as this node
// knows the ranges.
func (b backend) groupKeys(ctx context.Context, ops []kv.TxnOp) ([][]kv.TxnOp, error) {
	var groups [][]kv.TxnOp
	var bounds []raftnode.Bounds
next:
	for _, op := range ops {
		for i, bd := range bounds {
			if bd.Contains(op.Key) {
				groups[i] = append(groups[i], op)
				continue next
			}
		}
		bd, err := b.boundsOf(ctx, op.Key)
		if err != nil {
			return nil, err
		}
		bounds = append(bounds, bd)
		groups = append(groups, []kv.TxnOp{op})
	}
	return groups, nil
}

// boundsOf returns the range that holds key, as this node knows it: its
// own replica's, or the directory's.
func (b backend) boundsOf(ctx context.Context, key []byte) (raftnode.Bounds, error) {
	for attempt := 0; ; attempt++ {
		if g := b.n.Host().GroupFor(key); g != nil {
			return g.Bounds(), nil
		}
		if b.pl == nil {
			return raftnode.Bounds{}, nil // one group: all of the key space
		}
		d := b.pl.dir.get()
		if r, ok := d.lookup(key); ok {
			return r.bounds(), nil
		}
		if attempt > 0 {
			if err := sleepCtx(ctx, routeRetry); err != nil {
				return raftnode.Bounds{}, fmt.Errorf("no range for key %q: %w", key, err)
			}
		}
		b.refreshDirectory(ctx)
	}
}

// refreshDirectory fetches the range directory again, unless it is fresh.
func (b backend) refreshDirectory(ctx context.Context) {
	if b.pl != nil {
		b.pl.dir.refresh(ctx, 10*time.Millisecond)
	}
}

// parallel runs f(0..n-1) concurrently and returns when all have.
func parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// sweepEvery is how often a node looks, in the ranges it leads, for the
// locks and commit records of transactions whose coordinator is gone.
const sweepEvery = time.Second

// sweepTxns ends, until ctx ends, the transactions that left locks or a
// commit record behind in the ranges this node leads and that no request
// meets: their locks would otherwise stand, and hold up the reads and
// watches that reach them. A lock is ended once its time is up, as a
// request that met it would (meetLock); a record is finished (its locks
// resolved everywhere, then dropped) once it has stood for longer than any
// coordinator takes.
func (b backend) sweepTxns(ctx context.Context) {
	seen := map[string]time.Time{} // records, by id: when first seen
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		live := map[string]bool{}
		for _, g := range b.n.Host().Groups() {
			if !g.KV().HasTxns() {
				continue
			}
			if _, _, leads := g.Leadership(); !leads {
				continue
			}
			for _, l := range g.KV().Locks() {
				if l.Expired(now.UnixNano()) {
					b.bounded(ctx, func(ctx context.Context) { b.meetLock(ctx, l, 0) })
				}
			}
			for _, r := range g.KV().Records() {
				id := string(r.ID)
				live[id] = true
				if first, ok := seen[id]; !ok {
					seen[id] = now
				} else if now.Sub(first) > 2*txnLockTTL {
					b.bounded(ctx, func(ctx context.Context) { b.finishTxn(ctx, r.ID, r.Primary, r.Rev, r.Keys) })
				}
			}
		}
		for id := range seen {
			if !live[id] {
				delete(seen, id)
			}
		}
	}
}

// bounded runs f with ctx cut off after the locks' time, so that one range
// that cannot be reached does not hold up the sweep of the others.
func (b backend) bounded(ctx context.Context, f func(context.Context)) {
	ctx, cancel := context.WithTimeout(ctx, txnLockTTL)
	defer cancel()
	f(ctx)
}
