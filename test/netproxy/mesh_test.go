package netproxy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// verdict is what a probe learned about one direction of a link.
type verdict int

const (
	unknown verdict = iota
	delivered
	lost
)

func (v verdict) String() string { return [...]string{"unknown", "delivered", "lost"}[v] }

// reach is the outcome of probe(a, b): ToB is node a's bytes to node b on a
// connection a dialed through the mesh; ToA is node b's bytes back on it.
type reach struct{ ToB, ToA verdict }

// probe connects node a to node b through the mesh, sends "ping X" and waits
// until every byte of the exchange is accounted for: delivered (b recorded X;
// a read "hello b" and, if b got the ping, "pong X") or discarded by the link's
// proxy. No verdict rests on a timeout: every byte either arrives or shows up
// in Stats as discarded, so the next probe of the link starts clean.
func probe(t *testing.T, m *Mesh, nodes []*node, a, b int) reach {
	t.Helper()
	p := m.Proxy(a, b)
	before := p.Stats()
	c := dial(t, m.PeerAddr(a, b))
	defer c.Close()
	x := fmt.Sprintf("%d-%d-%d", a, b, time.Now().UnixNano())
	ping, hello, pong := "ping "+x+"\n", fmt.Sprintf("hello %d\n", b), "pong "+x+"\n"
	write(t, c, ping)
	in := lines(c)

	var r reach
	var gotHello, gotPong bool
	deadline := time.Now().Add(waitTimeout)
	for r.ToB == unknown || r.ToA == unknown {
		if time.Now().After(deadline) {
			t.Fatalf("probe %d→%d: no verdict after %v: %+v, stats before %+v, now %+v",
				a, b, waitTimeout, r, before, p.Stats())
		}
		select {
		case l := <-in:
			gotHello = gotHello || l+"\n" == hello
			gotPong = gotPong || l+"\n" == pong
		case <-time.After(time.Millisecond):
		}
		st := p.Stats()
		if r.ToB == unknown {
			switch {
			case nodes[b].received(x):
				r.ToB = delivered
			case st.Forward.Discarded-before.Forward.Discarded >= uint64(len(ping)):
				r.ToB = lost
			}
		}
		if r.ToB == unknown {
			continue // b answers only if the ping arrived
		}
		want := uint64(len(hello))
		if r.ToB == delivered {
			want += uint64(len(pong))
		}
		switch {
		case gotHello && (gotPong || r.ToB == lost):
			r.ToA = delivered
		case st.Backward.Discarded-before.Backward.Discarded >= want:
			r.ToA = lost
		}
	}
	return r
}

// expectReach probes every ordered pair and compares with want, which maps
// "a→b" to the expected outcome; pairs not in want must fully work.
func expectReach(t *testing.T, m *Mesh, nodes []*node, want map[string]reach) {
	t.Helper()
	var bad []string
	for a := range nodes {
		for b := range nodes {
			if a == b {
				continue
			}
			key := fmt.Sprintf("%d→%d", a, b)
			w, ok := want[key]
			if !ok {
				w = reach{delivered, delivered}
			}
			if got := probe(t, m, nodes, a, b); got != w {
				bad = append(bad, fmt.Sprintf("%s: got %+v, want %+v", key, got, w))
			}
		}
	}
	if len(bad) > 0 {
		t.Fatalf("reachability:\n%s", strings.Join(bad, "\n"))
	}
}

func TestMesh(t *testing.T) {
	nodes := []*node{newNode(t, 0), newNode(t, 1), newNode(t, 2)}
	m, err := NewMesh([]string{nodes[0].addr, nodes[1].addr, nodes[2].addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	if v := m.View(1); v[1] != nodes[1].addr || v[0] != m.PeerAddr(1, 0) || v[0] == m.PeerAddr(2, 0) {
		t.Fatalf("view of node 1 %v: want its own real address and its own proxies", v)
	}
	cut := reach{lost, lost} // ping lost, and so is the hello that comes back
	expectReach(t, m, nodes, nil)

	t.Run("partition", func(t *testing.T) {
		m.Partition([]int{0}, []int{1, 2})
		expectReach(t, m, nodes, map[string]reach{"0→1": cut, "0→2": cut, "1→0": cut, "2→0": cut})
		m.HealAll()
		expectReach(t, m, nodes, nil)
	})

	t.Run("partition replaces partition", func(t *testing.T) {
		m.Partition([]int{0}, []int{1, 2})
		m.Isolate(2)
		expectReach(t, m, nodes, map[string]reach{"0→2": cut, "1→2": cut, "2→0": cut, "2→1": cut})
		m.HealAll()
	})

	t.Run("one way", func(t *testing.T) {
		m.CutOneWay(0, 1)
		// 0's bytes to 1 vanish on both links; 1's bytes to 0 arrive on both.
		expectReach(t, m, nodes, map[string]reach{
			"0→1": {ToB: lost, ToA: delivered},
			"1→0": {ToB: delivered, ToA: lost},
		})
		m.HealAll()
		expectReach(t, m, nodes, nil)
	})
}

func TestMeshRejectsBadGroups(t *testing.T) {
	m, err := NewMesh([]string{"127.0.0.1:1", "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for name, f := range map[string]func(){
		"out of range":   func() { m.Isolate(2) },
		"in two groups":  func() { m.Partition([]int{0}, []int{0, 1}) },
		"self link":      func() { m.CutOneWay(1, 1) },
		"negative index": func() { m.Partition([]int{-1}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}
