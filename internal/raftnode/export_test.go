package raftnode

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// A backup's view (Export) seeded into three fresh data directories (Seed)
// starts as a new cluster that elects a leader, serves every key written
// before the export and none written after it, takes writes, and survives a
// restart.
func TestExportSeedNewCluster(t *testing.T) {
	src := newCluster(t, 3, nil)
	leader := src.waitLeader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := put(ctx, src.nodes[leader], fmt.Sprintf("before%02d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := src.nodes[src.follower(leader)].Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var after int64
	for i := range 20 {
		r, err := put(ctx, src.nodes[leader], fmt.Sprintf("after%02d", i), "x")
		if err != nil {
			t.Fatal(err)
		}
		after = r.Revision
	}
	if uint64(after) <= ex.Index {
		t.Fatalf("writes after the export have revision %d <= its index %d", after, ex.Index)
	}
	src.stopAll()

	dst := &cluster{t: t, nw: newMemNet(time.Now().UnixNano()), dirs: map[string]string{}, nodes: map[string]*Node{}}
	base := t.TempDir()
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("r%d", i)
		dst.members = append(dst.members, Member{Name: name, Peer: fmt.Sprintf("mem:%d", 10+i)})
		dst.dirs[name] = filepath.Join(base, name)
	}
	const newID = 0x1234abcd
	for _, m := range dst.members {
		if err := Seed(SeedConfig{DataDir: dst.dirs[m.Name], Members: dst.members, ClusterID: newID, Index: ex.Index},
			ex.View.SnapshotPairs()); err != nil {
			t.Fatal(err)
		}
	}
	if err := Seed(SeedConfig{DataDir: dst.dirs["r1"], Members: dst.members, ClusterID: newID, Index: ex.Index},
		ex.View.SnapshotPairs()); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("seeding a used directory: err %v, want ErrNotEmpty", err)
	}
	for _, m := range dst.members {
		dst.start(m.Name)
	}
	t.Cleanup(dst.stopAll)
	nl := dst.waitLeader(10 * time.Second)
	for name, n := range dst.nodes {
		if n.ClusterID() != newID {
			t.Fatalf("%s: cluster id %x, want %x", name, n.ClusterID(), newID)
		}
	}
	for i := range 50 {
		if v, ok := mustGet(t, dst.nodes[nl], fmt.Sprintf("before%02d", i)); !ok || v != fmt.Sprintf("v%d", i) {
			t.Fatalf("before%02d = %q, %v after the restore", i, v, ok)
		}
	}
	for i := range 20 {
		if v, ok := mustGet(t, dst.nodes[nl], fmt.Sprintf("after%02d", i)); ok {
			t.Fatalf("after%02d = %q after the restore: written after the backup", i, v)
		}
	}
	r, err := put(ctx, dst.nodes[nl], "new", "y")
	if err != nil {
		t.Fatal(err)
	}
	if uint64(r.Revision) <= ex.Index {
		t.Fatalf("first write of the restored cluster has revision %d <= the backup's %d", r.Revision, ex.Index)
	}
	// Restart all: the restored members now have a WAL behind the seed.
	dst.stopAll()
	for _, m := range dst.members {
		dst.start(m.Name)
	}
	nl = dst.waitLeader(10 * time.Second)
	for _, k := range []string{"before00", "before49", "new"} {
		if _, ok := mustGet(t, dst.nodes[nl], k); !ok {
			t.Fatalf("%s missing after restarting the restored cluster", k)
		}
	}
}
