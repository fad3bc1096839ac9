package testport

import (
	"fmt"
	"net"
	"testing"
)

// release closes p's claims, as the end of its process would.
func (p *pool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.claims {
		l.Close()
	}
	p.claims = nil
}

// band returns the first port (the marker) of the band that holds port.
func band(port int) int { return port - (port-lowest)%bandSize }

func TestRangeIsFreeBelowEphemeralInClaimedBandsAndNeverRepeated(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	bands := map[int]bool{}
	// 300 ports: more than one band holds.
	for range 100 {
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
			if band(p) == p {
				t.Fatalf("port %d handed out is the marker of its band", p)
			}
			bands[band(p)] = true
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				t.Fatalf("port %d not free: %v", p, err)
			}
			l.Close()
		}
	}
	if len(bands) < 2 {
		t.Fatalf("300 ports from bands %v; want a second band claimed when the first is used up", bands)
	}
	for b := range bands {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", b)); err == nil {
			l.Close()
			t.Fatalf("ports were handed out from band %d, yet nothing holds its marker: another process could claim it", b)
		}
	}
}

func TestTakenPortIsSkipped(t *testing.T) {
	base, err := Range(1)
	if err != nil {
		t.Fatal(err)
	}
	// The next port Range would try, held by some other program.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Skipf("port %d is busy already: %v", base+1, err)
	}
	defer l.Close()
	got, err := Range(2)
	if err != nil {
		t.Fatal(err)
	}
	if got <= base+1 && base+1 < got+2 {
		t.Fatalf("Range(2) = %d, which includes port %d that another program listens on", got, base+1)
	}
}

// TestProcessesGetDisjointBands: two pools that start at the same band, as
// two processes whose PIDs agree modulo the number of bands would, claim
// different bands, and neither hands out a port of the other's.
func TestProcessesGetDisjointBands(t *testing.T) {
	a, b := &pool{start: 7}, &pool{start: 7}
	t.Cleanup(a.release)
	t.Cleanup(b.release)
	fromA := map[int]bool{}
	for range 20 {
		p, err := a.rangeOf(3)
		if err != nil {
			t.Fatal(err)
		}
		fromA[band(p)] = true
	}
	for range 20 {
		p, err := b.rangeOf(3)
		if err != nil {
			t.Fatal(err)
		}
		if fromA[band(p)] {
			t.Fatalf("the second pool handed out %d, in band %d that the first one holds", p, band(p))
		}
	}
}

func TestRangeRefusesMoreThanABand(t *testing.T) {
	for _, n := range []int{0, -1, bandSize} {
		if p, err := Range(n); err == nil {
			t.Errorf("Range(%d) = %d, want an error", n, p)
		}
	}
}
