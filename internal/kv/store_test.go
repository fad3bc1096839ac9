package kv

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"iter"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: from the clock)")

func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (reproduce with -seed=%d)", seed, seed)
	return seed
}

func i64(v int64) *int64 { return &v }

func put(key, value string, c Cond) Command {
	return Command{Op: OpPut, Key: []byte(key), Value: []byte(value), Cond: c}
}

func del(key string, c Cond) Command { return Command{Op: OpDelete, Key: []byte(key), Cond: c} }

func kvOf(key, value string, version, rev, create int64) KeyValue {
	return KeyValue{Key: []byte(key), Value: []byte(value), Version: version, Revision: rev, CreateRevision: create}
}

func equalKV(a, b KeyValue) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.Kind == b.Kind &&
		a.Version == b.Version && a.Revision == b.Revision && a.CreateRevision == b.CreateRevision
}

func equalResult(a, b Result) bool {
	return a.Status == b.Status && a.Revision == b.Revision && a.Version == b.Version && equalKV(a.Current, b.Current) && equalTxnResult(a.Txn, b.Txn)
}

func fmtKV(kv KeyValue) string {
	if kv.Kind != KindString {
		return fmt.Sprintf("{%q=%s(%s) v%d r%d c%d}", kv.Key, kv.Kind, kv.Value, kv.Version, kv.Revision, kv.CreateRevision)
	}
	return fmt.Sprintf("{%q=%q v%d r%d c%d}", kv.Key, kv.Value, kv.Version, kv.Revision, kv.CreateRevision)
}

func fmtResult(r Result) string {
	if r.Txn != nil {
		return fmt.Sprintf("{%v rev=%d current=%s txn=%s}", r.Err(), r.Revision, fmtKV(r.Current), fmtTxnResult(r.Txn))
	}
	return fmt.Sprintf("{%v rev=%d version=%d current=%s}", r.Err(), r.Revision, r.Version, fmtKV(r.Current))
}

