package wal

import (
	"slices"
	"testing"
)

// TestPinningNamesTheShardsThatKeepTheOldestSegment: the oldest segment
// stays while a shard with entries in it is not covered, and Pinning says
// which.
func TestPinningNamesTheShardsThatKeepTheOldestSegment(t *testing.T) {
	w, _ := openAll(t, Config{Dir: t.TempDir(), SegmentSize: 4096})
	defer mustClose(t, w)
	if got := w.Pinning(); got != nil {
		t.Fatalf("one segment: Pinning = %v, want nil", got)
	}
	val := make([]byte, 512)
	for i := uint64(1); w.Stats().Segments < 3; i++ {
		recs := []Record{{Shard: 1, Type: RecordEntry, Index: i, Data: val}}
		if i <= 2 {
			recs = append(recs, Record{Shard: 2, Type: RecordEntry, Index: i, Data: val})
		}
		mustAppend(t, w, recs, true)
	}
	if got := w.Pinning(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("Pinning = %v, want [1 2]", got)
	}
	if _, err := w.Compact(1, 1000); err != nil {
		t.Fatal(err)
	}
	if got := w.Pinning(); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("after shard 1 is covered: Pinning = %v, want [2]", got)
	}
	if n := w.Stats().Segments; n < 3 {
		t.Fatalf("%d segments after compacting shard 1 only: the one shard 2 needs went", n)
	}
	removed, err := w.Compact(2, 2)
	if err != nil || removed == 0 {
		t.Fatalf("Compact(2, 2) removed %d segments (%v), want some", removed, err)
	}
}
