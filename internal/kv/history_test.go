package kv

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// revModel is what a store should read at each revision: the pairs after each
// write, by revision.
type revModel struct {
	at   map[int64]map[string]KeyValue
	revs []int64 // ascending
}

// stateAt is the revModel's state at rev: that after the last write at or
// before it.
func (m *revModel) stateAt(rev int64) map[string]KeyValue {
	i, found := slices.BinarySearch(m.revs, rev)
	if !found {
		i--
	}
	if i < 0 {
		return nil
	}
	return m.at[m.revs[i]]
}

// historyWorkload applies n random writes (puts, deletes, transactions that
// write a key twice, expiries) on keys k00..k(keys-1) with stamps that skip
// revisions, and records the state after each in a revModel.
func historyWorkload(t *testing.T, rng *rand.Rand, s *Store, n, keys int) *revModel {
	t.Helper()
	m := &revModel{at: map[int64]map[string]KeyValue{}}
	idx, rev := s.Applied(), s.Revision()
	key := func() string { return fmt.Sprintf("k%02d", rng.IntN(keys)) }
	for range n {
		idx++
		rev += 1 + int64(rng.IntN(3))
		var cmd Command
		switch r := rng.IntN(10); {
		case r < 6:
			cmd = put(key(), fmt.Sprintf("v%d", rev), Cond{})
		case r < 8:
			cmd = del(key(), Cond{})
		case r < 9:
			k := key()
			cmd = Command{Op: OpTxn, Txn: &Txn{Success: []TxnOp{tput(k, "a"), tput(k, fmt.Sprintf("t%d", rev)), tdel(key())}}}
		default:
			cmd = Command{Op: OpPut, Key: []byte(key()), Value: []byte("ttl"), Deadline: 1}
		}
		if _, err := s.ApplyStamped(idx, uint64(rev), cmd); err != nil {
			t.Fatal(err)
		}
		m.record(s)
		if rng.IntN(8) == 0 {
			idx++
			rev++
			if _, err := s.ApplyStamped(idx, uint64(rev), Command{Op: OpExpire, Now: 2}); err != nil {
				t.Fatal(err)
			}
			m.record(s)
		}
	}
	slices.Sort(m.revs)
	return m
}

// record adds the store's current state to m.
func (m *revModel) record(s *Store) {
	state := map[string]KeyValue{}
	for kv := range s.Snapshot().All() {
		state[string(kv.Key)] = kv
	}
	m.at[s.Revision()] = state
	m.revs = append(m.revs, s.Revision())
}

// checkAt compares what s reads at rev, by GetAt and RangeAt (whole and in
// pages), with the revModel.
func checkAt(t *testing.T, s *Store, m *revModel, rev int64, keys int) {
	t.Helper()
	want := m.stateAt(rev)
	for i := range keys {
		k := fmt.Sprintf("k%02d", i)
		got, ok, err := s.GetAt([]byte(k), rev)
		if err != nil {
			t.Fatalf("GetAt(%s, %d): %v", k, rev, err)
		}
		w, wok := want[k]
		if ok != wok || (ok && !sameKV(got, w)) {
			t.Fatalf("GetAt(%s, %d) = %+v %v, want %+v %v", k, rev, got, ok, w, wok)
		}
	}
	wantKeys := slices.Sorted(maps.Keys(want))
	for _, limit := range []int{0, 1, 3} {
		var got []string
		start := []byte(nil)
		for {
			kvs, more, err := s.RangeAt(start, nil, rev, limit)
			if err != nil {
				t.Fatalf("RangeAt at %d: %v", rev, err)
			}
			for _, kv := range kvs {
				if !sameKV(kv, want[string(kv.Key)]) {
					t.Fatalf("RangeAt at %d: %+v, want %+v", rev, kv, want[string(kv.Key)])
				}
				got = append(got, string(kv.Key))
			}
			if !more {
				break
			}
			if len(kvs) == 0 {
				t.Fatalf("RangeAt at %d: more but no pairs", rev)
			}
			start = append(slices.Clone(kvs[len(kvs)-1].Key), 0)
		}
		if !slices.Equal(got, wantKeys) {
			t.Fatalf("RangeAt at %d limit %d: keys %v, want %v", rev, limit, got, wantKeys)
		}
	}
}

func sameKV(a, b KeyValue) bool {
	return string(a.Key) == string(b.Key) && string(a.Value) == string(b.Value) && a.Kind == b.Kind &&
		a.Version == b.Version && a.Revision == b.Revision && a.CreateRevision == b.CreateRevision && a.Deadline == b.Deadline
}

