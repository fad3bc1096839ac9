package netproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction names one or both halves of a proxied connection.
type Direction uint8

const (
	// Forward is client → target: the bytes the dialing side sends.
	Forward Direction = 1 << iota
	// Backward is target → client: the bytes the dialed side sends back.
	Backward
	// Both is Forward and Backward.
	Both = Forward | Backward
)

func (d Direction) String() string {
	switch d {
	case Forward:
		return "forward"
	case Backward:
		return "backward"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// The two halves, as indexes into per-direction arrays.
const (
	fwd = 0
	bwd = 1
)

// has reports whether d includes the half with index i.
func (d Direction) has(i int) bool { return d&(1<<i) != 0 }

const (
	chunkSize = 32 << 10
	// queueChunks bounds what one direction holds in flight while delayed: when
	// it is full the reader stops reading and the sender sees ordinary TCP
	// backpressure, as on a link with a bandwidth-delay product.
	queueChunks = 128
	dialTimeout = 5 * time.Second
)

// faults is one immutable snapshot of the fault settings. Setters copy, modify
// and publish a new one; pumps load it once per chunk, so a change reaches every
// live connection at its next chunk.
type faults struct {
	blackhole [2]bool
	latency   [2]time.Duration
	jitter    [2]time.Duration
	refuseNew bool
	dropFrac  float64
	lossFrac  [2]float64
}

// DirectionStats counts the bytes of one direction of all connections.
type DirectionStats struct {
	// Forwarded is bytes written to the receiving side.
	Forwarded uint64
	// Discarded is bytes read and thrown away because the direction was
	// blackholed or the chunk was lost (Lossy).
	Discarded uint64
}

// Stats is a snapshot of a Proxy's counters since New.
type Stats struct {
	// Accepted is every connection the listener accepted, including rejected ones.
	Accepted uint64
	// Rejected is connections closed right after accept by RefuseNew or
	// DropConnections.
	Rejected uint64
	// DialFailures is accepted connections closed because the target could not
	// be dialed.
	DialFailures uint64
	// Lost is connections reset by Lossy because a chunk was lost.
	Lost uint64
	// Active is connections currently proxied (target dialed, not yet closed).
	Active int
	// Forward is client → target, Backward is target → client.
	Forward, Backward DirectionStats
}

// Proxy forwards TCP connections accepted on its listen address to a target
// address, in both directions, applying the faults currently set. Faults can be
// changed at any time and apply to existing connections at once. All methods are
// safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	logger *slog.Logger
	ctx    context.Context // cancelled by Close; bounds dials
	cancel context.CancelFunc

	target atomic.Pointer[string]
	faults atomic.Pointer[faults]

	rngMu sync.Mutex
	rng   *rand.Rand

	mu sync.Mutex
	// closed is set once by Close. Invariant: no goroutine is added to wg
	// after closed is set (every wg.Add happens under mu with closed false),
	// so Close's wg.Wait sees every goroutine the proxy ever started.
	closed bool
	// pending holds accepted client connections whose target is being dialed.
	pending map[net.Conn]struct{}
	// links holds connections being proxied.
	links map[*link]struct{}

	wg sync.WaitGroup

	accepted, rejected, dialFailures, lost atomic.Uint64
	forwarded, discarded                   [2]atomic.Uint64
}

// New listens on listen (for example "127.0.0.1:0") and forwards every
// accepted connection to target. A nil logger discards. The random choices
// (DropConnections, jitter) use a seed taken from the clock until SetSeed.
func New(listen, target string, logger *slog.Logger) (*Proxy, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("netproxy: listen %s: %w", listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:      ln,
		logger:  logger.With("proxy", ln.Addr().String()),
		ctx:     ctx,
		cancel:  cancel,
		pending: map[net.Conn]struct{}{},
		links:   map[*link]struct{}{},
	}
	p.target.Store(&target)
	p.faults.Store(&faults{})
	p.SetSeed(time.Now().UnixNano())
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address the proxy listens on; clients dial it instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections are forwarded. Existing connections
// keep their target.
func (p *Proxy) SetTarget(target string) { p.target.Store(&target) }

// SetSeed reseeds the generator behind DropConnections and Delay's jitter, so a
// run that prints its seed can be replayed (as far as the order of connections
// and chunks is itself reproducible).
func (p *Proxy) SetSeed(seed int64) {
	p.rngMu.Lock()
	p.rng = rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>32|1))
	p.rngMu.Unlock()
}

