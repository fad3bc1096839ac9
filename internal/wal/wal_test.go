package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/vfs"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
		check   func(Config) bool
	}{
		{"defaults", Config{Dir: "d"}, "", func(c Config) bool {
			return c.FS == vfs.Default && c.SegmentSize == 64<<20 && c.PreallocSize == 4<<20 &&
				c.Compression == CompressionZstd && c.MinCompressSize == 512 && c.Logger != nil
		}},
		{"kept", Config{Dir: "d", SegmentSize: 1000, PreallocSize: 10, Compression: CompressionS2, MinCompressSize: 1}, "", func(c Config) bool {
			return c.SegmentSize == 1000 && c.PreallocSize == 10 && c.Compression == CompressionS2 && c.MinCompressSize == 1
		}},
		{"no dir", Config{}, "Dir is required", nil},
		{"negative segment", Config{Dir: "d", SegmentSize: -1}, "SegmentSize -1 is negative", nil},
		{"negative prealloc", Config{Dir: "d", PreallocSize: -5}, "PreallocSize -5 is negative", nil},
		{"negative min compress", Config{Dir: "d", MinCompressSize: -1}, "MinCompressSize -1 is negative", nil},
		{"bad codec", Config{Dir: "d", Compression: 7}, "unknown Compression 7", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			err := cfg.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if !tc.check(cfg) {
				t.Fatalf("Validate() filled %+v", cfg)
			}
		})
	}
}

// appendedRecords scans dir, checks that the first frame of every segment
// after the first carries exactly the latest hard state and snapshot record of
// every shard seen before it (shard order, hard state first), and returns the
// other records: the ones that were appended.
func appendedRecords(t *testing.T, dir string) []Record {
	t.Helper()
	type entry struct {
		seg string
		off int64
		r   Record
	}
	var all []entry
	err := Scan(vfs.Default, dir, func(seg string, off int64, r Record) error {
		all = append(all, entry{seg, off, r})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	hs, snap := map[uint64]Record{}, map[uint64]Record{}
	var out []Record
	first := ""
	if len(all) > 0 {
		first = all[0].seg
	}
	for i := 0; i < len(all); {
		e := all[i]
		if e.seg != first && e.off == segmentHeaderSize && (len(hs) > 0 || len(snap) > 0) {
			var want []Record
			shards := map[uint64]bool{}
			for s := range hs {
				shards[s] = true
			}
			for s := range snap {
				shards[s] = true
			}
			keys := make([]uint64, 0, len(shards))
			for s := range shards {
				keys = append(keys, s)
			}
			slices.Sort(keys)
			for _, s := range keys {
				if r, ok := hs[s]; ok {
					want = append(want, r)
				}
				if r, ok := snap[s]; ok {
					want = append(want, r)
				}
			}
			var got []Record
			for ; i < len(all) && all[i].seg == e.seg && all[i].off == e.off; i++ {
				got = append(got, all[i].r)
			}
			if !equalRecords(got, want) {
				t.Fatalf("carry-over frame of %s: got %d records, want %d", e.seg, len(got), len(want))
			}
			continue
		}
		switch e.r.Type {
		case RecordHardState:
			hs[e.r.Shard] = e.r
		case RecordSnapshot:
			snap[e.r.Shard] = e.r
		}
		out = append(out, e.r)
		i++
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	forModes(t, testRoundTrip)
}

func testRoundTrip(t *testing.T, direct bool) {
	for _, tc := range []struct {
		name        string
		compression Compression
		minCompress int
	}{
		{"zstd", CompressionZstd, 64},
		{"s2", CompressionS2, 64},
		{"none", CompressionNone, 0},
		{"zstd-default-threshold", CompressionZstd, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := testRand(t)
			dir := t.TempDir()
			cfg := Config{Dir: dir, SegmentSize: 16 << 10, PreallocSize: 8 << 10,
				Compression: tc.compression, MinCompressSize: tc.minCompress, Direct: direct}
			w, recs := openAll(t, cfg)
			if len(recs) != 0 {
				t.Fatalf("new WAL replayed %d records", len(recs))
			}
			var want []Record
			next := map[uint64]uint64{}
			for i := range 300 {
				batch := make([]Record, 1+rng.IntN(8))
				for j := range batch {
					batch[j] = randomRecord(rng, 3, next)
				}
				want = append(want, batch...)
				mustAppend(t, w, batch, i%10 == 0)
				if i == 150 {
					// Half way: reopen and keep appending to the same log.
					mustClose(t, w)
					w, _ = openAll(t, cfg)
				}
			}
			size := w.Size()
			mustClose(t, w)

			var onDisk int64
			files := segmentFiles(t, dir)
			for _, f := range files {
				st, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				onDisk += st.Size()
			}
			if size != onDisk {
				t.Errorf("Size() = %d, files hold %d bytes", size, onDisk)
			}
			if len(files) < 4 {
				t.Fatalf("only %d segments; the test wants several cuts", len(files))
			}
			t.Logf("%d records in %d segments, %d bytes", len(want), len(files), onDisk)

			got := replayAll(t, cfg)
			checkRecords(t, withoutCarryOver(got), withoutCarryOver(want))
			checkRecords(t, appendedRecords(t, dir), want)
		})
	}
}

func TestAppendValidation(t *testing.T) {
	w, _ := openAll(t, Config{Dir: t.TempDir()})
	defer w.Close()
	err := w.Append([]Record{{Shard: 1, Type: 9}}, true)
	if err == nil || !strings.Contains(err.Error(), "invalid type 9") {
		t.Fatalf("Append with bad type = %v", err)
	}
	// A rejected argument is not a failure of the log.
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1}}, true)
	mustAppend(t, w, nil, true)
	mustAppend(t, w, nil, false)
}

