package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

func TestConfigValidate(t *testing.T) {
	h := newRecorder()
	ok := Config{ID: 1, Listen: "127.0.0.1:0", Handler: h}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"valid", func(*Config) {}, ""},
		{"zero id", func(c *Config) { c.ID = 0 }, "node id"},
		{"no listen", func(c *Config) { c.Listen = "" }, "listen address"},
		{"no handler", func(c *Config) { c.Handler = nil }, "handler"},
		{"negative queue", func(c *Config) { c.QueueSize = -1 }, "queue size"},
		{"negative timeout", func(c *Config) { c.WriteTimeout = -time.Second }, "write timeout"},
		{"backoff order", func(c *Config) { c.InitialBackoff = 2 * time.Second }, "exceeds max backoff"},
		{"tiny frames", func(c *Config) { c.MaxFrameSize = 1024 }, "max frame size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if c.QueueSize != 4096 || c.MaxFrameSize != 16<<20 || c.DialTimeout != time.Second || c.Logger == nil {
					t.Fatalf("defaults not filled in: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestSendInOrder has three nodes send each other batches of messages of
// several shards; everything arrives, in order per sender and shard, and
// large batches share writes.
func TestSendInOrder(t *testing.T) {
	const (
		nodes   = 3
		shards  = 4
		batches = 20
		batch   = 250 // messages per Send call, spread over the peers
	)
	var recs [nodes + 1]*recorder
	var ts []*Transport
	for id := uint64(1); id <= nodes; id++ {
		recs[id] = newRecorder()
		cfg := testConfig(id, recs[id])
		cfg.QueueSize = 1 << 16 // all of it may be queued at once: nothing is dropped
		ts = append(ts, start(t, cfg))
	}
	mesh(ts...)
	for _, a := range ts {
		for _, b := range ts {
			if a != b {
				waitConnected(t, a, b.cfg.ID)
			}
		}
	}

	payload := make([]byte, 100)
	seq := map[[3]uint64]uint64{} // from, to, shard → next sequence number
	for range batches {
		for _, a := range ts {
			for shard := uint64(1); shard <= shards; shard++ {
				msgs := make([]raftpb.Message, 0, batch)
				for i := range batch {
					to := uint64(i%nodes) + 1
					if to == a.cfg.ID {
						continue
					}
					k := [3]uint64{a.cfg.ID, to, shard}
					msgs = append(msgs, app(a.cfg.ID, to, seq[k], payload))
					seq[k]++
				}
				a.Send(shard, msgs)
			}
		}
	}
	want := 0
	for _, n := range seq {
		want += int(n)
	}
	waitFor(t, 20*time.Second, "all messages delivered", func() (bool, string) {
		got := 0
		for id := 1; id <= nodes; id++ {
			got += recs[id].received()
		}
		return got == want, fmt.Sprintf("%d of %d; stats %v %v %v", got, want, ts[0].Stats(), ts[1].Stats(), ts[2].Stats())
	})
	for k, n := range seq {
		from, to, shard := k[0], k[1], k[2]
		checkInOrder(t, recs[to].flow(from, shard), int(n), fmt.Sprintf("%d→%d shard %d", from, to, shard))
	}
	for _, a := range ts {
		for id, s := range a.Stats() {
			if s.Dropped != 0 || s.Reconnects != 0 {
				t.Errorf("node %d → %d: %+v", a.cfg.ID, id, s)
			}
			msgs := seq[[3]uint64{a.cfg.ID, id, 1}] * shards
			if s.Sent != msgs {
				t.Errorf("node %d → %d: sent %d, want %d", a.cfg.ID, id, s.Sent, msgs)
			}
			a.mu.RLock()
			writes := a.peers[id].writes.Load()
			a.mu.RUnlock()
			// Every Send call queues a batch of ~125 messages per peer;
			// the writer must not spend a write per message.
			if writes*10 > msgs {
				t.Errorf("node %d → %d: %d writes for %d messages", a.cfg.ID, id, writes, msgs)
			}
			t.Logf("node %d → %d: %d messages in %d writes", a.cfg.ID, id, msgs, writes)
		}
	}
}

// TestCoalescing checks the writer with a batch queued while it is idle: a
// single Send of many messages costs very few writes.
func TestCoalescing(t *testing.T) {
	ra, rb := newRecorder(), newRecorder()
	a, b := start(t, testConfig(1, ra)), start(t, testConfig(2, rb))
	mesh(a, b)
	waitConnected(t, a, 2)
	const n = 3000
	msgs := make([]raftpb.Message, n)
	for i := range msgs {
		msgs[i] = app(1, 2, uint64(i), []byte("0123456789abcdef"))
	}
	a.Send(7, msgs)
	waitFor(t, 10*time.Second, "delivery", func() (bool, string) {
		return rb.received() == n, fmt.Sprint(rb.received())
	})
	checkInOrder(t, rb.flow(1, 7), n, "shard 7")
	a.mu.RLock()
	writes := a.peers[2].writes.Load()
	a.mu.RUnlock()
	if writes > 3 {
		t.Fatalf("%d messages sent in one Send took %d writes", n, writes)
	}
}

func TestUnknownPeerDropped(t *testing.T) {
	ra := newRecorder()
	a := start(t, testConfig(1, ra))
	a.Send(1, []raftpb.Message{heartbeat(1, 9, 0), heartbeat(1, 9, 1)})
	if got := a.Stats()[9].Dropped; got != 2 {
		t.Fatalf("dropped for unknown peer 9 = %d, want 2", got)
	}
	waitFor(t, 5*time.Second, "PeerUnreachable(9)", func() (bool, string) {
		n := ra.unreachableCount(9)
		return n > 0, fmt.Sprint(n)
	})
	if _, err := a.Call(context.Background(), 9, 1, 0, nil); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Call to unknown peer: %v", err)
	}
	// Adding the peer later keeps the count.
	a.AddPeer(9, "127.0.0.1:1")
	if got := a.Stats()[9].Dropped; got != 2 {
		t.Fatalf("dropped after AddPeer = %d, want 2", got)
	}
}

// TestReconnect kills a peer, checks that messages to it are dropped,
// counted and reported, restarts it on the same address and checks that
// traffic resumes, with dial attempts in between bounded by the backoff.
func TestReconnect(t *testing.T) {
	ra, rb := newRecorder(), newRecorder()
	cfgA := testConfig(1, ra)
	cfgA.InitialBackoff = 5 * time.Millisecond
	cfgA.MaxBackoff = 40 * time.Millisecond
	a := start(t, cfgA)
	b := start(t, testConfig(2, rb))
	addr := b.Addr().String()
	mesh(a, b)
	waitConnected(t, a, 2)
	a.Send(1, []raftpb.Message{heartbeat(1, 2, 0)})
	waitFor(t, 5*time.Second, "first heartbeat", func() (bool, string) { return rb.received() == 1, "" })

	b.Close()
	waitFor(t, 5*time.Second, "A sees B down", func() (bool, string) {
		s := a.Stats()[2]
		return !s.Connected, fmt.Sprintf("%+v", s)
	})
	before := a.Stats()[2].Dropped
	for i := range 10 {
		a.Send(1, []raftpb.Message{heartbeat(1, 2, uint64(i))})
	}
	if got := a.Stats()[2].Dropped - before; got != 10 {
		t.Fatalf("dropped %d messages to a dead peer, want 10", got)
	}
	waitFor(t, 5*time.Second, "PeerUnreachable(2)", func() (bool, string) {
		n := ra.unreachableCount(2)
		return n > 0, fmt.Sprint(n)
	})
	if _, err := a.Call(context.Background(), 2, 1, 0, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Call to a dead peer = %v, want ErrUnreachable", err)
	}

	// Backoff: once at its cap (40ms, waits drawn from [20ms, 40ms]), ten
	// more dial attempts take at least 200ms, and not much more than 400ms.
	a.mu.RLock()
	p := a.peers[2]
	a.mu.RUnlock()
	waitFor(t, 5*time.Second, "backoff at its cap", func() (bool, string) {
		return p.dials.Load() >= 8, fmt.Sprint(p.dials.Load())
	})
	d0, t0 := p.dials.Load(), time.Now()
	waitFor(t, 10*time.Second, "ten more dial attempts", func() (bool, string) {
		return p.dials.Load() >= d0+10, fmt.Sprint(p.dials.Load() - d0)
	})
	if el := time.Since(t0); el < 200*time.Millisecond || el > 5*time.Second {
		t.Fatalf("ten dial attempts took %v; the capped backoff allows 200ms to 400ms plus dial time", el)
	}

	rb2 := newRecorder()
	cfgB := testConfig(2, rb2)
	cfgB.Listen = addr
	b2 := start(t, cfgB)
	b2.AddPeer(1, a.Addr().String())
	waitConnected(t, a, 2)
	// Raft would keep sending heartbeats; do the same until one arrives.
	seq := uint64(100)
	waitFor(t, 10*time.Second, "traffic to the restarted peer", func() (bool, string) {
		a.Send(1, []raftpb.Message{heartbeat(1, 2, seq)})
		seq++
		return rb2.received() > 0, fmt.Sprintf("%+v", a.Stats()[2])
	})
	if s := a.Stats()[2]; s.Reconnects != 1 || !s.Connected {
		t.Fatalf("stats after reconnect: %+v", s)
	}
	// And the other way round, on B's own connection.
	b2.Send(1, []raftpb.Message{heartbeat(2, 1, 0)})
	waitFor(t, 10*time.Second, "traffic from the restarted peer", func() (bool, string) {
		return len(ra.flow(2, 1)) > 0, ""
	})
}

// TestAddPeerNewAddress moves a peer to another address.
func TestAddPeerNewAddress(t *testing.T) {
	ra, rb, rc := newRecorder(), newRecorder(), newRecorder()
	a := start(t, testConfig(1, ra))
	b := start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())
	a.AddPeer(2, b.Addr().String()) // idempotent
	waitConnected(t, a, 2)
	b.Close()
	c := start(t, testConfig(2, rc)) // node 2 moved
	a.AddPeer(2, c.Addr().String())
	waitFor(t, 10*time.Second, "traffic to the new address", func() (bool, string) {
		a.Send(1, []raftpb.Message{heartbeat(1, 2, 0)})
		return rc.received() > 0, fmt.Sprintf("%+v", a.Stats()[2])
	})
	if got := a.Stats()[2].Addr; got != c.Addr().String() {
		t.Fatalf("stats address %q, want %q", got, c.Addr())
	}
}

