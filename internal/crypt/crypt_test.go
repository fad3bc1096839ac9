package crypt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distkv/distkv/internal/vfs"
)

func testKey(t testing.TB, b byte) MasterKey {
	t.Helper()
	k, err := ParseMasterKey(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseMasterKey(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789ABCDEF")
	hexKey := hex.EncodeToString(raw)
	for _, tc := range []struct {
		name string
		in   string
		want string // "" for success
	}{
		{"raw 32 bytes", string(raw), ""},
		{"hex", hexKey, ""},
		{"hex with newline", hexKey + "\n", ""},
		{"upper-case hex with CRLF and spaces", "  " + strings.ToUpper(hexKey) + "\r\n", ""},
		{"empty", "", "found 0 bytes"},
		{"31 bytes", string(raw[:31]), "found 31 bytes"},
		{"33 bytes", string(raw) + "x", "found 33 bytes"},
		{"hex too short", hexKey[:62] + "\n", "found 63 bytes (62 after trimming"},
		{"not hex", strings.Repeat("zz", 32), "not all of them hex digits"},
		{"base64", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERUY=", "want 32 raw bytes or 64 hex digits"},
		{"all zero raw", string(make([]byte, 32)), "all zero"},
		{"all zero hex", strings.Repeat("0", 64), "all zero"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseMasterKey([]byte(tc.in))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.k != [32]byte(raw) {
				t.Fatalf("key %x, want %x", k.k, raw)
			}
		})
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	k, err := LoadMasterKey(good)
	if err != nil {
		t.Fatal(err)
	}
	if k.k != [32]byte(bytes.Repeat([]byte{0xab}, 32)) {
		t.Fatalf("key %x", k.k)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 4096), 0o600)
	if _, err := LoadMasterKey(big); err == nil || !strings.Contains(err.Error(), big) {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := LoadMasterKey(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("two keys, one fingerprint")
	}
	if a.Fingerprint() != testKey(t, 1).Fingerprint() {
		t.Fatal("fingerprint not stable")
	}
	if !a.Equal(testKey(t, 1)) || a.Equal(b) {
		t.Fatal("Equal")
	}
}

func TestKeyringCreateLoadRotate(t *testing.T) {
	dir := t.TempDir()
	fs := vfs.Default
	k1, k2, k3 := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	if ok, err := HasKeys(fs, dir); err != nil || ok {
		t.Fatalf("HasKeys on an empty dir: %v %v", ok, err)
	}
	c1, err := Create(fs, dir, k1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(fs, dir, k1); err == nil {
		t.Fatal("Create over an existing keys file succeeded")
	}
	if st, err := os.Stat(filepath.Join(dir, KeysFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys file: %v, mode %v; want 0600", err, st.Mode())
	}
	s1, err := c1.NewSealer("wal")
	if err != nil {
		t.Fatal(err)
	}
	frame1 := s1.SealInPlace(append(make([]byte, PrefixSize), "under key 1"...), nil)

	// The wrong key is refused and says so, with both fingerprints.
	_, err = Load(fs, dir, k2)
	if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), k1.Fingerprint().String()) ||
		!strings.Contains(err.Error(), k2.Fingerprint().String()) {
		t.Fatalf("Load with the wrong key: %v", err)
	}
	// Rotation needs the key now in use.
	if _, err := Rotate(fs, dir, k2, k3); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Rotate with the wrong old key: %v", err)
	}
	c2, err := Rotate(fs, dir, k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	if c2.CurrentKeyID() == c1.CurrentKeyID() || len(c2.KeyIDs()) != 2 {
		t.Fatalf("after rotation: current %d, keys %v", c2.CurrentKeyID(), c2.KeyIDs())
	}
	if _, err := Load(fs, dir, k1); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("old master key after rotation: %v", err)
	}
	c2, err = Load(fs, dir, k2)
	if err != nil {
		t.Fatal(err)
	}
	// Data sealed under data key 1 opens after the rotation.
	pt, err := c2.NewOpener("wal").OpenInPlace(bytes.Clone(frame1), nil)
	if err != nil || string(pt) != "under key 1" {
		t.Fatalf("old frame after rotation: %q, %v", pt, err)
	}
	// New data is sealed under the new data key, which the old Cipher lacks.
	s2, _ := c2.NewSealer("wal")
	frame2 := s2.SealInPlace(append(make([]byte, PrefixSize), "under key 2"...), nil)
	if id, _ := KeyID(frame2); id != c2.CurrentKeyID() {
		t.Fatalf("new frame under key %d", id)
	}
	if _, err := c1.NewOpener("wal").OpenInPlace(bytes.Clone(frame2), nil); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("frame of a newer key with the old key ring: %v", err)
	}
	// Data-key-only rotation: same master key.
	c3, err := Rotate(fs, dir, k2, k2)
	if err != nil || len(c3.KeyIDs()) != 3 || slices.Contains(c2.KeyIDs(), c3.CurrentKeyID()) {
		t.Fatalf("data key rotation: %v", err)
	}
	if fp, err := FingerprintOf(fs, dir); err != nil || fp != k2.Fingerprint() {
		t.Fatalf("FingerprintOf: %v %v", fp, err)
	}
}

func TestKeysFileDamage(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, 7)
	if _, err := Create(vfs.Default, dir, k); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeysFile)
	good, _ := os.ReadFile(path)
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		os.WriteFile(path, b, 0o600)
		if _, err := Load(vfs.Default, dir, k); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v, want ErrCorrupt", i, err)
		}
	}
	// A wrapped key damaged under a recomputed checksum: still refused.
	kf, err := parseKeysFile(good)
	if err != nil {
		t.Fatal(err)
	}
	kf.entries[0].wrapped[3] ^= 1
	os.WriteFile(path, kf.encode(), 0o600)
	if _, err := Load(vfs.Default, dir, k); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged wrapped key: %v", err)
	}
	for _, n := range []int{0, 10, len(good) - 1} {
		os.WriteFile(path, good[:n], 0o600)
		if _, err := Load(vfs.Default, dir, k); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
}

