package main

// serve-floor, the replication floor: the least work any server must do to
// acknowledge a write that is durable on two machines, over distkv's HTTP API.
// A primary appends every write to its own log and streams it to replicas;
// it answers once its own fdatasync and -acks replicas' fdatasyncs cover the
// write. Both sides commit in groups, as a real WAL does. There is no
// consensus, no recovery and no state machine beyond a map for GETs, so
// benchmarks can show how far a replicated store is from what this machine's
// disk, scheduler and loopback TCP allow.
//
// Wire and file format. A frame is a batch of records:
//
//	4-byte big-endian payload length | 8-byte big-endian batch sequence | payload
//
// and the payload is records, each uvarint key length, key, uvarint value
// length, value (the value is the request body). The primary sends frames to
// the replicas; a replica answers with 8-byte big-endian acks carrying the
// highest sequence it has made durable. Both logs are these same frames, back
// to back.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	headerLen   = 12       // payload length (4) + batch sequence (8)
	ackLen      = 8        // batch sequence
	maxPayload  = 64 << 20 // a frame claiming more is refused and its connection closed
	maxBody     = 1 << 20  // largest request body: a record stays far below maxPayload
	logName     = "floor.log"
	sendTimeout = 2 * time.Second // a replica that stops reading this long is dropped
	redialPause = 100 * time.Millisecond
)

var (
	errFrameTooLarge = errors.New("frame too large")
	errBadRecord     = errors.New("malformed record")
	errClosed        = errors.New("serve-floor is shutting down")
)

