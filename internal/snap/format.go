package snap

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"math"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/distkv/distkv/internal/kv"
)

// ErrCorrupt is wrapped by every error that reports a damaged snapshot: bad magic,
// truncation, a checksum mismatch, an absurd length, pairs out of order.
var ErrCorrupt = errors.New("snapshot corrupt")

// Meta describes a snapshot: the shard, the log position it covers, and opaque
// bytes the Raft layer stores with it (its ConfState, marshaled).
type Meta struct {
	Shard uint64
	Index uint64
	Term  uint64
	// Extra is at most MaxExtra bytes.
	Extra []byte
}

// Bounds on what a snapshot may hold. Decode rejects a stream that claims more as
// corrupt before allocating for it, and Encode refuses to write one.
const (
	MaxKey   = 64 << 10
	MaxValue = 64 << 20
	MaxExtra = 1 << 20
)

// The stream format (all fixed-width integers little-endian):
//
//	header   magic "DKVSNAP\x00" | version u8 (1) | codec u8 (1 = zstd) | reserved u16 (0)
//	         | shard u64 | index u64 | term u64 | extra_len u32 | extra
//	         | header_crc u32 (CRC32C of the header bytes before it)
//	body     chunks: len u32 (1..maxChunk) | len bytes; a chunk of length 0 ends the body.
//	         The chunks' bytes, concatenated, are one zstd stream whose content is
//	         the pairs, in ascending key order (several pairs may share a
//	         key: the versions of a key that package kv keeps), each:
//	         key_len uvarint | value_len uvarint | version uvarint | revision uvarint
//	         | create_revision uvarint | key | value
//	trailer  count u64 (number of pairs) | crc u32 (CRC32C of every byte before it)
//
// The chunking tells the decoder where the compressed stream ends without knowing
// its length in advance (Encode streams), and keeps the zstd decoder from reading
// into the trailer. The header has its own CRC so that DecodeMeta can trust it
// without reading the whole stream.
const (
	magic         = "DKVSNAP\x00"
	formatVersion = 1
	codecZstd     = 1
	headerFixed   = len(magic) + 1 + 1 + 2 + 8 + 8 + 8 + 4
	maxChunk      = 1 << 20
	// zstd window: the encoder's, and the most the decoder accepts (it allocates
	// about this much), leaving room for a future encoder to use a bigger one.
	encoderWindow    = 2 << 20
	maxDecoderWindow = 8 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode writes a snapshot of pairs to w: the header with meta, the pairs
// compressed with zstd, and a trailer with their count and a CRC32C of the whole
// stream. Memory stays bounded whatever the number of pairs: the pairs are
// compressed and written as they come.
//
// pairs must yield keys in ascending order (equal keys may follow each
// other), each within MaxKey and its
// value within MaxValue, with 1 <= Version, 1 <= CreateRevision <= Revision <=
// meta.Index; otherwise Encode stops with an error (and w holds a partial stream).
// A nil pairs is an empty snapshot.
// Encode does not close or sync w.
func Encode(w io.Writer, meta Meta, pairs iter.Seq[kv.KeyValue]) error {
	return EncodeChecked(w, meta, func(yield func(kv.KeyValue, error) bool) {
		if pairs == nil {
			return
		}
		for p := range pairs {
			if !yield(p, nil) {
				return
			}
		}
	})
}

// EncodeChecked is Encode for pairs read from a source that may fail: an
// error it yields stops the stream before its trailer, so that what was
// written is never taken for a whole snapshot, and is returned.
func EncodeChecked(w io.Writer, meta Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
	if len(meta.Extra) > MaxExtra {
		return fmt.Errorf("encode snapshot: extra of %d bytes exceeds %d", len(meta.Extra), MaxExtra)
	}
	if meta.Index > math.MaxInt64 {
		return fmt.Errorf("encode snapshot: index %d beyond int64", meta.Index)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := &crcWriter{w: bw}

	hdr := appendHeader(make([]byte, 0, headerFixed+len(meta.Extra)+4), meta)
	if _, err := cw.Write(hdr); err != nil {
		return err
	}

	chunks := &chunkWriter{w: cw}
	zw, err := getEncoder(chunks)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	count, err := writePairs(zw, meta.Index, pairs)
	if err != nil {
		zw.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	putEncoder(zw)
	if err := chunks.close(); err != nil {
		return err
	}

	var trailer [12]byte
	binary.LittleEndian.PutUint64(trailer[:8], count)
	if _, err := cw.Write(trailer[:8]); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(trailer[8:], cw.crc)
	if _, err := bw.Write(trailer[8:]); err != nil {
		return err
	}
	return bw.Flush()
}

// idleEncoder keeps one zstd encoder between snapshots: a new one allocates
// several MiB of tables, which a node taking a snapshot every few seconds
// under load would otherwise allocate and collect each time. (A sync.Pool
// would not do: it is emptied by the collections in between.)
var idleEncoder struct {
	sync.Mutex
	zw *zstd.Encoder
}

// getEncoder returns an encoder writing a new stream to w.
func getEncoder(w io.Writer) (*zstd.Encoder, error) {
	idleEncoder.Lock()
	zw := idleEncoder.zw
	idleEncoder.zw = nil
	idleEncoder.Unlock()
	if zw != nil {
		zw.Reset(w)
		return zw, nil
	}
	return zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(encoderWindow),
		zstd.WithEncoderConcurrency(1))
}

// putEncoder keeps zw, whose stream was closed without error, for the next
// snapshot.
func putEncoder(zw *zstd.Encoder) {
	zw.Reset(nil)
	idleEncoder.Lock()
	idleEncoder.zw = zw
	idleEncoder.Unlock()
}

func appendHeader(b []byte, meta Meta) []byte {
	b = append(b, magic...)
	b = append(b, formatVersion, codecZstd, 0, 0)
	b = binary.LittleEndian.AppendUint64(b, meta.Shard)
	b = binary.LittleEndian.AppendUint64(b, meta.Index)
	b = binary.LittleEndian.AppendUint64(b, meta.Term)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta.Extra)))
	b = append(b, meta.Extra...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func writePairs(zw *zstd.Encoder, index uint64, pairs iter.Seq2[kv.KeyValue, error]) (uint64, error) {
	var (
		count uint64
		prev  []byte
		hdr   []byte
	)
	for p, err := range pairs {
		if err != nil {
			return count, fmt.Errorf("encode snapshot: pair %d: %w", count, err)
		}
		if why := checkPair(p, count, prev, index); why != "" {
			return count, fmt.Errorf("encode snapshot: %s", why)
		}
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(p.Key)))
		hdr = binary.AppendUvarint(hdr, uint64(len(p.Value)))
		hdr = binary.AppendUvarint(hdr, uint64(p.Version))
		hdr = binary.AppendUvarint(hdr, uint64(p.Revision))
		hdr = binary.AppendUvarint(hdr, uint64(p.CreateRevision))
		for _, b := range [][]byte{hdr, p.Key, p.Value} {
			if _, err := zw.Write(b); err != nil {
				return count, err
			}
		}
		prev = p.Key
		count++
	}
	return count, nil
}