func TestCloseThenAppend(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	w, _ := openAll(t, cfg)
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1, Data: []byte("x")}}, false)
	mustClose(t, w)
	if err := w.Append([]Record{{Shard: 1, Type: RecordEntry, Index: 2}}, true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if _, err := w.Compact(1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Compact after Close = %v, want ErrClosed", err)
	}
	checkRecords(t, replayAll(t, cfg), []Record{{Shard: 1, Type: RecordEntry, Index: 1, Data: []byte("x")}})
}

func TestReplayError(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	w, _ := openAll(t, cfg)
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1}}, true)
	mustClose(t, w)
	boom := errors.New("boom")
	if _, err := Open(cfg, func(Record) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Open = %v, want the replay error", err)
	}
}

// buildFrames writes one frame per batch into a fresh WAL (one segment) and
// returns the directory, the segment path and the frame offsets.
func buildFrames(t *testing.T, cfg Config, batches [][]Record) (string, []int64) {
	t.Helper()
	w, _ := openAll(t, cfg)
	for _, b := range batches {
		mustAppend(t, w, b, false)
	}
	mustClose(t, w)
	files := segmentFiles(t, cfg.Dir)
	if len(files) != 1 {
		t.Fatalf("%d segments, want 1", len(files))
	}
	offs := frameOffsets(t, cfg.Dir)[filepath.Base(files[0])]
	if len(offs) != len(batches) {
		t.Fatalf("%d frames, want %d", len(offs), len(batches))
	}
	return files[0], offs
}

func testBatches(n int) [][]Record {
	var batches [][]Record
	for i := range n {
		batches = append(batches, []Record{
			{Shard: 7, Type: RecordEntry, Index: uint64(i + 1), Data: []byte(strings.Repeat(fmt.Sprintf("value %d; ", i), 10))},
			{Shard: 7, Type: RecordHardState, Data: fmt.Appendf(nil, "term=1 commit=%d", i)},
		})
	}
	return batches
}

// TestTornFinalFrame cuts the last frame at every byte offset, or zeroes the
// file from every offset of the last frame on, as a crash during its append
// can. Open must recover exactly the earlier frames and accept new appends.
func TestTornFinalFrame(t *testing.T) {
	for _, codec := range []struct {
		name        string
		compression Compression
	}{{"raw", CompressionNone}, {"zstd", CompressionZstd}} {
		for _, mode := range []string{"truncate", "zero"} {
			t.Run(codec.name+"/"+mode, func(t *testing.T) {
				base := Config{Dir: filepath.Join(t.TempDir(), "orig"), FS: fastFS, Compression: codec.compression, MinCompressSize: 1}
				batches := testBatches(4)
				seg, offs := buildFrames(t, base, batches)
				orig, err := os.ReadFile(seg)
				if err != nil {
					t.Fatal(err)
				}
				last := offs[len(offs)-1]
				if codec.compression != CompressionNone && orig[last+8]&flagCompressed == 0 {
					t.Fatal("last frame is not compressed; the test wants it to be")
				}
				var want []Record
				for _, b := range batches[:len(batches)-1] {
					want = append(want, b...)
				}
				extra := Record{Shard: 8, Type: RecordEntry, Index: 1, Data: []byte("after recovery")}
				t.Logf("last frame: bytes [%d, %d)", last, len(orig))
				for k := last; k < int64(len(orig)); k++ {
					dir := filepath.Join(t.TempDir(), fmt.Sprint(k))
					if err := os.MkdirAll(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					img := slices.Clone(orig)
					if mode == "truncate" {
						img = img[:k]
					} else {
						clear(img[k:])
					}
					if err := os.WriteFile(filepath.Join(dir, filepath.Base(seg)), img, 0o644); err != nil {
						t.Fatal(err)
					}
					var logs logBuffer
					cfg := base
					cfg.Dir, cfg.Logger = dir, logs.logger()
					w, got, err := tryOpen(cfg)
					if err != nil {
						t.Fatalf("cut at %d: Open: %v", k, err)
					}
					checkRecords(t, got, want)
					// Nothing but zeros after the last whole frame is the
					// clean end of the log, as the WAL's own reserve is.
					if slices.ContainsFunc(img[last:], func(b byte) bool { return b != 0 }) {
						dropped := int64(len(img)) - last
						for _, s := range []string{"torn", filepath.Base(seg), fmt.Sprintf("offset=%d", last), fmt.Sprintf("dropped_bytes=%d", dropped)} {
							if !strings.Contains(logs.String(), s) {
								t.Fatalf("cut at %d: warning %q lacks %q", k, logs.String(), s)
							}
						}
					} else {
						if logs.String() != "" {
							t.Fatalf("cut at %d: zeros after the last frame logged %q", k, logs.String())
						}
						if st, err := os.Stat(filepath.Join(dir, filepath.Base(seg))); err != nil || st.Size() != int64(len(img)) {
							t.Fatalf("cut at %d: zeros after the last frame were not kept (stat %v, %v)", k, st, err)
						}
					}
					if w.Size() != last {
						t.Fatalf("cut at %d: Size() = %d after recovery, want %d", k, w.Size(), last)
					}
					mustAppend(t, w, []Record{extra}, true)
					// Crash now (copy the files as they are) as well as after a clean Close.
					crashed := cfg
					crashed.Dir = dir + "-crashed"
					copyDir(t, dir, crashed.Dir)
					mustClose(t, w)
					checkRecords(t, replayAll(t, crashed), append(slices.Clone(want), extra))
					checkRecords(t, replayAll(t, cfg), append(slices.Clone(want), extra))
				}
			})
		}
	}
}

func flipBit(t *testing.T, path string, off int64, bit uint) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 1 << bit
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantCorrupt(t *testing.T, err error, seg string, off int64) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v, want ErrCorrupt", err)
	}
	var ce *CorruptError
	if !errors.As(err, &ce) || filepath.Base(ce.Path) != filepath.Base(seg) || ce.Offset != off {
		t.Fatalf("error %v, want it to name %s offset %d", err, filepath.Base(seg), off)
	}
	if msg := err.Error(); !strings.Contains(msg, filepath.Base(seg)) || !strings.Contains(msg, fmt.Sprintf("offset %d", off)) {
		t.Fatalf("message %q does not name %s and offset %d", msg, filepath.Base(seg), off)
	}
}

