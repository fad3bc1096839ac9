package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/tidwall/btree"
)

// Transactions over several ranges. A Txn whose keys one range holds is one
// log entry (OpTxn). One whose keys lie in several ranges is run by a
// coordinator (package main) in two phases over the ranges' logs, with
// strict two-phase locking and a commit record on one range:
//
//  1. OpLock, on every range the transaction touches: each of its keys there
//     is locked by the transaction (Intent.ID), or, if another transaction
//     holds one of them, nothing is (StatusLocked, with that lock). The
//     answer carries the keys' current states: the compares are evaluated
//     on them, and while the locks stand no one else writes those keys.
//  2. The coordinator takes a fresh revision C from the oracle, above every
//     revision handed out before all the locks were taken, and sends
//     OpCommit to the range of the primary key (the transaction's first
//     key): it applies that range's writes at C, releases its locks and
//     keeps the commit record (every key of the transaction and its write).
//     From then on the transaction is committed.
//  3. OpResolve, on every other range: its writes apply at C, its locks go.
//     Then OpForget drops the record.
//
// A write at C may apply below the range's revision (other keys moved on
// meanwhile); that is safe because the key was locked since before C was
// handed out, and readers wait for locks (below). A coordinator that dies
// leaves locks behind. Whoever meets one whose time is up (Time + TTL, by
// its own clock) asks the primary's range with OpRecover: if the record is
// there, the transaction committed and the lock is resolved with its
// writes; otherwise the primary's lock is released, and the transaction is
// aborted for good: a commit needs the primary's lock, and a lock that
// arrives after its time is up is refused (the store keeps the largest time
// it has seen). The primary's range holds the record until the coordinator,
// or whoever finishes in its place, has resolved every lock.
//
// Readers: a lock on a key the transaction may write (a write lock) hides a
// write that may land at any revision above Intent.Rev, the range's revision
// when the lock was taken (C comes later from the oracle). A read at a
// revision at or below Rev can ignore it; any later read (a linearizable
// read of the current state, a read or watch at a later revision) waits for
// the lock to go (LockOn, LockIn). Writes of other commands to a locked key
// (read or write lock) are refused with StatusLocked and nothing applied.

// The ops of a transaction over several ranges; each carries its Intent.
const (
	// OpLock locks Intent.Keys for the transaction Intent.ID: TxnGet keys
	// for reading, TxnPut and TxnDelete keys for writing (their values are
	// not carried). Result.Txn has a get response per key, in order, with
	// its current state.
	OpLock Op = 11
	// OpCommit, on the range of Intent.Primary, applies the writes of
	// Intent.Keys at Command.Revision, releases the transaction's locks
	// here and keeps the commit record Intent.Record; StatusAborted, and
	// nothing applied, if the primary's lock is not the transaction's.
	OpCommit Op = 12
	// OpResolve applies, for the keys of Intent.Keys that the transaction
	// locks here, their writes at Command.Revision (0: none, the
	// transaction aborted) and releases all its locks here.
	OpResolve Op = 13
	// OpRecover, on the range of Intent.Primary, decides the fate of a
	// transaction whose lock (Intent: ID, Primary, Time, TTL) was met, by
	// Command.Now: committed (StatusOK, Revision C and Intent.Keys the
	// record), aborted (StatusAborted; a live primary lock whose time is up
	// is released), or still running (StatusLocked).
	OpRecover Op = 14
	// OpForget drops the commit record of Intent.ID.
	OpForget Op = 15
)

// The outcomes of a transaction's ops.
const (
	// StatusLocked: a key is locked by another transaction, whose lock is
	// Result.Intent; nothing was applied.
	StatusLocked Status = 5
	// StatusAborted: the transaction is aborted; nothing was applied.
	StatusAborted Status = 6
)

// ErrLocked is the outcome of a write to a key that a transaction locks.
var ErrLocked = errors.New("key locked by a transaction")

// ErrAborted is the outcome of an op of an aborted transaction.
var ErrAborted = errors.New("transaction aborted")

func isIntentOp(op Op) bool { return op >= OpLock && op <= OpForget }

// TxnIDSize is the size of a transaction's id (random bytes).
const TxnIDSize = 16

