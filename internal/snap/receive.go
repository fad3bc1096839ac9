package snap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/distkv/distkv/internal/kv"
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
	bw := bufio.NewWriterSize(f, 256<<10)
	w, err := s.sealer(bw)
	if err != nil {
		return fail(err)
	}
	tee := io.TeeReader(r, w)
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
	if err := w.Close(); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
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

// Open opens the snapshot of shard at index for streaming to another node:
// the reader gives the plain snapshot stream (Encode's format), opened if the
// store has a Cipher; an encrypted file's damage shows as a read error
// wrapping ErrCorrupt. An open snapshot stays readable even if Purge removes
// its file meanwhile.
func (s *Store) Open(shard, index uint64) (io.ReadCloser, error) {
	name := fileName(shard, index)
	f, err := s.fs.Open(filepath.Join(s.dir, name))
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	r, err := s.opener(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open snapshot %s: %w", name, err)
	}
	return readCloser{r, f}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
