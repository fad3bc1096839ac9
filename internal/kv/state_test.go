package kv

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// jsonPut is a put of a JSON value.
func jsonPut(key, value string) Command {
	return Command{Op: OpPut, Key: []byte(key), Value: []byte(value), Kind: KindJSON}
}

// The values a client of the prototype writes, of both kinds, survive a
// snapshot: each reads back with its kind.
func TestSnapshotPairsKeepKinds(t *testing.T) {
	src := NewStore()
	cmds := []Command{
		jsonPut("int", "12"), jsonPut("float", "1.5"), jsonPut("bool", "true"), jsonPut("null", "null"),
		jsonPut("obj", `{"a":[1,2]}`), put("str", "12", Cond{}), put("empty", "", Cond{}), jsonPut("exp", "1e3"),
	}
	for i, c := range cmds {
		if _, err := src.Apply(uint64(i+1), c); err != nil {
			t.Fatal(err)
		}
	}
	var pairs []KeyValue
	for p := range src.Snapshot().SnapshotPairs() {
		p.Value = bytes.Clone(p.Value) // reused by the next pair
		pairs = append(pairs, p)
	}
	if len(pairs) != len(cmds)+1 || len(pairs[0].Key) != 0 {
		t.Fatalf("%d pairs, the first with key %q", len(pairs), pairs[0].Key)
	}
	dst := NewStore()
	if err := dst.RestoreSnapshot(src.Applied(), seqOf(pairs, nil)); err != nil {
		t.Fatal(err)
	}
	want, got := collect(src.Snapshot()), collect(dst.Snapshot())
	if len(got) != len(want) {
		t.Fatalf("restored %d pairs, want %d", len(got), len(want))
	}
	for i := range want {
		if !equalKV(got[i], want[i]) {
			t.Errorf("restored %s, want %s", fmtKV(got[i]), fmtKV(want[i]))
		}
	}
	if kv, _ := dst.Get([]byte("str")); kv.Kind != KindString || string(kv.Value) != "12" {
		t.Errorf("the string \"12\" restored as %s", fmtKV(kv))
	}
	if kv, _ := dst.Get([]byte("int")); kv.Kind != KindJSON || string(kv.Value) != "12" {
		t.Errorf("the number 12 restored as %s", fmtKV(kv))
	}
}

// A snapshot written before the state pair existed holds plain pairs: they
// restore as strings, whatever their bytes.
func TestRestoreSnapshotOfOldFormat(t *testing.T) {
	old := []KeyValue{kvOf("a", "12", 1, 1, 1), kvOf("b", "\x01{}", 1, 2, 2), kvOf("c", "", 2, 3, 1)}
	s := NewStore()
	if err := s.RestoreSnapshot(3, seqOf(old, nil)); err != nil {
		t.Fatal(err)
	}
	got := collect(s.Snapshot())
	if len(got) != len(old) {
		t.Fatalf("%d pairs", len(got))
	}
	for i := range old {
		if !equalKV(got[i], old[i]) || got[i].Kind != KindString {
			t.Errorf("restored %s, want %s", fmtKV(got[i]), fmtKV(old[i]))
		}
	}
}

func TestRestoreSnapshotRefuses(t *testing.T) {
	state := KeyValue{Key: []byte{}, Value: append([]byte(stateMagic), stateVersion, 0, 0), Version: 1, Revision: 1, CreateRevision: 1}
	for _, tc := range []struct {
		name  string
		pairs []KeyValue
		want  string
	}{
		{"unknown state version", []KeyValue{{Key: []byte{}, Value: append([]byte(stateMagic), 9), Version: 1, Revision: 1, CreateRevision: 1}}, "unknown version 9"},
		{"state with trailing bytes", []KeyValue{{Key: []byte{}, Value: append(bytes.Clone(state.Value), 0, 0, 7), Version: 1, Revision: 1, CreateRevision: 1}}, "trailing"},
		{"pair without kind", []KeyValue{state, kvOf("a", "", 1, 1, 1)}, "no known value kind"},
		{"pair with unknown kind", []KeyValue{state, kvOf("a", "\x05x", 1, 1, 1)}, "no known value kind"},
		{"second state pair", []KeyValue{state, state}, "a second pair with the state pair's empty key"},
	} {
		s := NewStore()
		if _, err := s.Apply(1, put("keep", "me", Cond{})); err != nil {
			t.Fatal(err)
		}
		err := s.RestoreSnapshot(5, seqOf(tc.pairs, nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
		if kv, ok := s.Get([]byte("keep")); !ok || string(kv.Value) != "me" || s.Applied() != 1 {
			t.Errorf("%s: the store changed", tc.name)
		}
	}
	// A malformed state wraps ErrMalformed.
	err := NewStore().RestoreSnapshot(5, seqOf([]KeyValue{{Key: []byte{}, Value: []byte(stateMagic), Version: 1, Revision: 1, CreateRevision: 1}}, nil))
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("empty state: %v, want ErrMalformed", err)
	}
}
