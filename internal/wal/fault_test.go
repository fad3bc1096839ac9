package wal

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distkv/distkv/internal/vfs"
)

// faultCase describes one injected failure: calls of op on a path with the
// given suffix fail with err (after writing shortWrite bytes, for writes).
type faultCase struct {
	name       string
	op         vfs.Op
	suffix     string
	err        error
	shortWrite int
	dropPages  bool // for OpSync: the failed fsync also loses the unsynced bytes
}

// faultCases are the failures that make the WAL fail for good. A full disk
// is not among them (see noSpaceCases), except where it comes from fsync.
var faultCases = []faultCase{
	{"fsync", vfs.OpSync, ".wal", vfs.ErrInjected, 0, false},
	{"fsync loses dirty pages", vfs.OpSync, ".wal", vfs.ErrInjected, 0, true},
	{"fsync enospc", vfs.OpSync, ".wal", vfs.ErrNoSpace, 0, false},
	{"write eio mid-payload", vfs.OpWrite, ".wal", vfs.ErrInjected, 60, false},
	{"direct write eio mid-block", vfs.OpWriteAtSync, ".wal", vfs.ErrInjected, 60, false},
	{"preallocate eio", vfs.OpPreallocate, ".wal", vfs.ErrInjected, 0, false},
	{"cut: truncate old segment", vfs.OpTruncate, ".wal", vfs.ErrInjected, 0, false},
	{"cut: close old segment", vfs.OpClose, ".wal", vfs.ErrInjected, 0, false},
	{"cut: create eio", vfs.OpCreate, ".tmp", vfs.ErrInjected, 0, false},
	{"cut: fsync", vfs.OpSync, ".tmp", vfs.ErrInjected, 0, false},
	{"cut: rename", vfs.OpRename, ".wal", vfs.ErrInjected, 0, false},
	{"cut: fsync dir", vfs.OpSyncDir, "", vfs.ErrInjected, 0, false},
	{"cut: reopen", vfs.OpOpen, ".wal", vfs.ErrInjected, 0, false},
}

// inMode reports whether fc's operation happens in the mode: a segment's
// frames are written with Write without Direct, with WriteAtSync with it.
func (fc faultCase) inMode(direct bool) bool {
	switch {
	case fc.op == vfs.OpWrite && fc.suffix == ".wal":
		return !direct
	case fc.op == vfs.OpWriteAtSync:
		return direct
	}
	return true
}

// injector fails matching calls once armed.
func (fc faultCase) injector(armed *atomic.Bool) vfs.Injector {
	return func(op vfs.Op, path string) vfs.Fault {
		if armed.Load() && op == fc.op && strings.HasSuffix(path, fc.suffix) {
			return vfs.Fault{Err: fc.err, ShortWrite: fc.shortWrite, DropUnsynced: fc.dropPages}
		}
		return vfs.Fault{}
	}
}

