package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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
// One goroutine at a time holds the writer's turn (busy) and writes to the
// socket. Raft messages sent with SendNow while nobody holds it and nothing
// else is queued are written by the sending goroutine itself with a
// non-blocking write (see enqueueRaft): a Raft loop answering an idle peer
// then costs no wake-up of the writer goroutine. What the socket does not
// take at once is left to the writer goroutine.
type conn struct {
	t  *Transport
	nc net.Conn
	// raw gives the socket for non-blocking inline writes; nil when nc is
	// not a plain TCP connection (TLS), which is written by the writer only.
	raw    syscall.RawConn
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
	// busy: a goroutine holds the writer's turn.
	busy bool
	// leftover holds bytes an inline write could not finish; they go out
	// before anything else.
	leftover []byte
	// Invariant: len(raftQ) <= cfg.QueueSize.
	raftQ  []queuedMsg
	ctrl   [][]byte     // encoded frames, written in order before anything else
	active []*outStream // streams with queued items, served one chunk each per round

	// Outbound only.
	nextID  uint64
	calls   map[uint64]chan callResult
	streams map[uint64]*outStream

	// Owned by the holder of the writer's turn.
	r     round
	buf   []byte
	spill []byte // what an inline write left unwritten, published as leftover

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
	if tc, ok := nc.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
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

// enqueueRaft queues as many of msgs as fit and returns how many. If now is
// set, nobody holds the writer's turn and nothing else waits, the caller
// takes the turn and writes the queue itself (writeInline) instead of waking
// the writer.
func (c *conn) enqueueRaft(shard uint64, msgs []raftpb.Message, now bool) int {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0
	}
	n := min(len(msgs), c.t.cfg.QueueSize-len(c.raftQ))
	for i := range n {
		c.raftQ = append(c.raftQ, queuedMsg{shard: shard, msg: msgs[i]})
	}
	inline := now && n > 0 && c.raw != nil && !c.busy && c.leftover == nil && len(c.ctrl) == 0 && len(c.active) == 0
	if inline {
		c.busy = true
		c.takeLocked(&c.r)
	}
	c.mu.Unlock()
	switch {
	case inline:
		c.writeInline()
	case n > 0:
		c.signal()
	}
	return n
}

// writeInline writes c.r, taken by a caller that holds the writer's turn,
// without blocking: what the socket does not take now becomes leftover for
// the writer goroutine. It then gives up the turn and wakes the writer if
// anything is left or was queued meanwhile.
func (c *conn) writeInline() {
	var err error
	c.buf, err = c.writeRound(c.buf[:0], &c.r, c.tryWrite)
	c.resetRound()
	if err != nil {
		c.close(fmt.Errorf("%w: write: %w", ErrConnLost, err))
		return
	}
	c.mu.Lock()
	if c.spill != nil {
		c.leftover, c.spill = c.spill, nil
	}
	c.busy = false
	more := c.leftover != nil || len(c.raftQ)+len(c.ctrl)+len(c.active) > 0
	c.mu.Unlock()
	if more {
		c.signal()
	}
}

// tryWrite writes b to the socket as far as it takes it without blocking and
// keeps the rest in c.spill; once something is spilled, later bytes are
// appended to it so that order holds.
func (c *conn) tryWrite(b []byte) error {
	if c.spill != nil {
		c.spill = append(c.spill, b...)
		return nil
	}
	if c.p != nil {
		c.p.writes.Add(1)
	}
	var n int
	var werr error
	err := c.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true // never wait for the socket: that is the writer's job
			}
		}
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The deadline the writer goroutine set for its last write has
		// passed: nothing was written (it is checked before the write).
		// Leave it all to the writer, which sets a new one.
		n = 0
	case err != nil:
		return err
	case werr == syscall.EAGAIN:
		n = 0
	case werr != nil:
		return werr
	}
	c.bytes.sent.Add(uint64(n))
	if n < len(b) {
		c.spill = append([]byte(nil), b[n:]...)
		if c.p != nil {
			c.p.spills.Add(1)
		}
	}
	return nil
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

// writeLoop writes whatever is queued whenever it is woken and nobody else
// holds the writer's turn; an inline writer that gives up the turn with
// something left wakes it again.
func (c *conn) writeLoop() {
	defer c.t.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		for {
			c.mu.Lock()
			if c.busy || c.closed {
				c.mu.Unlock()
				break
			}
			left := c.leftover
			c.leftover = nil
			c.takeLocked(&c.r)
			if left == nil && c.r.empty() {
				c.mu.Unlock()
				break
			}
			c.busy = true
			c.mu.Unlock()
			var err error
			if left != nil {
				err = c.write(left)
			}
			if err == nil {
				c.buf, err = c.writeRound(c.buf[:0], &c.r, c.write)
			}
			c.resetRound()
			if err != nil {
				c.close(fmt.Errorf("%w: write: %w", ErrConnLost, err))
				return
			}
			c.mu.Lock()
			c.busy = false
			c.mu.Unlock()
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
