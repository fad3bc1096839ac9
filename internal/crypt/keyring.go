package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	iofs "io/fs"
	"path/filepath"
	"slices"

	"github.com/distkv/distkv/internal/vfs"
)

// KeysFile is the name of the keys file in a data directory.
const KeysFile = "keys"

// The keys file (all integers little-endian):
//
//	[0:8]   magic "DKVKEYS\n"
//	[8]     version (1)         [9:12]  zero
//	[12:20] fingerprint of the master key that wraps the data keys
//	[20:24] key id of the current data key
//	[24:28] number of data keys n (1..MaxDataKeys)
//	n entries of 64 bytes, key ids (random, non-zero) strictly ascending:
//	        key id u32 | nonce [12] | wrapped key [32] | GCM tag [16]
//	CRC32C of every byte before it (u32)
//
// A data key is wrapped with AES-256-GCM under the master key, with a random
// nonce and, as additional data, wrapLabel and its key id, so that entries
// cannot be swapped.
const (
	keysMagic     = "DKVKEYS\n"
	keysVersion   = 1
	keysHeader    = 28
	keyEntrySize  = 4 + 12 + KeySize + 16
	wrapLabel     = "distkv data key"
	keysFileLimit = keysHeader + MaxDataKeys*keyEntrySize + 4
)

// MaxDataKeys bounds the data keys of one keys file: rotations are rare.
const MaxDataKeys = 4096

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keysFile is a parsed keys file, data keys still wrapped.
type keysFile struct {
	master  Fingerprint
	current uint32
	entries []wrappedKey
}

type wrappedKey struct {
	id      uint32
	nonce   [12]byte
	wrapped [KeySize + 16]byte
}

// parseKeysFile checks the layout and checksum of a keys file; it needs no key.
func parseKeysFile(b []byte) (keysFile, error) {
	var kf keysFile
	if len(b) < keysHeader+keyEntrySize+4 {
		return kf, fmt.Errorf("%w: keys file of %d bytes is too short", ErrCorrupt, len(b))
	}
	if len(b) > keysFileLimit {
		return kf, fmt.Errorf("%w: keys file of %d bytes exceeds %d", ErrCorrupt, len(b), keysFileLimit)
	}
	body := b[:len(b)-4]
	if got, want := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, castagnoli); got != want {
		return kf, fmt.Errorf("%w: keys file checksum mismatch", ErrCorrupt)
	}
	switch {
	case string(b[:8]) != keysMagic:
		return kf, fmt.Errorf("%w: not a keys file (magic %q)", ErrCorrupt, b[:8])
	case b[8] != keysVersion:
		return kf, fmt.Errorf("%w: keys file version %d unknown", ErrCorrupt, b[8])
	case b[9] != 0 || b[10] != 0 || b[11] != 0:
		return kf, fmt.Errorf("%w: keys file reserved bytes set", ErrCorrupt)
	}
	copy(kf.master[:], b[12:20])
	kf.current = binary.LittleEndian.Uint32(b[20:])
	n := binary.LittleEndian.Uint32(b[24:])
	if n < 1 || n > MaxDataKeys {
		return kf, fmt.Errorf("%w: keys file holds %d keys", ErrCorrupt, n)
	}
	if want := keysHeader + int(n)*keyEntrySize + 4; len(b) != want {
		return kf, fmt.Errorf("%w: keys file of %d bytes, %d keys need %d", ErrCorrupt, len(b), n, want)
	}
	hasCurrent := false
	for i := range int(n) {
		e := b[keysHeader+i*keyEntrySize:][:keyEntrySize]
		var w wrappedKey
		w.id = binary.LittleEndian.Uint32(e)
		copy(w.nonce[:], e[4:16])
		copy(w.wrapped[:], e[16:])
		if w.id == 0 || (i > 0 && w.id <= kf.entries[i-1].id) {
			return kf, fmt.Errorf("%w: keys file key ids zero or not ascending (entry %d has id %d)", ErrCorrupt, i, w.id)
		}
		hasCurrent = hasCurrent || w.id == kf.current
		kf.entries = append(kf.entries, w)
	}
	if !hasCurrent {
		return kf, fmt.Errorf("%w: keys file names current key %d, which it does not hold", ErrCorrupt, kf.current)
	}
	return kf, nil
}