// Intent is what a transaction's op carries, and the lock a write met.
type Intent struct {
	ID      []byte // TxnIDSize bytes
	Primary []byte // the key whose range holds the commit record
	// Time is when the coordinator took the locks (Unix nanoseconds, its
	// clock) and TTL how long they may stand (nanoseconds, > 0) before
	// anyone who meets one may end the transaction.
	Time, TTL int64
	// Rev is, in a lock met, the range's revision when it was taken; its
	// writes will be above it. Not part of a Command.
	Rev int64
	// Keys are the keys of the op in one range: TxnGet to read (lock only),
	// TxnPut and TxnDelete to write.
	Keys []TxnOp
	// Record (OpCommit only) is every key of the transaction, in every
	// range, with its write: what resolves the locks if the coordinator
	// does not.
	Record []TxnOp
	// Answer (an OpCommit with a Request only) is the encoded Result of the
	// transaction, recorded for its request id as an OpTxn's would be.
	Answer []byte
}

// LockedError is the error of an operation that met a lock: Lock.Keys
// holds the key it met it on.
type LockedError struct{ Lock Intent }

func (e *LockedError) Error() string {
	return fmt.Sprintf("key locked by transaction %x (primary %q)", e.Lock.ID, e.Lock.Primary)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Expired reports whether the lock's time is up at now.
func (in *Intent) Expired(now int64) bool { return now >= addSat(in.Time, in.TTL) }

// txnLocks is the locks one transaction holds in a store. Never modified
// once stored (Views share it): a change replaces it.
type txnLocks struct {
	id        string
	primary   []byte
	time, ttl int64
	rev       int64
	keys      []TxnOp // sorted by key; Value unused
}

// lockItem is one locked key, in the store's index of locks by key.
type lockItem struct {
	key []byte
	txn *txnLocks
	// write: the transaction may write the key.
	write bool
}

func newLocks() *btree.BTreeG[lockItem] {
	return btree.NewBTreeGOptions(func(a, b lockItem) bool { return bytes.Compare(a.key, b.key) < 0 }, btree.Options{NoLocks: true})
}

// txnRecord is a committed transaction's record, kept by its primary's range.
type txnRecord struct {
	id      string
	primary []byte
	rev     int64 // the commit revision
	writes  []TxnOp
}

func (l *txnLocks) intent() Intent {
	return Intent{ID: []byte(l.id), Primary: l.primary, Time: l.time, TTL: l.ttl, Rev: l.rev}
}

// met returns the lock on key as the Intent of a LockedError: Keys holds
// key alone.
func (l lockItem) met() *Intent {
	in := l.txn.intent()
	in.Keys = []TxnOp{{Type: TxnGet, Key: l.key}}
	return &in
}

// checkIntent reports an Intent that does not belong to c's Op.
func (c Command) checkIntent() error {
	in := c.Intent
	if in == nil {
		return fmt.Errorf("%w: a %v without its intent", ErrUnknownOp, c.Op)
	}
	if len(c.Key) != 0 || c.Shard != 0 || len(c.Value) != 0 || c.Cond != (Cond{}) || c.Txn != nil ||
		c.Deadline != 0 || c.Auth != nil || c.Mark != 0 {
		return fmt.Errorf("%w: a %v carries only its intent, revision and times", ErrUnknownOp, c.Op)
	}
	if err := c.checkRequest(); err != nil {
		return err
	}
	if !c.Request.IsZero() && c.Op != OpLock && c.Op != OpCommit {
		return fmt.Errorf("%w: a request id on a %v", ErrBadRequestID, c.Op)
	}
	if (c.Op == OpCommit && !c.Request.IsZero()) != (len(in.Answer) > 0) {
		return fmt.Errorf("%w: a commit with a request id needs its answer, and only it", ErrInvalidTxn)
	}
	if len(in.Answer) > 0 {
		if _, err := UnmarshalResult(in.Answer); err != nil {
			return fmt.Errorf("%w: the answer: %v", ErrInvalidTxn, err)
		}
	}
	if len(in.ID) != TxnIDSize || len(in.Primary) == 0 || in.Rev != 0 {
		return fmt.Errorf("%w: a %v needs a %d-byte transaction id and a primary key", ErrInvalidTxn, c.Op, TxnIDSize)
	}
	if (c.Op == OpLock || c.Op == OpRecover) != (in.Time > 0 && in.TTL > 0) || (c.Op != OpLock && c.Op != OpRecover && (in.Time != 0 || in.TTL != 0)) {
		return fmt.Errorf("%w: time and TTL belong to a lock and a recover, and must be positive there", ErrInvalidTxn)
	}
	if (c.Op == OpRecover) != (c.Now > 0) {
		return fmt.Errorf("%w: a recover needs its time, and only it", ErrInvalidTxn)
	}
	if (c.Op == OpCommit && c.Revision <= 0) || (c.Op != OpCommit && c.Op != OpResolve && c.Revision != 0) || c.Revision < 0 {
		return fmt.Errorf("%w: a commit needs a revision; a resolve may have one", ErrInvalidTxn)
	}
	if (c.Op == OpLock || c.Op == OpCommit || c.Op == OpResolve) != (len(in.Keys) > 0) {
		return fmt.Errorf("%w: a lock, commit or resolve needs keys, and only they", ErrInvalidTxn)
	}
	if (c.Op == OpCommit) != (len(in.Record) > 0) {
		return fmt.Errorf("%w: a commit needs its record, and only it", ErrInvalidTxn)
	}
	for _, ops := range [][]TxnOp{in.Keys, in.Record} {
		seen := make(map[string]bool, len(ops))
		for i, op := range ops {
			if op.Type < TxnPut || op.Type > TxnGet || op.Kind > KindJSON || (op.Kind != KindString && op.Type != TxnPut) {
				return fmt.Errorf("%w: key %d: unknown operation %v of kind %v", ErrInvalidTxn, i, op.Type, op.Kind)
			}
			if seen[string(op.Key)] {
				return fmt.Errorf("%w: key %q twice", ErrInvalidTxn, op.Key)
			}
			seen[string(op.Key)] = true
		}
	}
	return nil
}

// lockOf returns the lock on key, if any. s.mu must be held.
func (s *Store) lockOf(key []byte) (lockItem, bool) {
	if s.locks.Len() == 0 {
		return lockItem{}, false
	}
	return s.locks.Get(lockItem{key: key})
}

// lockedKey returns the lock of the first key of cmd (a write other than a
// transaction's op) that a transaction locks. s.mu must be held.
func (s *Store) lockedKey(cmd *Command) (lockItem, bool) {
	if s.locks.Len() == 0 {
		return lockItem{}, false
	}
	switch cmd.Op {
	case OpPut, OpDelete:
		return s.lockOf(cmd.Key)
	case OpTxn:
		if cmd.Txn == nil {
			return lockItem{}, false
		}
		for _, c := range cmd.Txn.Compares {
			if l, ok := s.lockOf(c.Key); ok {
				return l, true
			}
		}
		for _, ops := range [][]TxnOp{cmd.Txn.Success, cmd.Txn.Failure} {
			for _, op := range ops {
				if l, ok := s.lockOf(op.Key); ok {
					return l, true
				}
			}
		}
	}
	return lockItem{}, false
}

// applyIntent applies a transaction's op. s.mu must be held for writing.
func (s *Store) applyIntent(cmd Command) Result {
	in := cmd.Intent
	id := string(in.ID)
	switch cmd.Op {
	case OpLock:
		if !cmd.Request.IsZero() {
			// The transaction's request, applied already: its answer.
			t := &s.sessions
			t.clock = max(t.clock, cmd.Time)
			t.trim()
			s.view = nil
			if r, ok := t.byKey[keyOf(cmd.Request, OpTxn)]; ok && t.live(r) {
				return r.replay()
			}
		}
		if in.Expired(s.txnClock) {
			return Result{Status: StatusAborted, Revision: s.rev}
		}
		s.txnClock = max(s.txnClock, in.Time)
		if _, done := s.records[id]; done {
			return Result{Status: StatusAborted, Revision: s.rev}
		}
		for _, op := range in.Keys {
			if l, ok := s.lockOf(op.Key); ok && l.txn.id != id {
				return Result{Status: StatusLocked, Revision: s.rev, Intent: l.met()}
			}
		}
		s.lock(id, in)
		res := &TxnResult{Succeeded: true, Responses: make([]TxnResponse, len(in.Keys))}
		for i, op := range in.Keys {
			it, ok := s.tree.Get(keyItem(op.Key))
			res.Responses[i] = TxnResponse{Type: TxnGet, Found: ok, KV: it.kv()}
		}
		return Result{Status: StatusOK, Revision: s.rev, Txn: res}
	case OpCommit:
		if r, done := s.records[id]; done {
			return Result{Status: StatusOK, Revision: r.rev}
		}
		if l, ok := s.lockOf(in.Primary); !ok || l.txn.id != id {
			return Result{Status: StatusAborted, Revision: s.rev}
		}
		s.resolve(id, in.Keys, cmd.Revision)
		s.records[id] = &txnRecord{id: id, primary: bytes.Clone(in.Primary), rev: cmd.Revision, writes: cloneOps(in.Record)}
		s.recorded.Store(true)
		if !cmd.Request.IsZero() {
			t := &s.sessions
			t.clock = max(t.clock, cmd.Time)
			t.trim()
			t.add(&record{key: keyOf(cmd.Request, OpTxn), index: uint64(cmd.Revision), expires: addSat(cmd.Time, cmd.TTL),
				result: bytes.Clone(in.Answer), resultLen: len(in.Answer)})
		}
		return Result{Status: StatusOK, Revision: cmd.Revision}
	case OpResolve:
		s.resolve(id, in.Keys, cmd.Revision)
		return Result{Status: StatusOK, Revision: max(cmd.Revision, 0)}
	case OpRecover:
		s.txnClock = max(s.txnClock, cmd.Now)
		if r, done := s.records[id]; done {
			return Result{Status: StatusOK, Revision: r.rev, Intent: &Intent{ID: []byte(id), Primary: r.primary, Keys: r.writes}}
		}
		if l, ok := s.lockOf(in.Primary); ok && l.txn.id == id {
			held := l.txn.intent()
			if !held.Expired(cmd.Now) {
				return Result{Status: StatusLocked, Revision: s.rev, Intent: &held}
			}
			s.resolve(id, nil, 0)
			return Result{Status: StatusAborted, Revision: s.rev}
		}
		if !in.Expired(cmd.Now) {
			// The primary is not locked yet: the coordinator is still
			// locking.
			return Result{Status: StatusLocked, Revision: s.rev, Intent: &Intent{ID: in.ID, Primary: in.Primary, Time: in.Time, TTL: in.TTL}}
		}
		return Result{Status: StatusAborted, Revision: s.rev}
	case OpForget:
		delete(s.records, id)
		s.recorded.Store(len(s.records) > 0)
		return Result{Status: StatusOK, Revision: s.rev}
	}
	return Result{}
}

func cloneOps(ops []TxnOp) []TxnOp {
	out := make([]TxnOp, len(ops))
	for i, op := range ops {
		out[i] = TxnOp{Type: op.Type, Key: bytes.Clone(op.Key), Value: bytes.Clone(op.Value), Kind: op.Kind}
	}
	return out
}

// lock locks in.Keys for the transaction id (some may be its already).
// s.mu must be held for writing.
func (s *Store) lock(id string, in *Intent) {
	old := s.txns[id]
	l := &txnLocks{id: id, primary: bytes.Clone(in.Primary), time: in.Time, ttl: in.TTL, rev: s.rev}
	if old != nil {
		l.rev = old.rev
		l.keys = slices.Clone(old.keys)
	}
	for _, op := range in.Keys {
		t := op.Type // a write lock is a TxnPut, whatever the write
		if t == TxnDelete {
			t = TxnPut
		}
		if i, found := slices.BinarySearchFunc(l.keys, op.Key, func(o TxnOp, k []byte) int { return bytes.Compare(o.Key, k) }); found {
			if t != TxnGet {
				l.keys[i].Type = t
			}
		} else {
			l.keys = slices.Insert(l.keys, i, TxnOp{Type: t, Key: bytes.Clone(op.Key)})
		}
	}
	s.setLocks(l)
}

// setLocks stores l as the transaction's locks, replacing those it had.
// s.mu must be held for writing.
func (s *Store) setLocks(l *txnLocks) {
	if s.txns == nil {
		s.txns = make(map[string]*txnLocks)
	}
	s.txns[l.id] = l
	for _, op := range l.keys {
		s.locks.Set(lockItem{key: op.Key, txn: l, write: op.Type != TxnGet})
	}
	s.locked.Store(true)
	s.view = nil
}

// resolve applies the writes among ops of keys that the transaction id
// locks here at rev and releases those keys' locks; with rev 0 (aborted) it
// writes nothing and releases all the transaction's locks here.
// s.mu must be held for writing.
func (s *Store) resolve(id string, ops []TxnOp, rev int64) {
	l := s.txns[id]
	if l == nil {
		return
	}
	if rev > 0 {
		s.rev = max(s.rev, rev)
		released := make(map[string]bool, len(ops))
		for _, op := range ops {
			if h, ok := s.lockOf(op.Key); !ok || h.txn != l {
				continue
			}
			released[string(op.Key)] = true
			if op.Type == TxnGet {
				continue
			}
			probe := keyItem(op.Key)
			it, exists := s.tree.GetHint(probe, &s.hint)
			switch op.Type {
			case TxnPut:
				s.put(probe, it, exists, op.Value, op.Kind, rev, 0)
			case TxnDelete:
				if exists {
					s.tree.DeleteHint(it, &s.hint)
					s.untrack(it)
					s.retire(it, rev)
				}
			}
		}
		if len(released) < len(l.keys) {
			// A committed transaction releases only the locks of the
			// keys whose writes it was given: a lock left here is
			// resolved with its own write later, never dropped without
			// it.
			rest := *l
			rest.keys = slices.DeleteFunc(slices.Clone(l.keys), func(op TxnOp) bool { return released[string(op.Key)] })
			for key := range released {
				s.locks.Delete(lockItem{key: []byte(key)})
			}
			s.setLocks(&rest)
			return
		}
	}
	for _, op := range l.keys {
		s.locks.Delete(lockItem{key: op.Key})
	}
	delete(s.txns, id)
	s.locked.Store(s.locks.Len() > 0)
	s.view = nil
}

// LockOn returns (as LockedError's Intent) the write lock on key whose writes may land above below
// (taken at a revision under it), if there is one: a read of key at below
// or later must wait for it (see above). below = math.MaxInt64 asks for any
// write lock, as a read of the current state must.
func (s *Store) LockOn(key []byte, below int64) (Intent, bool) {
	if !s.locked.Load() {
		return Intent{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if l, ok := s.lockOf(key); ok && l.write && l.txn.rev < below {
		return *l.met(), true
	}
	return Intent{}, false
}

// LockIn is LockOn for the keys start <= key < end (end empty: no upper
// bound): the first such lock in key order.
func (s *Store) LockIn(start, end []byte, below int64) (Intent, bool) {
	if !s.locked.Load() {
		return Intent{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found Intent
	ok := false
	if s.locks.Len() == 0 {
		return found, false
	}
	s.locks.Ascend(lockItem{key: start}, func(l lockItem) bool {
		if len(end) > 0 && bytes.Compare(l.key, end) >= 0 {
			return false
		}
		if l.write && l.txn.rev < below {
			found, ok = *l.met(), true
			return false
		}
		return true
	})
	return found, ok
}

// HasTxns reports, without waiting for the store's lock, whether it holds
// any transaction's lock or commit record.
func (s *Store) HasTxns() bool { return s.locked.Load() || s.recorded.Load() }

// TxnCounts returns the number of keys locked and of commit records kept.
func (s *Store) TxnCounts() (locks, records int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.locks.Len(), len(s.records)
}

// Locks returns the transactions that hold locks here, each as its Intent
// (Keys: its keys here), by id.
func (s *Store) Locks() []Intent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Intent, 0, len(s.txns))
	for _, l := range s.txns {
		in := l.intent()
		in.Keys = l.keys
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Intent) int { return bytes.Compare(a.ID, b.ID) })
	return out
}

// Records returns the commit records kept here, by id (Intent: ID,
// Primary, Rev the commit revision, Keys the record).
func (s *Store) Records() []Intent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Intent, 0, len(s.records))
	for _, r := range s.records {
		out = append(out, Intent{ID: []byte(r.id), Primary: r.primary, Rev: r.rev, Keys: r.writes})
	}
	slices.SortFunc(out, func(a, b Intent) int { return bytes.Compare(a.ID, b.ID) })
	return out
}

