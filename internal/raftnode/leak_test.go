package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkv/distkv/internal/vfs"
)

// TestMain fails the package if any goroutine outlives the tests: every node
// a test opens must be stopped, and Stop must leave nothing running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// holdTransport is a Transport whose snapshot transfers and calls hang until
// their context ends and then take linger more to return, as a connection
// that is slow to give up does. It records the calls under way, and any call
// made once closed is set.
type holdTransport struct {
	Transport
	linger time.Duration

	snaps, calls atomic.Int64 // under way
	closed       atomic.Bool
	mu           sync.Mutex
	late         []string // calls made while closed
}

func (h *holdTransport) hold(ctx context.Context, n *atomic.Int64) error {
	n.Add(1)
	defer n.Add(-1)
	<-ctx.Done()
	time.Sleep(h.linger)
	return ctx.Err()
}

func (h *holdTransport) note(what string) {
	if h.closed.Load() {
		h.mu.Lock()
		h.late = append(h.late, what)
		h.mu.Unlock()
	}
}

func (h *holdTransport) SendSnapshot(ctx context.Context, to, shard uint64, r io.Reader) error {
	h.note("SendSnapshot")
	defer h.note("SendSnapshot returned")
	return h.hold(ctx, &h.snaps)
}

func (h *holdTransport) Call(ctx context.Context, to, shard uint64, method uint8, payload []byte) ([]byte, error) {
	h.note("Call")
	defer h.note("Call returned")
	return nil, h.hold(ctx, &h.calls)
}

func (h *holdTransport) RemovePeer(id uint64) {
	h.note("RemovePeer")
	h.Transport.RemovePeer(id)
}

func (h *holdTransport) lateCalls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.late...)
}

// TestStopWaitsForEverythingItStarted: Stop returns only once every goroutine
// the node started has ended, here a snapshot transfer or the notice to a
// removed member, stuck in the transport when Stop is called: after it the
// node calls neither the transport nor its files, and no goroutine of it is
// left (goleak). Each goroutine is started by goAsync; one started with a
// bare go statement instead is still in the transport when Stop returns,
// which this test reports. One goroutine is stuck at a time, so that Stop
// waiting for another cannot hide it.
func TestStopWaitsForEverythingItStarted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name  string
		stick func(t *testing.T, c *cluster)
		stuck func(h *holdTransport) bool
	}{
		{"snapshot transfer", func(t *testing.T, c *cluster) {
			// A joining member whose log is behind the compacted one gets
			// a snapshot, which hangs in the transport.
			c.join(ctx, "n1", Member{Name: "n2", Peer: "mem:2", HTTP: "127.0.0.1:8002"})
		}, func(h *holdTransport) bool { return h.snaps.Load() > 0 }},
		{"notice to a removed member", func(t *testing.T, c *cluster) {
			n1 := c.nodes["n1"]
			if err := n1.AddMember(ctx, Member{Name: "n3", Peer: "mem:3", HTTP: "127.0.0.1:8003"}, true); err != nil {
				t.Fatal(err)
			}
			if err := n1.RemoveMember(ctx, "n3"); err != nil {
				t.Fatal(err)
			}
		}, func(h *holdTransport) bool { return h.calls.Load() > 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stopWaitsFor(t, ctx, tc.stick, tc.stuck)
		})
	}
}

func stopWaitsFor(t *testing.T, ctx context.Context, stick func(*testing.T, *cluster), stuck func(*holdTransport) bool) {
	ignore := goleak.IgnoreCurrent()
	const linger = time.Second // beyond goleak's retries (about 0.4 s)
	hold := &holdTransport{linger: linger}
	var fsClosed atomic.Bool
	var fsLate atomic.Value // string: the first file-system call after Stop
	fs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
		if fsClosed.Load() {
			fsLate.CompareAndSwap(nil, fmt.Sprintf("%v %s", op, filepath.Base(path)))
		}
		return vfs.Fault{}
	})
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.SnapshotEntries = 10
		cfg.LogEntriesKept = 5
		if cfg.Self.Name == "n1" {
			cfg.FS = fs
			// A record that differs from the bootstrapped one: n1
			// publishes its addresses (publishSelf).
			cfg.Self.HTTP = "127.0.0.1:18001"
			hold.Transport = cfg.Transport
			cfg.Transport = hold
		}
	})
	n1 := c.nodes["n1"]
	c.waitLeader(5 * time.Second)
	for i := range 30 { // snapshots, and the log compacted behind them
		if _, err := put(ctx, n1, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, "n1 publishes its own addresses", func() bool {
		m, _ := n1.member("n1")
		return m.HTTP == "127.0.0.1:18001"
	}, func() string { m, _ := n1.member("n1"); return fmt.Sprintf("%+v", m) })
	stick(t, c)
	waitUntil(t, 10*time.Second, "a goroutine stuck in the transport", func() bool { return stuck(hold) },
		func() string { return fmt.Sprintf("%d transfers, %d calls", hold.snaps.Load(), hold.calls.Load()) })
	c.stop("n2")

	start := time.Now()
	if err := n1.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(start)
	hold.closed.Store(true)
	fsClosed.Store(true)
	if s, k := hold.snaps.Load(), hold.calls.Load(); s != 0 || k != 0 {
		t.Errorf("Stop returned with %d snapshot transfers and %d calls still in the transport", s, k)
	}
	goleak.VerifyNone(t, ignore)
	if late := hold.lateCalls(); len(late) > 0 {
		t.Errorf("transport used after Stop returned: %s", strings.Join(late, ", "))
	}
	if late := fsLate.Load(); late != nil {
		t.Errorf("file system used after Stop returned: %v", late)
	}
	if took < linger {
		t.Errorf("Stop took %v, less than the %v the transport took to give up", took, linger)
	}
}

// TestStoppedByRemovalLeavesNothingRunning: a node removed from its group
// stops by itself (Done); its goroutines end with its loop, and Stop then
// returns at once with nothing left running.
func TestStoppedByRemovalLeavesNothingRunning(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	gone := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := put(ctx, c.nodes[leader], "k", "v"); err != nil {
		t.Fatal(err)
	}
	n := c.nodes[gone]
	if err := c.nodes[leader].RemoveMember(ctx, gone); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("removed member %s still runs", gone)
	}
	if err := n.Stop(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("stop of the removed member = %v, want ErrRemoved", err)
	}
	c.stopAll()
	goleak.VerifyNone(t, ignore)
}
