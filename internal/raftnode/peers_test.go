package raftnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/vfs"
)

// snapshotStream is what a leader streams to HandleSnapshot: a MsgSnap for a
// snapshot of shard 1 at index, and the snapshot file (one pair).
func snapshotStream(t *testing.T, from, to, index uint64) []byte {
	t.Helper()
	m := raftpb.Message{Type: raftpb.MsgSnap, From: from, To: to, Term: 1,
		Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: index, Term: 1,
			ConfState: raftpb.ConfState{Voters: []uint64{from, to}}}}}
	hdr, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	pairs := slices.Values([]kv.KeyValue{{Key: []byte("k"), Value: []byte("v"), Version: 1, Revision: 1, CreateRevision: 1}})
	if err := snap.Encode(&file, snap.Meta{Shard: 1, Index: index, Term: 1, Extra: []byte(`{}`)}, pairs); err != nil {
		t.Fatal(err)
	}
	stream := binary.BigEndian.AppendUint32(nil, uint32(len(hdr)))
	return append(append(stream, hdr...), file.Bytes()...)
}

// handleSnapshotWithin delivers a snapshot stream to n and returns
// HandleSnapshot's error, failing the test if it takes longer than limit.
func handleSnapshotWithin(t *testing.T, n *Node, limit time.Duration) error {
	t.Helper()
	stream := snapshotStream(t, RaftID("leader"), n.raftID, 1000)
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- n.HandleSnapshot(RaftID("leader"), n.cfg.Shard, bytes.NewReader(stream)) }()
	select {
	case err := <-errc:
		t.Logf("HandleSnapshot returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(limit):
		t.Fatalf("HandleSnapshot still waiting after %v", limit)
		return nil
	}
}

// receivedFiles lists the received snapshot files left in n's snapshot
// directory.
func receivedFiles(t *testing.T, n *Node) []string {
	t.Helper()
	names, err := n.cfg.FS.List(n.cfg.snapDir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range names {
		if strings.HasPrefix(name, "recv-") {
			out = append(out, name)
		}
	}
	return out
}

// TestHandleSnapshotDoesNotHoldTheSender: a snapshot streamed to a node whose
// loop cannot take it is answered with an error, not held: by the deadline
// (Config.SnapshotInstallTimeout) when the loop is busy, at once when the
// node waits for a full disk or has stopped. The received file is removed.
func TestHandleSnapshotDoesNotHoldTheSender(t *testing.T) {
	t.Run("loop busy", func(t *testing.T) {
		cfg := testConfig(t.TempDir())
		cfg.SnapshotInstallTimeout = 200 * time.Millisecond
		n := openNode(t, cfg)
		defer n.Stop()
		release := make(chan struct{})
		n.funcc <- func() { <-release }
		err := handleSnapshotWithin(t, n, 10*time.Second)
		close(release)
		if err == nil || !strings.Contains(err.Error(), "not taken within 200ms") {
			t.Fatalf("snapshot to a busy node: %v, want it not taken within the deadline", err)
		}
		if left := receivedFiles(t, n); len(left) > 0 {
			t.Fatalf("received snapshot files left behind: %v", left)
		}
	})

	t.Run("disk full", func(t *testing.T) {
		// The disk fills once the WAL is open: the node's first append,
		// which bootstraps it, stalls before its loop begins, which waits
		// for it (waitAppended).
		var full, filled atomic.Bool
		fs := vfs.NewErrorFS(vfs.Default, func(op vfs.Op, path string) vfs.Fault {
			if filepath.Base(path) == appliedMarkName && filled.CompareAndSwap(false, true) {
				full.Store(true) // the mark is opened right after the WAL
			}
			if full.Load() && strings.HasSuffix(path, ".wal") && (op == vfs.OpWrite || op == vfs.OpPreallocate) {
				return vfs.Fault{Err: vfs.ErrNoSpace, ShortWrite: 13}
			}
			return vfs.Fault{}
		})
		cfg := testConfig(t.TempDir())
		cfg.FS = fs
		cfg.WALBuffered = true
		cfg.SnapshotInstallTimeout = time.Minute
		n, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n.Stop()
		waitUntil(t, 10*time.Second, "node reports the full disk", func() bool { return errors.Is(n.Ready(), ErrNoSpace) },
			func() string { return fmt.Sprint(n.Ready()) })
		err = handleSnapshotWithin(t, n, 10*time.Second)
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("snapshot to a node waiting for a full disk: %v, want ErrNoSpace", err)
		}
		if left := receivedFiles(t, n); len(left) > 0 {
			t.Fatalf("received snapshot files left behind: %v", left)
		}
		full.Store(false)
		waitReady(t, n)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := put(ctx, n, "after", "x"); err != nil {
			t.Fatalf("write after space was freed: %v", err)
		}
	})

	t.Run("stopped", func(t *testing.T) {
		n := openNode(t, testConfig(t.TempDir()))
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := handleSnapshotWithin(t, n, 10*time.Second); !errors.Is(err, ErrStopped) {
			t.Fatalf("snapshot to a stopped node: %v, want ErrStopped", err)
		}
		if left := receivedFiles(t, n); len(left) > 0 {
			t.Fatalf("received snapshot files left behind: %v", left)
		}
	})
}
