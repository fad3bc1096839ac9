package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/lattrace"
	"github.com/distkv/distkv/internal/wal"
)

// appender writes the log on goroutines of its own, so that the loop goes on
// stepping messages, proposals and reads, and applying what is committed,
// while the log is written and synced (Raft's asynchronous storage writes; the
// Raft thesis, 10.2.1). It takes the MsgStorageAppend messages of every Ready
// in order. Its writer writes all those queued since its last write as one
// WAL frame; its syncer then makes them
// durable with one fsync (together with whatever else was written meanwhile),
// gives their entries and hard state to the in-memory log, and delivers their
// responses: acknowledgements to other nodes go out on the transport from
// there, responses to this node's Raft go back to the loop (appendEvent),
// which steps them. A response is delivered only once what it answers is
// durable. The writer does not wait for the syncer, so the next frame is
// written while the previous one is being synced.
//
// A full disk does not fail the node: the writer reports the stall, keeps the
// messages and retries until space is freed or the node stops; the loop
// meanwhile refuses writes (see Node.stalled).
type appender struct {
	n *Node

	mu    sync.Mutex
	queue []raftpb.Message
	wake  chan struct{} // cap 1: queue is not empty

	toSync chan written // writer to syncer, in order
	// syncing is held by the syncer during an fsync. The writer takes its
	// next batch only when no fsync is under way: the appends that arrive
	// during one gather into one frame (fewer, larger frames compress better
	// and cost fewer writes), written while the syncer delivers.
	syncing sync.Mutex
	stop    chan struct{}
	done    sync.WaitGroup

	events chan appendEvent

	// Owned by the writer.
	durable raftpb.HardState // the last hard state written
	recs    []wal.Record
	// Owned by the syncer: responses to other nodes, reused.
	remote []raftpb.Message
}

// written is a batch of appends whose frame is written, for the syncer.
type written struct {
	batch []raftpb.Message
	sync  bool // the batch needs an fsync (entries, or a new term or vote)
}

// appendEvent reports to the loop.
type appendEvent struct {
	n       int              // appends made durable
	local   []raftpb.Message // their responses addressed to this node's Raft
	remote  []raftpb.Message // their responses to other nodes, for the loop to send
	stalled error            // the disk is full: retrying
	since   time.Time        // with resumed: when the stall began
	resumed bool             // the first write after a stall
	err     error            // fatal: the appender has stopped
}

func newAppender(n *Node, durable raftpb.HardState) *appender {
	return &appender{
		n:       n,
		wake:    make(chan struct{}, 1),
		toSync:  make(chan written, 64),
		stop:    make(chan struct{}),
		events:  make(chan appendEvent, 64),
		durable: durable,
	}
}

// start starts the writer and the syncer; close stops them and waits.
func (a *appender) start() {
	a.done.Add(2)
	a.n.goAsync(func(context.Context) { a.writer() })
	a.n.goAsync(func(context.Context) { a.syncer() })
}

// enqueue hands m (a MsgStorageAppend without a snapshot) to the appender.
func (a *appender) enqueue(m raftpb.Message) {
	a.mu.Lock()
	a.queue = append(a.queue, m)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// close stops the appender after the write and sync under way, if any, and
// waits for it. Appends not yet durable are dropped: nothing that depends on
// them has been sent.
func (a *appender) close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.done.Wait()
}

func (a *appender) writer() {
	defer a.done.Done()
	var batch []raftpb.Message
	for {
		select {
		case <-a.wake:
		case <-a.stop:
			return
		}
		a.syncing.Lock()
		a.syncing.Unlock() //nolint:staticcheck // waits for the fsync under way
		a.mu.Lock()
		batch, a.queue = a.queue, nil
		a.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		needSync, err := a.write(batch)
		if err != nil {
			a.report(appendEvent{err: err})
			return
		}
		a.n.host.relieveWAL()
		select {
		case a.toSync <- written{batch: batch, sync: needSync}:
		case <-a.stop:
			return
		}
	}
}

