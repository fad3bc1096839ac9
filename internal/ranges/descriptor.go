package ranges

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Sentinel errors callers branch on; the errors returned wrap them with the
// offending range or byte offset.
var (
	// ErrInvalid: a descriptor or directory breaks an invariant.
	ErrInvalid = errors.New("invalid range descriptor")
	// ErrCorrupt: bytes that are not an encoding this package wrote.
	ErrCorrupt = errors.New("corrupt range encoding")
	// ErrNotFound: no range with that id, or none holds that key.
	ErrNotFound = errors.New("range not found")
	// ErrStale: a descriptor older (by generation) than the one it would replace.
	ErrStale = errors.New("stale range descriptor")
)

// Replica is one member of a range's Raft group.
type Replica struct {
	Node    string // the node's name, as in the cluster's member list
	RaftID  uint64 // the replica's id inside the range's Raft group; never 0
	Learner bool   // receives the log but does not vote
}

// Descriptor says which keys a range holds and where its replicas are. The
// key space is ordered bytes; a range holds every key k with
// Start <= k < End, End empty meaning no upper bound.
//
// Descriptors returned by this package may share byte slices with the
// structure they came from: treat them as read-only, or Clone them.
type Descriptor struct {
	ID    uint64 // never 0; never reused for another range
	Start []byte // empty: the beginning of the key space
	End   []byte // empty: the end of the key space
	// Replicas in no particular order. Invariant (Valid): no node and no
	// RaftID twice, at least one voter.
	Replicas []Replica
	// Generation is bumped on every split (both halves get the parent's
	// generation plus one) and every replica change. Of two descriptors
	// whose key spans overlap, the one with the higher generation is the
	// newer: see the package documentation.
	Generation uint64
}

// Contains reports whether key lies in the range.
func (d Descriptor) Contains(key []byte) bool {
	return bytes.Compare(key, d.Start) >= 0 && (len(d.End) == 0 || bytes.Compare(key, d.End) < 0)
}

// overlaps reports whether some key lies in both d and o.
func (d Descriptor) overlaps(o Descriptor) bool {
	// [a,b) and [c,d) overlap iff a < d and c < b, with empty ends open.
	return (len(o.End) == 0 || bytes.Compare(d.Start, o.End) < 0) &&
		(len(d.End) == 0 || bytes.Compare(o.Start, d.End) < 0)
}

// Valid returns nil if d is a well-formed descriptor: a non-zero ID, Start
// before End (unless End is open), and replicas with non-empty node names,
// non-zero Raft ids, no node or Raft id twice and at least one voter. The
// error wraps ErrInvalid and names the range.
func (d Descriptor) Valid() error {
	if d.ID == 0 {
		return fmt.Errorf("%w: range id 0", ErrInvalid)
	}
	if len(d.End) != 0 && bytes.Compare(d.Start, d.End) >= 0 {
		return fmt.Errorf("%w: range %d: start %q is not before end %q", ErrInvalid, d.ID, d.Start, d.End)
	}
	voters := 0
	for i, r := range d.Replicas {
		if r.Node == "" {
			return fmt.Errorf("%w: range %d: replica %d has no node name", ErrInvalid, d.ID, i)
		}
		if r.RaftID == 0 {
			return fmt.Errorf("%w: range %d: replica on node %q has raft id 0", ErrInvalid, d.ID, r.Node)
		}
		for _, o := range d.Replicas[:i] {
			if o.Node == r.Node {
				return fmt.Errorf("%w: range %d: node %q holds two replicas", ErrInvalid, d.ID, r.Node)
			}
			if o.RaftID == r.RaftID {
				return fmt.Errorf("%w: range %d: raft id %d on nodes %q and %q", ErrInvalid, d.ID, r.RaftID, o.Node, r.Node)
			}
		}
		if !r.Learner {
			voters++
		}
	}
	if voters == 0 {
		return fmt.Errorf("%w: range %d: no voting replica", ErrInvalid, d.ID)
	}
	return nil
}

// Clone returns a deep copy of d.
func (d Descriptor) Clone() Descriptor {
	d.Start = bytes.Clone(d.Start)
	d.End = bytes.Clone(d.End)
	d.Replicas = slices.Clone(d.Replicas)
	return d
}

