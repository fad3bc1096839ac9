package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"iter"
	"math"

	"github.com/distkv/distkv/internal/auth"
)

// A snapshot file holds a sequence of KeyValues (package snap writes and reads
// them without interpreting values). SnapshotPairs and RestoreSnapshot carry,
// in that sequence, what a pair alone cannot: each value's kind, and the
// state of the store beyond its pairs (the client-session table). The
// sequence is:
//
//	state pair   key "" (which no client can write: the API refuses an empty
//	             key), version, revision and create revision 1, value =
//	             stateMagic | state version (1 byte: 4; older stores wrote
//	             1 to 3) | the state (see appendState)
//	pairs        each key in order: its retired versions (history.go), by
//	             end, then its latest version if it has one (a deleted key
//	             has none); each pair's value = kind (1 byte) | value. A
//	             retired version has kind | 0x40, and its end (8 bytes,
//	             little-endian, above its revision) after the kind byte; a
//	             pair with a deadline has kind | 0x80, and its deadline (8
//	             bytes, little-endian, > 0) before the value. A decoder that
//	             predates deadlines or history refuses those kind bytes
//	             rather than lose them.
//
// A snapshot written before the state pair existed starts with an ordinary
// pair: RestoreSnapshot reads it as such, every value a string and no
// sessions, so old snapshots load unchanged.

// stateMagic starts the value of the state pair.
const stateMagic = "\x00distkv.kv.state"

// pairDeadline, in the kind byte of a snapshot pair, says a deadline follows;
// pairRetired says the pair is a retired version and its end follows.
const (
	pairDeadline = 0x80
	pairRetired  = 0x40
)

// The state version is the byte after stateMagic; a decoder refuses others.
// Stores write stateVersionHist: the records, the auth state (length 0 when
// empty), the store's revision, the oracle's mark and the compaction
// revision. Older stores wrote stateVersionRev (no compaction revision, and
// no retired versions among the pairs), stateVersion (no auth state) or
// stateVersionAuth (with one); the last two kept no revision: their
// snapshot's index is its revision.
const (
	stateVersion     = 1
	stateVersionAuth = 2
	stateVersionRev  = 3
	stateVersionHist = 4
	stateVersionTxns = 5
)

// SnapshotPairs yields the view as a snapshot file holds it: the state pair,
// then every pair with its kind folded into its value (see above). The state
// pair has revision 1, so the snapshot's index must be at least 1. A yielded
// Value is valid only until the next pair is yielded (its buffer is reused);
// Keys are the view's, read-only and valid forever.
func (v *View) SnapshotPairs() iter.Seq[KeyValue] {
	return func(yield func(KeyValue) bool) {
		st := appendState(append([]byte(stateMagic), v.stateVersion()), v)
		if !yield(KeyValue{Key: []byte{}, Value: st, Version: 1, Revision: 1, CreateRevision: 1}) {
			return
		}
		var buf []byte
		fold := func(kv KeyValue, end int64) KeyValue {
			kv, buf = foldPair(kv, end, buf)
			return kv
		}
		past := v.hist.Iter()
		defer past.Release()
		pok := past.First()
		// Each key's retired versions come before its latest one.
		retired := func(upTo *item) bool {
			for pok && (upTo == nil || !lessItem(*upTo, past.Item().it)) {
				h := past.Item()
				if !yield(fold(h.it.kv(), h.end)) {
					return false
				}
				pok = past.Next()
			}
			return true
		}
		done := false
		v.tree.Scan(func(it item) bool {
			if !retired(&it) || !yield(fold(it.kv(), 0)) {
				done = true
				return false
			}
			return true
		})
		if !done {
			retired(nil)
		}
	}
}

// foldPair returns kv as a snapshot file holds it (see above): its kind,
// its end if it is a retired version (end > 0) and its deadline folded into
// its value, built in buf, which it returns for reuse.
func foldPair(kv KeyValue, end int64, buf []byte) (KeyValue, []byte) {
	kind := byte(kv.Kind)
	buf = append(buf[:0], 0)
	if end != 0 {
		kind |= pairRetired
		buf = binary.LittleEndian.AppendUint64(buf, uint64(end))
	}
	if kv.Deadline != 0 {
		kind |= pairDeadline
		buf = binary.LittleEndian.AppendUint64(buf, uint64(kv.Deadline))
	}
	buf[0] = kind
	buf = append(buf, kv.Value...)
	kv.Value, kv.Kind, kv.Deadline = buf, KindString, 0
	return kv, buf
}

// FoldPair returns kv, a key's latest version, as a snapshot file holds it:
// its kind and deadline folded into its value, built in buf, which it
// returns for reuse (so the value is valid until the next call with it).
func FoldPair(kv KeyValue, buf []byte) (KeyValue, []byte) { return foldPair(kv, 0, buf) }

