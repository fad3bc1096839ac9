package raftnode

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/ranges"
	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/wal"
)

// Node is one member of a Raft group serving a shard of the key space.
type Node struct {
	cfg    Config
	logger *slog.Logger
	raftID uint64
	// leaderChanged: the leader changed since the loop last proposed again
	// the requests that may be (reproposeAfterLeaderChange). Owned by the
	// loop.
	leaderChanged bool
	// guard screens the messages that come from the network (guard.go).
	// Owned by the loop.
	guard peerGuard
	// testHook is the deliberately broken behaviour of a test build
	// (testhooks.go); hookNone in every other.
	testHook testHook
	// clusterID is the cluster's id (0: this data directory predates cluster
	// ids). Set by Open, then never changed.
	clusterID uint64

	// Owned by the loop goroutine after Start.
	rn      *raft.RawNode
	storage *raft.MemoryStorage
	// host is the node-wide side (see Host): wal and snaps are its; a node
	// opened by Open owns its Host and closes it as it stops.
	host      *Host
	ownsHost  bool
	wal       *wal.WAL
	snaps     *snap.Store
	mark      *appliedMark
	confState raftpb.ConfState
	// Invariant: snapIndex <= applied <= committed.
	snapIndex    uint64
	snapRetryAt  uint64   // after a failed snapshot, the applied index to retry at
	keptSnaps    []uint64 // indexes of the snapshots on disk that the WAL backs, oldest first
	snapshotting bool
	snapStarted  time.Time // when the snapshot being written was started
	// compactWaiters are the Compacts waiting for a snapshot.
	// Invariant: between the loop's turns, compactWaiters is empty unless
	// snapshotting.
	compactWaiters []*compactWaiter
	// addedAt is, for each member added since this node started, the index
	// of the entry that added it (last): a snapshot from before it may
	// still list the member, if it was a member once before, removed and
	// added again, and it would then apply its own old removal (see
	// sendSnapshots). Owned by the loop.
	addedAt map[uint64]uint64
	// strangers is when this node last told each node that sends it
	// messages without being in the configuration that it was removed
	// (noticeStranger). Owned by the loop.
	strangers map[uint64]time.Time
	// snapshotSoon asks for a snapshot before SnapshotEntries more entries
	// are applied: the newest one predates a member that needs one.
	snapshotSoon bool
	// unpinning: the Host asked this group to let go of the oldest WAL
	// segment (unpinWAL); the next snapshot compacts behind itself.
	unpinning bool
	unpinc    chan struct{} // cap 1: see askUnpin
	// tickc brings the Host's ticks (cap 1: a tick the loop has not taken
	// yet is not doubled). ticks counts them. Owned by the loop.
	tickc chan struct{}
	ticks uint64
	// wakec: the Host wakes the quiet group (cap 1; see wakeIfLeaderSilent).
	wakec chan struct{}
	// quiet: the group is quiesced and gets no ticks (quiesce.go); owned
	// by the loop, published in quietFlag for the Host's ticker.
	quiet     bool
	quietFlag atomic.Bool
	// expiring: an OpExpire proposal is under way (ttl.go).
	expiring atomic.Bool
	// logBytes counts the bytes of the entries appended to the log (by the
	// appender); logBytesAtSnap is its count when the last snapshot began
	// (loop-owned): see maybeSnapshot.
	logBytes       atomic.Int64
	logBytesAtSnap int64
	// compacting: an OpCompact proposal of the retention is under way;
	// revNotes are the store's revisions noted for it, oldest first, owned
	// by the loop (history.go).
	compacting atomic.Bool
	revNotes   []revisionNote
	// bounds is the range of keys the group holds (split.go); set by the
	// loop as it applies, read by anyone.
	bounds atomic.Pointer[Bounds]
	// splitting: a split (by size or by load) is under way (maybeSplit).
	splitting atomic.Bool
	// load counts the requests this node serves as the range's leader
	// (loadsplit.go): nil while it is not the leader, or RangeSplitQPS is 0.
	// Set by the loop, read by every request.
	load atomic.Pointer[ranges.LoadTracker]
	// loadBounds, loadApplied and loadRefused are what the loop's last look
	// at the load saw (trackLoad). Owned by the loop.
	loadBounds  *Bounds
	loadApplied uint64
	loadRefused bool
	// inConfig: this node is in the configuration it has applied (a joining
	// node is not until the leader's log or snapshot reaches it).
	inConfig atomic.Bool
	reads    readQueue
	// termStart is the index of the first entry this node appended as leader
	// of term termStartTerm (Raft's empty entry that opens a term): once the
	// commit index reaches it, an entry of that term is committed. Owned by
	// the loop.
	termStart, termStartTerm uint64
	durable                  raftpb.HardState // the last hard state in the WAL at Open
	// app writes the log; appending counts the appends handed to it and not
	// yet reported durable.
	app       *appender
	appending int
	// remoteBuf holds a Ready's messages to other nodes; reused.
	remoteBuf []raftpb.Message
	// notice is the newest durable notice from the leader not yet acted on;
	// noticeBuf holds the notices this node sends as the leader (see
	// durable.go). Owned by the loop.
	notice    durableNotice
	noticeBuf []raftpb.Message
	// noticed is the highest index this node has sent a durable notice for
	// as the leader of its current term (0 once it is not). A follower may
	// acknowledge a write up to it before this leader has heard that it is
	// committed, so a read index is never below it. Owned by the loop.
	noticed uint64
	// forwarders are the followers whose proposals this leader has taken
	// since its last append; forwarded is, per follower, the last index of
	// an append that holds some of its proposals (see noticeDurable). Owned
	// by the loop.
	forwarders []uint64
	forwarded  map[uint64]uint64
	// origins: the forwarders of the proposals in the Ready being handled.
	origins []uint64
	// laterAcks are responses of durable appends to other nodes that the
	// appender left to the loop, sent at the end of its turn (flushAcks).
	laterAcks []raftpb.Message
	// deferred holds, per follower, a leader's append that carries only a
	// new commit index, sent with the next message to that follower or
	// when deferTimer fires (see deferCommits). replicating is scratch.
	deferred    map[uint64]raftpb.Message
	deferTimer  *time.Timer
	deferArmed  bool
	replicating []uint64
	// held are MsgStorageApply messages not yet applied: only while the
	// loop is stalled on a full disk (see applyHeld).
	held []raftpb.Message
	// stalledLocal are responses of appends made durable during a stall, to
	// be stepped once it is over.
	stalledLocal []raftpb.Message
	// stall is set while the log cannot be written for lack of space: the
	// appender retries its write, or the loop retries the append it does
	// itself (one that installs a snapshot) or the applied mark. Meanwhile
	// the loop neither ticks nor steps Raft (see stalled).
	stall *pendingAppend
	// snapStatusLater holds snapshot transfer results that arrived while
	// stalled, reported to Raft once the stall is over.
	snapStatusLater []snapStatus
	// diskFull, published for Propose, Ready and Status, says the node
	// refuses writes because its log cannot be written.
	// Invariant: between the loop's turns, diskFull == (stall != nil), and
	// held, stalledLocal and snapStatusLater are empty unless stall != nil.
	// Within a turn diskFull is also set while waitAppended waits out an
	// appender stalled on a full disk (the loop waits for the appender
	// there instead of running stalled), and after a stall it is cleared
	// only once resume has handled Raft's Readys.
	diskFull atomic.Bool
	// recoveredLast is the last log index found on disk at Open: any entry up
	// to it may have been acknowledged before a restart.
	recoveredLast uint64
	// replayTo is the commit index found on disk at Open. Until the state
	// machine has applied it, it is older than what this node may have served
	// before the restart, so stale reads wait (see waitReplayed); replayed is
	// closed once it has. replayedSet is owned by the loop.
	replayTo    uint64
	replayed    chan struct{}
	replayedSet bool

	kv *kv.Store

	propc    chan *proposal
	stampedc chan stampBatch // stamps for the writes of stampq (stamp.go)
	// stampq are the writes waiting for the next fetch of stamps, in the
	// order they are to be proposed; stamping says a fetch is under way.
	// Owned by the loop.
	stampq      []stampItem
	stamping    bool
	leasePub    atomic.Pointer[leaseTime] // the lease, for HoldsLease
	snapDone    chan snapResult
	recvc       chan []raftpb.Message // batches of messages from one peer
	unreachc    chan uint64
	snapRecvc   chan *snapDelivery
	snapStatusc chan snapStatus
	funcc       chan func() // work that must run on the loop
	// pendingSnap is a snapshot received from the leader and stepped into
	// Raft, waiting for the Ready that installs it. Owned by the loop.
	pendingSnap    *snap.Received
	snapsSending   atomic.Int64
	snapsInstalled atomic.Uint64 // snapshots received from a leader and installed
	metrics        nodeMetrics   // the counters of Metrics (metrics.go)
	dropped        atomic.Uint64 // incoming messages dropped because the loop was behind
	stopc          chan struct{}
	donec          chan struct{} // closed as the loop exits
	stopOnce       sync.Once
	// ctx is cancelled as the loop exits. Every goroutine of the node is
	// started by goAsync, which hands it ctx (for its transport calls and
	// its waits on the loop) and counts it in async; Stop waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	async  sync.WaitGroup

	nextID atomic.Uint64
	// The leader's lease (see lease.go), owned by the loop: its own
	// linearizable reads are answered without a round until leaseUntil.
	leaseUntil time.Time
	leaseTerm  uint64
	startedAt  time.Time // this node grants no vote for an election timeout after (see holdsVotes)
	// parked holds proposals that Raft dropped because no leader was known
	// (or leadership was being transferred). They never reached the log, so
	// proposing them again is safe: they are retried once a leader is known,
	// until their request gives up. Owned by the loop.
	parked []*proposal
	// parkedFwd holds followers' writes Raft refused during a leadership
	// transfer of this leader (see parkForwarded). Owned by the loop.
	parkedFwd []stampItem

	mu      sync.Mutex
	waiters map[uint64]*proposal
	members map[uint64]Member
	err     error // the fatal error that stopped the loop, if any
	removed bool  // this node was removed from the group; the loop stops
	// contact is when a message from each peer last arrived.
	contact map[uint64]time.Time
	// learnersPub are the learners of the applied configuration, updated
	// with members (publishLearnersLocked).
	learnersPub  []uint64
	compactions  []Compaction // the last compactionsKept, oldest first
	lastIndexPub uint64
	progress     atomic.Pointer[map[uint64]progress]

	// Published by the loop for Status and readers.
	applied atomic.Uint64
	commit  atomic.Uint64
	// commitTickAgo is commit as of the last tick (see Ready).
	commitTickAgo atomic.Uint64
	term          atomic.Uint64
	leader        atomic.Uint64
}

