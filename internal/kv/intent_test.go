package kv

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func txnID(n byte) []byte {
	id := make([]byte, TxnIDSize)
	id[0] = n
	return id
}

// next applies cmd at the store's next index.
func next(t *testing.T, s *Store, cmd Command) Result {
	t.Helper()
	return mustApply(t, s, s.Applied()+1, cmd)
}

func stamped(t *testing.T, s *Store, rev int64, cmd Command) Result {
	t.Helper()
	res, err := s.ApplyStamped(s.Applied()+1, uint64(rev), cmd)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

const t0 = int64(1_700_000_000_000_000_000)

func lockCmd(id []byte, primary string, time int64, keys ...TxnOp) Command {
	return Command{Op: OpLock, Intent: &Intent{ID: id, Primary: []byte(primary), Time: time, TTL: 5e9, Keys: keys}}
}

func getOp(k string) TxnOp    { return TxnOp{Type: TxnGet, Key: []byte(k)} }
func putOp(k, v string) TxnOp { return TxnOp{Type: TxnPut, Key: []byte(k), Value: []byte(v)} }
func wantStatus(t *testing.T, what string, res Result, want Status) {
	t.Helper()
	if res.Status != want {
		t.Fatalf("%s: status %d, want %d", what, res.Status, want)
	}
}

// A transaction over two stores (two ranges): locks, commit on the
// primary's, resolve on the other; what others see meanwhile.
func TestTransactionOverTwoRanges(t *testing.T) {
	a, b := NewStore(), NewStore()
	stamped(t, a, 10, put("a", "100", Cond{}))
	stamped(t, b, 11, put("b", "5", Cond{}))
	id := txnID(1)

	res := next(t, a, lockCmd(id, "a", t0, putOp("a", "")))
	wantStatus(t, "lock a", res, StatusOK)
	if r := res.Txn.Responses[0]; !r.Found || string(r.KV.Value) != "100" || r.KV.Revision != 10 {
		t.Fatalf("lock answered %+v", r)
	}
	wantStatus(t, "lock b", next(t, b, lockCmd(id, "a", t0, putOp("b", ""), getOp("c"))), StatusOK)

	// Other writers are turned away, with the lock they met; nothing applies.
	res = stamped(t, a, 20, put("a", "x", Cond{}))
	wantStatus(t, "put a", res, StatusLocked)
	var le *LockedError
	if err := res.Err(); !errors.As(err, &le) || string(le.Lock.Primary) != "a" || le.Lock.Rev != 10 {
		t.Fatalf("put on a locked key: %v", err)
	}
	if a.Revision() != 10 {
		t.Fatalf("a refused write moved the revision to %d", a.Revision())
	}
	wantStatus(t, "txn on c", stamped(t, b, 21, Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{putOp("c", "1")}}}), StatusLocked)
	wantStatus(t, "other lock", next(t, b, lockCmd(txnID(2), "b", t0, getOp("b"))), StatusLocked)
	// Other keys of the ranges move on.
	stamped(t, a, 30, put("a2", "x", Cond{}))

	// Readers: a write lock hides writes above the revision it was taken at.
	if _, ok := a.LockOn([]byte("a"), 10); ok {
		t.Fatal("a read at 10 waits for a lock taken at 10")
	}
	if _, ok := a.LockOn([]byte("a"), 11); !ok {
		t.Fatal("a read at 11 does not wait for a lock taken at 10")
	}
	if _, ok := b.LockOn([]byte("c"), math.MaxInt64); ok {
		t.Fatal("a read lock holds up readers")
	}
	if l, ok := b.LockIn([]byte("a"), nil, math.MaxInt64); !ok || string(l.ID) != string(id) {
		t.Fatalf("LockIn = %+v, %v", l, ok)
	}

	// Commit at 25: below a's revision (30), above the locks'.
	record := []TxnOp{putOp("a", "90"), putOp("b", "15"), getOp("c")}
	res = next(t, a, Command{Op: OpCommit, Revision: 25, Intent: &Intent{ID: id, Primary: []byte("a"), Keys: record[:1], Record: record}})
	wantStatus(t, "commit", res, StatusOK)
	if got, _ := a.Get([]byte("a")); string(got.Value) != "90" || got.Revision != 25 || got.Version != 2 {
		t.Fatalf("a after commit: %+v", got)
	}
	if a.Revision() != 30 {
		t.Fatalf("a's revision %d after a commit below it", a.Revision())
	}
	if old, _, _ := a.GetAt([]byte("a"), 24); string(old.Value) != "100" {
		t.Fatalf("a at 24: %q", old.Value)
	}
	if recs := a.Records(); len(recs) != 1 || recs[0].Rev != 25 || len(recs[0].Keys) != 3 {
		t.Fatalf("records %+v", recs)
	}
	// A commit applied twice answers the same.
	wantStatus(t, "commit again", next(t, a, Command{Op: OpCommit, Revision: 25, Intent: &Intent{ID: id, Primary: []byte("a"), Keys: record[:1], Record: record}}), StatusOK)

	next(t, b, Command{Op: OpResolve, Revision: 25, Intent: &Intent{ID: id, Primary: []byte("a"), Keys: record[1:]}})
	if got, _ := b.Get([]byte("b")); string(got.Value) != "15" || got.Revision != 25 {
		t.Fatalf("b after resolve: %+v", got)
	}
	if _, ok := b.LockIn(nil, nil, math.MaxInt64); ok || len(b.Locks()) != 0 {
		t.Fatal("locks left after resolve")
	}
	if b.Revision() != 25 {
		t.Fatalf("b's revision %d", b.Revision())
	}
	// The events at 25 are where they belong in b's history.
	evs, err := b.Changes(nil, nil, 0, 25)
	if err != nil || len(evs) != 2 || evs[1].KV.Revision != 25 || string(evs[1].KV.Value) != "15" {
		t.Fatalf("changes %+v, %v", evs, err)
	}
	stamped(t, b, 40, put("b", "16", Cond{}))
	next(t, a, Command{Op: OpForget, Intent: &Intent{ID: id, Primary: []byte("a")}})
	if len(a.Records()) != 0 || a.HasTxns() || b.HasTxns() {
		t.Fatal("record kept after forget, or a store still says it holds transactions")
	}
}

