package raftnode

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/wal"
)

// compactionConfig is a node that snapshots only when asked, with WAL
// segments small enough that a few hundred writes fill several.
func compactionConfig(dir string) Config {
	cfg := testConfig(dir)
	cfg.SnapshotEntries = 1 << 30
	cfg.WALSegmentSize = 8 << 10
	cfg.WALCompression = wal.CompressionNone
	return cfg
}

func walSegments(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// TestCompactOnDemand: Compact snapshots what was applied, deletes the WAL
// segments behind it and says how many, answers zeros when nothing is new,
// remembers what it did, and loses nothing across a restart.
func TestCompactOnDemand(t *testing.T) {
	dir := t.TempDir()
	cfg := compactionConfig(dir)
	n := openNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	val := strings.Repeat("v", 100)
	for i := 0; i < 300; i++ {
		if _, err := put(ctx, n, fmt.Sprintf("k%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	before := walSegments(t, dir)
	if len(before) < 3 {
		t.Fatalf("%d WAL segments after 300 writes, want several", len(before))
	}
	applied := n.Status().AppliedIndex
	c, err := n.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := walSegments(t, dir)
	if c.SnapshotIndex < applied || c.SegmentsRemoved == 0 || c.SegmentsRemoved != len(before)-len(after) {
		t.Fatalf("Compact = %+v (applied %d before it); WAL segments %d before, %d after", c, applied, len(before), len(after))
	}
	// The first snapshot of a node: the WAL no longer needs anything up to it.
	if c.EntriesRemoved != c.SnapshotIndex || c.Duration <= 0 || c.Time.IsZero() {
		t.Fatalf("Compact = %+v, want every entry up to the snapshot removed, a duration and a time", c)
	}
	if snaps, _ := filepath.Glob(filepath.Join(dir, "snap", "*.snap")); len(snaps) != 1 {
		t.Fatalf("snapshot files %v, want one", snaps)
	}
	// Nothing applied since: answered at once, nothing removed.
	again, err := n.Compact(ctx)
	if err != nil || again != (Compaction{SnapshotIndex: c.SnapshotIndex}) {
		t.Fatalf("second Compact = %+v, %v; want nothing done at snapshot %d", again, err, c.SnapshotIndex)
	}
	if got := n.Compactions(); len(got) != 1 || got[0] != c {
		t.Fatalf("Compactions() = %+v, want [%+v]", got, c)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	n = openNode(t, cfg)
	defer n.Stop()
	for _, k := range []string{"k000", "k150", "k299"} {
		if v, ok := mustGet(t, n, k); !ok || v != val {
			t.Fatalf("%s after compaction and restart = %q, %v", k, v, ok)
		}
	}
	if _, err := put(ctx, n, "after", "restart"); err != nil {
		t.Fatal(err)
	}
	// Two snapshots are kept, and the WAL backs the older: the second
	// compaction moves the WAL's compaction point nowhere.
	c2, err := n.Compact(ctx)
	if err != nil || c2.SnapshotIndex <= c.SnapshotIndex || c2.EntriesRemoved != 0 {
		t.Fatalf("Compact after a restart and a write = %+v, %v; want a snapshot past %d and no entries removed", c2, err, c.SnapshotIndex)
	}
}

// TestConcurrentCompactsCoverWhatWasApplied: Compacts called while writes go
// on, several at once, each return a snapshot that covers what was applied
// when it was called, whether it started that snapshot, waited for one under
// way, or needed one more after it.
func TestConcurrentCompactsCoverWhatWasApplied(t *testing.T) {
	n := openNode(t, compactionConfig(t.TempDir()))
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for w := 0; w < 4; w++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := put(ctx, n, fmt.Sprintf("w%d-%d", w, i%50), "v"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var compacts sync.WaitGroup
	for i := 0; i < 12; i++ {
		compacts.Add(1)
		go func() {
			defer compacts.Done()
			time.Sleep(time.Duration(i) * 3 * time.Millisecond)
			applied := n.Status().AppliedIndex
			c, err := n.Compact(ctx)
			if err != nil || c.SnapshotIndex < applied {
				t.Errorf("Compact at applied %d = %+v, %v", applied, c, err)
			}
		}()
	}
	compacts.Wait()
	close(stop)
	writers.Wait()
	if got := n.Compactions(); len(got) == 0 || len(got) > compactionsKept {
		t.Fatalf("%d compactions recorded, want 1 to %d", len(got), compactionsKept)
	}
}
