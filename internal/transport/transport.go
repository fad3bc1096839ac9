package transport

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Transport is the link between this node and its peers. All methods are
// safe for concurrent use.
type Transport struct {
	cfg Config
	log *slog.Logger
	ln  net.Listener

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Transport started

	mu      sync.RWMutex
	closed  bool
	peers   map[uint64]*peer
	inbound map[uint64]*conn  // accepted connections by the dialer's id
	unknown map[uint64]uint64 // messages dropped per id that is not a peer

	// names are the peers' member names, for log lines (see NamePeer). Its
	// own lock: log lines are written under mu and under a peer's lock.
	namesMu sync.RWMutex
	names   map[uint64]string

	unreachMu   sync.Mutex
	unreachable map[uint64]struct{} // peers to report to Handler.PeerUnreachable
	unreachWake chan struct{}       // cap 1

	chunkPool sync.Pool // *[]byte of snapChunkSize: snapshot chunks

	linksMu sync.Mutex
	links   map[uint64]*linkBytes // bytes exchanged per node (linkstats.go)
}

// PeerStats describes the link to one peer.
type PeerStats struct {
	// Addr is the address the peer is dialed at (empty for an id that only
	// appeared as the destination of dropped messages).
	Addr string
	// Connected reports an established outbound connection.
	Connected bool
	// LastContact is when the last frame from this peer arrived, on either
	// connection, or when a connection to it was established.
	LastContact time.Time
	// Sent counts Raft messages written to the peer's connection.
	Sent uint64
	// Dropped counts Raft messages discarded: not connected, queue full,
	// unknown peer, too large, or lost with a broken connection.
	Dropped uint64
	// Reconnects counts connections established after the first.
	Reconnects uint64
	// Name is the name NamePeer gave the peer, empty if none.
	Name string
	// BytesSent and BytesReceived count the frame bytes exchanged with the
	// peer on both connections since the Transport started (handshakes
	// excepted; with TLS, the bytes inside it).
	BytesSent, BytesReceived uint64
}

// New starts a Transport listening on cfg.Listen (after cfg.Validate). It
// dials nobody until peers are added.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAlive(cfg.KeepAlive)}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("transport: listen: %w", err)
	}
	name := cfg.Name
	if name == "" {
		name = fmt.Sprintf("%x", cfg.ID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "transport", "node", name),
		ln:          ln,
		ctx:         ctx,
		cancel:      cancel,
		peers:       map[uint64]*peer{},
		inbound:     map[uint64]*conn{},
		unknown:     map[uint64]uint64{},
		unreachable: map[uint64]struct{}{},
		unreachWake: make(chan struct{}, 1),
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.notifyLoop()
	return t, nil
}

func keepAlive(d time.Duration) net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: d, Interval: d, Count: 3}
}

// Addr is the address the Transport listens on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// AddPeer makes id a peer reachable at addr and starts connecting to it. It
// is idempotent; if the peer exists with another address, its connection is
// closed and the new address dialed.
func (t *Transport) AddPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || id == t.cfg.ID {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setAddr(addr)
		return
	}
	p := newPeer(t, id, addr)
	p.dropped.Add(t.unknown[id])
	delete(t.unknown, id)
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
}

// RemovePeer forgets peer id: its connection is closed and its pending calls
// and snapshot streams fail with an error wrapping ErrUnknownPeer. A
// connection the peer itself dialed stays open (the peer decides). The name
// NamePeer gave it stays, so that log lines about that connection still name
// it.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.stop(fmt.Errorf("peer %s removed: %w", t.peerName(id), ErrUnknownPeer))
	}
}

// NamePeer records that node id is called name (its member name, e.g. "n2"),
// so that log lines and errors about it say peer=n2 rather than its id. It may
// be called before AddPeer, and for a node that dials this one without being
// a peer. A node that has no name is logged as peer="<unknown id 0x...>".
func (t *Transport) NamePeer(id uint64, name string) {
	t.namesMu.Lock()
	defer t.namesMu.Unlock()
	if t.names == nil {
		t.names = map[uint64]string{}
	}
	t.names[id] = name
}

