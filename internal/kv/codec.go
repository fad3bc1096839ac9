package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
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
	cmdJSON         = 1 << 3 // OpPut only: Kind is KindJSON
	cmdRequest      = 1 << 4 // Request, Time and TTL follow
	cmdDeadline     = 1 << 5 // OpPut only: Deadline follows
	cmdKnownFlags   = cmdCreateOnly | cmdPrevVersion | cmdPrevRevision | cmdJSON | cmdRequest | cmdDeadline
)

// txnPutJSON is the type byte of a TxnPut whose value is KindJSON.
const txnPutJSON = 0x80 | byte(TxnPut)

// Result flags (byte 2 of an encoded Result).
const (
	resCurrent    = 1 << 0
	resTxn        = 1 << 1
	resVersion    = 1 << 2
	resKinds      = 1 << 3 // every encoded pair is followed by its kind
	resIntent     = 1 << 4
	resKnownFlags = resCurrent | resTxn | resVersion | resKinds | resIntent
)

// The fewest bytes an encoded element of a Txn or TxnResult can take. A decoder
// refuses a count that the bytes left cannot hold before it allocates.
const (
	minCompareSize     = 4 // target, op, key length, operand (exists byte or varint or value length)
	minTxnOpSize       = 2 // type, key length
	minTxnResponseSize = 1 // type (of a put)
)

// Marshal returns the binary encoding of c:
//
//	version    1 byte (1)
//	op         1 byte
//	flags      1 byte: 1 CreateOnly, 2 PrevVersion present, 4 PrevRevision
//	           present, 8 the value is KindJSON (OpPut only)
//	key        uvarint length, bytes
//	value      uvarint length, bytes (OpPut only)
//	prev_ver   zigzag varint (if flagged)
//	prev_rev   zigzag varint (if flagged)
//	deadline   zigzag varint, > 0 (if flag 32; OpPut only)
//	request    (if flag 16) client and request (uvarint length, bytes), time
//	           and TTL (zigzag varints)
//
// An OpTxn has no flag but 16 and, instead of key, value and conditions, its
// Txn (Key, Value and Cond are not encoded; a nil Txn is encoded as the empty
// one), then the request as above:
//
//	compares   uvarint count, then per compare: target 1 byte, op 1 byte,
//	           key (uvarint length, bytes), then the operand: value (uvarint
//	           length, bytes) for TargetValue, 1 byte 0 or 1 for TargetExists,
//	           a zigzag varint for the other targets
//	success    uvarint count, then per op: type 1 byte (0x81 for a TxnPut
//	           whose value is KindJSON), key (uvarint length, bytes), value
//	           (uvarint length, bytes; TxnPut only)
//	failure    as success
//
// An OpExpire has no flag and carries only Now, a zigzag varint > 0.
//
// An OpAuth has no flag and carries only its auth.Change: its encoding
// (auth.Change.Marshal) as a uvarint length and bytes.
//
// An OpSplit has no flag and carries its key (uvarint length, bytes; not
// empty) and the new range's Shard (uvarint, > 0). An OpAllocate has no flag
// and carries nothing. An OpMark has no flag and carries Mark (uvarint, > 0);
// an OpCompact or OpAdvance has no flag and carries Revision (uvarint, > 0).
//
// Varints are minimal, so every Command has exactly one encoding.
//
// Compatibility: version 1 grew by flags and type bytes that a decoder that
// predates them refuses (ErrMalformed) rather than misreads: a JSON value
// (flag 8, type 0x81), a request id (flag 16), a key's deadline (flag 32)
// and OpExpire (op 4) are such cases. A log written before them holds none of
// them and decodes as it always did, its values as strings.
func (c Command) Marshal() []byte {
	return c.AppendMarshal(make([]byte, 0, c.size()))
}

