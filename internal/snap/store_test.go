package snap

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

// syncBuffer is a log sink for tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestStore(t *testing.T, fs vfs.FS, dir string) (*Store, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	s, err := NewStore(fs, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, &logs
}

// state builds the kv state a snapshot at index holds: keys "key000".."keyNNN"
// whose values name the index, so tests can tell snapshots apart.
func state(t testing.TB, index uint64, n int) *kv.Store {
	t.Helper()
	s := kv.NewStore()
	base := index - uint64(n)
	for i := range n {
		cmd := kv.Command{Op: kv.OpPut, Key: fmt.Appendf(nil, "key%03d", i), Value: fmt.Appendf(nil, "value of %d at %d", i, index)}
		if _, err := s.Apply(base+uint64(i)+1, cmd); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func save(t testing.TB, s *Store, shard, index uint64, n int) {
	t.Helper()
	meta := Meta{Shard: shard, Index: index, Term: 1, Extra: fmt.Appendf(nil, "conf@%d", index)}
	if err := s.Save(meta, state(t, index, n).Snapshot().All()); err != nil {
		t.Fatal(err)
	}
}

// load restores shard into a kv.Store that already holds some state, the way a
// node does, and checks that what it got is the snapshot at wantIndex, complete.
func load(t *testing.T, s *Store, shard, wantIndex uint64, n int) *kv.Store {
	t.Helper()
	dst := kv.NewStore()
	if _, err := dst.Apply(1, kv.Command{Op: kv.OpPut, Key: []byte("old"), Value: []byte("state")}); err != nil {
		t.Fatal(err)
	}
	meta, err := s.Load(shard, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
		return dst.Restore(m.Index, pairs)
	})
	if err != nil {
		t.Fatalf("Load(%d): %v", shard, err)
	}
	if meta.Shard != shard || meta.Index != wantIndex || string(meta.Extra) != fmt.Sprintf("conf@%d", wantIndex) {
		t.Fatalf("Load(%d) meta %+v, want index %d", shard, meta, wantIndex)
	}
	want := slices.Collect(state(t, wantIndex, n).Snapshot().All())
	checkPairs(t, slices.Collect(dst.Snapshot().All()), want)
	return dst
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	names, err := vfs.Default.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestStoreSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snap")
	s, _ := newTestStore(t, vfs.Default, dir)
	if _, err := s.Load(1, func(Meta, iter.Seq2[kv.KeyValue, error]) error { t.Fatal("restore called"); return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of an empty store: %v, want ErrNotFound", err)
	}
	save(t, s, 1, 100, 50)
	save(t, s, 1, 0x1_0000_0000, 80) // sorts after 100 only numerically in hex
	save(t, s, 1, 200, 60)
	save(t, s, 2, 300, 10)
	load(t, s, 1, 0x1_0000_0000, 80)
	load(t, s, 2, 300, 10)
	if _, err := s.Load(3, func(Meta, iter.Seq2[kv.KeyValue, error]) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load of another shard: %v, want ErrNotFound", err)
	}
	if idx, err := s.Indexes(1); err != nil || !slices.Equal(idx, []uint64{100, 200, 0x1_0000_0000}) {
		t.Fatalf("Indexes(1) = %v, %v", idx, err)
	}
	wantNames := []string{
		"0000000000000001-0000000000000064.snap",
		"0000000000000001-00000000000000c8.snap",
		"0000000000000001-0000000100000000.snap",
		"0000000000000002-000000000000012c.snap",
	}
	if names := listDir(t, dir); !slices.Equal(names, wantNames) {
		t.Fatalf("files %q, want %q", names, wantNames)
	}
	// An empty snapshot is a snapshot.
	save(t, s, 4, 5, 0)
	load(t, s, 4, 5, 0)
}

func TestParseName(t *testing.T) {
	for _, tc := range []struct {
		name         string
		shard, index uint64
		ok           bool
	}{
		{"0000000000000001-0000000000000064.snap", 1, 100, true},
		{"ffffffffffffffff-ffffffffffffffff.snap", 1<<64 - 1, 1<<64 - 1, true},
		{"0000000000000001-0000000000000064.snap.tmp", 0, 0, false},
		{"0000000000000001-000000000000006A.snap", 0, 0, false}, // not as written
		{"000000000000001-00000000000000064.snap", 0, 0, false},
		{"0000000000000001_0000000000000064.snap", 0, 0, false},
		{"000000000000000x-0000000000000064.snap", 0, 0, false},
		{"+000000000000001-0000000000000064.snap", 0, 0, false},
		{"0000000000000001-0000000000000064.snaq", 0, 0, false},
		{"", 0, 0, false},
	} {
		shard, index, ok := parseName(tc.name)
		if ok != tc.ok || shard != tc.shard || index != tc.index {
			t.Errorf("parseName(%q) = %d, %d, %v", tc.name, shard, index, ok)
		}
	}
}

func TestLoadSkipsDamagedNewest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"bit flip in the body", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }},
		{"bit flip in the trailer", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"bad header", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"empty", func([]byte) []byte { return nil }},
		{"header of another index", func([]byte) []byte {
			var buf bytes.Buffer
			Encode(&buf, Meta{Shard: 1, Index: 250, Extra: []byte("conf@250")}, nil)
			return buf.Bytes()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, logs := newTestStore(t, vfs.Default, dir)
			save(t, s, 1, 100, 40)
			save(t, s, 1, 200, 40)
			save(t, s, 1, 300, 40)
			for _, index := range []uint64{200, 300} {
				p := filepath.Join(dir, fileName(1, index))
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tc.damage(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The restore for the damaged files ran and failed; the store holds the
			// snapshot at 100 and nothing of the others.
			load(t, s, 1, 100, 40)
			for _, index := range []uint64{200, 300} {
				if name := fileName(1, index); !strings.Contains(logs.String(), name) {
					t.Errorf("log does not name %s:\n%s", name, logs)
				}
			}
			if !strings.Contains(logs.String(), "snapshot corrupt") {
				t.Errorf("log does not say why:\n%s", logs)
			}
		})
	}
}

