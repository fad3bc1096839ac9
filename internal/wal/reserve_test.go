package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distkv/distkv/internal/vfs"
)

// reserveImage appends n synced records to a new WAL with a reserve of
// prealloc bytes and copies its directory while it is still open, as a crash
// leaves it: the frames followed by the zero reserve. It returns the records,
// the directory of the copy, and the offset of the last frame.
func reserveImage(t *testing.T, n int, prealloc int64) (want []Record, img string, last int64) {
	t.Helper()
	cfg := Config{Dir: filepath.Join(t.TempDir(), "live"), PreallocSize: prealloc, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	for i := range n {
		want = append(want, numbered(i))
		mustAppend(t, w, want[i:], true)
	}
	data := w.Size()
	img = filepath.Join(t.TempDir(), "crashed")
	copyDir(t, cfg.Dir, img)
	mustClose(t, w)
	if got := fileSize(t, filepath.Join(img, segmentName(1))); got != prealloc || data >= prealloc {
		t.Fatalf("crash image of %d bytes holding %d of data, want the %d-byte reserve", got, data, prealloc)
	}
	offs := frameOffsets(t, img)[segmentName(1)]
	return want, img, offs[len(offs)-1]
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestCrashImageWithReserve: a WAL copied while open (a crash image: frames,
// then the zero reserve) opens with every record, no warning and the file
// untouched; appends then overwrite the reserve in place, without growing
// the file, and a reopen (after a crash or a Close) has all records in order.
func TestCrashImageWithReserve(t *testing.T) {
	const prealloc = 64 << 10
	want, img, _ := reserveImage(t, 20, prealloc)
	seg := filepath.Join(img, segmentName(1))

	rep, err := Verify(vfs.Default, img)
	if err != nil || rep.TornSegment != "" || rep.Records != len(want) || rep.Bytes+rep.Reserved != prealloc || rep.Reserved == 0 {
		t.Fatalf("Verify = %+v, %v; want %d records, no torn tail, data and reserve making %d bytes", rep, err, len(want), prealloc)
	}
	var logs logBuffer
	cfg := Config{Dir: img, PreallocSize: prealloc, Compression: CompressionNone, Logger: logs.logger()}
	w, got := openAll(t, cfg)
	checkRecords(t, got, want)
	if logs.String() != "" {
		t.Fatalf("Open of a crash image logged %q, want nothing", logs.String())
	}
	if n := fileSize(t, seg); n != prealloc {
		t.Fatalf("Open changed the segment from %d to %d bytes", prealloc, n)
	}
	if w.Size() != rep.Bytes {
		t.Fatalf("Size() = %d after Open, want the %d bytes of data", w.Size(), rep.Bytes)
	}

	for i := len(want); i < 40; i++ {
		want = append(want, numbered(i))
		mustAppend(t, w, want[i:], true)
	}
	if n := fileSize(t, seg); n != prealloc || w.Size() >= prealloc {
		t.Fatalf("after appending, %d bytes of data in a file of %d; want the frames inside the %d-byte reserve", w.Size(), n, prealloc)
	}
	crashed := cfg
	crashed.Dir = img + "-again"
	copyDir(t, img, crashed.Dir)
	mustClose(t, w)
	checkRecords(t, replayAll(t, crashed), want)
	checkRecords(t, replayAll(t, cfg), want)
	if logs.String() != "" {
		t.Fatalf("reopening logged %q, want nothing", logs.String())
	}
}

// TestTornFrameInReserve: the last frame of a crash image cut at every byte,
// with the reserve's zeros after it, is a torn tail: truncated with a warning,
// the frames before it survive, and appends continue. The same image with a
// non-zero byte anywhere after the frame is corruption at the frame.
func TestTornFrameInReserve(t *testing.T) {
	const prealloc = 8 << 10
	want, img, last := reserveImage(t, 6, prealloc)
	seg := segmentName(1)
	orig, err := os.ReadFile(filepath.Join(img, seg))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(vfs.Default, img)
	if err != nil {
		t.Fatal(err)
	}
	end := rep.Bytes // of the last frame
	// A frame is torn once some of its bytes are on disk: start at the first
	// non-zero byte (an all-zero prefix is the clean end of the log).
	first := last
	for orig[first] == 0 {
		first++
	}
	// A short extra frame after recovery: if the torn frame's bytes stayed
	// behind it, the reopen below would find them.
	extra := Record{Shard: 9, Type: RecordEntry, Index: 1, Data: []byte("x")}
	checked := 0
	for k := first + 1; k < end; k++ {
		for _, garbage := range []int64{0, end + 7, int64(len(orig)) - 1} {
			dir := filepath.Join(t.TempDir(), fmt.Sprint(k))
			image := slices.Clone(orig)
			clear(image[k:])
			if garbage > 0 {
				image[garbage] = 0x5a
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, seg)
			if err := os.WriteFile(path, image, 0o644); err != nil {
				t.Fatal(err)
			}
			var logs logBuffer
			cfg := Config{Dir: dir, FS: fastFS, PreallocSize: prealloc, Compression: CompressionNone, Logger: logs.logger()}
			rep, verr := Verify(vfs.Default, dir)
			w, got, err := tryOpen(cfg)
			if garbage > 0 {
				if err == nil {
					w.Close()
				}
				wantCorrupt(t, err, seg, last)
				wantCorrupt(t, verr, seg, last)
				continue
			}
			if err != nil || verr != nil {
				t.Fatalf("cut at %d: Open = %v, Verify = %v; want a torn tail", k, err, verr)
			}
			if rep.TornOffset != last || rep.TornBytes != int64(len(orig))-last {
				t.Fatalf("cut at %d: Verify = %+v, want a torn tail at %d", k, rep, last)
			}
			checkRecords(t, got, want[:len(want)-1])
			for _, s := range []string{"torn", seg, fmt.Sprintf("offset=%d", last), fmt.Sprintf("dropped_bytes=%d", int64(len(orig))-last)} {
				if !strings.Contains(logs.String(), s) {
					t.Fatalf("cut at %d: warning %q lacks %q", k, logs.String(), s)
				}
			}
			if n := fileSize(t, path); n != last {
				t.Fatalf("cut at %d: file of %d bytes after Open, want it truncated to %d", k, n, last)
			}
			mustAppend(t, w, []Record{extra}, true)
			if n := fileSize(t, path); n != prealloc {
				t.Fatalf("cut at %d: file of %d bytes after an append, want the reserve of %d again", k, n, prealloc)
			}
			crashed := cfg
			crashed.Dir = dir + "-crashed"
			copyDir(t, dir, crashed.Dir)
			mustClose(t, w)
			checkRecords(t, replayAll(t, crashed), append(slices.Clone(want[:len(want)-1]), extra))
			checkRecords(t, replayAll(t, cfg), append(slices.Clone(want[:len(want)-1]), extra))
			checked++
		}
	}
	t.Logf("last frame [%d, %d): %d torn images recovered", last, end, checked)
}

// TestNoSpaceWhileReserving: the disk fills while the zero reserve is being
// extended, after part of the zeros were written. That Append fails with
// ErrNoSpace (not ErrFailed); a crash image taken then opens with exactly the
// acknowledged records and no warning; once space is freed the same WAL
// takes appends again and a reopen has every acknowledged record in order.
func TestNoSpaceWhileReserving(t *testing.T) {
	const prealloc = 1024
	var full atomic.Bool
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if full.Load() && op == vfs.OpPreallocate && strings.HasSuffix(path, ".wal") {
			return vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: 100}
		}
		return vfs.Fault{}
	})
	cfg := Config{Dir: t.TempDir(), FS: efs, PreallocSize: prealloc, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	seg := filepath.Join(cfg.Dir, segmentName(1))
	var acked []Record
	next := 0
	appendOne := func() error {
		r := numbered(next)
		next++
		err := w.Append([]Record{r}, true)
		if err == nil {
			acked = append(acked, r)
		}
		return err
	}
	for range 3 {
		if err := appendOne(); err != nil {
			t.Fatal(err)
		}
	}
	full.Store(true)
	// Appends that fit in the reserve still succeed; the first that needs
	// more fails.
	var err error
	for range 50 {
		if err = appendOne(); err != nil {
			break
		}
	}
	wantNoSpace(t, err)
	size := fileSize(t, seg)
	if size%prealloc == 0 {
		t.Fatalf("file of %d bytes: the failed reserve wrote no zeros, the test wants it partial", size)
	}
	// The disk stays full: retrying fails the same way, nothing is sticky.
	wantNoSpace(t, appendOne())

	img := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, cfg.Dir, img)
	var logs logBuffer
	checkRecords(t, replayAll(t, Config{Dir: img, Logger: logs.logger()}), acked)
	if logs.String() != "" {
		t.Fatalf("crash image after a partial reserve logged %q, want nothing", logs.String())
	}

	full.Store(false)
	for range 20 {
		if err := appendOne(); err != nil {
			t.Fatalf("Append after space was freed: %v", err)
		}
	}
	mustClose(t, w)
	if _, err := Verify(vfs.Default, cfg.Dir); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	checkRecords(t, replayAll(t, Config{Dir: cfg.Dir}), acked)
}

