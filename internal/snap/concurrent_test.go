package snap

import (
	"bytes"
	"errors"
	"fmt"
	iofs "io/fs"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

// stateAt is the state of the test's shard at index: ten keys whose values
// name the index.
func stateAt(index uint64) iter.Seq[kv.KeyValue] {
	pairs := make([]kv.KeyValue, 10)
	for i := range pairs {
		pairs[i] = kv.KeyValue{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%d", index),
			Version: 1, CreateRevision: 1, Revision: int64(index)}
	}
	return slices.Values(pairs)
}

// checkState returns an error unless pairs are stateAt(index).
func checkState(index uint64, pairs iter.Seq2[kv.KeyValue, error]) error {
	n := 0
	for p, err := range pairs {
		if err != nil {
			return err
		}
		if want := fmt.Sprint(index); string(p.Value) != want {
			return fmt.Errorf("snapshot %d: %s = %q, want %q", index, p.Key, p.Value, want)
		}
		n++
	}
	if n != 10 {
		return fmt.Errorf("snapshot %d: %d pairs, want 10", index, n)
	}
	return nil
}

// TestConcurrentCallsForOneShard runs, for one shard and at once, what a
// node does with its snapshots: two writers saving the same indexes, a
// receiver installing others from a stream, readers loading and opening the
// newest, and Purge. Every Load and every Open yields a complete snapshot of
// the state it names, the newest loaded never goes back, and what is left at
// the end is the newest snapshots and no temporary file. Run it with -race.
func TestConcurrentCallsForOneShard(t *testing.T) {
	dir := t.TempDir()
	s, _ := newTestStore(t, vfs.Default, dir)
	const shard, rounds = 7, 40
	meta := func(index uint64) Meta { return Meta{Shard: shard, Index: index, Term: 1} }
	if err := s.Save(meta(1), stateAt(1)); err != nil {
		t.Fatal(err)
	}

	var writers, readers sync.WaitGroup
	var done atomic.Bool
	fail := func(format string, args ...any) { t.Errorf(format, args...); done.Store(true) }
	for range 2 { // the same even indexes, twice at once
		writers.Go(func() {
			for i := uint64(1); i <= rounds && !done.Load(); i++ {
				if err := s.Save(meta(2*i), stateAt(2*i)); err != nil {
					fail("save %d: %v", 2*i, err)
				}
			}
		})
	}
	writers.Go(func() { // odd indexes, received from a stream and installed
		for i := uint64(1); i <= rounds && !done.Load(); i++ {
			var buf bytes.Buffer
			if err := Encode(&buf, meta(2*i+1), stateAt(2*i+1)); err != nil {
				fail("encode: %v", err)
				return
			}
			r, err := s.Receive(&buf)
			if err == nil {
				err = r.Install()
			}
			if err != nil {
				fail("receive and install %d: %v", 2*i+1, err)
			}
		}
	})
	readers.Go(func() {
		var newest uint64
		for !done.Load() {
			m, err := s.Load(shard, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error { return checkState(m.Index, pairs) })
			if err != nil {
				fail("load: %v", err)
				return
			}
			if m.Index < newest {
				fail("load found snapshot %d after %d", m.Index, newest)
			}
			newest = m.Index
		}
	})
	readers.Go(func() {
		for !done.Load() {
			if err := s.Purge(shard, 2); err != nil {
				fail("purge: %v", err)
			}
		}
	})
	readers.Go(func() { // a follower being sent the newest snapshot
		for !done.Load() {
			indexes, err := s.Indexes(shard)
			if err != nil || len(indexes) == 0 {
				fail("indexes: %v %v", indexes, err)
				return
			}
			f, err := s.Open(shard, indexes[len(indexes)-1])
			if errors.Is(err, iofs.ErrNotExist) {
				continue // purged since the listing
			}
			if err != nil {
				fail("open: %v", err)
				return
			}
			var pairs []kv.KeyValue
			m, err := Decode(f, func(p kv.KeyValue) error { pairs = append(pairs, p); return nil })
			f.Close()
			if err == nil {
				err = checkState(m.Index, func(yield func(kv.KeyValue, error) bool) {
					for _, p := range pairs {
						if !yield(p, nil) {
							return
						}
					}
				})
			}
			if err != nil {
				fail("stream snapshot %d: %v", indexes[len(indexes)-1], err)
			}
		}
	})
	writers.Wait()
	done.Store(true)
	readers.Wait()
	if t.Failed() {
		return
	}

	if err := s.Purge(shard, 2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Indexes(shard); err != nil || !slices.Equal(got, []uint64{2 * rounds, 2*rounds + 1}) {
		t.Fatalf("snapshots left: %v, %v; want the two newest", got, err)
	}
	m, err := s.Load(shard, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error { return checkState(m.Index, pairs) })
	if err != nil || m.Index != 2*rounds+1 {
		t.Fatalf("load = %d, %v; want %d", m.Index, err, 2*rounds+1)
	}
	names, err := vfs.Default.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) {
			t.Errorf("temporary file left: %s", name)
		}
	}
}