// A coordinator that dies: whoever meets its lock after its time asks the
// primary's range, which aborts it for good, or finds it committed.
func TestRecoverAbandonedTransaction(t *testing.T) {
	a, b := NewStore(), NewStore()
	id := txnID(7)
	wantStatus(t, "lock b", next(t, b, lockCmd(id, "a", t0, putOp("b", ""))), StatusOK)
	met, _ := b.LockOn([]byte("b"), math.MaxInt64)
	recover := func(now int64) Result {
		return next(t, a, Command{Op: OpRecover, Now: now, Intent: &Intent{ID: met.ID, Primary: met.Primary, Time: met.Time, TTL: met.TTL}})
	}
	// Before its time, the primary's lock missing means it is still locking.
	wantStatus(t, "recover early", recover(t0+1e9), StatusLocked)
	wantStatus(t, "lock a", next(t, a, lockCmd(id, "a", t0, putOp("a", ""))), StatusOK)
	wantStatus(t, "recover while live", recover(t0+2e9), StatusLocked)
	wantStatus(t, "recover after its time", recover(t0+5e9), StatusAborted)
	if len(a.Locks()) != 0 {
		t.Fatal("the primary's lock survived the abort")
	}
	// The coordinator wakes up: its commit and a late lock are refused.
	wantStatus(t, "late commit", next(t, a, Command{Op: OpCommit, Revision: 9, Intent: &Intent{ID: id, Primary: []byte("a"),
		Keys: []TxnOp{putOp("a", "1")}, Record: []TxnOp{putOp("a", "1"), putOp("b", "1")}}}), StatusAborted)
	wantStatus(t, "late lock", next(t, a, lockCmd(id, "a", t0, putOp("a", ""))), StatusAborted)
	next(t, b, Command{Op: OpResolve, Intent: &Intent{ID: id, Primary: []byte("a"), Keys: []TxnOp{putOp("b", "1")}}})
	if _, ok := b.Get([]byte("b")); ok || len(b.Locks()) != 0 {
		t.Fatal("an aborted resolve wrote or left its lock")
	}

	// Another: committed before its coordinator died.
	id2 := txnID(8)
	wantStatus(t, "lock a", next(t, a, lockCmd(id2, "a", t0+10e9, putOp("a", ""))), StatusOK)
	wantStatus(t, "lock b", next(t, b, lockCmd(id2, "a", t0+10e9, putOp("b", ""))), StatusOK)
	rec := []TxnOp{putOp("a", "1"), putOp("b", "2")}
	wantStatus(t, "commit", next(t, a, Command{Op: OpCommit, Revision: 50, Intent: &Intent{ID: id2, Primary: []byte("a"), Keys: rec[:1], Record: rec}}), StatusOK)
	res := next(t, a, Command{Op: OpRecover, Now: t0 + 20e9, Intent: &Intent{ID: id2, Primary: []byte("a"), Time: t0 + 10e9, TTL: 5e9}})
	if res.Status != StatusOK || res.Revision != 50 || len(res.Intent.Keys) != 2 {
		t.Fatalf("recover of a committed transaction: %+v", res)
	}
	next(t, b, Command{Op: OpResolve, Revision: res.Revision, Intent: &Intent{ID: id2, Primary: []byte("a"), Keys: res.Intent.Keys}})
	if got, _ := b.Get([]byte("b")); string(got.Value) != "2" || got.Revision != 50 {
		t.Fatalf("b after recovery: %+v", got)
	}
	// The result crosses the wire whole.
	back, err := UnmarshalResult(res.Marshal())
	if err != nil || !equalIntent(back.Intent, res.Intent) || back.Revision != 50 {
		t.Fatalf("result round trip: %+v, %v", back, err)
	}
}