// appendIntent appends the encoding of in, the body of a transaction's op:
//
//	id         uvarint length, bytes
//	primary    uvarint length, bytes
//	time, ttl  zigzag varints
//	keys       as a txn branch (count, then per op: type, key, value)
//	record     as a txn branch
//	answer     uvarint length, bytes
func appendIntent(dst []byte, in *Intent) []byte {
	dst = appendBytes(dst, in.ID)
	dst = appendBytes(dst, in.Primary)
	dst = appendVarints(dst, in.Time, in.TTL)
	dst = appendTxnOps(dst, in.Keys)
	return appendBytes(appendTxnOps(dst, in.Record), in.Answer)
}

func appendVarints(dst []byte, vs ...int64) []byte {
	for _, v := range vs {
		dst = binary.AppendVarint(dst, v)
	}
	return dst
}

func intentSize(in *Intent) int {
	return bytesLen(in.ID) + bytesLen(in.Primary) + varintLen(in.Time) + varintLen(in.TTL) + uvarintLen(uint64(len(in.Keys))) + txnOpsSize(in.Keys) + uvarintLen(uint64(len(in.Record))) + txnOpsSize(in.Record) + bytesLen(in.Answer)
}

// intent decodes what appendIntent wrote.
func (d *decoder) intent() *Intent {
	in := &Intent{}
	in.ID = d.bytes("txn id")
	in.Primary = d.bytes("primary")
	in.Time = d.varint("time")
	in.TTL = d.varint("ttl")
	in.Keys = d.txnOps("keys")
	in.Record = d.txnOps("record")
	in.Answer = d.bytes("answer")
	if len(in.Answer) == 0 {
		in.Answer = nil
	}
	if d.err != nil {
		return nil
	}
	return in
}

