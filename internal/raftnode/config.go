package raftnode

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/ranges"
	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

// Member is one node of the cluster as the user names it.
type Member struct {
	Name string `json:"name"` // the node's --id, e.g. "n1"
	Peer string `json:"peer"` // host:port of its peer (Raft) listener
	HTTP string `json:"http"` // host:port of its HTTP API
}

// RaftID is the Raft identity of the member called name: a stable, non-zero hash
// of the name, so every node derives the same id without coordination.
func RaftID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// Defaults of the history's compaction (see history.go).
const (
	DefaultHistoryRetention = time.Hour
	DefaultHistoryMaxBytes  = 64 << 20
)

// Config configures a Node.
type Config struct {
	// Self is this node. Required.
	Self Member
	// Members is the initial membership used when the data directory is empty.
	// It must contain Self. Empty means a single-member cluster of Self.
	Members []Member
	// DataDir holds wal/ and snap/. Required.
	DataDir string
	// FS is where files go; default vfs.Default.
	FS vfs.FS
	// Shard is the Raft group id of the shard; default 1.
	Shard uint64
	// Transport reaches the other members; required when there are any.
	Transport Transport
	// Join starts a node with an empty data directory as a new member of an
	// existing cluster (added by a membership change) instead of bootstrapping
	// Members as a new cluster.
	Join bool
	// ClusterID is the id of the cluster this node belongs to (see
	// clusterid.go), kept in the data directory when it has none yet: the
	// id a new cluster was bootstrapped with, or that a joining node learned
	// from the cluster. A data directory that already keeps another id is
	// refused. 0 leaves the data directory's own (or none).
	ClusterID uint64

	// TickInterval is the length of one Raft tick; default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks; default 10.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks; default 1.
	HeartbeatTicks int
	// NewGroup is the Host's (HostConfig.NewGroup), for Open, which opens
	// the Host.
	NewGroup func(shard uint64) (Config, bool)
	// Campaign makes the group campaign as soon as it opens: the leader of a
	// range that splits does, for the new range, so that it need not wait
	// an election timeout for a leader.
	Campaign bool
	// bornBySplit: the group is new on this node, made by applying a split,
	// with no state of its own from before (openSplit). It has never heard
	// from a leader, so it may vote at once (see holdsVotes).
	bornBySplit bool
	// RangeSplitBytes, if above 0, splits the group's range once its keys
	// and values pass it (see maybeSplit); new groups get the same setting.
	RangeSplitBytes int64
	// RangeSplitQPS, if above 0, splits the group's range once its leader
	// has served more than this many requests a second (writes and reads)
	// for RangeLoadWindow, at the key that divides that load (see
	// loadsplit.go); new groups get the same setting.
	RangeSplitQPS int
	// RangeLoadWindow is how long a range must stay above RangeSplitQPS to
	// split; default ranges.DefaultLoadWindow (10 s).
	RangeLoadWindow time.Duration
	// HistoryRetention is how long the versions that writes replace or
	// delete are kept for reads at past revisions before the leader
	// compacts them away (history.go); default DefaultHistoryRetention.
	HistoryRetention time.Duration
	// HistoryMaxBytes: once the kept versions' keys and values pass it,
	// the leader compacts sooner than the retention; default
	// DefaultHistoryMaxBytes.
	HistoryMaxBytes int64
	// Quiesce lets the group stop ticking while it has nothing to do (see
	// quiesce.go): for the many groups of a node that hosts ranges.
	Quiesce bool

	// SnapshotEntries is how many applied entries trigger a snapshot, once
	// their bytes also reach half the state's (see maybeSnapshot); default
	// 10,000.
	SnapshotEntries uint64
	// SnapshotsKept is how many snapshot files are kept per shard; default 2. The
	// WAL is compacted behind the oldest kept one, so any kept snapshot plus the
	// WAL is a complete state: a damaged newest snapshot is survivable.
	SnapshotsKept int
	// LogEntriesKept is how many entries stay in memory behind a snapshot for
	// followers that lag a little; default 5,000.
	LogEntriesKept uint64
	// SnapshotInstallTimeout bounds how long a snapshot received from the
	// leader waits for the loop to take and install it before the sender is
	// told it failed (Raft sends it again later); default 1 minute. It
	// covers installing it, which loads it into the state machine.
	SnapshotInstallTimeout time.Duration

	// WALSegmentSize and WALCompression tune the WAL (see wal.Config).
	// WALBuffered writes each WAL frame through the page cache and syncs
	// with fdatasync, instead of keeping frames in memory until a sync that
	// writes them directly (wal.Config.Direct, the default).
	WALSegmentSize int64
	WALCompression wal.Compression
	WALBuffered    bool
	// Cipher, if set, encrypts the WAL and the snapshot files at rest
	// (wal.Config.Cipher, snap.StoreConfig.Cipher). nil: in the clear.
	Cipher *crypt.Cipher
	// WALSyncObserver, if set, is told how long every sync of the WAL took
	// (wal.Config.SyncObserver); it runs on the log's writer and must be
	// quick.
	WALSyncObserver func(time.Duration)

	// MaxProposalBatch bounds how many queued proposals are handed to Raft in
	// one loop iteration; default 1024.
	MaxProposalBatch int

	// Stamper, if set, hands out the revisions of this group's writes
	// (cluster-wide revisions, package tso; see stamp.go). nil: a write's
	// revision is its log index, as for a cluster of one group.
	Stamper Stamper

	Logger *slog.Logger
}

