package kv

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func equalPtr(a, b *int64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func equalCommand(a, b Command) bool {
	return a.Op == b.Op && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.Kind == b.Kind &&
		a.Cond.CreateOnly == b.Cond.CreateOnly &&
		equalPtr(a.Cond.PrevVersion, b.Cond.PrevVersion) && equalPtr(a.Cond.PrevRevision, b.Cond.PrevRevision) &&
		bytes.Equal(a.Request.Client, b.Request.Client) && bytes.Equal(a.Request.Request, b.Request.Request) &&
		a.Time == b.Time && a.TTL == b.TTL && a.Deadline == b.Deadline && a.Now == b.Now && a.Shard == b.Shard &&
		a.Revision == b.Revision && (a.Op != OpTxn || equalTxn(a.Txn, b.Txn)) && equalIntent(a.Intent, b.Intent)
}

func equalIntent(a, b *Intent) bool {
	if a == nil || b == nil {
		return a == b
	}
	return bytes.Equal(a.ID, b.ID) && bytes.Equal(a.Primary, b.Primary) && a.Time == b.Time && a.TTL == b.TTL && a.Rev == b.Rev &&
		equalOps(a.Keys, b.Keys) && equalOps(a.Record, b.Record) && bytes.Equal(a.Answer, b.Answer)
}

func equalOps(a, b []TxnOp) bool {
	return slices.EqualFunc(a, b, func(x, y TxnOp) bool {
		return x.Type == y.Type && bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Value, y.Value) && x.Kind == y.Kind
	})
}

