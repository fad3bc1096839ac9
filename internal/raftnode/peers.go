package raftnode

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/snap"
	"github.com/distkv/distkv/internal/wal"
)

// Transport carries Raft traffic to the other members. It is implemented by
// package transport (TCP) and, in tests, by an in-memory network.
type Transport interface {
	// Send queues msgs for delivery; it never blocks and may drop (Raft
	// retransmits). It keeps no reference to the slice msgs, which the
	// caller reuses.
	Send(shard uint64, msgs []raftpb.Message)
	// SendSnapshot streams r to peer to and returns once the peer installed it
	// (nil) or failed to.
	SendSnapshot(ctx context.Context, to, shard uint64, r io.Reader) error
	// Call sends a request to peer to and returns its answer.
	Call(ctx context.Context, to, shard uint64, method uint8, payload []byte) ([]byte, error)
	// AddPeer makes peer id reachable at addr; RemovePeer forgets it.
	AddPeer(id uint64, addr string)
	RemovePeer(id uint64)
	// NamePeer gives node id its member name, which the transport's log
	// lines show instead of the id.
	NamePeer(id uint64, name string)
}

// Methods of Transport.Call between nodes.
const (
	// methodRemoved tells a node that the cluster removed it. A removed node
	// may never see the log entry that removes it (the others stop sending to
	// it once they apply it), so they tell it directly.
	methodRemoved uint8 = 1
)

// maxContacts bounds the senders whose last message HandleRaft records
// besides the members.
const maxContacts = 64

// snapshotTimeout bounds one snapshot transfer.
const snapshotTimeout = 10 * time.Minute

type snapStatus struct {
	to  uint64
	err error
}

type snapDelivery struct {
	msg  raftpb.Message
	rec  *snap.Received
	done chan error
}

// HandleRaft takes messages from a peer. It never blocks: when the loop is
// behind, messages are dropped and Raft retransmits.
func (n *Node) HandleRaft(shard uint64, msgs []raftpb.Message) {
	if shard != n.cfg.Shard || len(msgs) == 0 {
		return
	}
	n.mu.Lock()
	// The sender is whoever the message says: a stranger's is not kept
	// once there are many. A leadership transfer a follower forwards names
	// its target as From, not the follower.
	if m := &msgs[0]; m.Type != raftpb.MsgTransferLeader {
		if _, member := n.members[m.From]; member || len(n.contact) < maxContacts {
			n.contact[m.From] = time.Now()
		}
	}
	n.mu.Unlock()
	select {
	case n.recvc <- msgs:
	default:
		n.dropped.Add(uint64(len(msgs)))
	}
}

// PeerUnreachable reports that a message to peer to could not be sent.
func (n *Node) PeerUnreachable(to uint64) {
	select {
	case n.unreachc <- to:
	default:
	}
}