// checkPair returns why p, the n-th pair, may not follow prev in a snapshot at
// index, or "" if it may.
func checkPair(p kv.KeyValue, n uint64, prev []byte, index uint64) string {
	switch {
	case len(p.Key) > MaxKey:
		return fmt.Sprintf("pair %d: key of %d bytes exceeds %d", n, len(p.Key), MaxKey)
	case len(p.Value) > MaxValue:
		return fmt.Sprintf("pair %d: value of %d bytes exceeds %d", n, len(p.Value), MaxValue)
	case n > 0 && bytes.Compare(prev, p.Key) > 0:
		return fmt.Sprintf("pair %d: key %q before %q", n, p.Key, prev)
	case p.Version < 1 || p.CreateRevision < 1 || p.Revision < p.CreateRevision:
		// A revision may be above the index: revisions are the cluster's
		// (stamped by the timestamp oracle), not the range's log indexes;
		// kv.Store's restore checks them against the store's revision.
		return fmt.Sprintf("pair %d (key %q): bad metadata version=%d revision=%d create_revision=%d at index %d",
			n, p.Key, p.Version, p.Revision, p.CreateRevision, index)
	}
	return ""
}

var (
	_ io.Writer = (*crcWriter)(nil)
	_ io.Writer = (*chunkWriter)(nil)
	_ io.Reader = (*crcReader)(nil)
	_ io.Reader = (*chunkReader)(nil)
)

