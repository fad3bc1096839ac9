package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Frame header layout (see doc.go):
//
//	[0:4]  body length, big-endian
//	[4]    frame type
//	[5:8]  reserved, zero
//	[8:12] CRC32C of header bytes [4:8] followed by the body
const headerSize = 12

type frameType uint8

const (
	frameHello      frameType = 1  // dialer → acceptor, first frame
	frameHelloAck   frameType = 2  // acceptor → dialer, answer to hello
	frameRaft       frameType = 3  // dialer → acceptor: Raft messages
	frameCall       frameType = 4  // dialer → acceptor: request
	frameCancel     frameType = 5  // dialer → acceptor: caller gave up
	frameReply      frameType = 6  // acceptor → dialer: response
	frameSnapBegin  frameType = 7  // dialer → acceptor
	frameSnapData   frameType = 8  // dialer → acceptor
	frameSnapEnd    frameType = 9  // dialer → acceptor
	frameSnapAbort  frameType = 10 // dialer → acceptor
	frameSnapCredit frameType = 11 // acceptor → dialer
	frameSnapResult frameType = 12 // acceptor → dialer
)

func (t frameType) String() string {
	names := [...]string{"invalid", "hello", "hello-ack", "raft", "call", "cancel", "reply",
		"snap-begin", "snap-data", "snap-end", "snap-abort", "snap-credit", "snap-result"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("frame-type-%d", uint8(t))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// beginFrame appends a header placeholder for a frame of type typ and returns
// the extended buffer and the frame's offset, to be passed to finishFrame once
// the body has been appended.
func beginFrame(dst []byte, typ frameType) ([]byte, int) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(typ), 0, 0, 0, 0, 0, 0, 0)
	return dst, start
}

// finishFrame fills in the length and checksum of the frame at start, whose
// body is everything after its header.
func finishFrame(dst []byte, start int) {
	h := dst[start : start+headerSize]
	body := dst[start+headerSize:]
	binary.BigEndian.PutUint32(h[0:4], uint32(len(body)))
	crc := crc32.Update(crc32.Checksum(h[4:8], castagnoli), castagnoli, body)
	binary.BigEndian.PutUint32(h[8:12], crc)
}

// appendFrame appends a whole frame with the given body.
func appendFrame(dst []byte, typ frameType, body []byte) []byte {
	dst, start := beginFrame(dst, typ)
	dst = append(dst, body...)
	finishFrame(dst, start)
	return dst
}

// frameReader reads frames from a byte stream. It never allocates more than
// about twice the bytes that actually arrived plus a constant, whatever a
// header claims: a body buffer grows as its bytes come in.
type frameReader struct {
	r   io.Reader
	max int // largest body accepted
	hdr [headerSize]byte
	buf []byte // body buffer, reused; valid until the next call of next
}

const (
	readStep     = 64 << 10 // body buffer growth step for large claimed lengths
	keepReadBuf  = 2 << 20  // a body buffer larger than this is not kept
	maxErrorText = 4 << 10  // error texts carried in frames are cut to this
)

// next reads one frame. The body aliases a buffer that the following call
// reuses. At a clean end of stream it returns io.EOF; a stream ending inside a
// frame gives io.ErrUnexpectedEOF; bad frames give errors wrapping ErrProtocol.
func (fr *frameReader) next() (frameType, []byte, error) {
	if cap(fr.buf) > keepReadBuf {
		fr.buf = nil
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[0:4])
	typ := frameType(fr.hdr[4])
	if fr.hdr[5]|fr.hdr[6]|fr.hdr[7] != 0 {
		return 0, nil, fmt.Errorf("%w: reserved header bytes are not zero", ErrProtocol)
	}
	if uint64(n) > uint64(fr.max) {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes exceeds the limit of %d", ErrProtocol, typ, n, fr.max)
	}
	body, err := fr.readBody(int(n))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	crc := crc32.Update(crc32.Checksum(fr.hdr[4:8], castagnoli), castagnoli, body)
	if crc != binary.BigEndian.Uint32(fr.hdr[8:12]) {
		return 0, nil, fmt.Errorf("%w: %s frame of %d bytes fails its checksum", ErrProtocol, typ, n)
	}
	return typ, body, nil
}

func (fr *frameReader) readBody(n int) ([]byte, error) {
	if n <= cap(fr.buf) || n <= readStep {
		if n > cap(fr.buf) {
			fr.buf = make([]byte, n)
		}
		fr.buf = fr.buf[:n]
		_, err := io.ReadFull(fr.r, fr.buf)
		return fr.buf, err
	}
	// A large claimed length: grow with the data, so that a header alone
	// cannot make us allocate MaxFrameSize.
	buf := fr.buf[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), max(readStep, len(buf))))
		}
		m, err := io.ReadFull(fr.r, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, err
		}
	}
	fr.buf = buf
	return buf, nil
}

// errShort is the decoding error of a body that ends too early.
var errShort = fmt.Errorf("%w: truncated frame body", ErrProtocol)

// body decoding helpers: each consumes from the front of b.

func getUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errShort
	}
	return v, b[n:], nil
}

func getByte(b []byte) (byte, []byte, error) {
	if len(b) < 1 {
		return 0, nil, errShort
	}
	return b[0], b[1:], nil
}