// Locks and records survive a snapshot, and a split moves those of the
// keys that leave.
func TestTransactionsInSnapshotsAndSplits(t *testing.T) {
	s := NewStore()
	stamped(t, s, 5, put("m", "1", Cond{}))
	next(t, s, lockCmd(txnID(1), "a", t0, getOp("a"), putOp("z", "")))
	next(t, s, lockCmd(txnID(2), "q", t0, putOp("q", "")))
	next(t, s, lockCmd(txnID(3), "b", t0, putOp("b", "")))
	rec := []TxnOp{putOp("b", "1"), putOp("x", "1")}
	next(t, s, Command{Op: OpCommit, Revision: 9, Intent: &Intent{ID: txnID(3), Primary: []byte("b"), Keys: rec[:1], Record: rec}})
	next(t, s, lockCmd(txnID(4), "y", t0, putOp("y", "")))
	rec4 := []TxnOp{putOp("y", "1")}
	next(t, s, Command{Op: OpCommit, Revision: 10, Intent: &Intent{ID: txnID(4), Primary: []byte("y"), Keys: rec4, Record: rec4}})

	var pairs []KeyValue
	for p := range s.Snapshot().SnapshotPairs() {
		p.Value = slices.Clone(p.Value)
		pairs = append(pairs, p)
	}
	r := NewStore()
	if err := r.RestoreSnapshot(s.Applied(), seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(r.Locks(), s.Locks(), func(x, y Intent) bool { return equalIntent(&x, &y) }) || len(r.Locks()) != 2 ||
		!slices.EqualFunc(r.Records(), s.Records(), func(x, y Intent) bool { return equalIntent(&x, &y) }) || len(r.Records()) != 2 {
		t.Fatalf("restored locks %+v records %+v; want %+v %+v", r.Locks(), r.Records(), s.Locks(), s.Records())
	}
	if r.txnClock != t0 {
		t.Fatalf("restored clock %d", r.txnClock)
	}
	// A late lock is refused after the restore as before it.
	wantStatus(t, "lock after restore", next(t, r, lockCmd(txnID(9), "a", t0-6e9, getOp("k"))), StatusAborted)

	right, err := r.Split(r.Applied()+1, []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	keys := func(s *Store) (out []string) {
		for _, l := range s.Locks() {
			for _, k := range l.Keys {
				out = append(out, string(k.Key))
			}
		}
		return out
	}
	if got := keys(r); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("left locks %v", got)
	}
	if got := keys(right); !slices.Equal(got, []string{"z", "q"}) {
		t.Fatalf("right locks %v", got)
	}
	if !r.HasTxns() || !right.HasTxns() {
		t.Fatal("a side of the split says it holds no transactions")
	}
	if _, ok := right.LockOn([]byte("z"), math.MaxInt64); !ok {
		t.Fatal("the moved write lock is not seen")
	}
	if len(r.Records()) != 1 || string(r.Records()[0].Primary) != "b" || len(right.Records()) != 1 || string(right.Records()[0].Primary) != "y" {
		t.Fatalf("records left %+v right %+v", r.Records(), right.Records())
	}
	// A put on the moved lock is refused on the right; the left key is free.
	wantStatus(t, "put z", stamped(t, right, 100, put("z", "1", Cond{})), StatusLocked)
	wantStatus(t, "put m", stamped(t, r, 100, put("m", "2", Cond{})), StatusOK)
}

// A locked key does not expire until its lock goes.
func TestLockedKeyDoesNotExpire(t *testing.T) {
	s := NewStore()
	next(t, s, Command{Op: OpPut, Key: []byte("k"), Value: []byte("v"), Deadline: t0})
	next(t, s, lockCmd(txnID(1), "k", t0, getOp("k")))
	if res := next(t, s, Command{Op: OpExpire, Now: t0 + 1}); res.Version != 0 {
		t.Fatalf("expired %d keys under a lock", res.Version)
	}
	next(t, s, Command{Op: OpResolve, Intent: &Intent{ID: txnID(1), Primary: []byte("k"), Keys: []TxnOp{getOp("k")}}})
	if res := next(t, s, Command{Op: OpExpire, Now: t0 + 2}); res.Version != 1 {
		t.Fatalf("expired %d keys once free", res.Version)
	}
}

func TestIntentValidation(t *testing.T) {
	ok := lockCmd(txnID(1), "a", t0, getOp("a"))
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []Command{
		{Op: OpLock},
		lockCmd([]byte("short"), "a", t0, getOp("a")),
		lockCmd(txnID(1), "", t0, getOp("a")),
		lockCmd(txnID(1), "a", 0, getOp("a")),
		lockCmd(txnID(1), "a", t0),
		lockCmd(txnID(1), "a", t0, getOp("a"), getOp("a")),
		{Op: OpCommit, Intent: &Intent{ID: txnID(1), Primary: []byte("a"), Keys: []TxnOp{getOp("a")}, Record: []TxnOp{getOp("a")}}},
		{Op: OpCommit, Revision: 5, Intent: &Intent{ID: txnID(1), Primary: []byte("a"), Keys: []TxnOp{getOp("a")}}},
		{Op: OpRecover, Intent: &Intent{ID: txnID(1), Primary: []byte("a"), Time: 1, TTL: 1}},
		{Op: OpForget, Key: []byte("k"), Intent: &Intent{ID: txnID(1), Primary: []byte("a")}},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("command %d (%v) valid", i, c.Op)
		}
		if _, err := NewStore().Apply(1, c); err == nil {
			t.Errorf("command %d (%v) applied", i, c.Op)
		}
	}
}

