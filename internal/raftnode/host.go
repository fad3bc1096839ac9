package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/crypt"
	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

// Host is one distkv node's side of all the Raft groups it serves: the data
// directory (its lock, the one WAL every group writes its records to, the
// snapshot store, the cluster id), and the peer traffic, which it hands to
// the group each message names. Each group is a Node of its own (its Raft
// state, state machine, reads, applied mark and loop) opened with OpenGroup.
//
// Sharing the WAL is what makes many groups cheap to write: appends of
// different groups that are under way together become one WAL frame and one
// fsync (the WAL's group commit, wal.WAL.Append), and a segment is deleted
// only once every group's snapshot covers its entries (wal.WAL.Compact).
//
// Peer connections are the node's too: a group adds and removes the members
// it replicates with, and the Host keeps a peer reachable while any group
// needs it.
type Host struct {
	cfg       HostConfig
	logger    *slog.Logger
	lock      io.Closer
	wal       *wal.WAL
	snaps     *snap.Store
	clusterID uint64
	// fresh: the data directory held no state when the Host opened.
	fresh bool
	tr    *hostTransport

	mu sync.Mutex
	// recovered holds what the WAL replay found for each group not yet
	// opened.
	recovered map[uint64]*recoveredLog
	// groups is copied on write so that peer traffic finds its group
	// without a lock.
	groups atomic.Pointer[map[uint64]*Node]
	closed bool
	// buried are the groups removed from this node (tombstones on disk);
	// creating are those being created on first contact (see create).
	buried   map[uint64]bool
	creating map[uint64]bool
	creators sync.WaitGroup
	// stopTicks ends the ticker; ticking is done once it has.
	stopTicks chan struct{}
	ticking   sync.WaitGroup
	// awake holds the open groups that tick (not quiet) and quiet those
	// that do not, so that each tick costs the groups that tick, not all
	// of them (a node may hold thousands of quiet ones); awakeList is
	// awake as a slice, rebuilt for the ticker when awake changed. Guarded
	// by tickMu; quietCount is len(quiet), readable without it.
	tickMu     sync.Mutex
	awake      map[*Node]struct{}
	quiet      map[*Node]struct{}
	awakeList  []*Node
	awakeDirty bool
	quietCount atomic.Int64
	// heard is, per peer, when a message from it last arrived (Unix
	// nanoseconds, an *atomic.Int64): the liveness of the nodes that lead
	// quiet groups (see wakeIfLeaderSilent).
	heard sync.Map
	// marks is the shared file of the applied marks of groups other than
	// group 1 (marks.go), opened with the first of them.
	marks *markFile
	// closing is set once Close began (see detach).
	closing atomic.Bool
	// reliefAt is when relieveWAL last asked groups to let go of the
	// oldest segment (Unix nanoseconds).
	reliefAt atomic.Int64
}

// recoveredLog is what the WAL holds for one group: its last hard state and
// its entries in log order (a later record for an index replaces the suffix
// from there, as a new leader truncates a follower's log).
type recoveredLog struct {
	hs      raftpb.HardState
	ents    []raftpb.Entry
	records int
}

// HostConfig configures a Host: what is one per node.
type HostConfig struct {
	// Self is this node. Required.
	Self Member
	// DataDir holds wal/, snap/, the cluster id and each group's applied
	// mark. Required.
	DataDir string
	// FS is where files go; default vfs.Default.
	FS vfs.FS
	// Transport reaches the other nodes; nil for a node without peers.
	Transport Transport
	// ClusterID: see Config.ClusterID.
	ClusterID uint64
	// TickInterval is the length of one Raft tick, the same for every
	// group; default 100ms.
	TickInterval time.Duration
	// WAL settings: see Config.
	WALSegmentSize  int64
	WALCompression  wal.Compression
	WALBuffered     bool
	WALSyncObserver func(time.Duration)
	// Cipher: see Config.Cipher.
	Cipher *crypt.Cipher
	Logger *slog.Logger
	// NewGroup, if set, is the configuration of a group this node does not
	// have yet but is sent Raft traffic for: a leader added it to the
	// group, so it opens the group empty (Config.Join) and takes the log or
	// a snapshot from the leader. ok false refuses the group. A group once
	// removed from this node is never created again (see bury).
	NewGroup func(shard uint64) (cfg Config, ok bool)
}

