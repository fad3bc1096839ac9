package kv

import (
	"slices"
	"testing"
)

func putTTL(key, value string, deadline int64) Command {
	return Command{Op: OpPut, Key: []byte(key), Value: []byte(value), Deadline: deadline}
}

func TestExpireDeletesDueKeys(t *testing.T) {
	tests := []struct {
		name string
		now  int64
		want []string
	}{
		{"before every deadline", 99, []string{"a", "b", "c"}},
		{"at the first deadline", 100, []string{"b", "c"}},
		{"past both", 250, []string{"c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore()
			mustApply(t, s, 1, putTTL("a", "1", 100))
			mustApply(t, s, 2, putTTL("b", "2", 200))
			mustApply(t, s, 3, put("c", "3", Cond{}))
			res := mustApply(t, s, 4, Command{Op: OpExpire, Now: tt.now})
			got := keysOf(collect(s.Snapshot()))
			if !slices.Equal(got, tt.want) || int(res.Version) != 3-len(tt.want) {
				t.Fatalf("keys %v (deleted %d), want %v", got, res.Version, tt.want)
			}
		})
	}
}

func TestPutWithoutDeadlineClearsIt(t *testing.T) {
	s := NewStore()
	mustApply(t, s, 1, putTTL("k", "1", 100))
	if kv, _ := s.Get([]byte("k")); kv.Deadline != 100 {
		t.Fatalf("deadline %d, want 100", kv.Deadline)
	}
	if d, ok := s.NextDeadline(); !ok || d != 100 {
		t.Fatalf("NextDeadline %d %v, want 100", d, ok)
	}
	mustApply(t, s, 2, put("k", "2", Cond{PrevVersion: i64(1)}))
	if _, ok := s.NextDeadline(); ok {
		t.Fatal("a put without a deadline left the key's deadline in the index")
	}
	mustApply(t, s, 3, Command{Op: OpExpire, Now: 1000})
	if kv, ok := s.Get([]byte("k")); !ok || string(kv.Value) != "2" || kv.Deadline != 0 {
		t.Fatalf("got %+v %v, want the key without deadline", kv, ok)
	}
	// A deleted key leaves the index too; a txn put clears a deadline.
	mustApply(t, s, 4, putTTL("d", "x", 50))
	mustApply(t, s, 5, del("d", Cond{}))
	mustApply(t, s, 6, putTTL("t", "x", 50))
	mustApply(t, s, 7, Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{{Type: TxnPut, Key: []byte("t"), Value: []byte("y")}}}})
	if d, ok := s.NextDeadline(); ok {
		t.Fatalf("NextDeadline %d after delete and txn put, want none", d)
	}
}

func TestSnapshotKeepsDeadlines(t *testing.T) {
	s := NewStore()
	mustApply(t, s, 1, putTTL("a", "1", 100))
	mustApply(t, s, 2, Command{Op: OpPut, Key: []byte("b"), Value: []byte("[1]"), Kind: KindJSON, Deadline: 300})
	mustApply(t, s, 3, put("c", "3", Cond{}))
	var pairs []KeyValue
	for p := range s.Snapshot().SnapshotPairs() {
		p.Value = append([]byte(nil), p.Value...)
		pairs = append(pairs, p)
	}
	r := NewStore()
	if err := r.RestoreSnapshot(3, seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		key      string
		kind     ValueKind
		deadline int64
	}{{"a", KindString, 100}, {"b", KindJSON, 300}, {"c", KindString, 0}} {
		kv, ok := r.Get([]byte(want.key))
		if !ok || kv.Kind != want.kind || kv.Deadline != want.deadline {
			t.Errorf("%s: %+v %v, want kind %v deadline %d", want.key, kv, ok, want.kind, want.deadline)
		}
	}
	mustApply(t, r, 4, Command{Op: OpExpire, Now: 200})
	if got := keysOf(collect(r.Snapshot())); len(got) != 2 || got[0] != "b" {
		t.Fatalf("keys after expiry at 200 on the restored store: %v, want [b c]", got)
	}
}

func TestOldSnapshotHasNoDeadlines(t *testing.T) {
	// The pairs of a snapshot written before deadlines: kind bytes 0 and 1.
	pairs := []KeyValue{
		{Key: []byte{}, Value: append([]byte(stateMagic), stateVersion, 0, 0), Version: 1, Revision: 1, CreateRevision: 1},
		{Key: []byte("a"), Value: []byte("\x00v"), Version: 1, Revision: 2, CreateRevision: 2},
		{Key: []byte("b"), Value: []byte("\x011"), Version: 1, Revision: 3, CreateRevision: 3},
	}
	s := NewStore()
	if err := s.RestoreSnapshot(3, seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	if kv, ok := s.Get([]byte("b")); !ok || kv.Deadline != 0 || kv.Kind != KindJSON || string(kv.Value) != "1" {
		t.Fatalf("b: %+v %v", kv, ok)
	}
	if _, ok := s.NextDeadline(); ok {
		t.Fatal("an old snapshot restored with a deadline")
	}
}

func TestExpireCommandValidate(t *testing.T) {
	bad := []Command{
		{Op: OpExpire},
		{Op: OpExpire, Now: 5, Key: []byte("k")},
		{Op: OpDelete, Key: []byte("k"), Deadline: 5},
		{Op: OpPut, Key: []byte("k"), Deadline: -1},
		{Op: OpPut, Key: []byte("k"), Now: 3},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: Validate accepted it", c)
		}
	}
	if err := (Command{Op: OpExpire, Now: 1}).Validate(); err != nil {
		t.Errorf("expire: %v", err)
	}
}