func (c Command) size() int {
	n := 0
	if !c.Request.IsZero() {
		n += bytesLen(c.Request.Client) + bytesLen(c.Request.Request) + varintLen(c.Time) + varintLen(c.TTL)
	}
	if c.Op == OpTxn {
		return n + 3 + c.Txn.size()
	}
	if c.Op == OpExpire {
		return 3 + varintLen(c.Now)
	}
	if c.Op == OpAuth {
		return 3 + 16 + 256 // a guess: auth changes are rare and small
	}
	if c.Op == OpSplit {
		return 3 + bytesLen(c.Key) + uvarintLen(c.Shard)
	}
	if c.Op == OpAllocate {
		return 3
	}
	if c.Op == OpMark {
		return 3 + uvarintLen(c.Mark)
	}
	if c.Op == OpCompact || c.Op == OpAdvance {
		return 3 + uvarintLen(uint64(c.Revision))
	}
	if c.Intent != nil {
		return n + 3 + intentSize(c.Intent) + uvarintLen(uint64(c.Revision)) + varintLen(c.Now)
	}
	if c.Deadline != 0 {
		n += varintLen(c.Deadline)
	}
	n += 3 + uvarintLen(uint64(len(c.Key))) + len(c.Key)
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
	if !c.Request.IsZero() {
		flags |= cmdRequest
	}
	if c.Op == OpTxn {
		dst = append(dst, codecVersion, byte(c.Op), flags)
		return c.appendRequest(c.Txn.appendMarshal(dst))
	}
	if c.Op == OpExpire {
		dst = append(dst, codecVersion, byte(c.Op), 0)
		return binary.AppendVarint(dst, c.Now)
	}
	if c.Op == OpAuth {
		return appendAuth(dst, c.Auth)
	}
	if c.Op == OpSplit {
		dst = append(dst, codecVersion, byte(c.Op), 0)
		return binary.AppendUvarint(appendBytes(dst, c.Key), c.Shard)
	}
	if c.Op == OpAllocate {
		return append(dst, codecVersion, byte(c.Op), 0)
	}
	if c.Op == OpMark {
		return binary.AppendUvarint(append(dst, codecVersion, byte(c.Op), 0), c.Mark)
	}
	if c.Op == OpCompact || c.Op == OpAdvance {
		return binary.AppendUvarint(append(dst, codecVersion, byte(c.Op), 0), uint64(c.Revision))
	}
	if isIntentOp(c.Op) {
		in := c.Intent
		if in == nil {
			in = &Intent{}
		}
		dst = appendIntent(append(dst, codecVersion, byte(c.Op), flags), in)
		return c.appendRequest(binary.AppendVarint(binary.AppendUvarint(dst, uint64(c.Revision)), c.Now))
	}
	if c.Op == OpPut && c.Deadline != 0 {
		flags |= cmdDeadline
	}
	if c.Cond.CreateOnly {
		flags |= cmdCreateOnly
	}
	if c.Cond.PrevVersion != nil {
		flags |= cmdPrevVersion
	}
	if c.Cond.PrevRevision != nil {
		flags |= cmdPrevRevision
	}
	if c.Op == OpPut && c.Kind == KindJSON {
		flags |= cmdJSON
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
	if flags&cmdDeadline != 0 {
		dst = binary.AppendVarint(dst, c.Deadline)
	}
	return c.appendRequest(dst)
}

func (c Command) appendRequest(dst []byte) []byte {
	if c.Request.IsZero() {
		return dst
	}
	dst = appendBytes(dst, c.Request.Client)
	dst = appendBytes(dst, c.Request.Request)
	dst = binary.AppendVarint(dst, c.Time)
	return binary.AppendVarint(dst, c.TTL)
}

// request decodes the request id, time and TTL of a Command, which must be
// as Command.Validate requires.
func (d *decoder) request(c *Command) {
	c.Request.Client = d.bytes("client id")
	c.Request.Request = d.bytes("request id")
	c.Time = d.varint("time")
	c.TTL = d.varint("ttl")
	if d.err == nil {
		err := c.checkRequest()
		if err == nil && c.Request.IsZero() {
			err = errors.New("flagged, but empty")
		}
		if err != nil {
			d.fail("request id: %v", err)
		}
	}
}

// UnmarshalCommand decodes a Command encoded by Marshal. It rejects anything else
// (unknown version, op or flags, truncation, non-minimal varints, trailing bytes,
// in a txn an unknown compare target or op or op type, or an exists operand
// other than 0 and 1) with an error wrapping ErrMalformed, and never panics. The
// Txn of a decoded OpTxn is never nil; it may still fail Txn.Validate (a key
// written twice in a branch), which Store.Apply does not require.
//
// The keys and values of the result (of its Txn too) alias b (no copy is made): b must not be modified
// while the Command is in use. Store.Apply copies what it keeps, so a log entry's
// buffer may be reused once Apply returns.
// CommandOp returns the Op of an encoded Command without decoding the rest;
// ok is false if b is not long enough to say.
func CommandOp(b []byte) (op Op, ok bool) {
	if len(b) < 2 || b[0] != codecVersion {
		return 0, false
	}
	return Op(b[1]), true
}

func UnmarshalCommand(b []byte) (Command, error) {
	d := decoder{b: b, what: "command"}
	var c Command
	if v := d.u8("version"); d.err == nil && v != codecVersion {
		return Command{}, d.fail("unknown version %d", v)
	}
	c.Op = Op(d.u8("op"))
	if d.err == nil && c.Op != OpPut && c.Op != OpDelete && c.Op != OpTxn && c.Op != OpExpire && c.Op != OpAuth && c.Op != OpSplit && c.Op != OpAllocate && c.Op != OpMark && c.Op != OpCompact && c.Op != OpAdvance && !isIntentOp(c.Op) {
		return Command{}, d.fail("unknown op %d", c.Op)
	}
	flags := d.u8("flags")
	if d.err == nil && flags&^cmdKnownFlags != 0 {
		return Command{}, d.fail("unknown flags %#x", flags)
	}
	if c.Op == OpTxn {
		if d.err == nil && flags&^cmdRequest != 0 {
			return Command{}, d.fail("flags %#x on a txn", flags)
		}
		c.Txn = d.txn()
		if flags&cmdRequest != 0 {
			d.request(&c)
		}
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if c.Op == OpAuth {
		if d.err == nil && flags != 0 {
			return Command{}, d.fail("flags %#x on an auth change", flags)
		}
		c.Auth = d.auth()
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if c.Op == OpAllocate {
		if d.err == nil && flags != 0 {
			return Command{}, d.fail("flags %#x on an allocate", flags)
		}
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if c.Op == OpCompact || c.Op == OpAdvance {
		if d.err == nil && flags != 0 {
			return Command{}, d.fail("flags %#x on a %v", flags, c.Op)
		}
		rev := d.uvarint("revision")
		if d.err == nil && (rev == 0 || rev > math.MaxInt64) {
			return Command{}, d.fail("%v to revision %d", c.Op, rev)
		}
		c.Revision = int64(rev)
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if isIntentOp(c.Op) {
		if d.err == nil && flags&^cmdRequest != 0 {
			return Command{}, d.fail("flags %#x on a %v", flags, c.Op)
		}
		c.Intent = d.intent()
		rev := d.uvarint("revision")
		if d.err == nil && rev > math.MaxInt64 {
			return Command{}, d.fail("revision %d", rev)
		}
		c.Revision = int64(rev)
		c.Now = d.varint("now")
		if flags&cmdRequest != 0 {
			d.request(&c)
		}
		if d.err == nil {
			if err := c.checkIntent(); err != nil {
				return Command{}, d.fail("%v", err)
			}
		}
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if c.Op == OpMark {
		if d.err == nil && flags != 0 {
			return Command{}, d.fail("flags %#x on a mark", flags)
		}
		c.Mark = d.uvarint("mark")
		if d.err == nil && c.Mark == 0 {
			return Command{}, d.fail("a mark of 0")
		}
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if c.Op == OpSplit {
		if d.err == nil && flags != 0 {
			return Command{}, d.fail("flags %#x on a split", flags)
		}
		c.Key = d.bytes("split key")
		c.Shard = d.uvarint("split shard")
		if d.err == nil && (len(c.Key) == 0 || c.Shard == 0) {
			return Command{}, d.fail("a split needs a key and a shard")
		}
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if c.Op == OpExpire {
		if d.err == nil && flags != 0 {
			return Command{}, d.fail("flags %#x on an expire", flags)
		}
		c.Now = d.varint("now")
		if d.err == nil && c.Now <= 0 {
			return Command{}, d.fail("expire time %d is not positive", c.Now)
		}
		if err := d.finish(); err != nil {
			return Command{}, err
		}
		return c, nil
	}
	if d.err == nil && flags&cmdDeadline != 0 && c.Op != OpPut {
		return Command{}, d.fail("deadline flag on a %v", c.Op)
	}
	if flags&cmdJSON != 0 {
		if d.err == nil && c.Op != OpPut {
			return Command{}, d.fail("JSON value flag on a %v", c.Op)
		}
		c.Kind = KindJSON
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
	if flags&cmdDeadline != 0 {
		c.Deadline = d.varint("deadline")
		if d.err == nil && c.Deadline <= 0 {
			return Command{}, d.fail("deadline %d is not positive", c.Deadline)
		}
	}
	if flags&cmdRequest != 0 {
		d.request(&c)
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
//	flags      1 byte: 1 Current present, 2 Txn present, 4 Version present
//	revision   zigzag varint
//	version    zigzag varint (if flagged: Version is not 0)
//	current    (if flagged) key and value as uvarint length + bytes, then
//	           version, revision, create_revision as zigzag varints, then
//	           (if flag 8) the value's kind, 1 byte
//
// Current is omitted when it is the zero KeyValue (empty key and value, no
// kind). Flag 8 is set when a pair encoded (Current, or a get response of Txn)
// holds a value of another kind than KindString; then every encoded pair is
// followed by its kind byte. When Txn is not nil, flag 2 is set and it
// follows:
//
//	succeeded  1 byte, 0 or 1
//	responses  uvarint count, then per response: type 1 byte, then for a
//	           TxnDelete deleted as a zigzag varint, for a TxnGet found as 1
//	           byte 0 or 1 and, if found, the pair encoded as current is
//
// The KV of a get that found nothing is not encoded (it decodes as zero), nor
// are the fields that do not belong to a response's type.
func (r Result) Marshal() []byte {
	return r.AppendMarshal(make([]byte, 0, r.size()))
}

func (r Result) hasCurrent() bool {
	c := r.Current
	return len(c.Key) != 0 || len(c.Value) != 0 || c.Kind != KindString || c.Version != 0 || c.Revision != 0 || c.CreateRevision != 0
}

// hasKinds reports whether a pair that r's encoding holds has a value of
// another kind than a string, so that every pair carries its kind byte.
func (r Result) hasKinds() bool {
	if r.hasCurrent() && r.Current.Kind != KindString {
		return true
	}
	if r.Txn != nil {
		for i := range r.Txn.Responses {
			if x := &r.Txn.Responses[i]; x.Type == TxnGet && x.Found && x.KV.Kind != KindString {
				return true
			}
		}
	}
	return false
}

func (r Result) size() int {
	n := 3 + varintLen(r.Revision)
	if r.Version != 0 {
		n += varintLen(r.Version)
	}
	kinds := r.hasKinds()
	if c := r.Current; r.hasCurrent() {
		n += uvarintLen(uint64(len(c.Key))) + len(c.Key) + uvarintLen(uint64(len(c.Value))) + len(c.Value) +
			varintLen(c.Version) + varintLen(c.Revision) + varintLen(c.CreateRevision)
		if kinds {
			n++
		}
	}
	if r.Txn != nil {
		n += r.Txn.size(kinds)
	}
	if r.Intent != nil {
		n += intentSize(r.Intent) + varintLen(r.Intent.Rev)
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
	if r.Txn != nil {
		flags |= resTxn
	}
	if r.Intent != nil {
		flags |= resIntent
	}
	if r.Version != 0 {
		flags |= resVersion
	}
	kinds := r.hasKinds()
	if kinds {
		flags |= resKinds
	}
	dst = append(dst, codecVersion, byte(r.Status), flags)
	dst = binary.AppendVarint(dst, r.Revision)
	if r.Version != 0 {
		dst = binary.AppendVarint(dst, r.Version)
	}
	if has {
		c := r.Current
		dst = appendBytes(dst, c.Key)
		dst = appendBytes(dst, c.Value)
		dst = binary.AppendVarint(dst, c.Version)
		dst = binary.AppendVarint(dst, c.Revision)
		dst = binary.AppendVarint(dst, c.CreateRevision)
		if kinds {
			dst = append(dst, byte(c.Kind))
		}
	}
	if r.Txn != nil {
		dst = r.Txn.appendMarshal(dst, kinds)
	}
	if r.Intent != nil {
		dst = binary.AppendVarint(appendIntent(dst, r.Intent), r.Intent.Rev)
	}
	return dst
}

// UnmarshalResult decodes a Result encoded by Marshal, with the same strictness as
// UnmarshalCommand. The keys and values of Current and of Txn's responses alias b.
func UnmarshalResult(b []byte) (Result, error) {
	d := decoder{b: b, what: "result"}
	var r Result
	if v := d.u8("version"); d.err == nil && v != codecVersion {
		return Result{}, d.fail("unknown version %d", v)
	}
	r.Status = Status(d.u8("status"))
	if d.err == nil && r.Status > StatusAborted {
		return Result{}, d.fail("unknown status %d", r.Status)
	}
	flags := d.u8("flags")
	if d.err == nil && flags&^resKnownFlags != 0 {
		return Result{}, d.fail("unknown flags %#x", flags)
	}
	r.Revision = d.varint("revision")
	if flags&resVersion != 0 {
		r.Version = d.varint("version")
		if d.err == nil && r.Version == 0 {
			return Result{}, d.fail("zero version encoded")
		}
	}
	if flags&resCurrent != 0 {
		c := &r.Current
		c.Key = d.bytes("current key")
		c.Value = d.bytes("current value")
		c.Version = d.varint("current version")
		c.Revision = d.varint("current revision")
		c.CreateRevision = d.varint("current create_revision")
		if flags&resKinds != 0 {
			c.Kind = d.kind("current kind")
		}
		if d.err == nil && !r.hasCurrent() {
			return Result{}, d.fail("zero current encoded")
		}
	}
	if flags&resTxn != 0 {
		r.Txn = d.txnResult(flags&resKinds != 0)
	}
	if flags&resIntent != 0 {
		r.Intent = d.intent()
		if d.err == nil {
			r.Intent.Rev = d.varint("lock revision")
		}
	}
	if d.err == nil && flags&resKinds != 0 && !r.hasKinds() {
		return Result{}, d.fail("kinds encoded, but every value is a string")
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

func bytesLen(b []byte) int { return uvarintLen(uint64(len(b))) + len(b) }

func (t *Txn) size() int {
	if t == nil {
		return 3
	}
	n := uvarintLen(uint64(len(t.Compares))) + uvarintLen(uint64(len(t.Success))) + uvarintLen(uint64(len(t.Failure)))
	for i := range t.Compares {
		c := &t.Compares[i]
		n += 2 + bytesLen(c.Key)
		switch c.Target {
		case TargetValue:
			n += bytesLen(c.Value)
		case TargetExists:
			n++
		default:
			n += varintLen(c.Number)
		}
	}
	return n + txnOpsSize(t.Success) + txnOpsSize(t.Failure)
}

func txnOpsSize(ops []TxnOp) int {
	// A JSON put's type byte is 0x81 instead of 1: the size is the same.
	n := 0
	for i := range ops {
		n += 1 + bytesLen(ops[i].Key)
		if ops[i].Type == TxnPut {
			n += bytesLen(ops[i].Value)
		}
	}
	return n
}

func (t *Txn) appendMarshal(dst []byte) []byte {
	if t == nil {
		return append(dst, 0, 0, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(t.Compares)))
	for i := range t.Compares {
		c := &t.Compares[i]
		dst = append(dst, byte(c.Target), byte(c.Op))
		dst = appendBytes(dst, c.Key)
		switch c.Target {
		case TargetValue:
			dst = appendBytes(dst, c.Value)
		case TargetExists:
			dst = append(dst, boolByte(c.Exists))
		default:
			dst = binary.AppendVarint(dst, c.Number)
		}
	}
	dst = appendTxnOps(dst, t.Success)
	return appendTxnOps(dst, t.Failure)
}

func appendTxnOps(dst []byte, ops []TxnOp) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ops)))
	for i := range ops {
		if ops[i].Type == TxnPut && ops[i].Kind == KindJSON {
			dst = append(dst, txnPutJSON)
		} else {
			dst = append(dst, byte(ops[i].Type))
		}
		dst = appendBytes(dst, ops[i].Key)
		if ops[i].Type == TxnPut {
			dst = appendBytes(dst, ops[i].Value)
		}
	}
	return dst
}

func (t *TxnResult) size(kinds bool) int {
	n := 1 + uvarintLen(uint64(len(t.Responses)))
	for i := range t.Responses {
		r := &t.Responses[i]
		n++
		switch r.Type {
		case TxnDelete:
			n += varintLen(r.Deleted)
		case TxnGet:
			n++
			if r.Found {
				kv := &r.KV
				n += bytesLen(kv.Key) + bytesLen(kv.Value) +
					varintLen(kv.Version) + varintLen(kv.Revision) + varintLen(kv.CreateRevision)
				if kinds {
					n++
				}
			}
		}
	}
	return n
}

func (t *TxnResult) appendMarshal(dst []byte, kinds bool) []byte {
	dst = append(dst, boolByte(t.Succeeded))
	dst = binary.AppendUvarint(dst, uint64(len(t.Responses)))
	for i := range t.Responses {
		r := &t.Responses[i]
		dst = append(dst, byte(r.Type))
		switch r.Type {
		case TxnDelete:
			dst = binary.AppendVarint(dst, r.Deleted)
		case TxnGet:
			dst = append(dst, boolByte(r.Found))
			if r.Found {
				kv := &r.KV
				dst = appendBytes(dst, kv.Key)
				dst = appendBytes(dst, kv.Value)
				dst = binary.AppendVarint(dst, kv.Version)
				dst = binary.AppendVarint(dst, kv.Revision)
				dst = binary.AppendVarint(dst, kv.CreateRevision)
				if kinds {
					dst = append(dst, byte(kv.Kind))
				}
			}
		}
	}
	return dst
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// txn decodes the body of an OpTxn.
func (d *decoder) txn() *Txn {
	t := &Txn{}
	if n := d.count("compare count", minCompareSize); n > 0 {
		t.Compares = make([]Compare, n)
		for i := range t.Compares {
			c := &t.Compares[i]
			c.Target = CompareTarget(d.u8("compare target"))
			c.Op = CompareOp(d.u8("compare op"))
			if d.err == nil && !validCompare(c.Target, c.Op) {
				d.fail("compare %d: unknown op %d on target %d", i, c.Op, c.Target)
				return nil
			}
			c.Key = d.bytes("compare key")
			switch c.Target {
			case TargetValue:
				c.Value = d.bytes("compare value")
			case TargetExists:
				c.Exists = d.bool("compare exists")
			default:
				c.Number = d.varint("compare number")
			}
		}
	}
	t.Success = d.txnOps("success")
	t.Failure = d.txnOps("failure")
	if d.err != nil {
		return nil
	}
	return t
}

func (d *decoder) txnOps(branch string) []TxnOp {
	n := d.count(branch+" count", minTxnOpSize)
	if n == 0 {
		return nil
	}
	ops := make([]TxnOp, n)
	for i := range ops {
		op := &ops[i]
		op.Type = TxnOpType(d.u8(branch + " op type"))
		if op.Type == TxnOpType(txnPutJSON) {
			op.Type, op.Kind = TxnPut, KindJSON
		}
		if d.err == nil && (op.Type < TxnPut || op.Type > TxnGet) {
			d.fail("%s op %d: unknown type %d", branch, i, op.Type)
			return nil
		}
		op.Key = d.bytes(branch + " key")
		if op.Type == TxnPut {
			op.Value = d.bytes(branch + " value")
		}
	}
	return ops
}

// txnResult decodes the TxnResult of a Result; kinds: each pair is followed
// by its kind byte.
func (d *decoder) txnResult(kinds bool) *TxnResult {
	t := &TxnResult{Succeeded: d.bool("txn succeeded")}
	n := d.count("txn response count", minTxnResponseSize)
	if n == 0 {
		if d.err != nil {
			return nil
		}
		return t
	}
	t.Responses = make([]TxnResponse, n)
	for i := range t.Responses {
		r := &t.Responses[i]
		r.Type = TxnOpType(d.u8("txn response type"))
		switch {
		case d.err != nil:
			return nil
		case r.Type == TxnDelete:
			r.Deleted = d.varint("txn response deleted")
		case r.Type == TxnGet:
			r.Found = d.bool("txn response found")
			if r.Found {
				kv := &r.KV
				kv.Key = d.bytes("txn response key")
				kv.Value = d.bytes("txn response value")
				kv.Version = d.varint("txn response version")
				kv.Revision = d.varint("txn response revision")
				kv.CreateRevision = d.varint("txn response create_revision")
				if kinds {
					kv.Kind = d.kind("txn response kind")
				}
			}
		case r.Type != TxnPut:
			d.fail("txn response %d: unknown type %d", i, r.Type)
			return nil
		}
	}
	if d.err != nil {
		return nil
	}
	return t
}

// count reads an element count and refuses one that the bytes left cannot
// hold at minSize bytes per element, so that a corrupt count cannot make the
// decoder allocate more than len(b) elements.
func (d *decoder) count(field string, minSize int) int {
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if left := uint64(len(d.b) - d.off); n > left/uint64(minSize) {
		d.fail("%s %d exceeds what the %d bytes left can hold", field, n, left)
		return 0
	}
	return int(n)
}

// kind reads a value kind byte, which must be one this version knows.
func (d *decoder) kind(field string) ValueKind {
	v := ValueKind(d.u8(field))
	if d.err == nil && v > KindJSON {
		d.fail("%s is %d, not a known value kind", field, v)
	}
	return v
}

// bool reads a byte that must be 0 or 1.
func (d *decoder) bool(field string) bool {
	v := d.u8(field)
	if d.err == nil && v > 1 {
		d.fail("%s is %d, not 0 or 1", field, v)
	}
	return v == 1
}
