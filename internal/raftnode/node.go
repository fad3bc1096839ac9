package raftnode

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/lattrace"
	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/wal"
)

// Node is one member of a Raft group serving a shard of the key space.
type Node struct {
	cfg    Config
	logger *slog.Logger
	raftID uint64

	// Owned by the loop goroutine after Start.
	rn        *raft.RawNode
	storage   *raft.MemoryStorage
	wal       *wal.WAL
	snaps     *snap.Store
	lock      io.Closer // the data directory's LOCK, held while the node runs
	mark      *appliedMark
	confState raftpb.ConfState
	// Invariant: snapIndex <= applied <= committed.
	snapIndex    uint64
	snapRetryAt  uint64   // after a failed snapshot, the applied index to retry at
	keptSnaps    []uint64 // indexes of the snapshots on disk that the WAL backs, oldest first
	snapshotting bool
	// snapshotSoon asks for a snapshot before SnapshotEntries more entries
	// are applied: the newest one predates a member that needs one.
	snapshotSoon bool
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
	// itself (one that installs a snapshot). Meanwhile the loop neither ticks
	// nor steps Raft (see stalled). Invariant: stall != nil iff diskFull.
	stall *pendingAppend
	// snapStatusLater holds snapshot transfer results that arrived while
	// stalled, reported to Raft once the stall is over.
	snapStatusLater []snapStatus
	diskFull        atomic.Bool // published copy of stall != nil
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

	propc       chan *proposal
	snapDone    chan snapResult
	recvc       chan raftpb.Message
	unreachc    chan uint64
	snapRecvc   chan *snapDelivery
	snapStatusc chan snapStatus
	funcc       chan func() // work that must run on the loop
	// pendingSnap is a snapshot received from the leader and stepped into
	// Raft, waiting for the Ready that installs it. Owned by the loop.
	pendingSnap    *snap.Received
	snapsSending   atomic.Int64
	snapsInstalled atomic.Uint64 // snapshots received from a leader and installed
	dropped        atomic.Uint64 // incoming messages dropped because the loop was behind
	stopc          chan struct{}
	donec          chan struct{}
	stopOnce       sync.Once

	nextID atomic.Uint64
	// The leader's lease (see lease.go), owned by the loop: its own
	// linearizable reads are answered without a round until leaseUntil.
	leaseUntil time.Time
	leaseTerm  uint64
	startedAt  time.Time // this node grants no vote for an election timeout after
	// parked holds proposals that Raft dropped because no leader was known
	// (or leadership was being transferred). They never reached the log, so
	// proposing them again is safe: they are retried once a leader is known,
	// until their request gives up. Owned by the loop.
	parked []*proposal

	mu      sync.Mutex
	waiters map[uint64]*proposal
	members map[uint64]Member
	err     error // the fatal error that stopped the loop, if any
	removed bool  // this node was removed from the group; the loop stops
	// contact is when a message from each peer last arrived.
	contact      map[uint64]time.Time
	learnersPub  []uint64
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

// ErrNoSpace is returned at once for writes, and for linearizable reads that
// need the Raft loop, while this node's disk is full: its log cannot take the
// next entries, so nothing new is proposed. The node keeps running and retries;
// writes resume by themselves once space is freed. errors.Is(ErrNoSpace,
// syscall.ENOSPC) holds.
var ErrNoSpace error = noSpaceError{}

type noSpaceError struct{}

func (noSpaceError) Error() string {
	return "no space left on device: this node cannot write its log; writes resume when space is freed"
}

func (noSpaceError) Is(target error) bool { return target == syscall.ENOSPC }

// InsufficientStorage tells an API layer that the request was refused for lack
// of disk space before it reached the log (HTTP 507), unlike other errors that
// merely wrap an ENOSPC.
func (noSpaceError) InsufficientStorage() bool { return true }

// Retry delays of a Ready stalled on a full disk.
const (
	stallRetryMin = 100 * time.Millisecond
	stallRetryMax = 500 * time.Millisecond
)

// pendingAppend is a log append stalled on a full disk. Either the appender
// holds it (byAppender) and retries by itself, or the loop does: an append
// that installs a snapshot (msg), which may stop at a full disk and be
// resumed; the fields say which steps are done.
type pendingAppend struct {
	byAppender bool
	// markOnly: no append is pending, the applied mark could not be
	// written; the held entries are applied once it is.
	markOnly bool

	msg raftpb.Message // a MsgStorageAppend with a snapshot
	// snapFile is the received snapshot file of msg.Snapshot once it is
	// installed (only its WAL marker and the rest may remain to be done).
	snapFile *snap.Meta
	snapDone bool

	since   time.Time // when persisting first failed
	retries int
}

type proposal struct {
	id   uint64
	data []byte
	done chan proposalResult // buffered, 1
	// handed: the proposal may have reached Raft's log (this node's or,
	// forwarded, the leader's). Until then a request that gives up knows the
	// write was not made. Guarded by Node.mu.
	handed bool
	// parkedAt is when Raft first dropped it (see pruneParked). Owned by
	// the loop.
	parkedAt time.Time
}

type proposalResult struct {
	res kv.Result
	err error
}

// memberState is what a snapshot carries besides the key-value pairs.
type memberState struct {
	ConfState raftpb.ConfState `json:"conf_state"`
	Members   []Member         `json:"members"`
}

// Open recovers the node's state from cfg.DataDir (or creates a new cluster
// member if it is empty) and starts its loop.
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		startedAt:   time.Now(),
		cfg:         cfg,
		logger:      cfg.Logger.With("shard", cfg.Shard),
		raftID:      RaftID(cfg.Self.Name),
		storage:     raft.NewMemoryStorage(),
		kv:          kv.NewStore(),
		propc:       make(chan *proposal, 4096),
		snapDone:    make(chan snapResult, 1),
		recvc:       make(chan raftpb.Message, 8192),
		unreachc:    make(chan uint64, 64),
		snapRecvc:   make(chan *snapDelivery),
		snapStatusc: make(chan snapStatus),
		funcc:       make(chan func()),
		stopc:       make(chan struct{}),
		donec:       make(chan struct{}),
		replayed:    make(chan struct{}),
		waiters:     map[uint64]*proposal{},
		members:     map[uint64]Member{},
		contact:     map[uint64]time.Time{},
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

	if err := cfg.FS.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := cfg.FS.Lock(filepath.Join(cfg.DataDir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("data directory %s is in use (is another distkv running on it?): %w", cfg.DataDir, err)
	}
	n.lock = lock
	snaps, err := snap.NewStore(cfg.FS, cfg.snapDir(), cfg.Logger)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open snapshots: %w", err)
	}
	n.snaps = snaps
	if err := n.recover(); err != nil {
		if n.wal != nil {
			n.wal.Close()
		}
		if n.mark != nil {
			n.mark.close()
		}
		lock.Close()
		return nil, err
	}
	if cfg.Transport != nil {
		// Reach the configured members at once: a joining node must answer
		// the leader before the log has told it who is who.
		for _, m := range cfg.Members {
			if id := RaftID(m.Name); id != n.raftID {
				cfg.Transport.AddPeer(id, m.Peer)
			}
		}
	}
	n.app.start()
	go n.run()
	go n.publishSelf()
	return n, nil
}

