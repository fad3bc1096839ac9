// Package testport picks loopback ports for servers that tests start in
// other processes.
//
// A port found by listening on 127.0.0.1:0 and closing the listener comes
// from the kernel's ephemeral range, which is also where every outgoing
// connection gets its local port: between the close and the server's own bind,
// any connection on the machine (a proxy, another test package running in
// parallel) can take it, and the server fails with "address already in use".
// testport hands out ports below the ephemeral range instead, which outgoing
// connections never use.
//
// Those ports are shared by every process that uses testport, and go test
// runs test packages in parallel, each in a process of its own: a port that
// one process checked and handed out is still free to another until the
// first one's server binds it. So each process first claims a band of
// bandSize ports by listening on the band's first port, and keeps that
// listener open until it exits. The kernel lets no other process listen
// there, so no other process claims the band; and it frees the port when the
// process ends, however it ends (kill -9 included), so no claim outlives its
// owner. A process starts looking at a band chosen by its PID, so processes
// running together mostly claim different bands at the first try. Within its
// bands a process hands out each port at most once, sequentially, after
// checking that it can be bound (a server left over from an earlier run, or
// another program, may be listening on it); when its band is used up it
// claims another.
//
// What is left is a program that does not use testport binding one of these
// ports by number, in the moment between the check and the server's bind. The
// servers cannot be handed a listening socket instead without changing what
// they do, and nothing on a test machine binds numbered ports in this range
// while tests run, so callers do not retry.
package testport

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	// lowest is the first port of the first band: below it are well-known
	// and registered services (and distkv dev's default ports).
	lowest = 10000
	// bandSize is the number of ports in a band, its marker included: an
	// end-to-end test package needs a few hundred, and below 32768 this
	// leaves 88 bands.
	bandSize = 256
)

// pool is the bands one process has claimed and the ports it has handed out.
// There is one per process (process); tests make others, which behave towards
// it as another process's would.
type pool struct {
	start int // the band tried first, modulo the number of bands

	mu sync.Mutex
	// claims holds the listener on the first port (the marker) of each band
	// claimed, open for the pool's lifetime.
	claims []net.Listener
	// next is the next port to try in the newest band, end one past its
	// last port. Invariant: every port handed out is below next and in a
	// band whose marker is in claims, and next <= end.
	next, end int
}

var process = &pool{start: os.Getpid()}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range; 32768 where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lowest+4*bandSize {
				return n
			}
		}
	}
	return 32768
}

// Range returns the first of n consecutive ports on 127.0.0.1 that no other
// process using testport will hand out, that this process has not handed out
// before, and that were free when checked. n is at most 255.
func Range(n int) (int, error) { return process.rangeOf(n) }

// Addr returns "127.0.0.1:port" for one port, as Range(1) picks it.
func Addr() (string, error) {
	p, err := Range(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

func (p *pool) rangeOf(n int) (int, error) {
	if n < 1 || n >= bandSize {
		return 0, fmt.Errorf("testport: %d consecutive ports asked for; between 1 and %d can be had", n, bandSize-1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for p.next+n <= p.end {
			base := p.next
			busy := firstBusy(base, n)
			if busy < 0 {
				p.next = base + n
				return base, nil
			}
			p.next = busy + 1
		}
		if err := p.claim(); err != nil {
			return 0, err
		}
	}
}

// claim claims a band that no other process holds and makes it the newest.
func (p *pool) claim() error {
	high := ephemeralLow()
	bands := (high - lowest) / bandSize
	for i := range bands {
		base := lowest + (p.start+i)%bands*bandSize
		// Fails for a band claimed already, by this pool or another, and for
		// one whose marker some other program holds.
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base))
		if err != nil {
			continue
		}
		p.claims = append(p.claims, l)
		p.next, p.end = base+1, base+bandSize
		return nil
	}
	return fmt.Errorf("testport: every band of %d ports in [%d, %d) is claimed by another process, used up, or has its first port busy", bandSize, lowest, high)
}

// firstBusy returns the first of the n ports from base that cannot be bound
// on 127.0.0.1, or -1 if all can.
func firstBusy(base, n int) int {
	for port := base; port < base+n; port++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return port
		}
		l.Close()
	}
	return -1
}
