package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

const (
	// raftFrameTarget is the body size at which a raft frame is closed and
	// the next begun, so a frame's checksum is verified before much of the
	// next one arrives.
	raftFrameTarget = 1 << 20
	// maxWriteBuf is the most that is encoded before being written out.
	maxWriteBuf = 4 << 20
	// maxServing bounds the calls an accepted connection serves at once;
	// beyond it calls are answered with an error at once.
	maxServing = 1024
)

// conn is one established connection. A connection we dialed (outbound, p
// set) carries our Raft messages, calls and snapshot streams to the peer and
// brings back replies, credits and snapshot results; a connection the peer
// dialed (inbound, p nil) is the mirror image. Each has a reader and a writer
// goroutine. The writer drains everything queued in one go into one buffer
// and one write, so a burst of messages costs one system call.
//
// Only the writer goroutine writes to the socket. Once woken it first lets
// every other goroutine that is runnable at that moment run (see writeLoop),
// so that the messages the node's other Raft groups are about to send this
// peer join the same write.
type conn struct {
	t      *Transport
	nc     net.Conn
	fr     *frameReader
	peerID uint64
	p      *peer // outbound only

	wake       chan struct{} // cap 1: something was queued
	done       chan struct{} // closed by close
	readerDone chan struct{} // closed when the reader goroutine returns
	closeOnce  sync.Once
	err        error // why it closed; written before done is closed

	lastRecv atomic.Int64 // unix nanoseconds of the last frame read
	bytes    *linkBytes   // the peer's byte counters (linkstats.go)
	prev     *conn        // inbound: the connection this one replaced

	// ctx is cancelled by close; handlers of an inbound connection run under it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	// Invariant: len(raftQ) <= cfg.QueueSize.
	raftQ  []queuedMsg
	ctrl   [][]byte     // encoded frames, written in order before anything else
	active []*outStream // streams with queued items, served one chunk each per round

	// Outbound only.
	nextID  uint64
	calls   map[uint64]chan callResult
	streams map[uint64]*outStream

	// Owned by the writer goroutine.
	r   round
	buf []byte

	// Inbound only.
	serving    map[uint64]context.CancelFunc
	inStreams  map[uint64]*inStream
	lastStream uint64 // highest stream id begun; ids must grow
}

type queuedMsg struct {
	shard uint64
	msg   raftpb.Message
}

func newConn(t *Transport, nc net.Conn, fr *frameReader, peerID uint64, p *peer) *conn {
	ctx, cancel := context.WithCancel(t.ctx)
	c := &conn{
		t: t, nc: nc, fr: fr, peerID: peerID, p: p,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		bytes:      t.linkBytesFor(peerID),
	}
	c.lastRecv.Store(time.Now().UnixNano())
	if p != nil {
		c.calls = map[uint64]chan callResult{}
		c.streams = map[uint64]*outStream{}
	} else {
		c.serving = map[uint64]context.CancelFunc{}
		c.inStreams = map[uint64]*inStream{}
	}
	return c
}

func (c *conn) start() {
	c.t.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
}

// close shuts the connection down once; err (ErrClosed, or wrapping
// ErrUnknownPeer or ErrConnLost) is what pending calls and streams fail with.
func (c *conn) close(err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.err = err
		dropped := len(c.raftQ)
		clear(c.raftQ)
		c.raftQ = nil
		c.ctrl = nil
		c.active = nil
		calls := c.calls
		c.calls = nil
		inStreams := c.inStreams
		c.inStreams = nil
		c.mu.Unlock()

		c.nc.Close()
		c.cancel()
		close(c.done)
		for _, ch := range calls {
			ch <- callResult{err: err}
		}
		for _, s := range inStreams {
			s.finish(fmt.Errorf("%w: %w", ErrAborted, err))
		}
		if c.p != nil {
			if dropped > 0 {
				c.p.dropped.Add(uint64(dropped))
			}
		} else {
			c.t.forgetInbound(c)
		}
	})
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueueRaft queues as many of msgs as fit and returns how many.
func (c *conn) enqueueRaft(shard uint64, msgs []raftpb.Message) int {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0
	}
	n := min(len(msgs), c.t.cfg.QueueSize-len(c.raftQ))
	for i := range n {
		c.raftQ = append(c.raftQ, queuedMsg{shard: shard, msg: msgs[i]})
	}
	c.mu.Unlock()
	if n > 0 {
		c.signal()
	}
	return n
}

