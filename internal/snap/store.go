package snap

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	iofs "io/fs"
	"iter"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

// ErrNotFound is returned by Load when the shard has no snapshot at all.
var ErrNotFound = errors.New("no snapshot")

const (
	snapSuffix = ".snap"
	tmpSuffix  = ".tmp"
	// nameLen is the length of "<shard 16 hex>-<index 16 hex>.snap".
	nameLen = 16 + 1 + 16 + len(snapSuffix)
)

// Store keeps the snapshot files of one node in one directory, named
// <shard as 16 hex digits>-<index as 16 hex digits>.snap. Every file-system call
// goes through a vfs.FS, which must be safe for concurrent use.
//
// A Store is safe for concurrent use, also by calls for one shard: a node
// writes a snapshot (Save) while it receives others from the leader
// (Receive), installs one (Install, then Load), streams its own to followers
// (Open) and drops old ones (Purge). The Store keeps no state of its own
// besides the directory, and each call is safe against the others' files:
//
//   - Save and Receive write temporary files of names of their own (a random
//     part), which no other call reads, lists or removes, and publish a
//     snapshot only by renaming a complete, fsynced file to its name, which
//     is atomic: Load, Open and Indexes see the whole file or none. Two
//     snapshots of one shard and index (a Save and an Install, say) hold the
//     same state; whichever is renamed last stays.
//   - A file that Purge removes meanwhile stays readable through a File that
//     Open returned; Load lists the files again if one was removed between
//     its listing and its open. Purge keeps the newest keep files of its own
//     listing, so one saved meanwhile is kept too, and removing a file that
//     another Purge removed first is no error.
//
// NewStore removes every temporary file in the directory: it runs before
// any other call of the Store, and no two Stores share a directory.
type Store struct {
	fs     vfs.FS
	dir    string
	log    *slog.Logger
	cipher *crypt.Cipher // nil: files in the clear
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// FS performs every file-system call. Default vfs.Default.
	FS vfs.FS
	// Dir is the snapshot directory. Required; created (mode 0700) if
	// missing.
	Dir string
	// Logger receives warnings (a damaged snapshot skipped). Default:
	// discard.
	Logger *slog.Logger
	// Cipher, if set, encrypts every snapshot file (see encrypt.go): Save
	// and Receive write sealed files, Load and Open read only sealed ones (a
	// file in the clear is refused with an error wrapping
	// crypt.ErrNotEncrypted). nil: files in the clear, and a sealed file is
	// refused with an error wrapping crypt.ErrKeyRequired. Either way the
	// stream that Receive takes and Open gives is the plain snapshot stream
	// (Encode's format): each node seals under its own keys.
	Cipher *crypt.Cipher
}

// Validate fills in defaults and rejects values that cannot work.
func (c *StoreConfig) Validate() error {
	if c.Dir == "" {
		return errors.New("snapshot store: Dir is required")
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// NewStore is OpenStore without a Cipher: the snapshot directory dir, on fs,
// logging to logger (nil discards).
func NewStore(fs vfs.FS, dir string, logger *slog.Logger) (*Store, error) {
	return OpenStore(StoreConfig{FS: fs, Dir: dir, Logger: logger})
}

// OpenStore opens the snapshot directory cfg.Dir, creating it if needed, and
// removes the *.tmp files that an interrupted Save left behind.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fs, dir, logger := cfg.FS, cfg.Dir, cfg.Logger
	s := &Store{fs: fs, dir: dir, log: logger, cipher: cfg.Cipher}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create snapshot dir: %w", err)
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshot dir: %w", err)
	}
	removed := false
	for _, name := range names {
		if !strings.HasSuffix(name, tmpSuffix) {
			continue
		}
		if err := fs.Remove(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("remove leftover %s: %w", name, err)
		}
		logger.Info("removed leftover temporary snapshot", "file", name)
		removed = true
	}
	if removed {
		if err := fs.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("sync snapshot dir: %w", err)
		}
	}
	return s, nil
}

// randomTag is a random part for the names of temporary files, so that
// concurrent Saves and Receives never write the same one.
func randomTag() (string, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(rnd[:]), nil
}

func fileName(shard, index uint64) string {
	return fmt.Sprintf("%016x-%016x%s", shard, index, snapSuffix)
}