// A group's queues are allocated with it, whether it is busy or idle, so
// they stay small: a node may host thousands of groups. Proposals beyond
// proposalQueue wait for the loop (their callers block); message batches
// beyond recvQueue are dropped (Raft retransmits).
const (
	proposalQueue = 1024
	recvQueue     = 256
)

// Open recovers the node's state from cfg.DataDir (or creates a new cluster
// member if it is empty) and starts its loop: a Host of the one group
// cfg.Shard, which Stop closes with the group.
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h, err := OpenHost(cfg.hostConfig())
	if err != nil {
		return nil, err
	}
	n, err := h.openGroup(cfg, true)
	if err != nil {
		h.Close()
		return nil, err
	}
	return n, nil
}

// OpenGroup opens group cfg.Shard on h: it recovers the group's state from
// its snapshots and the records the WAL holds for it (or bootstraps a new
// group of cfg.Members) and starts its loop. The node-wide settings of cfg
// (Self, DataDir, FS, Transport, ClusterID, the WAL's) are h's.
// Opening a group already open is an error wrapping ErrGroupOpen; one this
// node was removed from (buried), ErrGroupRemoved.
func (h *Host) OpenGroup(cfg Config) (*Node, error) { return h.openGroup(cfg, false) }

// ErrGroupOpen is returned for opening a group that is open already.
var ErrGroupOpen = errors.New("group is already open")

