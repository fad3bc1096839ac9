package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

// fullDisk is a file system that can be filled and emptied: while full, every
// write, preallocation and file creation fails with ENOSPC (a write after 13
// bytes, so that partial frames happen), while fsync, truncate, rename and
// remove keep working, as they do on a real full disk. A direct write
// (WriteAtSync) over the WAL's reserve works too: the WAL writes directly
// only on file systems that overwrite in place (vfs.File.DirectWrites).
type fullDisk struct {
	*vfs.ErrorFS
	full atomic.Bool
}

func newFullDisk() *fullDisk {
	d := &fullDisk{}
	d.ErrorFS = vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if !d.full.Load() {
			return vfs.Fault{}
		}
		switch op {
		case vfs.OpWrite:
			return vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: 13}
		case vfs.OpPreallocate, vfs.OpCreate:
			return vfs.Fault{Err: vfs.ErrNoSpace}
		}
		return vfs.Fault{}
	})
	return d
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitUntil polls cond until it holds or timeout passes, then fails with what
// describe says was seen.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v (%s)", what, timeout, describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantNoSpaceFast proposes k and wants ErrNoSpace at once, not a timeout.
func wantNoSpaceFast(t *testing.T, n *Node, k string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := put(ctx, n, k, "refused")
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("write %s on a full disk took %v (err %v), want an answer at once", k, took, err)
	}
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write %s on a full disk = %v, want ErrNoSpace", k, err)
	}
}

// TestDiskFullSingleNode: a full disk makes writes fail fast with ErrNoSpace
// while the node keeps running and serves reads; once space is freed, writes
// succeed again without a restart; and every acknowledged write, and no
// refused one, is there, also after a restart.
func TestDiskFullSingleNode(t *testing.T) {
	disk := newFullDisk()
	logs := &syncBuffer{}
	cfg := testConfig(t.TempDir())
	cfg.FS = disk
	cfg.SnapshotEntries = 40 // snapshots are written, and fail, around the stall too
	cfg.WALSegmentSize = 4 << 10
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := openNode(t, cfg)
	defer func() { n.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	acked := map[string]string{}
	for i := range 100 {
		k, v := fmt.Sprintf("before-%03d", i), fmt.Sprintf("v%d", i)
		if _, err := put(ctx, n, k, v); err != nil {
			t.Fatal(err)
		}
		acked[k] = v
	}

	disk.full.Store(true)
	// The first write reaches Raft and stalls with its Ready: its outcome is
	// unknown until space comes back.
	type result struct {
		r   kv.Result
		err error
	}
	inflight := make(chan result, 1)
	go func() {
		r, err := put(ctx, n, "in-flight", "x")
		inflight <- result{r, err}
	}()
	waitUntil(t, 10*time.Second, "node reports the full disk", func() bool { return errors.Is(n.Ready(), ErrNoSpace) },
		func() string { return fmt.Sprint(n.Ready()) })

	if !n.Status().DiskFull {
		t.Error("Status does not report the full disk")
	}
	var refused []string
	for i := range 20 {
		k := fmt.Sprintf("refused-%02d", i)
		wantNoSpaceFast(t, n, k)
		refused = append(refused, k)
	}
	// Reads of committed data: linearizable (a lone voter needs no round
	// trip) and stale.
	for _, k := range []string{"before-000", "before-099"} {
		got, ok, err := n.Get(ctx, []byte(k), true)
		if err != nil || !ok || string(got.Value) != acked[k] {
			t.Fatalf("linearizable get %s on a full disk = %q, %v, %v", k, got.Value, ok, err)
		}
		if got, ok := n.KV().Get([]byte(k)); !ok || string(got.Value) != acked[k] {
			t.Fatalf("stale get %s on a full disk = %q, %v", k, got.Value, ok)
		}
	}
	// Stay full through several retries; the node must not stop.
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-n.Done():
		t.Fatalf("node stopped on a full disk: %v", n.Err())
	default:
	}

	disk.full.Store(false)
	waitUntil(t, 10*time.Second, "node ready again after space was freed", func() bool { return n.Ready() == nil },
		func() string { return fmt.Sprint(n.Ready()) })
	select {
	case res := <-inflight:
		if res.err != nil {
			t.Fatalf("the write stalled with the disk = %v, want it applied once space came back", res.err)
		}
		acked["in-flight"] = "x"
	case <-time.After(10 * time.Second):
		t.Fatal("the write stalled with the disk was never answered")
	}
	if n.Status().DiskFull {
		t.Error("Status still reports a full disk after space was freed")
	}
	for i := range 100 {
		k, v := fmt.Sprintf("after-%03d", i), fmt.Sprintf("v%d", i)
		if _, err := put(ctx, n, k, v); err != nil {
			t.Fatalf("write after space was freed: %v", err)
		}
		acked[k] = v
	}

	out := logs.String()
	if c := strings.Count(out, "disk full: the log cannot be written"); c != 1 {
		t.Errorf("stall logged %d times, want once:\n%s", c, out)
	}
	if c := strings.Count(out, "writes resumed"); c != 1 {
		t.Errorf("resume logged %d times, want once:\n%s", c, out)
	}

	check := func(n *Node, when string) {
		t.Helper()
		for k, v := range acked {
			if got, ok := mustGet(t, n, k); !ok || got != v {
				t.Fatalf("%s: acknowledged %s=%s reads %q, %v", when, k, v, got, ok)
			}
		}
		for _, k := range refused {
			if got, ok := mustGet(t, n, k); ok {
				t.Fatalf("%s: refused write %s is there (%q)", when, k, got)
			}
		}
	}
	check(n, "after space was freed")
	if err := n.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	cfg.FS = vfs.Default
	n = openNode(t, cfg)
	check(n, "after restart")
}

