package wal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/distkv/distkv/internal/vfs"
)

// forModes runs test with and without Config.Direct.
func forModes(t *testing.T, test func(t *testing.T, direct bool)) {
	t.Run("buffered", func(t *testing.T) { test(t, false) })
	t.Run("direct", func(t *testing.T) { test(t, true) })
}

// TestDirectFramesWaitForSync: with Direct, an Append without sync leaves the
// segment file as it was; the next sync writes it; a process that crashes in
// between (a copy of the directory) recovers exactly the synced records.
func TestDirectFramesWaitForSync(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Compression: CompressionNone, Direct: true}
	w, _ := openAll(t, cfg)
	defer w.Close()
	seg := filepath.Join(dir, segmentName(1))
	read := func() []byte {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var synced []Record
	for i := range 20 {
		before := read()
		r := numbered(i)
		mustAppend(t, w, []Record{r}, false)
		if !bytes.Equal(read(), before) {
			t.Fatalf("append %d without sync changed the segment file", i)
		}
		image := filepath.Join(t.TempDir(), "image")
		copyDir(t, dir, image)
		if got := replayAll(t, Config{Dir: image}); len(got) != len(synced) {
			t.Fatalf("after append %d without sync, a crash image recovers %d records, want the %d synced", i, len(got), len(synced))
		}
		if i%3 == 2 {
			mustAppend(t, w, nil, true)
			synced = append(synced, numbered(i-2), numbered(i-1), r)
			if bytes.Equal(read(), before) {
				t.Fatalf("the sync after append %d left the segment file as it was", i)
			}
			image := filepath.Join(t.TempDir(), "image")
			copyDir(t, dir, image)
			checkRecords(t, replayAll(t, Config{Dir: image}), synced)
		}
	}
}

// TestDirectCrashImagesAppendOn: crash images taken after syncs at random
// points, each reopened (in direct mode: its tail is loaded from the file's
// last, partial block) and appended to, recover what was synced before and
// after the reopening.
func TestDirectCrashImagesAppendOn(t *testing.T) {
	rng := testRand(t)
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentSize: 20 << 10, PreallocSize: 6 << 10, Compression: CompressionNone, Direct: true}
	w, _ := openAll(t, cfg)
	var synced, all []Record
	next := map[uint64]uint64{}
	images := 0
	for i := range 400 {
		batch := make([]Record, 1+rng.IntN(4))
		for j := range batch {
			batch[j] = randomRecord(rng, 3, next)
		}
		sync := rng.IntN(4) == 0
		mustAppend(t, w, batch, sync)
		all = append(all, batch...)
		if !sync {
			continue
		}
		synced = append(synced[:0], all...)
		if rng.IntN(5) != 0 {
			continue
		}
		images++
		image := filepath.Join(t.TempDir(), "image")
		copyDir(t, dir, image)
		icfg := cfg
		icfg.Dir = image
		iw, got := openAll(t, icfg)
		checkRecords(t, withoutCarryOver(got), withoutCarryOver(synced))
		more := []Record{{Shard: 9, Type: RecordEntry, Index: uint64(i + 1), Data: bytes.Repeat([]byte{'m'}, 1+rng.IntN(5000))}}
		mustAppend(t, iw, more, true)
		mustClose(t, iw)
		checkRecords(t, withoutCarryOver(replayAll(t, Config{Dir: image})), withoutCarryOver(append(append([]Record(nil), synced...), more...)))
	}
	mustClose(t, w)
	if images < 5 || len(segmentFiles(t, dir)) < 3 {
		t.Fatalf("%d images, %d segments: the test wants more of both", images, len(segmentFiles(t, dir)))
	}
	checkRecords(t, withoutCarryOver(replayAll(t, Config{Dir: dir})), withoutCarryOver(all))
}

// TestDirectWriteIsOneWriteAtSync: with Direct, a synced Append is one
// WriteAtSync of whole aligned blocks from the block where the unsynced bytes
// begin, and no SyncData.
func TestDirectWriteIsOneWriteAtSync(t *testing.T) {
	rec := &writeAtSyncRecorder{FS: vfs.Default}
	cfg := Config{Dir: t.TempDir(), FS: rec, Compression: CompressionNone, Direct: true}
	w, _ := openAll(t, cfg)
	defer w.Close()
	rec.calls = nil
	var off int64 = w.off
	for i := range 30 {
		r := Record{Shard: 1, Type: RecordEntry, Index: uint64(i + 1), Data: bytes.Repeat([]byte{'d'}, 100+i*37)}
		mustAppend(t, w, []Record{r}, true)
		if len(rec.calls) != 1 || rec.syncs != 0 {
			t.Fatalf("append %d: %d WriteAtSync calls and %d SyncData, want one and none", i, len(rec.calls), rec.syncs)
		}
		c := rec.calls[0]
		if c.off != off&^(vfs.DirectAlign-1) || c.n%vfs.DirectAlign != 0 || c.off+int64(c.n) < w.off {
			t.Fatalf("append %d: WriteAtSync of %d bytes at %d; the unsynced bytes were [%d, %d)", i, c.n, c.off, off, w.off)
		}
		off = w.off
		rec.calls = nil
	}
}

type writeAtSyncCall struct {
	off int64
	n   int
}

// writeAtSyncRecorder records the WriteAtSync calls and counts the SyncData
// calls of the files it opens.
type writeAtSyncRecorder struct {
	vfs.FS
	calls []writeAtSyncCall
	syncs int
}

type recordingFile struct {
	vfs.File
	r *writeAtSyncRecorder
}

func (r *writeAtSyncRecorder) OpenReadWrite(name string) (vfs.File, error) {
	f, err := r.FS.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return recordingFile{File: f, r: r}, nil
}

func (f recordingFile) WriteAtSync(p []byte, off int64) error {
	f.r.calls = append(f.r.calls, writeAtSyncCall{off: off, n: len(p)})
	return f.File.WriteAtSync(p, off)
}

func (f recordingFile) SyncData() error {
	f.r.syncs++
	return f.File.SyncData()
}