// ErrGroupRemoved is returned for opening a group this node was removed
// from: its state is gone, and a fresh one must come from its leader (Unbury
// lets it be created again on the leader's first message).
var ErrGroupRemoved = errors.New("this node was removed from the group")

func (h *Host) openGroup(cfg Config, ownsHost bool) (*Node, error) {
	if cfg.Shard == 0 {
		cfg.Shard = 1
	}
	if !h.claim(cfg.Shard, true) {
		return nil, ErrStopped
	}
	defer h.unclaim(cfg.Shard)
	if h.Group(cfg.Shard) != nil {
		return nil, fmt.Errorf("%w: %d", ErrGroupOpen, cfg.Shard)
	}
	if h.Buried(cfg.Shard) {
		// Opening it would find no state and start it afresh: a replica
		// removed a moment ago (by a notice while the node started) must
		// not come back as a new group.
		return nil, fmt.Errorf("%w: %d", ErrGroupRemoved, cfg.Shard)
	}
	return h.openClaimed(cfg, ownsHost)
}

// openClaimed opens a group whose shard the caller has claimed.
func (h *Host) openClaimed(cfg Config, ownsHost bool) (*Node, error) {
	cfg.Self, cfg.DataDir, cfg.FS, cfg.ClusterID = h.cfg.Self, h.cfg.DataDir, h.cfg.FS, h.clusterID
	cfg.TickInterval = h.cfg.TickInterval
	cfg.Transport = nil
	if h.tr != nil {
		cfg.Transport = h.tr.forGroup(cfg.Shard)
	}
	if cfg.Logger == nil {
		cfg.Logger = h.cfg.Logger
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		host:        h,
		ownsHost:    ownsHost,
		startedAt:   time.Now(),
		cfg:         cfg,
		logger:      cfg.Logger.With("shard", cfg.Shard),
		raftID:      RaftID(cfg.Self.Name),
		storage:     raft.NewMemoryStorage(),
		kv:          kv.NewStore(),
		propc:       make(chan *proposal, proposalQueue),
		stampedc:    make(chan stampBatch, 1),
		snapDone:    make(chan snapResult, 1),
		recvc:       make(chan []raftpb.Message, recvQueue),
		unreachc:    make(chan uint64, 64),
		snapRecvc:   make(chan *snapDelivery),
		snapStatusc: make(chan snapStatus),
		funcc:       make(chan func()),
		unpinc:      make(chan struct{}, 1),
		tickc:       make(chan struct{}, 1),
		wakec:       make(chan struct{}, 1),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
		replayed:    make(chan struct{}),
		waiters:     map[uint64]*proposal{},
		members:     map[uint64]Member{},
		contact:     map[uint64]time.Time{},
		wal:         h.wal,
		snaps:       h.snaps,
		clusterID:   h.clusterID,
	}
	n.bounds.Store(&Bounds{})
	if cfg.Shard != 1 && len(cfg.Members) == 0 {
		// A group not bootstrapped here holds no keys until a snapshot (its
		// leader's, or the first one a split writes) says which (see
		// adoptMembers), so no request is routed to it meanwhile.
		n.bounds.Store(&noKeys)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	var err error
	if n.testHook, err = testHookFromEnv(); err != nil {
		return nil, err
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed request ids: %w", err)
	}
	n.nextID.Store(binary.LittleEndian.Uint64(seed[:]))
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed read contexts: %w", err)
	}
	n.reads.nonce = binary.LittleEndian.Uint64(seed[:])
	n.reads.wake = make(chan struct{}, 1)

	if err := n.recover(h.take(cfg.Shard)); err != nil {
		if n.mark != nil {
			n.mark.close()
		}
		return nil, err
	}
	if err := h.attach(n); err != nil {
		n.mark.close()
		return nil, err
	}
	if cfg.Transport != nil {
		// Reach the configured members at once: a joining node must answer
		// the leader before the log has told it who is who.
		for _, m := range cfg.Members {
			if id := RaftID(m.Name); id != n.raftID {
				n.addPeer(id, m)
			}
		}
	}
	n.app.start()
	n.goAsync(func(context.Context) { n.run() })
	n.goAsync(n.publishSelf)
	return n, nil
}

