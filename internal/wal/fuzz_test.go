package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/vfs"
)

// fuzzRecords is a small batch that exercises every record type.
func fuzzRecords() []Record {
	return []Record{
		{Shard: 1, Type: RecordEntry, Index: 10, Data: []byte(strings.Repeat(`{"k":"v","n":12345}`, 40))},
		{Shard: 300, Type: RecordHardState, Data: []byte("term=3 vote=1 commit=9")},
		{Shard: 1 << 40, Type: RecordSnapshot, Index: 1 << 33, Data: nil},
	}
}

func encodeRecords(recs []Record) []byte {
	var raw []byte
	for i := range recs {
		raw = appendRecord(raw, &recs[i])
	}
	return raw
}

// seedFrames returns valid frames of every codec, and damaged variants.
func seedFrames(t testing.TB) [][]byte {
	var c frameCodec
	defer c.close()
	raw := encodeRecords(fuzzRecords())
	var seeds [][]byte
	for _, codec := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
		fr, err := c.appendFrame(nil, raw, codec, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, fr, fr[:len(fr)/2])
	}
	small, _ := c.appendFrame(nil, encodeRecords(fuzzRecords()[1:2]), CompressionNone, 1, 1)
	seeds = append(seeds, small, nil, make([]byte, frameHeaderSize), []byte("garbage that is not a frame"))
	return seeds
}

// allocatedBy returns the bytes allocated on the heap while fn runs (by any
// goroutine; the fuzz target runs alone in its worker process).
func allocatedBy(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// allocLimit is what decoding n input bytes may allocate: a decoded payload
// bounded by the frame header plus the codecs' working memory.
func allocLimit(n int) uint64 { return 48<<20 + 64*uint64(n) }

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	var c frameCodec
	f.Fuzz(func(t *testing.T, data []byte) {
		// 1. Arbitrary bytes as a frame.
		var raw []byte
		var n int
		var err error
		if a := allocatedBy(func() { raw, n, err = c.decodeFrame(data, 1) }); a > allocLimit(len(data)) {
			t.Fatalf("decoding %d bytes allocated %d", len(data), a)
		}
		if err == nil {
			if n < frameHeaderSize || n > len(data) {
				t.Fatalf("frame length %d of %d bytes", n, len(data))
			}
			checkRecordsRoundTrip(t, &c, raw)
		}

		// 2. The same bytes as the payload of a frame with valid checksums, so
		// that the decompressors and the record parser see hostile input.
		// data[0] picks the flags, data[1:3] the announced decoded length.
		if len(data) >= 3 {
			flags := data[0] & flagsKnown &^ flagEncrypted // sealed frames: FuzzDecodeSealedFrame
			payload := data[3:]
			decoded := int(binary.LittleEndian.Uint16(data[1:3]))
			if flags&flagCompressed == 0 {
				decoded = len(payload)
			}
			frame := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
			frame = append(frame, payload...)
			putFrameHeader(frame[:frameHeaderSize], payload, decoded, flags)
			a := allocatedBy(func() { raw, n, err = c.decodeFrame(frame, 1) })
			if a > allocLimit(len(frame)) {
				t.Fatalf("decoding %d bytes allocated %d", len(frame), a)
			}
			if err == nil {
				if len(raw) != decoded || n != len(frame) {
					t.Fatalf("decoded %d bytes of %d announced, frame %d of %d", len(raw), decoded, n, len(frame))
				}
				checkRecordsRoundTrip(t, &c, raw)
			} else if !errors.Is(err, errInvalid) && !errors.Is(err, errHeaderChecksum) {
				t.Fatalf("unexpected error class: %v", err)
			}
		}

		// 3. The bytes as a record payload.
		checkRecordsRoundTrip(t, &c, data)
	})
}