// TestBitFlipNonFinalFrame flips one bit in every byte of every frame but the
// last (header and payload, raw and compressed): Open and Verify must refuse
// with the segment and the damaged frame's offset.
func TestBitFlipNonFinalFrame(t *testing.T) {
	for _, compression := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
		t.Run(compression.String(), func(t *testing.T) {
			base := Config{Dir: filepath.Join(t.TempDir(), "orig"), FS: fastFS, Compression: compression, MinCompressSize: 1}
			seg, offs := buildFrames(t, base, testBatches(3))
			st, _ := os.Stat(seg)
			bounds := append(slices.Clone(offs), st.Size())
			// Include the segment header, reported at offset 0.
			checks := 0
			for off := int64(0); off < offs[len(offs)-1]; off++ {
				frame := int64(0)
				for i := range offs {
					if off >= bounds[i] && off < bounds[i+1] {
						frame = offs[i]
					}
				}
				dir := filepath.Join(t.TempDir(), fmt.Sprint(off))
				copyDir(t, base.Dir, dir)
				path := filepath.Join(dir, filepath.Base(seg))
				flipBit(t, path, off, uint(off%8))
				cfg := base
				cfg.Dir = dir
				w, _, err := tryOpen(cfg)
				if err == nil {
					w.Close()
					t.Fatalf("flip at %d: Open succeeded", off)
				}
				wantCorrupt(t, err, seg, frame)
				_, verr := Verify(vfs.Default, dir)
				wantCorrupt(t, verr, seg, frame)
				checks++
			}
			t.Logf("%d flipped images refused", checks)
		})
	}
}

// TestBitFlipNonFinalSegment damages the last frame of a segment that is not
// the last: no torn-tail leniency applies there.
func TestBitFlipNonFinalSegment(t *testing.T) {
	base := Config{Dir: filepath.Join(t.TempDir(), "orig"), FS: fastFS, SegmentSize: 200}
	w, _ := openAll(t, base)
	for _, b := range testBatches(12) {
		mustAppend(t, w, b, false)
	}
	mustClose(t, w)
	offs := frameOffsets(t, base.Dir)
	files := segmentFiles(t, base.Dir)
	if len(files) < 3 {
		t.Fatalf("%d segments, want at least 3", len(files))
	}
	seg := files[1]
	segOffs := offs[filepath.Base(seg)]
	lastOff := segOffs[len(segOffs)-1]
	st, _ := os.Stat(seg)
	for _, tc := range []struct {
		name     string
		damage   func(path string)
		frameOff int64
	}{
		{"payload of last frame", func(p string) { flipBit(t, p, st.Size()-1, 3) }, lastOff},
		{"header of last frame", func(p string) { flipBit(t, p, lastOff+2, 0) }, lastOff},
		{"truncated last frame", func(p string) { os.Truncate(p, st.Size()-1) }, lastOff},
		{"segment header", func(p string) { flipBit(t, p, 17, 1) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, base.Dir, dir)
			tc.damage(filepath.Join(dir, filepath.Base(seg)))
			cfg := base
			cfg.Dir = dir
			_, _, err := tryOpen(cfg)
			wantCorrupt(t, err, seg, tc.frameOff)
		})
	}
}

