package wal

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"syscall"

	"github.com/distkv/distkv/internal/vfs"
)

// Append makes recs durable as one frame. It returns nil only after the frame
// is written and, if sync, fsynced. Concurrent calls are coalesced into one
// frame and one fsync (group commit); calls become durable in the order they
// return. With sync=false the fsync may be skipped unless a coalesced call
// needs it; Append(nil, true) fsyncs everything written before.
//
// A full disk (ENOSPC from reserving, writing or cutting a segment) fails
// only this Append, and the ones coalesced with it, with an error wrapping
// ErrNoSpace: no byte of their frame is left in the log, and the same records
// may be appended again later. Any other write, sync or close error (and an
// ENOSPC whose partial frame cannot be removed) is sticky: this and every
// later Append return an error wrapping ErrFailed and the cause. The caller
// must stop.
// Records whose Append returned nil (with sync=true, or followed by a
// successful synced Append) are recovered by Open even after a power loss.
// recs may be reused once Append returns.
func (w *WAL) Append(recs []Record, sync bool) error {
	size := 0
	for i := range recs {
		if !recs[i].Type.valid() {
			return fmt.Errorf("wal: append: record %d has invalid type %d", i, recs[i].Type)
		}
		size += recordSize(&recs[i])
	}
	if size > maxPayloadSize {
		return fmt.Errorf("wal: append: %d bytes of records exceed the frame limit of %d", size, maxPayloadSize)
	}
	w.mu.Lock()
	switch {
	case w.closing:
		w.mu.Unlock()
		return ErrClosed
	case w.failed != nil:
		err := w.failed
		w.mu.Unlock()
		return err
	case len(recs) == 0 && !sync:
		w.mu.Unlock()
		return nil
	}
	req := &request{recs: recs, size: size, sync: sync, done: make(chan error, 1)}
	w.queue = append(w.queue, req)
	if w.flushing {
		// Another Append is writing. It, or one after it, writes req's frame
		// or hands req the turn to write it.
		w.mu.Unlock()
		if err := <-req.done; err != errYourTurn {
			return err
		}
		// The callers completed just before usually append again at once;
		// let them queue so that this frame carries them too. Otherwise
		// the callers split into two groups whose frames alternate.
		runtime.Gosched()
	} else {
		w.flushing = true
		w.mu.Unlock()
	}
	return w.flush(req)
}

// errYourTurn tells a queued Append that it now holds the writer's turn.
var errYourTurn = errors.New("wal: your turn to write")

// flush writes one frame for the queue, which begins with req: as many queued
// requests as fit. It completes the others and returns req's result, after
// handing the writer's turn to the oldest request still queued, if any.
func (w *WAL) flush(req *request) error {
	w.mu.Lock()
	size, n := 0, 0
	for n < len(w.queue) && (n == 0 || size+w.queue[n].size <= maxPayloadSize) {
		size += w.queue[n].size
		n++
	}
	batch := make([]*request, n)
	copy(batch, w.queue)
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
	err := w.failed
	w.mu.Unlock()

	if err == nil {
		if err = w.writeBatch(batch); err != nil && !errors.Is(err, ErrNoSpace) {
			err = fmt.Errorf("%w: %w", ErrFailed, err)
			w.mu.Lock()
			w.failed = err
			w.mu.Unlock()
		}
	}
	for _, r := range batch[1:] {
		r.done <- err
	}
	w.mu.Lock()
	if len(w.queue) > 0 {
		next := w.queue[0]
		w.mu.Unlock()
		next.done <- errYourTurn
	} else {
		w.flushing = false
		w.cond.Broadcast()
		w.mu.Unlock()
	}
	return err
}

// writeBatch writes the records of batch as one frame, cutting a new segment
// first if the active one is full, and fsyncs if any request asks for it.
func (w *WAL) writeBatch(batch []*request) error {
	needSync, nrec := false, 0
	for _, req := range batch {
		needSync = needSync || req.sync
		nrec += len(req.recs)
	}
	if nrec > 0 {
		if w.off >= w.cfg.SegmentSize && w.off > w.segStart {
			if err := w.cut(); err != nil {
				return err
			}
		}
		raw := w.raw[:0]
		for _, req := range batch {
			for i := range req.recs {
				raw = appendRecord(raw, &req.recs[i])
			}
		}
		w.raw = raw
		frame, err := w.codec.appendFrame(w.frame[:0], raw, w.cfg.Compression, w.cfg.MinCompressSize, w.seq)
		if err != nil {
			return err
		}
		w.frame = frame
		if err := w.write(frame); err != nil {
			return err
		}
		w.nFrames.Add(1)
		w.nRecords.Add(int64(nrec))
		w.nBytes.Add(int64(len(frame)))
	}
	if needSync && w.unsynced {
		// A data sync: below the reserve the frame overwrote zeros in
		// place, so the size and the allocation are already durable.
		if err := w.observedSyncData(); err != nil {
			return err
		}
		w.nSyncs.Add(1)
	}
	if nrec > 0 {
		w.mu.Lock()
		active := w.segs[len(w.segs)-1]
		for _, req := range batch {
			for _, r := range req.recs {
				w.track(active, r)
			}
		}
		w.mu.Unlock()
	}
	return nil
}