// errText shortens an error's text for the wire.
func errText(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText]
	}
	if s == "" {
		s = "error"
	}
	return s
}

// The bodies of the frame types, each encoded after the frame header:
//
//	raft:        { shard uvarint, length uvarint, raftpb.Message } ...
//	call:        id uvarint, shard uvarint, method byte, payload
//	cancel:      id uvarint
//	reply:       id uvarint, status byte (0 ok, 1 error), payload or error text
//	snap-begin:  stream uvarint, shard uvarint
//	snap-data:   stream uvarint, data (1 to snapChunkSize bytes)
//	snap-end:    stream uvarint
//	snap-abort:  stream uvarint, reason text
//	snap-credit: stream uvarint, chunks uvarint
//	snap-result: stream uvarint, status byte (0 installed, 1 error), error text

const (
	statusOK    = 0
	statusError = 1
)

func appendCall(dst []byte, id, shard uint64, method uint8, payload []byte) []byte {
	dst, start := beginFrame(dst, frameCall)
	dst = binary.AppendUvarint(dst, id)
	dst = binary.AppendUvarint(dst, shard)
	dst = append(dst, method)
	dst = append(dst, payload...)
	finishFrame(dst, start)
	return dst
}

func decodeCall(b []byte) (id, shard uint64, method uint8, payload []byte, err error) {
	if id, b, err = getUvarint(b); err != nil {
		return
	}
	if shard, b, err = getUvarint(b); err != nil {
		return
	}
	if method, b, err = getByte(b); err != nil {
		return
	}
	return id, shard, method, b, nil
}

// appendIDFrame appends a frame whose body is an id and optional trailer:
// cancel, snap-end, snap-abort and snap-data frames.
func appendIDFrame(dst []byte, typ frameType, id uint64, trailer []byte) []byte {
	dst, start := beginFrame(dst, typ)
	dst = binary.AppendUvarint(dst, id)
	dst = append(dst, trailer...)
	finishFrame(dst, start)
	return dst
}

// appendStatusFrame appends a reply or snap-result frame.
func appendStatusFrame(dst []byte, typ frameType, id uint64, payload []byte, err error) []byte {
	dst, start := beginFrame(dst, typ)
	dst = binary.AppendUvarint(dst, id)
	if err != nil {
		dst = append(dst, statusError)
		dst = append(dst, errText(err)...)
	} else {
		dst = append(dst, statusOK)
		dst = append(dst, payload...)
	}
	finishFrame(dst, start)
	return dst
}

// decodeStatus decodes a reply or snap-result body. A remote error comes back
// as an error wrapping ErrRemote.
func decodeStatus(b []byte) (id uint64, payload []byte, remote error, err error) {
	if id, b, err = getUvarint(b); err != nil {
		return
	}
	var st byte
	if st, b, err = getByte(b); err != nil {
		return
	}
	switch st {
	case statusOK:
		return id, b, nil, nil
	case statusError:
		return id, nil, fmt.Errorf("%w: %s", ErrRemote, b), nil
	default:
		return 0, nil, nil, fmt.Errorf("%w: unknown status %d", ErrProtocol, st)
	}
}

func appendUvarints(dst []byte, typ frameType, vs ...uint64) []byte {
	dst, start := beginFrame(dst, typ)
	for _, v := range vs {
		dst = binary.AppendUvarint(dst, v)
	}
	finishFrame(dst, start)
	return dst
}

// decodeUvarints decodes a body that holds exactly len(vs) uvarints.
func decodeUvarints(b []byte, vs ...*uint64) error {
	var err error
	for _, v := range vs {
		if *v, b, err = getUvarint(b); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrProtocol, len(b))
	}
	return nil
}

// raftRecord calls fn for every (shard, encoded message) record of a raft
// frame body. The message bytes alias b.
func raftRecords(b []byte, fn func(shard uint64, msg []byte) error) error {
	for len(b) > 0 {
		shard, rest, err := getUvarint(b)
		if err != nil {
			return err
		}
		n, rest, err := getUvarint(rest)
		if err != nil {
			return err
		}
		if n > uint64(len(rest)) {
			return errShort
		}
		if err := fn(shard, rest[:n]); err != nil {
			return err
		}
		b = rest[n:]
	}
	return nil
}

var errNested = errors.New("raft message carries local-only responses")

// checkMessage rejects encoded raftpb.Messages that hold the Responses field
// (14). Responses are only used between a Raft node and its local storage
// threads, never sent to peers, and a message may nest in it without bound:
// decoding a hostile chain of them would exhaust the goroutine stack. The
// scan only looks at top-level fields; everything else is left to the
// generated decoder, which checks its bounds.
func checkMessage(b []byte) error {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return errShort
		}
		b = b[n:]
		if tag>>3 == 14 {
			return fmt.Errorf("%w: %w", ErrProtocol, errNested)
		}
		switch tag & 7 {
		case 0:
			_, n := binary.Uvarint(b)
			if n <= 0 {
				return errShort
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errShort
			}
			b = b[8:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errShort
			}
			b = b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return errShort
			}
			b = b[4:]
		default:
			return fmt.Errorf("%w: raft message has wire type %d", ErrProtocol, tag&7)
		}
	}
	return nil
}
