package wal

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/vfs"
)

var seedFlag = flag.Int64("wal.seed", 0, "seed for randomized tests (0: pick one)")

// testRand returns a seeded generator and logs the seed so a failure can be
// reproduced with: go test ./internal/wal -run <Test> -args -wal.seed=<seed>
func testRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (reproduce with -args -wal.seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>32|1))
}

// noSyncFS makes Sync and SyncDir no-ops. Tests that loop over hundreds of
// crash images use it: durability against power loss is not what they check.
type noSyncFS struct{ vfs.FS }

type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error     { return nil }
func (noSyncFile) SyncData() error { return nil }

func (f noSyncFS) SyncDir(string) error { return nil }

func (f noSyncFS) Create(name string) (vfs.File, error) {
	fl, err := f.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{fl}, nil
}

func (f noSyncFS) Open(name string) (vfs.File, error) {
	fl, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{fl}, nil
}

func (f noSyncFS) OpenReadWrite(name string) (vfs.File, error) {
	fl, err := f.FS.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{fl}, nil
}

var fastFS vfs.FS = noSyncFS{vfs.Default}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openAll opens the WAL and returns it with every replayed record.
func openAll(t testing.TB, cfg Config) (*WAL, []Record) {
	t.Helper()
	w, recs, err := tryOpen(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w, recs
}

func tryOpen(cfg Config) (*WAL, []Record, error) {
	var recs []Record
	w, err := Open(cfg, func(r Record) error {
		recs = append(recs, r)
		return nil
	})
	return w, recs, err
}

// replayAll opens, replays and closes.
func replayAll(t testing.TB, cfg Config) []Record {
	t.Helper()
	w, recs := openAll(t, cfg)
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return recs
}

func mustAppend(t testing.TB, w *WAL, recs []Record, sync bool) {
	t.Helper()
	if err := w.Append(recs, sync); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func recString(r Record) string {
	d := r.Data
	suffix := ""
	if len(d) > 24 {
		d, suffix = d[:24], fmt.Sprintf("...(%d bytes)", len(r.Data))
	}
	return fmt.Sprintf("{shard %d %v idx %d %q%s}", r.Shard, r.Type, r.Index, d, suffix)
}

func equalRecords(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Shard != b[i].Shard || a[i].Type != b[i].Type || a[i].Index != b[i].Index || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

func checkRecords(t testing.TB, got, want []Record) {
	t.Helper()
	if equalRecords(got, want) {
		return
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		if !equalRecords(got[i:i+1], want[i:i+1]) {
			t.Fatalf("record %d of %d: got %s, want %s (got %d records)", i, len(want), recString(got[i]), recString(want[i]), len(got))
		}
	}
	t.Fatalf("got %d records, want %d", len(got), len(want))
}

// withoutCarryOver drops replayed records that repeat an earlier hard state
// or snapshot record of the same shard: the copies carried into new segments.
func withoutCarryOver(recs []Record) []Record {
	type key struct {
		shard uint64
		typ   RecordType
	}
	last := map[key]Record{}
	var out []Record
	for _, r := range recs {
		if r.Type != RecordEntry {
			k := key{r.Shard, r.Type}
			if prev, ok := last[k]; ok && equalRecords([]Record{prev}, []Record{r}) {
				continue
			}
			last[k] = r
		}
		out = append(out, r)
	}
	return out
}

var words = strings.Fields(`alpha bravo charlie delta echo foxtrot golf hotel india juliet
	kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey
	xray yankee zulu admin editor viewer beta stable canary eu-west us-east ap-south`)

// jsonValue is a realistic JSON document: varying numbers and words.
func jsonValue(rng *rand.Rand) []byte {
	var b strings.Builder
	id := rng.IntN(1000000)
	fmt.Fprintf(&b, `{"user":"u%d","email":"%s.%s%d@example.com","age":%d,"score":%.3f,"region":"%s","tags":[`,
		id, words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(1000),
		18+rng.IntN(70), rng.Float64()*1000, words[rng.IntN(len(words))])
	for i, n := 0, 1+rng.IntN(5); i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%s"`, words[rng.IntN(len(words))])
	}
	fmt.Fprintf(&b, `],"created":"2024-%02d-%02dT%02d:%02d:%02dZ","active":%t,"visits":%d}`,
		1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(2) == 0, rng.IntN(100000))
	return []byte(b.String())
}

// randomRecord returns a record of a random type for one of the shards.
// next tracks the next entry index per shard.
func randomRecord(rng *rand.Rand, shards int, next map[uint64]uint64) Record {
	shard := uint64(1 + rng.IntN(shards))
	switch rng.IntN(10) {
	case 0:
		return Record{Shard: shard, Type: RecordHardState, Data: fmt.Appendf(nil, "term=%d vote=%d commit=%d", rng.IntN(9), rng.IntN(3), next[shard])}
	case 1:
		return Record{Shard: shard, Type: RecordSnapshot, Index: next[shard] / 2, Data: fmt.Appendf(nil, "snap@%d", next[shard]/2)}
	}
	next[shard]++
	var data []byte
	switch rng.IntN(4) {
	case 0:
		data = nil
	case 1:
		data = make([]byte, rng.IntN(2000))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
	default:
		data = jsonValue(rng)
	}
	return Record{Shard: shard, Type: RecordEntry, Index: next[shard], Data: data}
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// frameOffsets returns the offset of every frame of every segment, by file name.
func frameOffsets(t testing.TB, dir string) map[string][]int64 {
	t.Helper()
	offs := map[string][]int64{}
	err := Scan(vfs.Default, dir, func(seg string, off int64, _ Record) error {
		if o := offs[seg]; len(o) == 0 || o[len(o)-1] != off {
			offs[seg] = append(o, off)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return offs
}

// memFS is an in-memory vfs.FS for tests that open thousands of WAL images
// (the fuzzers): the real file system's metadata operations dominate there.
// Sync is a no-op; there is no crash to survive in memory.
type memFS struct {
	mu    sync.Mutex
	files map[string]*memData
}

type memData struct {
	mu sync.Mutex
	b  []byte
}

func newMemFS() *memFS { return &memFS{files: map[string]*memData{}} }

var _ vfs.FS = (*memFS)(nil)

func (m *memFS) WriteFile(name string, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[filepath.Clean(name)] = &memData{b: slices.Clone(b)}
}

func (m *memFS) open(name string, create, truncate, writable bool) (vfs.File, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.files[name]
	if !ok {
		if !create {
			return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
		}
		d = &memData{}
		m.files[name] = d
	}
	if truncate {
		d.mu.Lock()
		d.b = d.b[:0]
		d.mu.Unlock()
	}
	return &memFile{name: name, d: d, writable: writable}, nil
}

func (m *memFS) Create(name string) (vfs.File, error)        { return m.open(name, true, true, true) }
func (m *memFS) Open(name string) (vfs.File, error)          { return m.open(name, false, false, false) }
func (m *memFS) OpenReadWrite(name string) (vfs.File, error) { return m.open(name, false, false, true) }
func (m *memFS) MkdirAll(string, os.FileMode) error          { return nil }
func (m *memFS) Lock(string) (io.Closer, error)              { return io.NopCloser(nil), nil }
func (m *memFS) SyncDir(string) error                        { return nil }

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	if _, ok := m.files[name]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: os.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

func (m *memFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.files[filepath.Clean(oldname)]
	if !ok {
		return &os.PathError{Op: "rename", Path: oldname, Err: os.ErrNotExist}
	}
	delete(m.files, filepath.Clean(oldname))
	m.files[filepath.Clean(newname)] = d
	return nil
}

func (m *memFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for name := range m.files {
		if filepath.Dir(name) == filepath.Clean(dir) {
			names = append(names, filepath.Base(name))
		}
	}
	slices.Sort(names)
	return names, nil
}

func (m *memFS) Stat(name string) (os.FileInfo, error) {
	m.mu.Lock()
	d, ok := m.files[filepath.Clean(name)]
	m.mu.Unlock()
	if !ok {
		return nil, &os.PathError{Op: "stat", Path: name, Err: os.ErrNotExist}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return memInfo{name: filepath.Base(name), size: int64(len(d.b))}, nil
}

type memFile struct {
	name     string
	d        *memData
	off      int64
	writable bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if off >= int64(len(f.d.b)) {
		return 0, io.EOF
	}
	n := copy(p, f.d.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if n > 0 {
		err = nil
	}
	return n, err
}

func (f *memFile) Write(p []byte) (int, error) {
	if !f.writable {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: os.ErrPermission}
	}
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if end := f.off + int64(len(p)); end > int64(len(f.d.b)) {
		f.d.b = append(f.d.b, make([]byte, end-int64(len(f.d.b)))...)
	}
	copy(f.d.b[f.off:], p)
	f.off += int64(len(p))
	return len(p), nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if !f.writable {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: os.ErrPermission}
	}
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.d.b)) {
		f.d.b = append(f.d.b, make([]byte, end-int64(len(f.d.b)))...)
	}
	copy(f.d.b[off:], p)
	return len(p), nil
}

func (f *memFile) DirectWrites() bool { return true }

func (f *memFile) WriteAtSync(p []byte, off int64) error {
	_, err := f.WriteAt(p, off)
	return err
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		f.off = offset
	case io.SeekCurrent:
		f.off += offset
	case io.SeekEnd:
		f.d.mu.Lock()
		f.off = int64(len(f.d.b)) + offset
		f.d.mu.Unlock()
	}
	return f.off, nil
}

func (f *memFile) Truncate(size int64) error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if size <= int64(len(f.d.b)) {
		f.d.b = f.d.b[:size]
	} else {
		f.d.b = append(f.d.b, make([]byte, size-int64(len(f.d.b)))...)
	}
	return nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	return memInfo{name: filepath.Base(f.name), size: int64(len(f.d.b))}, nil
}

func (f *memFile) Sync() error     { return nil }
func (f *memFile) SyncData() error { return nil }
func (f *memFile) Close() error    { return nil }

func (f *memFile) Preallocate(size int64) error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if n := int64(len(f.d.b)); size > n {
		f.d.b = append(f.d.b, make([]byte, size-n)...)
	}
	return nil
}

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() os.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