// Validate fills defaults and reports the first invalid setting.
func (c *HostConfig) Validate() error {
	if c.Self.Name == "" {
		return errors.New("node id must not be empty")
	}
	if c.DataDir == "" {
		return errors.New("data directory must not be empty")
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.TickInterval < time.Millisecond {
		return fmt.Errorf("tick interval %v is below 1ms", c.TickInterval)
	}
	return nil
}

func (c *HostConfig) walDir() string  { return filepath.Join(c.DataDir, "wal") }
func (c *HostConfig) snapDir() string { return filepath.Join(c.DataDir, "snap") }

// hostConfig is the node-wide part of cfg.
func (c *Config) hostConfig() HostConfig {
	return HostConfig{
		Self: c.Self, DataDir: c.DataDir, FS: c.FS, Transport: c.Transport, ClusterID: c.ClusterID, TickInterval: c.TickInterval,
		WALSegmentSize: c.WALSegmentSize, WALCompression: c.WALCompression, WALBuffered: c.WALBuffered,
		WALSyncObserver: c.WALSyncObserver, Cipher: c.Cipher, Logger: c.Logger, NewGroup: c.NewGroup,
	}
}

// OpenHost takes the data directory (creating it if need be): it locks it,
// reads the cluster id, opens the snapshot store and replays the WAL, keeping
// each group's records until OpenGroup opens that group.
func OpenHost(cfg HostConfig) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, logger: cfg.Logger, recovered: map[uint64]*recoveredLog{},
		buried: map[uint64]bool{}, creating: map[uint64]bool{}}
	h.groups.Store(&map[uint64]*Node{})
	if cfg.Transport != nil {
		h.tr = &hostTransport{Transport: cfg.Transport, users: map[uint64]map[uint64]bool{}}
	}
	if err := cfg.FS.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := cfg.FS.Lock(filepath.Join(cfg.DataDir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("data directory %s is in use (is another distkv running on it?): %w", cfg.DataDir, err)
	}
	h.lock = lock
	if err := h.open(); err != nil {
		if h.wal != nil {
			h.wal.Close()
		}
		lock.Close()
		return nil, err
	}
	h.stopTicks = make(chan struct{})
	h.ticking.Add(1)
	go h.tickLoop()
	return h, nil
}

// tickLoop ticks every group that is not quiesced, every TickInterval, until
// Close: one timer for the node, however many groups it hosts. A group's
// tick channel holds one tick, so a busy group's loop finds at most one
// waiting (the lease in lease.go counts on it).
func (h *Host) tickLoop() {
	defer h.ticking.Done()
	t := time.NewTicker(h.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-h.stopTicks:
			return
		}
		quiet := h.quietCount.Load() > 0
		if quiet {
			if silent := h.silentPeers(); len(silent) > 0 {
				for _, n := range *h.groups.Load() {
					if n.quietFlag.Load() {
						h.wakeIfLeaderSilent(n, silent)
					}
				}
			}
		}
		for _, n := range h.tickingGroups() {
			select {
			case n.tickc <- struct{}{}:
			default:
			}
		}
		if quiet {
			h.sendLiveness()
		}
	}
}

func (h *Host) open() error {
	id, found, err := ReadClusterID(h.cfg.FS, h.cfg.DataDir)
	switch {
	case err != nil:
		return err
	case found && h.cfg.ClusterID != 0 && id != h.cfg.ClusterID:
		return fmt.Errorf("%w: data directory %s belongs to cluster %016x, not %016x", ErrClusterID, h.cfg.DataDir, id, h.cfg.ClusterID)
	}
	h.clusterID = id
	if h.snaps, err = snap.OpenStore(snap.StoreConfig{FS: h.cfg.FS, Dir: h.cfg.snapDir(), Logger: h.cfg.Logger, Cipher: h.cfg.Cipher}); err != nil {
		return fmt.Errorf("open snapshots: %w", err)
	}
	records := 0
	h.wal, err = wal.Open(wal.Config{
		Dir:         h.cfg.walDir(),
		FS:          h.cfg.FS,
		SegmentSize: h.cfg.WALSegmentSize,
		Compression: h.cfg.WALCompression,
		Direct:      !h.cfg.WALBuffered,
		Logger:      h.cfg.Logger,

		SyncObserver: h.cfg.WALSyncObserver,
		Cipher:       h.cfg.Cipher,
	}, func(r wal.Record) error {
		records++
		return h.replay(r)
	})
	if err != nil {
		return fmt.Errorf("open wal: %w", err)
	}
	snaps, err := h.snaps.Shards()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	h.fresh = records == 0 && len(snaps) == 0
	if err := h.loadTombstones(); err != nil {
		return err
	}
	switch {
	case h.clusterID != 0:
	case h.fresh && h.cfg.ClusterID != 0:
		if err := writeClusterID(h.cfg.FS, h.cfg.DataDir, h.cfg.ClusterID); err != nil {
			return fmt.Errorf("keep the cluster id: %w", err)
		}
		h.clusterID = h.cfg.ClusterID
	case !h.fresh:
		h.logger.Warn("this data directory predates cluster ids: peers of other clusters are told apart by --cluster-token only", "data_dir", h.cfg.DataDir)
	}
	return nil
}

