package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// seedFrames returns streams of valid frames of every type, and damaged ones.
func seedFrames() [][]byte {
	msgs := []raftpb.Message{
		app(1, 2, 7, []byte("entry data")),
		heartbeat(1, 2, 8),
		{Type: raftpb.MsgSnap, From: 1, To: 2, Snapshot: &raftpb.Snapshot{
			Metadata: raftpb.SnapshotMetadata{Index: 5, Term: 2, ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}}},
		}},
	}
	var raft []byte
	raft, start := beginFrame(raft, frameRaft)
	for i, m := range msgs {
		b, _ := m.Marshal()
		raft = append(raft, byte(i%2+1), byte(len(b)))
		raft = append(raft, b...)
	}
	finishFrame(raft, start)

	var all []byte
	all = append(all, raft...)
	all = appendCall(all, 1, 3, 9, []byte("payload"))
	all = appendIDFrame(all, frameCancel, 1, nil)
	all = appendUvarints(all, frameSnapBegin, 1, 4)
	all = appendIDFrame(all, frameSnapData, 1, bytes.Repeat([]byte("s"), 1000))
	all = appendIDFrame(all, frameSnapEnd, 1, nil)
	all = appendUvarints(all, frameSnapBegin, 2, 4)
	all = appendIDFrame(all, frameSnapData, 2, []byte("x"))
	all = appendIDFrame(all, frameSnapAbort, 2, []byte("gave up"))
	all = appendStatusFrame(all, frameReply, 5, []byte("ok"), nil)
	all = appendStatusFrame(all, frameSnapResult, 5, nil, io.ErrUnexpectedEOF)
	all = appendUvarints(all, frameSnapCredit, 1, 1)

	badCRC := bytes.Clone(raft)
	badCRC[len(badCRC)-1] ^= 1
	huge := appendFrame(nil, frameRaft, nil)
	huge[0] = 0x7f
	reserved := appendFrame(nil, frameCall, []byte{1, 1, 1})
	reserved[6] = 1
	nested := appendFrame(nil, frameRaft, []byte{1, 4, 0x72, 2, 0x72, 0})
	return [][]byte{raft, all, all[:len(all)/2], badCRC, huge, reserved, nested,
		appendHello(nil, hello{version: protocolVersion, token: 0xc1, from: 1, to: 2}), nil}
}

// allocatedBy returns the bytes allocated on the heap while fn runs (by any
// goroutine). It uses runtime.ReadMemStats, which flushes the per-P caches
// and so counts exactly, but stops the world: it is slow.
func allocatedBy(fn func()) uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	fn()
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc - before
}

// checkAlloc fails t if fn allocates more than limit bytes. It measures with
// runtime/metrics, which is cheap but counts small objects only when their
// span leaves the per-P cache, so objects allocated before fn (up to about a
// megabyte) can be counted; an excess is confirmed by running fn again under
// allocatedBy. fn must do the same work every time.
func checkAlloc(t *testing.T, what string, limit uint64, fn func()) {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	if s[0].Value.Uint64()-before <= limit {
		return
	}
	if a := allocatedBy(fn); a > limit {
		t.Fatalf("%s allocated %d bytes (limit %d)", what, a, limit)
	}
}

// decodeAll runs every body decoder on body, as a hostile peer's frame of
// any type might reach any of them.
func decodeAll(typ frameType, body []byte) {
	decodeRaft(body, func(uint64, []raftpb.Message) {})
	decodeCall(body)
	decodeStatus(body)
	var a, b uint64
	decodeUvarints(body, &a)
	decodeUvarints(body, &a, &b)
	decodeHello(typ, body)
	decodeAck(typ, body)
	checkMessage(body)
}

// fakeConn is a net.Conn whose incoming bytes are fixed and whose writes
// vanish. Only the methods a conn uses are implemented.
type fakeConn struct {
	net.Conn
	r io.Reader
}

func (f *fakeConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (f *fakeConn) Close() error                     { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzHandler answers everything at once and drains snapshots.
type fuzzHandler struct{}

func (fuzzHandler) HandleRaft(uint64, []raftpb.Message) {}
func (fuzzHandler) HandleCall(_ context.Context, _, _ uint64, _ uint8, p []byte) ([]byte, error) {
	return p, nil
}
func (fuzzHandler) HandleSnapshot(_, _ uint64, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
func (fuzzHandler) PeerUnreachable(uint64) {}

// bareTransport is a Transport without a listener or goroutines, to serve
// one connection in a fuzz target.
func bareTransport() *Transport {
	cfg := Config{ID: 2, Token: 0xc1, Listen: "unused", Handler: fuzzHandler{}, MaxFrameSize: 1 << 20}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		peers: map[uint64]*peer{}, inbound: map[uint64]*conn{}, unknown: map[uint64]uint64{},
		unreachable: map[uint64]struct{}{}, unreachWake: make(chan struct{}, 1),
	}
}

// FuzzFrameDecoder feeds arbitrary bytes to the frame reader and every body
// decoder: nothing panics, allocation stays proportional to the input, and
// every frame that is accepted re-encodes to exactly the bytes it came from.
func FuzzFrameDecoder(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The default limit, so that allocating what a header claims rather
		// than what arrived would be far over the allocation limit below.
		const max = 16 << 20
		// The first body buffer may take readStep at once; beyond it, the
		// decoders' structures cost a bounded multiple of their input.
		checkAlloc(t, fmt.Sprintf("decoding %d bytes", len(data)), uint64(2*readStep+512*len(data)), func() {
			fr := &frameReader{r: bytes.NewReader(data), max: max}
			off := 0
			for {
				typ, body, err := fr.next()
				if err != nil {
					return
				}
				if len(body) > max {
					t.Fatalf("body of %d bytes passed a limit of %d", len(body), max)
				}
				if enc := appendFrame(nil, typ, body); !bytes.Equal(enc, data[off:off+len(enc)]) {
					t.Fatalf("frame at %d does not re-encode to its bytes", off)
				}
				off += headerSize + len(body)
				decodeAll(typ, body)
			}
		})
	})
}