// HandleCall serves requests from peers. No method is defined yet: proposals
// reach the leader as Raft MsgProp messages.
func (n *Node) HandleCall(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
	if shard != n.cfg.Shard {
		return nil, fmt.Errorf("shard %d is not served here", shard)
	}
	switch method {
	case methodRemoved:
		// The payload is the index of the removal. A notice is for a
		// replica too far behind to apply its removal itself: one that is
		// a member of the configuration it knows and has applied less. A
		// replica that applied past it was added back since (a late
		// notice from another member must not stop it), and one that
		// knows no configuration yet (added back, waiting for its first
		// snapshot) is not the removed one.
		var at uint64
		if len(payload) == 8 {
			at = binary.BigEndian.Uint64(payload)
		} else if len(payload) != 0 {
			return nil, fmt.Errorf("removal notice of %d bytes", len(payload))
		}
		n.mu.Lock()
		_, member := n.members[from]
		_, self := n.members[n.raftID]
		stale := at != 0 && (!self || n.applied.Load() >= at)
		if member && !stale {
			n.removed = true
		}
		n.mu.Unlock()
		if !member {
			return nil, errors.New("only a member can say who was removed")
		}
		if stale {
			return nil, nil
		}
		// Wake the loop so that it notices.
		select {
		case n.funcc <- func() {}:
		case <-n.donec:
		case <-ctx.Done():
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unknown method %d", method)
}

// addPeer makes member m, whose Raft id is id, reachable through the
// transport, which names it m.Name in its log lines.
func (n *Node) addPeer(id uint64, m Member) {
	n.cfg.Transport.NamePeer(id, m.Name)
	n.cfg.Transport.AddPeer(id, m.Peer)
}

// noticeStranger tells from, which sent this group a message but is not in
// the configuration this node applied, that it was removed, at most once a
// second. A replica removed while its node was down (or cut off) never
// applies its removal and never hears from the leader again: it would sit
// with its old bounds, leaderless, answering nothing for its keys. The
// notice carries this node's applied index: the receiver stops only if it
// is a member in its own configuration and has applied less, which a
// replica added since (it has applied its addition, which this node has
// not) never is.
func (n *Node) noticeStranger(from uint64) {
	if n.cfg.Transport == nil || inConfState(n.confState, from) || !inConfState(n.confState, n.raftID) {
		return
	}
	now := time.Now()
	if at, ok := n.strangers[from]; ok && now.Sub(at) < time.Second {
		return
	}
	if n.strangers == nil {
		n.strangers = map[uint64]time.Time{}
	}
	n.strangers[from] = now
	notice := binary.BigEndian.AppendUint64(nil, n.applied.Load())
	n.logger.Debug("telling a node that sends messages but is not a member that it was removed", "node", n.memberName(from))
	n.goAsync(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, _ = n.cfg.Transport.Call(ctx, from, n.cfg.Shard, methodRemoved, notice)
	})
}

// tellRemoved lets member id, removed by the entry at index, know, then
// forgets it. It runs on a goroutine of its own (goAsync) and gives up when
// ctx ends.
func (n *Node) tellRemoved(ctx context.Context, id, index uint64) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	at := binary.BigEndian.AppendUint64(nil, index)
	for ctx.Err() == nil {
		if _, err := n.cfg.Transport.Call(ctx, id, n.cfg.Shard, methodRemoved, at); err == nil {
			break
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, back := n.members[id]; !back { // added back meanwhile: still a peer
		n.cfg.Transport.RemovePeer(id)
	}
}

// HandleSnapshot receives a snapshot stream from the leader: a Raft MsgSnap
// (4-byte length, message) followed by the snapshot file. The file is verified
// and made durable in a temporary place, then the message is stepped into Raft;
// the snapshot is installed when Raft accepts it. The sender learns the outcome.
//
// Once the file is received, HandleSnapshot waits at most
// Config.SnapshotInstallTimeout for the loop to take and install it, and
// returns an error at once if the node stops: a node stalled on a full disk
// (it refuses snapshots then) or busy does not hold the sender's stream. An
// error after the loop took the snapshot does not mean it will not be
// installed; Raft learns either way.
func (n *Node) HandleSnapshot(from, shard uint64, r io.Reader) error {
	if shard != n.cfg.Shard {
		return fmt.Errorf("shard %d is not served here", shard)
	}
	select {
	case <-n.donec:
		return n.stoppedErr() // nothing is received once the node has stopped
	default:
	}
	var lenb [4]byte
	if _, err := io.ReadFull(r, lenb[:]); err != nil {
		return fmt.Errorf("read snapshot message: %w", err)
	}
	size := binary.BigEndian.Uint32(lenb[:])
	if size > 64<<20 {
		return fmt.Errorf("snapshot message of %d bytes is too large", size)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("read snapshot message: %w", err)
	}
	var m raftpb.Message
	if err := m.Unmarshal(buf); err != nil || m.Type != raftpb.MsgSnap || m.Snapshot == nil {
		return fmt.Errorf("bad snapshot message (%v)", err)
	}
	rec, err := n.snaps.Receive(r)
	if err != nil {
		return err
	}
	if rec.Meta.Index != m.Snapshot.Metadata.Index || rec.Meta.Shard != shard {
		rec.Discard()
		return fmt.Errorf("snapshot file is shard %d index %d, message says index %d", rec.Meta.Shard, rec.Meta.Index, m.Snapshot.Metadata.Index)
	}
	d := &snapDelivery{msg: m, rec: rec, done: make(chan error, 1)}
	timer := time.NewTimer(n.cfg.SnapshotInstallTimeout)
	defer timer.Stop()
	select {
	case n.snapRecvc <- d:
	case <-n.donec:
		rec.Discard()
		return n.stoppedErr()
	case <-timer.C:
		rec.Discard()
		return n.snapshotWaitError(rec.Meta.Index, "taken")
	}
	// The loop owns rec now, and answers on d.done (buffered) even if
	// nobody waits any more.
	select {
	case err := <-d.done:
		return err
	case <-n.donec:
		return n.stoppedErr()
	case <-timer.C:
		return n.snapshotWaitError(rec.Meta.Index, "installed")
	}
}

// snapshotWaitError is HandleSnapshot's error when the loop did not take
// (or install) the snapshot at index within Config.SnapshotInstallTimeout.
func (n *Node) snapshotWaitError(index uint64, what string) error {
	err := fmt.Errorf("snapshot at index %d not %s within %v", index, what, n.cfg.SnapshotInstallTimeout)
	if n.diskFull.Load() {
		return fmt.Errorf("%w: %w", err, ErrNoSpace)
	}
	return fmt.Errorf("%w: this node is busy", err)
}

// refuseSnapshot answers a snapshot delivery that the loop cannot take now
// (it waits for its log to be written).
func (n *Node) refuseSnapshot(d *snapDelivery) {
	d.rec.Discard()
	if n.diskFull.Load() {
		d.done <- fmt.Errorf("snapshot not taken: %w", ErrNoSpace)
		return
	}
	d.done <- errors.New("snapshot not taken: this node is writing its log; try again")
}

// send hands messages to the transport; snapshots go out on their own stream.
func (n *Node) send(msgs []raftpb.Message) {
	if len(msgs) == 0 || n.cfg.Transport == nil {
		return
	}
	out := msgs
	if slices.ContainsFunc(msgs, func(m raftpb.Message) bool { return m.Type == raftpb.MsgSnap }) {
		out = n.sendSnapshots(msgs)
	}
	if len(out) > 0 {
		n.cfg.Transport.Send(n.cfg.Shard, out)
	}
}

// sendSnapshots starts the transfers of the MsgSnap messages of msgs and
// returns the other messages.
func (n *Node) sendSnapshots(msgs []raftpb.Message) []raftpb.Message {
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.Type == raftpb.MsgSnap && (!inConfState(m.Snapshot.Metadata.ConfState, m.To) || m.Snapshot.Metadata.Index < n.addedAt[m.To]) {
			// The newest snapshot predates the peer's addition: its Raft
			// would refuse it, or, if it was a member once before, apply its
			// own old removal. Take a new one at once; Raft sends that one
			// when it retries after the failure reported here.
			if !n.snapshotSoon {
				n.logger.Info("newest snapshot predates the member; taking a new one",
					"to", n.memberName(m.To), "snapshot_index", m.Snapshot.Metadata.Index)
			}
			n.snapshotSoon = true
			n.snapsSending.Add(1)
			n.goAsync(func(ctx context.Context) { n.reportSnapshotStatus(ctx, m.To, errSnapshotPredatesMember) })
			continue
		}
		if m.Type == raftpb.MsgSnap {
			n.snapsSending.Add(1)
			n.goAsync(func(ctx context.Context) { n.sendSnapshot(ctx, m) })
			continue
		}
		out = append(out, m)
	}
	return out
}

// errSnapshotPredatesMember fails a snapshot transfer to a member that the
// snapshot's configuration does not have yet.
var errSnapshotPredatesMember = errors.New("the newest snapshot predates this member")

// inConfState reports whether id is a voter or learner in cs.
func inConfState(cs raftpb.ConfState, id uint64) bool {
	// Called for every message a group steps (noticeStranger): no allocation.
	return slices.Contains(cs.Voters, id) || slices.Contains(cs.Learners, id) ||
		slices.Contains(cs.VotersOutgoing, id) || slices.Contains(cs.LearnersNext, id)
}

// reportSnapshotStatus tells the loop how a snapshot transfer to a peer
// ended, unless it has exited (ctx ended).
func (n *Node) reportSnapshotStatus(ctx context.Context, to uint64, err error) {
	defer n.snapsSending.Add(-1)
	select {
	case n.snapStatusc <- snapStatus{to: to, err: err}:
	case <-ctx.Done():
	}
}

// sendSnapshot streams the snapshot file of m, a MsgSnap, to its peer and
// reports how it ended. It gives up when ctx (the node's) ends.
func (n *Node) sendSnapshot(ctx context.Context, m raftpb.Message) {
	err := func() error {
		f, err := n.snaps.Open(n.cfg.Shard, m.Snapshot.Metadata.Index)
		if err != nil {
			return err
		}
		defer f.Close()
		hdr, err := m.Marshal()
		if err != nil {
			return err
		}
		var lenb [4]byte
		binary.BigEndian.PutUint32(lenb[:], uint32(len(hdr)))
		ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
		defer cancel()
		stream := io.MultiReader(bytes.NewReader(lenb[:]), bytes.NewReader(hdr), f)
		return n.cfg.Transport.SendSnapshot(ctx, m.To, n.cfg.Shard, stream)
	}()
	if err != nil {
		n.logger.Warn("snapshot transfer failed", "to", n.memberName(m.To), "index", m.Snapshot.Metadata.Index, "err", err)
	} else {
		n.metrics.snapshotsSent.Add(1)
		n.logger.Info("snapshot sent", "to", n.memberName(m.To), "index", m.Snapshot.Metadata.Index)
	}
	n.reportSnapshotStatus(ctx, m.To, err)
}

func (n *Node) memberName(id uint64) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if m, ok := n.members[id]; ok {
		return m.Name
	}
	return fmt.Sprintf("%x", id)
}