// replay takes one WAL record at Open into its group's recoveredLog.
func (h *Host) replay(r wal.Record) error {
	rl := h.recovered[r.Shard]
	if rl == nil {
		rl = &recoveredLog{}
		h.recovered[r.Shard] = rl
	}
	rl.records++
	switch r.Type {
	case wal.RecordHardState:
		var hs raftpb.HardState
		if err := hs.Unmarshal(r.Data); err != nil {
			return fmt.Errorf("decode hard state of shard %d: %w", r.Shard, err)
		}
		rl.hs = hs
	case wal.RecordEntry:
		var e raftpb.Entry
		if err := e.Unmarshal(r.Data); err != nil {
			return fmt.Errorf("decode entry %d of shard %d: %w", r.Index, r.Shard, err)
		}
		ents := rl.ents
		// A later record for an index overwrites the suffix from there on:
		// a follower's log can be truncated by a new leader.
		for len(ents) > 0 && ents[len(ents)-1].Index >= e.Index {
			ents = ents[:len(ents)-1]
		}
		if len(ents) > 0 && ents[len(ents)-1].Index+1 != e.Index {
			// A snapshot installed from the leader lets the log jump ahead:
			// what came before is behind that snapshot. Whether a snapshot on
			// disk covers the gap is checked when the group opens.
			clear(ents)
			ents = ents[:0]
		}
		rl.ents = append(ents, e)
	}
	return nil
}

// take hands the records the WAL held for shard to the group opening it.
func (h *Host) take(shard uint64) *recoveredLog {
	h.mu.Lock()
	defer h.mu.Unlock()
	rl := h.recovered[shard]
	delete(h.recovered, shard)
	if rl == nil {
		rl = &recoveredLog{}
	}
	return rl
}

// RecoveredGroups lists the groups the data directory holds records or
// snapshots of and that are not open yet, in order.
func (h *Host) RecoveredGroups() ([]uint64, error) {
	h.mu.Lock()
	shards := slices.Collect(maps.Keys(h.recovered))
	h.mu.Unlock()
	snapped, err := h.snaps.Shards()
	if err != nil {
		return nil, err
	}
	open := *h.groups.Load()
	for _, s := range snapped {
		if _, ok := open[s]; !ok && !slices.Contains(shards, s) {
			shards = append(shards, s)
		}
	}
	slices.Sort(shards)
	return shards, nil
}

// ClusterID is the id of the cluster the data directory belongs to (0 if it
// predates cluster ids).
func (h *Host) ClusterID() uint64 { return h.clusterID }

// Host returns the Host the node is a group of.
func (n *Node) Host() *Host { return n.host }

// Group returns the open group shard, or nil.
func (h *Host) Group(shard uint64) *Node { return (*h.groups.Load())[shard] }

// GroupFor returns the open group whose range holds key, or nil (a split
// applied here may be opening it). It allocates nothing: it is on the path
// of every request.
func (h *Host) GroupFor(key []byte) *Node {
	for _, n := range *h.groups.Load() {
		if n.Bounds().Contains(key) {
			return n
		}
	}
	return nil
}

// Groups returns the open groups.
func (h *Host) Groups() []*Node {
	gs := *h.groups.Load()
	out := make([]*Node, 0, len(gs))
	for _, id := range slices.Sorted(maps.Keys(gs)) {
		out = append(out, gs[id])
	}
	return out
}

