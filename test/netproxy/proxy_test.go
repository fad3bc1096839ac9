package netproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestProxyForwardsBothWays(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "hello")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, many chunks
	go c.Write(big)
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	got := make([]byte, len(big))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back 1 MiB: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("1 MiB came back changed")
	}
	// The counters move just after the bytes do.
	want := uint64(len(big) + 5)
	waitFor(t, func() string { return fmt.Sprintf("stats %+v, want %d bytes forwarded each way", p.Stats(), want) },
		func() bool { st := p.Stats(); return st.Forward.Forwarded == want && st.Backward.Forwarded == want })
	if st := p.Stats(); st.Accepted != 1 || st.Active != 1 {
		t.Fatalf("stats %+v, want 1 accepted and active", st)
	}
}

// A half-close travels through the proxy, and the connection is gone from the
// proxy once both sides are done.
func TestProxyPassesHalfClose(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	write(t, c, "last words")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("read until EOF: %q, %v", got, err)
	}
	waitFor(t, func() string { return fmt.Sprintf("stats %+v, want 0 active", p.Stats()) },
		func() bool { return p.Stats().Active == 0 })
}

func TestBlackhole(t *testing.T) {
	for _, d := range []Direction{Forward, Backward} {
		t.Run(d.String(), func(t *testing.T) {
			addr, accepted := targetServer(t)
			p := newProxy(t, addr)
			client := dial(t, p.Addr())
			server := accept(t, accepted)
			write(t, client, "a")
			expectRead(t, server, "a")
			write(t, server, "b")
			expectRead(t, client, "b")

			// cutFrom → cutTo is the blackholed direction on this connection.
			cutFrom, cutTo, cutStats := net.Conn(client), net.Conn(server), func(s Stats) DirectionStats { return s.Forward }
			if d == Backward {
				cutFrom, cutTo, cutStats = server, client, func(s Stats) DirectionStats { return s.Backward }
			}
			p.Blackhole(d)
			write(t, cutFrom, "lost")
			waitFor(t, func() string { return fmt.Sprintf("stats %+v, want 4 bytes discarded %s", p.Stats(), d) },
				func() bool { return cutStats(p.Stats()).Discarded == 4 })
			// The other direction still flows.
			write(t, cutTo, "flows")
			expectRead(t, cutFrom, "flows")

			p.Heal()
			write(t, cutFrom, "found")
			// The first bytes to arrive are the ones sent after Heal: "lost"
			// was never delivered, and the same connection works again.
			expectRead(t, cutTo, "found")
			if st := p.Stats(); st.Accepted != 1 || st.Active != 1 {
				t.Fatalf("stats %+v, want the one connection still open", st)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	const latency, jitter = 50 * time.Millisecond, 20 * time.Millisecond

	t.Run("order", func(t *testing.T) {
		seed := testSeed(t)
		addr, accepted := targetServer(t)
		p := newProxy(t, addr)
		p.SetSeed(seed)
		client := dial(t, p.Addr())
		server := accept(t, accepted)
		// The delay applies to a connection opened before it was set.
		p.Delay(Forward, latency, jitter)

		// Numbered chunks, paced so most are read by the proxy one at a
		// time and get different jitter: a proxy that did not keep order
		// would deliver some out of sequence.
		const n = 100
		var sent [n]atomic.Int64
		go func() {
			for i := range n {
				sent[i].Store(time.Now().UnixNano())
				if _, err := fmt.Fprintf(client, "%06d\n", i); err != nil {
					return
				}
				time.Sleep(500 * time.Microsecond)
			}
		}()
		server.SetReadDeadline(time.Now().Add(waitTimeout))
		sc := bufio.NewScanner(server)
		minDelay := time.Hour
		for want := range n {
			if !sc.Scan() {
				t.Fatalf("chunk %d: stream ended: %v", want, sc.Err())
			}
			arrived := time.Now()
			got, err := strconv.Atoi(sc.Text())
			if err != nil || got != want {
				t.Fatalf("chunk %d: got %q", want, sc.Text())
			}
			delay := arrived.Sub(time.Unix(0, sent[got].Load()))
			if delay < latency {
				t.Fatalf("chunk %d arrived after %v, want >= %v", got, delay, latency)
			}
			minDelay = min(minDelay, delay)
		}
		t.Logf("%d chunks in order, smallest delay %v", n, minDelay)
	})

	// Latency must not turn into a bandwidth limit. A proxy that held each
	// chunk in turn would need at least (1 MiB / 32 KiB reads) × 100ms = 3.2s
	// for the forward half alone; a pipelined one needs 2 × 100ms plus
	// copying, which on a loaded machine under -race has taken up to ~1s.
	t.Run("throughput", func(t *testing.T) {
		const latency = 100 * time.Millisecond
		const size = 1 << 20
		serial := time.Duration(size/chunkSize) * latency
		p := newProxy(t, echoServer(t))
		p.Delay(Both, latency, 0)
		c := dial(t, p.Addr())
		data := bytes.Repeat([]byte{'x'}, size)
		start := time.Now()
		go c.Write(data)
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := io.ReadFull(c, make([]byte, len(data))); err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		if elapsed < 2*latency || elapsed > serial*3/4 {
			t.Fatalf("1 MiB round trip with %v each way took %v, want between %v and %v",
				latency, elapsed, 2*latency, serial*3/4)
		}
		t.Logf("1 MiB round trip with %v each way: %v", latency, elapsed)
	})
}

func TestReset(t *testing.T) {
	addr, accepted := targetServer(t)
	p := newProxy(t, addr)
	client := dial(t, p.Addr())
	server := accept(t, accepted)
	write(t, client, "x")
	expectRead(t, server, "x")

	p.Reset()
	expectClosed(t, client)
	expectClosed(t, server)
	if st := p.Stats(); st.Active != 0 {
		t.Fatalf("stats %+v after Reset, want 0 active", st)
	}

	client2 := dial(t, p.Addr())
	server2 := accept(t, accepted)
	write(t, client2, "y")
	expectRead(t, server2, "y")
	write(t, server2, "z")
	expectRead(t, client2, "z")
}

func TestRefuseNew(t *testing.T) {
	p := newProxy(t, echoServer(t))
	old := dial(t, p.Addr())
	roundTrip(t, old, "before")

	p.RefuseNew(true)
	for range 3 {
		expectRejected(t, p.Addr())
	}
	roundTrip(t, old, "existing connections are untouched")
	if st := p.Stats(); st.Rejected != 3 || st.Accepted != 4 {
		t.Fatalf("stats %+v, want 4 accepted, 3 rejected", st)
	}

	p.RefuseNew(false)
	roundTrip(t, dial(t, p.Addr()), "after")
}

// outcomes dials p n times in turn and reports which connections were dropped.
func outcomes(t *testing.T, p *Proxy, n int) []bool {
	t.Helper()
	dropped := make([]bool, n)
	for i := range dropped {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			// A reset can overtake the handshake.
			dropped[i] = true
			continue
		}
		c.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Write([]byte("x")); err == nil {
			buf := make([]byte, 1)
			_, err = io.ReadFull(c, buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection %d neither echoed nor closed", i)
			}
			dropped[i] = err != nil
		} else {
			dropped[i] = true
		}
		c.Close()
	}
	return dropped
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func TestDropConnections(t *testing.T) {
	echo := echoServer(t)
	const n = 20
	for _, tc := range []struct {
		fraction float64
		dropped  int
	}{
		{1.0, n},
		{0.0, 0},
	} {
		t.Run(fmt.Sprint(tc.fraction), func(t *testing.T) {
			p := newProxy(t, echo)
			p.DropConnections(tc.fraction)
			if got := count(outcomes(t, p, n)); got != tc.dropped {
				t.Fatalf("DropConnections(%v): %d of %d dropped, want %d", tc.fraction, got, n, tc.dropped)
			}
			if st := p.Stats(); st.Rejected != uint64(tc.dropped) {
				t.Fatalf("stats %+v, want %d rejected", st, tc.dropped)
			}
		})
	}

	t.Run("seeded", func(t *testing.T) {
		seed := testSeed(t)
		var runs [2][]bool
		for i := range runs {
			p := newProxy(t, echo)
			p.SetSeed(seed)
			p.DropConnections(0.5)
			runs[i] = outcomes(t, p, n)
		}
		if fmt.Sprint(runs[0]) != fmt.Sprint(runs[1]) {
			t.Fatalf("same seed, different drops:\n%v\n%v", runs[0], runs[1])
		}
		// All or nothing has probability 2^-19 with a working generator.
		if d := count(runs[0]); d == 0 || d == n {
			t.Fatalf("DropConnections(0.5) dropped %d of %d: %v", d, n, runs[0])
		}
		t.Logf("dropped %d of %d", count(runs[0]), n)
	})
}

func TestSetTarget(t *testing.T) {
	a, b := newNode(t, 0), newNode(t, 1)
	p := newProxy(t, a.addr)
	ca := dial(t, p.Addr())
	expectRead(t, ca, "hello 0\n")
	p.SetTarget(b.addr)
	expectRead(t, dial(t, p.Addr()), "hello 1\n")
	write(t, ca, "ping still-a\n")
	expectRead(t, ca, "pong still-a\n")
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := newProxy(t, dead)
	expectRejected(t, p.Addr())
	waitFor(t, func() string { return fmt.Sprintf("stats %+v, want 1 dial failure", p.Stats()) },
		func() bool { return p.Stats().DialFailures == 1 })
}

// Faults change while traffic flows on an existing connection and new ones
// are dialed; the race detector is the main assertion, plus the echo stream
// surviving intact (no fault here cuts it) and every new connection being
// either served or rejected. The work is bounded, not timed, so a loaded
// machine makes it slower, not flaky.
func TestConcurrentFaultChanges(t *testing.T) {
	seed := testSeed(t)
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, "accepted before RefuseNew and DropConnections change;")

	const rounds = 100
	changed := make(chan struct{})
	go func() {
		defer close(changed)
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		for range rounds * 10 {
			switch rng.IntN(4) {
			case 0:
				p.Delay(Direction(rng.IntN(3)+1), time.Duration(rng.IntN(2))*time.Millisecond, time.Millisecond)
			case 1:
				p.DropConnections(rng.Float64())
			case 2:
				p.RefuseNew(rng.IntN(2) == 0)
			case 3:
				p.SetSeed(rng.Int64())
			}
			p.Stats()
		}
	}()
	dialed := make(chan struct{})
	go func() {
		defer close(dialed)
		for range rounds / 4 {
			nc, err := net.Dial("tcp", p.Addr())
			if err != nil {
				continue // rejected before the handshake completed
			}
			nc.SetDeadline(time.Now().Add(waitTimeout))
			nc.Write([]byte("x"))
			_, err = nc.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Error("new connection neither served nor rejected")
			}
			nc.Close()
		}
	}()
	for i := range rounds {
		roundTrip(t, c, fmt.Sprintf("message %d;", i))
	}
	<-changed
	<-dialed
	st := p.Stats()
	if want := uint64(1 + rounds/4); st.Accepted != want || st.Rejected+uint64(st.Active) > want {
		t.Fatalf("stats %+v: want %d accepted", st, want)
	}
	t.Logf("stats %+v", st)
}

// proxyGoroutines lists the stacks of goroutines running proxy code.
func proxyGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "netproxy.(*Proxy)") || strings.Contains(g, "netproxy.(*link)") {
			out = append(out, g)
		}
	}
	return out
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	echo := echoServer(t)
	addr, accepted := targetServer(t)
	before := runtime.NumGoroutine()

	p, err := New("127.0.0.1:0", echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	var clients []net.Conn
	for i := range 4 {
		c := dial(t, p.Addr())
		roundTrip(t, c, fmt.Sprint("conn ", i))
		clients = append(clients, c)
	}
	// A chunk held by a long delay (its writer waits on a timer; the proxy
	// reads it within microseconds, long before Close below), a blackholed
	// direction, and a connection to a target that never reads.
	p.Delay(Forward, time.Hour, 0)
	write(t, clients[0], "held")
	p.Blackhole(Backward)
	p.SetTarget(addr)
	clients = append(clients, dial(t, p.Addr()))
	accept(t, accepted)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Close waits for every goroutine to call wg.Done, so none may still be
	// blocked; some may still be returning from the deferred call, hence
	// the poll for them to be gone.
	for _, g := range proxyGoroutines() {
		if !strings.Contains(g, "[runnable") && !strings.Contains(g, "[running") {
			t.Errorf("Close returned while a proxy goroutine still waits:\n%s", g)
		}
	}
	waitFor(t, func() string {
		return "proxy goroutines still running after Close:\n" + strings.Join(proxyGoroutines(), "\n\n")
	}, func() bool { return len(proxyGoroutines()) == 0 })
	for _, c := range clients {
		expectClosed(t, c)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("proxy still accepts after Close")
	}
	// Everything the proxy started is gone, and so are the echo handlers
	// its connections kept busy. Slack for runtime goroutines that come
	// and go.
	const slack = 2
	waitFor(t, func() string {
		buf := make([]byte, 1<<20)
		return fmt.Sprintf("%d goroutines, %d before the proxy:\n%s",
			runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}, func() bool { return runtime.NumGoroutine() <= before+slack })
	// Faults on a closed proxy are harmless.
	p.Reset()
	p.Heal()
}

func TestLossy(t *testing.T) {
	echo := echoServer(t)
	// sent reports whether one message made the round trip on a new
	// connection; false means the proxy reset it.
	sent := func(t *testing.T, p *Proxy) bool {
		t.Helper()
		c := dial(t, p.Addr())
		defer c.Close()
		write(t, c, "ping\n")
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("neither delivered nor reset after %v", waitTimeout)
			}
			return false
		}
		if string(buf) != "ping\n" {
			t.Fatalf("read %q, want the message intact", buf)
		}
		return true
	}
	const n = 20
	for _, tc := range []struct {
		d        Direction
		fraction float64
		lost     int
	}{
		{Forward, 1, n},
		{Backward, 1, n},
		{Both, 0, 0},
	} {
		t.Run(fmt.Sprintf("%v-%v", tc.d, tc.fraction), func(t *testing.T) {
			p := newProxy(t, echo)
			p.Lossy(tc.d, tc.fraction)
			lost := 0
			for range n {
				if !sent(t, p) {
					lost++
				}
			}
			if lost != tc.lost {
				t.Fatalf("Lossy(%v, %v): %d of %d round trips lost, want %d", tc.d, tc.fraction, lost, n, tc.lost)
			}
			if st := p.Stats(); st.Lost != uint64(tc.lost) {
				t.Fatalf("stats %+v, want %d lost", st, tc.lost)
			}
		})
	}

	t.Run("seeded", func(t *testing.T) {
		seed := testSeed(t)
		var runs [2][]bool
		for i := range runs {
			p := newProxy(t, echo)
			p.SetSeed(seed)
			p.Lossy(Forward, 0.5)
			for range n {
				runs[i] = append(runs[i], sent(t, p))
			}
		}
		if fmt.Sprint(runs[0]) != fmt.Sprint(runs[1]) {
			t.Fatalf("same seed, different losses:\n%v\n%v", runs[0], runs[1])
		}
		// All or nothing has probability 2^-19 with a working generator.
		if d := count(runs[0]); d == 0 || d == n {
			t.Fatalf("Lossy(0.5) delivered %d of %d: %v", d, n, runs[0])
		}
	})

	t.Run("heal", func(t *testing.T) {
		p := newProxy(t, echo)
		p.Lossy(Both, 1)
		if sent(t, p) {
			t.Fatal("a round trip survived Lossy(Both, 1)")
		}
		p.Heal()
		if !sent(t, p) {
			t.Fatal("round trip lost after Heal")
		}
	})
}
