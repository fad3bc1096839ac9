package crypt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"testing"
)

// FuzzParseMasterKey: any file content either parses to a key, which the
// two accepted encodings of it parse back to, or is refused; never a panic.
func FuzzParseMasterKey(f *testing.F) {
	for _, s := range []string{"", "\n", string(make([]byte, 32)), "0123456789abcdef0123456789abcdef",
		hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef")) + "\n", " 00ff" + string(make([]byte, 60))} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParseMasterKey(b)
		if err != nil {
			return
		}
		if k.k == [KeySize]byte{} {
			t.Fatal("accepted an all-zero key")
		}
		for _, enc := range [][]byte{k.k[:], []byte(hex.EncodeToString(k.k[:]) + "\n")} {
			k2, err := ParseMasterKey(enc)
			if err != nil || !k2.Equal(k) {
				t.Fatalf("re-encoded key %q: %v", enc, err)
			}
		}
	})
}

// fuzzCipher is a fixed key ring for the fuzz targets: its keys file and
// master key.
func fuzzCipher(t testing.TB) (*Cipher, MasterKey, []byte) {
	master, err := ParseMasterKey(bytes.Repeat([]byte{0x5a}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[uint32]*[KeySize]byte{1: {1}, 2: {2}}
	kf, err := wrapKeys(master, 2, keys)
	if err != nil {
		t.Fatal(err)
	}
	return &Cipher{current: 2, keys: keys}, master, kf.encode()
}

// FuzzKeysFile: arbitrary bytes as a keys file parse or fail with
// ErrCorrupt; what parses encodes back to the same bytes; unwrapping under
// the master key yields keys or ErrCorrupt/ErrWrongKey.
func FuzzKeysFile(f *testing.F) {
	_, master, good := fuzzCipher(f)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte(keysMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkKeysFile(t, master, b)
		// With the checksum made right, mutations reach the field checks.
		if len(b) >= 4 {
			b = bytes.Clone(b)
			binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
			checkKeysFile(t, master, b)
		}
	})
}

func checkKeysFile(t *testing.T, master MasterKey, b []byte) {
	kf, err := parseKeysFile(b)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error not ErrCorrupt: %v", err)
		}
		return
	}
	if !bytes.Equal(kf.encode(), b) {
		t.Fatal("a parsed keys file does not encode back to its bytes")
	}
	keys, err := kf.unwrap(master)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey) {
			t.Fatalf("unwrap: %v", err)
		}
		return
	}
	if len(keys) != len(kf.entries) || keys[kf.current] == nil {
		t.Fatalf("%d keys unwrapped of %d, current %d", len(keys), len(kf.entries), kf.current)
	}
}

// FuzzOpenFrame: arbitrary bytes as a sealed frame are refused with
// ErrCorrupt, ErrWrongKey or ErrAuth; a frame that opens was sealed by the
// key ring (only the seeds can).
func FuzzOpenFrame(f *testing.F) {
	c, _, _ := fuzzCipher(f)
	s, err := c.NewSealer("wal")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.SealInPlace(append(make([]byte, PrefixSize), "hello"...), []byte("ad")), []byte("ad"))
	f.Add(make([]byte, Overhead), []byte{})
	f.Fuzz(func(t *testing.T, b, ad []byte) {
		pt, err := c.NewOpener("wal").OpenInPlace(bytes.Clone(b), ad)
		switch {
		case err == nil:
			if len(pt) != len(b)-Overhead {
				t.Fatalf("%d bytes of plaintext from %d sealed", len(pt), len(b))
			}
		case !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrAuth):
			t.Fatalf("unexpected error: %v", err)
		}
	})
}

// FuzzStream: arbitrary bytes as a sealed stream give an error of a known
// kind, or (only for an intact stream) plaintext followed by io.EOF;
// allocation stays bounded by the chunk size.
func FuzzStream(f *testing.F) {
	c, _, _ := fuzzCipher(f)
	f.Add(sealStream(f, c, []byte("a small snapshot"), 1))
	f.Add(sealStream(f, c, bytes.Repeat([]byte{7}, streamChunk+3), 2))
	f.Add([]byte(StreamMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := c.NewReader(bytes.NewReader(b), "snap")
		if err == nil {
			_, err = io.Copy(io.Discard, r)
			if err == nil {
				// An intact stream: it reads the same again.
				r2, _ := c.NewReader(bytes.NewReader(b), "snap")
				if _, err := io.Copy(io.Discard, r2); err != nil {
					t.Fatalf("an intact stream failed the second time: %v", err)
				}
				return
			}
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrAuth) {
			t.Fatalf("unexpected error: %v", err)
		}
	})
}