// tickingGroups returns the groups to tick: the awake ones.
func (h *Host) tickingGroups() []*Node {
	h.tickMu.Lock()
	defer h.tickMu.Unlock()
	if h.awakeDirty {
		h.awakeList = h.awakeList[:0:0]
		for n := range h.awake {
			h.awakeList = append(h.awakeList, n)
		}
		h.awakeDirty = false
	}
	return h.awakeList
}

// setQuiet records that the open group n went quiet or woke (see
// quiesce.go); forget that it closed.
func (h *Host) setQuiet(n *Node, quiet bool) {
	h.tickMu.Lock()
	defer h.tickMu.Unlock()
	_, wasAwake := h.awake[n]
	_, wasQuiet := h.quiet[n]
	if !wasAwake && !wasQuiet {
		return // not open (yet, or any more)
	}
	h.place(n, quiet)
}

// place puts n among the quiet or the awake groups. h.tickMu must be held.
func (h *Host) place(n *Node, quiet bool) {
	if h.awake == nil {
		h.awake, h.quiet = map[*Node]struct{}{}, map[*Node]struct{}{}
	}
	delete(h.awake, n)
	delete(h.quiet, n)
	if quiet {
		h.quiet[n] = struct{}{}
	} else {
		h.awake[n] = struct{}{}
	}
	h.awakeDirty = true
	h.quietCount.Store(int64(len(h.quiet)))
}

// forget takes n out of the ticker's groups. h.tickMu must not be held.
func (h *Host) forget(n *Node) {
	h.tickMu.Lock()
	defer h.tickMu.Unlock()
	delete(h.awake, n)
	delete(h.quiet, n)
	h.awakeDirty = true
	h.quietCount.Store(int64(len(h.quiet)))
}

// attach makes n the group for its shard; detach forgets it.
func (h *Host) attach(n *Node) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrStopped
	}
	old := *h.groups.Load()
	if _, dup := old[n.cfg.Shard]; dup {
		return fmt.Errorf("group %d is already open", n.cfg.Shard)
	}
	gs := maps.Clone(old)
	gs[n.cfg.Shard] = n
	h.groups.Store(&gs)
	h.tickMu.Lock()
	h.place(n, n.quietFlag.Load())
	h.tickMu.Unlock()
	return nil
}