// write writes batch, retrying on a full disk (and tells the loop when
// a stall is over).
func (a *appender) write(batch []raftpb.Message) (needSync bool, err error) {
	needSync, err = a.writeFrame(batch)
	if errors.Is(err, wal.ErrNoSpace) {
		since := time.Now()
		if !a.report(appendEvent{stalled: err}) {
			return false, ErrStopped
		}
		delay := stallRetryMin
		for errors.Is(err, wal.ErrNoSpace) {
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-a.stop:
				timer.Stop()
				return false, ErrStopped
			}
			delay = min(2*delay, stallRetryMax)
			needSync, err = a.writeFrame(batch)
		}
		if err == nil && !a.report(appendEvent{resumed: true, since: since}) {
			return false, ErrStopped
		}
		return needSync, err
	}
	if err == nil && lattrace.Enabled() {
		lattrace.Mark(lattrace.Written, lastEntryIndex(batch), 0)
	}
	return needSync, err
}

func (a *appender) syncer() {
	defer a.done.Done()
	var ws []written
	for {
		select {
		case w := <-a.toSync:
			ws = append(ws[:0], w)
		case <-a.stop:
			return
		}
		// Everything written meanwhile shares the fsync.
	more:
		for {
			select {
			case w := <-a.toSync:
				ws = append(ws, w)
			default:
				break more
			}
		}
		ev := appendEvent{}
		if err := a.syncAndStore(ws); err != nil {
			a.report(appendEvent{err: err})
			return
		}
		if lattrace.Enabled() {
			lattrace.Mark(lattrace.Synced, lastEntryIndex(ws[len(ws)-1].batch), 0)
		}
		// A node with requests waiting on their writes (the origin of
		// proposals) leaves its responses to other nodes to the loop, which
		// sends them at the end of its turn (Node.flushAcks): its client's
		// write, committed once this append is durable and the leader's
		// durable notice or commit index is here, is then applied and
		// answered first, not after one loopback write (10-20 us) per
		// response. The leader counts these acknowledgements that much
		// later; when every node has requests waiting (under load), all of
		// them wait for the end of the loop's turn.
		toLoop := a.n.hasWaiters()
		for _, w := range ws {
			ev.n += len(w.batch)
			if toLoop {
				ev.local, ev.remote = a.responses(w.batch, ev.local, ev.remote)
			} else {
				ev.local = a.deliver(w.batch, ev.local)
			}
		}
		clear(ws)
		if !a.report(ev) {
			return
		}
	}
}

// report sends ev to the loop; false if the node is stopping.
func (a *appender) report(ev appendEvent) bool {
	select {
	case a.events <- ev:
		return true
	case <-a.stop:
		return false
	}
}

// writeFrame writes the entries and hard states of batch as one WAL frame (not
// synced) and says whether they need an fsync.
func (a *appender) writeFrame(batch []raftpb.Message) (needSync bool, err error) {
	recs := a.recs[:0]
	defer func() { clear(recs); a.recs = recs[:0] }()
	shard := a.n.cfg.Shard
	hs := a.durable
	for i := range batch {
		m := &batch[i]
		for j := range m.Entries {
			e := &m.Entries[j]
			data, err := e.Marshal()
			if err != nil {
				return false, err
			}
			recs = append(recs, wal.Record{Shard: shard, Type: wal.RecordEntry, Index: e.Index, Data: data})
			a.n.logBytes.Add(int64(len(data)))
			needSync = true
		}
		if mhs := hardState(m); !raft.IsEmptyHardState(mhs) {
			needSync = needSync || mhs.Term != hs.Term || mhs.Vote != hs.Vote
			hs = mhs
			data, err := hs.Marshal()
			if err != nil {
				return false, err
			}
			recs = append(recs, wal.Record{Shard: shard, Type: wal.RecordHardState, Data: data})
		}
		if m.Snapshot != nil {
			needSync = true
		}
	}
	if len(recs) > 0 {
		if err := a.n.wal.Append(recs, false); err != nil {
			return false, fmt.Errorf("wal append: %w", err)
		}
	}
	a.durable = hs
	return needSync, nil
}