// TestFinalSegmentGarbage: in the final segment, a damaged last-but-one
// frame is corruption even if it is followed only by a little garbage, and so
// is garbage after a torn-looking tail. Zeros after the last frame are the
// clean end of the log.
func TestFinalSegmentGarbage(t *testing.T) {
	base := Config{Dir: filepath.Join(t.TempDir(), "orig"), FS: fastFS, Compression: CompressionNone}
	seg, offs := buildFrames(t, base, testBatches(3))
	orig, _ := os.ReadFile(seg)
	last := offs[len(offs)-1]
	for _, tc := range []struct {
		name    string
		image   func() []byte
		clean   bool
		corrupt int64
	}{
		{"zeros after the end", func() []byte { return append(slices.Clone(orig), make([]byte, 100)...) }, true, 0},
		{"few zeros after the end", func() []byte { return append(slices.Clone(orig), 0, 0, 0) }, true, 0},
		{"garbage after the end", func() []byte { return append(slices.Clone(orig), bytes.Repeat([]byte{0xab}, 50)...) }, false, int64(len(orig))},
		{"non-zero byte after zeros", func() []byte { return append(append(slices.Clone(orig), make([]byte, 50)...), 1) }, false, int64(len(orig))},
		{"bad payload then garbage", func() []byte {
			b := append(slices.Clone(orig), 'x')
			b[len(orig)-1] ^= 0xff
			return b
		}, false, last},
		{"length bit flip in last frame", func() []byte {
			// Claims a longer payload: without the header checksum this would
			// look like a frame running past the end, i.e. a torn tail.
			b := slices.Clone(orig)
			b[last+2] ^= 0x10
			return b
		}, false, last},
		{"bad header then zeros except one byte", func() []byte {
			b := slices.Clone(orig)
			clear(b[last+5:])
			b[last+1] ^= 1
			b[len(b)-1] = 9
			return b
		}, false, last},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := tc.image()
			path := filepath.Join(dir, filepath.Base(seg))
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			rep, verr := Verify(vfs.Default, dir)
			var logs logBuffer
			cfg := base
			cfg.Dir, cfg.Logger = dir, logs.logger()
			w, _, err := tryOpen(cfg)
			if tc.clean {
				if err != nil || verr != nil {
					t.Fatalf("Open = %v, Verify = %v; want the clean end of the log", err, verr)
				}
				defer w.Close()
				reserve := int64(len(img) - len(orig))
				if rep.TornSegment != "" || rep.Reserved != reserve || rep.Bytes != int64(len(orig)) {
					t.Fatalf("Verify report %+v; want no torn tail, %d bytes, %d reserved", rep, len(orig), reserve)
				}
				if st, err := os.Stat(path); err != nil || st.Size() != int64(len(img)) || logs.String() != "" {
					t.Fatalf("Open changed the zero tail (stat %v, %v) or logged %q", st, err, logs.String())
				}
				return
			}
			wantCorrupt(t, err, seg, tc.corrupt)
			wantCorrupt(t, verr, seg, tc.corrupt)
		})
	}
}

func TestMissingSegmentIsCorruption(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), FS: fastFS, SegmentSize: 100}
	w, _ := openAll(t, cfg)
	for _, b := range testBatches(5) {
		mustAppend(t, w, b, false)
	}
	mustClose(t, w)
	files := segmentFiles(t, cfg.Dir)
	if len(files) < 4 {
		t.Fatalf("%d segments", len(files))
	}
	if err := os.Remove(files[2]); err != nil {
		t.Fatal(err)
	}
	_, _, err := tryOpen(cfg)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "missing segment") {
		t.Fatalf("Open = %v, want a missing-segment corruption", err)
	}
}

func TestLeftoverTempSegmentRemoved(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	w, _ := openAll(t, cfg)
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1}}, true)
	mustClose(t, w)
	tmp := filepath.Join(cfg.Dir, segmentName(2)+".tmp")
	if err := os.WriteFile(tmp, []byte("half a segment"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, replayAll(t, cfg), []Record{{Shard: 1, Type: RecordEntry, Index: 1, Data: []byte{}}})
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("leftover %s still there: %v", tmp, err)
	}
}

// diskUsage returns the sum of file sizes and of allocated blocks in dir.
func diskUsage(t *testing.T, dir string) (size, alloc int64) {
	t.Helper()
	for _, f := range segmentFiles(t, dir) {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		size += st.Size()
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			alloc += sys.Blocks * 512
		}
	}
	return size, alloc
}