// appendState's part for transactions (state version 5):
//
//	clock      zigzag varint: the largest lock or recover time applied
//	locks      uvarint count, then per transaction: id, primary (uvarint
//	           length, bytes), time, ttl, rev (zigzag varints), keys as a
//	           txn branch
//	records    uvarint count, then per record: id, primary, rev, writes
func (v *View) appendTxns(dst []byte) []byte {
	dst = binary.AppendVarint(dst, v.txnClock)
	dst = binary.AppendUvarint(dst, uint64(len(v.locks)))
	for _, l := range v.locks {
		dst = appendBytes(dst, []byte(l.id))
		dst = appendBytes(dst, l.primary)
		dst = appendVarints(dst, l.time, l.ttl, l.rev)
		dst = appendTxnOps(dst, l.keys)
	}
	dst = binary.AppendUvarint(dst, uint64(len(v.records)))
	for _, r := range v.records {
		dst = appendBytes(dst, []byte(r.id))
		dst = appendBytes(dst, r.primary)
		dst = binary.AppendVarint(dst, r.rev)
		dst = appendTxnOps(dst, r.writes)
	}
	return dst
}

// minLocksSize and minRecordTxnSize are the fewest bytes an encoded
// transaction's locks and record take.
const (
	minLocksSize     = 6
	minRecordTxnSize = 4
)

