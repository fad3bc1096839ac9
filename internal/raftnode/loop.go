package raftnode

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/lattrace"
)

// run is the loop: the only goroutine that touches the RawNode. Each turn it
// takes one event and then handles what Raft has to do (afterEvent); while the
// log is stalled on a full disk, stalled runs instead.
func (n *Node) run() {
	defer func() {
		n.cancel() // the node's other goroutines end (see goAsync)
		close(n.donec)
	}()
	err := n.begin()
	for err == nil {
		n.checkInvariants()
		if n.stall != nil {
			err = n.stalled()
			continue
		}
		select {
		case <-n.tickc:
			n.tick()
		case <-n.wakec:
			n.wake()
		case p := <-n.propc:
			n.wake()
			n.proposeQueued(p)
		case b := <-n.stampedc:
			n.wake()
			n.proposeStamped(b)
		case <-n.reads.wake:
			// afterEvent's issueReads takes the round the read opened.
			n.wake()
		case ms := <-n.recvc:
			n.stepQueued(ms)
		case f := <-n.funcc:
			n.wake()
			f()
		case <-n.unpinc:
			n.unpinWAL()
		case id := <-n.unreachc:
			n.rn.ReportUnreachable(id)
		case d := <-n.snapRecvc:
			n.wake()
			err = n.receiveSnapshot(d)
		case st := <-n.snapStatusc:
			n.reportSnapshot(st)
		case res := <-n.snapDone:
			if res.err == nil {
				n.metrics.snapshotsTaken.Add(1)
			}
			if err = n.finishSnapshot(res); err == nil {
				// Compacts that this snapshot did not cover get the next.
				n.maybeSnapshot()
			}
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
			err = n.afterEvent()
		}
		n.flushAcks()
		if err == nil && n.isRemoved() {
			n.logger.Info("this node was removed from the cluster; stopping")
			err = ErrRemoved
		}
	}
	n.exit(err)
}

// begin runs before the loop's first turn.
func (n *Node) begin() error {
	// Apply what the log already holds (bootstrap membership, or entries
	// committed before a restart) so that the membership is known.
	err := n.settle()
	// A single-voter group needs no election timeout to elect itself, nor
	// does the new range of a split on the node that led the range split.
	if err == nil && n.stall == nil && (n.cfg.Campaign || len(n.confState.Voters) == 1 && n.confState.Voters[0] == n.raftID) {
		if err = n.rn.Campaign(); err == nil {
			err = n.processReady()
		}
	}
	return err
}

// tick is one tick of the loop's ticker: Raft's clock, the retries of read
// rounds Raft has not answered (see readQueue.tick), what Status reports about
// replication, and the expiry of parked proposals.
func (n *Node) tick() {
	n.ticks++
	n.commitTickAgo.Store(n.commit.Load())
	if n.maybeQuiesce() {
		return // no heartbeat goes out after the quiesce heartbeat
	}
	n.rn.Tick()
	if n.cfg.Campaign && n.ticks <= uint64(n.cfg.ElectionTicks) && n.leader.Load() == raft.None {
		// A range new from a split: the other replicas open it as they
		// apply the split, maybe after this one's first campaign, whose
		// messages they then dropped. Campaigning again each tick of the
		// first election timeout elects it as soon as they have.
		_ = n.rn.Campaign()
	}
	n.reads.tick(uint64(n.cfg.ElectionTicks))
	n.publishProgress()
	if len(n.parked) > 0 {
		n.pruneParked()
	}
	if n.ticks%expiryTicks == 0 {
		n.maybeExpire()
	}
	if n.ticks%splitCheckTicks == 0 {
		n.maybeSplit()
	}
	if n.ticks%compactTicks == 0 {
		n.maybeCompact()
	}
}

// afterEvent runs after every event the loop takes, unless it is stalled: it
// hands Raft the read rounds opened meanwhile and handles its Readys; then,
// if a leader is known, it proposes the parked proposals again.
func (n *Node) afterEvent() error {
	n.issueReads()
	err := n.processReady()
	if err == nil && n.stall == nil && n.leaderChanged && n.leader.Load() != raft.None {
		n.leaderChanged = false
		n.reproposeAfterLeaderChange()
		err = n.processReady()
	}
	if err == nil && n.stall == nil && len(n.parked) > 0 && n.leader.Load() != raft.None {
		n.proposeParked()
		err = n.processReady()
	}
	if err == nil && n.stall == nil && len(n.parkedFwd) > 0 && n.leader.Load() != raft.None {
		n.proposeParkedForwarded()
		err = n.processReady()
	}
	return err
}

// isRemoved reports whether this node learned that the group removed it.
func (n *Node) isRemoved() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removed
}

