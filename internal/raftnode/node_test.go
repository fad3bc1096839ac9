package raftnode

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

func testConfig(dir string) Config {
	return Config{
		Self:         Member{Name: "n1", Peer: "127.0.0.1:9000", HTTP: "127.0.0.1:8000"},
		DataDir:      dir,
		TickInterval: 10 * time.Millisecond,
	}
}

func openNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("open node: %v", err)
	}
	waitReady(t, n)
	return n
}

func waitReady(t *testing.T, n *Node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = n.Ready(); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("node not ready after 10s: %v", err)
}

func put(ctx context.Context, n *Node, k, v string) (kv.Result, error) {
	return n.Propose(ctx, kv.Command{Op: kv.OpPut, Key: []byte(k), Value: []byte(v)})
}

func mustGet(t *testing.T, n *Node, k string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, ok, err := n.Get(ctx, []byte(k), true)
	if err != nil {
		t.Fatalf("get %q: %v", k, err)
	}
	return string(got.Value), ok
}

func TestProposeReadDeleteAndConditions(t *testing.T) {
	n := openNode(t, testConfig(t.TempDir()))
	defer n.Stop()
	ctx := context.Background()

	r1, err := put(ctx, n, "key6", "myvalue")
	if err != nil || r1.Status != kv.StatusOK || r1.Revision <= 0 {
		t.Fatalf("put = %+v, %v", r1, err)
	}
	if v, ok := mustGet(t, n, "key6"); !ok || v != "myvalue" {
		t.Fatalf("get = %q, %v", v, ok)
	}
	stale := int64(7)
	r2, err := n.Propose(ctx, kv.Command{Op: kv.OpPut, Key: []byte("key6"), Value: []byte("x"), Cond: kv.Cond{PrevVersion: &stale}})
	if err != nil || r2.Status != kv.StatusConflict || r2.Current.Version != 1 {
		t.Fatalf("conditional put with wrong version = %+v, %v; want conflict at version 1", r2, err)
	}
	if v, _ := mustGet(t, n, "key6"); v != "myvalue" {
		t.Fatalf("value after failed conditional put = %q", v)
	}
	r3, err := n.Propose(ctx, kv.Command{Op: kv.OpDelete, Key: []byte("key6")})
	if err != nil || r3.Status != kv.StatusOK || r3.Revision <= r1.Revision {
		t.Fatalf("delete = %+v, %v (put revision %d)", r3, err, r1.Revision)
	}
	if _, ok := mustGet(t, n, "key6"); ok {
		t.Fatal("key still present after delete")
	}
	r4, err := n.Propose(ctx, kv.Command{Op: kv.OpDelete, Key: []byte("key6")})
	if err != nil || r4.Status != kv.StatusNotFound {
		t.Fatalf("delete of missing key = %+v, %v; want not found", r4, err)
	}
	st := n.Status()
	if st.Leader != "n1" || st.AppliedIndex < uint64(r3.Revision) || len(st.Members) != 1 || st.Members[0].HTTP != "127.0.0.1:8000" {
		t.Fatalf("status = %+v", st)
	}
}

func TestRestartRecoversAllWrites(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	n := openNode(t, cfg)
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		if _, err := put(ctx, n, fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	last, _ := put(ctx, n, "k0000", "overwritten")
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n = openNode(t, testConfig(dir))
	defer n.Stop()
	if v, _ := mustGet(t, n, "k0000"); v != "overwritten" {
		t.Fatalf("k0000 = %q after restart", v)
	}
	for i := 1; i < 500; i++ {
		if v, ok := mustGet(t, n, fmt.Sprintf("k%04d", i)); !ok || v != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%04d = %q, %v after restart", i, v, ok)
		}
	}
	r, err := put(ctx, n, "after", "restart")
	if err != nil || r.Revision <= last.Revision {
		t.Fatalf("revision after restart %d, want > %d (%v)", r.Revision, last.Revision, err)
	}
}

// TestSnapshotsBoundWAL writes many times more entries than fit between two
// snapshots and checks that the WAL stays bounded while writes continue and that
// a restart after compaction has every key.
func TestSnapshotsBoundWAL(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SnapshotEntries = 500
	cfg.LogEntriesKept = 100
	cfg.WALSegmentSize = 32 << 10
	n := openNode(t, cfg)
	ctx := context.Background()
	const total = 12000
	val := strings.Repeat("v", 100)
	var maxWAL int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < total; i += 8 {
				if _, err := put(ctx, n, fmt.Sprintf("key%06d", i%3000), fmt.Sprintf("%s-%d", val, i)); err != nil {
					failed.Add(1)
				}
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for sampling := true; sampling; {
		select {
		case <-done:
			sampling = false
		case <-time.After(20 * time.Millisecond):
		}
		if s := dirSize(t, filepath.Join(dir, "wal")); s > maxWAL {
			maxWAL = s
		}
	}
	if failed.Load() > 0 {
		t.Fatalf("%d writes failed", failed.Load())
	}
	// Without compaction 12,000 entries of ~130 bytes is ~1.5 MB before
	// compression. A snapshot is due every SnapshotEntries entries whose
	// bytes reach half the state's (see maybeSnapshot): about three such
	// intervals is the bound.
	_, hist := n.KV().HistoryStats()
	bound := 4 * max(int64(cfg.SnapshotEntries*200), (n.KV().Bytes()+hist)/2)
	t.Logf("largest WAL seen: %d bytes (bound %d); final %d", maxWAL, bound, dirSize(t, filepath.Join(dir, "wal")))
	if maxWAL > bound {
		t.Fatalf("WAL grew to %d bytes, bound %d: compaction is not keeping up", maxWAL, bound)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snap", "*.snap"))
	if len(snaps) == 0 || len(snaps) > 2 {
		t.Fatalf("%d snapshot files, want 1 or 2 (the default kept)", len(snaps))
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	n = openNode(t, cfg)
	defer n.Stop()
	// The last write to key i%3000 was i = the largest i < total with that residue.
	for k := 0; k < 3000; k++ {
		i := k
		for i+3000 < total {
			i += 3000
		}
		if v, ok := mustGet(t, n, fmt.Sprintf("key%06d", k)); !ok || v != fmt.Sprintf("%s-%d", val, i) {
			t.Fatalf("key%06d = %q, %v after restart; want write %d", k, v, ok, i)
		}
	}
}

func dirSize(t *testing.T, dir string) int64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			total += info.Size()
		}
	}
	return total
}

