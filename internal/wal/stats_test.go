package wal

import (
	"testing"
	"time"
)

// TestStats checks that the counters move with the appends they count, that
// every sync is reported to SyncObserver, and that segments are counted as
// they are cut.
func TestStats(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "buffered", true: "direct"}[direct], func(t *testing.T) {
			var observed []time.Duration
			cfg := Config{Dir: t.TempDir(), SegmentSize: 4 << 10, Compression: CompressionNone, Direct: direct,
				SyncObserver: func(d time.Duration) { observed = append(observed, d) }}
			w, _ := openAll(t, cfg)
			before := w.Stats()
			if before.Frames != 0 || before.Syncs != 0 || before.BytesWritten != 0 || before.Segments != 1 {
				t.Fatalf("new WAL: %+v", before)
			}
			data := make([]byte, 100)
			const n = 100
			for i := range n {
				mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: uint64(i + 1), Data: data}}, i%2 == 0)
			}
			s := w.Stats()
			if s.Frames != n || s.Records != n {
				t.Errorf("frames %d records %d, want %d each", s.Frames, s.Records, n)
			}
			if s.Syncs != n/2 || len(observed) != n/2 {
				t.Errorf("syncs %d, observed %d, want %d", s.Syncs, len(observed), n/2)
			}
			// A frame is a 20-byte header and the record: shard, type,
			// index (up to 2 bytes here), length (1 byte) and data.
			if min, max := uint64(n*(20+4+len(data))), uint64(n*(20+5+len(data))); s.BytesWritten < min || s.BytesWritten > max {
				t.Errorf("bytes written %d, want %d..%d", s.BytesWritten, min, max)
			}
			if s.Segments < 2 || s.Segments != len(segmentFiles(t, cfg.Dir)) {
				t.Errorf("segments %d, files %v", s.Segments, segmentFiles(t, cfg.Dir))
			}
			if s.SizeBytes != w.Size() {
				t.Errorf("size %d, Size() %d", s.SizeBytes, w.Size())
			}
			mustClose(t, w)
		})
	}
}