// peerName is how log lines and errors name node id (see NamePeer).
func (t *Transport) peerName(id uint64) string {
	t.namesMu.RLock()
	name, ok := t.names[id]
	t.namesMu.RUnlock()
	if ok {
		return name
	}
	return fmt.Sprintf("<unknown id 0x%x>", id)
}

// Send queues Raft messages of shard for their destinations (msg.To) and
// returns at once: it never blocks on the network. Messages to one peer are
// written in the order they were queued, by the connection's writer
// goroutine. A message that cannot be queued (no such peer, not connected,
// queue full) is dropped and counted, and the peer is reported to
// Handler.PeerUnreachable; Raft retransmits. Send keeps references to msgs'
// contents until they are written; they must not be modified (Raft never
// does).
func (t *Transport) Send(shard uint64, msgs []raftpb.Message) {
	if !groupedByPeer(msgs) {
		// One queueing (and usually one write) per peer: order is kept
		// per peer, which is all Raft needs.
		msgs = slices.Clone(msgs)
		slices.SortStableFunc(msgs, func(a, b raftpb.Message) int { return cmp.Compare(a.To, b.To) })
	}
	for i := 0; i < len(msgs); {
		to := msgs[i].To
		j := i + 1
		for j < len(msgs) && msgs[j].To == to {
			j++
		}
		t.sendTo(to, shard, msgs[i:j])
		i = j
	}
}

// groupedByPeer reports whether the messages to each peer are contiguous in
// msgs.
func groupedByPeer(msgs []raftpb.Message) bool {
	for i := 1; i < len(msgs); i++ {
		if msgs[i].To == msgs[i-1].To {
			continue
		}
		for j := range i - 1 {
			if msgs[j].To == msgs[i].To {
				return false
			}
		}
	}
	return true
}

func (t *Transport) sendTo(to, shard uint64, msgs []raftpb.Message) {
	t.mu.RLock()
	p, closed := t.peers[to], t.closed
	t.mu.RUnlock()
	if closed {
		return
	}
	if p == nil {
		t.mu.Lock()
		if !t.closed {
			t.unknown[to] += uint64(len(msgs))
		}
		t.mu.Unlock()
		t.reportUnreachable(to)
		return
	}
	n := 0
	if c := p.conn.Load(); c != nil {
		n = c.enqueueRaft(shard, msgs)
	}
	if n < len(msgs) {
		p.dropped.Add(uint64(len(msgs) - n))
		t.reportUnreachable(to)
	}
}

// Stats reports on every peer, and on ids that messages were dropped for
// because they were not peers.
func (t *Transport) Stats() map[uint64]PeerStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[uint64]PeerStats, len(t.peers)+len(t.unknown))
	for id, n := range t.unknown {
		s := PeerStats{Dropped: n}
		t.addLinkStats(id, &s)
		out[id] = s
	}
	for id, p := range t.peers {
		s := PeerStats{
			Sent:       p.sent.Load(),
			Dropped:    p.dropped.Load(),
			Reconnects: p.reconnects.Load(),
		}
		p.mu.Lock()
		s.Addr = p.addr
		p.mu.Unlock()
		last := p.lastContact.Load()
		if c := p.conn.Load(); c != nil {
			s.Connected = true
			last = max(last, c.lastRecv.Load())
		}
		if c := t.inbound[id]; c != nil {
			last = max(last, c.lastRecv.Load())
		}
		if last != 0 {
			s.LastContact = time.Unix(0, last)
		}
		t.addLinkStats(id, &s)
		out[id] = s
	}
	return out
}

// Close stops the listener and every connection and goroutine of the
// Transport, and waits for them, including running handlers (whose contexts
// and snapshot readers fail). Pending calls and snapshot streams fail with
// ErrClosed. Close is idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	peers := t.peers
	t.peers = map[uint64]*peer{}
	inbound := t.inbound
	t.inbound = map[uint64]*conn{}
	t.mu.Unlock()

	t.cancel()
	err := t.ln.Close()
	for _, p := range peers {
		p.stop(ErrClosed)
	}
	for _, c := range inbound {
		c.close(ErrClosed)
	}
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("transport: close listener: %w", err)
	}
	return nil
}

