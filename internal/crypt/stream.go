package crypt

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// The sealed stream (all integers little-endian):
//
//	header  StreamMagic | version u8 (1) | zero [3] | key id u32 | salt [16]
//	        | chunk size u32 | CRC32C of the header bytes before it (u32)
//	chunks  word u32 (bit 31: last chunk; the rest: sealed length, TagSize ..
//	        chunk size + TagSize) | sealed bytes
//
// Chunk n is sealed with nonce n under the stream's subkey, with the header
// and a byte (1 for the last chunk, else 0) as additional data. Every chunk
// but the last holds exactly chunk size bytes of plaintext.
const (
	// StreamMagic starts every sealed stream.
	StreamMagic    = "DKVENC1\n"
	streamVersion  = 1
	streamHeader   = 8 + 4 + 4 + saltSize + 4 + 4
	streamChunk    = 64 << 10
	maxStreamChunk = 1 << 20
	lastChunk      = 1 << 31
)

// IsStream reports whether b, the first bytes of a file, start a sealed
// stream.
func IsStream(b []byte) bool {
	return len(b) >= len(StreamMagic) && string(b[:len(StreamMagic)]) == StreamMagic
}

type streamWriter struct {
	w    io.Writer
	aead cipher.AEAD
	hdr  [streamHeader]byte
	buf  []byte // plaintext of the chunk being filled; capacity for its tag
	word [4]byte
	n    uint64
	err  error // sticky
}

// NewWriter returns a writer that seals what is written to it into w, as a
// stream for domain under the current data key and a subkey of its own.
// Close writes the last chunk; it does not close w. Nothing is written to w
// before the first chunk is full, or Close.
func (c *Cipher) NewWriter(w io.Writer, domain string) (io.WriteCloser, error) {
	sw := &streamWriter{w: w, buf: make([]byte, 0, streamChunk+TagSize)}
	salt := sw.hdr[16 : 16+saltSize]
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("new stream: %w", err)
	}
	copy(sw.hdr[:], StreamMagic)
	sw.hdr[8] = streamVersion
	binary.LittleEndian.PutUint32(sw.hdr[12:], c.current)
	binary.LittleEndian.PutUint32(sw.hdr[16+saltSize:], streamChunk)
	binary.LittleEndian.PutUint32(sw.hdr[streamHeader-4:], crc32.Checksum(sw.hdr[:streamHeader-4], castagnoli))
	sw.aead = subkey(c.keys[c.current], salt, domain)
	if _, err := w.Write(sw.hdr[:]); err != nil {
		return nil, err
	}
	return sw, nil
}

func (sw *streamWriter) Write(p []byte) (int, error) {
	if sw.err != nil {
		return 0, sw.err
	}
	written := 0
	for len(p) > 0 {
		if len(sw.buf) == streamChunk {
			if err := sw.flush(false); err != nil {
				return written, err
			}
		}
		k := copy(sw.buf[len(sw.buf):streamChunk], p)
		sw.buf = sw.buf[:len(sw.buf)+k]
		p = p[k:]
		written += k
	}
	return written, nil
}

func (sw *streamWriter) flush(last bool) error {
	ad := append(sw.hdr[:], 0)
	word := uint32(len(sw.buf) + TagSize)
	if last {
		ad[streamHeader] = 1
		word |= lastChunk
	}
	sealed := sw.aead.Seal(sw.buf[:0], counterNonce(sw.n), sw.buf, ad)
	sw.n++
	binary.LittleEndian.PutUint32(sw.word[:], word)
	if _, err := sw.w.Write(sw.word[:]); err != nil {
		sw.err = err
		return err
	}
	if _, err := sw.w.Write(sealed); err != nil {
		sw.err = err
		return err
	}
	sw.buf = sw.buf[:0]
	return nil
}

// Close seals and writes the last chunk. Later writes fail.
func (sw *streamWriter) Close() error {
	if sw.err != nil {
		return sw.err
	}
	err := sw.flush(true)
	if err == nil {
		sw.err = errors.New("crypt: write to a closed stream")
	}
	return err
}

type streamReader struct {
	r     io.Reader
	aead  cipher.AEAD
	hdr   [streamHeader]byte
	chunk int    // plaintext bytes of a full chunk
	buf   []byte // sealed chunk, then its plaintext
	pos   int    // next plaintext byte of buf
	n     uint64
	last  bool  // the last chunk has been read and opened
	err   error // sticky
}