// TestReadsAtEveryRevision: after random puts, deletes, transactions and
// expiries, the store reads at every revision what the state was then.
func TestReadsAtEveryRevision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewStore()
	m := historyWorkload(t, rng, s, 400, 12)
	for rev := int64(1); rev <= s.Revision()+2; rev++ {
		checkAt(t, s, m, rev, 12)
	}
	if n, size := s.HistoryStats(); n == 0 || size == 0 {
		t.Fatalf("history of %d versions, %d bytes after 400 writes to 12 keys", n, size)
	}
}

// TestCompaction: a compaction refuses reads below its revision, keeps every
// read at or above it, and drops the versions no such read needs; a second
// one below the first changes nothing.
func TestCompaction(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewStore()
	m := historyWorkload(t, rng, s, 300, 10)
	before, _ := s.HistoryStats()
	c := m.revs[len(m.revs)/2]
	idx := s.Applied() + 1
	res := mustApply(t, s, idx, Command{Op: OpCompact, Revision: c})
	if res.Revision != c || s.Compacted() != c {
		t.Fatalf("compacted to %d (answered %d), want %d", s.Compacted(), res.Revision, c)
	}
	after, _ := s.HistoryStats()
	if after >= before {
		t.Fatalf("history of %d versions before compaction, %d after", before, after)
	}
	if _, _, err := s.GetAt([]byte("k01"), c-1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("GetAt below the compaction: %v", err)
	}
	if _, _, err := s.RangeAt(nil, nil, c-1, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("RangeAt below the compaction: %v", err)
	}
	for rev := c; rev <= s.Revision(); rev++ {
		checkAt(t, s, m, rev, 10)
	}
	// Every retained version is still needed: it was current at c or later.
	s.hist.Scan(func(h histItem) bool {
		if h.end <= c {
			t.Fatalf("a version of %q ending at %d kept after compaction to %d", h.it.key(), h.end, c)
		}
		return true
	})
	if res := mustApply(t, s, idx+1, Command{Op: OpCompact, Revision: c - 5}); res.Revision != c {
		t.Fatalf("a lower compaction answered %d, want %d", res.Revision, c)
	}
	// Compacting past the store's revision raises it: no write at or
	// below the compaction applies afterwards.
	top := s.Revision()
	mustApply(t, s, idx+2, Command{Op: OpCompact, Revision: top + 100})
	if s.Compacted() != top+100 || s.Revision() != top+100 {
		t.Fatalf("compacted to %d at revision %d, want both %d", s.Compacted(), s.Revision(), top+100)
	}
	if res, err := s.ApplyStamped(idx+3, uint64(top+50), put("k01", "late", Cond{})); err != nil || res.Status != StatusStaleStamp {
		t.Fatalf("a write stamped below the compaction: %+v, %v", res, err)
	}
	if n, size := s.HistoryStats(); n != 0 || size != 0 {
		t.Fatalf("%d versions (%d bytes) kept after compacting to the store's revision", n, size)
	}
	checkAt(t, s, m, s.Revision(), 10)
}