// TestStorageFailureLosesNoAcknowledgedWrite injects a failed fsync or a full
// disk (with a short write) into the WAL while many clients write, and checks
// that the node stops, acknowledges nothing after the failure, and that every
// write it acknowledged is there after a restart on a healthy disk.
func TestStorageFailureLosesNoAcknowledgedWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fault    vfs.Fault
		op       vfs.Op
		buffered bool // cfg.WALBuffered
	}{
		{"fsync fails and drops unsynced data", vfs.Fault{Err: vfs.ErrInjected, DropUnsynced: true}, vfs.OpSync, false},
		{"direct write fails mid-block", vfs.Fault{Err: vfs.ErrInjected, ShortWrite: 100}, vfs.OpWriteAtSync, false},
		{"buffered: fsync fails and drops unsynced data", vfs.Fault{Err: vfs.ErrInjected, DropUnsynced: true}, vfs.OpSync, true},
		// A full disk does not stop the node: see diskfull_test.go.
		{"buffered: write fails mid-frame", vfs.Fault{Err: vfs.ErrInjected, ShortWrite: 100}, vfs.OpWrite, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewSource(seed))
			failAfter := int64(50 + rng.Intn(300))
			dir := t.TempDir()
			var calls atomic.Int64
			efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
				if op == tc.op && strings.HasSuffix(path, ".wal") && calls.Add(1) > failAfter {
					return tc.fault
				}
				return vfs.Fault{}
			})
			cfg := testConfig(dir)
			cfg.FS = efs
			cfg.WALBuffered = tc.buffered
			n := openNode(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var mu sync.Mutex
			acked := map[string]string{}
			var wg sync.WaitGroup
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; ; i++ {
						k, v := fmt.Sprintf("w%02d-%05d", w, i), fmt.Sprintf("value-%d-%d", w, i)
						r, err := put(ctx, n, k, v)
						if err != nil {
							if !errors.Is(err, ErrStopped) {
								t.Errorf("write failed with %v, want ErrStopped", err)
							}
							return
						}
						if r.Status != kv.StatusOK {
							t.Errorf("write %s: status %v", k, r.Status)
							return
						}
						mu.Lock()
						acked[k] = v
						mu.Unlock()
					}
				}(w)
			}
			wg.Wait()
			select {
			case <-n.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("node did not stop after the storage failure")
			}
			if err := n.Err(); err == nil {
				t.Fatal("node stopped without reporting the storage failure")
			}
			if _, err := put(context.Background(), n, "late", "x"); !errors.Is(err, ErrStopped) {
				t.Fatalf("write after failure = %v, want ErrStopped", err)
			}
			t.Logf("acknowledged %d writes before the failure (%v)", len(acked), n.Err())
			if len(acked) == 0 {
				t.Fatal("no write acknowledged: the fault came too early to test anything")
			}

			cfg.FS = vfs.Default
			n2 := openNode(t, cfg)
			defer n2.Stop()
			for k, v := range acked {
				if got, ok := mustGet(t, n2, k); !ok || got != v {
					t.Fatalf("acknowledged write %s=%s lost after restart (got %q, %v)", k, v, got, ok)
				}
			}
		})
	}
}

func TestStopAnswersWaitingCallers(t *testing.T) {
	n := openNode(t, testConfig(t.TempDir()))
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := put(context.Background(), n, "k", "v"); !errors.Is(err, ErrStopped) {
		t.Fatalf("propose after stop = %v, want ErrStopped", err)
	}
	if err := n.ReadBarrier(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("read after stop = %v, want ErrStopped", err)
	}
}

func TestDataDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	n := openNode(t, testConfig(dir))
	if _, err := Open(testConfig(dir)); !errors.Is(err, vfs.ErrLocked) {
		t.Fatalf("second node on the same directory: %v, want ErrLocked", err)
	}
	n.Stop()
	n2 := openNode(t, testConfig(dir))
	n2.Stop()
}

// A stale read right after a restart must not show a state older than the
// node had before it: it waits until the committed entries on disk are applied.
func TestStaleReadAfterRestartIsNotOlder(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SnapshotEntries = 1 << 20 // everything stays in the WAL, to be replayed
	n := openNode(t, cfg)
	ctx := context.Background()
	const writes = 3000
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < writes; i += 16 {
				if _, err := put(ctx, n, fmt.Sprintf("k%05d", i), "v"); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if _, err := put(ctx, n, "last", "v"); err != nil {
		t.Fatal(err)
	}
	// What the node served before the restart.
	before, ok, err := n.Get(ctx, []byte("last"), false)
	if err != nil || !ok {
		t.Fatalf("stale get before restart: %v, %v", ok, err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	n2, err := Open(testConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Stop()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, ok, err := n2.Get(rctx, []byte("last"), false) // at once, not after Ready
	if err != nil {
		t.Fatal(err)
	}
	if !ok || got.Revision < before.Revision {
		t.Fatalf("stale get just after restart: found=%v revision %d; before the restart it was at revision %d", ok, got.Revision, before.Revision)
	}
}
