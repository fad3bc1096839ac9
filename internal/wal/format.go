package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/distkv/distkv/internal/crypt"
)

// On-disk layout. All integers are little-endian. See doc.go for the rationale.
const (
	segmentMagic      = "DKV-WAL\n"
	formatVersion     = 1
	segmentHeaderSize = 32
	frameHeaderSize   = 20

	// maxPayloadSize caps both the stored and the decoded payload of one frame,
	// so that a damaged or hostile length field never causes a huge allocation.
	maxPayloadSize = 256 << 20

	// maxExpansion bounds decodedLen/storedLen of a compressed frame. A zstd
	// block of at most 128 KiB takes at least 4 bytes, so no valid zstd frame
	// expands by more; the writer stores a payload raw rather than exceed it.
	maxExpansion = 1 << 15
)

// Frame flag bits. Unknown bits make a frame corrupt.
const (
	flagCompressed = 1 << 0 // payload is compressed
	flagS2         = 1 << 1 // with flagCompressed: S2 rather than zstd
	flagEncrypted  = 1 << 2 // payload is sealed (package crypt), after compression
	flagsKnown     = flagCompressed | flagS2 | flagEncrypted
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Frame damage classes. The scanner decides from the class and from what
// follows the frame whether the damage is a torn tail or corruption.
var (
	errShortHeader    = errors.New("fewer bytes than a frame header")
	errHeaderChecksum = errors.New("frame header checksum mismatch")
	errPastEOF        = errors.New("frame payload runs past end of file")
	errPayloadCRC     = errors.New("frame payload checksum mismatch")
	// errInvalid marks damage no crash can produce: a frame whose checksums
	// match but whose content is not something the writer writes.
	errInvalid = errors.New("invalid frame")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// appendSegmentHeader appends the header of segment seq to dst.
//
//	[0:8]   magic "DKV-WAL\n"
//	[8:12]  format version
//	[12:16] reserved, zero
//	[16:24] sequence number (equals the one in the file name)
//	[24:28] CRC32C of [0:24]
//	[28:32] zero
func appendSegmentHeader(dst []byte, seq uint64) []byte {
	var h [segmentHeaderSize]byte
	copy(h[:8], segmentMagic)
	binary.LittleEndian.PutUint32(h[8:], formatVersion)
	binary.LittleEndian.PutUint64(h[16:], seq)
	binary.LittleEndian.PutUint32(h[24:], crc(h[:24]))
	return append(dst, h[:]...)
}

// parseSegmentHeader checks h (segmentHeaderSize bytes) and returns its sequence number.
func parseSegmentHeader(h []byte) (uint64, error) {
	if string(h[:8]) != segmentMagic {
		return 0, invalidf("bad segment magic %q", h[:8])
	}
	if got, want := binary.LittleEndian.Uint32(h[24:]), crc(h[:24]); got != want {
		return 0, invalidf("segment header checksum mismatch")
	}
	if binary.LittleEndian.Uint32(h[28:]) != 0 {
		return 0, invalidf("segment header padding not zero")
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != formatVersion {
		return 0, invalidf("unsupported format version %d", v)
	}
	return binary.LittleEndian.Uint64(h[16:]), nil
}

// frameHeader is the fixed prefix of every frame.
//
//	[0:4]   length of the stored payload
//	[4:8]   length of the payload after decryption and decompression
//	[8]     flags
//	[9:12]  reserved, zero
//	[12:16] CRC32C of the stored payload
//	[16:20] CRC32C of [0:16]
type frameHeader struct {
	length     uint32
	decodedLen uint32
	flags      byte
	payloadCRC uint32
}

func putFrameHeader(h []byte, payload []byte, decodedLen int, flags byte) {
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], uint32(decodedLen))
	h[8], h[9], h[10], h[11] = flags, 0, 0, 0
	binary.LittleEndian.PutUint32(h[12:], crc(payload))
	binary.LittleEndian.PutUint32(h[16:], crc(h[:16]))
}

// parseFrameHeader checks the header checksum and then the fields. A checksum
// mismatch returns errHeaderChecksum; fields the writer never writes, errInvalid.
func parseFrameHeader(h []byte) (frameHeader, error) {
	if len(h) < frameHeaderSize {
		return frameHeader{}, errShortHeader
	}
	if binary.LittleEndian.Uint32(h[16:]) != crc(h[:16]) {
		return frameHeader{}, errHeaderChecksum
	}
	fh := frameHeader{
		length:     binary.LittleEndian.Uint32(h[0:]),
		decodedLen: binary.LittleEndian.Uint32(h[4:]),
		flags:      h[8],
		payloadCRC: binary.LittleEndian.Uint32(h[12:]),
	}
	// inner: the length of the (possibly compressed) payload inside the seal.
	inner := fh.length
	if fh.flags&flagEncrypted != 0 {
		if fh.length < crypt.Overhead {
			return fh, invalidf("sealed payload of %d bytes, shorter than the seal's %d", fh.length, crypt.Overhead)
		}
		inner = fh.length - crypt.Overhead
	}
	switch {
	case h[9] != 0 || h[10] != 0 || h[11] != 0:
		return fh, invalidf("reserved header bytes set")
	case fh.flags&^flagsKnown != 0:
		return fh, invalidf("unknown flags %#x", fh.flags)
	case fh.flags&(flagCompressed|flagS2) == flagS2:
		return fh, invalidf("codec flag without compression flag")
	case inner > maxPayloadSize:
		return fh, invalidf("payload length %d exceeds limit %d", inner, maxPayloadSize)
	case fh.decodedLen > maxPayloadSize:
		return fh, invalidf("decoded length %d exceeds limit %d", fh.decodedLen, maxPayloadSize)
	case fh.flags&flagCompressed == 0 && fh.decodedLen != inner:
		return fh, invalidf("uncompressed frame with decoded length %d != length %d", fh.decodedLen, inner)
	case fh.flags&flagCompressed != 0 && uint64(fh.decodedLen) > uint64(inner)*maxExpansion:
		return fh, invalidf("decoded length %d implausible for %d compressed bytes", fh.decodedLen, inner)
	}
	return fh, nil
}

// frameCodec compresses and decompresses payloads, and seals and opens them
// when the WAL has a cipher. It owns one zstd encoder and one decoder,
// created on first use and reused. Not safe for concurrent use.
type frameCodec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
	// sealer seals new frames (nil: they are stored in the clear). opener
	// opens sealed frames (nil: a sealed frame is an error wrapping
	// crypt.ErrKeyRequired); with an opener, a frame in the clear is an
	// error wrapping crypt.ErrNotEncrypted.
	sealer *crypt.Sealer
	opener *crypt.Opener
}