// enqueueCtrl queues an encoded frame; it reports false if the connection
// is closed.
func (c *conn) enqueueCtrl(frame []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.ctrl = append(c.ctrl, frame)
	c.mu.Unlock()
	c.signal()
	return true
}

// round is what the writer takes from the queues in one go.
type round struct {
	raft  []queuedMsg
	ctrl  [][]byte
	items []streamItem
}

func (r *round) empty() bool { return len(r.raft)+len(r.ctrl)+len(r.items) == 0 }

// takeLocked moves everything queued into r, except that it takes at most one data
// chunk per snapshot stream, so that a snapshot delays other traffic by at
// most one chunk per round. r's slices must be empty; they are swapped in as
// the new queues, so steady traffic allocates nothing.
//
// c.mu must be held.
func (c *conn) takeLocked(r *round) {
	r.raft, c.raftQ = c.raftQ, r.raft
	r.ctrl, c.ctrl = c.ctrl, r.ctrl
	keep := c.active[:0]
	for _, s := range c.active {
		for len(s.q) > 0 {
			it := s.q[0]
			s.q[0] = streamItem{}
			s.q = s.q[1:]
			r.items = append(r.items, it)
			if it.typ == frameSnapData {
				break
			}
		}
		if len(s.q) > 0 {
			keep = append(keep, s)
		} else {
			s.queued = false
		}
	}
	clear(c.active[len(keep):])
	c.active = keep
}

// writeLoop writes whatever is queued whenever it is woken.
//
// Woken, it first yields the processor once: every goroutine runnable at
// that moment runs before it takes the queues. On a node with many Raft
// groups those are the other groups' loops and appenders, each about to
// queue its messages for this peer; without the yield the writer, woken
// first, would run straight after the group that woke it (the scheduler
// runs a goroutine just made runnable next) and write that group's messages
// alone. With it one write, and one wake-up of the peer's reader, carries
// them all. When nothing else is runnable the yield returns at once.
func (c *conn) writeLoop() {
	defer c.t.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		runtime.Gosched()
		for {
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				return
			}
			c.takeLocked(&c.r)
			if c.r.empty() {
				c.mu.Unlock()
				break
			}
			c.mu.Unlock()
			var err error
			c.buf, err = c.writeRound(c.buf[:0], &c.r, c.write)
			c.resetRound()
			if err != nil {
				c.close(fmt.Errorf("%w: write: %w", ErrConnLost, err))
				return
			}
		}
	}
}

// resetRound empties c.r and drops an overgrown c.buf after a round.
func (c *conn) resetRound() {
	if cap(c.buf) > maxWriteBuf {
		c.buf = nil
	}
	r := &c.r
	clear(r.raft)
	clear(r.ctrl)
	clear(r.items)
	r.raft, r.ctrl, r.items = r.raft[:0], r.ctrl[:0], r.items[:0]
}

// writeRound encodes r into buf and hands it to write, in pieces of about
// maxWriteBuf if it is large.
func (c *conn) writeRound(buf []byte, r *round, write func([]byte) error) ([]byte, error) {
	var err error
	flush := func(force bool) {
		if err == nil && len(buf) > 0 && (force || len(buf) >= maxWriteBuf) {
			err = write(buf)
			buf = buf[:0]
		}
	}
	for _, f := range r.ctrl {
		buf = append(buf, f...)
		flush(false)
	}

	maxBody := c.t.cfg.MaxFrameSize
	target := min(maxBody, raftFrameTarget)
	start, sent, dropped := -1, 0, 0
	for i := range r.raft {
		q := &r.raft[i]
		size := q.msg.Size()
		rec := uvarintLen(q.shard) + uvarintLen(uint64(size)) + size
		if rec > maxBody {
			dropped++
			c.t.log.Error("raft message exceeds the frame size limit; dropped",
				"peer", c.t.peerName(c.peerID), "type", q.msg.Type, "bytes", size, "limit", maxBody)
			continue
		}
		if start >= 0 {
			if body := len(buf) - start - headerSize; body >= target || body+rec > maxBody {
				finishFrame(buf, start)
				start = -1
				flush(false)
			}
		}
		if start < 0 {
			buf, start = beginFrame(buf, frameRaft)
		}
		buf = binary.AppendUvarint(buf, q.shard)
		buf = binary.AppendUvarint(buf, uint64(size))
		buf = slices.Grow(buf, size)
		if _, merr := q.msg.MarshalToSizedBuffer(buf[len(buf) : len(buf)+size]); merr != nil {
			// Cannot happen for a message whose Size we just took.
			panic(fmt.Sprintf("transport: marshal raft message: %v", merr))
		}
		buf = buf[:len(buf)+size]
		sent++
	}
	if start >= 0 {
		finishFrame(buf, start)
	}

	for _, it := range r.items {
		switch it.typ {
		case frameSnapData:
			buf = appendIDFrame(buf, frameSnapData, it.id, it.data)
			c.t.putChunk(it.buf)
		default:
			buf = append(buf, it.frame...)
		}
		flush(false)
	}
	flush(true)

	if c.p != nil {
		if err == nil {
			c.p.sent.Add(uint64(sent))
		} else {
			dropped += sent
		}
		if dropped > 0 {
			c.p.dropped.Add(uint64(dropped))
			c.t.reportUnreachable(c.peerID)
		}
	}
	return buf, err
}

