package wal

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distkv/distkv/internal/vfs"
)

// RecordType says what a Record's Data holds. The WAL treats Data as opaque.
type RecordType uint8

// Record types.
const (
	// RecordEntry: Data is a marshaled raftpb.Entry, Index the entry's index.
	RecordEntry RecordType = 1
	// RecordHardState: Data is a marshaled raftpb.HardState.
	RecordHardState RecordType = 2
	// RecordSnapshot: Data is an opaque snapshot marker, Index the snapshot's index.
	RecordSnapshot RecordType = 3
)

func (t RecordType) valid() bool { return t >= RecordEntry && t <= RecordSnapshot }

func (t RecordType) String() string {
	switch t {
	case RecordEntry:
		return "entry"
	case RecordHardState:
		return "hardstate"
	case RecordSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("RecordType(%d)", uint8(t))
}

// Record is one log record of one shard (Raft group).
type Record struct {
	Shard uint64
	Type  RecordType
	Index uint64
	Data  []byte
}

// Compression selects the codec for frame payloads. A payload is stored
// compressed only when that makes it smaller.
type Compression uint8

// Codecs. The zero value is CompressionZstd.
const (
	CompressionZstd Compression = iota
	CompressionS2
	CompressionNone
)

func (c Compression) String() string {
	switch c {
	case CompressionZstd:
		return "zstd"
	case CompressionS2:
		return "s2"
	case CompressionNone:
		return "none"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// Defaults filled in by Config.Validate.
const (
	DefaultSegmentSize     = 64 << 20
	DefaultPreallocSize    = 4 << 20
	DefaultMinCompressSize = 512
)

// Config configures a WAL.
type Config struct {
	// Dir holds the segment files. Required; created if missing.
	Dir string
	// FS performs every file-system call. Default vfs.Default.
	FS vfs.FS
	// SegmentSize: once the active segment holds this many bytes, the next
	// append starts a new segment. Default 64 MiB.
	SegmentSize int64
	// PreallocSize: disk is reserved ahead of the write offset, by writing
	// zeros, in steps of this many bytes. Default 4 MiB.
	PreallocSize int64
	// Compression is the payload codec. Default CompressionZstd.
	Compression Compression
	// MinCompressSize: payloads smaller than this are stored raw. Default 512.
	MinCompressSize int
	// Logger receives warnings (a truncated torn tail). Default: discard.
	Logger *slog.Logger
	// Direct keeps the active segment's frames in memory, in a buffer
	// aligned for direct I/O, until an Append asks for a sync; the sync then
	// writes them, from the start of the block where the unsynced bytes
	// begin, with one vfs.File.WriteAtSync: on Linux one O_DIRECT write with
	// RWF_DSYNC, which is faster than a write to the page cache and an
	// fdatasync after it, above all with several writers on one disk. An
	// Append without sync then leaves nothing in the file until a later sync:
	// a crashed process loses it, as a power loss does without Direct. A
	// full disk is found when the zero reserve is extended, as without
	// Direct; a failed direct write is fatal, like a failed sync. On a file
	// system that refuses direct writes or does not overwrite in place (see
	// vfs.File.DirectWrites) the WAL writes as without Direct (WAL.Direct).
	Direct bool
	// SyncObserver, if set, is called with the duration of every sync of
	// appended frames (an fdatasync, or with Direct the direct write), on the
	// writer's goroutine: it must be quick. See Stats for the counters.
	SyncObserver func(time.Duration)
}

// Validate fills in defaults and rejects values that cannot work.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("wal: config: Dir is required")
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	switch {
	case c.SegmentSize < 0:
		return fmt.Errorf("wal: config: SegmentSize %d is negative", c.SegmentSize)
	case c.SegmentSize == 0:
		c.SegmentSize = DefaultSegmentSize
	}
	switch {
	case c.PreallocSize < 0:
		return fmt.Errorf("wal: config: PreallocSize %d is negative", c.PreallocSize)
	case c.PreallocSize == 0:
		c.PreallocSize = DefaultPreallocSize
	}
	switch {
	case c.MinCompressSize < 0:
		return fmt.Errorf("wal: config: MinCompressSize %d is negative", c.MinCompressSize)
	case c.MinCompressSize == 0:
		c.MinCompressSize = DefaultMinCompressSize
	}
	if c.Compression > CompressionNone {
		return fmt.Errorf("wal: config: unknown Compression %d (want CompressionZstd, CompressionS2 or CompressionNone)", c.Compression)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

var (
	// ErrCorrupt reports damage that a crash during an append cannot explain.
	// It is wrapped in a *CorruptError naming the file and byte offset.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrFailed reports that the WAL hit a write, sync or close error and
	// refuses all further appends. The cause is wrapped alongside.
	ErrFailed = errors.New("wal: failed")
	// ErrClosed is returned by calls on a closed WAL.
	ErrClosed = errors.New("wal: closed")
	// ErrNoSpace reports that an Append found the disk full (ENOSPC) before
	// its frame was complete. Unlike ErrFailed it is not sticky: nothing of
	// the frame is left in the log, the WAL stays usable, and the same
	// records may be appended again once space is freed. The cause (wrapping
	// syscall.ENOSPC) is wrapped alongside.
	ErrNoSpace = errors.New("wal: out of disk space")
)

// noSpace marks err, which happened before anything of a frame remained in
// the log, as recoverable if it is a full disk; any other error is returned
// as it is (and becomes sticky).
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// CorruptError locates damage. errors.Is(err, ErrCorrupt) holds for it.
type CorruptError struct {
	Path   string // segment file
	Offset int64  // byte offset of the damaged frame (0 for the segment header)
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt segment %s at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// segment is the bookkeeping for one segment file.
type segment struct {
	seq  uint64
	path string
	// size is the file's data length. Guarded by WAL.mu.
	size int64
	// maxEntry is, per shard, the highest Index of a RecordEntry in the
	// segment. Guarded by WAL.mu; only the active segment's changes.
	maxEntry map[uint64]uint64
}

// request is one Append waiting for its frame.
type request struct {
	recs []Record
	size int // encoded size of recs
	sync bool
	done chan error
}

// WAL is an open write-ahead log. Its methods are safe for concurrent use.
type WAL struct {
	cfg Config
	fs  vfs.FS
	log *slog.Logger

	compactMu sync.Mutex // serializes Compact

	mu   sync.Mutex
	cond sync.Cond // on mu: flushing became false
	// queue holds Appends not yet written, in arrival order.
	// Invariant: queue is empty unless flushing.
	queue []*request
	// flushing: an Append holds the writer's turn (see Append).
	flushing bool
	closing  bool
	// failed, once set, is returned by every later Append. It wraps ErrFailed.
	failed error
	// segs are the live segments in sequence order.
	// Invariant: consecutive sequence numbers, len(segs) >= 1 while open, the
	// last one is the active segment.
	segs []*segment
	// covered[shard]: every entry of shard with Index <= covered[shard] is in a snapshot.
	covered map[uint64]uint64
	total   int64 // sum of segs[i].size

	// Owned by the Append holding the writer's turn (by Open before the first
	// Append, by Close after the last).
	f        vfs.File // active segment, positioned at off
	off      int64    // data length of the active segment
	segStart int64    // off right after the active segment's header and carry-over frame
	// reserved: the active segment's file holds zeros from off up to at
	// least reserved (written by Preallocate), so frames below reserved
	// overwrite blocks in place and fdatasync need not write the inode.
	// Invariant: off <= reserved <= file length.
	reserved int64
	unsynced bool // bytes written since the last sync of f
	// direct: Config.Direct, on a file system where it works (see
	// Direct). Set at Open.
	direct bool
	// With direct, tail holds the active segment's bytes from
	// tailBase (a multiple of vfs.DirectAlign) up to off, followed by zeros;
	// the file holds at least those below tailBase durably.
	tail      []byte
	tailBase  int64
	codec     frameCodec
	raw       []byte            // scratch: encoded records
	frame     []byte            // scratch: frame
	hardState map[uint64]Record // latest RecordHardState per shard (Data owned)
	snapshot  map[uint64]Record // latest RecordSnapshot per shard (Data owned)

	// Counters for Stats, tests and benchmarks.
	nFrames  atomic.Int64
	nSyncs   atomic.Int64
	nRecords atomic.Int64
	nBytes   atomic.Int64 // frame bytes written by Appends (Stats)
}

func segmentName(seq uint64) string { return fmt.Sprintf("%016x.wal", seq) }

// parseSegmentName returns the sequence number of a name like 000000000000002a.wal.
func parseSegmentName(name string) (uint64, bool) {
	if len(name) != 16+len(".wal") || name[16:] != ".wal" {
		return 0, false
	}
	var seq uint64
	for _, c := range []byte(name[:16]) {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		seq = seq<<4 | uint64(d)
	}
	return seq, true
}

// listSegments returns the segment files of dir in sequence order and the
// leftover temporary files of interrupted segment creations.
func listSegments(fs vfs.FS, dir string) (segs []*segment, tmps []string, err error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	for _, name := range names {
		if seq, ok := parseSegmentName(name); ok {
			segs = append(segs, &segment{seq: seq, path: filepath.Join(dir, name), maxEntry: map[uint64]uint64{}})
		} else if base, ok := strings.CutSuffix(name, ".tmp"); ok {
			if _, ok := parseSegmentName(base); ok {
				tmps = append(tmps, filepath.Join(dir, name))
			}
		}
	}
	slices.SortFunc(segs, func(a, b *segment) int { return cmp.Compare(a.seq, b.seq) })
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, nil, &CorruptError{Path: segs[i].path, Reason: fmt.Sprintf(
				"missing segment(s) between %s and %s", filepath.Base(segs[i-1].path), filepath.Base(segs[i].path))}
		}
	}
	return segs, tmps, nil
}

// Open opens (creating if needed) the WAL in cfg.Dir, calls replay for every
// record in the order they were appended, truncates a torn final frame of the
// last segment (logging a warning), and returns a WAL ready to append. Record
// Data passed to replay stays valid after replay returns. If replay returns an
// error, Open fails with it. Damage a crash cannot explain fails Open with an
// error wrapping ErrCorrupt.
func Open(cfg Config, replay func(Record) error) (*WAL, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &WAL{
		cfg:       cfg,
		fs:        cfg.FS,
		log:       cfg.Logger,
		covered:   map[uint64]uint64{},
		hardState: map[uint64]Record{},
		snapshot:  map[uint64]Record{},
	}
	w.cond.L = &w.mu
	if err := w.recover(replay); err != nil {
		if w.f != nil {
			w.f.Close()
		}
		w.codec.close()
		return nil, err
	}
	// Appends never decompress; give back the decoder's memory.
	if w.codec.dec != nil {
		w.codec.dec.Close()
		w.codec.dec = nil
	}
	return w, nil
}

// recover scans the segments and leaves w.f open on the active one.
func (w *WAL) recover(replay func(Record) error) error {
	if err := w.fs.MkdirAll(w.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("wal: create %s: %w", w.cfg.Dir, err)
	}
	segs, tmps, err := listSegments(w.fs, w.cfg.Dir)
	if err != nil {
		return err
	}
	// A .tmp file is a segment whose creation did not finish: it was never
	// renamed, so it holds nothing that was acknowledged.
	for _, tmp := range tmps {
		if err := w.fs.Remove(tmp); err != nil {
			return fmt.Errorf("wal: remove leftover %s: %w", tmp, err)
		}
		w.log.Info("wal: removed leftover temporary segment", "file", tmp)
	}
	for i, seg := range segs {
		final := i == len(segs)-1
		var f vfs.File
		if final {
			f, err = w.fs.OpenReadWrite(seg.path)
		} else {
			f, err = w.fs.Open(seg.path)
		}
		if err != nil {
			return fmt.Errorf("wal: open segment: %w", err)
		}
		res, err := scanSegment(f, seg.path, seg.seq, final, &w.codec, func(_ int64, r Record) error {
			w.track(seg, r)
			if replay != nil {
				return replay(r)
			}
			return nil
		})
		if err != nil {
			f.Close()
			return err
		}
		seg.size = res.end
		w.total += res.end
		w.segs = append(w.segs, seg)
		if !final {
			if err := f.Close(); err != nil {
				return fmt.Errorf("wal: close %s: %w", seg.path, err)
			}
			continue
		}
		w.f = f
		// Zeros after the last frame are the reserve of the crashed
		// process: kept, and the next frame overwrites them.
		w.reserved = res.size
		if res.torn {
			w.log.Warn("wal: truncating torn final frame",
				"file", seg.path, "offset", res.end, "dropped_bytes", res.size-res.end)
			if err := f.Truncate(res.end); err != nil {
				return fmt.Errorf("wal: truncate torn tail of %s: %w", seg.path, err)
			}
			if err := f.SyncData(); err != nil {
				return fmt.Errorf("wal: sync %s: %w", seg.path, err)
			}
			w.reserved = res.end
		}
		if _, err := f.Seek(res.end, io.SeekStart); err != nil {
			return fmt.Errorf("wal: seek %s: %w", seg.path, err)
		}
		w.off = res.end
		w.segStart = segmentHeaderSize
		w.direct = w.cfg.Direct && f.DirectWrites()
		if err := w.loadTail(nil); err != nil {
			return err
		}
	}
	if len(segs) == 0 {
		return w.startSegment(1)
	}
	return nil
}

// track updates the bookkeeping for record r, which is in seg. r.Data is
// copied if kept.
func (w *WAL) track(seg *segment, r Record) {
	keep := func(m map[uint64]Record) {
		old := m[r.Shard]
		r.Data = append(old.Data[:0], r.Data...)
		m[r.Shard] = r
	}
	switch r.Type {
	case RecordEntry:
		if cur, ok := seg.maxEntry[r.Shard]; !ok || r.Index > cur {
			seg.maxEntry[r.Shard] = r.Index
		}
	case RecordHardState:
		keep(w.hardState)
	case RecordSnapshot:
		keep(w.snapshot)
	}
}

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
		frame, err := w.codec.appendFrame(w.frame[:0], raw, w.cfg.Compression, w.cfg.MinCompressSize)
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
		if buf, err = w.codec.appendFrame(buf, raw, w.cfg.Compression, w.cfg.MinCompressSize); err != nil {
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
	w.f, w.off, w.segStart, w.reserved, w.unsynced = f, size, size, alloc, false
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

// Direct reports whether the WAL writes directly: Config.Direct, on a file
// system that takes direct writes and overwrites allocated blocks in place
// (see vfs.File.DirectWrites; elsewhere a direct write might find the disk
// full at a sync, which would be fatal, where a buffered one finds it at the
// write, which is not).
func (w *WAL) Direct() bool { return w.direct }

// Size returns the bytes of segment data on disk: the sum of the segments'
// data lengths, without the zero reserve of the active segment.
func (w *WAL) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// Close waits for queued Appends, then trims the zero reserve of the active
// segment, syncs and closes it. Later calls return ErrClosed. If the WAL had
// failed, Close returns that error.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closing = true
	// Appends queued before Close are written by the turn in progress.
	for w.flushing {
		w.cond.Wait()
	}
	err := w.failed
	w.mu.Unlock()
	if w.f != nil {
		if err == nil && w.direct {
			if serr := w.syncData(); serr != nil {
				err = fmt.Errorf("%w: %w", ErrFailed, serr)
			}
		}
		if err == nil {
			if terr := w.f.Truncate(w.off); terr != nil {
				err = fmt.Errorf("%w: truncate %s: %w", ErrFailed, w.f.Name(), terr)
			} else if serr := w.f.SyncData(); serr != nil {
				err = fmt.Errorf("%w: sync %s: %w", ErrFailed, w.f.Name(), serr)
			}
		}
		if cerr := w.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%w: close %s: %w", ErrFailed, w.f.Name(), cerr)
		}
		w.f = nil
	}
	w.codec.close()
	return err
}