// frameAD is the data a sealed frame's tag authenticates besides its payload:
// the segment's sequence number and the header fields that say how to decode
// the payload, so that a sealed frame moved into another segment, or with its
// flags or decoded length changed, fails authentication.
func frameAD(seq uint64, flags byte, decodedLen int) [13]byte {
	var ad [13]byte
	binary.LittleEndian.PutUint64(ad[:], seq)
	ad[8] = flags
	binary.LittleEndian.PutUint32(ad[9:], uint32(decodedLen))
	return ad
}

func (c *frameCodec) close() {
	if c.enc != nil {
		c.enc.Close()
		c.enc = nil
	}
	if c.dec != nil {
		c.dec.Close()
		c.dec = nil
	}
}

func (c *frameCodec) encoder() (*zstd.Encoder, error) {
	if c.enc == nil {
		enc, err := zstd.NewWriter(nil,
			// The fastest level: under a 64-client write load the default
			// level was 12% of the leader's CPU and this one 2.5%, for WAL
			// files 3% larger on JSON-like values.
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1),
			// The frame carries its own CRC32C.
			zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, fmt.Errorf("wal: zstd encoder: %w", err)
		}
		c.enc = enc
	}
	return c.enc, nil
}

func (c *frameCodec) decoder() (*zstd.Decoder, error) {
	if c.dec == nil {
		dec, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(maxPayloadSize),
			// Decode into exactly the space the frame header announces.
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			return nil, fmt.Errorf("wal: zstd decoder: %w", err)
		}
		c.dec = dec
	}
	return c.dec, nil
}