// syncCountFS counts, per kind, the syncs of the files it opens.
type syncCountFS struct {
	vfs.FS
	mu   sync.Mutex
	full map[string]int // Sync (fsync) per file name
	data map[string]int // SyncData (fdatasync) per file name
}

type syncCountFile struct {
	vfs.File
	fs *syncCountFS
}

func (c *syncCountFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &syncCountFile{File: f, fs: c}, nil
}

func (c *syncCountFS) Create(name string) (vfs.File, error) { return c.wrap(c.FS.Create(name)) }
func (c *syncCountFS) Open(name string) (vfs.File, error)   { return c.wrap(c.FS.Open(name)) }
func (c *syncCountFS) OpenReadWrite(name string) (vfs.File, error) {
	return c.wrap(c.FS.OpenReadWrite(name))
}

func (c *syncCountFS) counts() (full, data map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.full, c.data
}

func (f *syncCountFile) Sync() error {
	f.fs.mu.Lock()
	f.fs.full[filepath.Base(f.Name())]++
	f.fs.mu.Unlock()
	return f.File.Sync()
}

func (f *syncCountFile) SyncData() error {
	f.fs.mu.Lock()
	f.fs.data[filepath.Base(f.Name())]++
	f.fs.mu.Unlock()
	return f.File.SyncData()
}

