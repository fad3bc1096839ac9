package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/vfs"
)

// copyTree copies the regular files under src to dst. A file that vanishes
// while the copy runs (a temporary file renamed meanwhile) is left out, as
// a crash before it was created would. It may run on any goroutine, so it
// returns errors instead of failing the test.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// crashImage is the data directory as a crash at one point would leave it.
type crashImage struct {
	point string
	acked int // writes acknowledged before the point: all must survive
	dir   string
}

// The points of a snapshot's life at which TestCrashAroundSnapshot crashes.
const (
	pointSnapWritten = "snapshot file written, not yet renamed into place"
	pointSnapPlaced  = "snapshot file in place, its marker not yet in the WAL"
	pointPurge       = "marker in the WAL, old snapshot files being purged"
	pointCompact     = "WAL compaction under way (before removing a segment)"
)

// TestCrashAroundSnapshot takes the data directory exactly as a crash would
// leave it at each step between writing a snapshot and compacting the log
// behind it (before the file is renamed into place; before its WAL marker;
// in the middle of purging old snapshots; in the middle of deleting WAL
// segments) and restarts a node on each image. Every write acknowledged
// before the crash must be there, in order (revisions increasing in the
// order the writes were acknowledged), and no write that was never made.
func TestCrashAroundSnapshot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	var (
		mu        sync.Mutex
		images    []crashImage
		seen      = map[string]int{}
		acked     atomic.Int64
		snapPlace bool // a snapshot was renamed into place; the next WAL write precedes its marker
	)
	capture := func(point string) {
		if seen[point] >= 4 {
			return
		}
		seen[point]++
		n := int(acked.Load())
		img := filepath.Join(t.TempDir(), "image")
		if err := copyTree(dir, img); err != nil {
			// Not t.Fatal: this runs on the node's goroutines.
			t.Errorf("copy %s at %q: %v", dir, point, err)
			return
		}
		images = append(images, crashImage{point: point, acked: n, dir: img})
	}
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		mu.Lock()
		defer mu.Unlock()
		inSnap := strings.Contains(path, string(filepath.Separator)+"snap"+string(filepath.Separator))
		inWAL := strings.Contains(path, string(filepath.Separator)+"wal"+string(filepath.Separator))
		switch {
		case op == vfs.OpRename && inSnap:
			capture(pointSnapWritten)
		case op == vfs.OpSyncDir && filepath.Base(path) == "snap":
			// Save syncs the directory right after the rename.
			snapPlace = true
		case (op == vfs.OpWrite || op == vfs.OpWriteAtSync) && inWAL && snapPlace:
			snapPlace = false
			capture(pointSnapPlaced)
		case op == vfs.OpRemove && inSnap && strings.HasSuffix(path, ".snap"):
			capture(pointPurge)
		case op == vfs.OpRemove && inWAL && strings.HasSuffix(path, ".wal"):
			capture(pointCompact)
		}
		return vfs.Fault{}
	})
	cfg := testConfig(dir)
	cfg.FS = efs
	cfg.SnapshotEntries = 40
	cfg.LogEntriesKept = 10
	cfg.WALSegmentSize = 2 << 10
	n := openNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const writes = 600
	key := func(i int) string { return fmt.Sprintf("k%05d", i) }
	val := func(i int) string { return fmt.Sprintf("value %d %s", i, strings.Repeat("x", 40+i%30)) }
	for i := range writes {
		if _, err := put(ctx, n, key(i), val(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		acked.Add(1)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range []string{pointSnapWritten, pointSnapPlaced, pointPurge, pointCompact} {
		if seen[p] == 0 {
			t.Fatalf("the workload never reached %q: the test would prove nothing", p)
		}
	}

	for i, img := range images {
		t.Run(fmt.Sprintf("%02d %s", i, img.point), func(t *testing.T) {
			cfg := testConfig(img.dir)
			n, err := Open(cfg)
			if err != nil {
				t.Fatalf("restart after a crash (%s, %d writes acknowledged): %v", img.point, img.acked, err)
			}
			defer n.Stop()
			waitReady(t, n)
			var lastRev int64
			for i := 0; i < writes; i++ {
				got, ok := n.KV().Get([]byte(key(i)))
				switch {
				case i < img.acked && (!ok || string(got.Value) != val(i)):
					t.Fatalf("acknowledged write %d of %d lost: %q, %v", i, img.acked, got.Value, ok)
				case i < img.acked && got.Revision <= lastRev:
					t.Fatalf("write %d has revision %d, not after write %d's %d: reordered", i, got.Revision, i-1, lastRev)
				case i > img.acked && ok:
					// Only the one write in flight at the crash may be there
					// beyond the acknowledged ones.
					t.Fatalf("write %d is there, but only %d were acknowledged (plus one in flight)", i, img.acked)
				}
				if ok {
					lastRev = got.Revision
				}
			}
		})
	}
	t.Logf("restarted from %d crash images: %v", len(images), seen)
}

// TestAppliedNeverAheadOfWrittenCommit: at any moment, the commit index a
// restart would take from the data directory as a process crash leaves it
// (the WAL's hard state and the applied mark, written if not synced) covers
// everything the node has applied, so a restart replays at least as far and a
// stale read never goes back in time across it. Each WAL write is held a moment, during
// which the loop would apply whatever it does not wait for; then the node's
// applied index is taken and the data directory copied (the write not yet
// made), and each copy is opened to see where it would replay to.
func TestAppliedNeverAheadOfWrittenCommit(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(fmt.Sprintf("WALBuffered=%v", buffered), func(t *testing.T) {
			testAppliedNeverAheadOfWrittenCommit(t, buffered)
		})
	}
}

func testAppliedNeverAheadOfWrittenCommit(t *testing.T, buffered bool) {
	dir := filepath.Join(t.TempDir(), "n1")
	var (
		node   atomic.Pointer[Node]
		mu     sync.Mutex
		images []crashImage // acked holds the applied index
	)
	efs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		n := node.Load()
		if (op != vfs.OpWrite && op != vfs.OpWriteAtSync) || n == nil || !strings.Contains(path, string(filepath.Separator)+"wal"+string(filepath.Separator)) {
			return vfs.Fault{}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(images) >= 40 {
			return vfs.Fault{}
		}
		time.Sleep(3 * time.Millisecond)
		applied := n.applied.Load()
		img := filepath.Join(t.TempDir(), "image")
		if err := copyTree(dir, img); err != nil {
			t.Errorf("copy %s: %v", dir, err)
			return vfs.Fault{}
		}
		images = append(images, crashImage{acked: int(applied), dir: img})
		return vfs.Fault{}
	})
	cfg := testConfig(dir)
	cfg.FS = efs
	cfg.SnapshotEntries = 1 << 20
	cfg.WALBuffered = buffered
	n := openNode(t, cfg)
	node.Store(n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				if _, err := put(ctx, n, fmt.Sprintf("w%d-%d", w, i), "v"); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	node.Store(nil)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(images) < 10 {
		t.Fatalf("only %d images taken: the test would prove little", len(images))
	}
	ahead := 0
	for _, img := range images {
		cfg := testConfig(img.dir)
		n, err := Open(cfg)
		if err != nil {
			t.Fatalf("open image: %v", err)
		}
		if n.replayTo < uint64(img.acked) {
			ahead++
			t.Errorf("the node had applied index %d, but its WAL commits only up to %d: a restart would show an older state", img.acked, n.replayTo)
		}
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d images, %d with the applied index ahead of the written commit", len(images), ahead)
}