func TestLoadAllDamaged(t *testing.T) {
	dir := t.TempDir()
	s, _ := newTestStore(t, vfs.Default, dir)
	save(t, s, 1, 100, 10)
	p := filepath.Join(dir, fileName(1, 100))
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load(1, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error { return kv.NewStore().Restore(m.Index, pairs) })
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) {
		t.Fatalf("Load with only a damaged file: %v, want ErrCorrupt (not ErrNotFound)", err)
	}
}

func TestLoadRestoreContract(t *testing.T) {
	dir := t.TempDir()
	s, _ := newTestStore(t, vfs.Default, dir)
	save(t, s, 1, 100, 10)
	save(t, s, 1, 200, 10)
	damaged := filepath.Join(dir, fileName(1, 200))
	b, _ := os.ReadFile(damaged)
	os.WriteFile(damaged, b[:len(b)-1], 0o644)

	errOwn := errors.New("out of memory, say")
	for _, tc := range []struct {
		name    string
		restore RestoreFunc
		want    string
	}{
		{"stops early", func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
			for range pairs {
				break
			}
			return nil
		}, "before consuming all pairs"},
		{"ignores the damage", func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
			for range pairs {
			}
			return nil
		}, "restore returned nil after being told the file is bad"},
		{"fails on its own", func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error { return errOwn }, errOwn.Error()},
		{"iterates twice", func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error {
			for _, err := range pairs {
				if err != nil {
					return err
				}
			}
			for _, err := range pairs {
				if err != nil {
					return err
				}
			}
			return nil
		}, "iterated twice"},
	} {
		_, err := s.Load(1, tc.restore)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestLoadReadErrorIsNotSkipped(t *testing.T) {
	dir := t.TempDir()
	s, _ := newTestStore(t, vfs.Default, dir)
	save(t, s, 1, 100, 10)
	save(t, s, 1, 200, 10)
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if op == vfs.OpRead && strings.HasSuffix(path, fileName(1, 200)) {
			return vfs.Fault{Err: vfs.ErrInjected}
		}
		return vfs.Fault{}
	})
	s2, _ := newTestStore(t, efs, dir)
	_, err := s2.Load(1, func(m Meta, pairs iter.Seq2[kv.KeyValue, error]) error { return kv.NewStore().Restore(m.Index, pairs) })
	if !errors.Is(err, vfs.ErrInjected) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load with a failing disk: %v; want the read error, not a silent fallback", err)
	}
}