func (h *Host) detach(n *Node) {
	h.forget(n)
	if h.closing.Load() {
		return // Close forgets them all at once: one copy of the map each, for thousands of groups, took minutes
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.groups.Load()
	if old[n.cfg.Shard] != n {
		return
	}
	gs := maps.Clone(old)
	delete(gs, n.cfg.Shard)
	h.groups.Store(&gs)
}

// groupMark returns the applied mark of group shard (not 1) in the shared
// file, which it opens with the first group that needs it.
func (h *Host) groupMark(shard uint64) (*appliedMark, error) {
	h.mu.Lock()
	if h.marks == nil {
		mf, err := openMarkFile(h.cfg.FS, filepath.Join(h.cfg.DataDir, "groups"), h.logger.Warn)
		if err != nil {
			h.mu.Unlock()
			return nil, err
		}
		h.marks = mf
	}
	mf := h.marks
	h.mu.Unlock()
	return mf.forGroup(shard)
}

// tombstoneName is the file that marks a group removed from this node, in
// the group's directory.
const tombstoneName = "removed"

// loadTombstones finds the groups removed from this node; what the WAL
// still holds of them is dropped.
func (h *Host) loadTombstones() error {
	dir := filepath.Join(h.cfg.DataDir, "groups")
	names, err := h.cfg.FS.List(dir)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, name := range names {
		shard, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		if _, err := h.cfg.FS.Stat(filepath.Join(dir, name, tombstoneName)); err == nil {
			h.buried[shard] = true
			delete(h.recovered, shard)
		}
	}
	return nil
}

// bury ends group n on this node for good once the group has removed it: a
// tombstone keeps it from being opened or created again (a late message of
// the group would otherwise bring it back), its snapshots are deleted and
// the WAL is told that none of its entries is needed. Group 1, the
// cluster's first, is not buried: its removal removes the node from the
// cluster, and the server exits.
func (h *Host) bury(n *Node) {
	shard := n.cfg.Shard
	if shard == 1 {
		return
	}
	h.mu.Lock()
	h.buried[shard] = true
	h.mu.Unlock()
	err := h.cfg.FS.MkdirAll(n.cfg.groupDir(), 0o700)
	if err == nil {
		err = vfs.WriteFileAtomic(h.cfg.FS, filepath.Join(n.cfg.groupDir(), tombstoneName), []byte("removed from this node\n"))
	}
	if err != nil {
		h.logger.Warn("write the tombstone of a removed group", "shard", shard, "err", err)
	}
	h.mu.Lock()
	mf := h.marks
	h.mu.Unlock()
	if mf != nil {
		if err := mf.drop(shard); err != nil {
			h.logger.Warn("free the applied mark of a removed group", "shard", shard, "err", err)
		}
	}
	if err := h.snaps.Purge(shard, 0); err != nil {
		h.logger.Warn("delete the snapshots of a removed group", "shard", shard, "err", err)
	}
	if _, err := h.wal.Compact(shard, math.MaxUint64); err != nil {
		h.logger.Warn("compact the WAL behind a removed group", "shard", shard, "err", err)
	}
	h.logger.Info("group removed from this node", "shard", shard)
}

// Unbury lets group shard be created here again: the placement of replicas
// is adding this node back to a group that once removed it. Its tombstone
// goes, so the group's leader's next message creates it empty (see create)
// and sends it a snapshot, as for any new replica. A group still open is
// left alone.
func (h *Host) Unbury(shard uint64) error {
	if shard == 1 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.buried[shard] {
		return nil
	}
	name := filepath.Join(h.cfg.DataDir, "groups", strconv.FormatUint(shard, 10), tombstoneName)
	if err := h.cfg.FS.Remove(name); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("remove the tombstone of group %d: %w", shard, err)
	}
	if err := h.cfg.FS.SyncDir(filepath.Dir(name)); err != nil {
		return fmt.Errorf("remove the tombstone of group %d: %w", shard, err)
	}
	delete(h.buried, shard)
	h.logger.Info("group may be created here again", "shard", shard)
	return nil
}

// Buried reports whether group shard was removed from this node.
func (h *Host) Buried(shard uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buried[shard]
}

// create opens group shard, which this node does not have, on the first
// Raft traffic for it (see HostConfig.NewGroup), and returns it; nil if it
// may not be created or another call is creating it.
func (h *Host) create(shard uint64) *Node {
	if h.cfg.NewGroup == nil {
		return nil
	}
	h.mu.Lock()
	refused := h.buried[shard] || h.recovered[shard] != nil
	h.mu.Unlock()
	if refused || !h.claim(shard, false) {
		return nil
	}
	defer h.unclaim(shard)
	if n := h.Group(shard); n != nil {
		return n
	}
	cfg, ok := h.cfg.NewGroup(shard)
	if !ok {
		return nil
	}
	cfg.Shard, cfg.Join, cfg.Members = shard, true, nil
	n, err := h.openClaimed(cfg, false)
	if err != nil {
		h.logger.Warn("create a group on first contact", "shard", shard, "err", err)
		return nil
	}
	h.logger.Info("group created on first contact", "shard", shard)
	return n
}

// claim makes the caller the one that opens (or replaces) group shard, until
// unclaim: if another has it, claim waits for it if wait, and fails at once
// otherwise. It fails once the Host is closed.
func (h *Host) claim(shard uint64, wait bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.creating[shard] && wait && !h.closed {
		h.mu.Unlock()
		time.Sleep(time.Millisecond)
		h.mu.Lock()
	}
	if h.closed || h.creating[shard] {
		return false
	}
	h.creating[shard] = true
	return true
}

func (h *Host) unclaim(shard uint64) {
	h.mu.Lock()
	delete(h.creating, shard)
	h.mu.Unlock()
}

// createsOn reports whether m, sent to this node for a group it does not
// have, may create the group: only a leader's traffic to it does (an
// append, a snapshot or a heartbeat), never a vote.
func (h *Host) createsOn(m *raftpb.Message) bool {
	switch m.Type {
	case raftpb.MsgApp, raftpb.MsgSnap, raftpb.MsgHeartbeat:
		return m.To == RaftID(h.cfg.Self.Name) && m.Term > 0
	}
	return false
}