func TestCompressionJSON(t *testing.T) {
	rng := testRand(t)
	for _, compression := range []Compression{CompressionZstd, CompressionS2} {
		t.Run(compression.String(), func(t *testing.T) {
			cfg := Config{Dir: t.TempDir(), Compression: compression}
			w, _ := openAll(t, cfg)
			var want []Record
			var logical int64
			index := uint64(0)
			for logical < 10<<20 {
				// A Raft Ready's worth of entries per append.
				batch := make([]Record, 32)
				for i := range batch {
					index++
					v := jsonValue(rng)
					batch[i] = Record{Shard: 1 + index%4, Type: RecordEntry, Index: index, Data: v}
					logical += int64(len(v))
				}
				want = append(want, batch...)
				mustAppend(t, w, batch, false)
			}
			mustAppend(t, w, nil, true)
			liveSize, liveAlloc := diskUsage(t, cfg.Dir)
			mustClose(t, w)
			size, alloc := diskUsage(t, cfg.Dir)
			t.Logf("%s: %d records, %d bytes of values -> %d bytes in files, %d bytes allocated (while open: %d / %d allocated)",
				compression, len(want), logical, size, alloc, liveSize, liveAlloc)
			// zstd, the default, must keep 10 MB of JSON under 5 MB on disk,
			// reserved blocks included; S2 trades ratio for speed.
			limit := int64(5_000_000)
			if compression == CompressionS2 {
				limit = logical * 6 / 10
			}
			if size >= limit || alloc >= limit || (compression == CompressionZstd && liveAlloc >= limit) {
				t.Fatalf("WAL takes %d bytes (%d allocated, %d while open) for %d bytes of JSON; want < %d",
					size, alloc, liveAlloc, logical, limit)
			}
			checkRecords(t, replayAll(t, cfg), want)
		})
	}
}

// TestReserveIsZerosAndIsReleased: while the WAL is open, the active segment
// is PreallocSize bytes of data and zeros, really allocated; Close trims it
// to the data.
func TestReserveIsZerosAndIsReleased(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), PreallocSize: 1 << 20}
	w, _ := openAll(t, cfg)
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1, Data: []byte("hello")}}, true)
	size, alloc := diskUsage(t, cfg.Dir)
	if size != 1<<20 || alloc < 1<<20 {
		t.Fatalf("file of %d bytes, %d allocated; want %d of each", size, alloc, 1<<20)
	}
	b, err := os.ReadFile(segmentFiles(t, cfg.Dir)[0])
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(b[w.Size():], func(x byte) bool { return x != 0 }); i >= 0 {
		t.Fatalf("byte %d after the data is %#x, want zero", w.Size()+int64(i), b[w.Size()+int64(i)])
	}
	mustClose(t, w)
	size, alloc = diskUsage(t, cfg.Dir)
	if size != w.Size() || alloc >= 1<<20 {
		t.Fatalf("after Close: file of %d bytes, %d allocated; want the %d bytes of data", size, alloc, w.Size())
	}

	// Segments are cut at SegmentSize: no zeros are written past it.
	cfg = Config{Dir: t.TempDir(), SegmentSize: 4096, PreallocSize: 1 << 20}
	w, _ = openAll(t, cfg)
	defer w.Close()
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1, Data: []byte("hello")}}, true)
	if size, _ := diskUsage(t, cfg.Dir); size != cfg.SegmentSize {
		t.Fatalf("file of %d bytes with SegmentSize %d, want the reserve to stop there", size, cfg.SegmentSize)
	}
}

