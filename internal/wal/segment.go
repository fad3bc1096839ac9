package wal

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"maps"
	"path/filepath"
	"slices"
	"syscall"
)

// cut makes the active segment durable and trimmed to its data, then starts
// the next one. If the next one cannot be created for lack of space, the
// active segment stays active (and the next append tries again).
func (w *WAL) cut() error {
	old := w.f
	// The old segment must be complete on disk before a successor exists:
	// recovery treats damage in a non-final segment as corruption.
	if w.direct {
		if err := w.syncData(); err != nil {
			return err
		}
	}
	if err := old.Truncate(w.off); err != nil { // gives back the zero reserve
		return fmt.Errorf("truncate %s: %w", old.Name(), err)
	}
	w.reserved = w.off
	if err := old.SyncData(); err != nil {
		return fmt.Errorf("sync %s: %w", old.Name(), err)
	}
	w.unsynced = false
	w.mu.Lock()
	seq := w.segs[len(w.segs)-1].seq + 1
	w.mu.Unlock()
	if err := w.startSegment(seq); err != nil {
		return err
	}
	if err := old.Close(); err != nil {
		return fmt.Errorf("close %s: %w", old.Name(), err)
	}
	return nil
}

// carryOver returns the latest hard state and snapshot record of every shard,
// ordered by shard, hard state first.
func (w *WAL) carryOver() []Record {
	shards := slices.Collect(maps.Keys(w.hardState))
	for s := range w.snapshot {
		if !hasRecord(w.hardState, s) {
			shards = append(shards, s)
		}
	}
	slices.Sort(shards)
	var recs []Record
	for _, s := range shards {
		if r, ok := w.hardState[s]; ok {
			recs = append(recs, r)
		}
		if r, ok := w.snapshot[s]; ok {
			recs = append(recs, r)
		}
	}
	return recs
}

func hasRecord(m map[uint64]Record, k uint64) bool { _, ok := m[k]; return ok }

// startSegment creates segment seq atomically: header and carry-over frame are
// written to a temporary file, fsynced, renamed into place, and the directory
// is fsynced. It then becomes the active segment; the caller closes the
// previous one. A full disk before the rename leaves no trace (the temporary
// file is removed) and returns an error wrapping ErrNoSpace.
func (w *WAL) startSegment(seq uint64) error {
	path := filepath.Join(w.cfg.Dir, segmentName(seq))
	tmp := path + ".tmp"
	buf := appendSegmentHeader(w.frame[:0], seq)
	if carry := w.carryOver(); len(carry) > 0 {
		raw := w.raw[:0]
		for i := range carry {
			raw = appendRecord(raw, &carry[i])
		}
		w.raw = raw
		var err error
		if buf, err = w.codec.appendFrame(buf, raw, w.cfg.Compression, w.cfg.MinCompressSize, seq); err != nil {
			return err
		}
	}
	w.frame = buf
	size := int64(len(buf))
	alloc := w.reserveEnd(size)

	f, err := w.fs.Create(tmp)
	if err != nil {
		// Create may have made an empty file before failing.
		w.fs.Remove(tmp)
		return noSpace(fmt.Errorf("create segment: %w", err))
	}
	fail := func(err error) error {
		f.Close()
		w.fs.Remove(tmp)
		return err
	}
	// The reserve is written and synced with the new segment, so that the
	// first appends to it do not pay for it.
	err = f.Preallocate(alloc)
	if errors.Is(err, syscall.ENOSPC) && alloc > size {
		alloc = size // as in write: use the last of the disk
		err = f.Preallocate(alloc)
	}
	if err != nil {
		return fail(noSpace(fmt.Errorf("preallocate %s: %w", tmp, err)))
	}
	if _, err := f.Write(buf); err != nil {
		return fail(noSpace(fmt.Errorf("write %s: %w", tmp, err)))
	}
	if err := f.SyncData(); err != nil {
		return fail(fmt.Errorf("sync %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		w.fs.Remove(tmp)
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := w.fs.Rename(tmp, path); err != nil {
		w.fs.Remove(tmp)
		return noSpace(fmt.Errorf("rename %s: %w", tmp, err))
	}
	if err := w.fs.SyncDir(w.cfg.Dir); err != nil {
		return fmt.Errorf("sync dir %s: %w", w.cfg.Dir, err)
	}
	if f, err = w.fs.OpenReadWrite(path); err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("seek %s: %w", path, err)
	}
	w.f, w.seq, w.off, w.segStart, w.reserved, w.unsynced = f, seq, size, size, alloc, false
	if len(w.segs) == 0 {
		w.direct = w.cfg.Direct && f.DirectWrites()
	}
	if err := w.loadTail(buf); err != nil {
		return err
	}
	w.mu.Lock()
	w.segs = append(w.segs, &segment{seq: seq, path: path, size: size, maxEntry: map[uint64]uint64{}})
	w.total += size
	w.mu.Unlock()
	return nil
}

// Compact records that shard's snapshot covers every entry with Index <=
// index, then deletes, oldest first, every segment all of whose RecordEntry
// records are covered for their shard. It stops at the first segment that is
// still needed (so no gap appears) and never deletes the active segment. Each
// deletion is made durable with a directory fsync before the next. It
// returns how many segments it deleted, also when it fails part way.
//
// Call it only once the snapshot is durable and its RecordSnapshot appended.
// Coverage is kept in memory only; after a restart, Compact again.
func (w *WAL) Compact(shard uint64, index uint64) (removed int, err error) {
	w.compactMu.Lock()
	defer w.compactMu.Unlock()
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	if w.failed != nil {
		err := w.failed
		w.mu.Unlock()
		return 0, err
	}
	if c, ok := w.covered[shard]; !ok || index > c {
		w.covered[shard] = index
	}
	var victims []*segment
	for _, seg := range w.segs[:len(w.segs)-1] {
		if !w.isCoveredLocked(seg) {
			break
		}
		victims = append(victims, seg)
	}
	w.mu.Unlock()

	for _, seg := range victims {
		if err := w.fs.Remove(seg.path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return removed, fmt.Errorf("wal: compact: remove %s: %w", seg.path, err)
		}
		// The first segment is gone; remember that before anything else can fail.
		w.mu.Lock()
		w.segs = w.segs[1:]
		w.total -= seg.size
		w.mu.Unlock()
		removed++
		if err := w.fs.SyncDir(w.cfg.Dir); err != nil {
			return removed, fmt.Errorf("wal: compact: sync dir %s: %w", w.cfg.Dir, err)
		}
	}
	return removed, nil
}

func (w *WAL) isCoveredLocked(seg *segment) bool {
	for shard, max := range seg.maxEntry {
		if c, ok := w.covered[shard]; !ok || max > c {
			return false
		}
	}
	return true
}