// receiveSnapshot steps a received MsgSnap into Raft on the loop. If Raft
// accepts it, the next Ready carries the snapshot, which the loop installs
// itself (appendOnLoop) before it goes on.
func (n *Node) receiveSnapshot(d *snapDelivery) error {
	if err := n.admitSnapshot(&d.msg); err != nil {
		d.rec.Discard()
		d.done <- err
		return nil
	}
	idx := d.msg.Snapshot.Metadata.Index
	n.pendingSnap = d.rec
	_ = n.rn.Step(d.msg)
	err := n.processReady()
	if n.pendingSnap != nil {
		// Raft did not take it (stale, or from an old term).
		n.pendingSnap.Discard()
		n.pendingSnap = nil
		if err == nil {
			d.done <- fmt.Errorf("snapshot at index %d not accepted (applied %d)", idx, n.applied.Load())
			return nil
		}
	}
	d.done <- err
	return err
}

// installSnapshot runs in appendOnLoop when a Ready carries a snapshot from the
// leader: the file goes into place first, then the WAL records it, then the
// in-memory log and the state machine take it. If the WAL is out of space it
// returns an error wrapping wal.ErrNoSpace and may be called again with the
// same p, which remembers that the file is in place.
func (n *Node) installSnapshot(s raftpb.Snapshot, p *pendingAppend) error {
	if p.snapFile == nil {
		rec := n.pendingSnap
		if rec == nil || rec.Meta.Index != s.Metadata.Index {
			return fmt.Errorf("raft produced snapshot %d but no such file was received", s.Metadata.Index)
		}
		n.pendingSnap = nil
		if err := rec.Install(); err != nil {
			return err
		}
		p.snapFile = &rec.Meta
	}
	// A crash before the marker is durable is harmless: recovery loads the
	// newest snapshot file whether or not the WAL mentions it.
	marker := n.snapshotMarker(*p.snapFile)
	if err := n.wal.Append([]wal.Record{marker}, true); err != nil {
		return fmt.Errorf("wal append snapshot marker: %w", err)
	}
	if err := n.storage.ApplySnapshot(s); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		return fmt.Errorf("apply snapshot to raft log: %w", err)
	}
	meta, found, err := n.loadSnapshot()
	if err != nil || !found || meta.Index != s.Metadata.Index {
		return fmt.Errorf("load installed snapshot %d: found %v at %d: %v", s.Metadata.Index, found, meta.Index, err)
	}
	if err := n.adoptMembers(meta.Extra); err != nil {
		return err
	}
	n.snapIndex = meta.Index
	n.keptSnaps = append(n.keptSnaps, meta.Index)
	n.applied.Store(meta.Index)
	n.snapsInstalled.Add(1)
	n.logger.Info("installed snapshot from leader", "index", meta.Index, "term", meta.Term)
	return nil
}

// reportSnapshot tells Raft how sending a snapshot to a follower ended.
func (n *Node) reportSnapshot(st snapStatus) {
	status := raft.SnapshotFinish
	if st.err != nil {
		status = raft.SnapshotFailure
	}
	n.rn.ReportSnapshot(st.to, status)
}