func TestCompact(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentSize: 512, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	entry := func(shard, index uint64) Record {
		return Record{Shard: shard, Type: RecordEntry, Index: index, Data: fmt.Appendf(nil, "entry %d/%d with some padding to fill segments", shard, index)}
	}
	// Every append carries an entry and the hard state of both shards.
	var idx1, idx2 uint64
	for i := range 60 {
		idx1++
		idx2++
		batch := []Record{entry(1, idx1), entry(2, idx2)}
		batch = append(batch,
			Record{Shard: 1, Type: RecordHardState, Data: fmt.Appendf(nil, "hs1 commit=%d", idx1)},
			Record{Shard: 2, Type: RecordHardState, Data: fmt.Appendf(nil, "hs2 commit=%d", idx2)})
		if i == 5 {
			batch = append(batch, Record{Shard: 2, Type: RecordSnapshot, Index: 1, Data: []byte("snap2@1")})
		}
		mustAppend(t, w, batch, false)
	}
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordSnapshot, Index: 40, Data: []byte("snap1@40")}}, true)

	segsBefore := segmentFiles(t, cfg.Dir)
	if len(segsBefore) < 8 {
		t.Fatalf("%d segments, want many", len(segsBefore))
	}
	// Which segments hold entries of each shard (from the files, not from the WAL's bookkeeping).
	maxEntry := map[string]map[uint64]uint64{}
	if err := Scan(vfs.Default, cfg.Dir, func(seg string, _ int64, r Record) error {
		if maxEntry[seg] == nil {
			maxEntry[seg] = map[uint64]uint64{}
		}
		if r.Type == RecordEntry && r.Index > maxEntry[seg][r.Shard] {
			maxEntry[seg][r.Shard] = r.Index
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// expectFirst returns the first segment that must survive given coverage.
	expectFirst := func(covered map[uint64]uint64) string {
		for i, f := range segsBefore {
			name := filepath.Base(f)
			if i == len(segsBefore)-1 {
				return name
			}
			for shard, max := range maxEntry[name] {
				if c, ok := covered[shard]; !ok || max > c {
					return name
				}
			}
		}
		return ""
	}
	check := func(covered map[uint64]uint64, removed, before int) {
		t.Helper()
		files := segmentFiles(t, cfg.Dir)
		if removed != before-len(files) {
			t.Fatalf("covered %v: Compact says it removed %d segments; %d of %d are gone", covered, removed, before-len(files), before)
		}
		if got, want := filepath.Base(files[0]), expectFirst(covered); got != want {
			t.Fatalf("covered %v: oldest segment %s, want %s", covered, got, want)
		}
		last := filepath.Base(segsBefore[len(segsBefore)-1])
		if got := filepath.Base(files[len(files)-1]); got != last {
			t.Fatalf("active segment %s gone (last is %s)", last, got)
		}
		size, _ := diskUsage(t, cfg.Dir)
		rep, err := Verify(vfs.Default, cfg.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if w.Size() != size-rep.Reserved || rep.Reserved == 0 {
			t.Fatalf("Size() = %d, files hold %d with a reserve of %d", w.Size(), size, rep.Reserved)
		}
	}

	// Shard 1 alone covers nothing: every segment has shard 2 entries too.
	before := len(segmentFiles(t, cfg.Dir))
	removed, err := w.Compact(1, 40)
	if err != nil {
		t.Fatal(err)
	}
	check(map[uint64]uint64{1: 40}, removed, before)
	if n := len(segmentFiles(t, cfg.Dir)); n != len(segsBefore) {
		t.Fatalf("Compact of one shard deleted %d segments while the other shard still needs them", len(segsBefore)-n)
	}
	before = len(segmentFiles(t, cfg.Dir))
	if removed, err = w.Compact(2, 10); err != nil {
		t.Fatal(err)
	}
	check(map[uint64]uint64{1: 40, 2: 10}, removed, before)
	if removed == 0 {
		t.Fatal("Compact deleted nothing although both shards cover the oldest segments")
	}
	// A lower index never un-covers anything.
	before = len(segmentFiles(t, cfg.Dir))
	if removed, err = w.Compact(2, 3); err != nil {
		t.Fatal(err)
	}
	check(map[uint64]uint64{1: 40, 2: 10}, removed, before)
	mustClose(t, w)
	// Note the replay before covering everything.
	got := replayAll(t, cfg)
	w, _ = openAll(t, cfg)
	defer w.Close()
	// Everything covered: only the active segment may remain.
	if _, err := w.Compact(1, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Compact(2, 1000); err != nil {
		t.Fatal(err)
	}
	if files := segmentFiles(t, cfg.Dir); len(files) != 1 || filepath.Base(files[0]) != filepath.Base(segsBefore[len(segsBefore)-1]) {
		t.Fatalf("after covering everything: segments %v, want only the active one", files)
	}
	mustAppend(t, w, []Record{entry(1, idx1+1)}, true)

	// Reopen: the hard states and snapshots of both shards survive (carried
	// over), and so does every entry not covered.
	hs, snap := map[uint64]string{}, map[uint64]string{}
	entries := map[uint64]map[uint64]bool{1: {}, 2: {}}
	for _, r := range got {
		switch r.Type {
		case RecordHardState:
			hs[r.Shard] = string(r.Data)
		case RecordSnapshot:
			snap[r.Shard] = string(r.Data)
		case RecordEntry:
			entries[r.Shard][r.Index] = true
		}
	}
	if hs[1] != fmt.Sprintf("hs1 commit=%d", idx1) || hs[2] != fmt.Sprintf("hs2 commit=%d", idx2) {
		t.Fatalf("latest hard states after compaction: %v", hs)
	}
	if snap[1] != "snap1@40" || snap[2] != "snap2@1" {
		t.Fatalf("latest snapshots after compaction: %v", snap)
	}
	for shard, from := range map[uint64]uint64{1: 41, 2: 11} {
		last := map[uint64]uint64{1: idx1, 2: idx2}[shard]
		for i := from; i <= last; i++ {
			if !entries[shard][i] {
				t.Fatalf("uncovered entry %d of shard %d lost", i, shard)
			}
		}
	}
}

// TestGroupCommit holds the first fsync until 63 more appenders are queued:
// they must then share a single frame and a single fsync.
func TestGroupCommit(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	efs := vfs.NewErrorFS(vfs.Default, nil)
	cfg := Config{Dir: t.TempDir(), FS: efs}
	w, _ := openAll(t, cfg)
	efs.SetInjector(func(op vfs.Op, path string) vfs.Fault {
		if op == vfs.OpSync {
			once.Do(func() { <-release })
		}
		return vfs.Fault{}
	})
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	appendOne := func(i int) {
		defer wg.Done()
		errs <- w.Append([]Record{{Shard: 1, Type: RecordEntry, Index: uint64(i), Data: []byte("value")}}, true)
	}
	defer once.Do(func() {}) // never block after the test
	wg.Add(1)
	go appendOne(0)
	// Wait for the first frame to be written (its fsync now blocks) ...
	waitFor(t, "first frame written", func() bool { return w.nFrames.Load() > 0 })
	wg.Add(n - 1)
	for i := 1; i < n; i++ {
		go appendOne(i)
	}
	// ... and for the others to queue behind it.
	waitFor(t, fmt.Sprintf("%d appenders queued behind the fsync", n-1), func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.queue) == n-1 && w.nSyncs.Load() == 0
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if f, s := w.nFrames.Load(), w.nSyncs.Load(); f != 2 || s != 2 {
		t.Fatalf("%d appenders took %d frames and %d fsyncs, want 2 and 2", n, f, s)
	}
	mustClose(t, w)
	if got := replayAll(t, Config{Dir: cfg.Dir}); len(got) != n {
		t.Fatalf("replayed %d records, want %d", len(got), n)
	}
}

func TestScanAndVerify(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), SegmentSize: 300, MinCompressSize: 1}
	w, _ := openAll(t, cfg)
	var want []Record
	for _, b := range testBatches(10) {
		want = append(want, b...)
		mustAppend(t, w, b, false)
	}
	mustClose(t, w)
	files := segmentFiles(t, cfg.Dir)

	rep, err := Verify(vfs.Default, cfg.Dir)
	if err != nil {
		t.Fatalf("Verify on a good WAL: %v", err)
	}
	size, _ := diskUsage(t, cfg.Dir)
	if rep.Segments != len(files) || rep.Bytes != size || rep.TornSegment != "" || rep.Records < len(want) {
		t.Fatalf("Verify report %+v; want %d segments, %d bytes, >= %d records, no torn tail", rep, len(files), size, len(want))
	}
	var frames int
	for _, o := range frameOffsets(t, cfg.Dir) {
		frames += len(o)
	}
	if rep.Frames != frames {
		t.Fatalf("Verify counted %d frames, Scan saw %d", rep.Frames, frames)
	}
	// Scan yields what Open replays, with the segment and frame of each record.
	var scanned []Record
	lastSeg, lastOff := "", int64(-1)
	if err := Scan(vfs.Default, cfg.Dir, func(seg string, off int64, r Record) error {
		if seg < lastSeg || (seg == lastSeg && off < lastOff) || off < segmentHeaderSize {
			t.Fatalf("Scan went from %s@%d to %s@%d", lastSeg, lastOff, seg, off)
		}
		lastSeg, lastOff = seg, off
		scanned = append(scanned, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, scanned, replayAll(t, cfg))
	checkRecords(t, appendedRecords(t, cfg.Dir), want)
	stop := errors.New("stop")
	if err := Scan(vfs.Default, cfg.Dir, func(string, int64, Record) error { return stop }); err != stop {
		t.Fatalf("Scan returned %v, want the callback's error", err)
	}

	// A torn tail: reported, not an error, and nothing is modified.
	last := files[len(files)-1]
	st, _ := os.Stat(last)
	lastOffs := frameOffsets(t, cfg.Dir)[filepath.Base(last)]
	tornOff := lastOffs[len(lastOffs)-1]
	if err := os.Truncate(last, st.Size()-3); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(vfs.Default, cfg.Dir)
	if err != nil || rep.TornSegment != last || rep.TornOffset != tornOff || rep.TornBytes != st.Size()-3-tornOff {
		t.Fatalf("Verify on a torn tail = %+v, %v; want torn %s at %d", rep, err, last, tornOff)
	}
	if st2, _ := os.Stat(last); st2.Size() != st.Size()-3 {
		t.Fatal("Verify modified the segment")
	}

	// Damage in a middle segment: the first damage is reported, with offset.
	mid := files[len(files)/2]
	offs := frameOffsets(t, cfg.Dir)[filepath.Base(mid)]
	flipBit(t, mid, offs[len(offs)-1]+frameHeaderSize+1, 4)
	rep, err = Verify(vfs.Default, cfg.Dir)
	wantCorrupt(t, err, mid, offs[len(offs)-1])
	if rep.Segments != len(files)/2+1 {
		t.Fatalf("Verify report %+v after damage in segment %d", rep, len(files)/2)
	}
	err = Scan(vfs.Default, cfg.Dir, func(string, int64, Record) error { return nil })
	wantCorrupt(t, err, mid, offs[len(offs)-1])
}

// waitFor polls cond until it holds, failing after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		runtime.Gosched()
	}
}

func TestSyncFalseThenBarrier(t *testing.T) {
	cfg := Config{Dir: t.TempDir()}
	w, _ := openAll(t, cfg)
	defer w.Close()
	before := w.nSyncs.Load()
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1}}, false)
	if w.nSyncs.Load() != before {
		t.Fatal("Append with sync=false fsynced")
	}
	mustAppend(t, w, nil, true)
	if w.nSyncs.Load() != before+1 {
		t.Fatal("Append(nil, true) did not fsync the unsynced frame")
	}
	mustAppend(t, w, nil, true)
	if w.nSyncs.Load() != before+1 {
		t.Fatal("Append(nil, true) fsynced with nothing to sync")
	}
}