// write appends b to the active segment at off, first extending the zero
// reserve if b does not fit in it. On a full disk it leaves the segment's
// frames as they were and returns an error wrapping ErrNoSpace.
func (w *WAL) write(b []byte) error {
	if need := w.off + int64(len(b)); need > w.reserved {
		target := w.reserveEnd(need)
		err := w.f.Preallocate(target)
		if errors.Is(err, syscall.ENOSPC) && target > need {
			// The disk may still hold this frame, if not a whole step more:
			// use the last of it rather than refuse writes early.
			target = need
			err = w.f.Preallocate(target)
		}
		if err != nil {
			// No frame byte was written. Zeros written before the disk
			// filled stay: after the last frame they read as the clean end
			// of the log, and the next Preallocate starts after them.
			return noSpace(fmt.Errorf("preallocate %s: %w", w.f.Name(), err))
		}
		if w.direct {
			// Direct writes must not meet dirty pages (the kernel would
			// write them back first), and need the new size durable.
			if err := w.f.SyncData(); err != nil {
				return fmt.Errorf("sync %s: %w", w.f.Name(), err)
			}
		}
		w.reserved = target
	}
	if w.direct {
		w.growTail(w.off + int64(len(b)))
		copy(w.tail[w.off-w.tailBase:], b)
		w.grew(len(b))
		return nil
	}
	start := w.off
	n, err := w.f.Write(b)
	w.grew(n)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("write %s: %w", w.f.Name(), err)
	if !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	if rerr := w.rewind(start); rerr != nil {
		// The partial frame stays: the next frame would follow garbage, which
		// Open rightly calls corruption. Fail for good.
		return fmt.Errorf("%w; removing the partial frame: %w", err, rerr)
	}
	return noSpace(err)
}

// grew accounts for n bytes appended to the active segment at off.
func (w *WAL) grew(n int) {
	if n == 0 {
		return
	}
	w.off += int64(n)
	w.unsynced = true
	w.mu.Lock()
	w.segs[len(w.segs)-1].size = w.off
	w.total += int64(n)
	w.mu.Unlock()
}

// syncData makes everything written to the active segment durable: with
// Config.Direct, by writing the tail's blocks from tailBase; otherwise by a
// data sync.
func (w *WAL) syncData() error {
	if !w.direct {
		if err := w.f.SyncData(); err != nil {
			return fmt.Errorf("sync %s: %w", w.f.Name(), err)
		}
		w.unsynced = false
		return nil
	}
	if !w.unsynced {
		return nil
	}
	end := alignUp(w.off)
	if err := w.f.WriteAtSync(w.tail[:end-w.tailBase], w.tailBase); err != nil {
		return fmt.Errorf("write %s: %w", w.f.Name(), err)
	}
	// The write may have passed the reserve, with zeros.
	w.reserved = max(w.reserved, end)
	w.unsynced = false
	// Keep the last, partial block: the next sync rewrites it with more.
	if base := alignDown(w.off); base > w.tailBase {
		k := copy(w.tail, w.tail[base-w.tailBase:w.off-w.tailBase])
		clear(w.tail[k : end-w.tailBase])
		w.tailBase = base
	}
	return nil
}

func alignDown(off int64) int64 { return off &^ (vfs.DirectAlign - 1) }
func alignUp(off int64) int64   { return alignDown(off + vfs.DirectAlign - 1) }

// growTail makes the tail hold the active segment's bytes up to end.
func (w *WAL) growTail(end int64) {
	need := int(alignUp(end) - w.tailBase)
	if need <= len(w.tail) {
		return
	}
	t := vfs.AlignedBuffer(max(need, 2*len(w.tail), 64<<10))
	copy(t, w.tail[:w.off-w.tailBase])
	w.tail = t
}

// loadTail starts the tail at the block holding off, with the bytes before
// off in it, which head holds from offset 0 if it is long enough, else the
// file does.
func (w *WAL) loadTail(head []byte) error {
	if !w.direct {
		return nil
	}
	w.tailBase = alignDown(w.off)
	if len(w.tail) < vfs.DirectAlign {
		w.tail = vfs.AlignedBuffer(64 << 10)
	}
	clear(w.tail)
	part := w.tail[:w.off-w.tailBase]
	if int64(len(head)) >= w.off {
		copy(part, head[w.tailBase:w.off])
		return nil
	}
	if n, err := w.f.ReadAt(part, w.tailBase); n < len(part) {
		return fmt.Errorf("wal: read the last block of %s: %w", w.f.Name(), err)
	}
	return nil
}

// reserveEnd returns the length to reserve a segment to for data ending at
// need: the next multiple of PreallocSize, but not past SegmentSize, where
// the segment is cut; only the frame that crosses it writes beyond.
func (w *WAL) reserveEnd(need int64) int64 {
	step := w.cfg.PreallocSize
	return max(need, min((need+step-1)/step*step, w.cfg.SegmentSize))
}

// rewind cuts the active segment back to off, the start of a frame that was
// only partly written, and makes that durable: a crash must not leave the
// partial frame's bytes behind a shorter frame written later at off (Open
// would take them for corruption). Truncating rather than overwriting with
// zeros needs no space, which a full disk may not have.
func (w *WAL) rewind(off int64) error {
	if w.off > off {
		if err := w.f.Truncate(off); err != nil {
			return fmt.Errorf("truncate %s: %w", w.f.Name(), err)
		}
		// The reserve went with the partial frame.
		w.reserved = off
	}
	if err := w.f.SyncData(); err != nil {
		return fmt.Errorf("sync %s: %w", w.f.Name(), err)
	}
	w.unsynced = false
	if _, err := w.f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", w.f.Name(), err)
	}
	w.mu.Lock()
	w.total -= w.off - off
	w.segs[len(w.segs)-1].size = off
	w.mu.Unlock()
	w.off = off
	return nil
}