// Validate fills defaults and reports the first invalid setting.
func (c *Config) Validate() error {
	if c.Self.Name == "" {
		return errors.New("node id must not be empty")
	}
	if c.DataDir == "" {
		return errors.New("data directory must not be empty")
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Shard == 0 {
		c.Shard = 1
	}
	if len(c.Members) == 0 && c.Shard == 1 {
		c.Members = []Member{c.Self} // a cluster of one node
	}
	if len(c.Members) == 0 {
		// A range other than the first is never started afresh by a node
		// alone: without members it waits for its leader (a fresh group
		// of one would elect itself and take writes for keys that another
		// group of the range serves).
		c.Join = true
	}
	found := false
	seen := map[uint64]string{}
	for _, m := range c.Members {
		if m.Name == c.Self.Name {
			found = true
		}
		id := RaftID(m.Name)
		if other, dup := seen[id]; dup {
			return fmt.Errorf("members %q and %q are the same node (or their ids collide)", other, m.Name)
		}
		seen[id] = m.Name
	}
	if !found && !c.Join {
		return fmt.Errorf("node %q is not in the member list", c.Self.Name)
	}
	if (len(c.Members) > 1 || c.Join) && c.Transport == nil {
		return errors.New("a node with peers needs a transport")
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.TickInterval < time.Millisecond {
		return fmt.Errorf("tick interval %v is below 1ms", c.TickInterval)
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.HeartbeatTicks < 1 || c.ElectionTicks <= c.HeartbeatTicks {
		return fmt.Errorf("election timeout (%d ticks) must exceed heartbeat interval (%d ticks)", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 10000
	}
	if c.SnapshotsKept == 0 {
		c.SnapshotsKept = 2
	}
	if c.SnapshotsKept < 1 {
		return fmt.Errorf("snapshots kept must be at least 1, got %d", c.SnapshotsKept)
	}
	if c.LogEntriesKept == 0 {
		c.LogEntriesKept = 5000
	}
	if c.SnapshotInstallTimeout == 0 {
		c.SnapshotInstallTimeout = time.Minute
	}
	if c.SnapshotInstallTimeout < 0 {
		return fmt.Errorf("snapshot install timeout %v is negative", c.SnapshotInstallTimeout)
	}
	if c.RangeSplitQPS < 0 {
		return fmt.Errorf("range split qps %d is negative", c.RangeSplitQPS)
	}
	if c.RangeLoadWindow == 0 {
		c.RangeLoadWindow = ranges.DefaultLoadWindow
	}
	if c.RangeLoadWindow < 0 {
		return fmt.Errorf("range load window %v is negative", c.RangeLoadWindow)
	}
	if c.HistoryRetention == 0 {
		c.HistoryRetention = DefaultHistoryRetention
	}
	if c.HistoryRetention < 0 {
		return fmt.Errorf("history retention %v is negative", c.HistoryRetention)
	}
	if c.HistoryMaxBytes == 0 {
		c.HistoryMaxBytes = DefaultHistoryMaxBytes
	}
	if c.HistoryMaxBytes < 0 {
		return fmt.Errorf("history size bound %d is negative", c.HistoryMaxBytes)
	}
	if c.MaxProposalBatch == 0 {
		c.MaxProposalBatch = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) walDir() string  { return filepath.Join(c.DataDir, "wal") }
func (c *Config) snapDir() string { return filepath.Join(c.DataDir, "snap") }