// TestBoundedQueueSilentPeer: a listener that accepts and never answers. The
// handshake times out, so the peer never counts as connected; Send drops.
func TestBoundedQueueSilentPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	ra := newRecorder()
	cfg := testConfig(1, ra)
	cfg.DialTimeout = 100 * time.Millisecond
	a := start(t, cfg)
	a.AddPeer(2, ln.Addr().String())
	began := time.Now()
	for i := range 100000 {
		a.Send(1, []raftpb.Message{heartbeat(1, 2, uint64(i))})
	}
	if el := time.Since(began); el > 5*time.Second {
		t.Fatalf("100000 Sends took %v", el)
	}
	if s := a.Stats()[2]; s.Dropped != 100000 || s.Sent != 0 || s.Connected {
		t.Fatalf("stats: %+v", s)
	}
	waitFor(t, 5*time.Second, "PeerUnreachable", func() (bool, string) { return ra.unreachableCount(2) > 0, "" })
}

// stallingPeer completes the handshake as node id and then never reads.
func stallingPeer(t *testing.T, id, token uint64) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
			fr := &frameReader{r: bufio.NewReader(c), max: maxHelloSize}
			acceptHandshake(c, fr, self{id: id, token: token})
		}
	}()
	return ln
}

// TestBoundedQueueStalledPeer: a peer that completes the handshake and then
// stops reading. Send never blocks, drops grow, memory stays bounded.
func TestBoundedQueueStalledPeer(t *testing.T) {
	ln := stallingPeer(t, 2, 0xc1)
	ra := newRecorder()
	cfg := testConfig(1, ra)
	cfg.QueueSize = 256
	cfg.WriteTimeout = time.Minute
	a := start(t, cfg)
	a.AddPeer(2, ln.Addr().String())
	waitConnected(t, a, 2)

	const (
		n    = 20000
		size = 8 << 10
	)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc
	began := time.Now()
	var slowest time.Duration
	for i := range n {
		m := app(1, 2, uint64(i), make([]byte, size)) // 160 MiB in all
		t0 := time.Now()
		a.Send(1, []raftpb.Message{m})
		slowest = max(slowest, time.Since(t0))
	}
	el := time.Since(began)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grown := int64(ms.HeapAlloc) - int64(heapBefore)
	s := a.Stats()[2]
	t.Logf("%d sends in %v (slowest %v), heap grew %d KiB, stats %+v", n, el, slowest, grown>>10, s)
	if slowest > time.Second {
		t.Errorf("a Send blocked for %v", slowest)
	}
	if s.Dropped < n/2 || s.Sent+s.Dropped > n {
		t.Errorf("expected most messages dropped: %+v", s)
	}
	// Queued: at most QueueSize in the queue plus QueueSize being written.
	if limit := int64(2*cfg.QueueSize*size) + 16<<20; grown > limit {
		t.Errorf("heap grew by %d bytes, limit %d", grown, limit)
	}
	c := a.peers[2].conn.Load()
	c.mu.Lock()
	queued := len(c.raftQ)
	c.mu.Unlock()
	if queued > cfg.QueueSize {
		t.Errorf("%d messages queued, limit %d", queued, cfg.QueueSize)
	}
	if ra.unreachableCount(2) == 0 {
		waitFor(t, 5*time.Second, "PeerUnreachable", func() (bool, string) { return ra.unreachableCount(2) > 0, "" })
	}
}

