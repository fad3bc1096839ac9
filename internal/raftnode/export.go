package raftnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	iofs "io/fs"
	"iter"
	"path/filepath"
	"slices"
	"strings"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/vfs"
)

// Export is a consistent copy of the state machine, for a backup.
type Export struct {
	Shard     uint64
	ClusterID uint64
	// Index is the applied index of View: every write acknowledged before
	// Export was called is at or below it.
	Index uint64
	View  *kv.View
}

// Export returns a copy of the state machine that reflects every write
// acknowledged before the call (a linearizable read barrier, Raft
// ReadIndex), with the index it was applied up to. The copy is an O(1)
// clone made on the loop, between two applies, so its index is exact; it
// never blocks writes, and reading it (View.SnapshotPairs) may take as long
// as it likes.
func (n *Node) Export(ctx context.Context) (Export, error) {
	if err := n.ReadBarrier(ctx); err != nil {
		return Export{}, err
	}
	done := make(chan Export, 1)
	select {
	case n.funcc <- func() {
		done <- Export{Shard: n.cfg.Shard, ClusterID: n.clusterID, Index: n.kv.Applied(), View: n.kv.Snapshot()}
	}:
	case <-ctx.Done():
		return Export{}, ctx.Err()
	case <-n.donec:
		return Export{}, n.stoppedErr()
	}
	select {
	case e := <-done:
		return e, nil
	case <-ctx.Done():
		return Export{}, ctx.Err()
	case <-n.donec:
		return Export{}, n.stoppedErr()
	}
}

// SeedTerm is the Raft term of the snapshot Seed writes. Every restored
// member writes the same snapshot at the same index and term, so their logs
// are identical and any of them may be elected; the first election of the
// new cluster is in term SeedTerm+1 or later.
const SeedTerm = 1

// SeedConfig says where and as what Seed creates a member's data directory.
type SeedConfig struct {
	// DataDir must not exist or be empty. Required.
	DataDir string
	// FS defaults to vfs.Default.
	FS vfs.FS
	// Shard defaults to 1.
	Shard uint64
	// Members are the voters of the new cluster, peer addresses known
	// (HTTP addresses are published by each member once it runs). Required.
	Members []Member
	// ClusterID is the new cluster's id; the same on every member. Required.
	ClusterID uint64
	// Index is the revision of the state: the snapshot's index.
	Index uint64
}

// ErrNotEmpty is returned by Seed for a data directory that holds anything.
var ErrNotEmpty = errors.New("data directory not empty")

// Seed creates the data directory of one member of a new cluster whose state
// is pairs (kv.View.SnapshotPairs of a state applied up to cfg.Index, as a
// backup holds them): a snapshot file at cfg.Index, term SeedTerm, with the
// membership cfg.Members (all voters), and the cluster-id file. There is no
// WAL: Open then finds a snapshot and an empty log, so the member starts as
// a restarted one (not a bootstrapped one) with everything up to cfg.Index
// applied and committed. pairs may stop early only by an error the caller
// reports after Seed: the snapshot file is then damaged or short, and the
// caller must remove the directory.
func Seed(cfg SeedConfig, pairs iter.Seq[kv.KeyValue]) error {
	if cfg.DataDir == "" {
		return errors.New("data directory must not be empty")
	}
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	if cfg.Shard == 0 {
		cfg.Shard = 1
	}
	if cfg.ClusterID == 0 {
		return errors.New("a restored cluster needs a cluster id")
	}
	if cfg.Index == 0 {
		return errors.New("a restored state needs an index")
	}
	if len(cfg.Members) == 0 {
		return errors.New("a restored cluster needs members")
	}
	names, err := cfg.FS.List(cfg.DataDir)
	switch {
	case err != nil && !errors.Is(err, iofs.ErrNotExist):
		return fmt.Errorf("read %s: %w", cfg.DataDir, err)
	case len(names) > 0:
		return fmt.Errorf("%w: %s holds %s; restore into a new directory", ErrNotEmpty, cfg.DataDir, strings.Join(names, ", "))
	}
	ms := memberState{ClusterID: fmt.Sprintf("%016x", cfg.ClusterID)}
	seen := map[uint64]string{}
	for _, m := range cfg.Members {
		id := RaftID(m.Name)
		if other, dup := seen[id]; dup {
			return fmt.Errorf("members %q and %q are the same node (or their ids collide)", other, m.Name)
		}
		seen[id] = m.Name
		ms.ConfState.Voters = append(ms.ConfState.Voters, id)
		ms.Members = append(ms.Members, m)
	}
	slices.Sort(ms.ConfState.Voters)
	slices.SortFunc(ms.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	if err := validConfState(ms.ConfState); err != nil {
		return err
	}
	extra, err := json.Marshal(ms)
	if err != nil {
		return fmt.Errorf("encode membership: %w", err)
	}
	if err := cfg.FS.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	store, err := snap.NewStore(cfg.FS, filepath.Join(cfg.DataDir, "snap"), nil)
	if err != nil {
		return fmt.Errorf("open snapshots: %w", err)
	}
	meta := snap.Meta{Shard: cfg.Shard, Index: cfg.Index, Term: SeedTerm, Extra: extra}
	if err := store.Save(meta, pairs); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	// Last: a directory without it is recognisably unfinished.
	if err := writeClusterID(cfg.FS, cfg.DataDir, cfg.ClusterID); err != nil {
		return fmt.Errorf("keep the cluster id: %w", err)
	}
	return nil
}
