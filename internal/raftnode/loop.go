package raftnode

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/lattrace"
	"github.com/distkv/distkv/internal/wal"
)

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