// TestDiskFullFollower: one follower's disk fills. The cluster keeps writing;
// the follower refuses writes at once; once freed it catches up without a
// restart, and every acknowledged write survives a restart of all.
func TestDiskFullFollower(t *testing.T) {
	disks := map[string]*fullDisk{}
	for _, name := range []string{"n1", "n2", "n3"} {
		disks[name] = newFullDisk()
	}
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.FS = disks[cfg.Self.Name]
		cfg.SnapshotEntries = 100
		cfg.LogEntriesKept = 20
	})
	leader := c.waitLeader(5 * time.Second)
	f := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := map[string]string{}
	write := func(prefix string, count int) {
		t.Helper()
		for i := range count {
			k, v := fmt.Sprintf("%s-%03d", prefix, i), fmt.Sprintf("v%d", i)
			if _, err := put(ctx, c.nodes[leader], k, v); err != nil {
				t.Fatalf("write %s: %v", k, err)
			}
			acked[k] = v
		}
	}
	write("before", 50)

	disks[f].full.Store(true)
	write("during", 300) // enough to compact the leader's log past the follower
	waitUntil(t, 10*time.Second, "follower reports the full disk", func() bool { return errors.Is(c.nodes[f].Ready(), ErrNoSpace) },
		func() string { return fmt.Sprint(c.nodes[f].Ready()) })
	wantNoSpaceFast(t, c.nodes[f], "refused-on-follower")
	if l := c.waitLeader(5 * time.Second); l != leader {
		t.Fatalf("leadership moved from %s to %s because a follower's disk is full", leader, l)
	}

	disks[f].full.Store(false)
	waitUntil(t, 20*time.Second, "follower catches up", func() bool {
		return c.nodes[f].Ready() == nil && c.nodes[f].Status().AppliedIndex >= c.nodes[leader].Status().CommitIndex
	}, func() string {
		return fmt.Sprintf("follower %+v, leader commit %d", c.nodes[f].Ready(), c.nodes[leader].Status().CommitIndex)
	})
	for k, v := range acked {
		if got, ok := c.nodes[f].KV().Get([]byte(k)); !ok || string(got.Value) != v {
			t.Fatalf("caught-up follower: %s = %q, %v, want %q", k, got.Value, ok, v)
		}
	}
	// It takes writes again itself (forwarded to the leader).
	if _, err := put(ctx, c.nodes[f], "via-follower", "y"); err != nil {
		t.Fatalf("write via the freed follower: %v", err)
	}
	acked["via-follower"] = "y"

	restartAndCheck(t, c, acked, "refused-on-follower")
}