// Close stops every open group, then syncs and closes the WAL and releases
// the data directory. It returns the first error.
func (h *Host) Close() error {
	h.closing.Store(true)
	first := h.stopGroups()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return first
	}
	h.closed = true
	h.mu.Unlock()
	h.creators.Wait()
	h.stopGroups() // created while the others stopped
	empty := map[uint64]*Node{}
	h.groups.Store(&empty)
	close(h.stopTicks)
	h.ticking.Wait()
	if err := h.wal.Close(); err != nil && first == nil {
		first = fmt.Errorf("close wal: %w", err)
	}
	if h.marks != nil {
		if err := h.marks.close(); err != nil && first == nil {
			first = fmt.Errorf("close applied marks: %w", err)
		}
	}
	h.lock.Close()
	return first
}

// stopGroups stops every open group, many at once, and returns the first
// error.
func (h *Host) stopGroups() error {
	gs := h.Groups()
	errs := make(chan error, len(gs))
	sem := make(chan struct{}, 64)
	for _, g := range gs {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- g.Stop()
		}()
	}
	var first error
	for range gs {
		if err := <-errs; err != nil && first == nil && !errors.Is(err, ErrRemoved) {
			first = err
		}
	}
	return first
}

// HandleRaft hands messages from a peer to their group; those for a group
// not open here are dropped (Raft retransmits).
func (h *Host) HandleRaft(shard uint64, msgs []raftpb.Message) {
	if len(msgs) > 0 {
		h.noteHeard(msgs[0].From)
	}
	if shard == livenessShard {
		return
	}
	if n := h.Group(shard); n != nil {
		n.HandleRaft(shard, msgs)
		return
	}
	if len(msgs) == 0 || h.cfg.NewGroup == nil || !h.createsOn(&msgs[0]) {
		return
	}
	// Opening touches the disk: not on the connection's reader. These
	// messages are dropped; the leader sends again.
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.creators.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.creators.Done()
		h.create(shard)
	}()
}

// HandleCall serves a peer's request for a group.
func (h *Host) HandleCall(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
	if n := h.Group(shard); n != nil {
		return n.HandleCall(ctx, from, shard, method, payload)
	}
	return nil, fmt.Errorf("shard %d is not served here", shard)
}

// HandleSnapshot receives a snapshot stream for a group.
func (h *Host) HandleSnapshot(from, shard uint64, r io.Reader) error {
	n := h.Group(shard)
	if n == nil {
		n = h.create(shard)
	}
	if n != nil {
		return n.HandleSnapshot(from, shard, r)
	}
	return fmt.Errorf("shard %d is not served here", shard)
}

// PeerUnreachable tells every group that messages to peer to were lost.
func (h *Host) PeerUnreachable(to uint64) {
	for _, n := range *h.groups.Load() {
		n.PeerUnreachable(to)
	}
}

// walReliefSegments is how many WAL segments there may be before the
// groups whose entries keep the oldest one are asked to let it go.
const walReliefSegments = 4

// walReliefInterval is how often at most relieveWAL asks.
const walReliefInterval = time.Second

// relieveWAL asks the groups whose entries keep the oldest WAL segment to let
// it go (Node.unpinWAL) once the WAL has more than walReliefSegments
// segments: a group that writes little takes a snapshot only rarely, and
// without this its entries would keep every later segment of the shared WAL
// on disk. It is called by the groups' appenders after each write, and asks
// at most once per walReliefInterval, and only while the Host has more than
// one group (one group alone snapshots every Config.SnapshotEntries).
func (h *Host) relieveWAL() {
	now := time.Now().UnixNano()
	last := h.reliefAt.Load()
	if now-last < int64(walReliefInterval) || len(*h.groups.Load()) < 2 || h.wal.Stats().Segments <= walReliefSegments {
		return // one group alone keeps its own snapshot schedule
	}
	if !h.reliefAt.CompareAndSwap(last, now) {
		return // another appender asks
	}
	for _, shard := range h.wal.Pinning() {
		if g := h.Group(shard); g != nil {
			g.askUnpin()
		}
	}
}

// livenessShard carries the Hosts' own heartbeats: while groups are quiet,
// their Raft sends nothing, so the Hosts tell each other they are alive,
// one message per peer per tick, whatever the number of groups.
const livenessShard = 0