func (kf keysFile) encode() []byte {
	b := make([]byte, 0, keysHeader+len(kf.entries)*keyEntrySize+4)
	b = append(b, keysMagic...)
	b = append(b, keysVersion, 0, 0, 0)
	b = append(b, kf.master[:]...)
	b = binary.LittleEndian.AppendUint32(b, kf.current)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(kf.entries)))
	for _, e := range kf.entries {
		b = binary.LittleEndian.AppendUint32(b, e.id)
		b = append(b, e.nonce[:]...)
		b = append(b, e.wrapped[:]...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func wrapAD(id uint32) []byte { return binary.LittleEndian.AppendUint32([]byte(wrapLabel), id) }

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // only for a key size other than 16, 24 or 32
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err) // only for a block size other than 16
	}
	return aead
}

// unwrap returns the data keys of kf, unwrapped with master.
func (kf keysFile) unwrap(master MasterKey) (map[uint32]*[KeySize]byte, error) {
	if fp := master.Fingerprint(); fp != kf.master {
		return nil, fmt.Errorf("%w: the key given has fingerprint %s, the data keys are wrapped by the key with fingerprint %s", ErrWrongKey, fp, kf.master)
	}
	aead := newGCM(master.k[:])
	keys := make(map[uint32]*[KeySize]byte, len(kf.entries))
	for _, e := range kf.entries {
		k, err := aead.Open(nil, e.nonce[:], e.wrapped[:], wrapAD(e.id))
		if err != nil {
			// The fingerprint matched, so the key is right: the entry is damaged.
			return nil, fmt.Errorf("%w: data key %d in the keys file fails authentication under the right master key", ErrCorrupt, e.id)
		}
		keys[e.id] = (*[KeySize]byte)(k)
	}
	return keys, nil
}

func wrapKeys(master MasterKey, current uint32, keys map[uint32]*[KeySize]byte) (keysFile, error) {
	kf := keysFile{master: master.Fingerprint(), current: current}
	aead := newGCM(master.k[:])
	ids := make([]uint32, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		e := wrappedKey{id: id}
		if _, err := rand.Read(e.nonce[:]); err != nil {
			return kf, err
		}
		aead.Seal(e.wrapped[:0], e.nonce[:], keys[id][:], wrapAD(id))
		kf.entries = append(kf.entries, e)
	}
	return kf, nil
}

// Cipher seals and opens data under the data keys of one keys file: new data
// under the current key, old data under whichever key it names. It is
// immutable and safe for concurrent use; the Sealers and Openers it makes
// are not.
type Cipher struct {
	current uint32
	keys    map[uint32]*[KeySize]byte
}

// CurrentKeyID returns the id of the data key new data is sealed under.
func (c *Cipher) CurrentKeyID() uint32 { return c.current }