func serveFloor(args []string) error {
	fs := flag.NewFlagSet("serve-floor", flag.ExitOnError)
	role := fs.String("role", "", "primary or replica")
	dir := fs.String("dir", "", "directory of this process's log (one process per directory)")
	listen := fs.String("listen", "127.0.0.1:8301", "replica: address the primary connects to")
	addr := fs.String("addr", "127.0.0.1:8200", "primary: HTTP listen address")
	replicas := fs.String("replicas", "127.0.0.1:8301,127.0.0.1:8302", "primary: comma-separated replica addresses")
	acks := fs.Int("acks", 1, "primary: replica acks a write waits for besides its own fdatasync (1 with 2 replicas: a 3-node quorum)")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("-dir is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch *role {
	case "replica":
		return runReplica(ctx, *listen, *dir)
	case "primary":
		var addrs []string
		for _, a := range strings.Split(*replicas, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
		return runPrimary(ctx, *addr, *dir, addrs, *acks)
	}
	return fmt.Errorf("-role must be primary or replica, got %q", *role)
}

// ---- frames and records ----

// appendRecord appends one record: uvarint key length, key, uvarint value
// length, value.
func appendRecord(dst []byte, key string, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func recordLen(key string, value []byte) int {
	return uvarintLen(uint64(len(key))) + len(key) + uvarintLen(uint64(len(value))) + len(value)
}

// sealFrame fills in the header reserved at the front of frame.
func sealFrame(frame []byte, seq uint64) {
	binary.BigEndian.PutUint32(frame[:4], uint32(len(frame)-headerLen))
	binary.BigEndian.PutUint64(frame[4:headerLen], seq)
}

// readFrame reads one frame from r into buf (grown as needed) and returns it
// whole, header included, so a replica can log it as it came. It refuses a
// payload longer than limit before reading it, and a payload that is not a
// sequence of well-formed records, so garbage never reaches a log.
func readFrame(r io.Reader, buf []byte, limit int) (frame []byte, seq uint64, err error) {
	frame = slices.Grow(buf[:0], headerLen)[:headerLen]
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, 0, err // io.EOF here is a clean end between frames
	}
	n := binary.BigEndian.Uint32(frame[:4])
	if uint64(n) > uint64(limit) {
		return nil, 0, fmt.Errorf("%w: payload of %d bytes, limit %d", errFrameTooLarge, n, limit)
	}
	frame = slices.Grow(frame, int(n))[:headerLen+int(n)]
	if _, err := io.ReadFull(r, frame[headerLen:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, 0, fmt.Errorf("frame payload: %w", err)
	}
	if err := walkRecords(frame[headerLen:], nil); err != nil {
		return nil, 0, err
	}
	return frame, binary.BigEndian.Uint64(frame[4:headerLen]), nil
}

// walkRecords checks that payload is a sequence of records and calls fn (if
// not nil) with each one's key and value.
func walkRecords(payload []byte, fn func(key, value []byte)) error {
	for len(payload) > 0 {
		key, rest, err := cutField(payload)
		if err != nil {
			return fmt.Errorf("record key: %w", err)
		}
		value, rest, err := cutField(rest)
		if err != nil {
			return fmt.Errorf("record value: %w", err)
		}
		if fn != nil {
			fn(key, value)
		}
		payload = rest
	}
	return nil
}

// cutField splits a uvarint-length-prefixed field off the front of b. It
// refuses non-minimal varints so that every accepted frame has exactly one
// encoding.
func cutField(b []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	switch {
	case w <= 0:
		return nil, nil, fmt.Errorf("%w: bad length", errBadRecord)
	case w != uvarintLen(n):
		return nil, nil, fmt.Errorf("%w: non-minimal length", errBadRecord)
	case n > uint64(len(b)-w):
		return nil, nil, fmt.Errorf("%w: length %d past the end of the payload", errBadRecord, n)
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

// ---- the log file ----

// reserveStep is how far ahead of the data the log is filled with zeros, as
// distkv's WAL does (its default preallocation): a write inside the reserve
// changes neither the file's size nor its blocks, so the fdatasync after it
// writes data and no inode. Without it the floor would pay for metadata on
// every sync that distkv does not, and would not be a floor.
const reserveStep = 4 << 20

// logFile is an append-only log written at its data end, inside a reserve of
// zeros. Only the writer calls write; sync may run concurrently with it.
type logFile struct {
	f        *os.File
	end      int64 // where the next frame goes
	reserved int64 // the file's length: zeros from end to here
	zeros    []byte
}

// openLog creates dir/floor.log, empty. The floor never reads its log back, so
// each run starts a fresh one.
func openLog(dir string) (*logFile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	path := filepath.Join(dir, logName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	// Two processes on one directory would interleave their frames.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s (does another serve-floor use %s?): %w", path, dir, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncate log: %w", err)
	}
	// The file's directory entry must be durable too, once.
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	l := &logFile{f: f, zeros: make([]byte, 64<<10)}
	if err := l.reserve(reserveStep); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// write puts data at the log's end, first extending the reserve (and making
// the extension durable) if data does not fit in it.
func (l *logFile) write(data []byte) error {
	if need := l.end + int64(len(data)); need > l.reserved {
		if err := l.reserve((need + reserveStep - 1) / reserveStep * reserveStep); err != nil {
			return err
		}
	}
	if _, err := l.f.WriteAt(data, l.end); err != nil {
		return fmt.Errorf("append to %s: %w", l.f.Name(), err)
	}
	l.end += int64(len(data))
	return nil
}

// reserve fills the file with zeros up to size and syncs them with their new
// length, so that later fdatasyncs inside it write no metadata.
func (l *logFile) reserve(size int64) error {
	for l.reserved < size {
		n := min(int64(len(l.zeros)), size-l.reserved)
		if _, err := l.f.WriteAt(l.zeros[:n], l.reserved); err != nil {
			return fmt.Errorf("reserve %s: %w", l.f.Name(), err)
		}
		l.reserved += n
	}
	return fdatasync(l.f)
}

func (l *logFile) sync() error  { return fdatasync(l.f) }
func (l *logFile) Name() string { return l.f.Name() }
func (l *logFile) Close() error { return l.f.Close() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open log directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync log directory: %w", err)
	}
	return nil
}

// fdatasync is the durable step, as distkv's WAL does it on Linux: data plus
// the metadata needed to read it back (the size), not timestamps.
func fdatasync(f *os.File) error {
	for {
		// Go's runtime signals its threads (preemption), which can interrupt.
		err := unix.Fdatasync(int(f.Fd()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
		}
		return nil
	}
}

// kick wakes the goroutine waiting on c without blocking: c has room for one
// wake-up, and one pending wake-up covers any number of kicks.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ---- replica ----

// replica serves one primary connection at a time: a reader goroutine keeps
// reading frames while a syncer goroutine appends and fdatasyncs whatever has
// arrived, then acks the highest sequence the fdatasync covered.
type replica struct {
	f         *logFile
	beforeAck func() // test hook, set before start: runs before each ack is sent

	ln      net.Listener
	stopped chan struct{} // closed when the accept loop has returned

	mu      sync.Mutex
	conn    net.Conn // the primary's current connection
	closing bool
	err     error // the failure that stopped the replica
}

func newReplica(dir string) (*replica, error) {
	f, err := openLog(dir)
	if err != nil {
		return nil, err
	}
	return &replica{f: f, stopped: make(chan struct{})}, nil
}

// start accepts connections from ln in the background.
func (r *replica) start(ln net.Listener) {
	r.ln = ln
	go func() {
		defer close(r.stopped)
		r.acceptLoop()
	}()
}

// done is closed when the replica stopped serving, by Close or a failure.
func (r *replica) done() <-chan struct{} { return r.stopped }

func (r *replica) acceptLoop() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			r.fail(fmt.Errorf("accept: %w", err)) // no-op when closing
			return
		}
		r.mu.Lock()
		stop := r.closing || r.err != nil
		r.conn = c
		r.mu.Unlock()
		if stop {
			c.Close()
			return
		}
		r.serveConn(c)
	}
}

// fail records err, unless the replica is closing or already failed, and
// stops accepting.
func (r *replica) fail(err error) {
	r.mu.Lock()
	if !r.closing && r.err == nil {
		r.err = err
		fmt.Fprintln(os.Stderr, "kvbench serve-floor: replica:", err)
	}
	r.mu.Unlock()
	r.ln.Close()
}

func (r *replica) serveConn(c net.Conn) {
	defer c.Close()
	g := &pending{kick: make(chan struct{}, 1)}
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		r.syncLoop(c, g)
	}()
	err := readFrames(c, g)
	g.close()
	<-synced
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintf(os.Stderr, "kvbench serve-floor: replica: connection from %s: %v\n", c.RemoteAddr(), err)
	}
}