// crcWriter passes writes on and keeps the CRC32C of everything written.
type crcWriter struct {
	w   io.Writer
	crc uint32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

// chunkWriter frames what is written to it as chunks of at most maxChunk bytes.
type chunkWriter struct {
	w io.Writer
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), maxChunk)
		var l [4]byte
		binary.LittleEndian.PutUint32(l[:], uint32(n))
		if _, err := c.w.Write(l[:]); err != nil {
			return written, err
		}
		if _, err := c.w.Write(p[:n]); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// close writes the empty chunk that ends the body.
func (c *chunkWriter) close() error {
	_, err := c.w.Write([]byte{0, 0, 0, 0})
	return err
}

// Decode reads a snapshot written by Encode from r, calls fn for each pair in
// order, and returns the snapshot's Meta.
//
// Any damage to the stream (bad magic or version, a truncation, a checksum
// mismatch, an impossible length or value, pairs out of order, data after the
// trailer) gives an error wrapping ErrCorrupt that says where. An error reading r
// is returned as such (wrapped, but not as ErrCorrupt); an error from fn stops
// Decode and is returned as is.
//
// The whole stream is verified only at its end, after fn has seen every pair:
// unless Decode returns nil, the caller must discard what fn received. Decode is
// safe on hostile input: it never allocates more than about twice the bytes
// actually present for a pair, and never more than MaxKey+MaxValue for one.
//
// The pairs fn receives are freshly allocated and may be retained (their Key and
// Value share one allocation, with capacities capped).
func Decode(r io.Reader, fn func(kv.KeyValue) error) (Meta, error) {
	d := newDecoder(r)
	defer d.close()
	meta, err := d.header()
	if err != nil {
		return Meta{}, err
	}
	for {
		p, ok, err := d.next()
		if err != nil {
			return Meta{}, err
		}
		if !ok {
			return meta, nil
		}
		if err := fn(p); err != nil {
			return Meta{}, err
		}
	}
}

// DecodeMeta reads only the header of a snapshot from r. The header has its own
// checksum, so a Meta returned without error is the one Encode wrote; the rest of
// the stream is not verified (though DecodeMeta may read ahead into it).
func DecodeMeta(r io.Reader) (Meta, error) {
	d := newDecoder(r)
	defer d.close()
	return d.header()
}

// decoder reads one snapshot stream. Its layers, from the bottom:
// src (buffered r) → crc (checksums and counts what is consumed) → chunks
// (unframes the body) → zr (zstd) → recs (buffered pairs).
type decoder struct {
	src    *bufio.Reader
	crc    crcReader
	chunks chunkReader
	zr     *zstd.Decoder
	recs   *bufio.Reader
	meta   Meta
	n      uint64 // pairs decoded so far
	prev   []byte // key of the last pair
	done   bool
	err    error // sticky
}

func newDecoder(r io.Reader) *decoder {
	d := &decoder{src: bufio.NewReaderSize(r, 64<<10)}
	d.crc.r = d.src
	d.chunks.r = &d.crc
	return d
}

func (d *decoder) close() {
	if d.zr != nil {
		d.zr.Close()
		d.zr = nil
	}
}

// corrupt returns an ErrCorrupt error at the current offset.
func (d *decoder) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrCorrupt, d.crc.off, fmt.Sprintf(format, args...))
}