// NewReader reads the header of a sealed stream for domain from r and returns
// a reader of its plaintext. Errors, from NewReader or from Read, wrap
// ErrCorrupt for a malformed stream (a truncation included: a stream that
// ends before its last chunk, or has bytes after it), ErrAuth for a chunk
// that fails authentication, ErrWrongKey for a data key the keys file lacks;
// an error of r is returned as is. Read returns io.EOF only at the end of an
// intact stream; what it returned before is to be trusted only then.
func (c *Cipher) NewReader(r io.Reader, domain string) (io.Reader, error) {
	sr := &streamReader{r: r}
	if _, err := io.ReadFull(r, sr.hdr[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: stream shorter than its header", ErrCorrupt)
		}
		return nil, err
	}
	h := sr.hdr[:]
	switch {
	case !IsStream(h):
		return nil, fmt.Errorf("%w: not a sealed stream (magic %q)", ErrCorrupt, h[:len(StreamMagic)])
	case binary.LittleEndian.Uint32(h[streamHeader-4:]) != crc32.Checksum(h[:streamHeader-4], castagnoli):
		return nil, fmt.Errorf("%w: stream header checksum mismatch", ErrCorrupt)
	case h[8] != streamVersion:
		return nil, fmt.Errorf("%w: stream version %d unknown", ErrCorrupt, h[8])
	case h[9] != 0 || h[10] != 0 || h[11] != 0:
		return nil, fmt.Errorf("%w: stream header reserved bytes set", ErrCorrupt)
	}
	id := binary.LittleEndian.Uint32(h[12:])
	dk, ok := c.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: sealed under data key %d, which the keys file does not hold (it holds %v)", ErrWrongKey, id, c.KeyIDs())
	}
	sr.chunk = int(binary.LittleEndian.Uint32(h[16+saltSize:]))
	if sr.chunk < 1 || sr.chunk > maxStreamChunk {
		return nil, fmt.Errorf("%w: stream chunk size %d out of bounds", ErrCorrupt, sr.chunk)
	}
	sr.aead = subkey(dk, h[16:16+saltSize], domain)
	return sr, nil
}

func (sr *streamReader) Read(p []byte) (int, error) {
	for sr.pos == len(sr.buf) {
		if sr.err != nil {
			return 0, sr.err
		}
		if sr.last {
			sr.err = sr.end()
			continue
		}
		sr.err = sr.next()
	}
	k := copy(p, sr.buf[sr.pos:])
	sr.pos += k
	return k, nil
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: stream ends before its last chunk", ErrCorrupt)
	}
	return err
}

// next reads and opens the next chunk.
func (sr *streamReader) next() error {
	var w [4]byte
	if _, err := io.ReadFull(sr.r, w[:]); err != nil {
		return truncated(err)
	}
	word := binary.LittleEndian.Uint32(w[:])
	last, size := word&lastChunk != 0, int(word&^lastChunk)
	if size < TagSize || size > sr.chunk+TagSize {
		return fmt.Errorf("%w: chunk %d of %d sealed bytes (chunk size %d)", ErrCorrupt, sr.n, size, sr.chunk)
	}
	if !last && size != sr.chunk+TagSize {
		return fmt.Errorf("%w: chunk %d of %d sealed bytes is not the last but not full", ErrCorrupt, sr.n, size)
	}
	if cap(sr.buf) < size {
		sr.buf = make([]byte, 0, sr.chunk+TagSize)
	}
	sealed := sr.buf[:size]
	if _, err := io.ReadFull(sr.r, sealed); err != nil {
		return truncated(err)
	}
	ad := append(sr.hdr[:], 0)
	if last {
		ad[streamHeader] = 1
	}
	pt, err := sr.aead.Open(sealed[:0], counterNonce(sr.n), sealed, ad)
	if err != nil {
		return fmt.Errorf("chunk %d: %w", sr.n, ErrAuth)
	}
	sr.n++
	sr.buf, sr.pos, sr.last = pt, 0, last
	return nil
}

// end checks that nothing follows the last chunk; it returns io.EOF if so.
func (sr *streamReader) end() error {
	var b [1]byte
	n, err := io.ReadFull(sr.r, b[:])
	if n > 0 {
		return fmt.Errorf("%w: data after the last chunk", ErrCorrupt)
	}
	if err == io.EOF {
		return io.EOF
	}
	return err
}