// sampleCommands are round-tripped by the tests and seed the fuzzer.
func sampleCommands() []Command {
	return []Command{
		put("k", "v", Cond{}),
		{Op: OpPut, Key: []byte("t"), Value: []byte("v"), Deadline: 1_700_000_030_000_000_000},
		{Op: OpPut, Key: []byte("t"), Value: []byte("1"), Kind: KindJSON, Cond: Cond{PrevVersion: i64(2)}, Deadline: 5,
			Request: RequestID{Request: []byte("r")}, Time: 1, TTL: 2},
		{Op: OpExpire, Now: 1_700_000_031_000_000_000},
		{Op: OpSplit, Key: []byte("m\x00"), Shard: 7},
		{Op: OpSplit, Key: []byte("k"), Shard: 1 << 40},
		{Op: OpAllocate},
		{Op: OpMark, Mark: 1 << 40},
		{Op: OpCompact, Revision: 1 << 40},
		{Op: OpCompact, Revision: 1},
		{Op: OpAdvance, Revision: 1 << 50},
		{Op: OpLock, Intent: &Intent{ID: txnID(1), Primary: []byte("a"), Time: 1_700_000_031_000_000_000, TTL: 5e9,
			Keys: []TxnOp{{Type: TxnGet, Key: []byte("a")}, {Type: TxnPut, Key: []byte("b")}, {Type: TxnDelete, Key: []byte("c")}}}},
		{Op: OpCommit, Revision: 77, Intent: &Intent{ID: txnID(2), Primary: []byte("a"),
			Keys:   []TxnOp{{Type: TxnPut, Key: []byte("a"), Value: []byte("1"), Kind: KindJSON}},
			Record: []TxnOp{{Type: TxnPut, Key: []byte("a"), Value: []byte("1"), Kind: KindJSON}, {Type: TxnDelete, Key: []byte("z")}}}},
		{Op: OpResolve, Intent: &Intent{ID: txnID(3), Primary: []byte("a"), Keys: []TxnOp{{Type: TxnGet, Key: []byte("q")}}}},
		{Op: OpResolve, Revision: 9, Intent: &Intent{ID: txnID(3), Primary: []byte("a"), Keys: []TxnOp{{Type: TxnPut, Key: []byte("q"), Value: []byte("v")}}}},
		{Op: OpRecover, Now: 1_700_000_039_000_000_000, Intent: &Intent{ID: txnID(4), Primary: []byte("p"), Time: 1_700_000_031_000_000_000, TTL: 1}},
		{Op: OpForget, Intent: &Intent{ID: txnID(5), Primary: []byte("p")}},
		{Op: OpLock, Request: RequestID{Client: []byte("c"), Request: []byte("r")}, Time: 3, TTL: 4,
			Intent: &Intent{ID: txnID(6), Primary: []byte("a"), Time: 1, TTL: 2, Keys: []TxnOp{{Type: TxnGet, Key: []byte("a")}}}},
		{Op: OpCommit, Revision: 8, Request: RequestID{Request: []byte("r")}, Time: 3, TTL: 4,
			Intent: &Intent{ID: txnID(6), Primary: []byte("a"), Keys: []TxnOp{{Type: TxnPut, Key: []byte("a")}}, Record: []TxnOp{{Type: TxnPut, Key: []byte("a")}},
				Answer: Result{Status: StatusOK, Revision: 8, Txn: &TxnResult{Succeeded: true, Responses: []TxnResponse{{Type: TxnPut}}}}.Marshal()}},
		put("", "", Cond{}),
		put("key", strings.Repeat("x", 300), Cond{CreateOnly: true}),
		put("k", "v", Cond{PrevVersion: i64(0)}),
		put("k", "v", Cond{PrevVersion: i64(3), PrevRevision: i64(1 << 40)}),
		put("k\x00\xff", "v\x00", Cond{CreateOnly: true, PrevVersion: i64(-1), PrevRevision: i64(math.MinInt64)}),
		put("k", "v", Cond{PrevRevision: i64(math.MaxInt64)}),
		del("k", Cond{}),
		del(strings.Repeat("k", 200), Cond{PrevRevision: i64(17)}),
		del("", Cond{CreateOnly: true, PrevVersion: i64(1)}),
		{Op: OpPut, Key: []byte("n"), Value: []byte("1.5e3"), Kind: KindJSON},
		{Op: OpPut, Key: []byte("o"), Value: []byte(`{"a":[1,2]}`), Kind: KindJSON, Cond: Cond{PrevVersion: i64(2)}},
		{Op: OpPut, Key: []byte("z"), Value: []byte("null"), Kind: KindJSON},
		withID(put("k", "v", Cond{PrevRevision: i64(3)}), "client", "request", 1700000000000000000, 3600e9),
		withID(del("k", Cond{}), "", "idempotency-key", -1, 1),
		withID(Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{tput("a", "b")}}}, "c", "r", 5, 6),
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		b := c.Marshal()
		if len(b) != c.size() {
			t.Errorf("%v %q: size %d, encoded %d bytes", c.Op, c.Key, c.size(), len(b))
		}
		got, err := UnmarshalCommand(b)
		if err != nil {
			t.Fatalf("%v %q: %v", c.Op, c.Key, err)
		}
		if !equalCommand(got, c) {
			t.Fatalf("round trip of %+v gave %+v", c, got)
		}
		if ab := c.AppendMarshal([]byte("prefix")); !bytes.Equal(ab, append([]byte("prefix"), b...)) {
			t.Fatalf("AppendMarshal differs from Marshal")
		}
	}
	// A delete carries no value, whatever the struct held.
	c, err := UnmarshalCommand(Command{Op: OpDelete, Key: []byte("k"), Value: []byte("ignored")}.Marshal())
	if err != nil || c.Value != nil {
		t.Fatalf("delete with value: %+v, %v", c, err)
	}
}

func TestUnmarshalCommandAliases(t *testing.T) {
	b := put("key", "value", Cond{}).Marshal()
	c, err := UnmarshalCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if cap(c.Key) != len(c.Key) || cap(c.Value) != len(c.Value) {
		t.Fatalf("decoded slices not capped: key cap %d, value cap %d", cap(c.Key), cap(c.Value))
	}
	// Apply copies, so the entry buffer can be reused afterwards.
	s := NewStore()
	if _, err := s.Apply(1, c); err != nil {
		t.Fatal(err)
	}
	clear(b)
	if kv, ok := s.Get([]byte("key")); !ok || string(kv.Value) != "value" {
		t.Fatalf("store changed with the log buffer: %s", fmtKV(kv))
	}
}