func (c *conn) write(b []byte) error {
	if c.p != nil {
		c.p.writes.Add(1)
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.t.cfg.WriteTimeout))
	n, err := c.nc.Write(b)
	c.bytes.sent.Add(uint64(n))
	return err
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (c *conn) readLoop() {
	defer c.t.wg.Done()
	defer close(c.readerDone)
	if c.prev != nil {
		// Deliver nothing from this connection before the one it replaced
		// has delivered all it read, so per-shard order holds across them.
		<-c.prev.readerDone
		c.prev = nil
	}
	for {
		typ, body, err := c.fr.next()
		if err == nil {
			c.bytes.received.Add(uint64(headerSize + len(body)))
			c.lastRecv.Store(time.Now().UnixNano())
			err = c.dispatch(typ, body)
		}
		if err != nil {
			if errors.Is(err, ErrProtocol) && c.ctx.Err() == nil {
				c.t.log.Warn("closing peer connection: protocol error", "peer", c.t.peerName(c.peerID), "err", err)
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("closed by peer")
			}
			c.close(fmt.Errorf("%w: %w", ErrConnLost, err))
			return
		}
	}
}

// dispatch handles one frame. Errors close the connection.
func (c *conn) dispatch(typ frameType, body []byte) error {
	if c.p != nil {
		switch typ {
		case frameReply:
			return c.onReply(body)
		case frameSnapCredit:
			return c.onCredit(body)
		case frameSnapResult:
			return c.onResult(body)
		}
	} else {
		switch typ {
		case frameRaft:
			return c.onRaft(body)
		case frameCall:
			return c.onCall(body)
		case frameCancel:
			return c.onCancel(body)
		case frameSnapBegin:
			return c.onSnapBegin(body)
		case frameSnapData:
			return c.onSnapData(body)
		case frameSnapEnd, frameSnapAbort:
			return c.onSnapEnd(typ, body)
		}
	}
	return fmt.Errorf("%w: unexpected %s frame", ErrProtocol, typ)
}

// decodeRaft decodes a raft frame body into runs of messages of one shard.
// Every run's slice is capped, so a handler appending to it cannot overwrite
// the next run.
func decodeRaft(body []byte, fn func(shard uint64, msgs []raftpb.Message)) error {
	var msgs []raftpb.Message
	var shards []uint64
	err := raftRecords(body, func(shard uint64, b []byte) error {
		if err := checkMessage(b); err != nil {
			return err
		}
		var m raftpb.Message
		if err := m.Unmarshal(b); err != nil {
			return fmt.Errorf("%w: raft message: %v", ErrProtocol, err)
		}
		msgs = append(msgs, m)
		shards = append(shards, shard)
		return nil
	})
	if err != nil {
		return err
	}
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && shards[j] == shards[i] {
			j++
		}
		fn(shards[i], msgs[i:j:j])
		i = j
	}
	return nil
}

func (c *conn) onRaft(body []byte) error {
	return decodeRaft(body, c.t.cfg.Handler.HandleRaft)
}

// bytesClone copies b; unlike bytes.Clone it returns nil for empty input.
func bytesClone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}