// recover loads the newest snapshot, replays the WAL behind it and creates the
// RawNode. On an empty data directory it bootstraps the initial membership.
func (n *Node) recover(rl *recoveredLog) error {
	shard := n.cfg.Shard
	meta, found, err := n.loadSnapshot()
	if err != nil {
		return err
	}
	hs, ents, records := rl.hs, rl.ents, rl.records
	if found {
		// The entries the snapshot covers are applied with it.
		i := 0
		for i < len(ents) && ents[i].Index <= meta.Index {
			i++
		}
		ents = ents[i:]
	}

	if found {
		if err := n.adoptMembers(meta.Extra); err != nil {
			return err
		}
		if err := validConfState(n.confState); err != nil {
			// Raft would panic restoring it; only this node's own disk can
			// hold such a snapshot (the guard refuses one from the network).
			return fmt.Errorf("%w: snapshot %d of shard %d in %s holds a configuration Raft cannot restore (%v): remove that file to start from the older snapshot",
				wal.ErrCorrupt, meta.Index, shard, n.cfg.snapDir(), err)
		}
		if err := n.storage.ApplySnapshot(raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{
			Index: meta.Index, Term: meta.Term, ConfState: n.confState,
		}}); err != nil {
			return fmt.Errorf("install snapshot: %w", err)
		}
		n.snapIndex = meta.Index
		// The WAL was compacted behind the oldest snapshot kept; the older
		// intact files remain fall-backs.
		indexes, err := n.snaps.Indexes(shard)
		if err != nil {
			return fmt.Errorf("list snapshots: %w", err)
		}
		for _, i := range indexes {
			if i <= meta.Index {
				n.keptSnaps = append(n.keptSnaps, i)
			}
		}
		if len(n.keptSnaps) > n.cfg.SnapshotsKept {
			n.keptSnaps = n.keptSnaps[len(n.keptSnaps)-n.cfg.SnapshotsKept:]
		}
	}
	if len(ents) > 0 && found && ents[0].Index != meta.Index+1 {
		return fmt.Errorf("wal starts at entry %d but the snapshot ends at %d: entries are missing", ents[0].Index, meta.Index)
	}
	if len(ents) > 0 && !found && ents[0].Index != 1 {
		return fmt.Errorf("wal starts at entry %d and there is no snapshot: entries are missing", ents[0].Index)
	}
	if n.cfg.Shard == 1 {
		n.mark, err = openAppliedMark(n.cfg.FS, n.cfg.DataDir, n.logger.Warn)
	} else {
		n.mark, err = n.host.groupMark(n.cfg.Shard)
	}
	if err != nil {
		return err
	}
	if last := lastIndex(ents, n.snapIndex); hs.Commit > last {
		// Raft would panic on it: entries it knew committed are gone.
		return fmt.Errorf("%w: the hard state in %s says entries up to %d are committed, but the log ends at %d: entries were lost (a truncated or deleted WAL segment?); restore this data directory, or remove it and add the node back with --join under a new name",
			wal.ErrCorrupt, n.cfg.walDir(), hs.Commit, last)
	}
	if !raft.IsEmptyHardState(hs) {
		if hs.Commit < n.snapIndex {
			hs.Commit = n.snapIndex
		}
		// The node applied up to the mark before it stopped: those entries
		// were committed and durable here (see appliedmark.go), though the
		// hard state recording their commit may not have reached the WAL.
		if c := min(n.mark.index, lastIndex(ents, n.snapIndex)); c > hs.Commit {
			hs.Commit = c
		}
		if err := n.storage.SetHardState(hs); err != nil {
			return err
		}
		n.durable = hs
	}
	if err := n.storage.Append(ents); err != nil {
		return fmt.Errorf("load log: %w", err)
	}
	n.recoveredLast = lastIndex(ents, n.snapIndex)

	rc := &raft.Config{
		ID:            n.raftID,
		ElectionTick:  n.cfg.ElectionTicks,
		HeartbeatTick: n.cfg.HeartbeatTicks,
		Storage:       n.storage,
		Applied:       n.snapIndex,
		MaxSizePerMsg: 1 << 20,
		// Few appends in flight per follower: while they are, the entries
		// proposed meanwhile gather into the next one, so under load a
		// round carries many entries at the cost of one message, one
		// follower fsync and one acknowledgement, instead of one round per
		// loop iteration. A follower that is behind still gets 4 MiB per
		// round trip. Interleaved A/B, 64-client writes on 2 cores: CPU per
		// write 115-123 us with 1, 2 or 4, 136-144 us with 256.
		MaxInflightMsgs:           4,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true,
		PreVote:                   true,
		// The log is written by the appender while the loop goes on.
		AsyncStorageWrites: true,
		Logger:             raftLogger{n.logger},
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.rn = rn
	n.app = newAppender(n, n.durable)
	n.applied.Store(n.snapIndex)
	n.metrics.appliedAtOpen = n.snapIndex
	n.replayTo = max(n.durable.Commit, n.snapIndex)
	// Raft starts with the commit index of the hard state (at least the
	// snapshot's): published at once, not with the first Ready that changes
	// the hard state.
	n.commit.Store(n.replayTo)
	n.commitTickAgo.Store(n.replayTo)
	n.noteReplayed()
	fresh := !found && len(ents) == 0 && raft.IsEmptyHardState(hs)
	if fresh && n.cfg.Join {
		n.logger.Info("joining an existing cluster: waiting for the leader to send the log", "id", n.cfg.Self.Name)
	} else if fresh {
		peers := make([]raft.Peer, 0, len(n.cfg.Members))
		for _, m := range n.cfg.Members {
			ctx, err := json.Marshal(bootstrapMember{Member: m, ClusterID: n.clusterIDString()})
			if err != nil {
				return err
			}
			peers = append(peers, raft.Peer{ID: RaftID(m.Name), Context: ctx})
		}
		if err := rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		n.logger.Info("bootstrapped new cluster member", "id", n.cfg.Self.Name, "members", len(peers))
	} else {
		n.logger.Info("recovered", "snapshot_index", n.snapIndex, "wal_records", records,
			"last_index", lastIndex(ents, n.snapIndex), "commit", hs.Commit, "term", hs.Term)
	}
	return nil
}