func TestUnmarshalCommandRejects(t *testing.T) {
	valid := put("key", "value", Cond{PrevVersion: i64(5), PrevRevision: i64(9)}).Marshal()
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated version"},
		{"unknown version", []byte{2, 1, 0, 0, 0}, "unknown version 2"},
		{"version 0", []byte{0, 1, 0, 0, 0}, "unknown version 0"},
		{"unknown op", []byte{1, 16, 0, 0}, "unknown op 16"},
		{"compaction to revision 0", []byte{1, byte(OpCompact), 0, 0}, "compact to revision 0"},
		{"compaction with flags", []byte{1, byte(OpCompact), 1, 1}, "flags 0x1 on a compact"},
		{"advance to revision 0", []byte{1, byte(OpAdvance), 0, 0}, "advance to revision 0"},
		{"op 0", []byte{1, 0, 0, 0}, "unknown op 0"},
		{"unknown flag", []byte{1, 2, 0x40, 0}, "unknown flags 0x40"},
		{"deadline on a delete", []byte{1, 2, 0x20, 0, 2}, "deadline flag on a delete"},
		{"zero deadline", []byte{1, 1, 0x20, 0, 0, 0}, "deadline 0 is not positive"},
		{"expire with flags", []byte{1, 4, 1, 2}, "flags 0x1 on an expire"},
		{"expire at 0", []byte{1, 4, 0, 0}, "expire time 0 is not positive"},
		{"JSON flag on a delete", []byte{1, 2, cmdJSON, 0}, "JSON value flag on a delete"},
		{"JSON put type on a get", []byte{1, 3, 0, 0, 1, 0x83, 1, 'k', 0}, "unknown type 131"},
		{"key longer than input", []byte{1, 2, 0, 5, 'a'}, "truncated key: length 5 exceeds the 1 bytes left"},
		{"huge key length", []byte{1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "length 18446744073709551615 exceeds"},
		{"varint overflow", []byte{1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "overflows"},
		{"non-minimal varint", []byte{1, 2, 0, 0x80, 0x00}, "not a minimal varint"},
		{"trailing byte", append(del("k", Cond{}).Marshal(), 0), "1 trailing bytes"},
		{"missing prev revision", []byte{1, 2, cmdPrevRevision, 1, 'k'}, "truncated prev_revision"},
	}
	for i := range len(valid) {
		tests = append(tests, struct {
			name string
			b    []byte
			want string
		}{"truncated valid command", valid[:i], "truncated"})
	}
	for _, tt := range tests {
		c, err := UnmarshalCommand(tt.b)
		if err == nil {
			t.Errorf("%s (% x): accepted as %+v", tt.name, tt.b, c)
			continue
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s (% x): error %q, want ErrMalformed mentioning %q", tt.name, tt.b, err, tt.want)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	for _, r := range []Result{
		{},
		{Status: StatusOK, Revision: 42},
		{Status: StatusNotFound},
		{Status: StatusConflict, Current: kvOf("k", "v", 3, 99, 7)},
		{Status: StatusConflict, Current: KeyValue{}},
		{Status: StatusConflict, Current: KeyValue{Key: []byte("k")}},
		{Status: StatusConflict, Current: kvOf("k\xff", strings.Repeat("v", 1000), math.MaxInt64, math.MaxInt64, 1)},
		{Status: StatusOK, Revision: -1},
		{Status: StatusOK, Revision: 42, Version: 3},
		{Status: StatusOK, Revision: 42, Version: math.MinInt64},
		{Status: StatusConflict, Current: KeyValue{Key: []byte("k"), Value: []byte("true"), Kind: KindJSON, Version: 1, Revision: 2, CreateRevision: 2}},
		{Status: StatusConflict, Current: KeyValue{Kind: KindJSON}},
	} {
		b := r.Marshal()
		if len(b) != r.size() {
			t.Errorf("%s: size %d, encoded %d", fmtResult(r), r.size(), len(b))
		}
		got, err := UnmarshalResult(b)
		if err != nil {
			t.Fatalf("%s: %v", fmtResult(r), err)
		}
		if !equalResult(got, r) {
			t.Fatalf("round trip of %s gave %s", fmtResult(r), fmtResult(got))
		}
		if !bytes.Equal(got.Marshal(), b) {
			t.Fatalf("%s: re-encoding differs", fmtResult(r))
		}
	}
}

func TestUnmarshalResultRejects(t *testing.T) {
	// The well-formed neighbour of the kind cases below decodes.
	if r, err := UnmarshalResult([]byte{1, 1, resCurrent | resKinds, 0, 1, 'k', 1, 'v', 2, 2, 2, 1}); err != nil || r.Current.Kind != KindJSON {
		t.Fatalf("JSON current: %s, %v", fmtResult(r), err)
	}
	valid := Result{Status: StatusConflict, Current: kvOf("k", "v", 3, 99, 7)}.Marshal()
	for _, b := range [][]byte{
		nil,
		{1},
		{2, 0, 0, 0},
		{1, 7, 0, 0},
		{1, 0, 4, 0},
		{1, 0, 0, 0, 0},
		{1, 1, resCurrent, 0, 0, 0, 0, 0, 0}, // a zero Current must be omitted
		{1, 0, 0, 0x80, 0x00},
		{1, 0, resVersion, 2, 0}, // a zero Version must be omitted
		{1, 1, resCurrent | resKinds, 0, 1, 'k', 1, 'v', 2, 2, 2, 0}, // kinds flagged, all strings
		{1, 1, resCurrent | resKinds, 0, 1, 'k', 1, 'v', 2, 2, 2, 2}, // unknown kind
	} {
		if r, err := UnmarshalResult(b); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: got %s, %v; want ErrMalformed", b, fmtResult(r), err)
		}
	}
	for i := range len(valid) {
		if _, err := UnmarshalResult(valid[:i]); err == nil {
			t.Errorf("truncated at %d accepted", i)
		}
	}
}

func FuzzUnmarshalCommand(f *testing.F) {
	for _, c := range append(append(sampleCommands(), sampleTxns()...), authCommands()...) {
		f.Add(c.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalCommand(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// The encoding is canonical: what is accepted re-encodes to the same bytes.
		re := c.Marshal()
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, re)
		}
		c2, err := UnmarshalCommand(re)
		if err != nil || !equalCommand(c, c2) {
			t.Fatalf("re-decoding: %+v, %v; want %+v", c2, err, c)
		}
	})
}