// BackupStatePair returns the state pair of a backup of the whole key space
// read at revision rev (the pairs follow it, folded by FoldPair): the auth
// state a, revision rev, the timestamp oracle's mark at rev (so that a
// cluster restored from it hands out revisions above every one it holds),
// no client-session records and no retired versions (the restored state
// begins at rev).
func BackupStatePair(a *auth.State, rev int64) KeyValue {
	v := &View{auth: a, rev: rev, mark: uint64(max(rev, 0))}
	st := appendState(append([]byte(stateMagic), v.stateVersion()), v)
	return KeyValue{Key: []byte{}, Value: st, Version: 1, Revision: 1, CreateRevision: 1}
}

// RestoreSnapshot is Restore for the pairs of a snapshot file: those that
// SnapshotPairs yields, or the plain pairs of a snapshot written before it
// existed. It is all or nothing, as Restore is: a malformed state pair, or a
// pair without its kind byte, leaves the store as it was.
func (s *Store) RestoreSnapshot(index uint64, seq iter.Seq2[KeyValue, error]) error {
	var st state
	first, folded := true, false
	pairs := func(yield func(restorePair, error) bool) {
		n := 0
		for kv, err := range seq {
			if err != nil {
				yield(restorePair{}, err)
				return
			}
			if first {
				first = false
				if len(kv.Key) == 0 && bytes.HasPrefix(kv.Value, []byte(stateMagic)) {
					if err := decodeState(kv.Value[len(stateMagic):], &st); err != nil {
						yield(restorePair{}, fmt.Errorf("snapshot state: %w", err))
						return
					}
					folded = true
					continue
				}
			}
			p := restorePair{kv: kv}
			if folded {
				if err := unfoldPair(&p, n, st.hasHist); err != nil {
					yield(restorePair{}, err)
					return
				}
			}
			n++
			if !yield(p, nil) {
				return
			}
		}
	}
	return s.restore(index, pairs, &st)
}

// restorePair is a pair to restore: a key's latest version (end 0) or a
// retired one, with the revision that ended it.
type restorePair struct {
	kv  KeyValue
	end int64
}

// unfoldPair takes the kind, end and deadline of p, the n-th pair of a
// snapshot file, out of its value (see SnapshotPairs); retired versions are
// allowed only if the snapshot's state version has them.
func unfoldPair(p *restorePair, n int, retired bool) error {
	kv := &p.kv
	if len(kv.Key) == 0 {
		return fmt.Errorf("snapshot pair %d: a second pair with the state pair's empty key: %w", n, ErrMalformed)
	}
	flags := byte(pairDeadline)
	if retired {
		flags |= pairRetired
	}
	if len(kv.Value) == 0 || ValueKind(kv.Value[0]&^flags) > KindJSON {
		return fmt.Errorf("snapshot pair %d (key %q): no known value kind: %w", n, kv.Key, ErrMalformed)
	}
	kind := kv.Value[0]
	kv.Kind, kv.Value = ValueKind(kind&^flags), kv.Value[1:]
	if kind&pairRetired != 0 {
		if len(kv.Value) < 8 {
			return fmt.Errorf("snapshot pair %d (key %q): truncated end: %w", n, kv.Key, ErrMalformed)
		}
		p.end, kv.Value = int64(binary.LittleEndian.Uint64(kv.Value)), kv.Value[8:]
		if p.end <= kv.Revision {
			return fmt.Errorf("snapshot pair %d (key %q): a retired version ending at %d, not after its revision %d: %w", n, kv.Key, p.end, kv.Revision, ErrMalformed)
		}
	}
	if kind&pairDeadline != 0 {
		if len(kv.Value) < 8 {
			return fmt.Errorf("snapshot pair %d (key %q): truncated deadline: %w", n, kv.Key, ErrMalformed)
		}
		kv.Deadline, kv.Value = int64(binary.LittleEndian.Uint64(kv.Value)), kv.Value[8:]
		if kv.Deadline <= 0 {
			return fmt.Errorf("snapshot pair %d (key %q): deadline %d is not positive: %w", n, kv.Key, kv.Deadline, ErrMalformed)
		}
	}
	return nil
}

// state is what the state pair of a snapshot carries: the client-session
// table's clock and records, oldest first.
type state struct {
	clock   int64
	records []*record
	auth    *auth.State
	hasRev  bool   // version 3 or later: rev and mark were in the snapshot
	rev     int64  // the store's revision
	mark    uint64 // the oracle's high-water mark
	// hasHist: version 4 or later, whose pairs may be retired versions;
	// compacted is the compaction revision.
	hasHist   bool
	compacted int64
	// txnClock, locks and txnRecords (version 5) are the transactions'
	// state (see intent.go).
	txnClock   int64
	locks      []*txnLocks
	txnRecords []*txnRecord
}

// table returns the sessionTable that st describes; dropped carries over the
// count of dropped records, which is not replicated.
func (st *state) table(dropped uint64) sessionTable {
	t := sessionTable{clock: st.clock, log: st.records, dropped: dropped}
	if len(st.records) > 0 {
		t.byKey = make(map[sessionKey]*record, len(st.records))
	}
	for _, r := range st.records {
		t.byKey[r.key] = r // a later record of the same key replaced it
		t.bytes += r.size()
	}
	return t
}

