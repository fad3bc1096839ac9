package raftnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/vfs"
)

// TestClusterIDKeptAndChecked: a new node keeps the id it was bootstrapped
// with, reports it, keeps it across restarts, and refuses to open with
// another.
func TestClusterIDKeptAndChecked(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.ClusterID = 0xabc
	n := openNode(t, cfg)
	if got := n.Status().ClusterID; got != 0xabc {
		t.Fatalf("Status().ClusterID = %x", got)
	}
	if _, err := n.Propose(context.Background(), kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cluster-id")); err != nil || string(b) != "distkv cluster id 0000000000000abc\n" {
		t.Fatalf("cluster-id file %q (%v)", b, err)
	}

	cfg.ClusterID = 0 // the data directory knows
	n = openNode(t, cfg)
	if got := n.ClusterID(); got != 0xabc {
		t.Fatalf("reopened with cluster id %x", got)
	}
	n.Stop()

	cfg.ClusterID = 0xdef
	if n, err := Open(cfg); err == nil {
		n.Stop()
		t.Fatal("opened a data directory of cluster abc as a node of cluster def")
	} else if !errors.Is(err, ErrClusterID) || !strings.Contains(err.Error(), "0000000000000abc") || !strings.Contains(err.Error(), "0000000000000def") {
		t.Fatalf("Open with another cluster id: %v", err)
	}
}

// TestClusterIDNoneForOldDataDirectories: a data directory with state and
// no cluster id (made before ids existed) opens with none and keeps none.
func TestClusterIDNoneForOldDataDirectories(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	n := openNode(t, cfg)
	if _, err := n.Propose(context.Background(), kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	if _, err := os.Stat(filepath.Join(dir, "cluster-id")); !os.IsNotExist(err) {
		t.Fatalf("a node without a cluster id wrote a cluster-id file: %v", err)
	}
	n = openNode(t, cfg)
	defer n.Stop()
	if n.ClusterID() != 0 || n.Status().ClusterID != 0 {
		t.Fatalf("cluster id %x", n.ClusterID())
	}
}

// TestLogOfAnotherClusterStopsTheNode: a data directory whose cluster-id file
// names another cluster than its log (mixed up by hand) is refused, whether
// the log's id is in the bootstrap entries or in a snapshot, with a message
// naming the file.
func TestLogOfAnotherClusterStopsTheNode(t *testing.T) {
	for _, snapshots := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshots), func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(dir)
			cfg.ClusterID = 0xabc
			if snapshots {
				cfg.SnapshotEntries = 5
			}
			n := openNode(t, cfg)
			for i := 0; i < 20; i++ {
				if _, err := n.Propose(context.Background(), kv.Command{Op: kv.OpPut, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}); err != nil {
					t.Fatal(err)
				}
			}
			n.Stop()
			if err := writeClusterID(vfs.Default, dir, 0xdef); err != nil {
				t.Fatal(err)
			}
			cfg.ClusterID = 0
			err := openUntilStopped(t, cfg, "a node whose log names another cluster")
			if !errors.Is(err, ErrClusterID) || !strings.Contains(err.Error(), filepath.Join(dir, "cluster-id")) {
				t.Fatalf("got %v; want ErrClusterID naming the cluster-id file", err)
			}
		})
	}
}

func TestParseClusterID(t *testing.T) {
	for _, bad := range []string{"", "distkv cluster id \n", "distkv cluster id 0000000000000000\n",
		"distkv cluster id 0000000000000abc", "distkv cluster id 000000000000xabc\n", "cluster 0000000000000abc\n",
		"distkv cluster id 0000000000000abc\n\n", "distkv cluster id +000000000000abc\n"} {
		if id, err := parseClusterID([]byte(bad)); err == nil || !errors.Is(err, ErrClusterID) {
			t.Errorf("parseClusterID(%q) = %x, %v; want ErrClusterID", bad, id, err)
		}
	}
	if id, err := parseClusterID(formatClusterIDFile(0x1234_5678_9abc_def0)); err != nil || id != 0x1234_5678_9abc_def0 {
		t.Fatalf("round trip: %x, %v", id, err)
	}
}

// FuzzParseClusterID: the cluster-id file's decoder never panics and accepts
// exactly the files formatClusterIDFile writes.
func FuzzParseClusterID(f *testing.F) {
	f.Add(formatClusterIDFile(0xabc))
	f.Add([]byte("distkv cluster id 000000000000abc\n"))
	f.Add([]byte("distkv cluster id ffffffffffffffff\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseClusterID(b)
		if err != nil {
			return
		}
		if id == 0 || !bytes.Equal(formatClusterIDFile(id), bytes.ToLower(b)) {
			t.Fatalf("accepted %q as %x", b, id)
		}
	})
}
