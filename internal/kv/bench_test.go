package kv

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
)

const benchKeys = 1 << 20

// mix is a bijection on uint64, so mix(i) gives distinct keys in random order.
func mix(i uint64) uint64 { return i * 0x9e3779b97f4a7c15 }

func benchKey(v uint64) []byte { return fmt.Appendf(make([]byte, 0, 16), "%016x", v) }

type benchData struct {
	pairs   []KeyValue // benchKeys pairs in key order, for Restore
	keys    [][]byte   // the same keys in random order
	newKeys [][]byte   // keys not in pairs, in random order
	value   []byte     // 256 bytes
}

var loadBench = sync.OnceValue(func() *benchData {
	b := &benchData{value: bytes.Repeat([]byte("0123456789abcdef"), 16)}
	for i := range uint64(benchKeys) {
		b.keys = append(b.keys, benchKey(mix(i)))
		b.newKeys = append(b.newKeys, benchKey(mix(i+benchKeys)))
	}
	sorted := slices.Clone(b.keys)
	slices.SortFunc(sorted, bytes.Compare)
	for _, k := range sorted {
		// All pairs share one value: the store never modifies what it holds.
		b.pairs = append(b.pairs, KeyValue{Key: k, Value: b.value, Version: 1, Revision: 1, CreateRevision: 1})
	}
	return b
})

// benchStore returns a Store holding the benchKeys pairs at index 1.
func benchStore(b *testing.B) (*Store, *benchData) {
	d := loadBench()
	s := NewStore()
	if err := s.Restore(1, seqOf(d.pairs, nil)); err != nil {
		b.Fatal(err)
	}
	return s, d
}

func BenchmarkPut(b *testing.B) {
	apply := func(b *testing.B, s *Store, index *uint64, key, value []byte) {
		*index++
		if _, err := s.Apply(*index, Command{Op: OpPut, Key: key, Value: value}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("sequential-insert", func(b *testing.B) {
		d := loadBench()
		s := NewStore()
		var index uint64
		key := make([]byte, 16)
		b.ReportAllocs()
		for b.Loop() {
			// The store copies the key, so one buffer serves every write.
			key = fmt.Appendf(key[:0], "%016x", index)
			apply(b, s, &index, key, d.value)
		}
	})
	b.Run("random-update-1M", func(b *testing.B) {
		s, d := benchStore(b)
		index := uint64(1)
		b.ReportAllocs()
		for b.Loop() {
			apply(b, s, &index, d.keys[index%benchKeys], d.value)
		}
	})
	b.Run("random-insert-1M", func(b *testing.B) {
		s, d := benchStore(b)
		index := uint64(1)
		b.ReportAllocs()
		for b.Loop() {
			apply(b, s, &index, d.newKeys[index%benchKeys], d.value)
		}
	})
	// A snapshot taken every 1000 writes makes the next write copy its path.
	b.Run("random-update-1M-snapshot-every-1000", func(b *testing.B) {
		s, d := benchStore(b)
		index := uint64(1)
		b.ReportAllocs()
		for b.Loop() {
			if index%1000 == 0 {
				s.Snapshot()
			}
			apply(b, s, &index, d.keys[index%benchKeys], d.value)
		}
	})
}

func BenchmarkGet(b *testing.B) {
	s, d := benchStore(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Get(d.keys[i%benchKeys]); !ok {
			b.Fatal("missing key")
		}
		i++
	}
}

func BenchmarkGetParallel(b *testing.B) {
	s, d := benchStore(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := s.Get(d.keys[i%benchKeys]); !ok {
				b.Fatal("missing key")
			}
			i += 7
		}
	})
}

func BenchmarkRange100(b *testing.B) {
	s, d := benchStore(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		kvs, _ := s.Range(d.keys[i%benchKeys], nil, 100)
		if len(kvs) == 0 {
			b.Fatal("empty range")
		}
		i++
	}
}

func BenchmarkSnapshotAll(b *testing.B) {
	s, _ := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for range s.Snapshot().All() {
			n++
		}
		if n != benchKeys {
			b.Fatalf("iterated %d", n)
		}
	}
}

func BenchmarkUnmarshalCommand(b *testing.B) {
	enc := put("0123456789abcdef", string(loadBench().value), Cond{PrevVersion: i64(3)}).Marshal()
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := UnmarshalCommand(enc); err != nil {
			b.Fatal(err)
		}
	}
}
