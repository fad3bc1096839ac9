package snap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"testing"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

func testPairs(n int) iter.Seq[kv.KeyValue] {
	return func(yield func(kv.KeyValue) bool) {
		for i := 0; i < n; i++ {
			kv := kv.KeyValue{Key: []byte(fmt.Sprintf("k%06d", i)), Value: []byte(fmt.Sprintf("v%d", i)), Version: 1, Revision: 5, CreateRevision: 5}
			if !yield(kv) {
				return
			}
		}
	}
}

func TestReceiveInstallAndReject(t *testing.T) {
	src, err := NewStore(vfs.Default, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	meta := Meta{Shard: 1, Index: 10, Term: 2, Extra: []byte("x")}
	if err := src.Save(meta, testPairs(1000)); err != nil {
		t.Fatal(err)
	}
	f, err := src.Open(1, 10)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(f)
	f.Close()

	dstDir := t.TempDir()
	dst, _ := NewStore(vfs.Default, dstDir, nil)
	for name, stream := range map[string][]byte{
		"truncated":      data[:len(data)-3],
		"bit flip":       flip(data, len(data)/2),
		"trailing bytes": append(append([]byte{}, data...), 0),
	} {
		if _, err := dst.Receive(bytes.NewReader(stream)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Receive = %v, want ErrCorrupt", name, err)
		}
	}
	if idx, _ := dst.Indexes(1); len(idx) != 0 {
		t.Fatalf("a rejected stream left snapshots %v", idx)
	}
	rec, err := dst.Receive(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Meta.Index != 10 || rec.Meta.Term != 2 {
		t.Fatalf("meta = %+v", rec.Meta)
	}
	if idx, _ := dst.Indexes(1); len(idx) != 0 {
		t.Fatal("received snapshot visible before Install")
	}
	if err := rec.Install(); err != nil {
		t.Fatal(err)
	}
	st := kv.NewStore()
	got, err := dst.Load(1, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error { return st.Restore(m.Index, pairs) })
	if err != nil || got.Index != 10 || st.Len() != 1000 {
		t.Fatalf("load after install: %+v, %v, %d keys", got, err, st.Len())
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 1
	return c
}
