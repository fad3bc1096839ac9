package ranges

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strings"
)

// Directory is the set of all range descriptors, as the meta range holds it.
// It is not safe for concurrent use: its owner (the meta range's state
// machine) serializes changes; nodes route with a Cache instead.
type Directory struct {
	// Invariant: sorted by (Start, ID); every descriptor Valid; no ID twice.
	// Check reports whether they also tile the key space.
	descs []Descriptor
}

// First returns the descriptor of the one range a new cluster starts with:
// the whole key space, generation 1.
func First(id uint64, replicas []Replica) Descriptor {
	return Descriptor{ID: id, Replicas: slices.Clone(replicas), Generation: 1}
}

// NewDirectory returns a directory of descs (copied). Each must be Valid and
// no ID may appear twice; whether they tile the key space is Check's
// question, so that a directory read from a damaged meta range can still be
// inspected.
func NewDirectory(descs ...Descriptor) (*Directory, error) {
	dir := &Directory{descs: make([]Descriptor, 0, len(descs))}
	ids := make(map[uint64]bool, len(descs))
	for _, d := range descs {
		if err := d.Valid(); err != nil {
			return nil, err
		}
		if ids[d.ID] {
			return nil, fmt.Errorf("%w: range id %d appears twice", ErrInvalid, d.ID)
		}
		ids[d.ID] = true
		dir.descs = append(dir.descs, d.Clone())
	}
	slices.SortFunc(dir.descs, compareStart)
	return dir, nil
}

func compareStart(a, b Descriptor) int {
	return cmp.Or(bytes.Compare(a.Start, b.Start), cmp.Compare(a.ID, b.ID))
}

// Len returns the number of ranges.
func (dir *Directory) Len() int { return len(dir.descs) }

// All returns the descriptors in key order (a copy of the list; the
// descriptors themselves are shared, read-only).
func (dir *Directory) All() []Descriptor { return slices.Clone(dir.descs) }

// Get returns the range with the given id.
func (dir *Directory) Get(id uint64) (Descriptor, bool) {
	i := dir.index(id)
	if i < 0 {
		return Descriptor{}, false
	}
	return dir.descs[i], true
}

func (dir *Directory) index(id uint64) int {
	return slices.IndexFunc(dir.descs, func(d Descriptor) bool { return d.ID == id })
}

// Lookup returns the range that holds key. On a directory that passes Check
// there always is one.
func (dir *Directory) Lookup(key []byte) (Descriptor, bool) {
	i := dir.search(key)
	if i < 0 || !dir.descs[i].Contains(key) {
		return Descriptor{}, false
	}
	return dir.descs[i], true
}

// search returns the index of the last range starting at or before key, -1
// if none does.
func (dir *Directory) search(key []byte) int {
	i := sort.Search(len(dir.descs), func(i int) bool { return bytes.Compare(dir.descs[i].Start, key) > 0 })
	return i - 1
}