// Equal reports whether d and o describe the same range identically (an empty
// and a nil key are equal; replicas compare in order).
func (d Descriptor) Equal(o Descriptor) bool {
	return d.ID == o.ID && d.Generation == o.Generation &&
		bytes.Equal(d.Start, o.Start) && bytes.Equal(d.End, o.End) &&
		slices.Equal(d.Replicas, o.Replicas)
}

// String names the range for errors and logs: r7[a, m) gen 3.
func (d Descriptor) String() string {
	end := fmt.Sprintf("%q", d.End)
	if len(d.End) == 0 {
		end = "end"
	}
	return fmt.Sprintf("r%d[%q, %s) gen %d", d.ID, d.Start, end, d.Generation)
}

// Split returns the two halves of d at splitKey: left keeps d's ID and holds
// [Start, splitKey), right gets newID and holds [splitKey, End). Both keep d's
// replicas and get d's generation plus one, so each is newer than d. The
// key must lie strictly inside d (not at its start: both halves must be
// non-empty spans), and newID must differ from d's.
func (d Descriptor) Split(splitKey []byte, newID uint64) (left, right Descriptor, err error) {
	if bytes.Compare(splitKey, d.Start) <= 0 || !d.Contains(splitKey) {
		return left, right, fmt.Errorf("%w: split key %q is not strictly inside %v", ErrInvalid, splitKey, d)
	}
	if newID == 0 || newID == d.ID {
		return left, right, fmt.Errorf("%w: split of %v: new range id %d", ErrInvalid, d, newID)
	}
	left = d.Clone()
	left.End = bytes.Clone(splitKey)
	left.Generation++
	right = d.Clone()
	right.ID = newID
	right.Start = bytes.Clone(splitKey)
	right.Generation++
	return left, right, nil
}

// descriptorVersion is the first byte of an encoded Descriptor. Version 1:
//
//	version byte
//	uvarint id, uvarint generation
//	uvarint len(start), start, uvarint len(end), end
//	uvarint count of replicas, each: uvarint len(node), node, uvarint raft id, flags byte (bit 0: learner)
//
// Every uvarint is in its shortest form, so an encoding is canonical: equal
// descriptors encode to equal bytes.
const descriptorVersion = 1

// replicaLearner is the flags bit of a learner replica.
const replicaLearner = 1

// Marshal encodes d compactly (see descriptorVersion). It does not check
// that d is Valid; Unmarshal does.
func (d Descriptor) Marshal() []byte {
	return d.AppendMarshal(nil)
}

// AppendMarshal appends d's encoding to b and returns it.
func (d Descriptor) AppendMarshal(b []byte) []byte {
	b = append(b, descriptorVersion)
	b = binary.AppendUvarint(b, d.ID)
	b = binary.AppendUvarint(b, d.Generation)
	b = appendBytes(b, d.Start)
	b = appendBytes(b, d.End)
	b = binary.AppendUvarint(b, uint64(len(d.Replicas)))
	for _, r := range d.Replicas {
		b = appendBytes(b, []byte(r.Node))
		b = binary.AppendUvarint(b, r.RaftID)
		var flags byte
		if r.Learner {
			flags |= replicaLearner
		}
		b = append(b, flags)
	}
	return b
}