// TestWriteTimeout: a stalled peer's connection is closed when a write
// blocks too long, and the dialer reconnects.
func TestWriteTimeout(t *testing.T) {
	ln := stallingPeer(t, 2, 0xc1)
	cfg := testConfig(1, newRecorder())
	cfg.WriteTimeout = 100 * time.Millisecond
	a := start(t, cfg)
	a.AddPeer(2, ln.Addr().String())
	waitConnected(t, a, 2)
	big := make([]byte, 512<<10)
	waitFor(t, 20*time.Second, "a reconnect after a write timeout", func() (bool, string) {
		a.Send(1, []raftpb.Message{app(1, 2, 0, big)})
		s := a.Stats()[2]
		return s.Reconnects > 0, fmt.Sprintf("%+v", s)
	})
}

func TestTokenMismatchRefused(t *testing.T) {
	var logs logBuffer
	ra, rb := newRecorder(), newRecorder()
	cfgA := testConfig(1, ra)
	cfgA.Logger = logs.logger()
	a := start(t, cfgA)
	cfgB := testConfig(2, rb)
	cfgB.Token = 0xc2
	cfgB.Logger = logs.logger()
	b := start(t, cfgB)
	a.AddPeer(2, b.Addr().String())
	waitFor(t, 5*time.Second, "refusal logged by both sides", func() (bool, string) {
		l := logs.String()
		return strings.Contains(l, "refused peer connection") && strings.Contains(l, "refused by peer") &&
			strings.Contains(l, "--cluster-token differs"), l
	})
	if _, err := a.Call(context.Background(), 2, 1, 0, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Call across clusters = %v, want ErrUnreachable", err)
	}
	a.Send(1, []raftpb.Message{heartbeat(1, 2, 0)})
	if s := a.Stats()[2]; s.Connected || s.Dropped != 1 || rb.received() != 0 {
		t.Fatalf("stats %+v, received %d", s, rb.received())
	}
}