// TestSaveFaults fails each step of Save in turn: Save must report it, the previous
// snapshot must still load, and no temporary file may survive the next NewStore.
func TestSaveFaults(t *testing.T) {
	type injector func(count map[vfs.Op]int, op vfs.Op, path string) vfs.Fault
	onTmp := func(want vfs.Op, nth int, f vfs.Fault) injector {
		return func(count map[vfs.Op]int, op vfs.Op, path string) vfs.Fault {
			if op != want || !strings.HasSuffix(path, tmpSuffix) {
				return vfs.Fault{}
			}
			count[op]++
			if count[op] == nth {
				return f
			}
			return vfs.Fault{}
		}
	}
	failRemoveToo := func(inner injector) injector {
		return func(count map[vfs.Op]int, op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpRemove {
				return vfs.Fault{Err: vfs.ErrInjected}
			}
			return inner(count, op, path)
		}
	}
	injected := vfs.Fault{Err: vfs.ErrInjected}
	tests := []struct {
		name   string
		inj    injector
		maybeN bool // the new snapshot may be in place (the rename happened)
	}{
		{"create fails", onTmp(vfs.OpCreate, 1, injected), false},
		{"first write fails", onTmp(vfs.OpWrite, 1, injected), false},
		{"a later write fails", onTmp(vfs.OpWrite, 2, injected), false},
		{"disk full mid-write", onTmp(vfs.OpWrite, 1, vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: 1000}), false},
		{"fsync fails", onTmp(vfs.OpSync, 1, injected), false},
		{"close fails", onTmp(vfs.OpClose, 1, injected), false},
		{"rename fails", func(count map[vfs.Op]int, op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpRename {
				return injected
			}
			return vfs.Fault{}
		}, false},
		{"write fails and so does the cleanup", failRemoveToo(onTmp(vfs.OpWrite, 2, injected)), false},
		{"rename fails and so does the cleanup", failRemoveToo(func(count map[vfs.Op]int, op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpRename {
				return injected
			}
			return vfs.Fault{}
		}), false},
		{"directory fsync fails", func(count map[vfs.Op]int, op vfs.Op, path string) vfs.Fault {
			if op == vfs.OpSyncDir {
				return injected
			}
			return vfs.Fault{}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			good, _ := newTestStore(t, vfs.Default, dir)
			save(t, good, 1, 1000, 500)

			count := map[vfs.Op]int{}
			var mu sync.Mutex
			efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
				mu.Lock()
				defer mu.Unlock()
				return tt.inj(count, op, path)
			})
			s, _ := newTestStore(t, efs, dir)
			// Big and incompressible enough to take several writes through the buffer.
			pairs := genPairs(testRand(t), 3000, 600)
			err := s.Save(Meta{Shard: 1, Index: 5000, Extra: []byte("conf@5000")}, slices.Values(pairs))
			if err == nil {
				t.Fatalf("Save succeeded despite the fault (counts %v)", count)
			}
			if !errors.Is(err, vfs.ErrInjected) && !errors.Is(err, vfs.ErrNoSpace) {
				t.Fatalf("Save error %v does not carry the injected fault", err)
			}

			after, _ := newTestStore(t, vfs.Default, dir)
			for _, name := range listDir(t, dir) {
				if strings.HasSuffix(name, tmpSuffix) {
					t.Fatalf("%s left behind after NewStore", name)
				}
			}
			if tt.maybeN {
				// The complete new file is in place: Load takes it, intact.
				dst := kv.NewStore()
				meta, err := after.Load(1, func(m Meta, p iter.Seq2[kv.KeyValue, error]) error { return dst.Restore(m.Index, p) })
				if err != nil || meta.Index != 5000 {
					t.Fatalf("Load = %+v, %v", meta, err)
				}
				checkPairs(t, slices.Collect(dst.Snapshot().All()), pairs)
				return
			}
			if idx, _ := after.Indexes(1); !slices.Equal(idx, []uint64{1000}) {
				t.Fatalf("snapshots after a failed Save: %v, want only 1000", idx)
			}
			load(t, after, 1, 1000, 500)
		})
	}
}