// readFrames hands every frame read from c to g until c fails or ends.
func readFrames(c net.Conn, g *pending) error {
	br := bufio.NewReaderSize(c, 64<<10)
	var buf []byte
	for {
		frame, seq, err := readFrame(br, buf, maxPayload)
		if err != nil {
			return err
		}
		g.add(seq, frame)
		buf = frame
	}
}

func (r *replica) syncLoop(c net.Conn, g *pending) {
	var spare []byte
	ack := make([]byte, ackLen)
	for {
		data, seq, ok := g.take(spare)
		if !ok {
			return
		}
		if err := appendSync(r.f, data); err != nil {
			r.fail(err)
			c.Close()
			return
		}
		if r.beforeAck != nil {
			r.beforeAck()
		}
		binary.BigEndian.PutUint64(ack, seq)
		if _, err := c.Write(ack); err != nil {
			c.Close() // the reader sees it and ends the connection
			return
		}
		spare = data
	}
}

// appendSync is one write(2) and one fdatasync for everything in data.
func appendSync(l *logFile, data []byte) error {
	if err := l.write(data); err != nil {
		return err
	}
	return l.sync()
}

// Close stops serving, waits for the connection's goroutines and closes the
// log. It returns the failure that stopped the replica, if any.
func (r *replica) Close() error {
	r.mu.Lock()
	r.closing = true
	if r.conn != nil {
		r.conn.Close()
	}
	r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		<-r.stopped
	}
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if cerr := r.f.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close log: %w", cerr))
	}
	return err
}