// exit ends the loop on err: a Stop, this node's removal, or a fatal error,
// which is logged.
func (n *Node) exit(err error) {
	if errors.Is(err, errStopRequested) {
		n.shutdown(nil)
		return
	}
	if !errors.Is(err, ErrRemoved) {
		n.logger.Error("node stopped by a fatal error", "err", err)
	}
	n.shutdown(err)
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
	n.publishState(rd.SoftState, rd.HardState)
	remote, applies, snapAppend, err := n.route(rd.Messages)
	if err != nil {
		return err
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
	n.sendRemote(remote, prevCommit)
	n.answerReads(rd.ReadStates)
	if snapAppend != nil {
		// Whatever was committed before the snapshot is applied before it.
		if err := n.applyAll(applies); err != nil {
			return err
		}
		applies = nil
		if stalled, err := n.appendSnapshot(*snapAppend); err != nil || stalled {
			return err
		}
	}
	if err := n.applyAll(applies); err != nil {
		return err
	}
	n.maybeSnapshot()
	return nil
}

// publishState takes a Ready's soft and hard state. When the soft state
// (leader, role) changed, what belonged to the previous one ends: appends held
// for followers go out, read rounds are handed to Raft again, and the notice
// floor and the lease are reset. The term and commit index are published.
func (n *Node) publishState(ss *raft.SoftState, hs raftpb.HardState) {
	if ss != nil {
		n.flushDeferred()
		n.metrics.noteLeader(n.leader.Load(), ss.Lead)
		if ss.Lead != n.leader.Load() {
			n.leaderChanged = true
		}
		n.leader.Store(ss.Lead)
		// A new leader does not answer its predecessor's ReadIndex requests.
		n.reads.reissueAll()
		n.noticed = 0
		n.endLease()
	}
	if !raft.IsEmptyHardState(hs) {
		n.term.Store(hs.Term)
		n.commit.Store(hs.Commit)
		lattrace.Mark(lattrace.Commit, hs.Commit, 0)
	}
}

// route sorts a Ready's messages. Appends go to the appender at once, in
// order; route returns the messages to other nodes, the MsgStorageApply
// messages (committed entries to apply) and an append that installs a
// snapshot, which the loop does itself (appendSnapshot).
func (n *Node) route(msgs []raftpb.Message) (remote, applies []raftpb.Message, snapAppend *raftpb.Message, err error) {
	remote = n.remoteBuf[:0]
	// Proposals forwarded since the last append are in this one, if any.
	n.origins = append(n.origins[:0], n.forwarders...)
	enqueued := false
	for i := range msgs {
		m := &msgs[i]
		if m.To == raft.LocalAppendThread {
			n.peerGuard().noteAppend(m)
		}
		switch {
		case m.To == raft.LocalAppendThread && m.Snapshot != nil:
			snapAppend = m
		case m.To == raft.LocalAppendThread:
			n.noteTermStart(m.Entries)
			n.noteForwarded(m.Entries)
			if snapAppend != nil {
				return nil, nil, nil, fmt.Errorf("raft asked for an append after one that installs a snapshot in the same Ready")
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
	return remote, applies, snapAppend, nil
}

// sendRemote sends a Ready's messages to other nodes: a leader's appends that
// carry only a commit index may wait (deferCommits), and the followers whose
// proposals the leader appends get theirs first (originsFirst). remote's array
// is kept for the next Ready.
func (n *Node) sendRemote(remote []raftpb.Message, prevCommit uint64) {
	remote = n.deferCommits(remote, prevCommit)
	originsFirst(remote, n.origins)
	n.send(remote)
	clear(remote)
	n.remoteBuf = remote[:0]
}

// step hands a peer's message to Raft. Errors are for local messages or from
// unknown peers and are dropped like a lost packet.
func (n *Node) step(m raftpb.Message) {
	if n.holdsVotes(&m) {
		n.logger.Debug("vote request dropped: this node started less than an election timeout ago", "type", m.Type, "from", n.memberName(m.From))
		return
	}
	if m.From != n.raftID {
		lattrace.Mark(lattrace.Received, m.Index+uint64(len(m.Entries)), uint64(m.Type))
	}
	if m.From != n.raftID && m.From != raft.None && !raft.IsLocalMsgTarget(m.From) {
		n.noticeStranger(m.From) // a message from a peer, not from this node's storage threads
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
				Term: term, Index: index, Entries: m.Entries}}))
			return
		}
		n.reads.joinRemote(m.From, m.Entries[0].Data)
		return
	}
	if m.Type == raftpb.MsgProp && n.stampsHere() {
		// A follower's writes wait for their stamps (and are noted as its
		// when proposed); the rest go on.
		if m.Entries = n.queueForwarded(m.From, m.Entries); len(m.Entries) == 0 {
			return
		}
	}
	if err := n.rn.Step(m); err != nil {
		if m.Type == raftpb.MsgProp && errors.Is(err, raft.ErrProposalDropped) {
			n.parkRefused(m.From, m.Entries)
			return
		}
		n.logger.Debug("dropped message", "type", m.Type, "from", n.memberName(m.From), "err", err)
		return
	}
	if m.Type == raftpb.MsgProp {
		n.noteForwarder(m.From)
	}
	if m.Type == raftpb.MsgStorageAppendResp && m.Index > 0 && m.Snapshot == nil {
		// An append of this node is durable: as the leader, say so; as a
		// follower, it may complete what a notice lacked.
		n.noticeDurable(m.Index, m.LogTerm)
		n.commitNoticed()
	}
}

// noteForwarder records that this leader took proposals of from (see
// forwarders).
func (n *Node) noteForwarder(from uint64) {
	if from != n.raftID && from != raft.None && !slices.Contains(n.forwarders, from) {
		n.forwarders = append(n.forwarders, from)
	}
}

// stepQueued steps ms and the messages queued behind them, up to about 4096
// in all: messages from the network, which the guard screens first (see
// guard.go).
func (n *Node) stepQueued(ms []raftpb.Message) {
	g := n.peerGuard()
	g.begin(n.storage)
	for stepped := 0; ; {
		for _, m := range ms {
			if !isQuiesceMessage(&m) {
				n.wake()
				n.stepRemote(g, m)
				continue
			}
			n.stepRemote(g, m)
			n.quietOnHeartbeat(&m)
		}
		if stepped += len(ms); stepped >= 4096 {
			return
		}
		select {
		case ms = <-n.recvc:
			continue
		default:
		}
		return
	}
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