// TestCrashLeavesTmp simulates a crash in the middle of Save: the .tmp file is
// there, half written. The next NewStore removes it and Load finds the old one.
func TestCrashLeavesTmp(t *testing.T) {
	dir := t.TempDir()
	s, _ := newTestStore(t, vfs.Default, dir)
	save(t, s, 1, 100, 20)
	var buf bytes.Buffer
	if err := Encode(&buf, Meta{Shard: 1, Index: 200}, state(t, 200, 20).Snapshot().All()); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, fileName(1, 200)+tmpSuffix)
	if err := os.WriteFile(tmp, buf.Bytes()[:buf.Len()/2], 0o644); err != nil {
		t.Fatal(err)
	}
	s2, logs := newTestStore(t, vfs.Default, dir)
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("NewStore left %s: %v", tmp, err)
	}
	if !strings.Contains(logs.String(), fileName(1, 200)+tmpSuffix) {
		t.Errorf("removal not logged: %s", logs)
	}
	load(t, s2, 1, 100, 20)
}

func TestPurge(t *testing.T) {
	dir := t.TempDir()
	s, _ := newTestStore(t, vfs.Default, dir)
	for _, index := range []uint64{10, 20, 30, 40, 50} {
		save(t, s, 1, index, 5)
	}
	save(t, s, 2, 15, 5)
	save(t, s, 2, 25, 5)

	if err := s.Purge(1, 2); err != nil {
		t.Fatal(err)
	}
	if idx, _ := s.Indexes(1); !slices.Equal(idx, []uint64{40, 50}) {
		t.Fatalf("after Purge(1, 2): %v", idx)
	}
	if idx, _ := s.Indexes(2); !slices.Equal(idx, []uint64{15, 25}) {
		t.Fatalf("Purge of shard 1 touched shard 2: %v", idx)
	}
	load(t, s, 1, 50, 5)
	if err := s.Purge(1, 5); err != nil {
		t.Fatal(err)
	}
	if idx, _ := s.Indexes(1); !slices.Equal(idx, []uint64{40, 50}) {
		t.Fatalf("Purge keeping more than there are removed some: %v", idx)
	}
	if err := s.Purge(1, -1); err == nil {
		t.Fatal("Purge with keep -1 succeeded")
	}
	if err := s.Purge(2, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(2, func(Meta, iter.Seq2[kv.KeyValue, error]) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Purge(2, 0): %v", err)
	}

	// A failed removal is reported; the rest still go.
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if op == vfs.OpRemove && strings.HasSuffix(path, fileName(1, 40)) {
			return vfs.Fault{Err: vfs.ErrInjected}
		}
		return vfs.Fault{}
	})
	s2, _ := newTestStore(t, efs, dir)
	save(t, s2, 1, 60, 5)
	if err := s2.Purge(1, 1); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("Purge with a failing remove: %v", err)
	}
	if idx, _ := s2.Indexes(1); !slices.Equal(idx, []uint64{40, 60}) {
		t.Fatalf("after a partly failed Purge: %v", idx)
	}
}

func TestNewStoreErrors(t *testing.T) {
	dir := t.TempDir()
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if op == vfs.OpMkdir {
			return vfs.Fault{Err: vfs.ErrInjected}
		}
		return vfs.Fault{}
	})
	if _, err := NewStore(efs, filepath.Join(dir, "x"), nil); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("NewStore with failing mkdir: %v", err)
	}
	if _, err := NewStore(vfs.Default, filepath.Join(dir, "y"), nil); err != nil {
		t.Fatalf("NewStore with nil logger: %v", err)
	}
}
