package wal

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/distkv/distkv/internal/vfs"
)

// noSpaceCases are the places where a full disk can hit an Append: each must
// fail only that Append, with ErrNoSpace.
var noSpaceCases = []faultCase{
	{"write: nothing written", vfs.OpWrite, ".wal", vfs.ErrNoSpace, 0, false},
	{"write: mid-header", vfs.OpWrite, ".wal", vfs.ErrNoSpace, 7, false},
	{"write: mid-payload", vfs.OpWrite, ".wal", vfs.ErrNoSpace, 60, false},
	{"preallocate", vfs.OpPreallocate, ".wal", vfs.ErrNoSpace, 0, false},
	{"cut: create", vfs.OpCreate, ".tmp", vfs.ErrNoSpace, 0, false},
	{"cut: preallocate", vfs.OpPreallocate, ".tmp", vfs.ErrNoSpace, 0, false},
	{"cut: short write", vfs.OpWrite, ".tmp", vfs.ErrNoSpace, 10, false},
	{"cut: rename", vfs.OpRename, ".wal", vfs.ErrNoSpace, 0, false},
}

func wantNoSpace(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrFailed) {
		t.Fatalf("Append = %v, want ErrNoSpace wrapping ENOSPC and not ErrFailed", err)
	}
}

// TestNoSpaceRecovers: while the disk is full every Append that reaches the
// disk fails with ErrNoSpace and leaves nothing behind; once space is freed
// the same WAL takes appends again, and a reopen recovers exactly the
// records whose Append returned nil, in order.
func TestNoSpaceRecovers(t *testing.T) {
	for _, fc := range noSpaceCases {
		t.Run(fc.name, func(t *testing.T) {
			var armed atomic.Bool
			efs := vfs.NewErrorFS(vfs.Default, fc.injector(&armed))
			cfg := Config{Dir: t.TempDir(), FS: efs, SegmentSize: 700, PreallocSize: 512, Compression: CompressionNone}
			w, _ := openAll(t, cfg)
			var acked []Record
			next := 0
			appendOne := func() error {
				r := numbered(next)
				next++
				err := w.Append([]Record{r, {Shard: r.Shard, Type: RecordHardState, Data: fmt.Appendf(nil, "hs %d", r.Index)}}, true)
				if err == nil {
					acked = append(acked, r, Record{Shard: r.Shard, Type: RecordHardState, Data: fmt.Appendf(nil, "hs %d", r.Index)})
				}
				return err
			}
			for range 10 {
				if err := appendOne(); err != nil {
					t.Fatal(err)
				}
			}
			armed.Store(true)
			failures := 0
			for range 60 {
				if err := appendOne(); err != nil {
					wantNoSpace(t, err)
					failures++
				}
			}
			if failures == 0 {
				t.Fatal("no Append failed while the disk was full")
			}
			armed.Store(false)
			for range 20 {
				if err := appendOne(); err != nil {
					t.Fatalf("Append after space was freed: %v", err)
				}
			}
			mustClose(t, w)
			if _, err := Verify(vfs.Default, cfg.Dir); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			got := withoutCarryOver(replayAll(t, Config{Dir: cfg.Dir}))
			checkRecords(t, got, acked)
			t.Logf("%d appends failed, %d records recovered", failures, len(got))
		})
	}
}

// TestNoSpaceAtEveryOffset: the disk fills after k bytes of a batch's frame,
// for every k from 0 to the frame's length; the frame is removed, the next
// Append succeeds right behind the last acknowledged frame, and a reopen
// recovers exactly the acknowledged batches.
func TestNoSpaceAtEveryOffset(t *testing.T) {
	batch := func(i int) []Record {
		var recs []Record
		for j := range 5 {
			recs = append(recs, numbered(i*5+j))
		}
		return recs
	}
	cfg := Config{Dir: t.TempDir(), Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	before := w.Size()
	mustAppend(t, w, batch(1), true)
	frameLen := int(w.Size() - before)
	mustClose(t, w)
	if frameLen < 100 {
		t.Fatalf("frame of %d bytes is too short to be a useful test", frameLen)
	}
	for k := 0; k < frameLen; k++ {
		var armed atomic.Bool
		efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpWrite && armed.CompareAndSwap(true, false) {
				return vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: k}
			}
			return vfs.Fault{}
		})
		cfg := Config{Dir: t.TempDir(), FS: efs, Compression: CompressionNone}
		w, _ := openAll(t, cfg)
		var acked []Record
		for i := range 3 {
			mustAppend(t, w, batch(i), true)
			acked = append(acked, batch(i)...)
		}
		size := w.Size()
		armed.Store(true)
		err := w.Append(batch(3), true)
		wantNoSpace(t, err)
		if w.Size() != size {
			t.Fatalf("k=%d: size %d after the failed append, want %d", k, w.Size(), size)
		}
		for i := 4; i < 6; i++ {
			mustAppend(t, w, batch(i), true)
			acked = append(acked, batch(i)...)
		}
		mustClose(t, w)
		if _, err := Verify(vfs.Default, cfg.Dir); err != nil {
			t.Fatalf("k=%d: Verify: %v", k, err)
		}
		got := replayAll(t, Config{Dir: cfg.Dir})
		checkRecords(t, got, acked)
	}
}