// syncAndStore makes the written batches durable and gives them to the
// in-memory log, in order.
func (a *appender) syncAndStore(ws []written) error {
	for _, w := range ws {
		if w.sync {
			a.syncing.Lock()
			err := a.n.wal.Append(nil, true)
			a.syncing.Unlock()
			if err != nil {
				return fmt.Errorf("wal sync: %w", err)
			}
			break
		}
	}
	for _, w := range ws {
		for i := range w.batch {
			m := &w.batch[i]
			if mhs := hardState(m); !raft.IsEmptyHardState(mhs) {
				if err := a.n.storage.SetHardState(mhs); err != nil {
					return err
				}
			}
			if len(m.Entries) > 0 {
				if err := a.n.storage.Append(m.Entries); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// persistNow writes, syncs and stores batch on the caller's goroutine, for the
// loop while the appender is idle (an append that installs a snapshot).
func (a *appender) persistNow(batch []raftpb.Message) error {
	needSync, err := a.writeFrame(batch)
	if err != nil {
		return err
	}
	return a.syncAndStore([]written{{batch: batch, sync: needSync}})
}

// deliver sends the responses of a durable batch to other nodes on the
// transport and appends those to this node's Raft to local.
func (a *appender) deliver(batch []raftpb.Message, local []raftpb.Message) []raftpb.Message {
	local, remote := a.responses(batch, local, a.remote[:0])
	a.n.send(remote)
	clear(remote)
	a.remote = remote[:0]
	return local
}

// responses appends the responses of a durable batch to this node's Raft to
// local, and those to other nodes to remote.
func (a *appender) responses(batch, local, remote []raftpb.Message) ([]raftpb.Message, []raftpb.Message) {
	for i := range batch {
		if a.n.hooked(hookEarlyAck) {
			a.n.ackEarly(batch[i].Entries)
		}
		for _, r := range batch[i].Responses {
			if r.To == a.n.raftID {
				local = append(local, r)
			} else {
				remote = append(remote, r)
			}
		}
	}
	return local, remote
}

// lastEntryIndex is the index of the last entry of batch, 0 if it has none.
func lastEntryIndex(batch []raftpb.Message) uint64 {
	for i := len(batch) - 1; i >= 0; i-- {
		if es := batch[i].Entries; len(es) > 0 {
			return es[len(es)-1].Index
		}
	}
	return 0
}

// hardState is the hard state a MsgStorageAppend carries; empty if none.
func hardState(m *raftpb.Message) raftpb.HardState {
	return raftpb.HardState{Term: m.Term, Vote: m.Vote, Commit: m.Commit}
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
// meanwhile, and snapshots sent to it); Stop ends it.
func (n *Node) waitAppended() error {
	for n.appending > 0 {
		select {
		case d := <-n.snapRecvc:
			n.refuseSnapshot(d)
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

// appendSnapshot makes m, an append that installs a snapshot, durable on the
// loop, once the appender has written everything handed to it before. It
// reports whether the disk was full: then the stall retries it (see stalled).
func (n *Node) appendSnapshot(m raftpb.Message) (stalled bool, err error) {
	if err := n.waitAppended(); err != nil {
		return false, err
	}
	if len(n.held) > 0 {
		return false, fmt.Errorf("%d committed entries still held after every append was written", len(n.held))
	}
	p := &pendingAppend{msg: m}
	err = n.appendOnLoop(p)
	if errors.Is(err, wal.ErrNoSpace) {
		n.startStall(p, err)
		return true, nil
	}
	return false, err
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

// flushAcks sends the responses the appender left to the loop.
func (n *Node) flushAcks() {
	if len(n.laterAcks) == 0 {
		return
	}
	n.send(n.laterAcks)
	clear(n.laterAcks)
	n.laterAcks = n.laterAcks[:0]
}