// readErr classifies err, met while reading what: a failure of the underlying
// reader is returned as such; anything else (a truncation, a zstd error, bad
// chunking) is damage.
func (d *decoder) readErr(what string, err error) error {
	if d.crc.ioErr != nil {
		return fmt.Errorf("read snapshot at offset %d (%s): %w", d.crc.off, what, d.crc.ioErr)
	}
	if d.chunks.err != nil {
		err = d.chunks.err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return d.corrupt("truncated %s", what)
	}
	return d.corrupt("%s: %v", what, err)
}

func (d *decoder) header() (Meta, error) {
	var fixed [headerFixed]byte
	if _, err := io.ReadFull(&d.crc, fixed[:]); err != nil {
		return Meta{}, d.readErr("header", err)
	}
	if string(fixed[:len(magic)]) != magic {
		return Meta{}, d.corrupt("bad magic %q", fixed[:len(magic)])
	}
	b := fixed[len(magic):]
	if b[0] != formatVersion {
		return Meta{}, d.corrupt("unknown format version %d", b[0])
	}
	if b[1] != codecZstd {
		return Meta{}, d.corrupt("unknown codec %d", b[1])
	}
	if b[2] != 0 || b[3] != 0 {
		return Meta{}, d.corrupt("reserved header bytes set")
	}
	meta := Meta{
		Shard: binary.LittleEndian.Uint64(b[4:]),
		Index: binary.LittleEndian.Uint64(b[12:]),
		Term:  binary.LittleEndian.Uint64(b[20:]),
	}
	extraLen := binary.LittleEndian.Uint32(b[28:])
	if extraLen > MaxExtra {
		return Meta{}, d.corrupt("extra length %d exceeds %d", extraLen, MaxExtra)
	}
	if meta.Index > math.MaxInt64 {
		return Meta{}, d.corrupt("index %d beyond int64", meta.Index)
	}
	if extraLen > 0 {
		extra, err := readN(&d.crc, int(extraLen))
		if err != nil {
			return Meta{}, d.readErr("header extra", err)
		}
		meta.Extra = extra
	}
	sum := d.crc.crc
	var crc [4]byte
	if _, err := io.ReadFull(&d.crc, crc[:]); err != nil {
		return Meta{}, d.readErr("header checksum", err)
	}
	if got := binary.LittleEndian.Uint32(crc[:]); got != sum {
		return Meta{}, d.corrupt("header checksum %#08x, computed %#08x", got, sum)
	}
	d.meta = meta
	return meta, nil
}

// next returns the next pair, or ok == false once the stream has ended and been
// verified in full. It must follow a successful header.
func (d *decoder) next() (p kv.KeyValue, ok bool, err error) {
	if d.err != nil {
		return kv.KeyValue{}, false, d.err
	}
	if d.done {
		return kv.KeyValue{}, false, nil
	}
	p, ok, err = d.pair()
	if err == nil && !ok {
		err = d.trailer()
		d.done = err == nil
	}
	d.err = err
	return p, ok, err
}