func (p *Proxy) update(f func(*faults)) {
	p.mu.Lock()
	nf := *p.faults.Load()
	f(&nf)
	p.faults.Store(&nf)
	p.mu.Unlock()
}

// Blackhole silently discards all bytes in direction(s) d from now on, on
// existing and new connections, in addition to directions already blackholed.
// Connections stay open and nothing is delivered, like a partition where
// packets vanish. New connections are still established (the proxy completes
// the handshakes itself) and then carry nothing, where in a real partition the
// connect would time out.
//
// The proxy keeps reading a blackholed direction and throws the bytes away, so
// the sender's socket buffer does not fill and its writes keep succeeding: the
// sender cannot tell from backpressure that the link is cut, just as with lost
// packets; only missing replies and timeouts tell it. Chunks already queued by
// Delay are discarded too when their time comes.
//
// Unlike a real partition, where TCP retransmits once the link heals, the
// discarded bytes are gone for good: after Heal the receiver sees the stream
// resume with a gap. A framed protocol will see a bad frame and should drop the
// connection; call Reset with Heal to model a partition long enough that
// connections time out instead.
func (p *Proxy) Blackhole(d Direction) {
	p.update(func(f *faults) {
		for i := range 2 {
			if d.has(i) {
				f.blackhole[i] = true
			}
		}
	})
}

// Unblackhole lets direction(s) d flow again, leaving every other fault as it is.
func (p *Proxy) Unblackhole(d Direction) {
	p.update(func(f *faults) {
		for i := range 2 {
			if d.has(i) {
				f.blackhole[i] = false
			}
		}
	})
}

// Delay holds every chunk read in direction(s) d for latency plus a uniformly
// random extra in [0, jitter) before writing it on, so no chunk is delivered
// sooner than latency after the proxy read it. Byte order is kept: a chunk is
// never written before one read earlier, whatever its jitter. Delay(d, 0, 0)
// removes the delay; chunks already held keep their delivery time, like packets
// already on the wire. Negative durations count as zero.
func (p *Proxy) Delay(d Direction, latency, jitter time.Duration) {
	latency, jitter = max(latency, 0), max(jitter, 0)
	p.update(func(f *faults) {
		for i := range 2 {
			if d.has(i) {
				f.latency[i], f.jitter[i] = latency, jitter
			}
		}
	})
}

// RefuseNew, while on, makes the proxy close every new connection as soon as it
// is accepted, with a TCP reset: the dialer's connect usually succeeds (the
// kernel accepts it) and its first read fails; on loopback the reset can also
// overtake the handshake, so that connect itself fails with "connection reset
// by peer". That is the closest a listening socket gets to "connection
// refused". Existing connections are not affected.
func (p *Proxy) RefuseNew(on bool) {
	p.update(func(f *faults) { f.refuseNew = on })
}

// DropConnections makes each new connection, with probability fraction, closed
// right after accept (as RefuseNew does): a flaky link. Dropping single chunks
// would corrupt TCP streams, which real networks never do, so flakiness is
// modeled per connection. fraction is clamped to [0, 1]; the choice is seeded by
// SetSeed.
func (p *Proxy) DropConnections(fraction float64) {
	fraction = min(max(fraction, 0), 1)
	p.update(func(f *faults) { f.dropFrac = fraction })
}

// Lossy makes each chunk read in direction(s) d lost with probability
// fraction. The proxy carries a TCP stream, which cannot have a hole in it, so
// a lost chunk ends its connection: the proxy resets both sides at once, and
// the chunk, any chunk still held by Delay and everything after it are never
// delivered; what was delivered before is intact. To the endpoints this is a
// link whose losses TCP could not mask: messages in flight vanish and the
// connection must be dialed again (add DropConnections to make redialing
// flaky too). fraction is clamped to [0, 1]; the choice is seeded by SetSeed.
func (p *Proxy) Lossy(d Direction, fraction float64) {
	fraction = min(max(fraction, 0), 1)
	p.update(func(f *faults) {
		for i := range 2 {
			if d.has(i) {
				f.lossFrac[i] = fraction
			}
		}
	})
}

