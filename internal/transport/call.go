package transport

import (
	"context"
	"encoding/binary"
	"fmt"
)

// callOverhead bounds the bytes a call or reply frame body adds to its payload.
const callOverhead = 2*binary.MaxVarintLen64 + 1

type callResult struct {
	payload []byte
	err     error
}

// Call sends a request to peer `to` and waits for its response: the payload
// Handler.HandleCall returned there, or an error wrapping ErrRemote with the
// handler's error text. Many calls share the connection, each matched to its
// response by a request id.
//
// If the peer is not connected Call waits for the dial under way, but fails
// at once with ErrUnreachable if the last dial failed. If ctx ends first it
// returns ctx.Err() and the handler's context is cancelled. If the connection
// breaks, Call fails with ErrConnLost: the request may have run. After
// RemovePeer it fails with ErrUnknownPeer, after Close with ErrClosed.
func (t *Transport) Call(ctx context.Context, to, shard uint64, method uint8, payload []byte) ([]byte, error) {
	if len(payload)+callOverhead > t.cfg.MaxFrameSize {
		return nil, fmt.Errorf("call payload of %d bytes exceeds the frame size limit %d", len(payload), t.cfg.MaxFrameSize)
	}
	p, err := t.peer(to)
	if err != nil {
		return nil, err
	}
	c, err := p.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan callResult, 1)
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	id := c.nextID
	c.calls[id] = ch
	c.ctrl = append(c.ctrl, appendCall(nil, id, shard, method, payload))
	c.mu.Unlock()
	c.signal()

	select {
	case r := <-ch:
		return r.payload, r.err
	case <-ctx.Done():
		c.mu.Lock()
		_, pending := c.calls[id]
		delete(c.calls, id)
		if pending && !c.closed {
			c.ctrl = append(c.ctrl, appendIDFrame(nil, frameCancel, id, nil))
		}
		c.mu.Unlock()
		c.signal()
		if !pending {
			// The response or the connection's failure won the race.
			r := <-ch
			return r.payload, r.err
		}
		return nil, ctx.Err()
	}
}

// onReply delivers a response to its caller. Responses to calls that gave up
// are ignored.
func (c *conn) onReply(body []byte) error {
	id, payload, remote, err := decodeStatus(body)
	if err != nil {
		return err
	}
	c.mu.Lock()
	ch := c.calls[id]
	delete(c.calls, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- callResult{payload: bytesClone(payload), err: remote}
	}
	return nil
}

// onCall starts serving a request in a goroutine of its own.
func (c *conn) onCall(body []byte) error {
	id, shard, method, payload, err := decodeCall(body)
	if err != nil {
		return err
	}
	payload = bytesClone(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if _, dup := c.serving[id]; dup {
		return fmt.Errorf("%w: call id %d is already being served", ErrProtocol, id)
	}
	if len(c.serving) >= maxServing {
		c.ctrl = append(c.ctrl, appendStatusFrame(nil, frameReply, id, nil,
			fmt.Errorf("node %x is serving %d calls from this peer already", c.t.cfg.ID, maxServing)))
		c.signal()
		return nil
	}
	ctx, cancel := context.WithCancel(c.ctx)
	c.serving[id] = cancel
	c.t.wg.Add(1)
	go c.serve(ctx, cancel, id, shard, method, payload)
	return nil
}

func (c *conn) serve(ctx context.Context, cancel context.CancelFunc, id, shard uint64, method uint8, payload []byte) {
	defer c.t.wg.Done()
	resp, err := c.t.cfg.Handler.HandleCall(ctx, c.peerID, shard, method, payload)
	cancel()
	if c.ctx.Err() != nil {
		// The connection or the Transport is going down: the handler may
		// have given up because of it, and its "context canceled" must not
		// reach the caller as the handler's answer. The caller gets
		// ErrConnLost (or ErrClosed) instead.
		c.mu.Lock()
		delete(c.serving, id)
		c.mu.Unlock()
		return
	}
	if err == nil && len(resp)+callOverhead > c.t.cfg.MaxFrameSize {
		err = fmt.Errorf("response of %d bytes exceeds the frame size limit %d", len(resp), c.t.cfg.MaxFrameSize)
	}
	frame := appendStatusFrame(nil, frameReply, id, resp, err)
	c.mu.Lock()
	delete(c.serving, id)
	c.mu.Unlock()
	c.enqueueCtrl(frame)
}

func (c *conn) onCancel(body []byte) error {
	var id uint64
	if err := decodeUvarints(body, &id); err != nil {
		return err
	}
	c.mu.Lock()
	cancel := c.serving[id]
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return nil
}
