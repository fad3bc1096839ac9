package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

const (
	// snapChunkSize is the largest snapshot data frame body after the stream
	// id. A chunk is the unit of interleaving: other traffic waits for at
	// most one chunk per stream.
	snapChunkSize = 64 << 10
	// snapWindow is how many chunks of a stream may be in flight or buffered
	// at the receiver, unread: the receiver's memory per stream is bounded by
	// snapWindow*snapChunkSize, the sender's by about the same.
	snapWindow = 8
	// maxInStreams bounds the snapshot streams an accepted connection
	// receives at once; more are refused.
	maxInStreams = 8
)

// streamItem is one frame of an outgoing snapshot stream.
type streamItem struct {
	typ   frameType
	id    uint64
	data  []byte  // snap-data: the chunk, in buf
	buf   *[]byte // snap-data: pooled buffer returned after writing
	frame []byte  // other types: the encoded frame
}

// outStream is the sending side of a snapshot stream on an outbound conn.
type outStream struct {
	id     uint64
	q      []streamItem  // guarded by conn.mu
	queued bool          // in conn.active; guarded by conn.mu
	credit int           // chunks the receiver has room for; guarded by conn.mu
	signal chan struct{} // cap 1: credit arrived
	result chan error    // cap 1: the receiver's verdict
}

func (t *Transport) getChunk() *[]byte {
	if b, ok := t.chunkPool.Get().(*[]byte); ok {
		*b = (*b)[:cap(*b)]
		return b
	}
	b := make([]byte, snapChunkSize)
	return &b
}

func (t *Transport) putChunk(b *[]byte) {
	if b != nil {
		t.chunkPool.Put(b)
	}
}

// SendSnapshot streams r to peer `to` as a snapshot of shard and returns when
// the peer's Handler.HandleSnapshot has returned: nil if it returned nil,
// otherwise an error wrapping ErrRemote with its text. r is read in chunks
// as the receiver makes room (flow control), so neither side holds more than
// a few hundred KiB of the stream, and the chunks are interleaved with Raft
// messages and calls on the same connection.
//
// If ctx ends or reading r fails, the stream is aborted (the receiver's
// reader returns an error wrapping ErrAborted) and the error returned.
// Connection states behave as for Call: ErrUnreachable, ErrConnLost,
// ErrUnknownPeer, ErrClosed. A Read of r that blocks is not interrupted by ctx.
func (t *Transport) SendSnapshot(ctx context.Context, to, shard uint64, r io.Reader) error {
	p, err := t.peer(to)
	if err != nil {
		return err
	}
	c, err := p.waitConn(ctx)
	if err != nil {
		return err
	}
	s := &outStream{credit: snapWindow, signal: make(chan struct{}, 1), result: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.nextID++
	s.id = c.nextID
	c.streams[s.id] = s
	c.pushLocked(s, streamItem{typ: frameSnapBegin, frame: appendUvarints(nil, frameSnapBegin, s.id, shard)})
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.streams, s.id)
		c.mu.Unlock()
	}()

	abort := func(reason error) {
		c.mu.Lock()
		if !c.closed {
			c.pushLocked(s, streamItem{typ: frameSnapAbort, frame: appendIDFrame(nil, frameSnapAbort, s.id, []byte(errText(reason)))})
		}
		c.mu.Unlock()
	}
	for {
		// Wait for room at the receiver.
		for {
			c.mu.Lock()
			credit := s.credit
			c.mu.Unlock()
			if credit > 0 {
				break
			}
			select {
			case <-s.signal:
			case err := <-s.result:
				return earlyResult(err)
			case <-c.done:
				return c.err
			case <-ctx.Done():
				abort(ctx.Err())
				return ctx.Err()
			}
		}
		select {
		case err := <-s.result:
			return earlyResult(err)
		case <-c.done:
			return c.err
		default:
		}
		if err := ctx.Err(); err != nil {
			abort(err)
			return err
		}
		buf := t.getChunk()
		n, rerr := io.ReadFull(r, *buf)
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			t.putChunk(buf)
			return c.err
		}
		if n > 0 {
			s.credit--
			c.pushLocked(s, streamItem{typ: frameSnapData, id: s.id, data: (*buf)[:n], buf: buf})
		} else {
			t.putChunk(buf)
		}
		c.mu.Unlock()
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err := fmt.Errorf("read snapshot: %w", rerr)
			abort(err)
			return err
		}
	}
	c.mu.Lock()
	if !c.closed {
		c.pushLocked(s, streamItem{typ: frameSnapEnd, frame: appendIDFrame(nil, frameSnapEnd, s.id, nil)})
	}
	c.mu.Unlock()
	select {
	case err := <-s.result:
		return err
	case <-c.done:
		return c.err
	case <-ctx.Done():
		abort(ctx.Err())
		return ctx.Err()
	}
}