func FuzzUnmarshalResult(f *testing.F) {
	f.Add(Result{Status: StatusOK, Revision: 5}.Marshal())
	f.Add(Result{Status: StatusOK, Revision: 5, Version: 2}.Marshal())
	f.Add(Result{Status: StatusConflict, Current: kvOf("k", "v", 3, 99, 7)}.Marshal())
	for _, r := range sampleTxnResults() {
		f.Add(r.Marshal())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalResult(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if re := r.Marshal(); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, re)
		}
		if r2, err := UnmarshalResult(r.Marshal()); err != nil || !equalResult(r, r2) {
			t.Fatalf("re-decoding: %s, %v; want %s", fmtResult(r2), err, fmtResult(r))
		}
	})
}

// FuzzRestoreSnapshot feeds RestoreSnapshot a state pair and a pair of
// arbitrary bytes: it must refuse what SnapshotPairs would not write with
// ErrMalformed and leave the store as it was, and what it accepts must be
// written back the same by SnapshotPairs.
func FuzzRestoreSnapshot(f *testing.F) {
	f.Add([]byte{stateVersion, 0, 0}, []byte("\x01null"))
	f.Add([]byte{stateVersion, 0, 0}, []byte("\x00plain"))
	f.Add([]byte{stateVersion, 0}, []byte(""))
	f.Add([]byte{stateVersion, 0, 0}, []byte("\x80\x01\x00\x00\x00\x00\x00\x00\x00v"))
	f.Add([]byte{stateVersion, 0, 0}, []byte("\x81\x00\x00\x00\x00\x00\x00\x00\x80null"))
	// Retired versions (state version 4: revision 7, compacted to 0 or 2).
	f.Add([]byte{stateVersionHist, 0, 0, 0, 7, 0, 0}, []byte("\x40\x05\x00\x00\x00\x00\x00\x00\x00v"))
	f.Add([]byte{stateVersionHist, 0, 0, 0, 7, 0, 2}, []byte("\xc1\x05\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00[1]"))
	f.Add([]byte{stateVersionHist, 0, 0, 0, 7, 0, 0}, []byte("\x40\x01\x00\x00\x00\x00\x00\x00\x00v"))
	for _, st := range sampleStates() {
		f.Add(st, []byte("\x00v"))
	}
	// Locks and a commit record (state version 5).
	txns := NewStore()
	txns.ApplyStamped(1, 3, put("k", "v", Cond{}))
	txns.Apply(2, Command{Op: OpLock, Intent: &Intent{ID: txnID(1), Primary: []byte("a"), Time: 5, TTL: 5, Keys: []TxnOp{{Type: TxnPut, Key: []byte("k")}}}})
	txns.Apply(3, Command{Op: OpCommit, Revision: 6, Intent: &Intent{ID: txnID(2), Primary: []byte("a"), Keys: []TxnOp{{Type: TxnGet, Key: []byte("a")}},
		Record: []TxnOp{{Type: TxnPut, Key: []byte("a"), Value: []byte("1")}}}})
	for p := range txns.Snapshot().SnapshotPairs() {
		f.Add(bytes.Clone(p.Value[len(stateMagic):]), []byte("\x00v"))
		break
	}
	f.Fuzz(func(t *testing.T, st, value []byte) {
		pairs := []KeyValue{
			{Key: []byte{}, Value: append([]byte(stateMagic), st...), Version: 1, Revision: 1, CreateRevision: 1},
			{Key: []byte("k"), Value: value, Version: 1, Revision: 1, CreateRevision: 1},
		}
		s := NewStore()
		if _, err := s.Apply(1, put("before", "x", Cond{})); err != nil {
			t.Fatal(err)
		}
		if err := s.RestoreSnapshot(7, seqOf(pairs, nil)); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if kv, ok := s.Get([]byte("before")); !ok || string(kv.Value) != "x" || s.Applied() != 1 {
				t.Fatalf("a refused snapshot changed the store")
			}
			return
		}
		// An older state comes back as version 4: one written before
		// revisions were kept with the snapshot's index as the revision and
		// no mark, one written before history with compaction revision 0.
		switch st[0] {
		case stateVersion, stateVersionAuth:
			st4 := append([]byte{stateVersionHist}, st[1:]...)
			if st[0] == stateVersion {
				st4 = append(st4, 0) // no auth state
			}
			pairs[0].Value = append([]byte(stateMagic), append(st4, 7, 0, 0)...)
		case stateVersionRev:
			st4 := append([]byte{stateVersionHist}, st[1:]...)
			pairs[0].Value = append([]byte(stateMagic), append(st4, 0)...)
		}
		i := 0
		for p := range s.Snapshot().SnapshotPairs() {
			if i >= len(pairs) || !bytes.Equal(p.Key, pairs[i].Key) || !bytes.Equal(p.Value, pairs[i].Value) {
				t.Fatalf("pair %d written back as %q=%q", i, p.Key, p.Value)
			}
			i++
		}
		if i != len(pairs) {
			t.Fatalf("%d pairs written back, want %d", i, len(pairs))
		}
	})
}