// TestNoSpaceCannotUndo: when the partial frame cannot be removed (the
// truncate or its fsync fails too), the WAL fails for good, and a reopen still
// recovers every acknowledged record.
func TestNoSpaceCannotUndo(t *testing.T) {
	for _, undo := range []vfs.Op{vfs.OpTruncate, vfs.OpSync} {
		t.Run(undo.String(), func(t *testing.T) {
			var armed atomic.Bool
			efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
				if !armed.Load() {
					return vfs.Fault{}
				}
				switch op {
				case vfs.OpWrite:
					return vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: 30}
				case undo:
					return vfs.Fault{Err: vfs.ErrInjected}
				}
				return vfs.Fault{}
			})
			cfg := Config{Dir: t.TempDir(), FS: efs, Compression: CompressionNone}
			w, _ := openAll(t, cfg)
			var acked []Record
			for i := range 5 {
				mustAppend(t, w, []Record{numbered(i)}, true)
				acked = append(acked, numbered(i))
			}
			armed.Store(true)
			err := w.Append([]Record{numbered(5)}, true)
			if !errors.Is(err, ErrFailed) || errors.Is(err, ErrNoSpace) {
				t.Fatalf("Append = %v, want ErrFailed", err)
			}
			armed.Store(false)
			if err := w.Append([]Record{numbered(6)}, true); !errors.Is(err, ErrFailed) {
				t.Fatalf("Append after failure = %v, want ErrFailed", err)
			}
			w.Close()
			got := replayAll(t, Config{Dir: cfg.Dir})
			checkRecords(t, got, acked)
		})
	}
}

// TestNoSpaceConcurrent: many appenders coalesced into shared frames while
// the disk fills and empties again and again; each retries its record until
// it is taken. After a reopen each appender's records are exactly the ones
// acknowledged, in order, each once.
func TestNoSpaceConcurrent(t *testing.T) {
	rng := testRand(t)
	for _, fc := range noSpaceCases {
		period := int64(3 + rng.IntN(10))
		t.Run(fc.name, func(t *testing.T) {
			var calls atomic.Int64
			efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
				// Every period-th matching call finds the disk full.
				if op == fc.op && strings.HasSuffix(path, fc.suffix) && calls.Add(1)%period == 0 {
					return vfs.Fault{Err: fc.err, ShortWrite: fc.shortWrite}
				}
				return vfs.Fault{}
			})
			cfg := Config{Dir: t.TempDir(), FS: efs, SegmentSize: 2000, PreallocSize: 1024, Compression: CompressionNone}
			w, _ := openAll(t, cfg)
			const writers, perWriter = 8, 150
			var failures atomic.Int64
			var wg sync.WaitGroup
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perWriter; i++ {
						r := Record{Shard: uint64(g), Type: RecordEntry, Index: uint64(i + 1), Data: fmt.Appendf(nil, "writer %d record %d", g, i)}
						for {
							err := w.Append([]Record{r}, true)
							if err == nil {
								break
							}
							if !errors.Is(err, ErrNoSpace) || errors.Is(err, ErrFailed) {
								t.Errorf("writer %d: %v, want ErrNoSpace", g, err)
								return
							}
							failures.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			mustClose(t, w)
			if failures.Load() == 0 {
				t.Fatal("no Append failed")
			}
			got := replayAll(t, Config{Dir: cfg.Dir})
			per := make([][]Record, writers)
			for _, r := range got {
				per[r.Shard] = append(per[r.Shard], r)
			}
			for g := range writers {
				if len(per[g]) != perWriter {
					t.Fatalf("writer %d: %d records recovered, %d acknowledged", g, len(per[g]), perWriter)
				}
				for i, r := range per[g] {
					if r.Index != uint64(i+1) {
						t.Fatalf("writer %d: recovered record %d has index %d", g, i, r.Index)
					}
				}
			}
			t.Logf("period %d: %d appends failed, %d segments", period, failures.Load(), len(segmentFiles(t, cfg.Dir)))
		})
	}
}
