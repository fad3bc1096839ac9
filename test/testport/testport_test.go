package testport

import (
	"fmt"
	"net"
	"testing"
)

func TestRangeIsFreeBelowEphemeralAndNeverRepeated(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		base, err := Range(3)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			p := base + i
			if p < lowest || p >= low {
				t.Fatalf("port %d outside [%d, %d)", p, lowest, low)
			}
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				t.Fatalf("port %d not free: %v", p, err)
			}
			l.Close()
		}
	}
}

func TestTakenPortIsSkipped(t *testing.T) {
	base, err := Range(1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Skip("neighbour port busy")
	}
	defer l.Close()
	mu.Lock()
	ok := free(base+1, 1)
	mu.Unlock()
	if ok {
		t.Fatalf("port %d is listened on, yet free() says free", base+1)
	}
}