func lastIndex(ents []raftpb.Entry, snapIndex uint64) uint64 {
	if len(ents) == 0 {
		return snapIndex
	}
	return ents[len(ents)-1].Index
}

// Err returns the error that stopped the node, or nil while it runs or after a
// clean Stop.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// Done is closed when the node's loop has exited: after a Stop, a removal or
// a fatal error. The node's other goroutines then end by themselves; Stop
// waits for them.
func (n *Node) Done() <-chan struct{} { return n.donec }

// Stop stops the loop, fails the requests still waiting with ErrStopped,
// syncs and closes the WAL, and waits for every goroutine the node started
// (the appender, snapshot writes and transfers, the notice to a removed
// member, the publication of its own addresses): once Stop returns, the node
// calls neither the transport nor the snapshot store again. It is safe to
// call more than once, and after the node stopped by itself (Done).
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.donec
	n.async.Wait()
	return n.Err()
}

// goAsync runs f on a goroutine of its own, with the node's context, which
// is cancelled as the loop exits; Stop waits for f to return. Every goroutine
// of the node starts here, so that none is left running after Stop. f must
// return soon after ctx ends, and a send of f to the loop must also wait on
// ctx. goAsync is called only by Open and on the loop (or by the appender,
// which the loop closes before it exits), so no goroutine starts once Stop
// waits.
func (n *Node) goAsync(f func(ctx context.Context)) {
	if invariants {
		select {
		case <-n.donec:
			panic("raftnode: goAsync after the loop exited")
		default:
		}
	}
	n.async.Add(1)
	go func() {
		defer n.async.Done()
		f(n.ctx)
	}()
}

