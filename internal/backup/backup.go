package backup

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/snap"
)

// ErrCorrupt is wrapped by every error that reports a damaged or foreign
// backup file.
var ErrCorrupt = errors.New("backup file damaged")

// formatName and Version identify a backup in Meta.Extra.
const (
	formatName = "distkv-backup"
	// Version is the format version Write writes and Decode accepts.
	Version = 1
)

// Header is what a backup says about itself.
type Header struct {
	Shard uint64
	// Revision is the applied index of the state copied: every write
	// acknowledged before the backup was asked for is at or below it.
	Revision uint64
	// ClusterID is the id of the cluster backed up (0: it predates ids).
	ClusterID uint64
	// Nonce is random per backup.
	Nonce [16]byte
	// Created is when the copy was made, by the serving node's clock.
	Created time.Time
}

type extra struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	ClusterID string `json:"cluster_id,omitempty"`
	Nonce     string `json:"nonce"`
	Created   string `json:"created"`
}

// NewHeader returns the header of a new backup, with a fresh nonce.
func NewHeader(shard, revision, clusterID uint64, now time.Time) (Header, error) {
	h := Header{Shard: shard, Revision: revision, ClusterID: clusterID, Created: now.UTC()}
	if _, err := rand.Read(h.Nonce[:]); err != nil {
		return Header{}, fmt.Errorf("backup nonce: %w", err)
	}
	return h, nil
}

// Write streams a backup of pairs (kv.View.SnapshotPairs of a state applied
// up to h.Revision, or the pairs of a whole key space read at revision
// h.Revision after kv.BackupStatePair) to w, and returns the number of
// pairs written. An error that pairs yields ends the stream before its
// trailer (no reader takes it for a whole backup) and is returned. It does
// not close or sync w.
func Write(w io.Writer, h Header, pairs iter.Seq2[kv.KeyValue, error]) (uint64, error) {
	e := extra{Format: formatName, Version: Version, Nonce: hex.EncodeToString(h.Nonce[:]),
		Created: h.Created.UTC().Format(time.RFC3339Nano)}
	if h.ClusterID != 0 {
		e.ClusterID = fmt.Sprintf("%016x", h.ClusterID)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	var n uint64
	counted := func(yield func(kv.KeyValue, error) bool) {
		for p, err := range pairs {
			if err == nil {
				n++
			}
			if !yield(p, err) {
				return
			}
		}
	}
	err = snap.EncodeChecked(w, snap.Meta{Shard: h.Shard, Index: h.Revision, Extra: b}, counted)
	return n, err
}

// Decode reads a backup from r, handing fn each pair in order (the state
// pair first), and returns its header once the whole stream has checked out.
// The pairs fn got must be discarded unless Decode returns nil. Damage is
// reported as an error wrapping ErrCorrupt.
func Decode(r io.Reader, fn func(kv.KeyValue) error) (Header, error) {
	meta, err := snap.Decode(r, func(p kv.KeyValue) error {
		if fn == nil {
			return nil
		}
		return fn(p)
	})
	if err != nil {
		if errors.Is(err, snap.ErrCorrupt) {
			return Header{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return Header{}, err
	}
	return header(meta)
}

func header(meta snap.Meta) (Header, error) {
	var e extra
	if err := json.Unmarshal(meta.Extra, &e); err != nil || e.Format != formatName {
		return Header{}, fmt.Errorf("%w: not a distkv backup (a snapshot file of a data directory?)", ErrCorrupt)
	}
	if e.Version != Version {
		return Header{}, fmt.Errorf("%w: backup format version %d, this distkv reads version %d", ErrCorrupt, e.Version, Version)
	}
	h := Header{Shard: meta.Shard, Revision: meta.Index}
	if e.ClusterID != "" {
		if _, err := fmt.Sscanf(e.ClusterID, "%016x", &h.ClusterID); err != nil {
			return Header{}, fmt.Errorf("%w: cluster id %q", ErrCorrupt, e.ClusterID)
		}
	}
	nonce, err := hex.DecodeString(e.Nonce)
	if err != nil || len(nonce) != len(h.Nonce) {
		return Header{}, fmt.Errorf("%w: nonce %q", ErrCorrupt, e.Nonce)
	}
	copy(h.Nonce[:], nonce)
	if h.Created, err = time.Parse(time.RFC3339Nano, e.Created); err != nil {
		return Header{}, fmt.Errorf("%w: creation time %q", ErrCorrupt, e.Created)
	}
	return h, nil
}

// Summary is what Verify found.
type Summary struct {
	Header
	Pairs uint64 // pairs in the file, the state pair included
	Bytes int64  // size of the stream
}

// Verify reads the whole backup from r and checks it; progress, if not nil,
// is called now and then with the bytes and pairs read so far.
func Verify(r io.Reader, progress func(bytes int64, pairs uint64)) (Summary, error) {
	cr := &countReader{r: r}
	var s Summary
	h, err := Decode(cr, func(kv.KeyValue) error {
		s.Pairs++
		if progress != nil && s.Pairs%4096 == 0 {
			progress(cr.n, s.Pairs)
		}
		return nil
	})
	if err != nil {
		return Summary{}, err
	}
	s.Header, s.Bytes = h, cr.n
	if progress != nil {
		progress(cr.n, s.Pairs)
	}
	return s, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