// pending gathers the frames that arrive while the syncer is busy, so one
// write(2) and one fdatasync cover them all. It is bounded by the primary:
// every frame holds requests that wait for this replica's (or another's) ack.
type pending struct {
	mu     sync.Mutex
	buf    []byte
	seq    uint64 // sequence of the last frame in buf
	closed bool
	kick   chan struct{}
}

func (g *pending) add(seq uint64, frame []byte) {
	g.mu.Lock()
	g.buf = append(g.buf, frame...)
	g.seq = seq
	g.mu.Unlock()
	kick(g.kick)
}

func (g *pending) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	kick(g.kick)
}

// take waits for frames and returns them all, leaving spare's storage in
// their place; ok is false once g is closed and empty.
func (g *pending) take(spare []byte) (data []byte, seq uint64, ok bool) {
	for {
		g.mu.Lock()
		if len(g.buf) > 0 {
			data, seq = g.buf, g.seq
			g.buf = spare[:0]
			g.mu.Unlock()
			return data, seq, true
		}
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return nil, 0, false
		}
		<-g.kick
	}
}

func runReplica(ctx context.Context, listen, dir string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r, err := newReplica(dir)
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(os.Stderr, "kvbench serve-floor: replica listening on %s, log %s\n", ln.Addr(), r.f.Name())
	r.start(ln)
	select {
	case <-r.done():
	case <-ctx.Done():
	}
	return r.Close()
}

// ---- primary ----

// primary answers distkv's HTTP API. Handlers queue records; a writer
// goroutine takes everything queued as one batch, sends it to every replica,
// appends it to the log and hands it to the syncer, without waiting for the
// fdatasync (one runs at a time; batches written meanwhile share the next).
// A batch is answered by whichever goroutine sees it committed last: the
// syncer or a replica's ack reader.
type primary struct {
	f          *logFile
	acks       int
	beforeSync func() // test hook, set before start: runs before each fdatasync

	q        queue
	kick     chan struct{} // wakes the writer
	syncKick chan struct{} // wakes the syncer
	written  atomic.Uint64 // highest sequence appended to f

	mu       sync.Mutex // guards the fields below and every link's fields
	links    []*link
	inflight []*batch // written, not yet answered, in sequence order
	durable  uint64   // highest sequence an fdatasync covered
	err      error    // why writes are no longer accepted

	kv store

	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	failed   chan struct{} // closed when the disk failed
	wg       sync.WaitGroup
	closeOne sync.Once
}

// link is the connection to one replica. A replica that drops is re-dialed
// but not sent what it missed: its acks count only for batches from the
// first one sent on the new connection.
type link struct {
	addr  string
	conn  net.Conn // nil while disconnected
	from  uint64   // first sequence sent on conn; 0 before the writer sends one
	acked uint64   // highest sequence the replica acked on conn
}

// batch is the unit of group commit; every request in it waits on done.
type batch struct {
	frame []byte // header room, then records; the writer's until sent
	seq   uint64
	done  chan struct{}
	err   error // set before done is closed when the batch failed
}

func newBatch(spare []byte) *batch {
	var header [headerLen]byte
	return &batch{frame: append(spare[:0], header[:]...), done: make(chan struct{})}
}

func (b *batch) finish(err error) {
	b.err = err
	close(b.done)
}

