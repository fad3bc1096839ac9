package netproxy

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

var seedFlag = flag.Int64("netproxy.seed", 0, "seed for randomized tests (0: pick one)")

// testSeed returns the seed of a randomized test and logs it so a failure can
// be reproduced with: go test ./test/netproxy -run <Test> -args -netproxy.seed=<seed>
func testSeed(t *testing.T) int64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (reproduce with -args -netproxy.seed=%d)", seed, seed)
	return seed
}

// waitTimeout bounds every wait for a condition; generous because the race
// detector on a busy 2-core machine is slow, and a passing test never waits it out.
const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds, failing with what() after waitTimeout.
func waitFor(t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", waitTimeout, what())
		}
		time.Sleep(time.Millisecond)
	}
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := New("127.0.0.1:0", target, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// expectRead reads exactly len(want) bytes from c and checks them.
func expectRead(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %q: got %q, %v", want, buf, err)
	}
	if string(buf) != want {
		t.Fatalf("read %q, want %q", buf, want)
	}
}

// roundTrip checks that c, connected to an echo server, echoes msg.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	write(t, c, msg)
	expectRead(t, c, msg)
}

// expectRejected checks that a connection to addr is closed by the other side
// at once: the dial fails (a reset that overtook the handshake) or the first
// read does.
func expectRejected(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	expectClosed(t, c)
}

// expectClosed checks that c was closed by the other side (EOF or reset):
// a read fails, and not by timing out.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection still open: read %q, %v", buf[:n], err)
	}
}

// echoServer serves connections that send back what they receive, until the
// client closes its sending half.
func echoServer(t *testing.T) string {
	t.Helper()
	return serve(t, func(c net.Conn, _ <-chan struct{}) {
		io.Copy(c, c)
		c.Close()
	})
}

// targetServer hands every accepted connection to the test, which owns it.
func targetServer(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	ch := make(chan net.Conn, 16)
	addr := serve(t, func(c net.Conn, stop <-chan struct{}) {
		select {
		case ch <- c:
		case <-stop:
		}
	})
	return addr, ch
}

func accept(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("target accepted no connection")
		return nil
	}
}

// serve runs handle on every connection accepted on a new loopback listener.
// At cleanup it closes the listener and every connection, closes stop, and
// waits for the handlers, which must then return.
func serve(t *testing.T, handle func(c net.Conn, stop <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c, stop)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(stop)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// node is a stand-in for a distkv peer listener. On every connection it first
// sends "hello <id>\n"; then for each line "ping X" it records X and answers
// "pong X\n".
type node struct {
	id   int
	addr string
	mu   sync.Mutex
	got  map[string]bool
}

func newNode(t *testing.T, id int) *node {
	t.Helper()
	n := &node{id: id, got: map[string]bool{}}
	n.addr = serve(t, func(c net.Conn, _ <-chan struct{}) {
		defer c.Close()
		fmt.Fprintf(c, "hello %d\n", id)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			x, ok := strings.CutPrefix(sc.Text(), "ping ")
			if !ok {
				continue
			}
			n.mu.Lock()
			n.got[x] = true
			n.mu.Unlock()
			fmt.Fprintf(c, "pong %s\n", x)
		}
	})
	return n
}

func (n *node) received(x string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.got[x]
}

// lines reads lines from c into a channel until c fails.
func lines(c net.Conn) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}