// parseName returns the shard and index of a snapshot file name, and whether name
// is one (exactly as fileName writes it).
func parseName(name string) (shard, index uint64, ok bool) {
	if len(name) != nameLen || name[16] != '-' || !strings.HasSuffix(name, snapSuffix) {
		return 0, 0, false
	}
	shard, err1 := strconv.ParseUint(name[:16], 16, 64)
	index, err2 := strconv.ParseUint(name[17:33], 16, 64)
	if err1 != nil || err2 != nil || fileName(shard, index) != name {
		return 0, 0, false
	}
	return shard, index, true
}

// Indexes returns the indexes of the shard's snapshot files, ascending. It lists
// the files without reading them: some may be damaged.
func (s *Store) Indexes(shard uint64) ([]uint64, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshot dir: %w", err)
	}
	var out []uint64
	for _, name := range names {
		if sh, idx, ok := parseName(name); ok && sh == shard {
			out = append(out, idx)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Save writes a snapshot of pairs (see Encode for what they must be) as the file
// for meta.Shard and meta.Index, atomically: it writes <name>.<random>.tmp,
// fsyncs it, renames it to <name> and fsyncs the directory. A crash at any point
// leaves either no new snapshot (perhaps a .tmp file, which NewStore removes) or
// a complete one.
//
// If Save fails it removes the temporary file. An error from the final directory
// fsync is returned although the complete file is in place: it may or may not
// survive a crash, and Load may find it.
func (s *Store) Save(meta Meta, pairs iter.Seq[kv.KeyValue]) error {
	name := fileName(meta.Shard, meta.Index)
	path := filepath.Join(s.dir, name)
	tag, err := randomTag()
	if err != nil {
		return fmt.Errorf("save snapshot %s: %w", name, err)
	}
	tmp := path + "." + tag + tmpSuffix
	if err := s.writeFile(tmp, meta, pairs); err != nil {
		// Best effort: a leftover .tmp is harmless and NewStore removes it.
		s.fs.Remove(tmp)
		return fmt.Errorf("save snapshot %s: %w", name, err)
	}
	if err := s.fs.Rename(tmp, path); err != nil {
		s.fs.Remove(tmp)
		return fmt.Errorf("save snapshot %s: %w", name, err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("save snapshot %s: sync dir: %w", name, err)
	}
	return nil
}

func (s *Store) writeFile(path string, meta Meta, pairs iter.Seq[kv.KeyValue]) error {
	f, err := s.fs.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	w, err := s.sealer(bw)
	if err == nil {
		err = Encode(w, meta, pairs)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// RestoreFunc installs a snapshot: it receives the snapshot's Meta and its pairs in
// ascending key order. pairs is single-use: it yields every pair with a nil error
// and then, if the file turns out to be damaged or unreadable (which can only be
// known at its end), one last non-nil error.
//
// A RestoreFunc must consume pairs to the end and may make the state it builds
// visible only if pairs yielded no error; on an error it must return an error
// (wrapping the one it got) and leave the previous state in place. kv.Store.Restore
// does exactly this:
//
//	func(m snap.Meta, pairs iter.Seq2[kv.KeyValue, error]) error { return store.Restore(m.Index, pairs) }
//
// The pairs are freshly allocated and may be retained.
type RestoreFunc func(meta Meta, pairs iter.Seq2[kv.KeyValue, error]) error

// Load installs the newest snapshot of shard that is intact, by calling restore
// with it, and returns its Meta.
//
// A damaged file (an error wrapping ErrCorrupt, from its header, its name not
// matching its Meta, or the pairs yielded to restore) is logged with its name and
// the reason, and Load moves on to the next older file; restore may thus be called
// several times, each time with a complete, fresh sequence. If a file was removed
// (by a concurrent Purge) between the listing and its opening, Load lists the
// files again: Purge removes only files older than those it keeps, so Load never
// settles for an older snapshot than the newest one there.
//
// Load returns ErrNotFound if the shard has no snapshot file, and an error wrapping
// ErrCorrupt if it has some but none is intact. Any other failure (reading a file,
// restore's own error) stops Load and is returned. Load also returns an error if
// restore breaks the contract of RestoreFunc (returns nil after an error, or
// without consuming the pairs to the end); the caller's state is then suspect.
func (s *Store) Load(shard uint64, restore RestoreFunc) (Meta, error) {
	if restore == nil {
		return Meta{}, errors.New("load snapshot: nil restore func")
	}
	var err error
	for range maxListings {
		var meta Meta
		if meta, err = s.loadNewest(shard, restore); !errors.Is(err, errGone) {
			return meta, err
		}
	}
	return Meta{}, fmt.Errorf("shard %d: snapshot files removed while loading, %d times: %w", shard, maxListings, err)
}

// maxListings bounds how often Load lists the files again because one
// listed was removed before it was opened.
const maxListings = 8

// loadNewest is Load with one listing of the files; it returns an error
// wrapping errGone if a file listed was removed before it was opened.
func (s *Store) loadNewest(shard uint64, restore RestoreFunc) (Meta, error) {
	indexes, err := s.Indexes(shard)
	if err != nil {
		return Meta{}, err
	}
	var lastCorrupt error
	for _, index := range slices.Backward(indexes) {
		name := fileName(shard, index)
		meta, err := s.loadFile(name, shard, index, restore)
		if err == nil {
			return meta, nil
		}
		if !errors.Is(err, ErrCorrupt) {
			return Meta{}, err
		}
		s.log.Warn("skipping damaged snapshot", "shard", shard, "file", name, "err", err)
		lastCorrupt = err
	}
	if lastCorrupt != nil {
		return Meta{}, fmt.Errorf("shard %d: no intact snapshot among %d files, the last tried: %w", shard, len(indexes), lastCorrupt)
	}
	return Meta{}, fmt.Errorf("shard %d: %w", shard, ErrNotFound)
}

// errGone: a snapshot file listed was removed (by a Purge) before it was
// opened.
var errGone = errors.New("snapshot file removed")

// loadFile returns an error wrapping ErrCorrupt only for damage to the file,
// and one wrapping errGone if the file no longer exists (restore was not
// called then).
func (s *Store) loadFile(name string, shard, index uint64, restore RestoreFunc) (Meta, error) {
	f, err := s.fs.Open(filepath.Join(s.dir, name))
	if errors.Is(err, iofs.ErrNotExist) {
		return Meta{}, fmt.Errorf("open snapshot %s: %w: %w", name, errGone, err)
	}
	if err != nil {
		return Meta{}, fmt.Errorf("open snapshot %s: %w", name, err)
	}
	defer f.Close()
	r, err := s.opener(f)
	if err != nil {
		return Meta{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	d := newDecoder(r)
	defer d.close()
	meta, err := d.header()
	if err != nil {
		return Meta{}, fmt.Errorf("snapshot %s: %w", name, err)
	}
	if meta.Shard != shard || meta.Index != index {
		return Meta{}, fmt.Errorf("snapshot %s: %w: header says shard %d index %d", name, ErrCorrupt, meta.Shard, meta.Index)
	}

	var (
		used     bool
		complete bool
		yielded  error
	)
	pairs := func(yield func(kv.KeyValue, error) bool) {
		if used {
			yield(kv.KeyValue{}, errors.New("snapshot pairs iterated twice"))
			return
		}
		used = true
		for {
			p, ok, err := d.next()
			if err != nil {
				yielded = err
				yield(kv.KeyValue{}, err)
				return
			}
			if !ok {
				complete = true
				return
			}
			if !yield(p, nil) {
				return
			}
		}
	}
	rerr := restore(meta, pairs)
	switch {
	case yielded != nil && rerr == nil:
		return Meta{}, fmt.Errorf("snapshot %s: restore returned nil after being told the file is bad: %v", name, yielded)
	case yielded != nil:
		// The file's fault (ErrCorrupt) or the disk's; either way, say which file.
		return Meta{}, fmt.Errorf("snapshot %s: %w", name, yielded)
	case rerr != nil:
		return Meta{}, fmt.Errorf("restore snapshot %s: %w", name, rerr)
	case !complete:
		return Meta{}, fmt.Errorf("restore snapshot %s: returned before consuming all pairs", name)
	}
	return meta, nil
}

// Purge deletes all but the newest keep snapshot files of shard (keep >= 0). It
// goes by file name: a damaged newest file counts as one of those kept, so keep
// at least 2 to always have a fallback.
func (s *Store) Purge(shard uint64, keep int) error {
	if keep < 0 {
		return fmt.Errorf("purge snapshots of shard %d: keep %d < 0", shard, keep)
	}
	indexes, err := s.Indexes(shard)
	if err != nil {
		return err
	}
	if len(indexes) <= keep {
		return nil
	}
	var errs []error
	for _, index := range indexes[:len(indexes)-keep] {
		name := fileName(shard, index)
		if err := s.fs.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("purge snapshot %s: %w", name, err))
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("purge snapshots: sync dir: %w", err))
	}
	return errors.Join(errs...)
}