// TestDiskFullLeader: the leader's disk fills after it has sent appends
// ahead of its own fsync. It stops heartbeating, the others elect a leader
// and keep writing; the old leader refuses writes at once, and once freed it
// rejoins as a follower. Acknowledged writes, including the ones that were
// stalled on the old leader and then committed, all survive a restart.
func TestDiskFullLeader(t *testing.T) {
	disks := map[string]*fullDisk{}
	for _, name := range []string{"n1", "n2", "n3"} {
		disks[name] = newFullDisk()
	}
	c := newCluster(t, 3, func(cfg *Config) { cfg.FS = disks[cfg.Self.Name] })
	old := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	acked := map[string]string{}
	for i := range 50 {
		k, v := fmt.Sprintf("before-%03d", i), fmt.Sprintf("v%d", i)
		if _, err := put(ctx, c.nodes[old], k, v); err != nil {
			t.Fatal(err)
		}
		acked[k] = v
	}

	disks[old].full.Store(true)
	// Writes in flight on the old leader as its disk fills: each one is
	// acknowledged later or ends with an error; none is lost once acknowledged.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			defer wcancel()
			k, v := fmt.Sprintf("stalled-%d", w), "s"
			if _, err := put(wctx, c.nodes[old], k, v); err == nil {
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		}()
	}
	waitUntil(t, 10*time.Second, "old leader reports the full disk", func() bool { return errors.Is(c.nodes[old].Ready(), ErrNoSpace) },
		func() string { return fmt.Sprint(c.nodes[old].Ready()) })
	wantNoSpaceFast(t, c.nodes[old], "refused-on-old-leader")

	// The other two elect a leader among themselves and keep writing.
	var next string
	waitUntil(t, 10*time.Second, "a new leader among the others", func() bool {
		for name, n := range c.nodes {
			// One Status: the leader may change between two.
			if l := n.Status().Leader; name != old && l != "" && l != old {
				next = l
				return true
			}
		}
		return false
	}, func() string { return "" })
	for i := range 50 {
		k, v := fmt.Sprintf("during-%03d", i), fmt.Sprintf("v%d", i)
		if _, err := put(ctx, c.nodes[next], k, v); err != nil {
			t.Fatalf("write to the new leader %s: %v", next, err)
		}
		mu.Lock()
		acked[k] = v
		mu.Unlock()
	}

	disks[old].full.Store(false)
	wg.Wait()
	stalledAcked := 0
	for k := range acked {
		if strings.HasPrefix(k, "stalled-") {
			stalledAcked++
		}
	}
	t.Logf("old leader %s, new leader %s; %d of 4 writes stalled on the old leader were acknowledged", old, next, stalledAcked)
	waitUntil(t, 20*time.Second, "old leader rejoins and catches up", func() bool {
		return c.nodes[old].Ready() == nil && c.nodes[old].Status().AppliedIndex >= c.nodes[next].Status().CommitIndex
	}, func() string { return fmt.Sprintf("%v, %+v", c.nodes[old].Ready(), c.nodes[old].Status()) })
	if _, err := put(ctx, c.nodes[old], "via-old-leader", "z"); err != nil {
		t.Fatalf("write via the freed old leader: %v", err)
	}
	acked["via-old-leader"] = "z"

	restartAndCheck(t, c, acked, "refused-on-old-leader")
}

// TestDiskFullAtStart: a node restarted on a disk that is already full starts
// (no crash loop), refuses writes at once, never answers a read without an
// acknowledged write, and takes writes once space is freed.
func TestDiskFullAtStart(t *testing.T) {
	disk := newFullDisk()
	cfg := testConfig(t.TempDir())
	cfg.FS = disk
	n := openNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := map[string]string{}
	for i := range 50 {
		k, v := fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)
		if _, err := put(ctx, n, k, v); err != nil {
			t.Fatal(err)
		}
		acked[k] = v
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	disk.full.Store(true)
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer func() { n.Stop() }()
	waitUntil(t, 10*time.Second, "node reports the full disk", func() bool { return errors.Is(n.Ready(), ErrNoSpace) },
		func() string { return fmt.Sprint(n.Ready()) })
	wantNoSpaceFast(t, n, "refused")
	for k, v := range acked {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		got, ok, err := n.Get(rctx, []byte(k), true)
		rcancel()
		if err != nil && !errors.Is(err, ErrNoSpace) {
			t.Fatalf("linearizable get %s on a full disk: %v, want a value or ErrNoSpace", k, err)
		}
		if err == nil && (!ok || string(got.Value) != v) {
			t.Fatalf("linearizable get %s on a full disk = %q, %v: an acknowledged write is missing", k, got.Value, ok)
		}
	}
	time.Sleep(time.Second)
	select {
	case <-n.Done():
		t.Fatalf("node stopped on a full disk: %v", n.Err())
	default:
	}

	disk.full.Store(false)
	waitUntil(t, 10*time.Second, "node ready after space was freed", func() bool { return n.Ready() == nil },
		func() string { return fmt.Sprint(n.Ready()) })
	if _, err := put(ctx, n, "after", "x"); err != nil {
		t.Fatalf("write after space was freed: %v", err)
	}
	acked["after"] = "x"
	for k, v := range acked {
		if got, ok := mustGet(t, n, k); !ok || got != v {
			t.Fatalf("%s = %q, %v, want %q", k, got, ok, v)
		}
	}
	if got, ok := mustGet(t, n, "refused"); ok {
		t.Fatalf("the refused write is there: %q", got)
	}
}

// markerFailFS fails, once, the first WAL write that carries a snapshot
// marker (recognised by the membership it records; frames are uncompressed),
// as a disk that filled just after the snapshot file was written.
type markerFailFS struct {
	vfs.FS
	failed atomic.Int64
}