func newPrimary(dir string, replicas []string, acks int) (*primary, error) {
	if acks < 0 || acks > len(replicas) {
		return nil, fmt.Errorf("-acks must be 0..%d (the number of replicas), got %d", len(replicas), acks)
	}
	f, err := openLog(dir)
	if err != nil {
		return nil, err
	}
	p := &primary{
		f:        f,
		acks:     acks,
		kick:     make(chan struct{}, 1),
		syncKick: make(chan struct{}, 1),
		failed:   make(chan struct{}),
		kv:       store{m: make(map[string]entry)},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.q.init()
	for _, a := range replicas {
		p.links = append(p.links, &link{addr: a})
	}
	return p, nil
}

// start dials every replica, retrying until connected or ctx ends, then
// starts the writer, the syncer and one ack reader per replica.
func (p *primary) start(ctx context.Context) error {
	for _, l := range p.links {
		c, err := dialReplica(ctx, l.addr)
		if err != nil {
			return err
		}
		l.conn = c
	}
	p.wg.Add(2 + len(p.links))
	go p.writeLoop()
	go p.syncLoop()
	for _, l := range p.links {
		go p.keepLink(l, l.conn)
	}
	return nil
}

func dialReplica(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	for said := false; ; said = true {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		if !said {
			fmt.Fprintf(os.Stderr, "kvbench serve-floor: waiting for replica %s: %v\n", addr, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial replica %s: %w", addr, ctx.Err())
		case <-time.After(redialPause):
		}
	}
}

// keepLink reads acks from c; when c fails it re-dials until Close.
func (p *primary) keepLink(l *link, c net.Conn) {
	defer p.wg.Done()
	for {
		err := p.readAcks(l, c)
		p.mu.Lock()
		l.conn, l.from, l.acked = nil, 0, 0
		p.mu.Unlock()
		c.Close()
		if p.ctx.Err() != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "kvbench serve-floor: replica %s dropped (%v); re-dialing, it counts again from the next batch\n", l.addr, err)
		if c, err = dialReplica(p.ctx, l.addr); err != nil {
			return
		}
		p.mu.Lock()
		if p.ctx.Err() != nil { // Close ran meanwhile and did not see c
			p.mu.Unlock()
			c.Close()
			return
		}
		l.conn = c
		p.mu.Unlock()
	}
}

func (p *primary) readAcks(l *link, c net.Conn) error {
	br := bufio.NewReaderSize(c, 512)
	var ack [ackLen]byte
	for {
		if _, err := io.ReadFull(br, ack[:]); err != nil {
			return err
		}
		p.mu.Lock()
		l.acked = binary.BigEndian.Uint64(ack[:])
		p.answerLocked()
		p.mu.Unlock()
	}
}

func (p *primary) writeLoop() {
	defer p.wg.Done()
	var seq uint64
	var spare []byte
	var targets []net.Conn
	for {
		select {
		case <-p.kick:
		case <-p.ctx.Done():
			return
		}
		b := p.q.take(spare)
		if b == nil {
			continue
		}
		seq++
		b.seq = seq
		sealFrame(b.frame, seq)
		var ok bool
		if targets, ok = p.register(b, targets[:0]); !ok {
			return
		}
		// Replicas first: their round trip is the longer path.
		for _, c := range targets {
			send(c, b.frame)
		}
		if err := p.f.write(b.frame); err != nil {
			p.fail(err)
			return
		}
		p.written.Store(seq)
		kick(p.syncKick)
		spare, b.frame = b.frame, nil
	}
}

// register puts b in flight, before any ack for it can arrive, and returns
// the connected replicas to send it to. It fails b if writes have stopped.
func (p *primary) register(b *batch, targets []net.Conn) ([]net.Conn, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		b.finish(p.err)
		return nil, false
	}
	p.inflight = append(p.inflight, b)
	for _, l := range p.links {
		if l.conn == nil {
			continue
		}
		if l.from == 0 {
			l.from = b.seq
		}
		targets = append(targets, l.conn)
	}
	return targets, true
}

// send writes frame to a replica. On failure it closes the connection; the
// link's ack reader then sees the error and re-dials.
func send(c net.Conn, frame []byte) {
	c.SetWriteDeadline(time.Now().Add(sendTimeout))
	if _, err := c.Write(frame); err != nil {
		c.Close()
	}
}