func TestApply(t *testing.T) {
	// ok is the result of a delete at rev, okPut of a put, which also
	// reports the key's version after it.
	ok := func(rev int64) Result { return Result{Status: StatusOK, Revision: rev} }
	okPut := func(rev, version int64) Result { return Result{Status: StatusOK, Revision: rev, Version: version} }
	conflict := func(cur KeyValue) Result { return Result{Status: StatusConflict, Current: cur} }
	notFound := Result{Status: StatusNotFound}
	v1 := kvOf("k", "v1", 1, 5, 5) // the state after the usual first step

	// Step i is applied at index 5*(i+1): gaps between indexes are allowed.
	tests := []struct {
		name  string
		steps []Command
		want  []Result
		state *KeyValue // of key "k" after all steps; nil: absent
	}{
		{"create", []Command{put("k", "v1", Cond{})}, []Result{okPut(5, 1)}, &v1},
		{"update bumps version and revision, keeps create revision",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{})},
			[]Result{okPut(5, 1), okPut(10, 2)}, &KeyValue{Key: []byte("k"), Value: []byte("v2"), Version: 2, Revision: 10, CreateRevision: 5}},
		{"update to empty value",
			[]Command{put("k", "v1", Cond{}), put("k", "", Cond{})},
			[]Result{okPut(5, 1), okPut(10, 2)}, &KeyValue{Key: []byte("k"), Value: []byte{}, Version: 2, Revision: 10, CreateRevision: 5}},
		{"delete", []Command{put("k", "v1", Cond{}), del("k", Cond{})}, []Result{okPut(5, 1), ok(10)}, nil},
		{"delete missing", []Command{del("k", Cond{})}, []Result{notFound}, nil},
		{"recreate starts again at version 1",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{}), del("k", Cond{}), put("k", "v3", Cond{})},
			[]Result{okPut(5, 1), okPut(10, 2), ok(15), okPut(20, 1)}, &KeyValue{Key: []byte("k"), Value: []byte("v3"), Version: 1, Revision: 20, CreateRevision: 20}},

		{"create-only on missing key holds", []Command{put("k", "v1", Cond{CreateOnly: true})}, []Result{okPut(5, 1)}, &v1},
		{"create-only on existing key fails",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{CreateOnly: true})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},

		{"prev version matches",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevVersion: i64(1)})},
			[]Result{okPut(5, 1), okPut(10, 2)}, &KeyValue{Key: []byte("k"), Value: []byte("v2"), Version: 2, Revision: 10, CreateRevision: 5}},
		{"prev version differs",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevVersion: i64(2)})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},
		{"prev version 0 on missing key holds", []Command{put("k", "v1", Cond{PrevVersion: i64(0)})}, []Result{okPut(5, 1)}, &v1},
		{"prev version 0 on existing key fails",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevVersion: i64(0)})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},
		{"prev version 1 on missing key fails with zero current",
			[]Command{put("k", "v1", Cond{PrevVersion: i64(1)})}, []Result{conflict(KeyValue{})}, nil},

		{"prev revision matches",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevRevision: i64(5)})},
			[]Result{okPut(5, 1), okPut(10, 2)}, &KeyValue{Key: []byte("k"), Value: []byte("v2"), Version: 2, Revision: 10, CreateRevision: 5}},
		{"prev revision differs",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevRevision: i64(4)})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},
		{"prev revision 0 on missing key holds", []Command{put("k", "v1", Cond{PrevRevision: i64(0)})}, []Result{okPut(5, 1)}, &v1},
		{"prev revision 0 on existing key fails",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevRevision: i64(0)})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},

		{"all conditions hold",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevVersion: i64(1), PrevRevision: i64(5)})},
			[]Result{okPut(5, 1), okPut(10, 2)}, &KeyValue{Key: []byte("k"), Value: []byte("v2"), Version: 2, Revision: 10, CreateRevision: 5}},
		{"one of several conditions fails",
			[]Command{put("k", "v1", Cond{}), put("k", "v2", Cond{PrevVersion: i64(1), PrevRevision: i64(6)})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},

		{"conditional delete holds",
			[]Command{put("k", "v1", Cond{}), del("k", Cond{PrevRevision: i64(5)})},
			[]Result{okPut(5, 1), ok(10)}, nil},
		{"conditional delete fails and keeps the key",
			[]Command{put("k", "v1", Cond{}), del("k", Cond{PrevVersion: i64(7)})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},
		{"delete of missing key whose condition holds is not found",
			[]Command{del("k", Cond{PrevVersion: i64(0)})}, []Result{notFound}, nil},
		{"create-only delete of existing key fails",
			[]Command{put("k", "v1", Cond{}), del("k", Cond{CreateOnly: true})},
			[]Result{okPut(5, 1), conflict(v1)}, &v1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore()
			// A neighbour that no write to "k" may disturb.
			if _, err := s.Apply(1, put("j", "other", Cond{})); err != nil {
				t.Fatal(err)
			}
			for i, cmd := range tt.steps {
				got, err := s.Apply(uint64(5*(i+1)), cmd)
				if err != nil {
					t.Fatalf("step %d: Apply: %v", i, err)
				}
				if !equalResult(got, tt.want[i]) {
					t.Fatalf("step %d (%v): result %s, want %s", i, cmd.Op, fmtResult(got), fmtResult(tt.want[i]))
				}
			}
			got, found := s.Get([]byte("k"))
			switch {
			case tt.state == nil && found:
				t.Fatalf("k = %s, want absent", fmtKV(got))
			case tt.state != nil && !found:
				t.Fatalf("k absent, want %s", fmtKV(*tt.state))
			case tt.state != nil && !equalKV(got, *tt.state):
				t.Fatalf("k = %s, want %s", fmtKV(got), fmtKV(*tt.state))
			}
			if j, _ := s.Get([]byte("j")); !equalKV(j, kvOf("j", "other", 1, 1, 1)) {
				t.Fatalf("neighbour j = %s", fmtKV(j))
			}
			wantLen := 1
			if tt.state != nil {
				wantLen = 2
			}
			if s.Len() != wantLen {
				t.Fatalf("Len = %d, want %d", s.Len(), wantLen)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	s := NewStore()
	if _, err := s.Apply(10, put("a", "1", Cond{})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		index uint64
		cmd   Command
		want  error
	}{
		{"same index", 10, put("b", "x", Cond{}), ErrBadIndex},
		{"lower index", 9, put("b", "x", Cond{}), ErrBadIndex},
		{"index beyond int64", 1 << 63, put("b", "x", Cond{}), ErrBadIndex},
		{"unknown op", 11, Command{Op: 9, Key: []byte("b")}, ErrUnknownOp},
		{"zero op", 11, Command{Key: []byte("b")}, ErrUnknownOp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(tc.index, tc.cmd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if s.Len() != 1 || s.Applied() != 10 {
				t.Fatalf("store changed: len %d applied %d", s.Len(), s.Applied())
			}
		})
	}
	// A failed command does not consume its index.
	if r, err := s.Apply(11, put("b", "x", Cond{})); err != nil || r.Revision != 11 {
		t.Fatalf("Apply(11) = %s, %v", fmtResult(r), err)
	}
}

func TestApplyOwnership(t *testing.T) {
	s := NewStore()
	key, val := []byte("key"), []byte("value")
	if _, err := s.Apply(1, Command{Op: OpPut, Key: key, Value: val}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Get([]byte("key"))
	// The caller reuses its buffers: the store must not see it.
	copy(key, "XXX")
	copy(val, "YYYYY")
	got, ok := s.Get([]byte("key"))
	if !ok || string(got.Value) != "value" {
		t.Fatalf("after caller reused buffers: %s, %v", fmtKV(got), ok)
	}
	// Later writes must not change what an earlier reader holds.
	val2 := []byte("value2")
	if _, err := s.Apply(2, Command{Op: OpPut, Key: []byte("key"), Value: val2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(3, del("key", Cond{})); err != nil {
		t.Fatal(err)
	}
	if !equalKV(before, kvOf("key", "value", 1, 1, 1)) {
		t.Fatalf("value held by a reader changed to %s", fmtKV(before))
	}
	// Appending to a returned key must not overwrite the value stored after it.
	if _, err := s.Apply(4, put("k", "vvvv", Cond{})); err != nil {
		t.Fatal(err)
	}
	kv, _ := s.Get([]byte("k"))
	_ = append(kv.Key, "XXXX"...)
	if kv, _ := s.Get([]byte("k")); string(kv.Value) != "vvvv" {
		t.Fatalf("append to returned key clobbered value: %q", kv.Value)
	}
}

func keysOf(kvs []KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

func TestRange(t *testing.T) {
	s := NewStore()
	keys := []string{"", "a", "b", "b\x00", "ba", "bb", "b\xff", "b\xff\x00", "b\xff\xff", "c", "c\x00", "\xff", "\xff\xff", "\xff\xff\x01"}
	for i, k := range keys {
		if _, err := s.Apply(uint64(i+1), put(k, "v"+k, Cond{})); err != nil {
			t.Fatal(err)
		}
	}
	b := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name       string
		start, end []byte
		limit      int
		want       []string
		more       bool
	}{
		{"everything", nil, nil, 0, keys, false},
		{"empty end is unbounded", nil, []byte{}, 0, keys, false},
		{"from b", b("b"), nil, 0, keys[2:], false},
		{"b up to c", b("b"), b("c"), 0, keys[2:9], false},
		{"start between keys", b("b\x01"), b("bb"), 0, []string{"ba"}, false},
		{"limit cuts with more", b("b"), b("c"), 3, []string{"b", "b\x00", "ba"}, true},
		{"limit equal to count has no more", b("b"), b("c"), 7, keys[2:9], false},
		{"limit above count", b("b"), b("c"), 100, keys[2:9], false},
		{"limit 1 at end of store", b("\xff\xff\x01"), nil, 1, []string{"\xff\xff\x01"}, false},
		{"start == end", b("b"), b("b"), 0, nil, false},
		{"start > end", b("c"), b("b"), 5, nil, false},
		{"past the last key", b("\xff\xff\x02"), nil, 10, nil, false},
		{"negative limit means none", b("c"), nil, -1, keys[9:], false},
		{"big limit uses a snapshot", nil, nil, lockedRangeMax + 1, keys, false},
		{"prefix b", b("b"), PrefixEnd(b("b")), 0, keys[2:9], false},
		{"prefix b\\xff", b("b\xff"), PrefixEnd(b("b\xff")), 0, []string{"b\xff", "b\xff\x00", "b\xff\xff"}, false},
		{"prefix b\\xff\\xff", b("b\xff\xff"), PrefixEnd(b("b\xff\xff")), 0, []string{"b\xff\xff"}, false},
		{"prefix \\xff", b("\xff"), PrefixEnd(b("\xff")), 0, []string{"\xff", "\xff\xff", "\xff\xff\x01"}, false},
		{"prefix \\xff\\xff limit", b("\xff\xff"), PrefixEnd(b("\xff\xff")), 1, []string{"\xff\xff"}, true},
		{"empty prefix", b(""), PrefixEnd(b("")), 0, keys, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, src := range []struct {
				name string
				rng  func(start, end []byte, limit int) ([]KeyValue, bool)
			}{{"store", s.Range}, {"view", s.Snapshot().Range}} {
				got, more := src.rng(tt.start, tt.end, tt.limit)
				if !slices.Equal(keysOf(got), tt.want) || more != tt.more {
					t.Fatalf("%s: Range(%q, %q, %d) = %q, more=%v; want %q, more=%v",
						src.name, tt.start, tt.end, tt.limit, keysOf(got), more, tt.want, tt.more)
				}
				for _, kv := range got {
					if string(kv.Value) != "v"+string(kv.Key) {
						t.Fatalf("%s: key %q has value %q", src.name, kv.Key, kv.Value)
					}
				}
			}
		})
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ prefix, want []byte }{
		{nil, nil},
		{[]byte{}, nil},
		{[]byte("a"), []byte("b")},
		{[]byte("a\x00"), []byte("a\x01")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("ab\xff\xff"), []byte("ac")},
		{[]byte("\xfe\xff"), []byte("\xff")},
		{[]byte("\xff"), nil},
		{[]byte("\xff\xff\xff"), nil},
	} {
		in := bytes.Clone(tc.prefix)
		got := PrefixEnd(in)
		if !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
		if !bytes.Equal(in, tc.prefix) {
			t.Errorf("PrefixEnd modified its argument: %q", in)
		}
	}
}

func collect(v *View) []KeyValue { return slices.Collect(v.All()) }

func TestSnapshotIsolation(t *testing.T) {
	s := NewStore()
	for i, k := range []string{"d", "b", "a", "c"} {
		if _, err := s.Apply(uint64(i+1), put(k, "old", Cond{})); err != nil {
			t.Fatal(err)
		}
	}
	v := s.Snapshot()
	if v2 := s.Snapshot(); v2 != v {
		t.Errorf("two Snapshots without a write in between are not shared")
	}
	writes := []Command{put("a", "new", Cond{}), del("b", Cond{}), put("e", "new", Cond{}), put("0", "new", Cond{})}
	for i, cmd := range writes {
		if _, err := s.Apply(uint64(10+i), cmd); err != nil {
			t.Fatal(err)
		}
	}
	want := []KeyValue{kvOf("a", "old", 1, 3, 3), kvOf("b", "old", 1, 2, 2), kvOf("c", "old", 1, 4, 4), kvOf("d", "old", 1, 1, 1)}
	got := collect(v)
	if len(got) != len(want) || v.Len() != len(want) {
		t.Fatalf("view has %d pairs (Len %d), want %d", len(got), v.Len(), len(want))
	}
	for i := range want {
		if !equalKV(got[i], want[i]) {
			t.Fatalf("view pair %d = %s, want %s", i, fmtKV(got[i]), fmtKV(want[i]))
		}
	}
	if kv, ok := v.Get([]byte("b")); !ok || string(kv.Value) != "old" {
		t.Fatalf("view Get(b) = %s, %v", fmtKV(kv), ok)
	}
	if _, ok := v.Get([]byte("e")); ok {
		t.Fatalf("view sees a key created after it")
	}
	if s.Snapshot() == v {
		t.Fatalf("Snapshot after writes returned the old view")
	}
	if keys := keysOf(collect(s.Snapshot())); !slices.Equal(keys, []string{"0", "a", "c", "d", "e"}) {
		t.Fatalf("new view keys %q", keys)
	}
	// Early exit from All is allowed.
	for range v.All() {
		break
	}
}

// seqOf yields kvs, then err if it is not nil.
func seqOf(kvs []KeyValue, err error) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		for _, kv := range kvs {
			if !yield(kv, nil) {
				return
			}
		}
		if err != nil {
			yield(KeyValue{}, err)
		}
	}
}

func TestRestore(t *testing.T) {
	src := NewStore()
	for i := range 1000 {
		k := fmt.Sprintf("key%05d", (i*7919)%1000)
		if _, err := src.Apply(uint64(i+1), put(k, fmt.Sprint(i), Cond{})); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		if _, err := src.Apply(uint64(1001+i), put(fmt.Sprintf("key%05d", i), "again", Cond{})); err != nil {
			t.Fatal(err)
		}
	}
	pairs := collect(src.Snapshot())

	dst := NewStore()
	if _, err := dst.Apply(1, put("stale", "x", Cond{})); err != nil {
		t.Fatal(err)
	}
	if err := dst.Restore(src.Applied(), seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	if got := collect(dst.Snapshot()); len(got) != len(pairs) {
		t.Fatalf("restored %d pairs, want %d", len(got), len(pairs))
	} else {
		for i := range got {
			if !equalKV(got[i], pairs[i]) {
				t.Fatalf("pair %d = %s, want %s", i, fmtKV(got[i]), fmtKV(pairs[i]))
			}
		}
	}
	if dst.Applied() != 1100 {
		t.Fatalf("Applied = %d after restore, want 1100", dst.Applied())
	}
	if _, err := dst.Apply(1100, put("x", "y", Cond{})); !errors.Is(err, ErrBadIndex) {
		t.Fatalf("Apply at the restored index: %v, want ErrBadIndex", err)
	}
	if r, err := dst.Apply(1101, put("key00000", "z", Cond{PrevVersion: i64(2)})); err != nil || r.Status != StatusOK {
		t.Fatalf("conditional put after restore: %s, %v", fmtResult(r), err)
	}

	// Every bad input leaves the store as it was.
	before := collect(dst.Snapshot())
	bad := []struct {
		name  string
		index uint64
		seq   iter.Seq2[KeyValue, error]
	}{
		{"source error at end", 2000, seqOf(pairs, errors.New("disk on fire"))},
		{"out of order", 2000, seqOf([]KeyValue{kvOf("b", "", 1, 1, 1), kvOf("a", "", 1, 1, 1)}, nil)},
		{"duplicate", 2000, seqOf([]KeyValue{kvOf("a", "", 1, 1, 1), kvOf("a", "", 1, 1, 1)}, nil)},
		{"version 0", 2000, seqOf([]KeyValue{kvOf("a", "", 0, 1, 1)}, nil)},
		{"revision before creation", 2000, seqOf([]KeyValue{kvOf("a", "", 1, 1, 2)}, nil)},
		{"revision after index", 5, seqOf([]KeyValue{kvOf("a", "", 1, 6, 1)}, nil)},
		{"index beyond int64", 1 << 63, seqOf(nil, nil)},
	}
	for _, tc := range bad {
		if err := dst.Restore(tc.index, tc.seq); err == nil {
			t.Errorf("%s: Restore succeeded", tc.name)
		}
		if got := collect(dst.Snapshot()); len(got) != len(before) || dst.Applied() != 1101 {
			t.Fatalf("%s: failed Restore changed the store: %d pairs, applied %d", tc.name, len(got), dst.Applied())
		}
	}

	// Restoring nothing empties the store.
	if err := dst.Restore(3000, seqOf(nil, nil)); err != nil || dst.Len() != 0 {
		t.Fatalf("empty restore: %v, len %d", err, dst.Len())
	}
}

// model is the reference the randomized test checks Store against.
type model map[string]KeyValue

func (m model) apply(index uint64, cmd Command) Result {
	cur, exists := m[string(cmd.Key)]
	c := cmd.Cond
	if (c.CreateOnly && exists) ||
		(c.PrevVersion != nil && *c.PrevVersion != cur.Version) ||
		(c.PrevRevision != nil && *c.PrevRevision != cur.Revision) {
		return Result{Status: StatusConflict, Current: cur}
	}
	rev := int64(index)
	res := Result{Status: StatusOK, Revision: rev}
	switch cmd.Op {
	case OpPut:
		kv := KeyValue{Key: bytes.Clone(cmd.Key), Value: bytes.Clone(cmd.Value), Version: cur.Version + 1, Revision: rev, CreateRevision: cur.CreateRevision}
		if !exists {
			kv.CreateRevision = rev
		}
		m[string(cmd.Key)] = kv
		res.Version = kv.Version
	case OpDelete:
		if !exists {
			return Result{Status: StatusNotFound}
		}
		delete(m, string(cmd.Key))
	}
	return res
}

func (m model) rangeOf(start, end []byte, limit int) ([]KeyValue, bool) {
	keys := slices.Sorted(maps.Keys(m))
	var out []KeyValue
	for _, k := range keys {
		if k < string(start) || (len(end) > 0 && k >= string(end)) {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, true
		}
		out = append(out, m[k])
	}
	return out, false
}

func checkPairs(t *testing.T, what string, got, want []KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d pairs %q, want %d %q", what, len(got), keysOf(got), len(want), keysOf(want))
	}
	for i := range got {
		if !equalKV(got[i], want[i]) {
			t.Fatalf("%s: pair %d = %s, want %s", what, i, fmtKV(got[i]), fmtKV(want[i]))
		}
	}
}

func TestRandomAgainstModel(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	alphabet := []byte{0x00, 'a', 'b', 0xfe, 0xff}
	randKey := func() []byte {
		k := make([]byte, rng.IntN(4))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return k
	}
	randCond := func() Cond {
		var c Cond
		c.CreateOnly = rng.IntN(8) == 0
		if rng.IntN(4) == 0 {
			c.PrevVersion = i64(int64(rng.IntN(4)))
		}
		if rng.IntN(4) == 0 {
			c.PrevRevision = i64(int64(rng.IntN(40)))
		}
		return c
	}

	s := NewStore()
	m := model{}
	type frozen struct {
		view *View
		want []KeyValue
	}
	var views []frozen
	index := uint64(0)
	const steps = 20000
	for step := range steps {
		index += 1 + uint64(rng.IntN(3))
		cmd := Command{Op: OpPut, Key: randKey(), Value: []byte(fmt.Sprint(step)), Cond: randCond()}
		if rng.IntN(3) == 0 {
			cmd.Op, cmd.Value = OpDelete, nil
		}
		got, err := s.Apply(index, cmd)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if want := m.apply(index, cmd); !equalResult(got, want) {
			t.Fatalf("step %d: Apply(%d, %v %q) = %s, want %s", step, index, cmd.Op, cmd.Key, fmtResult(got), fmtResult(want))
		}
		k := randKey()
		gotKV, ok := s.Get(k)
		wantKV, wantOK := m[string(k)]
		if ok != wantOK || (ok && !equalKV(gotKV, wantKV)) {
			t.Fatalf("step %d: Get(%q) = %s %v, want %s %v", step, k, fmtKV(gotKV), ok, fmtKV(wantKV), wantOK)
		}
		if step%10 == 0 {
			start, end := randKey(), randKey()
			if rng.IntN(3) == 0 {
				end = PrefixEnd(start)
			}
			limit := rng.IntN(6) - 1
			got, more := s.Range(start, end, limit)
			want, wantMore := m.rangeOf(start, end, limit)
			checkPairs(t, fmt.Sprintf("step %d: Range(%q, %q, %d)", step, start, end, limit), got, want)
			if more != wantMore {
				t.Fatalf("step %d: Range(%q, %q, %d) more = %v, want %v", step, start, end, limit, more, wantMore)
			}
		}
		if step%500 == 0 {
			want, _ := m.rangeOf(nil, nil, 0)
			views = append(views, frozen{s.Snapshot(), want})
		}
	}
	for i, f := range views {
		checkPairs(t, fmt.Sprintf("view %d", i), collect(f.view), f.want)
	}
	// Round trip through Restore.
	r := NewStore()
	last := views[len(views)-1]
	if err := r.Restore(index, seqOf(collect(last.view), nil)); err != nil {
		t.Fatal(err)
	}
	checkPairs(t, "restored", collect(r.Snapshot()), last.want)
}

// TestConcurrentReaders runs readers against the apply loop; run it with -race.
// Every value is "<key>/<version>", so a reader can tell a torn or stale pair.
func TestConcurrentReaders(t *testing.T) {
	s := NewStore()
	const keys = 64
	writes := 10000
	if testing.Short() {
		writes = 2000
	}
	key := func(i int) []byte { return fmt.Appendf(nil, "k%03d", i) }
	check := func(kv KeyValue) error {
		if want := fmt.Sprintf("%s/%d", kv.Key, kv.Version); string(kv.Value) != want {
			return fmt.Errorf("pair %s: value does not match key and version %q", fmtKV(kv), want)
		}
		return nil
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	reader := func(id int) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(id), 1))
		lastRevision := make(map[string]int64)
		for !done.Load() {
			switch rng.IntN(3) {
			case 0:
				k := key(rng.IntN(keys))
				if kv, ok := s.Get(k); ok {
					if err := check(kv); err != nil {
						errc <- err
						return
					}
					if kv.Revision < lastRevision[string(k)] {
						errc <- fmt.Errorf("key %s went back from revision %d to %d", k, lastRevision[string(k)], kv.Revision)
						return
					}
					lastRevision[string(k)] = kv.Revision
				}
			case 1:
				kvs, _ := s.Range(key(rng.IntN(keys)), nil, 1+rng.IntN(10))
				for i, kv := range kvs {
					if err := check(kv); err != nil {
						errc <- err
						return
					}
					if i > 0 && bytes.Compare(kvs[i-1].Key, kv.Key) >= 0 {
						errc <- fmt.Errorf("range out of order: %q then %q", kvs[i-1].Key, kv.Key)
						return
					}
				}
			case 2:
				v := s.Snapshot()
				n := 0
				var prev []byte
				for kv := range v.All() {
					if err := check(kv); err != nil {
						errc <- err
						return
					}
					if n > 0 && bytes.Compare(prev, kv.Key) >= 0 {
						errc <- fmt.Errorf("view out of order: %q then %q", prev, kv.Key)
						return
					}
					prev = kv.Key
					n++
				}
				if n != v.Len() {
					errc <- fmt.Errorf("view iterated %d pairs, Len %d", n, v.Len())
					return
				}
			}
		}
	}
	for i := range 4 {
		wg.Add(1)
		go reader(i)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	version := make([]int64, keys)
	for i := range writes {
		k := rng.IntN(keys)
		cmd := Command{Op: OpPut, Key: key(k)}
		if rng.IntN(8) == 0 && version[k] > 0 {
			cmd.Op = OpDelete
			version[k] = 0
		} else {
			version[k]++
			cmd.Value = fmt.Appendf(nil, "%s/%d", cmd.Key, version[k])
		}
		if _, err := s.Apply(uint64(i+1), cmd); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
