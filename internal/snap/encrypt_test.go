package snap

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

func testMasterKey(t testing.TB, b byte) crypt.MasterKey {
	t.Helper()
	k, err := crypt.ParseMasterKey(bytes.Repeat([]byte{b}, crypt.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testCipher makes a keys file in a directory of its own and returns its
// Cipher and that directory.
func testCipher(t testing.TB, master crypt.MasterKey) (*crypt.Cipher, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := crypt.Create(vfs.Default, dir, master)
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func encryptedStore(t *testing.T, dir string, c *crypt.Cipher) (*Store, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	s, err := OpenStore(StoreConfig{Dir: dir, Cipher: c, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s, &logs
}

// secretValue is a value that compression leaves intact (random bytes), so
// that a snapshot in the clear shows it verbatim.
var secretValue = func() []byte {
	b := make([]byte, 64)
	rand.Read(b)
	return b
}()

// saveSecret saves a snapshot whose one pair holds secretValue.
func saveSecret(t *testing.T, s *Store, shard, index uint64) {
	t.Helper()
	p := kv.KeyValue{Key: []byte("secret"), Value: secretValue, Version: 1, Revision: 1, CreateRevision: 1}
	if err := s.Save(Meta{Shard: shard, Index: index}, slices.Values([]kv.KeyValue{p})); err != nil {
		t.Fatal(err)
	}
}

// holdsSecret reports whether a file in dir holds secretValue.
func holdsSecret(t *testing.T, dir string) bool {
	t.Helper()
	names := listDir(t, dir)
	if len(names) == 0 {
		t.Fatal("no files")
	}
	found := false
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		found = found || bytes.Contains(b, secretValue)
	}
	return found
}

func tryLoad(s *Store, shard uint64) (Meta, error) {
	return s.Load(shard, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
		for _, err := range pairs {
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// TestEncryptedSaveLoad: with a Cipher, snapshots load back whole, every file
// is sealed (no value in the clear), and a store without the key, with
// another key ring or over files in the clear refuses with an error that
// says which, never ErrCorrupt (which Load would skip).
func TestEncryptedSaveLoad(t *testing.T) {
	c, _ := testCipher(t, testMasterKey(t, 1))
	dir := filepath.Join(t.TempDir(), "snap")
	s, _ := encryptedStore(t, dir, c)
	save(t, s, 1, 100, 50)
	save(t, s, 1, 5000, 3000)
	load(t, s, 1, 5000, 3000)
	saveSecret(t, s, 2, 1)
	if holdsSecret(t, dir) {
		t.Fatal("a value in the clear in a sealed snapshot file")
	}
	// The check can fail: a store without a key shows the value.
	plainCheck := t.TempDir()
	p, _ := newTestStore(t, vfs.Default, plainCheck)
	saveSecret(t, p, 2, 1)
	if !holdsSecret(t, plainCheck) {
		t.Fatal("the value is not visible even in the clear: the check above proves nothing")
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("snapshot dir: %v, mode %v", err, st.Mode().Perm())
	}
	for _, name := range listDir(t, dir) {
		if st, _ := os.Stat(filepath.Join(dir, name)); st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v", name, st.Mode().Perm())
		}
	}

	other, _ := testCipher(t, testMasterKey(t, 1))
	for _, tc := range []struct {
		name   string
		cipher *crypt.Cipher
		want   error
	}{{"no key", nil, crypt.ErrKeyRequired}, {"other key ring", other, crypt.ErrWrongKey}} {
		s2, err := OpenStore(StoreConfig{Dir: dir, Cipher: tc.cipher})
		if err != nil {
			t.Fatal(err)
		}
		_, err = tryLoad(s2, 1)
		if !errors.Is(err, tc.want) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: Load = %v, want %v and not ErrCorrupt", tc.name, err, tc.want)
		}
		if _, err := s2.Open(1, 5000); !errors.Is(err, tc.want) {
			t.Fatalf("%s: Open = %v, want %v", tc.name, err, tc.want)
		}
	}

	plainDir := t.TempDir()
	plain, _ := newTestStore(t, vfs.Default, plainDir)
	save(t, plain, 1, 100, 5)
	s3, _ := encryptedStore(t, plainDir, c)
	if _, err := tryLoad(s3, 1); !errors.Is(err, crypt.ErrNotEncrypted) {
		t.Fatalf("a file in the clear with a key: %v", err)
	}
}

// TestEncryptedDamageFallsBack: a sealed file damaged anywhere is ErrCorrupt,
// and Load falls back to the older snapshot as for a damaged file in the
// clear.
func TestEncryptedDamageFallsBack(t *testing.T) {
	c, _ := testCipher(t, testMasterKey(t, 1))
	dir := t.TempDir()
	s, logs := encryptedStore(t, dir, c)
	save(t, s, 1, 100, 50)
	save(t, s, 1, 2200, 2000)
	newest := filepath.Join(dir, fileName(1, 2200))
	orig, _ := os.ReadFile(newest)
	for _, at := range []int{3, 20, 60, len(orig) / 2, len(orig) - 1} {
		os.WriteFile(newest, flip(orig, at), 0o600)
		load(t, s, 1, 100, 50)
		if !strings.Contains(logs.String(), "skipping damaged snapshot") {
			t.Fatalf("byte %d flipped: no warning", at)
		}
	}
	for _, n := range []int{10, len(orig) / 3, len(orig) - 16} {
		os.WriteFile(newest, orig[:n], 0o600)
		load(t, s, 1, 100, 50)
	}
	os.Remove(filepath.Join(dir, fileName(1, 100)))
	if _, err := tryLoad(s, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("only a damaged file: %v", err)
	}
}

// TestEncryptedReceive: the stream between nodes is the plain snapshot
// stream: a store with a key seals what it receives under its own key, and
// Open gives back the very stream received; stores with other keys, or none,
// exchange snapshots.
func TestEncryptedReceive(t *testing.T) {
	cA, _ := testCipher(t, testMasterKey(t, 1))
	cB, _ := testCipher(t, testMasterKey(t, 2))
	src, _ := encryptedStore(t, t.TempDir(), cA)
	meta := Meta{Shard: 1, Index: 10, Term: 2, Extra: []byte("x")}
	// A large random value: zstd stores it in raw blocks, so the plain
	// stream shows a window of it verbatim, and the stream spans several
	// sealed chunks.
	big := make([]byte, 256<<10)
	rand.Read(big)
	needle := big[200000:200064]
	pairs := append(slices.Collect(testPairs(100)), kv.KeyValue{Key: []byte("secret"), Value: big, Version: 1, Revision: 1, CreateRevision: 1})
	if err := src.Save(meta, slices.Values(pairs)); err != nil {
		t.Fatal(err)
	}
	f, err := src.Open(1, 10)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(stream, needle) {
		t.Fatal("the stream Open gives does not show the value: not the plain stream")
	}
	if m, err := Decode(bytes.NewReader(stream), func(kv.KeyValue) error { return nil }); err != nil || m.Index != 10 {
		t.Fatalf("Open's stream is not a plain snapshot stream: %+v, %v", m, err)
	}

	for _, tc := range []struct {
		name   string
		cipher *crypt.Cipher
	}{{"other key", cB}, {"no key", nil}} {
		dir := t.TempDir()
		dst, _ := encryptedStore(t, dir, tc.cipher)
		rec, err := dst.Receive(bytes.NewReader(stream))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := rec.Install(); err != nil {
			t.Fatal(err)
		}
		file, _ := os.ReadFile(filepath.Join(dir, fileName(1, 10)))
		if tc.cipher != nil && bytes.Contains(file, needle) {
			t.Fatalf("%s: a received snapshot stored in the clear", tc.name)
		}
		var got []kv.KeyValue
		if _, err := dst.Load(1, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
			for p, err := range pairs {
				if err != nil {
					return err
				}
				got = append(got, p)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: Load: %v", tc.name, err)
		}
		checkPairs(t, got, pairs)
		back, err := dst.Open(1, 10)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := io.ReadAll(back)
		back.Close()
		if !bytes.Equal(again, stream) {
			t.Fatalf("%s: Open gave %d bytes, %d were received", tc.name, len(again), len(stream))
		}
		// Damaged streams are refused and leave nothing behind.
		if _, err := dst.Receive(bytes.NewReader(flip(stream, len(stream)/2))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: damaged stream: %v", tc.name, err)
		}
		if names := listDir(t, dir); len(names) != 1 {
			t.Fatalf("%s: files after a refused stream: %q", tc.name, names)
		}
	}
}

// TestEncryptedRotation: after the key ring is rotated, snapshots sealed
// under the old data key load, and new ones are sealed under the new one.
func TestEncryptedRotation(t *testing.T) {
	k1, k2 := testMasterKey(t, 1), testMasterKey(t, 2)
	c1, keysDir := testCipher(t, k1)
	dir := t.TempDir()
	s1, _ := encryptedStore(t, dir, c1)
	save(t, s1, 1, 100, 50)
	c2, err := crypt.Rotate(vfs.Default, keysDir, k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := encryptedStore(t, dir, c2)
	load(t, s2, 1, 100, 50)
	save(t, s2, 1, 200, 50)
	load(t, s2, 1, 200, 50)
	if _, err := s1.Open(1, 200); !errors.Is(err, crypt.ErrWrongKey) {
		t.Fatalf("the old key ring on a snapshot of the new data key: %v", err)
	}
}