type markerFailFile struct {
	vfs.File
	fs *markerFailFS
}

func (m *markerFailFS) OpenReadWrite(name string) (vfs.File, error) {
	f, err := m.FS.OpenReadWrite(name)
	if err != nil {
		return nil, err
	}
	return &markerFailFile{File: f, fs: m}, nil
}

func (f *markerFailFile) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"conf_state"`)) && strings.HasSuffix(f.Name(), ".wal") && f.fs.failed.CompareAndSwap(0, 1) {
		n, _ := f.File.Write(p[:5])
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

// TestDiskFullAtSnapshotMarker: the disk fills just after a snapshot file was
// written, so its WAL marker cannot be appended. The node keeps running (the
// WAL is not compacted, so it still holds everything), a later snapshot
// succeeds, and a restart recovers every write.
func TestDiskFullAtSnapshotMarker(t *testing.T) {
	mfs := &markerFailFS{FS: vfs.Default}
	logs := &syncBuffer{}
	cfg := testConfig(t.TempDir())
	cfg.FS = mfs
	cfg.SnapshotEntries = 30
	cfg.WALCompression = wal.CompressionNone
	// The marker's frame fails in Write, which only the buffered WAL calls
	// for frames (a direct one finds a full disk when it extends its reserve).
	cfg.WALBuffered = true
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := openNode(t, cfg)
	defer func() { n.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := map[string]string{}
	for i := range 150 {
		k, v := fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)
		if _, err := put(ctx, n, k, v); err != nil {
			t.Fatalf("write %d: %v\n%s", i, err, logs.String())
		}
		acked[k] = v
	}
	out := logs.String()
	if mfs.failed.Load() == 0 || !strings.Contains(out, "snapshot written but not recorded in the log") {
		t.Fatalf("no snapshot marker found the disk full:\n%s", out)
	}
	if strings.Contains(out, "disk full: the log cannot be written") {
		t.Fatalf("a Ready stalled, not just the marker: the test does not test what it says:\n%s", out)
	}
	if !strings.Contains(out[strings.Index(out, "snapshot written but not recorded"):], "snapshot saved") {
		t.Fatalf("no snapshot saved after the failed marker:\n%s", out)
	}
	if err := n.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	cfg.FS = vfs.Default
	n = openNode(t, cfg)
	for k, v := range acked {
		if got, ok := mustGet(t, n, k); !ok || got != v {
			t.Fatalf("after restart: %s = %q, %v, want %q", k, got, ok, v)
		}
	}
}

// TestStopWhileDiskFull: Stop during a stall returns promptly without an
// error, the write stalled with the disk gets ErrStopped, and a restart with
// space recovers every acknowledged write.
func TestStopWhileDiskFull(t *testing.T) {
	disk := newFullDisk()
	cfg := testConfig(t.TempDir())
	cfg.FS = disk
	n := openNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := put(ctx, n, fmt.Sprintf("k%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	disk.full.Store(true)
	stalled := make(chan error, 1)
	go func() {
		_, err := put(ctx, n, "stalled", "x")
		stalled <- err
	}()
	waitUntil(t, 10*time.Second, "node reports the full disk", func() bool { return errors.Is(n.Ready(), ErrNoSpace) },
		func() string { return fmt.Sprint(n.Ready()) })
	done := make(chan error, 1)
	go func() { done <- n.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Stop on a full disk = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop on a full disk did not return")
	}
	if err := <-stalled; !errors.Is(err, ErrStopped) {
		t.Fatalf("the stalled write = %v, want ErrStopped", err)
	}
	cfg.FS = vfs.Default
	n = openNode(t, cfg)
	defer n.Stop()
	for i := range 20 {
		if v, ok := mustGet(t, n, fmt.Sprintf("k%02d", i)); !ok || v != "v" {
			t.Fatalf("k%02d = %q, %v after restart", i, v, ok)
		}
	}
}

// restartAndCheck restarts the whole cluster and checks that every node has
// every acknowledged write and not the refused one.
func restartAndCheck(t *testing.T, c *cluster, acked map[string]string, refused string) {
	t.Helper()
	c.stopAll()
	for _, name := range []string{"n1", "n2", "n3"} {
		c.start(name)
	}
	c.waitLeader(10 * time.Second)
	for name, n := range c.nodes {
		for k, v := range acked {
			if got, ok := mustGet(t, n, k); !ok || got != v {
				t.Fatalf("after restart, %s: %s = %q, %v, want %q", name, k, got, ok, v)
			}
		}
		if _, ok := mustGet(t, n, refused); ok {
			t.Fatalf("after restart, %s: the refused write %q is there", name, refused)
		}
	}
}
