package kv_test

import (
	"bytes"
	"testing"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/snap"
)

// The pairs of SnapshotPairs are a valid snapshot for package snap (its
// checks on keys and metadata accept the state pair), and what snap decodes
// restores every value with its kind.
func TestSnapshotPairsThroughSnapFormat(t *testing.T) {
	src := kv.NewStore()
	values := []struct {
		key, value string
		kind       kv.ValueKind
	}{
		{"a-int", "12", kv.KindJSON}, {"b-float", "1.5", kv.KindJSON}, {"c-true", "true", kv.KindJSON},
		{"d-null", "null", kv.KindJSON}, {"e-obj", `{"a":[1,2]}`, kv.KindJSON}, {"f-str", "12", kv.KindString},
	}
	for i, v := range values {
		if _, err := src.Apply(uint64(i+1), kv.Command{Op: kv.OpPut, Key: []byte(v.key), Value: []byte(v.value), Kind: v.kind}); err != nil {
			t.Fatal(err)
		}
	}
	var file bytes.Buffer
	meta := snap.Meta{Shard: 1, Index: src.Applied(), Term: 1}
	if err := snap.Encode(&file, meta, src.Snapshot().SnapshotPairs()); err != nil {
		t.Fatal(err)
	}
	var pairs []kv.KeyValue
	if _, err := snap.Decode(&file, func(p kv.KeyValue) error {
		p.Key, p.Value = bytes.Clone(p.Key), bytes.Clone(p.Value)
		pairs = append(pairs, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dst := kv.NewStore()
	err := dst.RestoreSnapshot(meta.Index, func(yield func(kv.KeyValue, error) bool) {
		for _, p := range pairs {
			if !yield(p, nil) {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if dst.Len() != len(values) {
		t.Fatalf("%d keys restored, want %d", dst.Len(), len(values))
	}
	for _, v := range values {
		got, ok := dst.Get([]byte(v.key))
		if !ok || string(got.Value) != v.value || got.Kind != v.kind {
			t.Errorf("%s: restored %q of kind %v, want %q of kind %v", v.key, got.Value, got.Kind, v.value, v.kind)
		}
	}
}
