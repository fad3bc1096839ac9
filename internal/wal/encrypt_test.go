package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/vfs"
)

// secret is a value the tests write and then look for in every byte on disk.
const secret = "s3cret-plaintext-value"

func testMasterKey(t testing.TB, b byte) crypt.MasterKey {
	t.Helper()
	k, err := crypt.ParseMasterKey(bytes.Repeat([]byte{b}, crypt.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCipher makes a keys file in a directory of its own.
func testCipher(t testing.TB, master crypt.MasterKey) (*crypt.Cipher, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := crypt.Create(vfs.Default, dir, master)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func secretRecords(n int) []Record {
	var recs []Record
	for i := range n {
		recs = append(recs,
			Record{Shard: 1, Type: RecordEntry, Index: uint64(i + 1), Data: []byte(fmt.Sprintf(`{"key":"k%d","value":"%s"}`, i, secret))},
			Record{Shard: 1, Type: RecordHardState, Data: []byte(fmt.Sprintf("term=1 commit=%d %s", i+1, secret))})
	}
	return recs
}

// checkNoPlaintext fails if any file under dir holds needle.
func checkNoPlaintext(t testing.TB, dir, needle string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if i := bytes.Index(b, []byte(needle)); i >= 0 {
			t.Errorf("%s holds the plaintext %q at byte %d", path, needle, i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", dir)
	}
}

// TestEncryptedRoundTrip: with a Cipher, records come back the same after a
// reopen, across segment cuts (carry-over frames included) and with every
// codec, and no byte on disk holds their plaintext.
func TestEncryptedRoundTrip(t *testing.T) {
	c, _ := testCipher(t, testMasterKey(t, 1))
	// The check can fail: without a Cipher and compression the WAL shows
	// the value.
	plain := Config{Dir: t.TempDir(), Compression: CompressionNone}
	w, _ := openAll(t, plain)
	mustAppend(t, w, secretRecords(1), true)
	mustClose(t, w)
	if b, _ := os.ReadFile(filepath.Join(plain.Dir, segmentName(1))); !bytes.Contains(b, []byte(secret)) {
		t.Fatal("a WAL in the clear does not show the value: the checks below prove nothing")
	}

	for _, codec := range []Compression{CompressionNone, CompressionZstd, CompressionS2} {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/direct=%v", codec, direct), func(t *testing.T) {
				cfg := Config{Dir: t.TempDir(), Cipher: c, Compression: codec, MinCompressSize: 1, SegmentSize: 4 << 10, PreallocSize: 4 << 10, Direct: direct}
				w, _ := openAll(t, cfg)
				want := secretRecords(200)
				for i := 0; i < len(want); i += 4 {
					mustAppend(t, w, want[i:i+4], i%8 == 0)
				}
				mustClose(t, w)
				if n := len(segmentFiles(t, cfg.Dir)); n < 3 {
					t.Fatalf("%d segments; the test wants cuts", n)
				}
				checkRecords(t, withoutCarryOver(replayAll(t, cfg)), want)
				checkNoPlaintext(t, cfg.Dir, secret)

				var scanned []Record
				if err := ScanEncrypted(vfs.Default, cfg.Dir, c, func(_ string, _ int64, r Record) error {
					scanned = append(scanned, r)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				checkRecords(t, withoutCarryOver(scanned), want)
				rep, err := VerifyEncrypted(vfs.Default, cfg.Dir, c)
				if err != nil || rep.Records != len(scanned) {
					t.Fatalf("VerifyEncrypted: %+v, %v", rep, err)
				}
			})
		}
	}
}

// TestEncryptedWrongOrMissingKey: a WAL written with one key refuses to open
// without it, with another key ring, and a WAL in the clear refuses a key;
// each with an error that says which.
func TestEncryptedWrongOrMissingKey(t *testing.T) {
	c, _ := testCipher(t, testMasterKey(t, 1))
	other, _ := testCipher(t, testMasterKey(t, 1)) // same master key, other data keys
	cfg := Config{Dir: t.TempDir(), Cipher: c}
	w, _ := openAll(t, cfg)
	mustAppend(t, w, secretRecords(3), true)
	mustClose(t, w)

	for _, tc := range []struct {
		name   string
		cipher *crypt.Cipher
		want   error
		text   string
	}{
		{"no key", nil, crypt.ErrKeyRequired, "no encryption key was given"},
		{"other key ring", other, crypt.ErrWrongKey, "which the keys file does not hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfg
			cfg.Cipher = tc.cipher
			_, recs, err := tryOpen(cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), segmentName(1)) {
				t.Fatalf("Open: %v, want %v naming the segment", err, tc.want)
			}
			if errors.Is(err, ErrCorrupt) {
				t.Fatalf("a key problem reported as corruption: %v", err)
			}
			if len(recs) != 0 {
				t.Fatalf("%d records replayed with the wrong key", len(recs))
			}
			if _, err := VerifyEncrypted(vfs.Default, cfg.Dir, tc.cipher); !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v", err)
			}
		})
	}

	plain := Config{Dir: t.TempDir()}
	w, _ = openAll(t, plain)
	mustAppend(t, w, secretRecords(1), true)
	mustClose(t, w)
	plain.Cipher = c
	if _, _, err := tryOpen(plain); !errors.Is(err, crypt.ErrNotEncrypted) {
		t.Fatalf("a WAL in the clear opened with a key: %v", err)
	}
}

// TestEncryptedRotation: after the key ring is rotated, a reopened WAL
// writes under the new data key and still reads the frames of the old one.
func TestEncryptedRotation(t *testing.T) {
	k1, k2 := testMasterKey(t, 1), testMasterKey(t, 2)
	c1, keysDir := testCipher(t, k1)
	cfg := Config{Dir: t.TempDir(), Cipher: c1, SegmentSize: 4 << 10}
	w, _ := openAll(t, cfg)
	before := secretRecords(50)
	mustAppend(t, w, before, true)
	mustClose(t, w)

	c2, err := crypt.Rotate(vfs.Default, keysDir, k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cipher = c2
	w, got := openAll(t, cfg)
	checkRecords(t, withoutCarryOver(got), before)
	after := []Record{{Shard: 1, Type: RecordEntry, Index: 51, Data: []byte("after " + secret)}}
	mustAppend(t, w, after, true)
	mustClose(t, w)
	checkRecords(t, withoutCarryOver(replayAll(t, cfg)), append(before, after...))
	checkNoPlaintext(t, cfg.Dir, secret)

	// The new frame is under the new data key: the old key ring cannot open it.
	cfg.Cipher = c1
	if _, _, err := tryOpen(cfg); !errors.Is(err, crypt.ErrWrongKey) {
		t.Fatalf("old key ring on a frame of the new data key: %v", err)
	}
}

// sealedFrames returns the offset and length of every frame in a segment.
func sealedFrames(t *testing.T, b []byte) [][2]int {
	t.Helper()
	var out [][2]int
	for off := segmentHeaderSize; off+frameHeaderSize <= len(b); {
		fh, err := parseFrameHeader(b[off:])
		if err != nil {
			break
		}
		n := frameHeaderSize + int(fh.length)
		out = append(out, [2]int{off, n})
		off += n
	}
	return out
}

// TestEncryptedTamper: a sealed frame altered under a recomputed checksum, or
// moved into another segment, is corruption, not a silent misread; a torn
// sealed frame at the end is still a torn tail.
func TestEncryptedTamper(t *testing.T) {
	c, _ := testCipher(t, testMasterKey(t, 1))
	base := Config{Dir: t.TempDir(), Cipher: c, Compression: CompressionNone, SegmentSize: 4 << 10}
	w, _ := openAll(t, base)
	recs := secretRecords(60)
	for i := 0; i < len(recs); i += 2 {
		mustAppend(t, w, recs[i:i+2], true)
	}
	mustClose(t, w)
	segs := segmentFiles(t, base.Dir)
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	last := segs[len(segs)-1]
	orig, _ := os.ReadFile(last)
	frames := sealedFrames(t, orig)
	if len(frames) < 2 {
		t.Fatalf("%d frames in the last segment", len(frames))
	}

	t.Run("altered", func(t *testing.T) {
		cfg := base
		cfg.Dir = filepath.Join(t.TempDir(), "wal")
		copyDir(t, base.Dir, cfg.Dir)
		b := bytes.Clone(orig)
		off, n := frames[0][0], frames[0][1]
		payload := b[off+frameHeaderSize : off+n]
		payload[len(payload)/2] ^= 0x01
		putFrameHeader(b[off:off+frameHeaderSize], payload, int(binary.LittleEndian.Uint32(b[off+4:])), b[off+8])
		os.WriteFile(filepath.Join(cfg.Dir, filepath.Base(last)), b, 0o600)
		if _, _, err := tryOpen(cfg); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "authentication") {
			t.Fatalf("Open: %v, want ErrCorrupt for a failed authentication", err)
		}
	})
	t.Run("moved to another segment", func(t *testing.T) {
		cfg := base
		cfg.Dir = filepath.Join(t.TempDir(), "wal")
		copyDir(t, base.Dir, cfg.Dir)
		first, _ := os.ReadFile(segs[0])
		f := sealedFrames(t, first)[1]
		b := append(bytes.Clone(orig[:frames[len(frames)-1][0]+frames[len(frames)-1][1]]), first[f[0]:f[0]+f[1]]...)
		os.WriteFile(filepath.Join(cfg.Dir, filepath.Base(last)), b, 0o600)
		if _, _, err := tryOpen(cfg); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open: %v, want ErrCorrupt for a frame of another segment", err)
		}
	})
	t.Run("torn", func(t *testing.T) {
		cfg := base
		cfg.Dir = filepath.Join(t.TempDir(), "wal")
		copyDir(t, base.Dir, cfg.Dir)
		lf := frames[len(frames)-1]
		os.WriteFile(filepath.Join(cfg.Dir, filepath.Base(last)), orig[:lf[0]+lf[1]-5], 0o600)
		var logs logBuffer
		cfg.Logger = logs.logger()
		_, got, err := tryOpen(cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, withoutCarryOver(got), recs[:len(recs)-2])
		if !strings.Contains(logs.String(), "torn") {
			t.Fatalf("no torn-tail warning: %s", logs.String())
		}
	})
}

// TestWALDirIsPrivate: the WAL's directory is 0700 and its segments 0600.
func TestWALDirIsPrivate(t *testing.T) {
	cfg := Config{Dir: filepath.Join(t.TempDir(), "wal")}
	w, _ := openAll(t, cfg)
	mustAppend(t, w, secretRecords(1), true)
	mustClose(t, w)
	st, err := os.Stat(cfg.Dir)
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("WAL dir: %v, mode %v", err, st.Mode().Perm())
	}
	for _, seg := range segmentFiles(t, cfg.Dir) {
		if st, err := os.Stat(seg); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v", seg, err, st.Mode().Perm())
		}
	}
}