// publishSelf makes the cluster's record of this node carry its current peer
// and HTTP addresses (members bootstrapped from --cluster know only each
// other's peer addresses; a restarted node may have moved). It retries until
// the record matches or the node stops.
func (n *Node) publishSelf() {
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		// Raft takes one membership change at a time and silently drops the
		// others, so members publishing at once retry at random moments.
		jitter := time.Duration(mrand.Int64N(int64(delay)))
		select {
		case <-n.donec:
			return
		case <-time.After(delay/2 + jitter):
		}
		m, ok := n.member(n.cfg.Self.Name)
		if !ok {
			continue // not (yet) a member: joining, or removed
		}
		if m == n.cfg.Self {
			return
		}
		if n.leader.Load() == raft.None {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := n.changeMembers(ctx, raftpb.ConfChangeUpdateNode, n.cfg.Self)
		cancel()
		if err != nil {
			n.logger.Debug("publishing own addresses", "err", err)
		}
	}
}

// recover loads the newest snapshot, replays the WAL behind it and creates the
// RawNode. On an empty data directory it bootstraps the initial membership.
func (n *Node) recover() error {
	shard := n.cfg.Shard
	meta, found, err := n.loadSnapshot()
	if err != nil {
		return err
	}
	var (
		hs      raftpb.HardState
		ents    []raftpb.Entry
		records int
	)
	w, err := wal.Open(wal.Config{
		Dir:         n.cfg.walDir(),
		FS:          n.cfg.FS,
		SegmentSize: n.cfg.WALSegmentSize,
		Compression: n.cfg.WALCompression,
		Direct:      !n.cfg.WALBuffered,
		Logger:      n.cfg.Logger,
	}, func(r wal.Record) error {
		if r.Shard != shard {
			return nil
		}
		records++
		switch r.Type {
		case wal.RecordHardState:
			var h raftpb.HardState
			if err := h.Unmarshal(r.Data); err != nil {
				return fmt.Errorf("decode hard state: %w", err)
			}
			hs = h
		case wal.RecordEntry:
			if found && r.Index <= meta.Index {
				return nil
			}
			var e raftpb.Entry
			if err := e.Unmarshal(r.Data); err != nil {
				return fmt.Errorf("decode entry %d: %w", r.Index, err)
			}
			// A later record for an index overwrites the suffix from there on:
			// a follower's log can be truncated by a new leader.
			for len(ents) > 0 && ents[len(ents)-1].Index >= e.Index {
				ents = ents[:len(ents)-1]
			}
			if len(ents) > 0 && ents[len(ents)-1].Index+1 != e.Index {
				return fmt.Errorf("wal has a gap: entry %d follows %d", e.Index, ents[len(ents)-1].Index)
			}
			ents = append(ents, e)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("open wal: %w", err)
	}
	n.wal = w

	if found {
		if err := n.adoptMembers(meta.Extra); err != nil {
			return err
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
	if n.mark, err = openAppliedMark(n.cfg.FS, n.cfg.DataDir, n.logger.Warn); err != nil {
		return err
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
	n.replayTo = max(n.durable.Commit, n.snapIndex)
	n.commitTickAgo.Store(n.replayTo)
	n.noteReplayed()
	fresh := !found && len(ents) == 0 && raft.IsEmptyHardState(hs)
	if fresh && n.cfg.Join {
		n.logger.Info("joining an existing cluster: waiting for the leader to send the log", "id", n.cfg.Self.Name)
	} else if fresh {
		peers := make([]raft.Peer, 0, len(n.cfg.Members))
		for _, m := range n.cfg.Members {
			ctx, err := json.Marshal(m)
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

// Done is closed when the node's loop has exited.
func (n *Node) Done() <-chan struct{} { return n.donec }

// Stop stops the loop, fails the requests still waiting with ErrStopped, and
// syncs and closes the WAL. It is safe to call more than once.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.donec
	return n.Err()
}

// KV returns the state machine, for stale reads.
func (n *Node) KV() *kv.Store { return n.kv }

// Propose replicates cmd and returns its result once it is committed, durable
// and applied.
func (n *Node) Propose(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	// A command that every replica would fail to decode must never reach the
	// log: it would stop them all.
	if err := cmd.Validate(); err != nil {
		return kv.Result{}, err
	}
	if n.diskFull.Load() {
		return kv.Result{}, ErrNoSpace
	}
	id := n.nextID.Add(1)
	enc := cmd.Marshal()
	data := make([]byte, 8, 8+len(enc))
	binary.BigEndian.PutUint64(data, id)
	data = append(data, enc...)
	p := &proposal{id: id, data: data, done: make(chan proposalResult, 1)}
	if lattrace.Enabled() {
		lattrace.Mark(lattrace.Propose, id, 0)
		defer lattrace.Mark(lattrace.Answered, id, 0)
	}
	select {
	case n.propc <- p:
	case <-ctx.Done():
		return kv.Result{}, ctx.Err()
	case <-n.donec:
		return kv.Result{}, n.stoppedErr()
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.waiters, id)
		handed := p.handed
		n.mu.Unlock()
		select {
		case r := <-p.done:
			return r.res, r.err
		default:
		}
		if !handed {
			// Parked, and now it never will be proposed (the loop proposes
			// only what is still in waiters).
			return kv.Result{}, n.whyNotProposed(ctx.Err())
		}
		return kv.Result{}, n.whyTimedOut(ctx.Err())
	case <-n.donec:
		// The loop may have answered just before it exited.
		select {
		case r := <-p.done:
			return r.res, r.err
		default:
			return kv.Result{}, n.stoppedErr()
		}
	}
}

// whyTimedOut wraps a context error with what this node knows of why the
// request could not be served in time.
func (n *Node) whyTimedOut(err error) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if n.diskFull.Load() {
		// A write already handed to Raft may still commit once space is
		// freed: its outcome is unknown, so this is a timeout, not ErrNoSpace.
		return fmt.Errorf("this node's disk is full (no space left on device) and its log is stalled until space is freed: %w", err)
	}
	lead := n.leader.Load()
	switch {
	case lead == raft.None:
		return fmt.Errorf("no leader: the cluster has no quorum or is electing one: %w", err)
	case lead == n.raftID:
		reachable := 0
		st := n.Status()
		for _, m := range st.Members {
			if m.Reachable && !m.Learner {
				reachable++
			}
		}
		return fmt.Errorf("this node leads but reaches %d of %d members: no quorum?: %w", reachable, len(st.Members), err)
	}
	return fmt.Errorf("leader %s did not answer in time: %w", n.memberName(lead), err)
}

// whyNotProposed explains a write that gave up while parked: Raft would not
// take it for as long as the request waited.
func (n *Node) whyNotProposed(err error) error {
	if n.leader.Load() == raft.None {
		return notMadeError{fmt.Errorf("%w (none known for as long as the request could wait: %v)", ErrNoLeader, err)}
	}
	return notMadeError{fmt.Errorf("leader %s did not take the write while a leadership transfer was under way (%v)", n.memberName(n.leader.Load()), err)}
}

func (n *Node) stoppedErr() error {
	if err := n.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	return ErrStopped
}

// Status reports the node's view of its Raft group.
type Status struct {
	ID           string
	Leader       string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// DiskFull: the log cannot be written for lack of space; writes are
	// refused with ErrNoSpace until space is freed.
	DiskFull bool
	Members  []MemberStatus
}

// MemberStatus is one member as this node sees it. Match and Lag are known
// only on the leader (HasProgress).
type MemberStatus struct {
	Member
	Learner bool
	// Reachable: this node heard from the member within two election
	// timeouts (always true for the node itself). Known only for the node
	// itself and, on a follower, its leader; the leader knows it for all.
	ReachKnown  bool
	Reachable   bool
	LastContact time.Time // zero if never heard from
	HasProgress bool
	Match       uint64 // highest log index known to be on the member
	Lag         uint64 // leader's last index minus Match
}

type progress struct {
	match   uint64
	learner bool
}

// Status returns a consistent-enough snapshot of the node's Raft state.
func (n *Node) Status() Status {
	s := Status{
		ID:           n.cfg.Self.Name,
		Term:         n.term.Load(),
		CommitIndex:  n.commit.Load(),
		AppliedIndex: n.applied.Load(),
		DiskFull:     n.diskFull.Load(),
	}
	lead := n.leader.Load()
	now := time.Now()
	window := 2 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	prog := n.progress.Load()
	n.mu.Lock()
	if m, ok := n.members[lead]; ok {
		s.Leader = m.Name
	}
	learners := map[uint64]bool{}
	for _, id := range n.learnersPub {
		learners[id] = true
	}
	for id, m := range n.members {
		ms := MemberStatus{Member: m, Learner: learners[id]}
		t, heard := n.contact[id]
		switch {
		case id == n.raftID:
			ms.ReachKnown, ms.Reachable, ms.LastContact = true, true, now
		case lead == n.raftID || id == lead:
			ms.ReachKnown = true
			ms.Reachable = heard && now.Sub(t) < window
		}
		if heard && id != n.raftID {
			ms.LastContact = t
		}
		if prog != nil && lead == n.raftID {
			if p, ok := (*prog)[id]; ok {
				ms.HasProgress, ms.Match = true, p.match
				if last := n.lastIndexPub; last > p.match {
					ms.Lag = last - p.match
				}
			}
		}
		s.Members = append(s.Members, ms)
	}
	n.mu.Unlock()
	slices.SortFunc(s.Members, func(a, b MemberStatus) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// publishProgress refreshes what Status reports about replication. It runs on
// the loop at every tick.
func (n *Node) publishProgress() {
	st := n.rn.Status()
	var prog map[uint64]progress
	if st.RaftState == raft.StateLeader {
		prog = make(map[uint64]progress, len(st.Progress))
		for id, pr := range st.Progress {
			prog[id] = progress{match: pr.Match, learner: pr.IsLearner}
		}
	}
	n.progress.Store(&prog)
	last, _ := n.storage.LastIndex()
	n.mu.Lock()
	n.learnersPub = n.learnersPub[:0]
	for id := range st.Config.Learners {
		n.learnersPub = append(n.learnersPub, id)
	}
	n.lastIndexPub = last
	n.mu.Unlock()
}

// WALDirect reports whether the node's WAL writes directly (see
// wal.WAL.Direct).
func (n *Node) WALDirect() bool { return n.wal.Direct() }

// Ready returns nil when the node knows a leader and has applied everything it
// knows to be committed.
func (n *Node) Ready() error {
	select {
	case <-n.donec:
		return n.stoppedErr()
	default:
	}
	if n.diskFull.Load() {
		return ErrNoSpace
	}
	if n.leader.Load() == raft.None {
		return ErrNoLeader
	}
	if !n.inConfig.Load() {
		return errors.New("joining: waiting for the leader's log or snapshot, which makes this node a member")
	}
	// Against the commit index of a tick ago: under load the newest commits
	// are always a moment from being applied, which is not catching up.
	if a, c := n.applied.Load(), n.commitTickAgo.Load(); a < c {
		return fmt.Errorf("catching up: applied %d of %d committed entries", a, n.commit.Load())
	}
	return nil
}

// run is the loop: the only goroutine that touches the RawNode.
func (n *Node) run() {
	defer close(n.donec)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()

	// Apply what the log already holds (bootstrap membership, or entries
	// committed before a restart) so that the membership is known.
	err := n.settle()
	// A single-voter group needs no election timeout to elect itself.
	if err == nil && n.stall == nil && len(n.confState.Voters) == 1 && n.confState.Voters[0] == n.raftID {
		if err = n.rn.Campaign(); err == nil {
			err = n.processReady()
		}
	}
	for err == nil {
		if n.stall != nil {
			err = n.stalled()
			continue
		}
		select {
		case <-ticker.C:
			n.commitTickAgo.Store(n.commit.Load())
			n.rn.Tick()
			n.reads.tick(uint64(n.cfg.ElectionTicks))
			n.publishProgress()
			if len(n.parked) > 0 {
				n.pruneParked()
			}
		case p := <-n.propc:
			n.propose(p)
			for i := 1; i < n.cfg.MaxProposalBatch; i++ {
				select {
				case p := <-n.propc:
					n.propose(p)
					continue
				default:
				}
				break
			}
		case <-n.reads.wake:
			// issue, below, takes the round the read opened.
		case m := <-n.recvc:
			n.step(m)
			for i := 1; i < 4096; i++ {
				select {
				case m := <-n.recvc:
					n.step(m)
					continue
				default:
				}
				break
			}
		case f := <-n.funcc:
			f()
		case id := <-n.unreachc:
			n.rn.ReportUnreachable(id)
		case d := <-n.snapRecvc:
			err = n.receiveSnapshot(d)
		case st := <-n.snapStatusc:
			n.reportSnapshot(st)
		case res := <-n.snapDone:
			err = n.finishSnapshot(res)
		case ev := <-n.app.events:
			err = n.appended(ev)
		case <-n.deferC():
			n.deferArmed = false
			n.flushDeferred()
		case <-n.stopc:
			n.shutdown(nil)
			return
		}
		if err == nil && n.stall == nil {
			n.issueReads()
			err = n.processReady()
			if err == nil && n.stall == nil && len(n.parked) > 0 && n.leader.Load() != raft.None {
				n.proposeParked()
				err = n.processReady()
			}
		}
		n.flushAcks()
		n.mu.Lock()
		removed := n.removed
		n.mu.Unlock()
		if err == nil && removed {
			n.logger.Info("this node was removed from the cluster; stopping")
			err = ErrRemoved
		}
	}
	if errors.Is(err, errStopRequested) {
		n.shutdown(nil)
		return
	}
	if !errors.Is(err, ErrRemoved) {
		n.logger.Error("node stopped by a fatal error", "err", err)
	}
	n.shutdown(err)
}

func (n *Node) propose(p *proposal) {
	n.mu.Lock()
	n.waiters[p.id] = p
	p.handed = true
	n.mu.Unlock()
	lattrace.Mark(lattrace.Proposed, p.id, 0)
	n.proposeOnce(p)
}

// proposeOnce hands p to Raft. A proposal Raft drops while a leader is known
// (a leadership transfer under way) is parked and retried; its request's
// deadline and leaderWait bound the wait. With no leader known it is refused
// at once.
func (n *Node) proposeOnce(p *proposal) {
	err := n.rn.Propose(p.data)
	if err == nil {
		return
	}
	if errors.Is(err, raft.ErrProposalDropped) && n.leader.Load() == raft.None {
		// No leader known: refuse at once (certainly not made), so that the
		// client tries another node. Waiting here for an election cost a
		// client of a node cut off from the majority its whole wait, on
		// every request: a soak with a fixed seed made 64,484 operations in
		// 3 minutes with waits of up to 3 s, 116,758 without.
		n.deliver(p.id, proposalResult{err: notMadeError{ErrNoLeader}})
		return
	}
	if errors.Is(err, raft.ErrProposalDropped) {
		n.mu.Lock()
		p.handed = false
		n.mu.Unlock()
		if p.parkedAt.IsZero() {
			p.parkedAt = time.Now()
		}
		n.parked = append(n.parked, p)
		return
	}
	n.deliver(p.id, proposalResult{err: err})
}

// proposeParked proposes again the parked proposals whose requests still wait.
func (n *Node) proposeParked() {
	parked := n.parked
	n.parked = nil
	for i, p := range parked {
		parked[i] = nil
		n.mu.Lock()
		_, waiting := n.waiters[p.id]
		p.handed = waiting
		n.mu.Unlock()
		if waiting {
			n.proposeOnce(p)
		}
	}
}

// pruneParked forgets parked proposals whose requests have given up, so that
// a long spell without a leader does not hold every refused write.
//
// A proposal parked for longer than leaderWait is refused: an election takes
// one to two election timeouts, so a node that has known no leader for longer
// is most likely cut off from the majority, and its client had better try
// another node (as the distkv CLI does on this answer) than wait out its
// whole deadline.
func (n *Node) pruneParked() {
	kept := n.parked[:0]
	var expired []*proposal
	wait := n.leaderWait()
	n.mu.Lock()
	for _, p := range n.parked {
		if _, waiting := n.waiters[p.id]; !waiting {
			continue
		}
		if time.Since(p.parkedAt) >= wait {
			expired = append(expired, p)
			continue
		}
		kept = append(kept, p)
	}
	n.mu.Unlock()
	clear(n.parked[len(kept):])
	n.parked = kept
	for _, p := range expired {
		n.deliver(p.id, proposalResult{err: notMadeError{fmt.Errorf("%w (none for %v)", ErrNoLeader, wait)}})
	}
}

// leaderWait is how long a write waits for a leader to be known: three
// election timeouts.
func (n *Node) leaderWait() time.Duration {
	return 3 * time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}

// failParked answers every parked proposal with err: they never reached the
// log, so err is definite.
func (n *Node) failParked(err error) {
	for _, p := range n.parked {
		n.deliver(p.id, proposalResult{err: err})
	}
	n.parked = nil
}

func (n *Node) deliver(id uint64, r proposalResult) {
	n.mu.Lock()
	p, ok := n.waiters[id]
	delete(n.waiters, id)
	n.mu.Unlock()
	if ok {
		p.done <- r
	}
}

// processReady handles every pending Ready. A returned error is fatal. While
// the log cannot be written for lack of space (n.stall), Readys wait.
func (n *Node) processReady() error {
	for n.stall == nil && n.rn.HasReady() {
		if err := n.handleReady(n.rn.Ready()); err != nil {
			return err
		}
	}
	return nil
}

// settle handles Readys until nothing is left to append or apply: at start, so
// that the membership in the log is known before the loop begins.
func (n *Node) settle() error {
	for {
		if err := n.processReady(); err != nil || n.stall != nil || n.appending == 0 {
			return err
		}
		if err := n.waitAppended(); err != nil {
			return err
		}
	}
}

// handleReady handles rd (Raft runs with asynchronous storage writes). Its
// messages to other nodes go out at once: Raft holds back those that vouch
// for something this node has yet to make durable (MsgAppResp, MsgVoteResp,
// MsgPreVoteResp) and hands them out as responses of the append they wait
// for, which the appender sends once it is durable. So a leader's appends
// reach the followers while it writes them itself (Raft thesis 10.2.1), and a
// follower forwards proposals and read requests, and answers heartbeats,
// without waiting for its own disk. A leader's entries count towards a commit
// only once durable here (its own MsgAppResp is a response of its append),
// and a candidate counts its own vote the same way, so a leader's term and
// vote are on disk before it sends anything as leader.
//
// Appends go to the appender, in order. Committed entries are applied here,
// on the loop; Raft hands out only entries already durable in this node's
// log. An append that installs a snapshot is done here too, once the appender
// has written everything before it.
//
// This stays correct when an append stalls on a full disk: entries count only
// where they are durable, and a quorum of such nodes is exactly Raft's commit
// rule; the stalled node steps nothing meanwhile (see stalled), so it commits
// and applies nothing either, and if it led, the followers elect a new leader
// and carry on.
func (n *Node) handleReady(rd raft.Ready) error {
	prevCommit := n.commit.Load()
	if rd.SoftState != nil {
		n.flushDeferred()
		n.leader.Store(rd.SoftState.Lead)
		// A new leader does not answer its predecessor's ReadIndex requests.
		n.reads.reissueAll()
		n.noticed = 0
		n.endLease()
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.Term)
		n.commit.Store(rd.HardState.Commit)
		lattrace.Mark(lattrace.Commit, rd.HardState.Commit, 0)
	}
	remote := n.remoteBuf[:0]
	// Proposals forwarded since the last append are in this one, if any.
	n.origins = append(n.origins[:0], n.forwarders...)
	var applies []raftpb.Message
	var snapAppend *raftpb.Message
	enqueued := false
	for i := range rd.Messages {
		m := &rd.Messages[i]
		switch {
		case m.To == raft.LocalAppendThread && m.Snapshot != nil:
			snapAppend = m
		case m.To == raft.LocalAppendThread:
			n.noteTermStart(m.Entries)
			n.noteForwarded(m.Entries)
			if snapAppend != nil {
				return fmt.Errorf("raft asked for an append after one that installs a snapshot in the same Ready")
			}
			if len(m.Entries) > 0 {
				lattrace.Mark(lattrace.Append, m.Entries[len(m.Entries)-1].Index, uint64(len(m.Entries)))
			}
			n.app.enqueue(*m)
			n.appending++
			enqueued = true
		case m.To == raft.LocalApplyThread:
			applies = append(applies, *m)
		default:
			lattrace.Mark(lattrace.Sent, m.Index+uint64(len(m.Entries)), uint64(m.Type))
			if m.Type == raftpb.MsgTimeoutNow {
				n.endLease() // the target's campaign is granted even within a lease
			}
			remote = append(remote, *m)
		}
	}
	if enqueued {
		// The appender's goroutines take their turn before the sends: with
		// one P (distkv dev gives each node GOMAXPROCS=1) they would run
		// only once the loop blocks, and each send below, a loopback write
		// that runs the receiver's TCP input, takes 10-20 us, so the frame
		// was written and its fdatasync begun tens of microseconds later.
		runtime.Gosched()
	}
	if snapAppend == nil && len(applies) > 0 && !holdsConfChange(applies) {
		// Committed entries are applied, and their proposers answered,
		// before the commit index goes out to the followers: a write
		// proposed here waits on nothing these messages bring. A member change is
		// applied after the sends, so that a removed member still hears of
		// the commit that removes it.
		if err := n.applyAll(applies); err != nil {
			return err
		}
		applies = nil
		runtime.Gosched() // the answered requests' handlers write first
	}
	remote = n.deferCommits(remote, prevCommit)
	originsFirst(remote, n.origins)
	n.send(remote, true)
	clear(remote)
	n.remoteBuf = remote[:0]
	answers, confirmed := n.reads.observe(rd.ReadStates, n.raftID, n.term.Load(), n.readFloor())
	n.send(n.withDeferred(answers), true)
	n.extendLease(confirmed.at, confirmed.term)
	// The batch just answered may have held back the next one.
	n.issueReads()
	// Reads whose index is applied already.
	n.reads.release(n.applied.Load())
	if snapAppend != nil {
		// Whatever was committed before the snapshot is applied before it.
		if err := n.applyAll(applies); err != nil {
			return err
		}
		applies = nil
		if err := n.waitAppended(); err != nil {
			return err
		}
		if len(n.held) > 0 {
			return fmt.Errorf("%d committed entries still held after every append was written", len(n.held))
		}
		p := &pendingAppend{msg: *snapAppend}
		err := n.appendOnLoop(p)
		if errors.Is(err, wal.ErrNoSpace) {
			n.startStall(p, err)
			return nil
		}
		if err != nil {
			return err
		}
	}
	if err := n.applyAll(applies); err != nil {
		return err
	}
	n.maybeSnapshot()
	return nil
}

// applyAll applies the committed entries of MsgStorageApply messages and
// steps their responses. Raft hands out only entries that are durable here;
// before they are applied, the applied mark records the last of them, so that
// a restart replays at least as far as this node applied before (stale reads
// never go back in time; see appliedmark.go).
func (n *Node) applyAll(applies []raftpb.Message) error {
	n.held = append(n.held, applies...)
	return n.applyHeld()
}

// applyHeld applies the held messages, unless the loop is stalled on a full
// disk (they are applied once the stall is over).
func (n *Node) applyHeld() error {
	if len(n.held) == 0 || n.stall != nil {
		return nil
	}
	if err := n.mark.advance(lastHeld(n.held)); errors.Is(err, wal.ErrNoSpace) {
		// Not on a file system that overwrites in place, but one may not:
		// like an append that finds the disk full, wait for space.
		n.startStall(&pendingAppend{markOnly: true}, err)
		return nil
	} else if err != nil {
		return err
	}
	for _, m := range n.held {
		if err := n.apply(m.Entries); err != nil {
			return err
		}
		for _, r := range m.Responses {
			n.step(r)
		}
	}
	clear(n.held)
	n.held = n.held[:0]
	n.reads.release(n.applied.Load())
	n.noteReplayed()
	n.maybeSnapshot()
	return nil
}

// lastHeld returns the index of the last entry of held, 0 if none.
func lastHeld(held []raftpb.Message) uint64 {
	last := uint64(0)
	for _, m := range held {
		if k := len(m.Entries); k > 0 {
			last = max(last, m.Entries[k-1].Index)
		}
	}
	return last
}

// appended takes an appender's report: steps the responses of what is now
// durable, or enters the stall it reports.
func (n *Node) appended(ev appendEvent) error {
	switch {
	case ev.err != nil:
		return ev.err
	case ev.stalled != nil:
		n.startStall(&pendingAppend{byAppender: true}, ev.stalled)
		return nil
	case ev.resumed:
		return n.applyHeld()
	}
	n.appending -= ev.n
	for _, m := range ev.local {
		n.step(m)
	}
	n.laterAcks = append(n.laterAcks, ev.remote...)
	return nil
}

// waitAppended waits until the appender has written everything handed to it.
// While it is stalled on a full disk, so is this wait (the node refuses writes
// meanwhile); Stop ends it.
func (n *Node) waitAppended() error {
	for n.appending > 0 {
		select {
		case ev := <-n.app.events:
			if ev.stalled != nil {
				n.diskFull.Store(true)
				n.logger.Warn("disk full: the log cannot be written; refusing writes until space is freed, retrying", "err", ev.stalled)
				continue
			}
			if ev.resumed {
				n.diskFull.Store(false)
				n.logger.Info("disk space available again: log written, writes resumed",
					"stalled_for", time.Since(ev.since).Round(time.Millisecond))
			}
			if err := n.appended(ev); err != nil {
				return err
			}
			n.flushAcks()
		case <-n.stopc:
			return errStopRequested
		}
	}
	return nil
}

// appendOnLoop makes p.msg, an append with a snapshot, durable on the loop,
// skipping the steps a previous attempt completed, and delivers its
// responses. It returns an error wrapping wal.ErrNoSpace, and may be called
// again for the same p, only before the append is durable.
func (n *Node) appendOnLoop(p *pendingAppend) error {
	if !p.snapDone {
		if err := n.installSnapshot(*p.msg.Snapshot, p); err != nil {
			return err
		}
		p.snapDone = true
	}
	batch := []raftpb.Message{p.msg}
	if err := n.app.persistNow(batch); err != nil {
		return err
	}
	for _, m := range n.app.deliver(batch, nil) {
		n.step(m)
	}
	return nil
}

// noteReplayed closes replayed once the state machine has caught up with the
// commit index found on disk at Open.
func (n *Node) noteReplayed() {
	if !n.replayedSet && n.applied.Load() >= n.replayTo {
		n.replayedSet = true
		close(n.replayed)
	}
}

// waitReplayed returns once the state machine has applied every entry known
// committed when the node opened, so that a stale read after a restart never
// shows an older state than the node could have shown before it.
func (n *Node) waitReplayed(ctx context.Context) error {
	select {
	case <-n.replayed:
		return nil
	default:
	}
	select {
	case <-n.replayed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (this node is still applying its log after a restart)", ctx.Err())
	case <-n.donec:
		return n.stoppedErr()
	}
}

// errStopRequested is how stalled reports that Stop was called.
var errStopRequested = errors.New("stop requested")

// startStall enters the stall of p, an append that found the disk full.
func (n *Node) startStall(p *pendingAppend, cause error) {
	p.since = time.Now()
	n.stall = p
	n.diskFull.Store(true)
	// Parked proposals never reached the log: refused like new ones.
	n.failParked(ErrNoSpace)
	// Reads already handed to Raft would wait for answers that the stalled
	// loop drops; a read has no effect, so failing it is always safe.
	n.reads.failAll(ErrNoSpace)
	n.logger.Warn("disk full: the log cannot be written; refusing writes until space is freed, retrying", "err", cause)
}

// stalled runs the loop while n.stall waits for disk space. Raft is neither
// ticked nor stepped: what it would do next may depend on the stalled append.
// Incoming messages are dropped (Raft retransmits); a stalled leader stops
// heartbeating, so its followers elect a new one and the cluster goes on
// writing without it. New proposals get ErrNoSpace at once: they never reach
// Raft, so they certainly were not written. Proposals already in Raft's log
// stay pending; they are answered once written and committed, or time out
// with their outcome unknown.
//
// stalled returns nil once the append is durable and the loop may go on,
// errStopRequested on Stop, or a fatal error.
func (n *Node) stalled() error {
	delay := stallRetryMin
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			if n.stall.byAppender {
				break // the appender retries by itself
			}
			var err error
			if n.stall.markOnly {
				err = n.mark.advance(lastHeld(n.held))
			} else {
				err = n.appendOnLoop(n.stall)
			}
			if err == nil {
				p := n.stall
				n.logger.Info("disk space available again: log written, writes resumed",
					"stalled_for", time.Since(p.since).Round(time.Millisecond), "retries", p.retries+1)
				if err := n.endStall(time.Since(p.since)); err != nil {
					return err
				}
				return n.resume()
			}
			if !errors.Is(err, wal.ErrNoSpace) {
				return err
			}
			n.stall.retries++
			delay = min(2*delay, stallRetryMax)
			timer.Reset(delay)
		case ev := <-n.app.events:
			if ev.err != nil {
				return ev.err
			}
			if ev.stalled != nil && n.stall.markOnly {
				// The appender found the disk full too: its resumed
				// report ends the stall (and the mark is retried then).
				n.stall.byAppender = true
				continue
			}
			if !ev.resumed {
				// Appends made durable before the stall are stepped once it
				// is over.
				n.appending -= ev.n
				n.stalledLocal = append(n.stalledLocal, ev.local...)
				n.send(ev.remote, true)
				continue
			}
			n.logger.Info("disk space available again: log written, writes resumed",
				"stalled_for", time.Since(ev.since).Round(time.Millisecond))
			if err := n.endStall(time.Since(ev.since)); err != nil {
				return err
			}
			if err := n.appended(ev); err != nil {
				return err
			}
			n.flushAcks()
			for _, m := range n.stalledLocal {
				n.step(m)
			}
			n.stalledLocal = nil
			return n.resume()
		case p := <-n.propc:
			p.done <- proposalResult{err: ErrNoSpace}
		case <-n.reads.wake:
			if r := n.reads.takeOpen(); r != nil {
				r.answer(n.stalledRead())
			}
		case <-n.recvc:
			n.dropped.Add(1)
		case <-n.unreachc:
		case d := <-n.snapRecvc:
			d.rec.Discard()
			d.done <- fmt.Errorf("snapshot not taken: %w", ErrNoSpace)
		case st := <-n.snapStatusc:
			n.snapStatusLater = append(n.snapStatusLater, st)
		case <-n.stopc:
			return errStopRequested
		}
	}
}

// endStall leaves the stall: Raft gets the ticks it missed and the snapshot
// transfer results that arrived meanwhile.
func (n *Node) endStall(stalledFor time.Duration) error {
	n.stall = nil
	n.catchUpTicks(stalledFor)
	for _, st := range n.snapStatusLater {
		n.reportSnapshot(st)
	}
	n.snapStatusLater = nil
	return nil
}

// resume handles what Raft has after a stall and then takes writes again.
func (n *Node) resume() error {
	err := n.applyHeld()
	if err == nil {
		err = n.processReady()
	}
	if n.stall == nil {
		// After processReady, so that a leader that stepped down in
		// catchUpTicks is never seen ready as leader.
		n.diskFull.Store(false)
	}
	return err
}

// catchUpTicks gives a leader the ticks its Raft missed while the loop was
// stalled. A stall longer than the election timeout means it sent no
// heartbeats meanwhile: its followers have stopped following it, so it must
// not go on believing it leads (and reporting itself ready) until a message
// from the new leader happens to arrive. Raft's quorum check, run by these
// ticks, makes it step down as it would have had it been ticked all along.
// A follower needs none: it hears from its leader within a heartbeat.
func (n *Node) catchUpTicks(stalledFor time.Duration) {
	if n.rn.BasicStatus().RaftState != raft.StateLeader {
		return
	}
	missed := int(stalledFor / n.cfg.TickInterval)
	// Two quorum checks: the first clears what was heard before the stall,
	// the second sees that nothing was heard since.
	missed = min(missed, 2*n.cfg.ElectionTicks+1)
	for range missed {
		n.rn.Tick()
	}
}

// stalledRead answers a linearizable read that arrives while the disk is full.
// The only leader that needs no round trip (which the stalled loop cannot
// make) is the sole voter of its group: nobody else can commit or
// acknowledge anything. A write is acknowledged only once applied, so once
// this node has applied every entry that was on disk when it started (any of
// which may have been acknowledged before a restart), every acknowledged
// write is in local state, and the entries not yet applied (the stalled
// Ready's among them) have been acknowledged to no one and are visible to no
// one: a read of local state now is linearizable.
func (n *Node) stalledRead() error {
	cs := n.confState
	if n.leader.Load() == n.raftID && len(cs.Voters) == 1 && cs.Voters[0] == n.raftID && len(cs.VotersOutgoing) == 0 &&
		n.applied.Load() >= n.recoveredLast {
		return nil
	}
	return ErrNoSpace
}

// reportSnapshot tells Raft how sending a snapshot to a follower ended.
func (n *Node) reportSnapshot(st snapStatus) {
	status := raft.SnapshotFinish
	if st.err != nil {
		status = raft.SnapshotFailure
	}
	n.rn.ReportSnapshot(st.to, status)
}

func (n *Node) apply(ents []raftpb.Entry) error {
	for i := range ents {
		e := &ents[i]
		switch e.Type {
		case raftpb.EntryNormal:
			if len(e.Data) == 0 {
				break // a new leader's empty entry
			}
			if len(e.Data) < 8 {
				return fmt.Errorf("entry %d: payload of %d bytes is too short", e.Index, len(e.Data))
			}
			id := binary.BigEndian.Uint64(e.Data)
			cmd, err := kv.UnmarshalCommand(e.Data[8:])
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			res, err := n.kv.Apply(e.Index, cmd)
			lattrace.Mark(lattrace.Applied, e.Index, id)
			if err != nil {
				return fmt.Errorf("apply entry %d: %w", e.Index, err)
			}
			n.deliver(id, proposalResult{res: res})
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("entry %d: decode conf change: %w", e.Index, err)
			}
			n.confState = *n.rn.ApplyConfChange(cc)
			n.inConfig.Store(inConfState(n.confState, n.raftID))
			n.endLease()
			n.applyMemberChange(cc.Type, cc.NodeID, cc.Context)
			n.deliver(cc.ID, proposalResult{})
		case raftpb.EntryConfChangeV2:
			var cc raftpb.ConfChangeV2
			if err := cc.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("entry %d: decode conf change: %w", e.Index, err)
			}
			n.confState = *n.rn.ApplyConfChange(cc)
			n.inConfig.Store(inConfState(n.confState, n.raftID))
			n.endLease()
			for _, c := range cc.Changes {
				n.applyMemberChange(c.Type, c.NodeID, cc.Context)
			}
		}
		n.applied.Store(e.Index)
	}
	return nil
}

// step hands a peer's message to Raft. Errors are for local messages or from
// unknown peers and are dropped like a lost packet.
func (n *Node) step(m raftpb.Message) {
	if n.holdsVotes(&m) {
		n.logger.Debug("vote request dropped: this node started less than an election timeout ago", "type", m.Type, "from", m.From)
		return
	}
	if m.From != n.raftID {
		lattrace.Mark(lattrace.Received, m.Index+uint64(len(m.Entries)), uint64(m.Type))
	}
	if nt, ok := decodeNotice(&m); ok && m.From != n.raftID {
		n.takeNotice(nt)
		return
	}
	if m.Type == raftpb.MsgReadIndex && m.From != n.raftID && len(m.Entries) == 1 && n.leader.Load() == n.raftID {
		// A follower's read: answered at once where its request is
		// enough, otherwise it joins this leader's next read round.
		if index, term, ok := n.readIndexAtOnce(m.From); ok {
			n.send(n.withDeferred([]raftpb.Message{{Type: raftpb.MsgReadIndexResp, To: m.From, From: n.raftID,
				Term: term, Index: index, Entries: m.Entries}}), true)
			return
		}
		n.reads.joinRemote(m.From, m.Entries[0].Data)
		return
	}
	if err := n.rn.Step(m); err != nil {
		n.logger.Debug("dropped message", "type", m.Type, "from", m.From, "err", err)
		return
	}
	if m.Type == raftpb.MsgProp && m.From != n.raftID && m.From != raft.None && !slices.Contains(n.forwarders, m.From) {
		n.forwarders = append(n.forwarders, m.From)
	}
	if m.Type == raftpb.MsgStorageAppendResp && m.Index > 0 && m.Snapshot == nil {
		// An append of this node is durable: as the leader, say so; as a
		// follower, it may complete what a notice lacked.
		n.noticeDurable(m.Index, m.LogTerm)
		n.commitNoticed()
	}
}

// adoptMembers takes the membership carried by a snapshot.
func (n *Node) adoptMembers(extra []byte) error {
	var ms memberState
	if err := json.Unmarshal(extra, &ms); err != nil {
		return fmt.Errorf("decode snapshot membership: %w", err)
	}
	n.confState = ms.ConfState
	n.inConfig.Store(inConfState(n.confState, n.raftID))
	n.mu.Lock()
	old := n.members
	n.members = map[uint64]Member{}
	for _, m := range ms.Members {
		n.members[RaftID(m.Name)] = m
	}
	cur := n.members
	n.mu.Unlock()
	if n.cfg.Transport != nil {
		for id := range old {
			if _, ok := cur[id]; !ok && id != n.raftID {
				n.cfg.Transport.RemovePeer(id)
			}
		}
		for id, m := range cur {
			if id != n.raftID {
				n.cfg.Transport.AddPeer(id, m.Peer)
			}
		}
	}
	return nil
}

func (n *Node) applyMemberChange(t raftpb.ConfChangeType, id uint64, ctx []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch t {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		var m Member
		if err := json.Unmarshal(ctx, &m); err == nil && m.Name != "" {
			n.members[id] = m
			if id != n.raftID && n.cfg.Transport != nil {
				n.cfg.Transport.AddPeer(id, m.Peer)
			}
		}
	case raftpb.ConfChangeUpdateNode:
		var m Member
		if err := json.Unmarshal(ctx, &m); err == nil && m.Name != "" {
			if _, known := n.members[id]; known {
				n.members[id] = m
				if id != n.raftID && n.cfg.Transport != nil {
					n.cfg.Transport.AddPeer(id, m.Peer)
				}
			}
		}
	case raftpb.ConfChangeRemoveNode:
		delete(n.members, id)
		if id == n.raftID {
			n.removed = true
		}
		if id != n.raftID && n.cfg.Transport != nil {
			go n.tellRemoved(id)
		}
	}
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
	if err := n.wal.Close(); err != nil && cause == nil {
		n.mu.Lock()
		n.err = fmt.Errorf("close wal: %w", err)
		n.mu.Unlock()
	}
	if err := n.mark.close(); err != nil && cause == nil {
		n.mu.Lock()
		n.err = fmt.Errorf("close applied mark: %w", err)
		n.mu.Unlock()
	}
	n.lock.Close()
}

// holdsConfChange reports whether applies, MsgStorageApply messages, carry a
// member change.
func holdsConfChange(applies []raftpb.Message) bool {
	for _, m := range applies {
		for _, e := range m.Entries {
			if e.Type == raftpb.EntryConfChange || e.Type == raftpb.EntryConfChangeV2 {
				return true
			}
		}
	}
	return false
}

// originsFirst moves the messages to the nodes in origins, the followers that
// forwarded proposals the leader now appends, to the front of msgs, keeping
// the order otherwise. Such a follower answers its client once the append is
// durable on it and the leader (see durable.go), so its copy goes first: the
// next loopback write, to the other follower, takes 10-20 us, and a follower
// it wakes may take the CPU before the leader's next write.
func originsFirst(msgs []raftpb.Message, origins []uint64) {
	if len(origins) == 0 || len(msgs) < 2 {
		return
	}
	rank := func(m *raftpb.Message) int {
		if slices.Contains(origins, m.To) {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(msgs, func(a, b raftpb.Message) int { return cmp.Compare(rank(&a), rank(&b)) })
}

// hasWaiters reports whether requests wait for proposals of this node. Called
// by the appender.
func (n *Node) hasWaiters() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.waiters) > 0
}

// flushAcks sends the responses the appender left to the loop.
func (n *Node) flushAcks() {
	if len(n.laterAcks) == 0 {
		return
	}
	n.send(n.laterAcks, true)
	clear(n.laterAcks)
	n.laterAcks = n.laterAcks[:0]
}