// TestOtherClusterRefused: nodes that both know a cluster id, and not the
// same one, refuse each other at the handshake, and the log line names both
// ids; a node that knows none (a legacy data directory) is refused by nobody.
func TestOtherClusterRefused(t *testing.T) {
	var logs logBuffer
	ra, rb := newRecorder(), newRecorder()
	cfgA := testConfig(1, ra)
	cfgA.ClusterID = 0xaaaa
	cfgA.Logger = logs.logger()
	a := start(t, cfgA)
	cfgB := testConfig(2, rb)
	cfgB.ClusterID = 0xbbbb
	cfgB.Logger = logs.logger()
	b := start(t, cfgB)
	a.AddPeer(2, b.Addr().String())
	b.AddPeer(1, a.Addr().String())
	waitFor(t, 5*time.Second, "refusals naming both cluster ids", func() (bool, string) {
		l := logs.String()
		return strings.Contains(l, "refused peer connection") &&
			strings.Contains(l, "dialer belongs to cluster 000000000000aaaa, this node to cluster 000000000000bbbb") &&
			strings.Contains(l, "dialer belongs to cluster 000000000000bbbb, this node to cluster 000000000000aaaa"), l
	})
	a.Send(1, []raftpb.Message{heartbeat(1, 2, 0)})
	b.Send(1, []raftpb.Message{heartbeat(2, 1, 0)})
	if rb.received() != 0 || ra.received() != 0 {
		t.Fatalf("a message crossed clusters: %d and %d received", ra.received(), rb.received())
	}

	// A node without an id talks to either.
	rc := newRecorder()
	cfgC := testConfig(3, rc)
	c := start(t, cfgC)
	c.AddPeer(2, b.Addr().String())
	b.AddPeer(3, c.Addr().String())
	waitFor(t, 5*time.Second, "messages between a node without a cluster id and one with", func() (bool, string) {
		c.Send(1, []raftpb.Message{heartbeat(3, 2, 0)})
		b.Send(1, []raftpb.Message{heartbeat(2, 3, 0)})
		return rb.received() > 0 && rc.received() > 0, fmt.Sprintf("b got %d, c got %d", rb.received(), rc.received())
	})
}