// appendFrame appends one frame of segment seq holding raw (an encoded
// record batch) to dst. raw is compressed with codec when it is at least
// minCompress bytes and the result is smaller; otherwise it is stored as is.
// With a sealer, the result is then sealed.
func (c *frameCodec) appendFrame(dst, raw []byte, codec Compression, minCompress int, seq uint64) ([]byte, error) {
	if len(raw) > maxPayloadSize {
		return dst, fmt.Errorf("wal: batch of %d bytes exceeds the frame limit of %d", len(raw), maxPayloadSize)
	}
	start := len(dst)
	seal := 0
	if c.sealer != nil {
		seal = crypt.PrefixSize
	}
	dst = append(dst, make([]byte, frameHeaderSize+seal)...)
	body := start + frameHeaderSize + seal
	flags := byte(0)
	if codec != CompressionNone && len(raw) >= minCompress && len(raw) > 0 {
		switch codec {
		case CompressionS2:
			dst = slices.Grow(dst, s2.MaxEncodedLen(len(raw)))
			enc := s2.Encode(dst[body:body], raw) // in place: the capacity suffices
			dst = dst[:body+len(enc)]
			flags = flagCompressed | flagS2
		default:
			enc, err := c.encoder()
			if err != nil {
				return dst[:start], err
			}
			dst = enc.EncodeAll(raw, dst)
			flags = flagCompressed
		}
		n := len(dst) - body
		if n >= len(raw) || uint64(n)*maxExpansion < uint64(len(raw)) {
			dst = append(dst[:body], raw...)
			flags = 0
		}
	} else {
		dst = append(dst, raw...)
	}
	if c.sealer != nil {
		flags |= flagEncrypted
		ad := frameAD(seq, flags, len(raw))
		dst = slices.Grow(dst, crypt.TagSize) // so that the seal stays in dst
		sealed := c.sealer.SealInPlace(dst[start+frameHeaderSize:], ad[:])
		dst = dst[:start+frameHeaderSize+len(sealed)]
	}
	putFrameHeader(dst[start:start+frameHeaderSize], dst[start+frameHeaderSize:], len(raw), flags)
	return dst, nil
}

// decode returns the decoded payload of a frame of segment seq whose header
// and payload checksum have been verified: opened, if sealed (in place:
// payload is overwritten), then decompressed. Damage is errInvalid; a
// missing or wrong key, an error wrapping crypt.ErrKeyRequired,
// crypt.ErrWrongKey or crypt.ErrNotEncrypted.
func (c *frameCodec) decode(fh frameHeader, payload []byte, seq uint64) ([]byte, error) {
	sealed := fh.flags&flagEncrypted != 0
	switch {
	case sealed && c.opener == nil:
		return nil, fmt.Errorf("wal: %w", crypt.ErrKeyRequired)
	case !sealed && c.opener != nil:
		return nil, fmt.Errorf("wal: frame is not encrypted, but the WAL was opened with an encryption key: %w", crypt.ErrNotEncrypted)
	case sealed:
		ad := frameAD(seq, fh.flags, int(fh.decodedLen))
		pt, err := c.opener.OpenInPlace(payload, ad[:])
		if errors.Is(err, crypt.ErrWrongKey) {
			return nil, fmt.Errorf("wal: %w", err)
		}
		if err != nil {
			return nil, invalidf("%v", err)
		}
		payload = pt
	}
	return c.decompress(fh, payload)
}