// earlyResult is the error for a verdict that came before the stream's end.
func earlyResult(err error) error {
	if err == nil {
		return fmt.Errorf("%w: receiver returned before the end of the snapshot stream", ErrRemote)
	}
	return err
}

// pushLocked queues a frame of stream s. c.mu must be held.
func (c *conn) pushLocked(s *outStream, it streamItem) {
	s.q = append(s.q, it)
	if !s.queued {
		s.queued = true
		c.active = append(c.active, s)
	}
	c.signal()
}

// onCredit gives a stream room for more chunks.
func (c *conn) onCredit(body []byte) error {
	var id, n uint64
	if err := decodeUvarints(body, &id, &n); err != nil {
		return err
	}
	if n == 0 || n > snapWindow {
		return fmt.Errorf("%w: credit of %d chunks", ErrProtocol, n)
	}
	c.mu.Lock()
	s := c.streams[id]
	if s != nil {
		s.credit += int(n)
		if s.credit > snapWindow {
			c.mu.Unlock()
			return fmt.Errorf("%w: credit beyond the window for stream %d", ErrProtocol, id)
		}
	}
	c.mu.Unlock()
	if s != nil {
		select {
		case s.signal <- struct{}{}:
		default:
		}
	}
	return nil
}

// onResult delivers the receiver's verdict on a stream.
func (c *conn) onResult(body []byte) error {
	id, _, remote, err := decodeStatus(body)
	if err != nil {
		return err
	}
	c.mu.Lock()
	s := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if s != nil {
		s.result <- remote
	}
	return nil
}

// inStream is the receiving side of a snapshot stream: the io.Reader given
// to Handler.HandleSnapshot. The connection's reader goroutine pushes chunks,
// the handler reads them; every chunk read completely returns one chunk of
// credit to the sender.
type inStream struct {
	c  *conn
	id uint64

	mu     sync.Mutex
	chunks []*[]byte // received, unread; each holds one chunk's bytes
	cur    []byte    // unread rest of the chunk being read
	curBuf *[]byte
	// Invariant: held <= snapWindow (the sender's credit guarantees it; a
	// sender that overruns it breaks the protocol).
	held  int   // chunks received and not completely read
	end   error // io.EOF after snap-end, or why the stream was aborted
	gone  bool  // the handler returned; nothing more is buffered
	ready chan struct{}
}

// push buffers a chunk. It fails if the sender overran its credit.
func (s *inStream) push(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone || s.end != nil {
		return nil
	}
	if s.held >= snapWindow {
		return fmt.Errorf("%w: snapshot stream %d overran its window", ErrProtocol, s.id)
	}
	b := s.c.t.getChunk()
	*b = (*b)[:copy((*b)[:cap(*b)], data)]
	s.chunks = append(s.chunks, b)
	s.held++
	s.wakeLocked()
	return nil
}

// finish ends the stream with err (io.EOF for a complete one). Chunks already
// buffered are still read before it.
func (s *inStream) finish(err error) {
	s.mu.Lock()
	if s.end == nil {
		s.end = err
	}
	s.wakeLocked()
	s.mu.Unlock()
}

