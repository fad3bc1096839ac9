package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkv/distkv/client"
)

// TestBackupRestoreUnderLoad takes a backup of a 3-node cluster while 64
// clients write unique keys, restores it into three fresh data directories
// and starts a new cluster on them: every write acknowledged with a revision
// at or below the backup's is there with its value, and no key written
// above it. A truncated and an altered copy of the file are refused.
func TestBackupRestoreUnderLoad(t *testing.T) { backupRestoreUnderLoad(t) }

// TestBackupRestoreShardedUnderLoad is TestBackupRestoreUnderLoad on a
// cluster whose key space splits into ranges (16 KiB) as it is written: the
// backup reads every range at one revision, and the restored cluster, one
// range again, holds exactly the writes at or below it.
func TestBackupRestoreShardedUnderLoad(t *testing.T) {
	backupRestoreUnderLoad(t, "--range-split-bytes", "16KiB")
}

func backupRestoreUnderLoad(t *testing.T, extra ...string) {
	src := startCluster(t, 3, extra...)
	src.leader(10 * time.Second)
	var eps []string
	for _, n := range src.names {
		eps = append(eps, src.http[n])
	}
	c, err := client.New(client.Config{Endpoints: eps, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	const writers = 64
	type ack struct {
		key, value string
		rev        int64
	}
	var (
		mu    sync.Mutex
		acks  []ack
		tried = map[string]bool{} // every key a write was sent for
		stop  atomic.Bool
		wg    sync.WaitGroup
		total atomic.Int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k, v := fmt.Sprintf("w%02d-%06d", g, i), fmt.Sprintf("v%d-%d", g, i)
				mu.Lock()
				tried[k] = true
				mu.Unlock()
				r, err := c.Put(ctx, k, v)
				if err != nil {
					continue // outcome unknown: neither required nor forbidden
				}
				total.Add(1)
				mu.Lock()
				acks = append(acks, ack{k, v, r.Revision})
				mu.Unlock()
			}
		}()
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for total.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d writes acknowledged after 30s", total.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(2000)
	if len(extra) > 0 {
		// Written enough to have split.
		waitFor(4000)
		rs, err := src.placedRanges(src.names[0])
		if err != nil || len(rs) < 2 {
			t.Fatalf("%d ranges before the backup (%v): the test wants several", len(rs), err)
		}
		t.Logf("%d ranges at the backup", len(rs))
	}
	file := filepath.Join(t.TempDir(), "cluster.backup")
	out, err := run(t, "backup", "--endpoints", strings.Join(eps, ","), "--out", file)
	if err != nil {
		t.Fatalf("distkv backup: %v", err)
	}
	var sum struct {
		Revision uint64 `json:"revision"`
		Pairs    uint64 `json:"pairs"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("distkv backup printed %q: %v", out, err)
	}
	// Writes go on after the backup, so that some are above its revision.
	n := total.Load()
	waitFor(n + 1000)
	stop.Store(true)
	wg.Wait()
	t.Logf("backup at revision %d, %d pairs; %d writes acknowledged in all", sum.Revision, sum.Pairs, len(acks))
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("%s.tmp left behind: %v", file, err)
	}

	// A damaged file is refused, and leaves no data directory behind.
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, bad := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", good[:len(good)*2/3], "damaged"},
		{"altered", func() []byte { b := append([]byte(nil), good...); b[len(b)/2] ^= 0x40; return b }(), "damaged"},
	} {
		path := filepath.Join(dir, bad.name+".backup")
		if err := os.WriteFile(path, bad.data, 0o644); err != nil {
			t.Fatal(err)
		}
		dd := filepath.Join(dir, bad.name+"-data")
		_, err := run(t, "restore", "--from", path, "--data-dir", dd, "--id", "r1", "--cluster", "r1=127.0.0.1:1")
		if err == nil || !strings.Contains(err.Error(), "refusing to restore") || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("restore of a %s backup: err %v, want a refusal saying %q", bad.name, err, bad.want)
		}
		if _, err := os.Stat(dd); !os.IsNotExist(err) {
			t.Fatalf("restore of a %s backup left %s: %v", bad.name, dd, err)
		}
	}

	// Restore into a new cluster of three, on new addresses.
	for _, n := range src.names {
		src.servers[n].stop()
	}
	dst := &testCluster{t: t, http: map[string]string{}, peer: map[string]string{}, dirs: map[string]string{}, servers: map[string]*server{}}
	base := t.TempDir()
	var parts []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("r%d", i)
		dst.names = append(dst.names, name)
		dst.http[name], dst.peer[name] = freePort(t), freePort(t)
		dst.dirs[name] = filepath.Join(base, name)
		parts = append(parts, name+"="+dst.peer[name])
	}
	dst.cluster = strings.Join(parts, ",")
	var newID string
	for _, name := range dst.names {
		out, err := run(t, "restore", "--from", file, "--data-dir", dst.dirs[name], "--id", name, "--cluster", dst.cluster)
		if err != nil {
			t.Fatalf("distkv restore %s: %v", name, err)
		}
		var r struct {
			Revision     uint64 `json:"revision"`
			NewClusterID string `json:"new_cluster_id"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.Revision != sum.Revision || r.NewClusterID == "" {
			t.Fatalf("distkv restore printed %q (%v)", out, err)
		}
		if newID != "" && r.NewClusterID != newID {
			t.Fatalf("restores of one backup onto one cluster got ids %s and %s", newID, r.NewClusterID)
		}
		newID = r.NewClusterID
	}
	for _, name := range dst.names {
		dst.launch(name)
	}
	for _, name := range dst.names {
		dst.servers[name].waitReady()
	}
	dst.leader(10 * time.Second)

	var deps []string
	for _, n := range dst.names {
		deps = append(deps, dst.http[n])
	}
	rc, err := client.New(client.Config{Endpoints: deps, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	restored := map[string]client.KeyValue{}
	for kv, err := range rc.Scan(ctx, client.Range{Prefix: "w"}) {
		if err != nil {
			t.Fatalf("scan the restored cluster: %v", err)
		}
		restored[kv.Key] = kv
	}
	var below, above int
	for _, a := range acks {
		kv, ok := restored[a.key]
		if a.rev <= int64(sum.Revision) {
			below++
			if !ok || kv.Value != a.value || kv.Revision != a.rev {
				t.Fatalf("%s acknowledged at revision %d <= the backup's %d: restored %v %+v, want %q", a.key, a.rev, sum.Revision, ok, kv, a.value)
			}
		} else {
			above++
		}
	}
	for k, kv := range restored {
		if !tried[k] {
			t.Fatalf("restored key %s was never written", k)
		}
		if kv.Revision > int64(sum.Revision) {
			t.Fatalf("restored %s has revision %d, above the backup's %d", k, kv.Revision, sum.Revision)
		}
	}
	for _, a := range acks {
		if a.rev > int64(sum.Revision) {
			if _, ok := restored[a.key]; ok {
				t.Fatalf("%s written at revision %d, above the backup's %d, is in the restored cluster", a.key, a.rev, sum.Revision)
			}
		}
	}
	if below == 0 || above == 0 {
		t.Fatalf("%d acknowledged writes at or below the backup's revision, %d above: the backup was not taken under load", below, above)
	}
	// The restored cluster takes writes, above the backup's revision.
	r, err := rc.Put(ctx, "after-restore", "x")
	if err != nil || r.Revision <= int64(sum.Revision) {
		t.Fatalf("write to the restored cluster: %+v, %v", r, err)
	}
	t.Logf("restored: %d keys; %d acknowledged writes at or below revision %d present, %d above absent; cluster id %s", len(restored), below, sum.Revision, above, newID)
}