// Heal removes every fault: blackholes, delays, losses, RefuseNew and
// DropConnections.
func (p *Proxy) Heal() {
	p.update(func(f *faults) { *f = faults{} })
}

// Reset closes every current connection, both sides, with a TCP reset, as a
// crashed middlebox would; connections still dialing the target are closed too.
// Faults are unchanged and new connections are accepted normally.
func (p *Proxy) Reset() {
	p.mu.Lock()
	closers := p.takeAll()
	p.mu.Unlock()
	for _, c := range closers {
		c()
	}
	p.logger.Debug("reset connections", "count", len(closers))
}

// takeAll empties pending and links and returns functions that close them.
// Caller holds p.mu.
func (p *Proxy) takeAll() []func() {
	var fs []func()
	for c := range p.pending {
		fs = append(fs, func() { abortConn(c) })
	}
	clear(p.pending)
	for l := range p.links {
		fs = append(fs, func() { l.shutdown(true) })
	}
	clear(p.links)
	return fs
}

// Stats returns the counters as of now.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{
		Accepted:     p.accepted.Load(),
		Rejected:     p.rejected.Load(),
		DialFailures: p.dialFailures.Load(),
		Lost:         p.lost.Load(),
		Active:       active,
		Forward:      DirectionStats{Forwarded: p.forwarded[fwd].Load(), Discarded: p.discarded[fwd].Load()},
		Backward:     DirectionStats{Forwarded: p.forwarded[bwd].Load(), Discarded: p.discarded[bwd].Load()},
	}
}

// Close stops listening, resets every connection and returns once every
// goroutine of the proxy has exited. Calling it again does nothing.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	closers := p.takeAll()
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range closers {
		c()
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("netproxy: close %s: %w", p.Addr(), err)
	}
	return nil
}

// goTracked runs f on a new goroutine counted by wg, unless the proxy is closed.
// Caller holds p.mu.
func (p *Proxy) goTracked(f func()) bool {
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off briefly, as
			// net/http does, rather than spin.
			p.logger.Warn("accept", "err", err)
			select {
			case <-time.After(10 * time.Millisecond):
			case <-p.ctx.Done():
				return
			}
			continue
		}
		p.accepted.Add(1)
		f := p.faults.Load()
		if f.refuseNew || p.drop(f.dropFrac) {
			p.rejected.Add(1)
			p.logger.Debug("rejected connection", "client", c.RemoteAddr().String(), "refuse_new", f.refuseNew)
			abortConn(c)
			continue
		}
		p.mu.Lock()
		ok := p.goTracked(func() { p.connect(c) })
		if ok {
			p.pending[c] = struct{}{}
		}
		p.mu.Unlock()
		if !ok {
			abortConn(c)
		}
	}
}

// drop is true with probability frac: a connection dropped by
// DropConnections, a chunk lost by Lossy.
func (p *Proxy) drop(frac float64) bool {
	switch {
	case frac <= 0:
		return false
	case frac >= 1:
		return true
	}
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return p.rng.Float64() < frac
}

func (p *Proxy) jitter(j time.Duration) time.Duration {
	if j <= 0 {
		return 0
	}
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	return time.Duration(p.rng.Int64N(int64(j)))
}

// connect dials the target for the accepted client c and starts the pumps.
func (p *Proxy) connect(c net.Conn) {
	target := *p.target.Load()
	d := net.Dialer{Timeout: dialTimeout}
	s, err := d.DialContext(p.ctx, "tcp", target)

	p.mu.Lock()
	_, live := p.pending[c] // Reset or Close may have taken it meanwhile
	delete(p.pending, c)
	var l *link
	if err == nil && live && !p.closed {
		l = newLink(p, c, s)
		p.links[l] = struct{}{}
		for i := range 2 {
			p.goTracked(func() { l.read(i) })
			p.goTracked(func() { l.write(i) })
		}
	}
	p.mu.Unlock()

	switch {
	case err != nil:
		p.dialFailures.Add(1)
		p.logger.Debug("dial target failed", "client", c.RemoteAddr().String(), "target", target, "err", err)
		abortConn(c)
	case l == nil:
		abortConn(c)
		abortConn(s)
	default:
		p.logger.Debug("proxying", "client", c.RemoteAddr().String(), "target", target)
	}
}

