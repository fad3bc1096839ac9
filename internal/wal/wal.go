package wal

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/vfs"
)

// cryptDomain keeps the WAL's subkeys apart from other users of a Cipher.
const cryptDomain = "wal"

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
	// Cipher, if set, seals every frame written (AES-256-GCM under its
	// current data key, after compression) and opens every frame read; a
	// frame in the clear is then refused (crypt.ErrNotEncrypted), as a sealed
	// frame is without a Cipher (crypt.ErrKeyRequired). nil: frames in the
	// clear, the format of a WAL without encryption.
	Cipher *crypt.Cipher
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
	seq      uint64   // the active segment's sequence number
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
	if cfg.Cipher != nil {
		var err error
		if w.codec.sealer, err = cfg.Cipher.NewSealer(cryptDomain); err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		w.codec.opener = cfg.Cipher.NewOpener(cryptDomain)
	}
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
	if err := w.fs.MkdirAll(w.cfg.Dir, 0o700); err != nil {
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
		w.off, w.seq = res.end, seg.seq
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