func TestSealOpen(t *testing.T) {
	dir := t.TempDir()
	c, err := Create(vfs.Default, dir, testKey(t, 9))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.NewSealer("wal")
	o := c.NewOpener("wal")
	ad := []byte("segment 3")
	var frames [][]byte
	for i, msg := range []string{"", "a", strings.Repeat("payload ", 1000)} {
		f := s.SealInPlace(append(make([]byte, PrefixSize), msg...), ad)
		if len(f) != len(msg)+Overhead {
			t.Fatalf("frame %d: %d bytes for %d", i, len(f), len(msg))
		}
		if len(msg) > 8 && bytes.Contains(f, []byte("payload")) {
			t.Fatal("plaintext visible in the sealed frame")
		}
		frames = append(frames, f)
		pt, err := o.OpenInPlace(bytes.Clone(f), ad)
		if err != nil || string(pt) != msg {
			t.Fatalf("frame %d: %q, %v", i, pt, err)
		}
	}
	// Nonces never repeat within a session, nor salts across sessions.
	if bytes.Equal(frames[1][:PrefixSize], frames[2][:PrefixSize]) {
		t.Fatal("two frames with one prefix")
	}
	s2, _ := c.NewSealer("wal")
	f2 := s2.SealInPlace(append(make([]byte, PrefixSize), 'a'), ad)
	if bytes.Equal(f2[4:4+saltSize], frames[1][4:4+saltSize]) {
		t.Fatal("two sessions with one salt")
	}
	// Every flipped bit, other additional data, another domain: refused.
	f := frames[2]
	for i := range f {
		b := bytes.Clone(f)
		b[i] ^= 1
		_, err := o.OpenInPlace(b, ad)
		if i < 4 {
			if !errors.Is(err, ErrWrongKey) {
				t.Fatalf("key id byte %d flipped: %v", i, err)
			}
		} else if !errors.Is(err, ErrAuth) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := o.OpenInPlace(bytes.Clone(f), []byte("segment 4")); !errors.Is(err, ErrAuth) {
		t.Fatalf("other additional data: %v", err)
	}
	if _, err := c.NewOpener("snap").OpenInPlace(bytes.Clone(f), ad); !errors.Is(err, ErrAuth) {
		t.Fatalf("other domain: %v", err)
	}
	if _, err := o.OpenInPlace(f[:Overhead-1], ad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short frame: %v", err)
	}
}

func sealStream(t testing.TB, c *Cipher, plain []byte, writes int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := c.NewWriter(&buf, "snap")
	if err != nil {
		t.Fatal(err)
	}
	step := max(1, len(plain)/writes)
	for p := plain; len(p) > 0; {
		k := min(step, len(p))
		if _, err := w.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openStream(c *Cipher, sealed []byte) ([]byte, error) {
	r, err := c.NewReader(bytes.NewReader(sealed), "snap")
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestStream(t *testing.T) {
	c, err := Create(vfs.Default, t.TempDir(), testKey(t, 5))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, streamChunk - 1, streamChunk, streamChunk + 1, 3*streamChunk + 17} {
		plain := bytes.Repeat([]byte("secret-value "), size/13+1)[:size]
		for _, writes := range []int{1, 7} {
			sealed := sealStream(t, c, plain, writes)
			if size > 20 && bytes.Contains(sealed, []byte("secret-value")) {
				t.Fatal("plaintext in the sealed stream")
			}
			got, err := openStream(c, sealed)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("size %d: %d bytes back, %v", size, len(got), err)
			}
			// Every truncation is refused, at chunk boundaries too.
			for n := 0; n < len(sealed); n += max(1, len(sealed)/50) {
				if _, err := openStream(c, sealed[:n]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("size %d cut at %d of %d: %v", size, n, len(sealed), err)
				}
			}
			for _, n := range chunkBoundaries(sealed) {
				if _, err := openStream(c, sealed[:n]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("size %d cut at chunk boundary %d: %v", size, n, err)
				}
			}
			if _, err := openStream(c, append(bytes.Clone(sealed), 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("size %d with a byte after it: %v", size, err)
			}
		}
	}
	sealed := sealStream(t, c, bytes.Repeat([]byte{1}, 2*streamChunk+5), 1)
	for _, i := range []int{0, 12, 20, streamHeader - 1, streamHeader + 2, streamHeader + 4, len(sealed) - 1} {
		b := bytes.Clone(sealed)
		b[i] ^= 0x10
		if _, err := openStream(c, b); !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrAuth) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	// Chunks swapped: refused.
	bounds := chunkBoundaries(sealed)
	a, b := sealed[bounds[0]:bounds[1]], sealed[bounds[1]:bounds[2]]
	swapped := append(append(append([]byte{}, sealed[:bounds[0]]...), b...), a...)
	swapped = append(swapped, sealed[bounds[2]:]...)
	if _, err := openStream(c, swapped); !errors.Is(err, ErrAuth) {
		t.Fatalf("chunks swapped: %v", err)
	}
	other, _ := Create(vfs.Default, t.TempDir(), testKey(t, 5))
	if _, err := openStream(other, sealed); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("another key ring: %v", err)
	}
}

// chunkBoundaries returns the offsets where the chunks of a sealed stream start.
func chunkBoundaries(sealed []byte) []int {
	var out []int
	for off := streamHeader; off+4 <= len(sealed); {
		out = append(out, off)
		word := int(uint32(sealed[off]) | uint32(sealed[off+1])<<8 | uint32(sealed[off+2])<<16 | uint32(sealed[off+3]&0x7f)<<24)
		off += 4 + word
	}
	return out
}

// BenchmarkSealInPlace: the cost sealing adds to one WAL frame of 256 and of
// 64 KiB bytes.
func BenchmarkSealInPlace(b *testing.B) {
	c, err := Create(vfs.Default, b.TempDir(), testKey(b, 3))
	if err != nil {
		b.Fatal(err)
	}
	s, _ := c.NewSealer("wal")
	for _, size := range []int{256, 64 << 10} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			buf := make([]byte, PrefixSize+size, PrefixSize+size+TagSize)
			ad := []byte("0123456789abc")
			b.SetBytes(int64(size))
			for b.Loop() {
				s.SealInPlace(buf[:PrefixSize+size], ad)
			}
		})
	}
}