func (p *Proxy) remove(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// abortConn closes c with a TCP reset (SO_LINGER 0) rather than a FIN, so the
// peer sees "connection reset" as after a crash, not an orderly close.
func abortConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// chunk is bytes read from one side, to be written to the other at due.
type chunk struct {
	data []byte
	due  time.Time
}

// link is one proxied connection: the accepted client side and the dialed
// target side. Each direction has a reader goroutine, which reads, applies the
// blackhole and stamps a due time, and a writer goroutine, which waits for the
// due time and writes; the queue between them is what lets Delay add latency
// without limiting throughput to one chunk per latency.
type link struct {
	p     *Proxy
	conns [2]net.Conn // conns[fwd] is the client side, conns[bwd] the target side
	queue [2]chan chunk
	// eof[i] is set by reader i before it closes queue[i] when its source
	// ended with an orderly close, so writer i passes the half-close on.
	eof [2]atomic.Bool
	// done is closed when the link shuts down; goroutines blocked on a queue
	// or a delay give up.
	done         chan struct{}
	shutdownOnce sync.Once
	writersLeft  atomic.Int32
}

func newLink(p *Proxy, client, target net.Conn) *link {
	l := &link{p: p, conns: [2]net.Conn{client, target}, done: make(chan struct{})}
	for i := range 2 {
		l.queue[i] = make(chan chunk, queueChunks)
	}
	l.writersLeft.Store(2)
	return l
}

// src and dst are the sides direction i reads from and writes to.
func (l *link) src(i int) net.Conn { return l.conns[i] }
func (l *link) dst(i int) net.Conn { return l.conns[1-i] }

// shutdown closes both sides once; abort sends resets instead of FINs.
func (l *link) shutdown(abort bool) {
	l.shutdownOnce.Do(func() {
		close(l.done)
		for _, c := range l.conns {
			if abort {
				abortConn(c)
			} else {
				_ = c.Close()
			}
		}
	})
}

func (l *link) read(i int) {
	defer close(l.queue[i])
	buf := make([]byte, chunkSize)
	for {
		n, err := l.src(i).Read(buf)
		if n > 0 {
			f := l.p.faults.Load()
			if f.blackhole[i] {
				l.p.discarded[i].Add(uint64(n))
			} else if l.p.drop(f.lossFrac[i]) {
				l.p.discarded[i].Add(uint64(n))
				l.p.lost.Add(1)
				l.shutdown(true)
				return
			} else {
				// The queue is FIFO and its writer waits for each chunk in
				// turn, so no jitter lets a chunk overtake an earlier one.
				due := time.Now().Add(f.latency[i] + l.p.jitter(f.jitter[i]))
				c := chunk{data: append([]byte(nil), buf[:n]...), due: due}
				select {
				case l.queue[i] <- c:
				case <-l.done:
					return
				}
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				l.eof[i].Store(true)
			} else {
				// The source failed (reset, or closed by shutdown): the
				// connection is over in both directions.
				l.shutdown(true)
			}
			return
		}
	}
}

func (l *link) write(i int) {
	defer func() {
		if l.writersLeft.Add(-1) == 0 {
			l.shutdown(false)
			l.p.remove(l)
		}
	}()
	var timer *time.Timer
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-l.queue[i]:
		case <-l.done:
			return
		}
		if !ok {
			// The source closed its sending half; pass that on unless the
			// FIN, too, falls into a blackhole.
			if l.eof[i].Load() && !l.p.faults.Load().blackhole[i] {
				if cw, ok := l.dst(i).(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			}
			return
		}
		if wait := time.Until(c.due); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-l.done:
				timer.Stop()
				return
			}
		}
		if l.p.faults.Load().blackhole[i] {
			l.p.discarded[i].Add(uint64(len(c.data)))
			continue
		}
		if _, err := l.dst(i).Write(c.data); err != nil {
			l.shutdown(true)
			return
		}
		l.p.forwarded[i].Add(uint64(len(c.data)))
	}
}