func (s *inStream) wakeLocked() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Read implements io.Reader for the handler.
func (s *inStream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		if s.gone {
			s.mu.Unlock()
			return 0, errors.New("snapshot stream read after its handler returned")
		}
		if len(s.cur) == 0 && len(s.chunks) > 0 {
			s.curBuf = s.chunks[0]
			s.cur = *s.curBuf
			s.chunks[0] = nil
			s.chunks = s.chunks[1:]
		}
		if len(s.cur) > 0 {
			if len(p) == 0 {
				s.mu.Unlock()
				return 0, nil
			}
			n := copy(p, s.cur)
			s.cur = s.cur[n:]
			credit := false
			if len(s.cur) == 0 {
				s.c.t.putChunk(s.curBuf)
				s.curBuf = nil
				s.held--
				credit = s.end == nil
			}
			s.mu.Unlock()
			if credit {
				s.c.enqueueCtrl(appendUvarints(nil, frameSnapCredit, s.id, 1))
			}
			return n, nil
		}
		if s.end != nil {
			err := s.end
			s.mu.Unlock()
			return 0, err
		}
		s.mu.Unlock()
		<-s.ready
	}
}

// release drops what is buffered once the handler returned.
func (s *inStream) release() {
	s.mu.Lock()
	s.gone = true
	for _, b := range s.chunks {
		s.c.t.putChunk(b)
	}
	s.chunks = nil
	s.c.t.putChunk(s.curBuf)
	s.curBuf, s.cur = nil, nil
	s.mu.Unlock()
}

func (c *conn) onSnapBegin(body []byte) error {
	var id, shard uint64
	if err := decodeUvarints(body, &id, &shard); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if id <= c.lastStream {
		return fmt.Errorf("%w: snapshot stream id %d does not grow", ErrProtocol, id)
	}
	c.lastStream = id
	if len(c.inStreams) >= maxInStreams {
		c.ctrl = append(c.ctrl, appendStatusFrame(nil, frameSnapResult, id, nil,
			fmt.Errorf("node %x is receiving %d snapshots from this peer already", c.t.cfg.ID, maxInStreams)))
		c.signal()
		return nil
	}
	s := &inStream{c: c, id: id, ready: make(chan struct{}, 1)}
	c.inStreams[id] = s
	c.t.wg.Add(1)
	go c.receive(s, shard)
	return nil
}

func (c *conn) receive(s *inStream, shard uint64) {
	defer c.t.wg.Done()
	err := c.t.cfg.Handler.HandleSnapshot(c.peerID, shard, s)
	if err == nil {
		// Success means the whole stream was consumed. A handler may stop
		// reading once it has what it needs (a trailer checksum, say): check
		// that only the end marker was left, waiting for it if need be.
		var one [1]byte
		if n, rerr := s.Read(one[:]); n > 0 {
			err = errors.New("snapshot handler returned before the end of the stream")
		} else if rerr != io.EOF {
			err = rerr
		}
	}
	s.release()
	c.mu.Lock()
	if c.inStreams != nil {
		delete(c.inStreams, s.id)
	}
	c.mu.Unlock()
	if c.ctx.Err() == nil { // as for calls: no verdict from a handler cut short by shutdown
		c.enqueueCtrl(appendStatusFrame(nil, frameSnapResult, s.id, nil, err))
	}
}

// stream finds an inbound stream for a data, end or abort frame. Frames of a
// stream that ended (refused, or its handler returned) are ignored: nil, nil.
func (c *conn) stream(id uint64) (*inStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.inStreams[id]; s != nil {
		return s, nil
	}
	if id > c.lastStream && !c.closed {
		return nil, fmt.Errorf("%w: frame for snapshot stream %d that never began", ErrProtocol, id)
	}
	return nil, nil
}

func (c *conn) onSnapData(body []byte) error {
	id, data, err := getUvarint(body)
	if err != nil {
		return err
	}
	if len(data) == 0 || len(data) > snapChunkSize {
		return fmt.Errorf("%w: snapshot chunk of %d bytes", ErrProtocol, len(data))
	}
	s, err := c.stream(id)
	if s == nil {
		return err
	}
	return s.push(data)
}

func (c *conn) onSnapEnd(typ frameType, body []byte) error {
	id, reason, err := getUvarint(body)
	if err != nil {
		return err
	}
	if typ == frameSnapEnd && len(reason) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrProtocol, len(reason))
	}
	s, err := c.stream(id)
	if s == nil {
		return err
	}
	if typ == frameSnapEnd {
		s.finish(io.EOF)
	} else {
		s.finish(fmt.Errorf("%w by the sender: %s", ErrAborted, reason))
	}
	return nil
}