// noteHeard records that a message from peer from arrived now.
func (h *Host) noteHeard(from uint64) {
	now := time.Now().UnixNano()
	if v, ok := h.heard.Load(from); ok {
		v.(*atomic.Int64).Store(now)
		return
	}
	v := &atomic.Int64{}
	v.Store(now)
	h.heard.Store(from, v)
}

// LastHeard is when a message from the node called name last arrived: any
// Raft message, or the liveness heartbeat every node sends its peers each
// tick (zero if never).
func (h *Host) LastHeard(name string) time.Time { return h.heardAt(RaftID(name)) }

// heardAt is when a message from peer id last arrived (zero if never).
func (h *Host) heardAt(id uint64) time.Time {
	if v, ok := h.heard.Load(id); ok {
		return time.Unix(0, v.(*atomic.Int64).Load())
	}
	return time.Time{}
}

// sendLiveness sends every peer this Host's heartbeat (see livenessShard).
func (h *Host) sendLiveness() {
	if h.tr == nil {
		return
	}
	self := RaftID(h.cfg.Self.Name)
	h.tr.mu.Lock()
	msgs := make([]raftpb.Message, 0, len(h.tr.users))
	for id := range h.tr.users {
		msgs = append(msgs, raftpb.Message{Type: raftpb.MsgHeartbeat, To: id, From: self})
	}
	h.tr.mu.Unlock()
	h.tr.Transport.Send(livenessShard, msgs)
}

// silentPeers returns the peers not heard from for more than two ticks,
// with when they last were: usually none, so that the groups need no
// checking on most ticks.
func (h *Host) silentPeers() map[uint64]time.Time {
	if h.tr == nil {
		return nil
	}
	var out map[uint64]time.Time
	h.tr.mu.Lock()
	defer h.tr.mu.Unlock()
	for id := range h.tr.users {
		if at := h.heardAt(id); time.Since(at) > 2*h.cfg.TickInterval {
			if out == nil {
				out = map[uint64]time.Time{}
			}
			out[id] = at
		}
	}
	return out
}

// wakeIfLeaderSilent wakes the quiet group n if nothing has been heard from
// the node of its leader for an election timeout (silent: see silentPeers):
// that node may have died while the group was quiet, and the group must
// elect another leader before a request comes for it, not after. A woken
// follower ticks again: it campaigns once its election timeout passes
// without word from the leader.
func (h *Host) wakeIfLeaderSilent(n *Node, silent map[uint64]time.Time) {
	lead := n.leader.Load()
	at, ok := silent[lead]
	if lead == raft.None || lead == n.raftID || !ok {
		return
	}
	if time.Since(at) < time.Duration(n.cfg.ElectionTicks)*h.cfg.TickInterval {
		return
	}
	select {
	case n.wakec <- struct{}{}:
	default:
	}
}

// groupDir is where group shard keeps its own files: the data directory
// itself for group 1, the first group of every cluster (its applied mark),
// so that a data directory of one group keeps its layout; groups/<id> for
// the others (the tombstone of a group removed from this node; their
// applied marks share groups/applied-marks).
func (c *Config) groupDir() string {
	if c.Shard == 1 {
		return c.DataDir
	}
	return filepath.Join(c.DataDir, "groups", strconv.FormatUint(c.Shard, 10))
}

// hostTransport reaches the peers of every group of a Host: a peer stays
// added while any group has it as a member.
type hostTransport struct {
	Transport
	mu    sync.Mutex
	users map[uint64]map[uint64]bool // peer -> the groups that added it
}

// forGroup is the Transport group shard uses.
func (t *hostTransport) forGroup(shard uint64) Transport { return groupTransport{t, shard} }

// groupTransport is one group's view of its Host's transport.
type groupTransport struct {
	*hostTransport
	shard uint64
}

func (t groupTransport) AddPeer(id uint64, addr string) {
	t.mu.Lock()
	if t.users[id] == nil {
		t.users[id] = map[uint64]bool{}
	}
	t.users[id][t.shard] = true
	t.mu.Unlock()
	t.Transport.AddPeer(id, addr)
}

func (t groupTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	delete(t.users[id], t.shard)
	last := len(t.users[id]) == 0
	if last {
		delete(t.users, id)
	}
	t.mu.Unlock()
	if last {
		t.Transport.RemovePeer(id)
	}
}
