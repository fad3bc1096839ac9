package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/vfs"
)

// noSpaceCases are the places where a full disk can hit an Append: each must
// fail only that Append, with ErrNoSpace.
var noSpaceCases = []faultCase{
	{"write: nothing written", vfs.OpWrite, ".wal", vfs.ErrNoSpace, 0, false},
	{"write: mid-header", vfs.OpWrite, ".wal", vfs.ErrNoSpace, 7, false},
	{"write: mid-payload", vfs.OpWrite, ".wal", vfs.ErrNoSpace, 60, false},
	{"preallocate", vfs.OpPreallocate, ".wal", vfs.ErrNoSpace, 0, false},
	{"preallocate: some zeros written", vfs.OpPreallocate, ".wal", vfs.ErrNoSpace, 100, false},
	{"cut: create", vfs.OpCreate, ".tmp", vfs.ErrNoSpace, 0, false},
	{"cut: preallocate", vfs.OpPreallocate, ".tmp", vfs.ErrNoSpace, 0, false},
	{"cut: preallocate, some zeros written", vfs.OpPreallocate, ".tmp", vfs.ErrNoSpace, 100, false},
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
// records whose Append returned nil, in order. The same with encryption:
// sealed frames rewritten after a full disk open (under new nonces).
func TestNoSpaceRecovers(t *testing.T) { testNoSpaceRecovers(t, nil) }

func TestNoSpaceRecoversEncrypted(t *testing.T) {
	c, _ := testCipher(t, testMasterKey(t, 1))
	testNoSpaceRecovers(t, c)
}

func testNoSpaceRecovers(t *testing.T, cipher *crypt.Cipher) {
	for _, fc := range noSpaceCases {
		t.Run(fc.name, func(t *testing.T) {
			var armed atomic.Bool
			efs := vfs.NewErrorFS(vfs.Default, fc.injector(&armed))
			cfg := Config{Dir: t.TempDir(), FS: efs, SegmentSize: 700, PreallocSize: 512, Compression: CompressionNone, Cipher: cipher}
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
			if _, err := VerifyEncrypted(vfs.Default, cfg.Dir, cipher); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			got := withoutCarryOver(replayAll(t, Config{Dir: cfg.Dir, Cipher: cipher}))
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
			efs := vfs.NewErrorFS(vfs.Default, nil)
			cfg := Config{Dir: t.TempDir(), FS: efs, SegmentSize: 2000, PreallocSize: 1024, Compression: CompressionNone}
			w, _ := openAll(t, cfg)
			efs.SetInjector(func(op vfs.Op, path string) vfs.Fault {
				// Every period-th matching call finds the disk full, and the
				// one after it too for preallocation, which falls back to a
				// smaller reservation once.
				if op != fc.op || !strings.HasSuffix(path, fc.suffix) {
					return vfs.Fault{}
				}
				if n := calls.Add(1); n%period == 0 || (op == vfs.OpPreallocate && n%period == 1) {
					return vfs.Fault{Err: fc.err, ShortWrite: fc.shortWrite}
				}
				return vfs.Fault{}
			})
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

// lostTruncateFS remembers, per file, the bytes a Truncate cut off until the
// next Sync of that file: a crash before that Sync may leave the file at its
// old length with those bytes (the truncation never reached the disk).
type lostTruncateFS struct {
	vfs.FS
	mu      sync.Mutex
	pending map[string]lostTail
}

type lostTail struct {
	off  int64
	data []byte
}

type lostTruncateFile struct {
	vfs.File
	fs *lostTruncateFS
}

func (l *lostTruncateFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &lostTruncateFile{File: f, fs: l}, nil
}

func (l *lostTruncateFS) Create(name string) (vfs.File, error) { return l.wrap(l.FS.Create(name)) }
func (l *lostTruncateFS) OpenReadWrite(name string) (vfs.File, error) {
	return l.wrap(l.FS.OpenReadWrite(name))
}

func (f *lostTruncateFile) Truncate(size int64) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() > size {
		tail := make([]byte, st.Size()-size)
		if _, err := f.ReadAt(tail, size); err != nil {
			return err
		}
		f.fs.mu.Lock()
		if _, ok := f.fs.pending[f.Name()]; !ok {
			f.fs.pending[f.Name()] = lostTail{off: size, data: tail}
		}
		f.fs.mu.Unlock()
	}
	return f.File.Truncate(size)
}

func (f *lostTruncateFile) Sync() error     { return f.synced(f.File.Sync()) }
func (f *lostTruncateFile) SyncData() error { return f.synced(f.File.SyncData()) }

// synced forgets the pending truncation once a sync made it durable (a
// data sync covers a change of size).
func (f *lostTruncateFile) synced(err error) error {
	if err != nil {
		return err
	}
	f.fs.mu.Lock()
	delete(f.fs.pending, f.Name())
	f.fs.mu.Unlock()
	return nil
}

// crashImage copies dir to a new directory as a crash could leave it: every
// truncation not yet followed by a Sync is undone where no later write
// covered the bytes it cut off.
func (l *lostTruncateFS) crashImage(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, img)
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, tail := range l.pending {
		path := filepath.Join(img, filepath.Base(name))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if end := tail.off + int64(len(tail.data)); end > int64(len(b)) {
			from := int64(len(b)) - tail.off
			b = append(b, tail.data[from:]...)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// TestNoSpaceRewindIsDurable: a frame cut short by a full disk is removed
// durably before anything else is written. Otherwise a crash after a shorter
// frame took its place (appended without sync) could leave the long frame's
// tail behind it, and Open would refuse the log as corrupt.
func TestNoSpaceRewindIsDurable(t *testing.T) {
	ltfs := &lostTruncateFS{FS: vfs.Default, pending: map[string]lostTail{}}
	var armed atomic.Bool
	efs := vfs.NewErrorFS(ltfs, func(op vfs.Op, path string) vfs.Fault {
		if op == vfs.OpWrite && armed.CompareAndSwap(true, false) {
			return vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: 400}
		}
		return vfs.Fault{}
	})
	cfg := Config{Dir: t.TempDir(), FS: efs, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	var acked []Record
	for i := range 3 {
		mustAppend(t, w, []Record{numbered(i)}, true)
		acked = append(acked, numbered(i))
	}
	long := Record{Shard: 1, Type: RecordEntry, Index: 3, Data: []byte(strings.Repeat("long frame ", 60))}
	armed.Store(true)
	wantNoSpace(t, w.Append([]Record{long}, true))
	short := Record{Shard: 1, Type: RecordEntry, Index: 3, Data: []byte("short")}
	mustAppend(t, w, []Record{short}, false)

	img := ltfs.crashImage(t, cfg.Dir)
	got, err := func() ([]Record, error) {
		w, recs, err := tryOpen(Config{Dir: img})
		if err == nil {
			w.Close()
		}
		return recs, err
	}()
	if err != nil {
		t.Fatalf("Open after a crash following a full-disk rewind: %v", err)
	}
	// The unsynced short frame may or may not have survived.
	if len(got) == len(acked)+1 {
		checkRecords(t, got, append(acked, short))
	} else {
		checkRecords(t, got, acked)
	}
	mustClose(t, w)
}

// TestNoSpaceKeepsUnsyncedFrames: a full disk after frames appended without
// sync removes only the failed frame; the next barrier makes the earlier
// ones durable.
func TestNoSpaceKeepsUnsyncedFrames(t *testing.T) {
	var armed atomic.Bool
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if op == vfs.OpWrite && armed.CompareAndSwap(true, false) {
			return vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: 25}
		}
		return vfs.Fault{}
	})
	cfg := Config{Dir: t.TempDir(), FS: efs, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	want := []Record{numbered(0), numbered(1), numbered(2)}
	mustAppend(t, w, want[:1], true)
	mustAppend(t, w, want[1:2], false)
	mustAppend(t, w, want[2:3], false)
	armed.Store(true)
	wantNoSpace(t, w.Append([]Record{numbered(3)}, true))
	mustAppend(t, w, nil, true)
	// Crash now: the files as they are.
	img := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, cfg.Dir, img)
	mustClose(t, w)
	checkRecords(t, replayAll(t, Config{Dir: img}), want)
}

// quotaFS fails Preallocate beyond limit bytes per file with ENOSPC, as a
// disk with little space left does.
type quotaFS struct {
	vfs.FS
	limit int64
}

type quotaFile struct {
	vfs.File
	limit int64
}

func (q quotaFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return quotaFile{File: f, limit: q.limit}, nil
}

func (q quotaFS) Create(name string) (vfs.File, error) { return q.wrap(q.FS.Create(name)) }
func (q quotaFS) OpenReadWrite(name string) (vfs.File, error) {
	return q.wrap(q.FS.OpenReadWrite(name))
}

func (f quotaFile) Preallocate(size int64) error {
	if size > f.limit {
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Preallocate(size)
}

// TestNoSpaceUsesTheLastBytes: when a whole preallocation step no longer
// fits, frames that do fit are still written; only a frame that does not fit
// fails, with ErrNoSpace.
func TestNoSpaceUsesTheLastBytes(t *testing.T) {
	const limit = 3000
	cfg := Config{Dir: t.TempDir(), FS: quotaFS{FS: vfs.Default, limit: limit}, PreallocSize: 64 << 10, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	var acked []Record
	var err error
	for i := 0; err == nil; i++ {
		r := Record{Shard: 1, Type: RecordEntry, Index: uint64(i + 1), Data: []byte(strings.Repeat("x", 100))}
		if err = w.Append([]Record{r}, true); err == nil {
			acked = append(acked, r)
		}
	}
	wantNoSpace(t, err)
	if w.Size() < limit-200 || w.Size() > limit {
		t.Fatalf("the first ErrNoSpace came at %d bytes of %d available", w.Size(), limit)
	}
	mustClose(t, w)
	checkRecords(t, replayAll(t, Config{Dir: cfg.Dir}), acked)
}