// TestAskClusterID: a node learns another's cluster id with one handshake,
// which the asked node does not count as a connection; a wrong token is
// refused even so.
func TestAskClusterID(t *testing.T) {
	var logs logBuffer
	cfgB := testConfig(2, newRecorder())
	cfgB.ClusterID = 0xbbbb
	cfgB.Logger = logs.logger()
	b := start(t, cfgB)
	ctx := context.Background()
	asker := testConfig(1, newRecorder())
	asker.Listen = "unused"
	id, err := AskClusterID(ctx, asker, b.Addr().String(), 2)
	if err != nil || id != 0xbbbb {
		t.Fatalf("AskClusterID = %x, %v; want bbbb", id, err)
	}
	if l := logs.String(); strings.Contains(l, "accepted peer connection") || strings.Contains(l, "refused") {
		t.Fatalf("asking for the id was taken as a connection:\n%s", l)
	}
	unknown := testConfig(1, newRecorder())
	unknown.Listen = "unused"
	noID := start(t, testConfig(3, newRecorder()))
	if id, err := AskClusterID(ctx, unknown, noID.Addr().String(), 3); err != nil || id != 0 {
		t.Fatalf("AskClusterID of a node without an id = %x, %v; want 0", id, err)
	}
	asker.Token = 0xc2
	if _, err := AskClusterID(ctx, asker, b.Addr().String(), 2); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "--cluster-token differs") {
		t.Fatalf("AskClusterID with another token = %v", err)
	}
}

func TestWrongNodeRefused(t *testing.T) {
	var logs logBuffer
	a := start(t, testConfig(1, newRecorder()))
	cfgB := testConfig(2, newRecorder())
	cfgB.Logger = logs.logger()
	b := start(t, cfgB)
	a.AddPeer(3, b.Addr().String()) // node 3 is not at that address
	waitFor(t, 5*time.Second, "refusal", func() (bool, string) {
		l := logs.String()
		return strings.Contains(l, "expected node 3 but this is node 2"), l
	})
	if _, err := a.Call(context.Background(), 3, 1, 0, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Call = %v, want ErrUnreachable", err)
	}
}

