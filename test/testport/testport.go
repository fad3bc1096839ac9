// Package testport picks loopback ports for servers that tests start in
// other processes.
//
// A port found by listening on 127.0.0.1:0 and closing the listener comes
// from the kernel's ephemeral range, which is also where every outgoing
// connection gets its local port: between the close and the server's own bind,
// any connection on the machine (a proxy, another test package running in
// parallel) can take it, and the server fails with "address already in use".
// testport picks ports below the ephemeral range instead, which outgoing
// connections never use, at random, and checks that each can be bound.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{} // never hand out a port twice in one process
)

// ephemeralLow is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range; 32768 where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lowest+1000 {
				return n
			}
		}
	}
	return 32768
}

// Range returns the first of n consecutive free ports on 127.0.0.1.
func Range(n int) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	high := ephemeralLow()
	for try := 0; try < 1000; try++ {
		base := lowest + rand.IntN(high-lowest-n)
		if free(base, n) {
			for i := range n {
				given[base+i] = true
			}
			return base, nil
		}
	}
	return 0, fmt.Errorf("testport: no %d free consecutive ports below %d", n, high)
}

// Addr returns "127.0.0.1:port" for one free port.
func Addr() (string, error) {
	p, err := Range(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

func free(base, n int) bool {
	for i := range n {
		if given[base+i] {
			return false
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
