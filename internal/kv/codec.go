package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// ErrMalformed is wrapped by every error of UnmarshalCommand and UnmarshalResult.
var ErrMalformed = errors.New("malformed encoding")

// codecVersion is the first byte of every encoded Command and Result. A decoder
// rejects versions it does not know, so a new encoding (or a new Op, such as a
// transaction) can be introduced behind a version check.
const codecVersion = 1

// Command flags (byte 2 of an encoded Command).
const (
	cmdCreateOnly   = 1 << 0
	cmdPrevVersion  = 1 << 1
	cmdPrevRevision = 1 << 2
	cmdKnownFlags   = cmdCreateOnly | cmdPrevVersion | cmdPrevRevision
)

// Result flags (byte 2 of an encoded Result).
const (
	resCurrent    = 1 << 0
	resKnownFlags = resCurrent
)

// Marshal returns the binary encoding of c:
//
//	version    1 byte (1)
//	op         1 byte
//	flags      1 byte: 1 CreateOnly, 2 PrevVersion present, 4 PrevRevision present
//	key        uvarint length, bytes
//	value      uvarint length, bytes (OpPut only)
//	prev_ver   zigzag varint (if flagged)
//	prev_rev   zigzag varint (if flagged)
//
// Varints are minimal, so every Command has exactly one encoding.
func (c Command) Marshal() []byte {
	return c.AppendMarshal(make([]byte, 0, c.size()))
}

func (c Command) size() int {
	n := 3 + uvarintLen(uint64(len(c.Key))) + len(c.Key)
	if c.Op == OpPut {
		n += uvarintLen(uint64(len(c.Value))) + len(c.Value)
	}
	if c.Cond.PrevVersion != nil {
		n += varintLen(*c.Cond.PrevVersion)
	}
	if c.Cond.PrevRevision != nil {
		n += varintLen(*c.Cond.PrevRevision)
	}
	return n
}

// AppendMarshal appends the encoding of c (see Marshal) to dst.
func (c Command) AppendMarshal(dst []byte) []byte {
	var flags byte
	if c.Cond.CreateOnly {
		flags |= cmdCreateOnly
	}
	if c.Cond.PrevVersion != nil {
		flags |= cmdPrevVersion
	}
	if c.Cond.PrevRevision != nil {
		flags |= cmdPrevRevision
	}
	dst = append(dst, codecVersion, byte(c.Op), flags)
	dst = appendBytes(dst, c.Key)
	if c.Op == OpPut {
		dst = appendBytes(dst, c.Value)
	}
	if c.Cond.PrevVersion != nil {
		dst = binary.AppendVarint(dst, *c.Cond.PrevVersion)
	}
	if c.Cond.PrevRevision != nil {
		dst = binary.AppendVarint(dst, *c.Cond.PrevRevision)
	}
	return dst
}