// TestLogsNamePeers: log lines about a peer name it as NamePeer did (peer=n2),
// whichever side dialed, and a node that has no name by its id.
func TestLogsNamePeers(t *testing.T) {
	var logA, logB logBuffer
	cfgA := testConfig(1, newRecorder())
	cfgA.Logger = logA.logger()
	cfgA.Name = "n1"
	a := start(t, cfgA)
	cfgB := testConfig(2, newRecorder())
	cfgB.Logger = logB.logger()
	b := start(t, cfgB)
	a.NamePeer(2, "n2")
	b.NamePeer(1, "n1")
	b.NamePeer(4, "n4")
	a.AddPeer(2, b.Addr().String())
	waitLogged(t, &logA, "connected to peer", "peer=n2")
	waitLogged(t, &logA, "connected to peer", "node=n1")
	waitLogged(t, &logB, "accepted peer connection", "peer=n1")

	c := start(t, testConfig(3, newRecorder()))
	c.AddPeer(2, b.Addr().String())
	waitLogged(t, &logB, "accepted peer connection", `peer="<unknown id 0x3>"`)

	cfgD := testConfig(4, newRecorder())
	cfgD.Token = 0xc2
	d := start(t, cfgD)
	d.AddPeer(2, b.Addr().String())
	waitLogged(t, &logB, "refused peer connection", "peer=n4")

	b.Close()
	waitLogged(t, &logA, "connection to peer lost", "peer=n2")
	waitLogged(t, &logA, "cannot connect to peer", "peer=n2")
	if l := logA.String() + logB.String(); strings.Contains(l, "peer=2 ") || strings.Contains(l, "peer=1 ") {
		t.Fatalf("a peer with a name was logged by its id:\n%s", l)
	}
}

// waitLogged waits until logs hold a line with message msg and attribute attr
// (key=value as the text handler writes it).
func waitLogged(t testing.TB, logs *logBuffer, msg, attr string) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%q logged with %s", msg, attr), func() (bool, string) {
		l := logs.String()
		for _, line := range strings.Split(l, "\n") {
			if strings.Contains(line, `msg="`+msg+`"`) && strings.Contains(line+" ", " "+attr+" ") {
				return true, ""
			}
		}
		return false, l
	})
}

