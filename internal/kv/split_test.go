package kv

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestSplitMovesTheKeysFromTheSplitKeyOn: after Split at "k5", the store
// keeps the keys before it and the returned one holds the others, each with
// its value, version, revisions and deadline; the session table is on both
// sides; both have applied the split's index, and neither Split again at an
// index already applied nor an empty key is accepted.
func TestSplitMovesTheKeysFromTheSplitKeyOn(t *testing.T) {
	s := NewStore()
	idx := uint64(0)
	deadline := time.Now().Add(time.Hour).UnixNano()
	for i := range 10 {
		idx++
		cmd := Command{Op: OpPut, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("v1")}
		if i%3 == 0 {
			cmd.Deadline = deadline + int64(i)
		}
		mustApply(t, s, idx, cmd)
	}
	idx++
	id := RequestID{Client: []byte("c"), Request: []byte("r1")}
	mustApply(t, s, idx, Command{Op: OpPut, Key: []byte("k7"), Value: []byte("v2"), Request: id, Time: time.Now().UnixNano(), TTL: int64(time.Hour)})
	before, _ := s.Get([]byte("k7"))

	view := s.Snapshot() // taken before: must not change
	right, err := s.Split(idx+1, []byte("k5"))
	if err != nil {
		t.Fatal(err)
	}
	if got := splitKeys(s); got != "k0 k1 k2 k3 k4" {
		t.Fatalf("left holds %s", got)
	}
	if got := splitKeys(right); got != "k5 k6 k7 k8 k9" {
		t.Fatalf("right holds %s", got)
	}
	if view.Len() != 10 {
		t.Fatalf("a View taken before the split holds %d keys, want 10", view.Len())
	}
	if got, _ := right.Get([]byte("k7")); got.Version != before.Version || got.Revision != before.Revision ||
		got.CreateRevision != before.CreateRevision || string(got.Value) != "v2" {
		t.Fatalf("k7 after the split: %+v, before %+v", got, before)
	}
	if got, _ := right.Get([]byte("k6")); got.Deadline != deadline+6 {
		t.Fatalf("k6's deadline after the split: %d, want %d", got.Deadline, deadline+6)
	}
	if d, ok := s.NextDeadline(); !ok || d != deadline {
		t.Fatalf("left's next deadline %d %v, want k0's %d", d, ok, deadline)
	}
	if d, ok := right.NextDeadline(); !ok || d != deadline+6 {
		t.Fatalf("right's next deadline %d %v, want k6's %d", d, ok, deadline+6)
	}
	for name, st := range map[string]*Store{"left": s, "right": right} {
		if _, ok := st.Record(id, OpPut); !ok {
			t.Fatalf("%s lost the session record of the request", name)
		}
		if st.Applied() != idx+1 {
			t.Fatalf("%s applied %d, want %d", name, st.Applied(), idx+1)
		}
	}
	// A retry of the recorded request on the right side changes nothing.
	res := mustApply(t, right, idx+2, Command{Op: OpPut, Key: []byte("k7"), Value: []byte("v2"), Request: id, Time: time.Now().UnixNano(), TTL: int64(time.Hour)})
	if got, _ := right.Get([]byte("k7")); got.Version != before.Version || res.Revision != before.Revision {
		t.Fatalf("a retried request applied again after the split: %+v (result %+v)", got, res)
	}
	if _, err := s.Split(idx, []byte("k2")); !errors.Is(err, ErrBadIndex) {
		t.Fatalf("Split at an applied index: %v, want ErrBadIndex", err)
	}
	if _, err := s.Split(idx+5, nil); err == nil {
		t.Fatal("Split at the empty key accepted")
	}
}

func splitKeys(s *Store) string {
	out := ""
	for kv := range s.Snapshot().All() {
		if out != "" {
			out += " "
		}
		out += string(kv.Key)
	}
	return out
}

// TestSplitCommandNeedsKeyAndShard: a split without a key or with shard 0
// neither validates nor decodes.
func TestSplitCommandNeedsKeyAndShard(t *testing.T) {
	for _, c := range []Command{{Op: OpSplit, Shard: 2}, {Op: OpSplit, Key: []byte("k")}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v validates", c)
		}
		if _, err := UnmarshalCommand(c.Marshal()); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v decodes: %v", c, err)
		}
	}
	if err := (Command{Op: OpSplit, Key: []byte("k"), Shard: 2, Value: []byte("v")}).Validate(); err == nil {
		t.Error("a split with a value validates")
	}
}

// TestBytesCountsKeysAndValues: Bytes is the size of the keys and values,
// through puts, overwrites, deletes, transactions, expiry, a split and a
// restore.
func TestBytesCountsKeysAndValues(t *testing.T) {
	s := NewStore()
	want := func(what string, n int64) {
		t.Helper()
		if got := s.Bytes(); got != n {
			t.Fatalf("%s: Bytes = %d, want %d", what, got, n)
		}
	}
	mustApply(t, s, 1, Command{Op: OpPut, Key: []byte("ab"), Value: []byte("xyz")})
	want("a put", 5)
	mustApply(t, s, 2, Command{Op: OpPut, Key: []byte("ab"), Value: []byte("x")})
	want("an overwrite", 3)
	mustApply(t, s, 3, Command{Op: OpPut, Key: []byte("cd"), Value: []byte("1234"), Deadline: 10})
	want("a second key", 9)
	mustApply(t, s, 4, Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{{Type: TxnPut, Key: []byte("ef"), Value: []byte("v")}, {Type: TxnDelete, Key: []byte("ab")}}}})
	want("a txn", 9)
	mustApply(t, s, 5, Command{Op: OpExpire, Now: 20})
	want("an expiry", 3)
	mustApply(t, s, 6, Command{Op: OpPut, Key: []byte("zz"), Value: []byte("0123456789")})
	right, err := s.Split(7, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	want("the left side of a split", 3)
	if got := right.Bytes(); got != 12 {
		t.Fatalf("the right side of a split: Bytes = %d, want 12", got)
	}
	r := NewStore()
	if err := r.RestoreSnapshot(7, func(yield func(KeyValue, error) bool) {
		for kv := range right.Snapshot().SnapshotPairs() {
			if !yield(kv, nil) {
				return
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if got := r.Bytes(); got != 12 {
		t.Fatalf("restored: Bytes = %d, want 12", got)
	}
	mustApply(t, s, 8, Command{Op: OpDelete, Key: []byte("ef")})
	want("a delete", 0)
}

// TestAllocateAnswersItsIndex: an allocate changes nothing and answers the
// index of its entry, so that every allocate of a log gets its own id.
func TestAllocateAnswersItsIndex(t *testing.T) {
	s := NewStore()
	mustApply(t, s, 3, Command{Op: OpPut, Key: []byte("k"), Value: []byte("v")})
	for _, idx := range []uint64{4, 9} {
		res := mustApply(t, s, idx, Command{Op: OpAllocate})
		if res.Status != StatusOK || res.Revision != int64(idx) {
			t.Fatalf("allocate at %d: %+v", idx, res)
		}
	}
	if got, _ := s.Get([]byte("k")); got.Revision != 3 || s.Len() != 1 || s.Applied() != 9 {
		t.Fatalf("after allocates: %+v, %d keys, applied %d", got, s.Len(), s.Applied())
	}
	if err := (Command{Op: OpAllocate, Key: []byte("k")}).Validate(); err == nil {
		t.Fatal("an allocate with a key validates")
	}
}
