package raftnode

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/distkv/distkv/internal/vfs"
)

func noWarn(t *testing.T) func(string, ...any) {
	return func(msg string, args ...any) { t.Errorf("warning: %s %v", msg, args) }
}

// TestMarkFileKeepsEachGroupsMark: groups' marks share one file, each in its
// own pair; they read back after a reopen, a damaged slot leaves the other,
// and a dropped group's pair is free, zeroed, and reused.
func TestMarkFileKeepsEachGroupsMark(t *testing.T) {
	dir := t.TempDir()
	mf, err := openMarkFile(vfs.Default, dir, noWarn(t))
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := mf.forGroup(2)
	m3, _ := mf.forGroup(3)
	if _, err := mf.forGroup(2); err == nil {
		t.Fatal("the mark of group 2 was handed out twice")
	}
	for _, step := range []struct {
		m     *appliedMark
		index uint64
	}{{m2, 5}, {m3, 9}, {m2, 7}, {m3, 11}} {
		if err := step.m.advance(step.index); err != nil {
			t.Fatal(err)
		}
	}
	m2.close()
	m3.close()
	// Group 5's only write is its pair's first slot, at the end of the file.
	m5, _ := mf.forGroup(5)
	if err := m5.advance(3); err != nil {
		t.Fatal(err)
	}
	mf.close()
	if st, err := os.Stat(filepath.Join(dir, marksName)); err != nil || st.Size() != 2*markPair+markSlot {
		t.Fatalf("marks file: %v %v, want %d bytes", st, err, 2*markPair+markSlot)
	}

	mf, err = openMarkFile(vfs.Default, dir, noWarn(t))
	if err != nil {
		t.Fatal(err)
	}
	if m2, _ = mf.forGroup(2); m2.index != 7 {
		t.Fatalf("group 2's mark after reopen: %d, want 7", m2.index)
	}
	if m3, _ = mf.forGroup(3); m3.index != 11 {
		t.Fatalf("group 3's mark after reopen: %d, want 11", m3.index)
	}
	if m5, _ = mf.forGroup(5); m5.index != 3 {
		t.Fatalf("group 5's mark (a short last pair) after reopen: %d, want 3", m5.index)
	}
	base3 := m3.base
	mf.close()

	// Tear the slot of group 3 that holds 11: the other slot says 9.
	f, err := os.OpenFile(filepath.Join(dir, marksName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("junk"), base3+markSlot+8) // 11 was the second write: slot 1
	f.Close()
	mf, err = openMarkFile(vfs.Default, dir, noWarn(t))
	if err != nil {
		t.Fatal(err)
	}
	if m3, _ = mf.forGroup(3); m3.index != 9 {
		t.Fatalf("group 3's mark with a torn slot: %d, want 9", m3.index)
	}
	if err := mf.drop(3); err != nil {
		t.Fatal(err)
	}
	m4, _ := mf.forGroup(4)
	if m4.base != base3 || m4.index != 0 {
		t.Fatalf("group 4 got pair at %d with index %d; want group 3's freed pair at %d, index 0", m4.base, m4.index, base3)
	}
	mf.close()
	mf, err = openMarkFile(vfs.Default, dir, noWarn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer mf.close()
	if _, ok := mf.pairs[3]; ok {
		t.Fatal("the dropped group's pair names it after a reopen")
	}
}

// TestHostGroupsShareTheMarksFile: a Host's groups other than group 1 keep
// their applied marks in one file, not one file each.
func TestHostGroupsShareTheMarksFile(t *testing.T) {
	c := newHostCluster(t, 1, nil)
	h := c.open("n1", 1, 2, 3, 4)
	for _, s := range []uint64{2, 3, 4} {
		c.leader(s)
	}
	if _, err := os.Stat(filepath.Join(c.dirs["n1"], "applied")); err != nil {
		t.Fatalf("group 1's own mark: %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(c.dirs["n1"], "groups", "*", "applied"))
	if len(matches) != 0 {
		t.Fatalf("groups keep marks of their own: %v", matches)
	}
	// Three pairs; the last one's second slot may not be written yet.
	if st, err := os.Stat(filepath.Join(c.dirs["n1"], "groups", marksName)); err != nil || st.Size() < 2*markPair+markSlot || st.Size() > 3*markPair {
		t.Fatalf("shared marks file: %v %v, want three pairs", st, err)
	}
	_ = h
}

// FuzzMarkFile: any contents of the shared marks file open without a panic;
// every pair names at most one group, and a group's pair read back names
// what was written.
func FuzzMarkFile(f *testing.F) {
	var pair [markPair]byte
	encodeMarkSlot(pair[:markSlot], 7, 42)
	f.Add(pair[:])
	f.Add(append(pair[:], make([]byte, markPair+5)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, marksName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		mf, err := openMarkFile(vfs.Default, dir, func(string, ...any) {})
		if err != nil {
			t.Fatal(err)
		}
		defer mf.close()
		seen := map[int64]bool{}
		for _, p := range mf.pairs {
			if seen[p] {
				t.Fatalf("pair %d names two groups", p)
			}
			seen[p] = true
		}
		m, err := mf.forGroup(1 << 50)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.advance(99); err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, markPair)
		if n, err := mf.f.ReadAt(raw, m.base); n < markSlot {
			t.Fatal(err)
		}
		if shard, index, ok := decodeMarkPair(raw); !ok || shard != 1<<50 || index != 99 {
			t.Fatalf("pair read back: %d %d %v", shard, index, ok)
		}
	})
}