func (d *decoder) pair() (kv.KeyValue, bool, error) {
	if d.zr == nil {
		zr, err := zstd.NewReader(&d.chunks,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxDecoderWindow),
			zstd.WithDecoderMaxMemory(maxDecoderWindow))
		if err != nil {
			return kv.KeyValue{}, false, fmt.Errorf("decode snapshot: %w", err)
		}
		d.zr = zr
		d.recs = bufio.NewReaderSize(zr, 64<<10)
	}
	keyLen, err := binary.ReadUvarint(d.recs)
	if err == io.EOF && d.chunks.done {
		return kv.KeyValue{}, false, nil
	}
	if err != nil {
		return kv.KeyValue{}, false, d.readErr(fmt.Sprintf("pair %d", d.n), err)
	}
	var f [4]uint64 // value length, version, revision, create revision
	for i := range f {
		if f[i], err = binary.ReadUvarint(d.recs); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return kv.KeyValue{}, false, d.readErr(fmt.Sprintf("pair %d", d.n), err)
		}
	}
	valLen := f[0]
	if keyLen > MaxKey || valLen > MaxValue {
		return kv.KeyValue{}, false, d.corrupt("pair %d: key length %d or value length %d out of bounds", d.n, keyLen, valLen)
	}
	if f[1] > math.MaxInt64 || f[2] > math.MaxInt64 || f[3] > math.MaxInt64 {
		return kv.KeyValue{}, false, d.corrupt("pair %d: version or revision beyond int64", d.n)
	}
	buf, err := readN(d.recs, int(keyLen+valLen))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return kv.KeyValue{}, false, d.readErr(fmt.Sprintf("pair %d", d.n), err)
	}
	p := kv.KeyValue{
		Key:            buf[:keyLen:keyLen],
		Value:          buf[keyLen:],
		Version:        int64(f[1]),
		Revision:       int64(f[2]),
		CreateRevision: int64(f[3]),
	}
	if why := checkPair(p, d.n, d.prev, d.meta.Index); why != "" {
		return kv.KeyValue{}, false, d.corrupt("%s", why)
	}
	d.prev = p.Key
	d.n++
	return p, true, nil
}

// trailer verifies the end of the stream, once the pairs have ended.
func (d *decoder) trailer() error {
	var t [8]byte
	if _, err := io.ReadFull(&d.crc, t[:]); err != nil {
		return d.readErr("trailer", err)
	}
	if count := binary.LittleEndian.Uint64(t[:]); count != d.n {
		return d.corrupt("trailer counts %d pairs, stream held %d", count, d.n)
	}
	sum := d.crc.crc
	if _, err := io.ReadFull(&d.crc, t[:4]); err != nil {
		return d.readErr("trailer checksum", err)
	}
	if got := binary.LittleEndian.Uint32(t[:4]); got != sum {
		return d.corrupt("checksum %#08x, computed %#08x", got, sum)
	}
	if _, err := d.src.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("read snapshot at offset %d: %w", d.crc.off, err)
		}
		return d.corrupt("data after the trailer")
	}
	return nil
}

// readN reads exactly n bytes from r into a new slice. It grows the slice as data
// arrives rather than trusting n up front, so a hostile length costs at most about
// twice the bytes really present.
func readN(r io.Reader, n int) ([]byte, error) {
	const step = 1 << 20
	if n <= step {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b := make([]byte, 0, step)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), n))
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// crcReader keeps the CRC32C and count of the bytes read through it, and records a
// failure of the underlying reader (as opposed to its end).
type crcReader struct {
	r     io.Reader
	crc   uint32
	off   int64
	ioErr error
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.off += int64(n)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && c.ioErr == nil {
		c.ioErr = err
	}
	return n, err
}

// chunkReader presents the body's chunks as one stream. It returns io.EOF only at
// the empty chunk that ends the body, so a truncated stream never looks complete
// to the zstd decoder.
type chunkReader struct {
	r    io.Reader
	left uint32 // bytes left in the current chunk
	done bool   // the end chunk has been read
	err  error  // sticky framing error
}

var errTruncatedChunk = errors.New("stream ends inside the compressed body")

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		var l [4]byte
		if _, err := io.ReadFull(c.r, l[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				err = errTruncatedChunk
			}
			c.err = err
			return 0, err
		}
		n := binary.LittleEndian.Uint32(l[:])
		if n == 0 {
			c.done = true
			return 0, io.EOF
		}
		if n > maxChunk {
			c.err = fmt.Errorf("chunk length %d exceeds %d", n, maxChunk)
			return 0, c.err
		}
		c.left = n
	}
	if uint32(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= uint32(n)
	if err == io.EOF {
		if c.left > 0 {
			err = errTruncatedChunk
			c.err = err
		} else {
			err = nil
		}
	} else if err != nil {
		c.err = err
	}
	return n, err
}