func TestClose(t *testing.T) {
	a := start(t, testConfig(1, newRecorder()))
	b := start(t, testConfig(2, newRecorder()))
	mesh(a, b)
	waitConnected(t, a, 2)
	waitConnected(t, b, 1)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a.Send(1, []raftpb.Message{heartbeat(1, 2, 0)}) // no panic, no effect
	if _, err := a.Call(context.Background(), 2, 1, 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Call after Close = %v", err)
	}
	if err := a.SendSnapshot(context.Background(), 2, 1, strings.NewReader("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("SendSnapshot after Close = %v", err)
	}
	waitFor(t, 5*time.Second, "B notices", func() (bool, string) {
		return !b.Stats()[1].Connected, ""
	})
}

// TestSendsQueueInOrderBehindAStuckPeer fills the socket to a peer whose
// handler is stuck, while more messages keep coming: they queue; once the
// peer reads again everything arrives, in order, with nothing dropped.
func TestSendsQueueInOrderBehindAStuckPeer(t *testing.T) {
	const (
		sends = 200
		batch = 50
	)
	unblock := make(chan struct{})
	var once sync.Once
	recA, recB := newRecorder(), newRecorder()
	recB.onRaft = func(uint64, []raftpb.Message) { <-unblock }
	cfgA := testConfig(1, recA)
	cfgA.QueueSize = sends * batch
	a := start(t, cfgA)
	b := start(t, testConfig(2, recB))
	defer once.Do(func() { close(unblock) })
	mesh(a, b)
	waitConnected(t, a, 2)

	payload := make([]byte, 8<<10) // 200 x 50 x 8 KiB = 80 MiB, far more than socket buffers hold
	seq := uint64(0)
	for range sends {
		msgs := make([]raftpb.Message, batch)
		for i := range msgs {
			msgs[i] = app(1, 2, seq, payload)
			seq++
		}
		a.Send(1, msgs)
	}
	once.Do(func() { close(unblock) })
	waitFor(t, 60*time.Second, "all messages delivered", func() (bool, string) {
		return recB.received() == int(seq), fmt.Sprintf("%d of %d; stats %v", recB.received(), seq, a.Stats())
	})
	checkInOrder(t, recB.flow(1, 1), int(seq), "1→2")
	if s := a.Stats()[2]; s.Dropped != 0 || s.Reconnects != 0 || s.Sent != seq {
		t.Errorf("stats %+v, want %d sent, none dropped, no reconnects", s, seq)
	}
}

// TestGroupsShareAWrite: the messages that several Raft groups, each on its
// own goroutine, send one peer at the same moment go out in one write. With
// one processor and eight senders made runnable together, the writer woken by
// the first runs only after the other seven have queued theirs (it yields
// once, see writeLoop); without that yield it ran straight after each sender
// that woke it and wrote each group's message alone (8 writes).
func TestGroupsShareAWrite(t *testing.T) {
	recA, recB := newRecorder(), newRecorder()
	a, b := start(t, testConfig(1, recA)), start(t, testConfig(2, recB))
	mesh(a, b)
	waitConnected(t, a, 2)
	a.mu.RLock()
	p := a.peers[2]
	a.mu.RUnlock()

	const groups = 8
	for round := range 5 {
		before := p.writes.Load()
		prev := runtime.GOMAXPROCS(1)
		begin := make(chan struct{})
		var wg sync.WaitGroup
		for g := range groups {
			wg.Go(func() {
				<-begin
				a.Send(uint64(g+1), []raftpb.Message{heartbeat(1, 2, uint64(round))})
			})
		}
		close(begin)
		wg.Wait()
		runtime.GOMAXPROCS(prev)
		want := (round + 1) * groups
		waitFor(t, 5*time.Second, "all messages delivered", func() (bool, string) {
			return recB.received() == want, fmt.Sprintf("%d of %d", recB.received(), want)
		})
		if w := p.writes.Load() - before; w > 2 {
			t.Fatalf("round %d: %d messages of %d groups took %d writes, want at most 2", round, groups, groups, w)
		}
	}
}

// TestSendKeepsNoReferenceToTheSlice: the Raft loop reuses the slice it hands
// to Send as soon as it returns, so what goes out must not change when the
// caller overwrites it.
func TestSendKeepsNoReferenceToTheSlice(t *testing.T) {
	recA, recB := newRecorder(), newRecorder()
	a, b := start(t, testConfig(1, recA)), start(t, testConfig(2, recB))
	mesh(a, b)
	waitConnected(t, a, 2)
	const rounds = 200
	msgs := make([]raftpb.Message, 4)
	for i := range rounds {
		for j := range msgs {
			msgs[j] = heartbeat(1, 2, uint64(i*len(msgs)+j))
		}
		a.Send(1, msgs)
		for j := range msgs { // the caller reuses its slice at once
			msgs[j] = heartbeat(1, 2, 1<<40)
		}
	}
	want := rounds * len(msgs)
	waitFor(t, 5*time.Second, "all messages delivered", func() (bool, string) {
		n := len(recB.flow(1, 1))
		return n >= want, fmt.Sprintf("%d of %d", n, want)
	})
	got := recB.flow(1, 1)
	if len(got) != want {
		t.Fatalf("got %d messages, want %d", len(got), want)
	}
	for i, m := range got {
		if m.Commit != uint64(i) {
			t.Fatalf("message %d carries %d, want %d: the transport did not send what the slice held when Send returned", i, m.Commit, i)
		}
	}
}