// Evaluate answers as a store that applies the transaction does.
func TestEvaluateMatchesApply(t *testing.T) {
	txns := append(sampleTxns(),
		txnCmd([]Compare{cmpValue("k", CompareEqual, "w"), cmpNum("a", TargetVersion, CompareEqual, 1)},
			[]TxnOp{tput("k", "z"), tget("k"), tdel("a"), tget("a"), tdel("nope"), tput("new", "1"), tget("new")}, nil),
		txnCmd([]Compare{cmpValue("k", CompareEqual, "v")}, nil, []TxnOp{tget("k"), tput("k", "x"), tget("k")}))
	for i, txn := range txns {
		s := NewStore()
		stamped(t, s, 3, put("k", "v", Cond{}))
		stamped(t, s, 4, put("a", "1", Cond{}))
		stamped(t, s, 5, put("k", "w", Cond{}))
		want := stamped(t, s, 9, txn)
		s2 := NewStore()
		stamped(t, s2, 3, put("k", "v", Cond{}))
		stamped(t, s2, 4, put("a", "1", Cond{}))
		stamped(t, s2, 5, put("k", "w", Cond{}))
		res, _ := txn.Txn.Evaluate(9, s2.Get)
		if fmtResult(Result{Status: StatusOK, Revision: 9, Txn: res}) != fmtResult(want) {
			t.Errorf("txn %d: evaluated %s, applied %s", i, fmtResult(Result{Status: StatusOK, Revision: 9, Txn: res}), fmtResult(want))
		}
	}
}

