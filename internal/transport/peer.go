package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const readBufSize = 64 << 10

// peer is a node this one sends to. Its goroutine (run) keeps one outbound
// connection open: it dials, serves the connection until it breaks, waits out
// a backoff and dials again, until the peer is removed or the Transport
// closes.
type peer struct {
	t  *Transport
	id uint64

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc

	// conn is the established connection, nil while there is none. Written
	// only under mu (so waiters can be told), read without it by Send.
	conn atomic.Pointer[conn]

	mu      sync.Mutex
	addr    string
	down    bool          // the last dial failed and no connection is up since
	stopErr error         // why the peer was stopped; nil while running
	changed chan struct{} // closed and replaced whenever conn, down or stopErr change
	kick    chan struct{} // cap 1: the address changed, dial now

	sent, dropped, reconnects atomic.Uint64
	dials                     atomic.Uint64 // dial attempts, for tests
	writes                    atomic.Uint64 // socket writes on its connections, for tests
	lastContact               atomic.Int64  // unix nanoseconds of the last handshake
}

func newPeer(t *Transport, id uint64, addr string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t: t, id: id, addr: addr,
		ctx: ctx, cancel: cancel,
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
}

// notifyLocked wakes everybody waiting for a change. p.mu must be held.
func (p *peer) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	if p.addr == addr {
		p.mu.Unlock()
		return
	}
	p.addr = addr
	c := p.conn.Load()
	p.mu.Unlock()
	p.t.log.Info("peer address changed", "peer", p.t.peerName(p.id), "addr", addr)
	if c != nil {
		c.close(fmt.Errorf("%w: peer address changed", ErrConnLost))
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// stop ends the peer's goroutine and fails its connection with err.
func (p *peer) stop(err error) {
	p.mu.Lock()
	if p.stopErr != nil {
		p.mu.Unlock()
		return
	}
	p.stopErr = err
	c := p.conn.Load()
	p.notifyLocked()
	p.mu.Unlock()
	p.cancel()
	if c != nil {
		c.close(err)
	}
}

// waitConn returns the peer's connection, waiting while a dial is under way.
// It fails at once with ErrUnreachable if the last dial failed.
func (p *peer) waitConn(ctx context.Context) (*conn, error) {
	for {
		p.mu.Lock()
		c, down, stopErr, ch := p.conn.Load(), p.down, p.stopErr, p.changed
		p.mu.Unlock()
		switch {
		case stopErr != nil:
			return nil, stopErr
		case c != nil:
			return c, nil
		case down:
			return nil, fmt.Errorf("peer %s: %w", p.t.peerName(p.id), ErrUnreachable)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *peer) setConn(c *conn, down bool) {
	p.mu.Lock()
	p.conn.Store(c)
	p.down = down
	p.notifyLocked()
	p.mu.Unlock()
}

// backoff is the wait before dial attempt n (n >= 1 consecutive failures):
// InitialBackoff doubled n-1 times, capped at MaxBackoff, drawn uniformly from
// the upper half so that peers that failed together do not retry together.
func (t *Transport) backoff(n int) time.Duration {
	d := t.cfg.MaxBackoff
	if n < 31 {
		d = min(d, t.cfg.InitialBackoff<<(n-1))
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func (p *peer) run() {
	t := p.t
	defer t.wg.Done()
	failures := 0
	everConnected := false
	for {
		select {
		case <-p.kick: // this dial uses the latest address
		default:
		}
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		p.dials.Add(1)
		c, err := t.dial(p.ctx, addr, p)
		if p.ctx.Err() != nil {
			if c != nil {
				c.close(ErrClosed)
			}
			return
		}
		if err != nil {
			failures++
			p.setConn(nil, true)
			t.reportUnreachable(p.id)
			args := []any{"peer", t.peerName(p.id), "addr", addr, "err", err, "failures", failures}
			if failures == 1 {
				t.log.Warn("cannot connect to peer", args...)
			} else {
				t.log.Debug("cannot connect to peer", args...)
			}
			if !p.sleep(t.backoff(failures)) {
				return
			}
			continue
		}

		if everConnected {
			p.reconnects.Add(1)
		}
		everConnected = true
		p.lastContact.Store(time.Now().UnixNano())
		t.log.Info("connected to peer", "peer", t.peerName(p.id), "addr", addr, "after_failures", failures)
		p.setConn(c, false)
		// A stop or an address change between dial and setConn did not see c.
		p.mu.Lock()
		stopErr, moved := p.stopErr, p.addr != addr
		p.mu.Unlock()
		if stopErr != nil {
			c.close(stopErr)
		} else if moved {
			c.close(fmt.Errorf("%w: peer address changed", ErrConnLost))
		}
		c.start()
		began := time.Now()
		<-c.done
		p.setConn(nil, false)
		if p.ctx.Err() != nil {
			return
		}
		t.log.Info("connection to peer lost", "peer", t.peerName(p.id), "err", c.err)
		t.reportUnreachable(p.id)
		if time.Since(began) >= t.cfg.MaxBackoff {
			failures = 0
		} else {
			// A connection that keeps breaking right after the handshake
			// must not make us redial in a tight loop.
			failures++
			if !p.sleep(t.backoff(failures)) {
				return
			}
		}
	}
}

// sleep waits d, or less if the address changes. It reports false if the
// peer was stopped.
func (p *peer) sleep(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-p.kick:
	case <-p.ctx.Done():
		return false
	}
	return true
}

// dial connects to peer p at addr and runs the handshake. The connection is
// returned unstarted.
func (t *Transport) dial(ctx context.Context, addr string, p *peer) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	nc, fr, _, err := dialHandshaken(ctx, t.cfg, addr, p.id, false)
	if err != nil {
		return nil, err
	}
	fr.max = t.cfg.MaxFrameSize
	return newConn(t, nc, fr, p.id, p), nil
}

// AskClusterID asks node to, listening at addr, for its cluster id, as
// node cfg.ID with cfg.Token (and cfg.TLS): 0 means that node knows none.
// It is how a member bootstrapping a new cluster learns the id that another
// member created (see the handshake). It needs no running Transport.
func AskClusterID(ctx context.Context, cfg Config, addr string, to uint64) (uint64, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	nc, _, cluster, err := dialHandshaken(ctx, cfg, addr, to, true)
	if err != nil {
		return 0, err
	}
	nc.Close()
	return cluster, nil
}

// dialHandshaken connects to node to at addr, with TLS if cfg says so, and
// runs the handshake within ctx's deadline. It returns the acceptor's cluster
// id too; with ask, that is all the connection is for.
func dialHandshaken(ctx context.Context, cfg Config, addr string, to uint64, ask bool) (net.Conn, *frameReader, uint64, error) {
	d := net.Dialer{KeepAliveConfig: keepAlive(cfg.KeepAlive)}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, 0, err
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if cfg.TLS != nil {
		tcfg := cfg.TLS
		if tcfg.ServerName == "" {
			tcfg = tcfg.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				tcfg.ServerName = host
			}
		}
		tc := tls.Client(nc, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, nil, 0, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	fr := &frameReader{r: bufio.NewReaderSize(nc, readBufSize), max: maxHelloSize}
	cluster, err := dialHandshake(nc, fr, self{id: cfg.ID, token: cfg.Token, cluster: cfg.ClusterID}, to, ask)
	if err != nil {
		nc.Close()
		return nil, nil, 0, err
	}
	if !stop() {
		nc.Close()
		return nil, nil, 0, ctx.Err()
	}
	nc.SetDeadline(time.Time{})
	return nc, fr, cluster, nil
}