// minRecordSize is the fewest bytes an encoded record takes.
const minRecordSize = 8

// appendState appends the encoding of v's state beyond its pairs:
//
//	clock      zigzag varint
//	records    uvarint count, then per record, oldest first: op 1 byte,
//	           client and request (uvarint length, bytes), index uvarint,
//	           expires zigzag varint, key (uvarint length, bytes), result
//	           (uvarint length, bytes: the encoded Result; length 0 when it
//	           was not kept, followed by its size as a uvarint)
//	auth       (state versions 2 to 4) uvarint length, bytes: the auth
//	           state (auth.State.Marshal); length 0 when empty (version
//	           3 only)
//	revision   (state versions 3 and 4) uvarint: the store's revision
//	mark       (state versions 3 and 4) uvarint: the oracle's mark
//	compacted  (state version 4) uvarint: the compaction revision, at or
//	           below the revision
//
// Every record is written, expired ones not yet dropped included, so that a
// replica restored from the snapshot counts against the table's bounds
// exactly what the others do.
func appendState(dst []byte, v *View) []byte {
	dst = binary.AppendVarint(dst, v.clock)
	dst = binary.AppendUvarint(dst, uint64(len(v.sessions)))
	for _, r := range v.sessions {
		dst = append(dst, byte(r.key.op))
		dst = appendBytes(dst, []byte(r.key.client))
		dst = appendBytes(dst, []byte(r.key.request))
		dst = binary.AppendUvarint(dst, r.index)
		dst = binary.AppendVarint(dst, r.expires)
		dst = appendBytes(dst, r.opKey)
		dst = appendBytes(dst, r.result)
		if r.result == nil {
			dst = binary.AppendUvarint(dst, uint64(r.resultLen))
		}
	}
	var a []byte
	if !v.auth.Empty() {
		a = v.auth.Marshal()
	}
	dst = appendBytes(dst, a)
	dst = binary.AppendUvarint(dst, uint64(v.rev))
	dst = binary.AppendUvarint(dst, v.mark)
	dst = binary.AppendUvarint(dst, uint64(v.compacted))
	if v.stateVersion() >= stateVersionTxns {
		dst = v.appendTxns(dst)
	}
	return dst
}

// decodeState decodes b, the state pair's value after stateMagic, into st. It
// refuses anything appendState does not write, with an error wrapping
// ErrMalformed, and never panics.
func decodeState(b []byte, st *state) error {
	d := decoder{b: b, what: "snapshot state"}
	version := d.u8("version")
	if d.err == nil && (version < stateVersion || version > stateVersionTxns) {
		return d.fail("unknown version %d", version)
	}
	st.clock = d.varint("clock")
	n := d.count("record count", minRecordSize)
	if n > 0 {
		st.records = make([]*record, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		r := &record{}
		r.key.op = Op(d.u8("record op"))
		if d.err == nil && r.key.op != OpPut && r.key.op != OpDelete && r.key.op != OpTxn {
			return d.fail("record %d: unknown op %d", i, r.key.op)
		}
		r.key.client = string(d.bytes("record client"))
		r.key.request = string(d.bytes("record request"))
		if d.err == nil && r.key.request == "" {
			return d.fail("record %d: no request id", i)
		}
		r.index = d.uvarint("record index")
		r.expires = d.varint("record expires")
		r.opKey = bytes.Clone(d.bytes("record key"))
		if d.err == nil && r.key.op == OpTxn && len(r.opKey) != 0 {
			return d.fail("record %d: a key on a txn", i)
		}
		r.result = bytes.Clone(d.bytes("record result"))
		if r.result == nil {
			n := d.uvarint("record result size")
			if d.err == nil && n > math.MaxInt32 {
				return d.fail("record %d: result size %d", i, n)
			}
			r.resultLen = int(n)
		} else if _, err := UnmarshalResult(r.result); err != nil {
			return d.fail("record %d: %v", i, err)
		} else {
			r.resultLen = len(r.result)
		}
		st.records = append(st.records, r)
	}
	switch version {
	case stateVersionAuth:
		st.auth = d.authState()
	case stateVersionRev, stateVersionHist, stateVersionTxns:
		if b := d.bytes("auth state"); d.err == nil && len(b) > 0 {
			a, err := auth.UnmarshalState(b)
			if err != nil {
				return d.fail("%v", err)
			}
			if a.Empty() {
				return d.fail("an empty auth state of %d bytes", len(b))
			}
			st.auth = a
		}
		rev := d.uvarint("revision")
		if d.err == nil && rev > math.MaxInt64 {
			return d.fail("revision %d", rev)
		}
		st.hasRev, st.rev = true, int64(rev)
		st.mark = d.uvarint("mark")
		if version >= stateVersionHist {
			c := d.uvarint("compaction revision")
			if d.err == nil && c > rev {
				return d.fail("compaction revision %d above the revision %d", c, rev)
			}
			st.hasHist, st.compacted = true, int64(c)
		}
		if version >= stateVersionTxns {
			d.txns(st)
		}
	}
	return d.finish()
}