// A transaction's request id: its commit records the answer, and a lock
// of a later attempt with the same id answers it instead of locking.
func TestTransactionRequestRecorded(t *testing.T) {
	a := NewStore()
	req := RequestID{Client: []byte("c"), Request: []byte("r1")}
	id := txnID(1)
	lock := lockCmd(id, "a", t0, putOp("a", ""))
	lock.Request, lock.Time, lock.TTL = req, t0, 60e9
	wantStatus(t, "lock", next(t, a, lock), StatusOK)
	answer := Result{Status: StatusOK, Revision: 20, Txn: &TxnResult{Succeeded: true, Responses: []TxnResponse{{Type: TxnPut}, {Type: TxnPut}}}}
	rec := []TxnOp{putOp("a", "1"), putOp("b", "1")}
	commit := Command{Op: OpCommit, Revision: 20, Request: req, Time: t0, TTL: 60e9,
		Intent: &Intent{ID: id, Primary: []byte("a"), Keys: rec[:1], Record: rec, Answer: answer.Marshal()}}
	wantStatus(t, "commit", next(t, a, commit), StatusOK)
	r, ok := a.Record(req, OpTxn)
	if !ok || r.Revision != 20 || fmtResult(r.Result) != fmtResult(answer) {
		t.Fatalf("record %+v, %v", r, ok)
	}
	again := lockCmd(txnID(2), "a", t0+1e9, putOp("a", ""))
	again.Request, again.Time, again.TTL = req, t0+1e9, 60e9
	res := next(t, a, again)
	if !res.Replayed || fmtResult(res) != fmtResult(answer) || len(a.Locks()) != 0 {
		t.Fatalf("a second attempt's lock: %s replayed=%v, %d locks", fmtResult(res), res.Replayed, len(a.Locks()))
	}
}

// A commit releases only the locks of the keys it was given the writes of:
// a lock of another of the transaction's keys stays until its own write
// comes; an abort releases them all.
func TestResolveReleasesWhatItWrites(t *testing.T) {
	s := NewStore()
	id := txnID(1)
	next(t, s, lockCmd(id, "a", t0, putOp("a", ""), putOp("b", ""), getOp("c")))
	next(t, s, Command{Op: OpResolve, Revision: 9, Intent: &Intent{ID: id, Primary: []byte("a"), Keys: []TxnOp{putOp("a", "1"), getOp("c")}}})
	if _, ok := s.LockOn([]byte("b"), math.MaxInt64); !ok {
		t.Fatal("b's lock went without its write")
	}
	if _, ok := s.LockOn([]byte("a"), math.MaxInt64); ok {
		t.Fatal("a's lock stayed after its write")
	}
	wantStatus(t, "put c", stamped(t, s, 20, put("c", "x", Cond{})), StatusOK)
	next(t, s, Command{Op: OpResolve, Revision: 9, Intent: &Intent{ID: id, Primary: []byte("a"), Keys: []TxnOp{putOp("b", "2")}}})
	if got, _ := s.Get([]byte("b")); string(got.Value) != "2" || got.Revision != 9 || s.HasTxns() {
		t.Fatalf("b after its resolve: %+v, transactions left: %v", got, s.HasTxns())
	}
	id2 := txnID(2)
	next(t, s, lockCmd(id2, "a", t0, putOp("a", ""), putOp("b", "")))
	next(t, s, Command{Op: OpResolve, Intent: &Intent{ID: id2, Primary: []byte("a"), Keys: []TxnOp{getOp("a")}}})
	if s.HasTxns() {
		t.Fatal("an abort left locks")
	}
}
