package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	iofs "io/fs"
	"path/filepath"
	"syscall"

	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

// The applied mark is how far the state machine may have applied: before the
// loop applies committed entries it writes the index of the last one to a
// small file in the data directory, in place and without an fsync. A process
// that crashes keeps that write (it is in the kernel's page cache), so at
// restart the node takes its commit index to be at least the mark and replays
// as far as it had applied before stale reads are served: a stale read never
// shows an older state after a restart than before it.
//
// The WAL's own hard states cannot promise that by themselves: the WAL may
// keep records that need no fsync (a hard state that only moves the commit
// index) in memory until the next sync (see wal.Config.Direct). The mark
// never names an entry that is not durable here, since Raft hands out for
// applying only entries this node's log has reported durable; a committed
// entry is never truncated, so the log on disk at restart holds every entry
// up to the mark. A power loss may lose the mark's latest writes, as it may
// lose the page cache's copy of the hard state: the guarantee is for a
// process crash, as before.
//
// The file holds two 16-byte slots, written in turn, so that a write torn by
// a full disk leaves the other slot: each is the magic "DKVA", the index
// (uint64, little endian) and a CRC-32C of the slot's first 12 bytes. The
// mark is the higher index of the valid slots.

const (
	appliedMarkName  = "applied"
	appliedMarkSize  = 16 // one slot
	appliedMarkMagic = "DKVA"
)

var markTable = crc32.MakeTable(crc32.Castagnoli)

// encodeAppliedMark writes the mark for index into b.
func encodeAppliedMark(b *[appliedMarkSize]byte, index uint64) {
	copy(b[:4], appliedMarkMagic)
	binary.LittleEndian.PutUint64(b[4:12], index)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], markTable))
}

// decodeAppliedMark returns the index a mark file's contents name: the higher
// of its valid slots. It fails if neither is valid.
func decodeAppliedMark(b []byte) (uint64, error) {
	if len(b) != appliedMarkSize && len(b) != 2*appliedMarkSize {
		return 0, fmt.Errorf("applied mark is %d bytes, want %d or %d", len(b), appliedMarkSize, 2*appliedMarkSize)
	}
	index, err := decodeMarkSlot(b[:appliedMarkSize])
	if len(b) == appliedMarkSize {
		return index, err
	}
	index2, err2 := decodeMarkSlot(b[appliedMarkSize:])
	switch {
	case err != nil && err2 != nil:
		return 0, fmt.Errorf("first slot: %w; second slot: %w", err, err2)
	case err != nil:
		return index2, nil
	case err2 != nil:
		return index, nil
	}
	return max(index, index2), nil
}

// decodeMarkSlot returns the index one slot names.
func decodeMarkSlot(b []byte) (uint64, error) {
	if string(b[:4]) != appliedMarkMagic {
		return 0, fmt.Errorf("applied mark begins %q, want %q", b[:4], appliedMarkMagic)
	}
	if got, want := binary.LittleEndian.Uint32(b[12:]), crc32.Checksum(b[:12], markTable); got != want {
		return 0, fmt.Errorf("applied mark checksum %#x, want %#x", got, want)
	}
	return binary.LittleEndian.Uint64(b[4:12]), nil
}

// appliedMark is the open mark file (group 1's), or a group's pair in the
// shared file of marks (marks.go). Owned by the loop.
type appliedMark struct {
	f     vfs.File
	index uint64 // the index last written
	slot  int64  // the slot to write next
	buf   [markSlot]byte
	// In the shared file: the pair's offset, the group, and the file.
	base   int64
	shard  uint64
	shared *markFile
}

// openAppliedMark opens (creating if needed) the mark in dir and returns it
// with the index it names: 0 if it is new. A mark that cannot be read back
// (a torn or damaged file) is reported through warn and counts as 0: it only
// keeps stale reads from going back after a process crash, and the node's
// own log still holds everything it acknowledged.
func openAppliedMark(fs vfs.FS, dir string, warn func(msg string, args ...any)) (*appliedMark, error) {
	path := filepath.Join(dir, appliedMarkName)
	f, err := fs.OpenReadWrite(path)
	if errors.Is(err, iofs.ErrNotExist) {
		f, err = fs.Create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open applied mark: %w", err)
	}
	m := &appliedMark{f: f}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat applied mark: %w", err)
	}
	if st.Size() == 0 {
		return m, nil
	}
	b := make([]byte, min(st.Size(), 2*appliedMarkSize+1))
	n, err := f.ReadAt(b, 0)
	if n < len(b) && err != nil {
		f.Close()
		return nil, fmt.Errorf("read applied mark: %w", err)
	}
	if m.index, err = decodeAppliedMark(b[:n]); err != nil {
		warn("ignoring the applied mark", "file", path, "err", err)
		m.index = 0
	}
	return m, nil
}

// advance records that entries up to index are about to be applied. A full
// disk returns an error wrapping wal.ErrNoSpace (the mark is unchanged or
// torn, and counts as 0 at a restart until a later write succeeds); any other
// failed write is fatal to the node, like a failed WAL write.
func (m *appliedMark) advance(index uint64) error {
	if index <= m.index {
		return nil
	}
	b, off := m.buf[:appliedMarkSize], m.slot*appliedMarkSize
	if m.shared != nil {
		b, off = m.buf[:], m.base+m.slot*markSlot
		encodeMarkSlot(b, m.shard, index)
	} else {
		encodeAppliedMark((*[appliedMarkSize]byte)(b), index)
	}
	if _, err := m.f.WriteAt(b, off); errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: write applied mark: %w", wal.ErrNoSpace, err)
	} else if err != nil {
		return fmt.Errorf("write applied mark: %w", err)
	}
	m.index = index
	m.slot ^= 1
	return nil
}

func (m *appliedMark) close() error {
	if m.shared != nil {
		m.shared.release(m.shard)
		return nil
	}
	return m.f.Close()
}