func numbered(i int) Record {
	return Record{Shard: uint64(1 + i%3), Type: RecordEntry, Index: uint64(i),
		Data: fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", 60+i%50))}
}

// TestInjectedFailure: after an injected write, fsync, preallocate or
// segment-cut failure other than a full disk, that Append and every later one fail with ErrFailed,
// and a reopen on a healthy disk recovers every acknowledged record.
func TestInjectedFailure(t *testing.T) {
	forModes(t, testInjectedFailure)
}

func testInjectedFailure(t *testing.T, direct bool) {
	for _, fc := range faultCases {
		if !fc.inMode(direct) {
			continue
		}
		t.Run(fc.name, func(t *testing.T) {
			var armed atomic.Bool
			efs := vfs.NewErrorFS(vfs.Default, fc.injector(&armed))
			// Small segments so that a cut comes within a few appends; frames
			// are raw so that short writes land where the case says.
			cfg := Config{Dir: t.TempDir(), FS: efs, SegmentSize: 700, PreallocSize: 512, Compression: CompressionNone, Direct: direct}
			if direct {
				// A direct write fills its last block, so the reserve grows
				// by blocks: steps of one block, and room for two.
				cfg.SegmentSize, cfg.PreallocSize = 2*vfs.DirectAlign+700, vfs.DirectAlign
			}
			w, _ := openAll(t, cfg)
			var attempted []Record
			for i := range 10 {
				attempted = append(attempted, numbered(i))
				mustAppend(t, w, attempted[i:], true)
			}
			acked := len(attempted)
			armed.Store(true)
			var failErr error
			for i := 10; i < 100 && failErr == nil; i++ {
				attempted = append(attempted, numbered(i))
				if err := w.Append(attempted[i:], true); err != nil {
					failErr = err
				} else {
					acked++
				}
			}
			if failErr == nil {
				t.Fatal("no Append failed")
			}
			if !errors.Is(failErr, ErrFailed) || !errors.Is(failErr, fc.err) {
				t.Fatalf("Append = %v, want ErrFailed wrapping %v", failErr, fc.err)
			}
			// Sticky, even once the disk is healthy again.
			armed.Store(false)
			for i := range 3 {
				err := w.Append([]Record{numbered(1000 + i)}, i%2 == 0)
				if !errors.Is(err, ErrFailed) {
					t.Fatalf("Append after failure = %v, want ErrFailed", err)
				}
			}
			if _, err := w.Compact(1, 1000); !errors.Is(err, ErrFailed) {
				t.Fatalf("Compact after failure = %v, want ErrFailed", err)
			}
			if err := w.Close(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Close after failure = %v, want ErrFailed", err)
			}

			got := replayAll(t, Config{Dir: cfg.Dir})
			// Every acknowledged record; the failed one may or may not be there.
			if len(got) != acked && len(got) != acked+1 {
				t.Fatalf("recovered %d records, acknowledged %d", len(got), acked)
			}
			checkRecords(t, got, attempted[:len(got)])
			if _, err := Verify(vfs.Default, cfg.Dir); err != nil {
				t.Fatalf("Verify after recovery: %v", err)
			}
		})
	}
}

// TestInjectedFailureConcurrent: many appenders, a failure injected at a
// random point: no acknowledged record may be missing after reopen, and each
// appender's recovered records are a prefix of what it appended.
func TestInjectedFailureConcurrent(t *testing.T) {
	forModes(t, testInjectedFailureConcurrent)
}

func testInjectedFailureConcurrent(t *testing.T, direct bool) {
	rng := testRand(t)
	for _, fc := range faultCases {
		if !fc.inMode(direct) {
			continue
		}
		trigger := int64(5 + rng.IntN(40))
		if direct {
			// Segments of more than a block: fewer cuts.
			trigger = 5 + trigger%25
		}
		t.Run(fc.name, func(t *testing.T) {
			var calls atomic.Int64
			efs := vfs.NewErrorFS(vfs.Default, nil)
			cfg := Config{Dir: t.TempDir(), FS: efs, SegmentSize: 2000, PreallocSize: 1024, Compression: CompressionNone, Direct: direct}
			if direct {
				cfg.SegmentSize, cfg.PreallocSize = vfs.DirectAlign+1000, vfs.DirectAlign
			}
			w, _ := openAll(t, cfg)
			// Fail the trigger-th matching call and every one after it.
			efs.SetInjector(func(op vfs.Op, path string) vfs.Fault {
				if op == fc.op && strings.HasSuffix(path, fc.suffix) && calls.Add(1) >= trigger {
					return vfs.Fault{Err: fc.err, ShortWrite: fc.shortWrite, DropUnsynced: fc.dropPages}
				}
				return vfs.Fault{}
			})
			const writers = 16
			acked := make([][]Record, writers)
			var wg sync.WaitGroup
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 500; i++ {
						r := Record{Shard: uint64(g), Type: RecordEntry, Index: uint64(i + 1), Data: fmt.Appendf(nil, "writer %d record %d", g, i)}
						if err := w.Append([]Record{r}, true); err != nil {
							if !errors.Is(err, ErrFailed) {
								t.Errorf("writer %d: %v, want ErrFailed", g, err)
							}
							return
						}
						acked[g] = append(acked[g], r)
					}
					t.Errorf("writer %d: no failure after 500 appends", g)
				}()
			}
			wg.Wait()
			w.Close()
			got := replayAll(t, Config{Dir: cfg.Dir})
			per := make([][]Record, writers)
			for _, r := range got {
				per[r.Shard] = append(per[r.Shard], r)
			}
			total := 0
			for g := range writers {
				total += len(acked[g])
				if len(per[g]) < len(acked[g]) {
					t.Fatalf("writer %d: %d records acknowledged, %d recovered", g, len(acked[g]), len(per[g]))
				}
				checkRecords(t, per[g][:len(acked[g])], acked[g])
				for i, r := range per[g] {
					if r.Index != uint64(i+1) {
						t.Fatalf("writer %d: recovered record %d has index %d", g, i, r.Index)
					}
				}
			}
			t.Logf("trigger %d: %d acknowledged, %d recovered, %d frames", trigger, total, len(got), w.nFrames.Load())
		})
	}
}
