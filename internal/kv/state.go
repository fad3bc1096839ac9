package kv

import (
	"bytes"
	"fmt"
	"iter"
)

// A snapshot file holds a sequence of KeyValues (package snap writes and reads
// them without interpreting values). SnapshotPairs and RestoreSnapshot carry,
// in that sequence, what a pair alone cannot: each value's kind, and the
// state of the store beyond its pairs (the client-session table). The
// sequence is:
//
//	state pair   key "" (which no client can write: the API refuses an empty
//	             key), version, revision and create revision 1, value =
//	             stateMagic | state version (1 byte, 1) | the state (see
//	             appendState)
//	pairs        each pair in key order, its value = kind (1 byte) | value
//
// A snapshot written before the state pair existed starts with an ordinary
// pair: RestoreSnapshot reads it as such, every value a string and no
// sessions, so old snapshots load unchanged.

// stateMagic starts the value of the state pair.
const stateMagic = "\x00distkv.kv.state"

// stateVersion is the byte after stateMagic; a decoder refuses others.
const stateVersion = 1

// SnapshotPairs yields the view as a snapshot file holds it: the state pair,
// then every pair with its kind folded into its value (see above). The state
// pair has revision 1, so the snapshot's index must be at least 1. A yielded
// Value is valid only until the next pair is yielded (its buffer is reused);
// Keys are the view's, read-only and valid forever.
func (v *View) SnapshotPairs() iter.Seq[KeyValue] {
	return func(yield func(KeyValue) bool) {
		st := appendState(append([]byte(stateMagic), stateVersion), v)
		if !yield(KeyValue{Key: []byte{}, Value: st, Version: 1, Revision: 1, CreateRevision: 1}) {
			return
		}
		var buf []byte
		v.tree.Scan(func(it item) bool {
			kv := it.kv()
			buf = append(append(buf[:0], byte(kv.Kind)), kv.Value...)
			kv.Value, kv.Kind = buf, KindString
			return yield(kv)
		})
	}
}

// RestoreSnapshot is Restore for the pairs of a snapshot file: those that
// SnapshotPairs yields, or the plain pairs of a snapshot written before it
// existed. It is all or nothing, as Restore is: a malformed state pair, or a
// pair without its kind byte, leaves the store as it was.
func (s *Store) RestoreSnapshot(index uint64, seq iter.Seq2[KeyValue, error]) error {
	var st state
	first, folded := true, false
	pairs := func(yield func(KeyValue, error) bool) {
		n := 0
		for kv, err := range seq {
			if err != nil {
				yield(kv, err)
				return
			}
			if first {
				first = false
				if len(kv.Key) == 0 && bytes.HasPrefix(kv.Value, []byte(stateMagic)) {
					if err := decodeState(kv.Value[len(stateMagic):], &st); err != nil {
						yield(KeyValue{}, fmt.Errorf("snapshot state: %w", err))
						return
					}
					folded = true
					continue
				}
			}
			if folded {
				if len(kv.Key) == 0 {
					yield(KeyValue{}, fmt.Errorf("snapshot pair %d: a second pair with the state pair's empty key: %w", n, ErrMalformed))
					return
				}
				if len(kv.Value) == 0 || ValueKind(kv.Value[0]) > KindJSON {
					yield(KeyValue{}, fmt.Errorf("snapshot pair %d (key %q): no known value kind: %w", n, kv.Key, ErrMalformed))
					return
				}
				kv.Kind, kv.Value = ValueKind(kv.Value[0]), kv.Value[1:]
			}
			n++
			if !yield(kv, nil) {
				return
			}
		}
	}
	return s.restore(index, pairs, &st)
}

// state is what the state pair of a snapshot carries.
type state struct{}

// appendState appends the encoding of v's state beyond its pairs.
func appendState(dst []byte, v *View) []byte {
	return dst
}

// decodeState decodes b, the state pair's value after stateMagic, into st. It
// refuses anything appendState does not write, with an error wrapping
// ErrMalformed, and never panics.
func decodeState(b []byte, st *state) error {
	d := decoder{b: b, what: "snapshot state"}
	if v := d.u8("version"); d.err == nil && v != stateVersion {
		return d.fail("unknown version %d", v)
	}
	return d.finish()
}