// Check returns nil if the ranges tile the key space: the first starts at
// the beginning, each ends where the next starts, the last is open-ended.
// Otherwise the error (wrapping ErrInvalid) names every gap and overlap with
// the ranges on either side of it.
func (dir *Directory) Check() error {
	if len(dir.descs) == 0 {
		return fmt.Errorf("%w: the directory holds no range", ErrInvalid)
	}
	var problems []string
	if first := dir.descs[0]; len(first.Start) != 0 {
		problems = append(problems, fmt.Sprintf("no range holds the keys before %v", first))
	}
	for i := 1; i < len(dir.descs); i++ {
		prev, d := dir.descs[i-1], dir.descs[i]
		switch {
		case len(prev.End) == 0:
			problems = append(problems, fmt.Sprintf("%v overlaps %v", prev, d))
		case bytes.Compare(prev.End, d.Start) > 0:
			problems = append(problems, fmt.Sprintf("%v overlaps %v", prev, d))
		case bytes.Compare(prev.End, d.Start) < 0:
			problems = append(problems, fmt.Sprintf("no range holds [%q, %q) between %v and %v", prev.End, d.Start, prev, d))
		}
	}
	if last := dir.descs[len(dir.descs)-1]; len(last.End) != 0 {
		problems = append(problems, fmt.Sprintf("no range holds the keys from %q on, after %v", last.End, last))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: ranges do not tile the key space: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// Split splits range id at splitKey (see Descriptor.Split), gives the right
// half newID, and replaces the range by its halves. newID must not name an
// existing range. The directory is unchanged on error.
func (dir *Directory) Split(id uint64, splitKey []byte, newID uint64) (left, right Descriptor, err error) {
	i := dir.index(id)
	if i < 0 {
		return left, right, fmt.Errorf("split range %d: %w", id, ErrNotFound)
	}
	if _, taken := dir.Get(newID); taken {
		return left, right, fmt.Errorf("%w: split of %v: range id %d is taken", ErrInvalid, dir.descs[i], newID)
	}
	left, right, err = dir.descs[i].Split(splitKey, newID)
	if err != nil {
		return Descriptor{}, Descriptor{}, err
	}
	dir.descs[i] = left
	dir.descs = slices.Insert(dir.descs, i+1, right)
	// right.Start > left.Start, but another range could share left's start
	// on a directory that fails Check; keep the order invariant regardless.
	slices.SortStableFunc(dir.descs, compareStart)
	return left, right, nil
}

// Replace installs d, a replica change of an existing range: same ID and
// bounds, a higher generation. An older or equal generation gets ErrStale
// (a late or repeated change), a change of bounds ErrInvalid.
func (dir *Directory) Replace(d Descriptor) error {
	if err := d.Valid(); err != nil {
		return err
	}
	i := dir.index(d.ID)
	if i < 0 {
		return fmt.Errorf("replace range %d: %w", d.ID, ErrNotFound)
	}
	cur := dir.descs[i]
	if d.Generation <= cur.Generation {
		return fmt.Errorf("replace %v by generation %d: %w", cur, d.Generation, ErrStale)
	}
	if !bytes.Equal(d.Start, cur.Start) || !bytes.Equal(d.End, cur.End) {
		return fmt.Errorf("%w: replace %v by %v: a replica change cannot move the bounds", ErrInvalid, cur, d)
	}
	dir.descs[i] = d.Clone()
	return nil
}

// Ranges yields, in key order, the ranges that hold from and every key
// after it: the range holding from first (or, in a gap, the first range
// after it). A scan walks them until it has enough. The directory must not
// change during the iteration.
func (dir *Directory) Ranges(from []byte) iter.Seq[Descriptor] {
	return func(yield func(Descriptor) bool) {
		i := dir.search(from)
		if i < 0 || !dir.descs[i].Contains(from) {
			i++
		}
		for ; i < len(dir.descs); i++ {
			if !yield(dir.descs[i]) {
				return
			}
		}
	}
}

// directoryVersion is the first byte of an encoded Directory. Version 1:
// the version byte, a uvarint count, then each descriptor as a uvarint
// length and its Marshal encoding, in key order.
const directoryVersion = 1

// Marshal encodes the directory for the meta range.
func (dir *Directory) Marshal() []byte {
	b := []byte{directoryVersion}
	b = binary.AppendUvarint(b, uint64(len(dir.descs)))
	var tmp []byte
	for _, d := range dir.descs {
		tmp = d.AppendMarshal(tmp[:0])
		b = appendBytes(b, tmp)
	}
	return b
}

// UnmarshalDirectory decodes what Directory.Marshal wrote, with the checks
// of Unmarshal and NewDirectory (not Check: see NewDirectory).
func UnmarshalDirectory(b []byte) (*Directory, error) {
	dec := decoder{b: b}
	if v := dec.byte("version"); dec.err == nil && v != directoryVersion {
		dec.failAt(dec.off-1, "directory version %d, want %d", v, directoryVersion)
	}
	n := dec.uvarint("range count")
	// An encoded descriptor takes at least 7 bytes with its length.
	if dec.err == nil && n > uint64(len(b)-dec.off)/7 {
		dec.fail("%d ranges cannot fit in %d bytes", n, len(b)-dec.off)
	}
	if dec.err != nil {
		return nil, dec.err
	}
	descs := make([]Descriptor, 0, n)
	for i := uint64(0); i < n; i++ {
		start := dec.off
		raw := dec.bytes("descriptor")
		if dec.err != nil {
			return nil, dec.err
		}
		d, err := Unmarshal(raw)
		if err != nil {
			return nil, fmt.Errorf("range %d of %d at byte %d: %w", i+1, n, start, err)
		}
		descs = append(descs, d)
	}
	if dec.off != len(b) {
		dec.fail("%d bytes after the directory", len(b)-dec.off)
		return nil, dec.err
	}
	dir, err := NewDirectory(descs...)
	if err != nil {
		return nil, err
	}
	// NewDirectory sorts; an encoding out of key order is not one Marshal
	// wrote.
	for i := range descs {
		if descs[i].ID != dir.descs[i].ID {
			return nil, fmt.Errorf("%w: ranges are not in key order (range %d at position %d)", ErrCorrupt, descs[i].ID, i+1)
		}
	}
	return dir, nil
}