// KV returns the state machine, for stale reads.
func (n *Node) KV() *kv.Store { return n.kv }
func (n *Node) stoppedErr() error {
	if err := n.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	return ErrStopped
}

// shutdown runs on the loop goroutine as it exits.
func (n *Node) shutdown(cause error) {
	// Appends not yet written are dropped: nothing depending on them was
	// sent or answered.
	n.app.close()
	if n.snapshotting {
		// The snapshot writer holds no lock of ours; wait so that it does not
		// race the WAL's close.
		res := <-n.snapDone
		if cause == nil {
			cause = n.finishSnapshot(res)
		}
	}
	n.mu.Lock()
	n.err = cause
	n.mu.Unlock()
	// Parked proposals never reached the log: they certainly were not made.
	n.failParked(n.stoppedErr())
	n.mu.Lock()
	waiters := n.waiters
	n.waiters = map[uint64]*proposal{}
	n.mu.Unlock()
	stopped := n.stoppedErr()
	// These were handed to Raft: whether they commit is up to the others.
	for _, p := range waiters {
		p.done <- proposalResult{err: outcomeUnknownError{stopped}}
	}
	n.reads.failAll(stopped)
	// Drain queued requests that never reached the loop.
	for {
		select {
		case p := <-n.propc:
			p.done <- proposalResult{err: stopped}
			continue
		default:
		}
		break
	}
	if err := n.mark.close(); err != nil && cause == nil {
		n.mu.Lock()
		n.err = fmt.Errorf("close applied mark: %w", err)
		n.mu.Unlock()
	}
	if errors.Is(cause, ErrRemoved) {
		n.host.bury(n)
	}
	n.host.detach(n)
	if n.ownsHost {
		if err := n.host.Close(); err != nil && cause == nil {
			n.mu.Lock()
			n.err = err
			n.mu.Unlock()
		}
	}
}