func (p *primary) syncLoop() {
	defer p.wg.Done()
	var synced uint64
	for {
		select {
		case <-p.syncKick:
		case <-p.ctx.Done():
			return
		}
		s := p.written.Load() // loaded before the fdatasync: it covers s
		if s == synced {
			continue
		}
		if p.beforeSync != nil {
			p.beforeSync()
		}
		if err := p.f.sync(); err != nil {
			p.fail(err)
			return
		}
		synced = s
		p.mu.Lock()
		p.durable = s
		p.answerLocked()
		p.mu.Unlock()
	}
}

// answerLocked answers, in order, every batch now durable here and on -acks
// replicas.
func (p *primary) answerLocked() {
	n := 0
	for n < len(p.inflight) && p.committedLocked(p.inflight[n].seq) {
		close(p.inflight[n].done)
		p.inflight[n] = nil
		n++
	}
	p.inflight = p.inflight[n:]
}

func (p *primary) committedLocked(seq uint64) bool {
	if p.durable < seq {
		return false
	}
	n := 0
	for _, l := range p.links {
		if l.from != 0 && l.from <= seq && l.acked >= seq {
			n++
		}
	}
	return n >= p.acks
}

// stopWrites fails every waiting and future write with err; it reports
// whether it was the first to stop them.
func (p *primary) stopWrites(err error) bool {
	p.mu.Lock()
	first := p.err == nil
	if first {
		p.err = err
		for _, b := range p.inflight {
			b.finish(err)
		}
		p.inflight = nil
	}
	p.mu.Unlock()
	p.q.fail(err)
	return first
}

// fail stops writes after a disk error: nothing written after it could be
// trusted to be durable.
func (p *primary) fail(err error) {
	if p.stopWrites(err) {
		fmt.Fprintln(os.Stderr, "kvbench serve-floor: primary:", err)
		close(p.failed)
	}
}

// failure is the disk error that stopped writes, once failed is closed.
func (p *primary) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Close stops the goroutines, fails the writes still waiting and closes the
// log. A beforeSync hook that blocks must be released first.
func (p *primary) Close() error {
	var err error
	p.closeOne.Do(func() {
		p.cancel()
		p.mu.Lock()
		for _, l := range p.links {
			if l.conn != nil {
				l.conn.Close()
			}
		}
		p.mu.Unlock()
		p.wg.Wait()
		p.stopWrites(errClosed)
		if cerr := p.f.Close(); cerr != nil {
			err = fmt.Errorf("close log: %w", cerr)
		}
	})
	return err
}

// queue holds the batch that requests are adding to until the writer takes
// it.
type queue struct {
	mu     sync.Mutex
	room   sync.Cond // broadcast when the writer takes the open batch
	open   *batch
	lastID int64
	err    error
}

func (q *queue) init() {
	q.room.L = &q.mu
	q.open = newBatch(nil)
}

// add appends a record to the open batch and returns the write's id and the
// batch to wait on. A record that would push the batch past maxPayload waits
// for the next one.
func (q *queue) add(key string, value []byte) (int64, *batch, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := recordLen(key, value)
	for q.err == nil && len(q.open.frame) > headerLen && len(q.open.frame)-headerLen+n > maxPayload {
		q.room.Wait()
	}
	if q.err != nil {
		return 0, nil, q.err
	}
	q.open.frame = appendRecord(q.open.frame, key, value)
	q.lastID++
	return q.lastID, q.open, nil
}

// take returns the open batch, or nil if it is empty or writes stopped, and
// opens a new one in spare's storage.
func (q *queue) take(spare []byte) *batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.open
	if q.err != nil || len(b.frame) == headerLen {
		return nil
	}
	q.open = newBatch(spare)
	q.room.Broadcast()
	return b
}

