package wal

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/vfs"
)

// scanResult describes one scanned segment.
type scanResult struct {
	size int64 // file length
	// end is the end of the last whole frame: size, unless the final
	// segment ends in a torn frame or in the zero reserve.
	end     int64
	torn    bool // final segment only: bytes after end are a torn frame
	frames  int
	records int
}

// scanSegment reads segment seq from f, checks every frame, and calls fn for
// each record of each good frame, with the frame's offset. Record Data stays
// valid after fn returns (every frame has its own buffer).
//
// In the final segment, zeros from a frame boundary to the end of the file
// are the reserve the WAL writes ahead of its frames: the clean end of the
// log (res.end at the boundary, not torn). In a non-final segment they are
// damage.
//
// Damage is classified as follows. In a non-final segment, any damage is
// corruption. In the final segment, a damaged frame is a torn tail (res.torn,
// nil error) only if a crash in the middle of appending it can explain it:
// fewer bytes than a frame header remain; or the header is good and the
// payload runs past the end of the file; or a checksum fails and every byte
// from the frame's claimed end (for a bad header: from the header's last byte)
// to the end of the file is zero. Anything else is a *CorruptError.
func scanSegment(f vfs.File, path string, seq uint64, final bool, c *frameCodec, fn func(off int64, r Record) error) (scanResult, error) {
	var res scanResult
	st, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	res.size = st.Size()
	corrupt := func(off int64, format string, args ...any) error {
		return &CorruptError{Path: path, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}

	var hdr [max(segmentHeaderSize, frameHeaderSize)]byte
	if res.size < segmentHeaderSize {
		return res, corrupt(0, "file of %d bytes is shorter than the segment header", res.size)
	}
	if err := readFull(f, hdr[:segmentHeaderSize], 0); err != nil {
		return res, fmt.Errorf("wal: read %s: %w", path, err)
	}
	got, err := parseSegmentHeader(hdr[:segmentHeaderSize])
	if err != nil {
		return res, corrupt(0, "%v", err)
	}
	if got != seq {
		return res, corrupt(0, "segment header has sequence number %d, file name says %d", got, seq)
	}

	off := int64(segmentHeaderSize)
	for off < res.size {
		left := res.size - off
		torn := func(damage error, zerosFrom int64) (scanResult, error) {
			if final {
				zero, err := allZero(f, zerosFrom, res.size)
				if err != nil {
					return res, fmt.Errorf("wal: read %s: %w", path, err)
				}
				if zero {
					res.end, res.torn = off, true
					return res, nil
				}
				return res, corrupt(off, "%v, followed by non-zero data", damage)
			}
			return res, corrupt(off, "%v in a non-final segment", damage)
		}
		h := hdr[:min(left, frameHeaderSize)]
		if err := readFull(f, h, off); err != nil {
			return res, fmt.Errorf("wal: read %s: %w", path, err)
		}
		if final && isZero(h) {
			// No frame starts with a zero header (its checksum would not
			// match), so zeros from here to the end are the reserve.
			zero, err := allZero(f, off+int64(len(h)), res.size)
			if err != nil {
				return res, fmt.Errorf("wal: read %s: %w", path, err)
			}
			if zero {
				break
			}
		}
		if left < frameHeaderSize {
			return torn(errShortHeader, res.size)
		}
		fh, err := parseFrameHeader(h)
		if errors.Is(err, errHeaderChecksum) {
			// A crash can leave the header partly written: its first bytes
			// on disk, the rest zero. If the whole header had been written
			// it would be intact, so the zeros start inside the header.
			return torn(err, off+frameHeaderSize-1)
		}
		if err != nil {
			return res, corrupt(off, "%v", err)
		}
		end := off + frameHeaderSize + int64(fh.length)
		if end > res.size {
			return torn(fmt.Errorf("%w (frame of %d bytes, %d left)", errPastEOF, frameHeaderSize+int64(fh.length), left), res.size)
		}
		// Allocation is bounded by the file's real size, checked above.
		payload := make([]byte, fh.length)
		if err := readFull(f, payload, off+frameHeaderSize); err != nil {
			return res, fmt.Errorf("wal: read %s: %w", path, err)
		}
		if crc(payload) != fh.payloadCRC {
			return torn(errPayloadCRC, end)
		}
		raw, err := c.decode(fh, payload, seq)
		if err != nil {
			if errors.Is(err, errInvalid) {
				return res, corrupt(off, "%v", err)
			}
			return res, fmt.Errorf("segment %s at offset %d: %w", path, off, err)
		}
		n, err := parseRecords(raw, nil)
		if err != nil {
			return res, corrupt(off, "%v", err)
		}
		if fn != nil {
			frameOff := off
			if _, err := parseRecords(raw, func(r Record) error { return fn(frameOff, r) }); err != nil {
				return res, err
			}
		}
		res.frames++
		res.records += n
		off = end
	}
	res.end = off
	return res, nil
}

func readFull(f vfs.File, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// allZero reports whether bytes [from, to) of f are all zero.
func allZero(f vfs.File, from, to int64) (bool, error) {
	buf := make([]byte, min(to-from, 64<<10))
	for off := from; off < to; {
		b := buf[:min(int64(len(buf)), to-off)]
		if err := readFull(f, b, off); err != nil {
			return false, err
		}
		if !isZero(b) {
			return false, nil
		}
		off += int64(len(b))
	}
	return true, nil
}

// Scan calls fn for each record of the WAL in dir, in append order, with the
// segment file name and the byte offset of the record's frame. It never
// modifies files. A torn final frame ends the scan without error (Open would
// truncate it); other damage returns an error wrapping ErrCorrupt. An error
// from fn stops the scan and is returned.
func Scan(fs vfs.FS, dir string, fn func(segment string, offset int64, r Record) error) error {
	_, err := scanDir(fs, dir, nil, fn)
	return err
}

// ScanEncrypted is Scan of a WAL written with Config.Cipher c (nil: Scan).
// A frame c cannot open fails it as Open would.
func ScanEncrypted(fs vfs.FS, dir string, c *crypt.Cipher, fn func(segment string, offset int64, r Record) error) error {
	_, err := scanDir(fs, dir, c, fn)
	return err
}

// Report summarizes a WAL directory checked by Verify.
type Report struct {
	Segments int   // segment files checked
	Frames   int   // whole, valid frames
	Records  int   // records in those frames
	Bytes    int64 // bytes of valid data, headers included
	// TornSegment is set when the final segment ends in a torn frame that
	// Open would truncate: the file, the offset it would truncate to, and the
	// bytes it would drop.
	TornSegment string
	TornOffset  int64
	TornBytes   int64
	// Reserved counts the zero bytes after the last frame of the final
	// segment: disk the WAL reserved ahead of its frames, not damage. Open
	// keeps them and appends over them.
	Reserved int64
}

// Verify checks every frame of every segment in dir without modifying
// anything. It returns what it found and, for damage a crash cannot explain,
// an error wrapping ErrCorrupt (a *CorruptError) naming the file and offset
// of the first damage; the Report then covers what precedes it.
func Verify(fs vfs.FS, dir string) (Report, error) {
	return scanDir(fs, dir, nil, nil)
}

// VerifyEncrypted is Verify of a WAL written with Config.Cipher c (nil:
// Verify). Each sealed frame is authenticated too.
func VerifyEncrypted(fs vfs.FS, dir string, c *crypt.Cipher) (Report, error) {
	return scanDir(fs, dir, c, nil)
}

func scanDir(fs vfs.FS, dir string, cipher *crypt.Cipher, fn func(segment string, offset int64, r Record) error) (Report, error) {
	var rep Report
	segs, _, err := listSegments(fs, dir)
	if err != nil {
		return rep, err
	}
	var c frameCodec
	defer c.close()
	if cipher != nil {
		c.opener = cipher.NewOpener(cryptDomain)
	}
	for i, seg := range segs {
		f, err := fs.Open(seg.path)
		if err != nil {
			return rep, fmt.Errorf("wal: open segment: %w", err)
		}
		name := filepath.Base(seg.path)
		var cb func(int64, Record) error
		if fn != nil {
			cb = func(off int64, r Record) error { return fn(name, off, r) }
		}
		res, err := scanSegment(f, seg.path, seg.seq, i == len(segs)-1, &c, cb)
		f.Close()
		rep.Segments++
		rep.Frames += res.frames
		rep.Records += res.records
		if err != nil {
			var ce *CorruptError
			if errors.As(err, &ce) {
				rep.Bytes += ce.Offset
			}
			return rep, err
		}
		rep.Bytes += res.end
		if res.torn {
			rep.TornSegment, rep.TornOffset, rep.TornBytes = seg.path, res.end, res.size-res.end
		} else {
			rep.Reserved = res.size - res.end
		}
	}
	return rep, nil
}