// TestSegmentCutOrder checks the durability protocol of a cut from the
// sequence of file-system calls: the old segment is trimmed and fsynced before
// its successor is created; the successor is written and fsynced under its
// temporary name, renamed, and the directory fsynced before anything is
// appended to it.
func TestSegmentCutOrder(t *testing.T) {
	forModes(t, testSegmentCutOrder)
}

func testSegmentCutOrder(t *testing.T, direct bool) {
	var mu sync.Mutex
	var ops []string
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		mu.Lock()
		ops = append(ops, op.String()+" "+filepath.Base(path))
		mu.Unlock()
		return vfs.Fault{}
	})
	cfg := Config{Dir: t.TempDir(), FS: efs, SegmentSize: 100, Compression: CompressionNone, Direct: direct}
	w, _ := openAll(t, cfg)
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordHardState, Data: []byte("hs")}}, false)
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 1, Data: make([]byte, 100)}}, false)
	mu.Lock()
	ops = nil
	mu.Unlock()
	mustAppend(t, w, []Record{{Shard: 1, Type: RecordEntry, Index: 2, Data: []byte("in the new segment")}}, false)
	mustClose(t, w)
	mu.Lock()
	defer mu.Unlock()
	old, next := segmentName(1), segmentName(2)
	var want []string
	if direct {
		// The frames in memory are written (a WriteAtSync: a write and a
		// sync to ErrorFS) before anything else.
		want = append(want, "writesync "+old, "sync "+old)
	}
	want = append(want,
		"truncate "+old, "sync "+old,
		"create "+next+".tmp", "preallocate "+next+".tmp", "write "+next+".tmp",
		"sync "+next+".tmp", "close "+next+".tmp", "rename "+next,
		"syncdir "+filepath.Base(cfg.Dir), "open "+next,
		// The old segment stays open until its successor is in place, so that
		// a full disk while creating that leaves a usable active segment.
		"close "+old)
	if direct {
		want = append(want, "writesync "+next, "sync "+next) // at Close
	} else {
		want = append(want, "write "+next)
	}
	if len(ops) < len(want) || !slices.Equal(ops[:len(want)], want) {
		t.Fatalf("cut performed\n  %s\nwant\n  %s", strings.Join(ops, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestCompactWhileAppending runs Compact concurrently with appenders (and the
// segment cuts they cause); afterwards every entry not covered and the latest
// hard state of each shard must replay.
func TestCompactWhileAppending(t *testing.T) {
	cfg := Config{Dir: t.TempDir(), FS: fastFS, SegmentSize: 1024, Compression: CompressionNone}
	w, _ := openAll(t, cfg)
	const shards, perShard = 2, 400
	var acked [shards + 1]atomic.Uint64 // highest acknowledged index per shard
	var wg sync.WaitGroup
	for s := uint64(1); s <= shards; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= perShard; i++ {
				recs := []Record{
					{Shard: s, Type: RecordEntry, Index: i, Data: fmt.Appendf(nil, "shard %d entry %d", s, i)},
					{Shard: s, Type: RecordHardState, Data: fmt.Appendf(nil, "commit=%d", i)},
				}
				if err := w.Append(recs, false); err != nil {
					t.Error(err)
					return
				}
				acked[s].Store(i)
			}
		}()
	}
	covered := make([]uint64, shards+1)
	compactions := 0
	for done := false; !done; {
		done = true
		for s := uint64(1); s <= shards; s++ {
			a := acked[s].Load()
			done = done && a == perShard
			if a > 50 && a-50 > covered[s] {
				covered[s] = a - 50
				if _, err := w.Compact(s, covered[s]); err != nil {
					t.Fatal(err)
				}
				compactions++
			}
		}
		runtime.Gosched()
	}
	wg.Wait()
	mustClose(t, w)
	got := replayAll(t, cfg)
	seen := map[uint64]map[uint64]bool{}
	hs := map[uint64]string{}
	for _, r := range got {
		switch r.Type {
		case RecordEntry:
			if seen[r.Shard] == nil {
				seen[r.Shard] = map[uint64]bool{}
			}
			seen[r.Shard][r.Index] = true
		case RecordHardState:
			hs[r.Shard] = string(r.Data)
		}
	}
	for s := uint64(1); s <= shards; s++ {
		for i := covered[s] + 1; i <= perShard; i++ {
			if !seen[s][i] {
				t.Fatalf("shard %d: uncovered entry %d lost (covered up to %d)", s, i, covered[s])
			}
		}
		if hs[s] != fmt.Sprintf("commit=%d", perShard) {
			t.Fatalf("shard %d: latest hard state %q", s, hs[s])
		}
	}
	t.Logf("%d compactions; %d records replayed of %d appended; %d segments left",
		compactions, len(got), 2*shards*perShard, len(segmentFiles(t, cfg.Dir)))
}