func (t *Transport) peer(id uint64) (*peer, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, ErrClosed
	}
	p := t.peers[id]
	if p == nil {
		return nil, fmt.Errorf("peer %s: %w", t.peerName(id), ErrUnknownPeer)
	}
	return p, nil
}

// reportUnreachable queues id for Handler.PeerUnreachable.
func (t *Transport) reportUnreachable(id uint64) {
	t.unreachMu.Lock()
	t.unreachable[id] = struct{}{}
	t.unreachMu.Unlock()
	select {
	case t.unreachWake <- struct{}{}:
	default:
	}
}

func (t *Transport) notifyLoop() {
	defer t.wg.Done()
	var ids []uint64
	for {
		select {
		case <-t.unreachWake:
		case <-t.ctx.Done():
			return
		}
		t.unreachMu.Lock()
		for id := range t.unreachable {
			ids = append(ids, id)
		}
		clear(t.unreachable)
		t.unreachMu.Unlock()
		for _, id := range ids {
			t.cfg.Handler.PeerUnreachable(id)
		}
		ids = ids[:0]
	}
}

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait and retry.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		t.wg.Add(1)
		go t.accept(nc)
	}
}

// accept runs the handshake of an incoming connection and, if it succeeds,
// serves it.
func (t *Transport) accept(nc net.Conn) {
	defer t.wg.Done()
	remote := nc.RemoteAddr().String()
	nc.SetDeadline(time.Now().Add(t.cfg.DialTimeout))
	stop := context.AfterFunc(t.ctx, func() { nc.Close() })
	defer stop()
	if t.cfg.TLS != nil {
		tc := tls.Server(nc, t.cfg.TLS)
		if err := tc.HandshakeContext(t.ctx); err != nil {
			t.log.Warn("refused peer connection: TLS handshake failed", "remote", remote, "err", err)
			nc.Close()
			return
		}
		nc = tc
	}
	br := bufio.NewReaderSize(nc, readBufSize)
	fr := &frameReader{r: br, max: maxHelloSize}
	h, err := acceptHandshake(nc, fr, self{id: t.cfg.ID, token: t.cfg.Token, cluster: t.cfg.ClusterID})
	from := h.from
	if errors.Is(err, errAnswered) {
		t.log.Debug("told a peer this node's cluster id", "peer", t.peerName(from), "remote", remote)
		nc.Close()
		return
	}
	if err != nil {
		if t.ctx.Err() == nil {
			args := []any{"remote", remote, "err", err}
			if from != 0 {
				args = append([]any{"peer", t.peerName(from)}, args...)
			}
			if h.cluster != 0 && t.cfg.ClusterID != 0 && h.cluster != t.cfg.ClusterID {
				args = append(args, "peer_cluster_id", FormatClusterID(h.cluster), "cluster_id", FormatClusterID(t.cfg.ClusterID))
			}
			t.log.Warn("refused peer connection", args...)
		}
		nc.Close()
		return
	}
	if !stop() {
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	fr.max = t.cfg.MaxFrameSize

	c := newConn(t, nc, fr, from, nil)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		nc.Close()
		return
	}
	prev := t.inbound[from]
	t.inbound[from] = c
	t.mu.Unlock()
	if prev != nil {
		// The peer redialed: it considers the old connection dead.
		prev.close(fmt.Errorf("%w: replaced by a new connection from the peer", ErrConnLost))
		c.prev = prev
	}
	t.log.Info("accepted peer connection", "peer", t.peerName(from), "remote", remote)
	c.start()
}

// forgetInbound removes c from the accepted connections if it is there.
func (t *Transport) forgetInbound(c *conn) {
	t.mu.Lock()
	if t.inbound[c.peerID] == c {
		delete(t.inbound, c.peerID)
	}
	t.mu.Unlock()
}
