package raftnode

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

// States that only damage to a node's own disk can produce, on which Raft
// would panic, stop the node with a message naming the file instead.

// appendToWAL appends recs for shard 1 to the WAL in dir's wal/.
func appendToWAL(t *testing.T, cfg Config, recs ...wal.Record) {
	t.Helper()
	w, err := wal.Open(wal.Config{Dir: cfg.walDir()}, func(wal.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(recs, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// writtenNode runs a one-member node in cfg's directory, writes a key and
// stops it.
func writtenNode(t *testing.T, cfg Config) {
	t.Helper()
	n := openNode(t, cfg)
	if _, err := n.Propose(context.Background(), kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCommitBeyondTheLogRefusesToStart(t *testing.T) {
	cfg := testConfig(t.TempDir())
	writtenNode(t, cfg)
	hs := raftpb.HardState{Term: 2, Vote: RaftID("n1"), Commit: 207}
	data, _ := hs.Marshal()
	appendToWAL(t, cfg, wal.Record{Shard: 1, Type: wal.RecordHardState, Data: data})
	n, err := Open(cfg)
	if err == nil {
		n.Stop()
		t.Fatal("opened a log whose hard state commits entries it does not hold")
	}
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), "up to 207") || !strings.Contains(err.Error(), cfg.walDir()) {
		t.Fatalf("Open: %v; want ErrCorrupt naming the commit index and the WAL directory", err)
	}
}

func TestSnapshotWithImpossibleConfigurationRefusesToStart(t *testing.T) {
	cfg := testConfig(t.TempDir())
	writtenNode(t, cfg)
	store, err := snap.NewStore(vfs.Default, cfg.snapDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := RaftID("n1")
	extra := []byte(`{"conf_state":{"voters":[` + strconv.FormatUint(id, 10) + `],"learners":[` + strconv.FormatUint(id, 10) + `]},"members":[{"name":"n1","peer":"x:1","http":"x:2"}]}`)
	if err := store.Save(snap.Meta{Shard: 1, Index: 100, Term: 2, Extra: extra}, slices.Values([]kv.KeyValue(nil))); err != nil {
		t.Fatal(err)
	}
	n, err := Open(cfg)
	if err == nil {
		n.Stop()
		t.Fatal("opened a snapshot whose configuration Raft cannot restore")
	}
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), "snapshot 100") || !strings.Contains(err.Error(), cfg.snapDir()) {
		t.Fatalf("Open: %v; want ErrCorrupt naming the snapshot", err)
	}
}

// TestRemovingTheLastVoterIsRefused: Raft accepts a change that removes the
// only voter and then panics applying it; the node refuses it up front.
func TestRemovingTheLastVoterIsRefused(t *testing.T) {
	n := openNode(t, testConfig(t.TempDir()))
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.RemoveMember(ctx, "n1"); !errors.Is(err, ErrChangeRefused) {
		t.Fatalf("RemoveMember of the last voter: %v, want ErrChangeRefused", err)
	}
	if _, err := n.Propose(ctx, kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("the node stopped serving: %v", err)
	}
}

// TestUnappliableChangeInTheLogStopsTheNode: a committed change that removes
// the only voter (written by hand: the node refuses to propose it) stops the
// node with an error naming the log, instead of a panic.
func TestUnappliableChangeInTheLogStopsTheNode(t *testing.T) {
	cfg := testConfig(t.TempDir())
	writtenNode(t, cfg)
	// Find the log's end and term.
	var last, term uint64
	w, err := wal.Open(wal.Config{Dir: cfg.walDir()}, func(r wal.Record) error {
		if r.Type == wal.RecordEntry {
			var e raftpb.Entry
			if err := e.Unmarshal(r.Data); err != nil {
				return err
			}
			last, term = e.Index, e.Term
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	cc := raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode, NodeID: RaftID("n1")}
	ccData, _ := cc.Marshal()
	e := raftpb.Entry{Term: term, Index: last + 1, Type: raftpb.EntryConfChange, Data: ccData}
	eData, _ := e.Marshal()
	hs := raftpb.HardState{Term: term, Vote: RaftID("n1"), Commit: last + 1}
	hsData, _ := hs.Marshal()
	appendToWAL(t, cfg, wal.Record{Shard: 1, Type: wal.RecordEntry, Index: last + 1, Data: eData},
		wal.Record{Shard: 1, Type: wal.RecordHardState, Data: hsData})
	err = openUntilStopped(t, cfg, "a node whose log holds a change it cannot apply")
	if err == nil || !strings.Contains(err.Error(), "membership change cannot apply") || !strings.Contains(err.Error(), cfg.walDir()) {
		t.Fatalf("got %v; want a refusal naming the WAL", err)
	}
}

func TestLeaderTimeoutReason(t *testing.T) {
	ms := func(reach ...bool) []MemberStatus {
		var out []MemberStatus
		for _, r := range reach {
			out = append(out, MemberStatus{Reachable: r})
		}
		return out
	}
	for _, c := range []struct {
		members []MemberStatus
		want    string
	}{
		{ms(true, true, false), "reaches 2 of 3 voters, a quorum"},
		{ms(true, false, false), "reaches only 1 of 3 voters: no quorum"},
		{append(ms(true, false, false), MemberStatus{Learner: true, Reachable: true}), "reaches only 1 of 3 voters: no quorum"},
		{ms(true, true, true, false, false), "reaches 3 of 5 voters, a quorum"},
	} {
		if got := leaderTimeoutReason(c.members); !strings.Contains(got, c.want) {
			t.Errorf("leaderTimeoutReason = %q, want it to say %q", got, c.want)
		}
	}
}

// openUntilStopped opens a node that must refuse to run (what) and returns
// why: Open's error, or the error that stopped the node soon after.
func openUntilStopped(t *testing.T, cfg Config, what string) error {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		return err
	}
	select {
	case <-n.Done():
		return n.Err()
	case <-time.After(10 * time.Second):
		n.Stop()
		t.Fatalf("%s kept running", what)
		return nil
	}
}
