package raftnode

import (
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/wal"
)

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
				err = n.advanceMark()
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
				n.send(ev.remote)
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
			return n.resume()
		case p := <-n.propc:
			p.done <- proposalResult{err: ErrNoSpace}
		case <-n.reads.wake:
			if r := n.reads.takeOpen(); r != nil {
				r.answer(n.stalledRead())
			}
		case ms := <-n.recvc:
			n.dropped.Add(uint64(len(ms)))
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
// The responses of the appends made durable during the stall are stepped
// first, however it ended (the appender's write or the loop's own retry).
func (n *Node) resume() error {
	for _, m := range n.stalledLocal {
		n.step(m)
	}
	n.stalledLocal = nil
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