func (q *queue) fail(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err == nil {
		q.err = err
		q.open.finish(err)
		q.room.Broadcast()
	}
}

// ---- the primary's HTTP API ----

// entry is the last committed write of a key; id orders writes, so a write
// answered later than a newer one cannot hide it.
type entry struct {
	body    []byte
	id      int64
	deleted bool
}

type store struct {
	mu sync.RWMutex
	m  map[string]entry
}

func (s *store) set(key string, e entry) {
	s.mu.Lock()
	if old, ok := s.m[key]; !ok || old.id < e.id {
		s.m[key] = e
	}
	s.mu.Unlock()
}

func (s *store) get(key string) (entry, bool) {
	s.mu.RLock()
	e, ok := s.m[key]
	s.mu.RUnlock()
	return e, ok
}

func (p *primary) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/key/", p.serveKey)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return mux
}

func (p *primary) serveKey(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/key/")
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case http.MethodPut, http.MethodPost, http.MethodDelete:
		p.serveWrite(w, r, key)
	case http.MethodGet:
		p.serveRead(w, key)
	default:
		writeDetail(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// serveWrite logs key and the body as they came: the floor does not parse
// the body on the write path, it is not the work being measured.
func (p *primary) serveWrite(w http.ResponseWriter, r *http.Request, key string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		code := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			code = http.StatusRequestEntityTooLarge
		}
		writeDetail(w, code, "read body: "+err.Error())
		return
	}
	id, b, err := p.q.add(key, body)
	if err != nil {
		writeDetail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	kick(p.kick)
	select {
	case <-b.done:
	case <-r.Context().Done():
		return // the client left; the write may still become durable
	}
	if b.err != nil {
		writeDetail(w, http.StatusServiceUnavailable, b.err.Error())
		return
	}
	p.kv.set(key, entry{body: body, id: id, deleted: r.Method == http.MethodDelete})
	out := append([]byte(`{"status":"ok","id":`), strconv.FormatInt(id, 10)...)
	w.Write(append(out, "}\n"...))
}

// serveRead answers from the map; the value is taken out of the stored body
// here, not on the write path.
func (p *primary) serveRead(w http.ResponseWriter, key string) {
	e, ok := p.kv.get(key)
	if !ok || e.deleted {
		writeDetail(w, http.StatusNotFound, "Key not found")
		return
	}
	var body struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(e.body, &body); err != nil {
		writeDetail(w, http.StatusInternalServerError, `the write of this key had a body other than {"value":"..."}: `+err.Error())
		return
	}
	out, err := json.Marshal(struct {
		Key      string `json:"key"`
		Value    string `json:"value"`
		Version  int    `json:"version"`
		Revision int64  `json:"revision"`
	}{key, body.Value, 1, e.id})
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Write(append(out, '\n'))
}

func writeDetail(w http.ResponseWriter, code int, detail string) {
	out, _ := json.Marshal(struct {
		Detail string `json:"detail"`
	}{detail}) // a struct of one string always marshals
	w.WriteHeader(code)
	w.Write(append(out, '\n'))
}

func runPrimary(ctx context.Context, addr, dir string, replicas []string, acks int) error {
	p, err := newPrimary(dir, replicas, acks)
	if err != nil {
		return err
	}
	if err := p.start(ctx); err != nil {
		return errors.Join(err, p.Close())
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Join(fmt.Errorf("listen: %w", err), p.Close())
	}
	fmt.Fprintf(os.Stderr, "kvbench serve-floor: primary listening on %s, log %s, replicas %s, acks %d\n",
		ln.Addr(), p.f.Name(), strings.Join(replicas, ","), acks)
	srv := &http.Server{Handler: p.handler()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-p.failed:
		err = p.failure()
	case <-ctx.Done():
	}
	// Let answered requests finish sending before the log closes.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		srv.Close()
	}
	return errors.Join(err, p.Close())
}