// FuzzConn feeds arbitrary bytes to the reader loop of an accepted
// connection, with handlers that answer calls and drain snapshots: nothing
// panics or hangs, whatever the order of calls, cancels and stream frames.
// (Kept apart from FuzzFrameDecoder because its handler goroutines make its
// coverage vary from run to run, which slows the fuzzer's minimization.)
func FuzzConn(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := bareTransport()
		c := newConn(tr, &fakeConn{r: bytes.NewReader(data)}, &frameReader{r: bytes.NewReader(data), max: tr.cfg.MaxFrameSize}, 1, nil)
		tr.wg.Add(1)
		c.readLoop() // returns at the end of data, closing the connection
		tr.wg.Wait() // handlers finish once the connection is closed
		tr.cancel()
		if !errors.Is(c.err, ErrConnLost) {
			t.Fatalf("connection ended with %v", c.err)
		}
	})
}

// FuzzHandshake feeds arbitrary bytes to both sides of the handshake: no
// panics, little allocation, and success only for a proper hello or ack.
func FuzzHandshake(f *testing.F) {
	const selfID, peerID, token, cluster = 2, 1, 0xc1, 0xd1
	me := self{id: selfID, token: token, cluster: cluster}
	good := hello{version: protocolVersion, token: token, cluster: cluster, from: peerID, to: selfID}
	f.Add(appendHello(nil, good))
	f.Add(appendHello(nil, hello{version: protocolVersion, token: token, from: peerID, to: selfID}))
	f.Add(appendHello(nil, hello{version: protocolVersion, flags: flagAskClusterID, token: token, from: peerID, to: selfID}))
	f.Add(appendHello(nil, hello{version: 9, token: token, cluster: cluster, from: peerID, to: selfID}))
	f.Add(appendHello(nil, hello{version: protocolVersion, token: 7, cluster: cluster, from: peerID, to: selfID}))
	f.Add(appendHello(nil, hello{version: protocolVersion, token: token, cluster: 0xd2, from: peerID, to: selfID}))
	f.Add(appendHello(nil, hello{version: protocolVersion, token: token, cluster: cluster, from: selfID, to: selfID}))
	f.Add(appendAck(nil, ack{version: protocolVersion, status: ackOK, token: token, cluster: cluster, id: selfID}))
	f.Add(appendAck(nil, ack{version: protocolVersion, status: ackOK, token: token, cluster: 0xd2, id: selfID}))
	f.Add(appendAck(nil, ack{version: protocolVersion, status: ackWrongToken, token: 7, id: selfID, reason: "no"}))
	f.Add(appendAck(nil, ack{version: protocolVersion, status: ackWrongCluster, token: token, cluster: 0xd2, id: selfID, reason: "no"}))
	f.Add(appendFrame(nil, frameHello, bytes.Repeat([]byte{0xff}, maxHelloSize+1)))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		var h hello
		var got uint64
		var aerr, derr error
		checkAlloc(t, fmt.Sprintf("handshake over %d bytes", len(data)), uint64(16<<10+4*len(data)), func() {
			out.Reset()
			h, aerr = acceptHandshake(&out, &frameReader{r: bytes.NewReader(data), max: maxHelloSize}, me)
			got, derr = dialHandshake(io.Discard, &frameReader{r: bytes.NewReader(data), max: maxHelloSize}, self{id: peerID, token: token, cluster: cluster}, selfID, false)
		})
		if aerr == nil {
			if h.from != peerID || h.token != token || (h.cluster != cluster && h.cluster != 0) || h.flags&flagAskClusterID != 0 {
				t.Fatalf("accepted hello %+v", h)
			}
		}
		if out.Len() > 0 {
			typ, body, err := (&frameReader{r: &out, max: maxHelloSize}).next()
			if err != nil {
				t.Fatalf("acceptor wrote a bad ack: %v", err)
			}
			a, err := decodeAck(typ, body)
			if err != nil || (a.status == ackOK) != (aerr == nil) || a.cluster != cluster {
				t.Fatalf("ack %+v (%v) for accept error %v", a, err, aerr)
			}
		}
		if derr == nil {
			typ, body, _ := (&frameReader{r: bytes.NewReader(data), max: maxHelloSize}).next()
			if a, err := decodeAck(typ, body); err != nil || a.status != ackOK || a.token != token || a.id != selfID ||
				(a.cluster != cluster && a.cluster != 0) || got != a.cluster {
				t.Fatalf("dialer accepted ack %+v (%v)", a, err)
			}
		}
	})
}