// checkRecordsRoundTrip: if raw parses as records, encoding them again gives
// raw back, and a frame of raw decodes to the same records with every codec.
func checkRecordsRoundTrip(t *testing.T, c *frameCodec, raw []byte) {
	t.Helper()
	var recs []Record
	if _, err := parseRecords(raw, func(r Record) error { recs = append(recs, r); return nil }); err != nil {
		if !errors.Is(err, errInvalid) {
			t.Fatalf("parseRecords: unexpected error class: %v", err)
		}
		return
	}
	// Varints have more than one encoding; compare records, not bytes.
	again := encodeRecords(recs)
	for _, codec := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
		frame, err := c.appendFrame([]byte("prefix"), again, codec, 1, 7)
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := c.decodeFrame(frame[len("prefix"):], 7)
		if err != nil || n != len(frame)-len("prefix") || !bytes.Equal(got, again) {
			t.Fatalf("%v frame did not round-trip: %v", codec, err)
		}
		var back []Record
		if _, err := parseRecords(got, func(r Record) error { back = append(back, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if !equalRecords(back, recs) {
			t.Fatalf("%v: records changed in a round trip", codec)
		}
	}
}

// FuzzRecovery appends arbitrary bytes to a valid final segment. Open must
// either recover at least the valid records (and then accept appends) or
// refuse with ErrCorrupt; never panic.
func FuzzRecovery(f *testing.F) {
	base := f.TempDir()
	cfg := Config{Dir: base, FS: fastFS, MinCompressSize: 1}
	w, _ := openAll(f, cfg)
	batches := [][]Record{fuzzRecords()[:1], fuzzRecords()[1:]}
	var want []Record
	for _, b := range batches {
		want = append(want, b...)
		mustAppend(f, w, b, false)
	}
	mustClose(f, w)
	seg := filepath.Join(base, segmentName(1))
	orig, err := os.ReadFile(seg)
	if err != nil {
		f.Fatal(err)
	}
	offs := frameOffsets(f, base)[segmentName(1)]
	lastFrame := orig[offs[len(offs)-1]:]

	f.Add([]byte{})
	f.Add(make([]byte, 100))
	f.Add(slices.Clone(lastFrame))                    // a valid extra frame
	f.Add(lastFrame[:len(lastFrame)-5])               // a torn extra frame
	f.Add(append(slices.Clone(lastFrame), 1, 2, 3))   // valid frame, then garbage
	f.Add(append(make([]byte, 30), lastFrame[:9]...)) // zeros then non-zero

	extra := Record{Shard: 99, Type: RecordEntry, Index: 1, Data: []byte("appended after recovery")}
	dir := "/wal"
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := newMemFS()
		mem.WriteFile(filepath.Join(dir, segmentName(1)), append(slices.Clone(orig), data...))
		rep, verr := Verify(mem, dir)
		cfg := Config{Dir: dir, FS: mem}
		w, got, err := tryOpen(cfg)
		if (err == nil) != (verr == nil) {
			t.Fatalf("Open = %v but Verify = %v", err, verr)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want nil or ErrCorrupt", err)
			}
			return
		}
		if len(got) < len(want) || !equalRecords(got[:len(want)], want) {
			t.Fatalf("recovered %d records, not a superset of the %d valid ones", len(got), len(want))
		}
		if !slices.ContainsFunc(data, func(b byte) bool { return b != 0 }) && len(got) != len(want) {
			t.Fatalf("zero tail produced %d extra records", len(got)-len(want))
		}
		if rep.Records != len(got) {
			t.Fatalf("Verify counted %d records, Open replayed %d", rep.Records, len(got))
		}
		mustAppend(t, w, []Record{extra}, true)
		mustClose(t, w)
		checkRecords(t, replayAll(t, cfg), append(got, extra))
	})
}

// FuzzDecodeSealedFrame is FuzzDecodeFrame for a WAL with a Cipher: arbitrary
// bytes as a frame, and as the sealed payload of a frame with valid
// checksums and the encrypted flag, decode only if they are a frame the
// Cipher sealed (never, for bytes the fuzzer makes up), fail with a damage
// class or a key error, and never allocate beyond the limit; records round
// trip through sealed frames of every codec.
func FuzzDecodeSealedFrame(f *testing.F) {
	master, err := crypt.ParseMasterKey(bytes.Repeat([]byte{0x42}, crypt.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	cipher, err := crypt.Create(noSyncFS{vfs.Default}, f.TempDir(), master)
	if err != nil {
		f.Fatal(err)
	}
	var c frameCodec
	if c.sealer, err = cipher.NewSealer(cryptDomain); err != nil {
		f.Fatal(err)
	}
	c.opener = cipher.NewOpener(cryptDomain)
	raw := encodeRecords(fuzzRecords())
	for _, codec := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
		fr, err := c.appendFrame(nil, raw, codec, 1, 1)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fr)
		f.Add(fr[:len(fr)-3])
	}
	f.Add(make([]byte, frameHeaderSize+crypt.Overhead))
	f.Fuzz(func(t *testing.T, data []byte) {
		known := func(err error) bool {
			for _, e := range []error{errInvalid, errHeaderChecksum, errShortHeader, errPastEOF, errPayloadCRC, crypt.ErrWrongKey, crypt.ErrNotEncrypted} {
				if errors.Is(err, e) {
					return true
				}
			}
			return false
		}
		var got []byte
		var err error
		if a := allocatedBy(func() { got, _, err = c.decodeFrame(data, 1) }); a > allocLimit(len(data)) {
			t.Fatalf("decoding %d bytes allocated %d", len(data), a)
		}
		if err == nil {
			checkRecordsRoundTrip(t, &c, got)
		} else if !known(err) {
			t.Fatalf("unexpected error class: %v", err)
		}
		if len(data) >= 3 {
			flags := data[0]&(flagCompressed|flagS2) | flagEncrypted
			payload := data[3:]
			decoded := int(binary.LittleEndian.Uint16(data[1:3]))
			frame := make([]byte, frameHeaderSize, frameHeaderSize+len(payload))
			frame = append(frame, payload...)
			putFrameHeader(frame[:frameHeaderSize], payload, decoded, flags)
			if _, _, err := c.decodeFrame(frame, 1); err == nil {
				t.Fatal("made-up bytes opened as a sealed frame")
			} else if !known(err) {
				t.Fatalf("unexpected error class: %v", err)
			}
		}
	})
}
