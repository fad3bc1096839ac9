package snap

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

// Received is a snapshot streamed from another node, verified and durable in a
// temporary file, not yet installed. Install makes it the shard's newest
// snapshot; Discard removes it. A crash leaves at most a .tmp file, which
// NewStore removes.
type Received struct {
	Meta Meta
	path string
	s    *Store
}

// Receive copies a snapshot stream (as written by Encode) from r into a
// temporary file while decoding it, so that nothing damaged or truncated is
// ever kept: it returns an error wrapping ErrCorrupt unless the whole stream
// decodes and its checksum holds, and r ends right after it. Memory use is
// bounded whatever the snapshot's size.
func (s *Store) Receive(r io.Reader) (*Received, error) {
	tag, err := randomTag()
	if err != nil {
		return nil, fmt.Errorf("receive snapshot: %w", err)
	}
	path := filepath.Join(s.dir, "recv-"+tag+tmpSuffix)
	f, err := s.fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("receive snapshot: %w", err)
	}
	fail := func(err error) (*Received, error) {
		f.Close()
		s.fs.Remove(path)
		return nil, fmt.Errorf("receive snapshot: %w", err)
	}
	tee := io.TeeReader(r, f)
	meta, err := Decode(tee, func(kv.KeyValue) error { return nil })
	if err != nil {
		return fail(err)
	}
	var extra [1]byte
	if n, err := io.ReadFull(r, extra[:]); n > 0 {
		return fail(fmt.Errorf("%w: data after the snapshot trailer", ErrCorrupt))
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(path)
		return nil, fmt.Errorf("receive snapshot: %w", err)
	}
	return &Received{Meta: meta, path: path, s: s}, nil
}

// Install renames the received snapshot into place as the file for its shard
// and index and makes the rename durable.
func (r *Received) Install() error {
	name := fileName(r.Meta.Shard, r.Meta.Index)
	if err := r.s.fs.Rename(r.path, filepath.Join(r.s.dir, name)); err != nil {
		return fmt.Errorf("install snapshot %s: %w", name, err)
	}
	if err := r.s.fs.SyncDir(r.s.dir); err != nil {
		return fmt.Errorf("install snapshot %s: sync dir: %w", name, err)
	}
	return nil
}

// Discard removes a received snapshot that will not be installed.
func (r *Received) Discard() { r.s.fs.Remove(r.path) }

// Open opens the snapshot file of shard at index for streaming to another node.
// An open file stays readable even if Purge removes it meanwhile.
func (s *Store) Open(shard, index uint64) (vfs.File, error) {
	f, err := s.fs.Open(filepath.Join(s.dir, fileName(shard, index)))
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	return f, nil
}