// decompress returns the decoded payload of a frame whose header and payload
// checksum have been verified. The result never exceeds fh.decodedLen bytes.
func (c *frameCodec) decompress(fh frameHeader, payload []byte) ([]byte, error) {
	if fh.flags&flagCompressed == 0 {
		return payload, nil
	}
	n := int(fh.decodedLen)
	if fh.flags&flagS2 != 0 {
		dl, err := s2.DecodedLen(payload)
		if err != nil {
			return nil, invalidf("s2: %v", err)
		}
		if dl != n {
			return nil, invalidf("s2 block of %d bytes, header says %d", dl, n)
		}
		out, err := s2.Decode(make([]byte, n), payload)
		if err != nil {
			return nil, invalidf("s2: %v", err)
		}
		return out, nil
	}
	dec, err := c.decoder()
	if err != nil {
		return nil, err
	}
	out, err := dec.DecodeAll(payload, make([]byte, 0, n))
	if err != nil {
		return nil, invalidf("zstd: %v", err)
	}
	if len(out) != n {
		return nil, invalidf("zstd payload decoded to %d bytes, header says %d", len(out), n)
	}
	return out, nil
}

// decodeFrame decodes the frame of segment seq at the start of b and returns
// its decoded payload (an encoded record batch, not yet checked) and the
// frame's length. b is not modified.
func (c *frameCodec) decodeFrame(b []byte, seq uint64) (raw []byte, n int, err error) {
	fh, err := parseFrameHeader(b)
	if err != nil {
		return nil, 0, err
	}
	end := frameHeaderSize + int(fh.length)
	if end > len(b) {
		return nil, 0, errPastEOF
	}
	payload := b[frameHeaderSize:end]
	if crc(payload) != fh.payloadCRC {
		return nil, 0, errPayloadCRC
	}
	if fh.flags&flagEncrypted != 0 {
		payload = slices.Clone(payload) // opened in place
	}
	raw, err = c.decode(fh, payload, seq)
	if err != nil {
		return nil, 0, err
	}
	return raw, end, nil
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// recordSize is the encoded size of r inside a payload.
func recordSize(r *Record) int {
	return uvarintLen(r.Shard) + 1 + uvarintLen(r.Index) + uvarintLen(uint64(len(r.Data))) + len(r.Data)
}

// appendRecord appends r to a payload:
// shard (uvarint), type (byte), index (uvarint), data length (uvarint), data.
func appendRecord(dst []byte, r *Record) []byte {
	dst = binary.AppendUvarint(dst, r.Shard)
	dst = append(dst, byte(r.Type))
	dst = binary.AppendUvarint(dst, r.Index)
	dst = binary.AppendUvarint(dst, uint64(len(r.Data)))
	return append(dst, r.Data...)
}

// parseRecords checks that raw is a sequence of well-formed records and
// returns how many it holds. With fn != nil it then calls fn for each, in
// order; Data aliases raw. A malformed payload calls fn for none of them, so a
// frame is replayed whole or not at all. fn's error is returned as is.
func parseRecords(raw []byte, fn func(Record) error) (int, error) {
	n := 0
	for b := raw; len(b) > 0; n++ {
		_, rest, err := nextRecord(b)
		if err != nil {
			return n, invalidf("record %d at payload byte %d: %v", n, len(raw)-len(b), err)
		}
		b = rest
	}
	if fn == nil {
		return n, nil
	}
	for b := raw; len(b) > 0; {
		r, rest, _ := nextRecord(b)
		if err := fn(r); err != nil {
			return n, err
		}
		b = rest
	}
	return n, nil
}

func nextRecord(b []byte) (Record, []byte, error) {
	var r Record
	shard, k := binary.Uvarint(b)
	if k <= 0 {
		return r, nil, errors.New("bad shard varint")
	}
	b = b[k:]
	if len(b) == 0 {
		return r, nil, errors.New("missing type")
	}
	typ := RecordType(b[0])
	if !typ.valid() {
		return r, nil, fmt.Errorf("unknown record type %d", typ)
	}
	b = b[1:]
	index, k := binary.Uvarint(b)
	if k <= 0 {
		return r, nil, errors.New("bad index varint")
	}
	b = b[k:]
	size, k := binary.Uvarint(b)
	if k <= 0 {
		return r, nil, errors.New("bad length varint")
	}
	b = b[k:]
	if size > uint64(len(b)) {
		return r, nil, fmt.Errorf("data length %d exceeds the %d bytes left", size, len(b))
	}
	r = Record{Shard: shard, Type: typ, Index: index, Data: b[:size:size]}
	return r, b[size:], nil
}