func (d *decoder) txns(st *state) {
	st.txnClock = d.varint("txn clock")
	n := d.count("lock count", minLocksSize)
	for i := 0; i < n && d.err == nil; i++ {
		l := &txnLocks{id: string(d.bytes("lock id")), primary: bytes.Clone(d.bytes("lock primary"))}
		l.time, l.ttl, l.rev = d.varint("lock time"), d.varint("lock ttl"), d.varint("lock revision")
		l.keys = cloneOps(d.txnOps("lock keys"))
		if d.err != nil {
			return
		}
		if len(l.id) != TxnIDSize || (i > 0 && l.id <= st.locks[i-1].id) || len(l.primary) == 0 || l.time <= 0 || l.ttl <= 0 || l.rev < 0 || len(l.keys) == 0 {
			d.fail("lock %d: bad id, primary, time or revision", i)
			return
		}
		for j, op := range l.keys {
			if (op.Type != TxnGet && op.Type != TxnPut) || len(op.Value) != 0 || op.Kind != KindString || (j > 0 && bytes.Compare(l.keys[j-1].Key, op.Key) >= 0) {
				d.fail("lock %d: key %d: not a lock, or not in order", i, j)
				return
			}
		}
		st.locks = append(st.locks, l)
	}
	n = d.count("record count", minRecordTxnSize)
	for i := 0; i < n && d.err == nil; i++ {
		r := &txnRecord{id: string(d.bytes("record id")), primary: bytes.Clone(d.bytes("record primary")), rev: d.varint("record revision")}
		r.writes = cloneOps(d.txnOps("record writes"))
		if d.err != nil {
			return
		}
		if len(r.id) != TxnIDSize || (i > 0 && r.id <= st.txnRecords[i-1].id) || len(r.primary) == 0 || r.rev <= 0 || r.rev == math.MaxInt64 || len(r.writes) == 0 {
			d.fail("commit record %d: bad id, primary, revision or writes", i)
			return
		}
		st.txnRecords = append(st.txnRecords, r)
	}
	if d.err == nil && st.txnClock == 0 && len(st.locks) == 0 && len(st.txnRecords) == 0 {
		d.fail("version %d without transactions", stateVersionTxns)
	}
}