// KeyIDs returns the ids of every data key, ascending.
func (c *Cipher) KeyIDs() []uint32 {
	ids := make([]uint32, 0, len(c.keys))
	for id := range c.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func keysPath(dataDir string) string { return filepath.Join(dataDir, KeysFile) }

// HasKeys reports whether dataDir has a keys file, that is, whether the data
// directory is encrypted.
func HasKeys(fs vfs.FS, dataDir string) (bool, error) {
	_, err := fs.Stat(keysPath(dataDir))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, iofs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("keys file: %w", err)
}

func readKeysFile(fs vfs.FS, dataDir string) (keysFile, error) {
	path := keysPath(dataDir)
	f, err := fs.Open(path)
	if err != nil {
		return keysFile{}, fmt.Errorf("open keys file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return keysFile{}, fmt.Errorf("keys file %s: %w", path, err)
	}
	if st.Size() > keysFileLimit {
		return keysFile{}, fmt.Errorf("keys file %s: %w: %d bytes", path, ErrCorrupt, st.Size())
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return keysFile{}, fmt.Errorf("read keys file %s: %w", path, err)
	}
	kf, err := parseKeysFile(b)
	if err != nil {
		return kf, fmt.Errorf("keys file %s: %w", path, err)
	}
	return kf, nil
}

// Load returns the Cipher of the keys file in dataDir, whose data keys master
// must wrap: ErrWrongKey if another key wraps them (the message shows both
// fingerprints), ErrCorrupt if the file is damaged. It changes nothing.
func Load(fs vfs.FS, dataDir string, master MasterKey) (*Cipher, error) {
	kf, err := readKeysFile(fs, dataDir)
	if err != nil {
		return nil, err
	}
	keys, err := kf.unwrap(master)
	if err != nil {
		return nil, fmt.Errorf("keys file %s: %w", keysPath(dataDir), err)
	}
	return &Cipher{current: kf.current, keys: keys}, nil
}

// FingerprintOf returns the fingerprint of the master key that wraps the data
// keys of dataDir's keys file.
func FingerprintOf(fs vfs.FS, dataDir string) (Fingerprint, error) {
	kf, err := readKeysFile(fs, dataDir)
	return kf.master, err
}

// Create makes the keys file of dataDir, which must not have one: one random
// data key, wrapped by master. The file is written atomically and made
// durable (temporary file, fsync, rename, directory fsync).
func Create(fs vfs.FS, dataDir string, master MasterKey) (*Cipher, error) {
	if ok, err := HasKeys(fs, dataDir); err != nil {
		return nil, err
	} else if ok {
		return nil, fmt.Errorf("create keys file: %s exists", keysPath(dataDir))
	}
	id, k, err := newDataKey(nil)
	if err != nil {
		return nil, err
	}
	c := &Cipher{current: id, keys: map[uint32]*[KeySize]byte{id: k}}
	if err := write(fs, dataDir, master, c); err != nil {
		return nil, err
	}
	return c, nil
}

// Rotate adds a new random data key to dataDir's keys file and makes it the
// current one; every data key, old ones included, is then wrapped by
// newMaster. old must be the master key that wraps them now (it may equal
// newMaster, to rotate the data key alone). The file is replaced atomically:
// a crash leaves the old keys file or the new one, and data sealed under any
// earlier data key stays readable.
func Rotate(fs vfs.FS, dataDir string, newMaster, old MasterKey) (*Cipher, error) {
	c, err := Load(fs, dataDir, old)
	if err != nil {
		return nil, err
	}
	if len(c.keys) >= MaxDataKeys {
		return nil, fmt.Errorf("rotate: the keys file holds %d data keys, the most it may", len(c.keys))
	}
	next, k, err := newDataKey(c.keys)
	if err != nil {
		return nil, err
	}
	keys := map[uint32]*[KeySize]byte{next: k}
	for id, dk := range c.keys {
		keys[id] = dk
	}
	nc := &Cipher{current: next, keys: keys}
	if err := write(fs, dataDir, newMaster, nc); err != nil {
		return nil, err
	}
	return nc, nil
}

// newDataKey returns a random data key and a random id for it, neither zero
// nor one of taken's. Random ids (rather than 1, 2, ...) make the data of
// another data directory name keys this one lacks, so that it is reported as
// sealed under the wrong key (ErrWrongKey), not as damage.
func newDataKey(taken map[uint32]*[KeySize]byte) (uint32, *[KeySize]byte, error) {
	var b [4 + KeySize]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, nil, fmt.Errorf("new data key: %w", err)
		}
		id := binary.LittleEndian.Uint32(b[:])
		if _, ok := taken[id]; id != 0 && !ok {
			return id, (*[KeySize]byte)(b[4:]), nil
		}
	}
}

func write(fs vfs.FS, dataDir string, master MasterKey, c *Cipher) error {
	kf, err := wrapKeys(master, c.current, c.keys)
	if err != nil {
		return fmt.Errorf("wrap data keys: %w", err)
	}
	if err := vfs.WriteFileAtomic(fs, keysPath(dataDir), kf.encode()); err != nil {
		return fmt.Errorf("write keys file: %w", err)
	}
	return nil
}