// Unmarshal decodes a descriptor Marshal wrote and checks that it is Valid.
// Bad bytes get an error wrapping ErrCorrupt that says what is wrong and
// where; a well-formed but invalid descriptor one wrapping ErrInvalid. The
// descriptor does not share memory with b.
func Unmarshal(b []byte) (Descriptor, error) {
	dec := decoder{b: b}
	d := dec.descriptor()
	if dec.err == nil && dec.off != len(b) {
		dec.fail("%d bytes after the descriptor", len(b)-dec.off)
	}
	if dec.err != nil {
		return Descriptor{}, dec.err
	}
	if err := d.Valid(); err != nil {
		return Descriptor{}, err
	}
	return d, nil
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the encodings of this package; the first error sticks and
// every later read returns zero values.
type decoder struct {
	b   []byte
	off int
	err error
}

func (dec *decoder) fail(format string, args ...any) {
	dec.failAt(dec.off, format, args...)
}

// failAt records an error about the field at byte off.
func (dec *decoder) failAt(off int, format string, args ...any) {
	if dec.err == nil {
		dec.err = fmt.Errorf("%w: at byte %d: %s", ErrCorrupt, off, fmt.Sprintf(format, args...))
	}
}

func (dec *decoder) byte(what string) byte {
	if dec.err != nil {
		return 0
	}
	if dec.off >= len(dec.b) {
		dec.fail("input ends before %s", what)
		return 0
	}
	c := dec.b[dec.off]
	dec.off++
	return c
}

func (dec *decoder) uvarint(what string) uint64 {
	if dec.err != nil {
		return 0
	}
	v, n := binary.Uvarint(dec.b[dec.off:])
	switch {
	case n == 0:
		dec.fail("input ends inside %s", what)
		return 0
	case n < 0:
		dec.fail("%s overflows 64 bits", what)
		return 0
	case n != uvarintLen(v):
		dec.fail("%s is not in its shortest form", what)
		return 0
	}
	dec.off += n
	return v
}

// bytes reads a length-prefixed byte string; empty is returned as nil.
func (dec *decoder) bytes(what string) []byte {
	n := dec.uvarint("length of " + what)
	if dec.err != nil {
		return nil
	}
	if n > uint64(len(dec.b)-dec.off) {
		dec.fail("%s of %d bytes runs past the end of the input (%d left)", what, n, len(dec.b)-dec.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	s := bytes.Clone(dec.b[dec.off : dec.off+int(n)])
	dec.off += int(n)
	return s
}

func (dec *decoder) descriptor() Descriptor {
	if v := dec.byte("version"); dec.err == nil && v != descriptorVersion {
		dec.failAt(dec.off-1, "descriptor version %d, want %d", v, descriptorVersion)
	}
	var d Descriptor
	d.ID = dec.uvarint("range id")
	d.Generation = dec.uvarint("generation")
	d.Start = dec.bytes("start key")
	d.End = dec.bytes("end key")
	n := dec.uvarint("replica count")
	// Each replica takes at least 3 bytes; a count beyond what the input can
	// hold is corrupt, and must not size an allocation.
	if dec.err == nil && n > uint64(len(dec.b)-dec.off)/3 {
		dec.fail("%d replicas cannot fit in %d bytes", n, len(dec.b)-dec.off)
	}
	if dec.err != nil {
		return Descriptor{}
	}
	if n > 0 {
		d.Replicas = make([]Replica, 0, n)
	}
	for i := uint64(0); i < n && dec.err == nil; i++ {
		var r Replica
		r.Node = string(dec.bytes("node name"))
		r.RaftID = dec.uvarint("raft id")
		flags := dec.byte("replica flags")
		if dec.err == nil && flags&^replicaLearner != 0 {
			dec.failAt(dec.off-1, "unknown replica flags %#x", flags)
		}
		r.Learner = flags&replicaLearner != 0
		d.Replicas = append(d.Replicas, r)
	}
	return d
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// View is the JSON form of one range in GET /cluster/ranges:
// {"id":7,"start":"","end":"key5","leader":"n2","replicas":["n1","n2","n3"],"bytes":123456}.
// End "" is the end of the key space. Leader and Bytes are not in the
// descriptor; the caller fills them.
type View struct {
	ID       uint64   `json:"id"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"`
	// Learners names the replicas of Replicas that do not vote yet (being
	// added); absent when there are none.
	Learners   []string `json:"learners,omitempty"`
	Bytes      int64    `json:"bytes"`
	Generation uint64   `json:"generation"`
}

// View returns d's JSON form with the given leader ("" if unknown) and size
// in bytes. Replicas are sorted by node name so the answer is stable.
func (d Descriptor) View(leader string, size int64) View {
	v := View{
		ID:         d.ID,
		Start:      string(d.Start),
		End:        string(d.End),
		Leader:     leader,
		Replicas:   make([]string, 0, len(d.Replicas)),
		Bytes:      size,
		Generation: d.Generation,
	}
	for _, r := range d.Replicas {
		v.Replicas = append(v.Replicas, r.Node)
		if r.Learner {
			v.Learners = append(v.Learners, r.Node)
		}
	}
	slices.Sort(v.Replicas)
	slices.Sort(v.Learners)
	return v
}

// ViewList is the body of GET /cluster/ranges: {"ranges":[...]}, sorted by
// start.
type ViewList struct {
	Ranges []View `json:"ranges"`
}