// txnState is the transactions' part of a store's state.
type txnState struct {
	clock   int64
	locks   *btree.BTreeG[lockItem]
	txns    map[string]*txnLocks
	records map[string]*txnRecord
}

// buildTxns checks the locks and records of st, a store's state at
// revision rev, and returns them as the store holds them.
func buildTxns(st *state, rev int64) (txnState, error) {
	t := txnState{clock: st.txnClock, locks: newLocks(), records: make(map[string]*txnRecord, len(st.txnRecords))}
	for _, l := range st.locks {
		for _, op := range l.keys {
			if _, taken := t.locks.Get(lockItem{key: op.Key}); taken {
				return txnState{}, fmt.Errorf("key %q locked twice: %w", op.Key, ErrMalformed)
			}
			t.locks.Set(lockItem{key: op.Key, txn: l, write: op.Type != TxnGet})
		}
		if l.rev > rev {
			return txnState{}, fmt.Errorf("a lock taken at revision %d, above the store's %d: %w", l.rev, rev, ErrMalformed)
		}
		if t.txns == nil {
			t.txns = make(map[string]*txnLocks)
		}
		t.txns[l.id] = l
	}
	for _, r := range st.txnRecords {
		if _, dup := t.records[r.id]; dup {
			return txnState{}, fmt.Errorf("two commit records of one transaction: %w", ErrMalformed)
		}
		t.records[r.id] = r
	}
	return t, nil
}

// splitTxns moves to right the locks of keys at or after key, and the
// records of primaries at or after it; right gets the clock too. s.mu must
// be held for writing.
func (s *Store) splitTxns(right *Store, key []byte) {
	right.txnClock = s.txnClock
	for id, l := range s.txns {
		i, _ := slices.BinarySearchFunc(l.keys, key, func(o TxnOp, k []byte) int { return bytes.Compare(o.Key, k) })
		if i == len(l.keys) {
			continue
		}
		for _, op := range l.keys[i:] {
			s.locks.Delete(lockItem{key: op.Key})
		}
		r := *l
		r.keys = slices.Clone(l.keys[i:])
		right.setLocks(&r)
		if i == 0 {
			delete(s.txns, id)
			continue
		}
		left := *l
		left.keys = slices.Clone(l.keys[:i])
		s.setLocks(&left)
	}
	s.locked.Store(s.locks.Len() > 0)
	right.locked.Store(right.locks.Len() > 0)
	for id, r := range s.records {
		if bytes.Compare(r.primary, key) >= 0 {
			right.records[id] = r
			delete(s.records, id)
		}
	}
	s.recorded.Store(len(s.records) > 0)
	right.recorded.Store(len(right.records) > 0)
}