// TestHistoryInSnapshots: a snapshot carries the retained versions and the
// compaction revision; the restored store reads the same at every revision
// and writes the same snapshot back.
func TestHistoryInSnapshots(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := NewStore()
	m := historyWorkload(t, rng, s, 300, 10)
	c := m.revs[len(m.revs)/3]
	mustApply(t, s, s.Applied()+1, Command{Op: OpCompact, Revision: c})

	var pairs []KeyValue
	for p := range s.Snapshot().SnapshotPairs() {
		p.Value = slices.Clone(p.Value)
		pairs = append(pairs, p)
	}
	r := NewStore()
	if err := r.RestoreSnapshot(s.Applied(), seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	if r.Compacted() != c {
		t.Fatalf("restored compaction %d, want %d", r.Compacted(), c)
	}
	n1, b1 := s.HistoryStats()
	n2, b2 := r.HistoryStats()
	if n1 != n2 || b1 != b2 || n1 == 0 {
		t.Fatalf("history %d versions %d bytes, restored %d %d", n1, b1, n2, b2)
	}
	for rev := c; rev <= s.Revision(); rev++ {
		checkAt(t, r, m, rev, 10)
	}
	i := 0
	for p := range r.Snapshot().SnapshotPairs() {
		if string(p.Key) != string(pairs[i].Key) || string(p.Value) != string(pairs[i].Value) || p.Revision != pairs[i].Revision {
			t.Fatalf("pair %d written back differs", i)
		}
		i++
	}
	// The restored history compacts as the original's: in end order.
	mustApply(t, r, r.Applied()+1, Command{Op: OpCompact, Revision: m.revs[len(m.revs)*2/3]})
	r.hist.Scan(func(h histItem) bool {
		if h.end <= r.Compacted() {
			t.Fatalf("a version ending at %d kept after compaction to %d", h.end, r.Compacted())
		}
		return true
	})
	if n, _ := r.HistoryStats(); n != r.hist.Len() {
		t.Fatalf("history log of %d versions, tree of %d", n, r.hist.Len())
	}
}

// TestRestoreRefusesBadHistory: retired versions out of order, ending at or
// before their revision, past the store's revision, or at or below the
// compaction are refused, and the store is left as it was.
func TestRestoreRefusesBadHistory(t *testing.T) {
	s := NewStore()
	mustApply(t, s, 1, put("a", "1", Cond{}))
	mustApply(t, s, 2, put("a", "2", Cond{}))
	mustApply(t, s, 3, put("b", "1", Cond{}))
	mustApply(t, s, 4, del("b", Cond{}))
	var good []KeyValue
	for p := range s.Snapshot().SnapshotPairs() {
		p.Value = slices.Clone(p.Value)
		good = append(good, p)
	}
	// state, a@1 (retired at 2), a@2, b@3 (retired at 4)
	if len(good) != 4 {
		t.Fatalf("%d pairs, want 4", len(good))
	}
	retired := func(p KeyValue, end uint64) KeyValue {
		p.Value = slices.Clone(p.Value)
		for i := range 8 {
			p.Value[1+i] = byte(end >> (8 * i))
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		pairs []KeyValue
	}{
		{"latest before retired", []KeyValue{good[0], good[2], good[1], good[3]}},
		{"ends at its revision", []KeyValue{good[0], retired(good[1], 1), good[2], good[3]}},
		{"ends past the revision", []KeyValue{good[0], good[1], good[2], retired(good[3], 9)}},
		{"two ends alike", []KeyValue{good[0], good[1], good[1], good[2], good[3]}},
	} {
		r := NewStore()
		mustApply(t, r, 1, put("x", "1", Cond{}))
		if err := r.RestoreSnapshot(4, seqOf(tc.pairs, nil)); err == nil {
			t.Errorf("%s: restored", tc.name)
		}
		if kv, ok := r.Get([]byte("x")); !ok || string(kv.Value) != "1" {
			t.Errorf("%s: a refused restore changed the store", tc.name)
		}
	}
	r := NewStore()
	if err := r.RestoreSnapshot(4, seqOf(good, nil)); err != nil {
		t.Fatal(err)
	}
	if kv, ok, err := r.GetAt([]byte("b"), 3); err != nil || !ok || string(kv.Value) != "1" {
		t.Fatalf("b at 3 after restore: %+v %v %v", kv, ok, err)
	}
}

// TestSplitTakesTheHistory: each side of a split reads at every revision
// what the whole store did for its keys, and both keep the compaction.
func TestSplitTakesTheHistory(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s := NewStore()
	m := historyWorkload(t, rng, s, 300, 10)
	c := m.revs[10]
	mustApply(t, s, s.Applied()+1, Command{Op: OpCompact, Revision: c})
	nBefore, bBefore := s.HistoryStats()
	right, err := s.Split(s.Applied()+1, []byte("k05"))
	if err != nil {
		t.Fatal(err)
	}
	nl, bl := s.HistoryStats()
	nr, br := right.HistoryStats()
	if nl+nr != nBefore || bl+br != bBefore || nl == 0 || nr == 0 {
		t.Fatalf("history %d+%d versions (%d+%d bytes), before %d (%d)", nl, nr, bl, br, nBefore, bBefore)
	}
	if right.Compacted() != c || s.Compacted() != c {
		t.Fatalf("compaction %d and %d after the split, want %d", s.Compacted(), right.Compacted(), c)
	}
	for rev := c; rev <= s.Revision(); rev++ {
		want := m.stateAt(rev)
		for i := range 10 {
			k := fmt.Sprintf("k%02d", i)
			side := s
			if i >= 5 {
				side = right
			}
			got, ok, err := side.GetAt([]byte(k), rev)
			w, wok := want[k]
			if err != nil || ok != wok || (ok && !sameKV(got, w)) {
				t.Fatalf("%s at %d after the split: %+v %v %v, want %+v %v", k, rev, got, ok, err, w, wok)
			}
		}
		kvs, _, err := right.RangeAt(nil, nil, rev, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			if string(kv.Key) < "k05" {
				t.Fatalf("right side holds %s at %d", kv.Key, rev)
			}
		}
	}
}

// TestVersionsOfTheCurrentLife: Versions lists a key's retained versions
// since it was last created, oldest first; a deleted key has none.
func TestVersionsOfTheCurrentLife(t *testing.T) {
	s := NewStore()
	mustApply(t, s, 1, put("a", "1", Cond{}))
	mustApply(t, s, 2, put("a", "2", Cond{}))
	mustApply(t, s, 3, del("a", Cond{}))
	mustApply(t, s, 4, put("a", "x", Cond{}))
	mustApply(t, s, 5, put("a", "y", Cond{}))
	mustApply(t, s, 6, put("a", "z", Cond{}))
	var got []string
	for _, kv := range s.Versions([]byte("a")) {
		got = append(got, fmt.Sprintf("%d:%s", kv.Version, kv.Value))
	}
	if want := []string{"1:x", "2:y", "3:z"}; !slices.Equal(got, want) {
		t.Fatalf("versions %v, want %v", got, want)
	}
	mustApply(t, s, 7, Command{Op: OpCompact, Revision: 6})
	got = got[:0]
	for _, kv := range s.Versions([]byte("a")) {
		got = append(got, fmt.Sprintf("%d:%s", kv.Version, kv.Value))
	}
	if want := []string{"3:z"}; !slices.Equal(got, want) {
		t.Fatalf("versions after compaction %v, want %v", got, want)
	}
	mustApply(t, s, 8, del("a", Cond{}))
	if vs := s.Versions([]byte("a")); vs != nil {
		t.Fatalf("a deleted key has versions %v", vs)
	}
}

// TestNoHistoryWithoutOverwrites: keys written once keep no history.
func TestNoHistoryWithoutOverwrites(t *testing.T) {
	s := NewStore()
	for i := range 1000 {
		mustApply(t, s, uint64(i+1), put(fmt.Sprintf("k%04d", i), "v", Cond{}))
	}
	if n, size := s.HistoryStats(); n != 0 || size != 0 || s.hist.Len() != 0 {
		t.Fatalf("%d versions (%d bytes) retained without an overwrite", n, size)
	}
}

// TestAdvanceClosesARevision: once an OpAdvance to R applied, a write
// stamped at or below R applies nothing (StatusStaleStamp), so a read at R
// cannot change; one above R applies. A lower advance changes nothing.
func TestAdvanceClosesARevision(t *testing.T) {
	s := NewStore()
	if _, err := s.ApplyStamped(1, 10, put("k", "a", Cond{})); err != nil {
		t.Fatal(err)
	}
	if res := mustApply(t, s, 2, Command{Op: OpAdvance, Revision: 50}); res.Revision != 50 || s.Revision() != 50 {
		t.Fatalf("advance to 50: answered %d, store at %d", res.Revision, s.Revision())
	}
	before, _, _ := s.GetAt([]byte("k"), 40)
	res, err := s.ApplyStamped(3, 40, put("k", "late", Cond{}))
	if err != nil || res.Status != StatusStaleStamp {
		t.Fatalf("a write stamped 40 after the advance to 50: %+v, %v", res, err)
	}
	if after, _, _ := s.GetAt([]byte("k"), 40); string(after.Value) != string(before.Value) || string(after.Value) != "a" {
		t.Fatalf("read at 40 changed from %q to %q", before.Value, after.Value)
	}
	if res, err := s.ApplyStamped(4, 51, put("k", "b", Cond{})); err != nil || res.Status != StatusOK || res.Revision != 51 {
		t.Fatalf("a write stamped 51: %+v, %v", res, err)
	}
	if res := mustApply(t, s, 5, Command{Op: OpAdvance, Revision: 20}); res.Revision != 51 || s.Revision() != 51 {
		t.Fatalf("a lower advance: answered %d, store at %d", res.Revision, s.Revision())
	}
}

// modelEvents derives the changes in (after, upto] from the model's states:
// at each revision, the keys whose version changed were put, those that
// went away deleted.
func (m *revModel) events(after, upto int64) []string {
	var out []string
	prev := m.stateAt(after)
	for _, rev := range m.revs {
		if rev <= after || rev > upto {
			continue
		}
		cur := m.at[rev]
		for _, k := range slices.Sorted(maps.Keys(cur)) {
			if p, ok := prev[k]; !ok || p.Revision != cur[k].Revision {
				out = append(out, fmt.Sprintf("PUT %s=%s v%d @%d", k, cur[k].Value, cur[k].Version, rev))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(prev)) {
			if _, ok := cur[k]; !ok {
				out = append(out, fmt.Sprintf("DELETE %s @%d", k, rev))
			}
		}
		prev = cur
	}
	rev := func(e string) int64 {
		n, _ := strconv.ParseInt(e[strings.LastIndex(e, "@")+1:], 10, 64)
		return n
	}
	// By revision, then key (the key is the second field).
	slices.SortStableFunc(out, func(a, b string) int {
		if c := cmp.Compare(rev(a), rev(b)); c != 0 {
			return c
		}
		return cmp.Compare(strings.Fields(a)[1], strings.Fields(b)[1])
	})
	return out
}

func fmtEvents(evs []Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == EventPut {
			out = append(out, fmt.Sprintf("PUT %s=%s v%d @%d", e.KV.Key, e.KV.Value, e.KV.Version, e.KV.Revision))
		} else {
			out = append(out, fmt.Sprintf("DELETE %s @%d", e.KV.Key, e.KV.Revision))
		}
	}
	return out
}

// TestChangesMatchTheStates: the changes between two revisions are exactly
// the puts and deletes that turn the state at one into the state at the
// other, in revision order, for the whole key space or a part of it; after
// compaction, from the compaction revision on.
func TestChangesMatchTheStates(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	s := NewStore()
	m := historyWorkload(t, rng, s, 300, 10)
	top := s.Revision()
	check := func(after, upto int64) {
		t.Helper()
		evs, err := s.Changes(nil, nil, after, upto)
		if err != nil {
			t.Fatalf("Changes(%d, %d): %v", after, upto, err)
		}
		got, want := fmtEvents(evs), m.events(after, upto)
		if !slices.Equal(got, want) {
			t.Fatalf("Changes(%d, %d):\n got %v\nwant %v", after, upto, got, want)
		}
		// A part of the key space: the same changes, filtered.
		part, err := s.Changes([]byte("k03"), []byte("k07"), after, upto)
		if err != nil {
			t.Fatal(err)
		}
		var wantPart []string
		for _, e := range want {
			k := strings.Fields(e)[1]
			if k >= "k03" && k < "k07" {
				wantPart = append(wantPart, e)
			}
		}
		if got := fmtEvents(part); !slices.Equal(got, wantPart) {
			t.Fatalf("Changes(k03..k07, %d, %d):\n got %v\nwant %v", after, upto, got, wantPart)
		}
	}
	check(0, top)
	for range 50 {
		a := rng.Int64N(top)
		check(a, a+rng.Int64N(top-a)+1)
	}
	c := m.revs[len(m.revs)/2]
	mustApply(t, s, s.Applied()+1, Command{Op: OpCompact, Revision: c})
	check(c, top)
	if _, err := s.Changes(nil, nil, c-1, top); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Changes from below the compaction: %v", err)
	}
}

// TestTrimEvents: events are cut at a revision boundary, never inside one
// revision's changes, and the revision they are complete to is told.
func TestTrimEvents(t *testing.T) {
	ev := func(rev int64, key string) Event {
		return Event{Type: EventPut, KV: KeyValue{Key: []byte(key), Value: []byte("vv"), Revision: rev}}
	}
	evs := []Event{ev(3, "a"), ev(3, "b"), ev(5, "a"), ev(7, "a"), ev(7, "b"), ev(7, "c")}
	for _, tc := range []struct {
		maxEvents, maxBytes int
		n                   int
		through             int64
	}{
		{10, 1000, 6, 9},
		{6, 1000, 6, 9},
		{5, 1000, 3, 5},
		{3, 1000, 3, 5},
		{2, 1000, 2, 3},
		{1, 1000, 2, 3}, // the first revision whole
		{10, 9, 3, 5},   // 3 bytes an event
		{10, 1, 2, 3},
	} {
		got, through := TrimEvents(evs, tc.maxEvents, tc.maxBytes, 9)
		if len(got) != tc.n || through != tc.through {
			t.Errorf("TrimEvents(%d events, %d bytes): %d events through %d, want %d through %d", tc.maxEvents, tc.maxBytes, len(got), through, tc.n, tc.through)
		}
	}
	if got, through := TrimEvents(nil, 1, 1, 9); len(got) != 0 || through != 9 {
		t.Errorf("no events: %d through %d", len(got), through)
	}
}