// UnmarshalCommand decodes a Command encoded by Marshal. It rejects anything else
// (unknown version, op or flags, truncation, non-minimal varints, trailing bytes)
// with an error wrapping ErrMalformed, and never panics.
//
// The Key and Value of the result alias b (no copy is made): b must not be modified
// while the Command is in use. Store.Apply copies what it keeps, so a log entry's
// buffer may be reused once Apply returns.
func UnmarshalCommand(b []byte) (Command, error) {
	d := decoder{b: b, what: "command"}
	var c Command
	if v := d.u8("version"); d.err == nil && v != codecVersion {
		return Command{}, d.fail("unknown version %d", v)
	}
	c.Op = Op(d.u8("op"))
	if d.err == nil && c.Op != OpPut && c.Op != OpDelete {
		return Command{}, d.fail("unknown op %d", c.Op)
	}
	flags := d.u8("flags")
	if d.err == nil && flags&^cmdKnownFlags != 0 {
		return Command{}, d.fail("unknown flags %#x", flags)
	}
	c.Cond.CreateOnly = flags&cmdCreateOnly != 0
	c.Key = d.bytes("key")
	if c.Op == OpPut {
		c.Value = d.bytes("value")
	}
	if flags&cmdPrevVersion != 0 {
		v := d.varint("prev_version")
		c.Cond.PrevVersion = &v
	}
	if flags&cmdPrevRevision != 0 {
		v := d.varint("prev_revision")
		c.Cond.PrevRevision = &v
	}
	if err := d.finish(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// Marshal returns the binary encoding of r:
//
//	version    1 byte (1)
//	status     1 byte
//	flags      1 byte: 1 Current present
//	revision   zigzag varint
//	current    (if flagged) key and value as uvarint length + bytes, then
//	           version, revision, create_revision as zigzag varints
//
// Current is omitted when it is the zero KeyValue (empty key and value).
func (r Result) Marshal() []byte {
	return r.AppendMarshal(make([]byte, 0, r.size()))
}

func (r Result) hasCurrent() bool {
	c := r.Current
	return len(c.Key) != 0 || len(c.Value) != 0 || c.Version != 0 || c.Revision != 0 || c.CreateRevision != 0
}

func (r Result) size() int {
	n := 3 + varintLen(r.Revision)
	if c := r.Current; r.hasCurrent() {
		n += uvarintLen(uint64(len(c.Key))) + len(c.Key) + uvarintLen(uint64(len(c.Value))) + len(c.Value) +
			varintLen(c.Version) + varintLen(c.Revision) + varintLen(c.CreateRevision)
	}
	return n
}

// AppendMarshal appends the encoding of r (see Marshal) to dst.
func (r Result) AppendMarshal(dst []byte) []byte {
	has := r.hasCurrent()
	var flags byte
	if has {
		flags |= resCurrent
	}
	dst = append(dst, codecVersion, byte(r.Status), flags)
	dst = binary.AppendVarint(dst, r.Revision)
	if has {
		c := r.Current
		dst = appendBytes(dst, c.Key)
		dst = appendBytes(dst, c.Value)
		dst = binary.AppendVarint(dst, c.Version)
		dst = binary.AppendVarint(dst, c.Revision)
		dst = binary.AppendVarint(dst, c.CreateRevision)
	}
	return dst
}

// UnmarshalResult decodes a Result encoded by Marshal, with the same strictness as
// UnmarshalCommand. Current's Key and Value alias b.
func UnmarshalResult(b []byte) (Result, error) {
	d := decoder{b: b, what: "result"}
	var r Result
	if v := d.u8("version"); d.err == nil && v != codecVersion {
		return Result{}, d.fail("unknown version %d", v)
	}
	r.Status = Status(d.u8("status"))
	if d.err == nil && r.Status > StatusNotFound {
		return Result{}, d.fail("unknown status %d", r.Status)
	}
	flags := d.u8("flags")
	if d.err == nil && flags&^resKnownFlags != 0 {
		return Result{}, d.fail("unknown flags %#x", flags)
	}
	r.Revision = d.varint("revision")
	if flags&resCurrent != 0 {
		c := &r.Current
		c.Key = d.bytes("current key")
		c.Value = d.bytes("current value")
		c.Version = d.varint("current version")
		c.Revision = d.varint("current revision")
		c.CreateRevision = d.varint("current create_revision")
		if d.err == nil && !r.hasCurrent() {
			return Result{}, d.fail("zero current encoded")
		}
	}
	if err := d.finish(); err != nil {
		return Result{}, err
	}
	return r, nil
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarintLen(u)
}

// decoder reads fields from b. After the first error every read returns a zero
// value and the error sticks, so callers check it once at the end.
type decoder struct {
	b    []byte
	off  int
	what string
	err  error
}

func (d *decoder) fail(format string, args ...any) error {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s: offset %d: %s: %w", d.what, d.off, fmt.Sprintf(format, args...), ErrMalformed)
	}
	return d.err
}

func (d *decoder) u8(field string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated %s", field)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail("truncated %s", field)
		return 0
	case n < 0:
		d.fail("%s overflows 64 bits", field)
		return 0
	case n != uvarintLen(v):
		d.fail("%s is not a minimal varint", field)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(field string) int64 {
	u := d.uvarint(field)
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// bytes returns the next length-prefixed field, aliasing b, with its capacity
// capped so that an append cannot overwrite what follows.
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("truncated %s: length %d exceeds the %d bytes left", field, n, len(d.b)-d.off)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[d.off : d.off+int(n) : d.off+int(n)]
	d.off += int(n)
	return v
}

func (d *decoder) finish() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	return d.err
}