// TestAppendSyncIsDataSync: every synced Append issues exactly one data sync
// (fdatasync, vfs.File.SyncData) and no full fsync, and so do segment cuts,
// the torn-tail repair of Open, and Close.
func TestAppendSyncIsDataSync(t *testing.T) {
	cfs := &syncCountFS{FS: vfs.Default, full: map[string]int{}, data: map[string]int{}}
	cfg := Config{Dir: t.TempDir(), FS: cfs, SegmentSize: 1 << 20, PreallocSize: 64 << 10, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	const n = 50
	for i := range n {
		mustAppend(t, w, []Record{numbered(i)}, true)
	}
	full, data := cfs.counts()
	if len(full) != 0 || data[segmentName(1)] != n {
		t.Fatalf("%d synced appends issued fsyncs %v and data syncs %v; want %d data syncs and no fsync", n, full, data, n)
	}
	// Cuts (small segments) and Close.
	mustClose(t, w)
	cfg.SegmentSize = 600
	w, _ = openAll(t, cfg)
	for i := range n {
		mustAppend(t, w, []Record{numbered(n + i)}, true)
	}
	mustClose(t, w)
	full, data = cfs.counts()
	if len(full) != 0 || len(data) < 5 {
		t.Fatalf("with segment cuts: fsyncs %v, data syncs %v; want only data syncs, of several segments", full, data)
	}
}

// TestFailedDataSyncIsFatal: a failed data sync fails the WAL for good, as a
// failed fsync does, even when the injected rule is written for OpSync.
func TestFailedDataSyncIsFatal(t *testing.T) {
	var armed atomic.Bool
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if armed.Load() && op == vfs.OpSync {
			return vfs.Fault{Err: vfs.ErrInjected, DropUnsynced: true}
		}
		return vfs.Fault{}
	})
	cfs := &syncCountFS{FS: efs, full: map[string]int{}, data: map[string]int{}}
	cfg := Config{Dir: t.TempDir(), FS: cfs, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	want := []Record{numbered(0), numbered(1)}
	mustAppend(t, w, want, true)
	armed.Store(true)
	if err := w.Append([]Record{numbered(2)}, true); !errors.Is(err, ErrFailed) || !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Append with a failing data sync = %v, want ErrFailed", err)
	}
	armed.Store(false)
	if err := w.Append([]Record{numbered(3)}, true); !errors.Is(err, ErrFailed) {
		t.Fatalf("Append after a failed data sync = %v, want ErrFailed (sticky)", err)
	}
	w.Close()
	if full, _ := cfs.counts(); len(full) != 0 {
		t.Fatalf("fsyncs %v, want only data syncs", full)
	}
	// The dropped pages took the unacknowledged frame with them: the reserve
	// reads as zeros again, the clean end after the acknowledged records.
	checkRecords(t, replayAll(t, Config{Dir: cfg.Dir}), want)
}
