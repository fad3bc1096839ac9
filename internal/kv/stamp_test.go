package kv

import (
	"bytes"
	"testing"
)

// TestApplyStamped: a stamped command's writes take its stamp as their
// revision; a stamp not above the store's revision applies nothing (no key,
// no request record) and says so; an unstamped command after stamped ones
// still goes up; OpMark and OpAllocate take no revision.
func TestApplyStamped(t *testing.T) {
	s := NewStore()
	mustApply := func(index, stamp uint64, cmd Command) Result {
		t.Helper()
		res, err := s.ApplyStamped(index, stamp, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := mustApply(1, 100, put("a", "1", Cond{})); res.Status != StatusOK || res.Revision != 100 {
		t.Fatalf("stamped put: %s", fmtResult(res))
	}
	if kv, _ := s.Get([]byte("a")); kv.Revision != 100 || kv.CreateRevision != 100 || s.Revision() != 100 {
		t.Fatalf("a: revision %d, create %d; store %d", kv.Revision, kv.CreateRevision, s.Revision())
	}
	stale := put("b", "1", Cond{})
	stale.Request, stale.Time, stale.TTL = RequestID{Client: []byte("c"), Request: []byte("r")}, 1, 1000
	if res := mustApply(2, 100, stale); res.Status != StatusStaleStamp || res.Err() != ErrStaleStamp {
		t.Fatalf("a stamp equal to the revision: %s", fmtResult(res))
	}
	if _, ok := s.Get([]byte("b")); ok || s.Revision() != 100 || s.Applied() != 2 {
		t.Fatalf("a stale stamp wrote b (%v), revision %d, applied %d", ok, s.Revision(), s.Applied())
	}
	// Not recorded: the same request with a good stamp applies.
	if res := mustApply(3, 150, stale); res.Status != StatusOK || res.Replayed || res.Revision != 150 {
		t.Fatalf("the request again, stamped 150: %s", fmtResult(res))
	}
	if res := mustApply(4, 0, put("c", "1", Cond{})); res.Revision != 151 {
		t.Fatalf("unstamped after stamp 150 at index 4: revision %d, want 151", res.Revision)
	}
	if res := mustApply(5, 0, Command{Op: OpMark, Mark: 5000}); res.Status != StatusOK || s.Mark() != 5000 || s.Revision() != 151 {
		t.Fatalf("mark: %s; mark %d, revision %d", fmtResult(res), s.Mark(), s.Revision())
	}
	mustApply(6, 0, Command{Op: OpMark, Mark: 10})
	if s.Mark() != 5000 {
		t.Fatalf("a smaller mark lowered it to %d", s.Mark())
	}
	if res := mustApply(7, 0, Command{Op: OpAllocate}); res.Revision != 7 || s.Revision() != 151 {
		t.Fatalf("allocate: %s, revision %d", fmtResult(res), s.Revision())
	}
	if res := mustApply(300, 0, put("d", "1", Cond{})); res.Revision != 300 {
		t.Fatalf("unstamped at index 300 after revision 151: %d", res.Revision)
	}

	// A snapshot carries the revision and the mark.
	var pairs []KeyValue
	for p := range s.Snapshot().SnapshotPairs() {
		p.Value = bytes.Clone(p.Value)
		pairs = append(pairs, p)
	}
	r := NewStore()
	if err := r.RestoreSnapshot(s.Applied(), seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	if r.Revision() != 300 || r.Mark() != 5000 {
		t.Fatalf("restored: revision %d, mark %d; want 300, 5000", r.Revision(), r.Mark())
	}
	// A split's new range has the same revision, and the mark stays.
	right, err := s.Split(301, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	if right.Revision() != 300 || right.Mark() != 0 || s.Mark() != 5000 {
		t.Fatalf("split: right revision %d mark %d, left mark %d", right.Revision(), right.Mark(), s.Mark())
	}
	if res, err := right.ApplyStamped(302, 300, put("e", "1", Cond{})); err != nil || res.Status != StatusStaleStamp {
		t.Fatalf("a stamp at the parent's revision on the new range: %s, %v", fmtResult(res), err)
	}
}

// TestRestoreOldSnapshotTakesTheIndexAsRevision: a snapshot written before
// stores kept their revision (state version 1) restores with its index as
// the revision, so the next write goes above every revision it holds.
func TestRestoreOldSnapshotTakesTheIndexAsRevision(t *testing.T) {
	pairs := []KeyValue{
		{Key: []byte{}, Value: append([]byte(stateMagic), stateVersion, 0, 0), Version: 1, Revision: 1, CreateRevision: 1},
		{Key: []byte("k"), Value: []byte("\x00v"), Version: 2, Revision: 40, CreateRevision: 3},
	}
	s := NewStore()
	if err := s.RestoreSnapshot(42, seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	if s.Revision() != 42 {
		t.Fatalf("revision %d, want the index 42", s.Revision())
	}
	pairs[1].Revision = 43
	if err := NewStore().RestoreSnapshot(42, seqOf(pairs, nil)); err == nil {
		t.Fatal("a pair whose revision is above an old snapshot's index was taken")
	}
}
