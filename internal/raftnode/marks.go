package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	iofs "io/fs"
	"path/filepath"
	"sync"

	"github.com/distkv/distkv/internal/vfs"
)

// The applied marks of a Host's groups other than group 1 share one file,
// groups/applied-marks, so that thousands of groups cost one open file, not
// one each. Group 1 keeps its own file (appliedmark.go), which data
// directories made before there were other groups already have.
//
// The file is a sequence of 64-byte pairs, one per group: two 32-byte slots
// written in turn, so that a torn write leaves the other, as in the file of
// group 1. A slot is the magic "DKVB", the group (uint64), the index
// (uint64), a CRC-32C of those 20 bytes, and zeros. A pair names the group of
// its valid slot with the higher index; a pair with no valid slot is free,
// and so is that of a group removed from the node (bury zeroes it).

const (
	marksName  = "applied-marks"
	markSlot   = 32
	markPair   = 2 * markSlot
	marksMagic = "DKVB"
)

// markFile is the shared file of applied marks.
type markFile struct {
	f    vfs.File
	path string

	mu    sync.Mutex
	pairs map[uint64]int64  // group -> its pair's number
	found map[uint64]uint64 // group -> the index its pair named at open
	free  []int64           // pairs to reuse
	next  int64             // the first pair past the end of the file
	taken map[uint64]*appliedMark
}

// openMarkFile opens (creating if needed) the shared marks in dir. A pair that
// cannot be read back counts as free, with a warning: a mark only keeps stale
// reads from going back after a process crash.
func openMarkFile(fs vfs.FS, dir string, warn func(msg string, args ...any)) (*markFile, error) {
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	path := filepath.Join(dir, marksName)
	f, err := fs.OpenReadWrite(path)
	if errors.Is(err, iofs.ErrNotExist) {
		f, err = fs.Create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open applied marks: %w", err)
	}
	mf := &markFile{f: f, path: path, pairs: map[uint64]int64{}, found: map[uint64]uint64{}, taken: map[uint64]*appliedMark{}}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat applied marks: %w", err)
	}
	b := make([]byte, st.Size())
	if n, err := f.ReadAt(b, 0); n < len(b) && err != nil {
		f.Close()
		return nil, fmt.Errorf("read applied marks: %w", err)
	}
	// The last pair may be short: its group wrote only its first slot.
	mf.next = int64((len(b) + markPair - 1) / markPair)
	b = append(b, make([]byte, mf.next*markPair-int64(len(b)))...)
	for p := int64(0); p < mf.next; p++ {
		pair := b[p*markPair : (p+1)*markPair]
		shard, index, ok := decodeMarkPair(pair)
		if _, dup := mf.pairs[shard]; !ok || dup {
			if !ok && !isZero(pair) {
				warn("ignoring a damaged applied mark", "file", path, "pair", p)
			}
			mf.free = append(mf.free, p)
			continue
		}
		mf.pairs[shard], mf.found[shard] = p, index
	}
	return mf, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// decodeMarkPair returns the group and index a pair names.
func decodeMarkPair(pair []byte) (shard, index uint64, ok bool) {
	for s := 0; s < 2; s++ {
		b := pair[s*markSlot : (s+1)*markSlot]
		if string(b[:4]) != marksMagic || binary.LittleEndian.Uint32(b[20:24]) != crc32.Checksum(b[:20], markTable) {
			continue
		}
		sh, ix := binary.LittleEndian.Uint64(b[4:12]), binary.LittleEndian.Uint64(b[12:20])
		if sh == 0 {
			continue
		}
		if !ok || ix > index {
			shard, index, ok = sh, ix, true
		}
	}
	return shard, index, ok
}

// encodeMarkSlot writes the slot for shard at index into b.
func encodeMarkSlot(b []byte, shard, index uint64) {
	copy(b[:4], marksMagic)
	binary.LittleEndian.PutUint64(b[4:12], shard)
	binary.LittleEndian.PutUint64(b[12:20], index)
	binary.LittleEndian.PutUint32(b[20:24], crc32.Checksum(b[:20], markTable))
	clear(b[24:markSlot])
}

// forGroup returns the mark of group shard, with the index its pair named
// (0 for a group new to the file, which gets a free pair).
func (mf *markFile) forGroup(shard uint64) (*appliedMark, error) {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	if _, open := mf.taken[shard]; open {
		return nil, fmt.Errorf("the applied mark of group %d is in use", shard)
	}
	p, ok := mf.pairs[shard]
	if !ok {
		if len(mf.free) > 0 {
			p, mf.free = mf.free[0], mf.free[1:]
		} else {
			p = mf.next
			mf.next++
		}
		mf.pairs[shard] = p
	}
	m := &appliedMark{f: mf.f, index: mf.found[shard], base: p * markPair, shard: shard, shared: mf}
	mf.taken[shard] = m
	return m, nil
}

// release gives back the mark of a group that stopped; its pair stays its.
func (mf *markFile) release(shard uint64) {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	if m := mf.taken[shard]; m != nil {
		mf.found[shard] = m.index
	}
	delete(mf.taken, shard)
}

// drop frees the pair of group shard, removed from the node: it is zeroed,
// so that it is free at the next open too, and reused.
func (mf *markFile) drop(shard uint64) error {
	mf.mu.Lock()
	defer mf.mu.Unlock()
	p, ok := mf.pairs[shard]
	if !ok {
		return nil
	}
	delete(mf.pairs, shard)
	delete(mf.found, shard)
	delete(mf.taken, shard)
	if _, err := mf.f.WriteAt(make([]byte, markPair), p*markPair); err != nil {
		return fmt.Errorf("clear the applied mark of group %d: %w", shard, err)
	}
	mf.free = append(mf.free, p)
	return nil
}

func (mf *markFile) close() error { return mf.f.Close() }
