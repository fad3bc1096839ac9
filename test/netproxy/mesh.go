package netproxy

import (
	"errors"
	"fmt"
)

// Mesh is a full mesh of proxies between n nodes: one Proxy per ordered pair
// (i, j), i != j, listening on loopback and forwarding to node j's real peer
// address. Node i must reach node j only through PeerAddr(i, j), so every link
// can be cut on its own; see the package documentation for how to start nodes
// with per-node views of the cluster.
//
// Link (i, j) carries what node i sends on the connections it dials to j in its
// Forward direction, and j's answers on those connections in its Backward
// direction. Traffic from i to j can therefore travel on link (i, j) forward
// and on link (j, i) backward; the fault methods always cut both.
//
// Indexes are node positions in the slice given to NewMesh; an index out of
// range, or a node named in two groups of Partition, panics.
type Mesh struct {
	addrs []string
	// links[i][j] is the proxy of link i → j; nil when i == j.
	links [][]*Proxy
}

// NewMesh creates the n*(n-1) proxies for nodes whose real peer addresses are
// realAddrs.
func NewMesh(realAddrs []string) (*Mesh, error) {
	if len(realAddrs) == 0 {
		return nil, errors.New("netproxy: mesh of no nodes")
	}
	m := &Mesh{addrs: append([]string(nil), realAddrs...), links: make([][]*Proxy, len(realAddrs))}
	for i := range m.addrs {
		m.links[i] = make([]*Proxy, len(m.addrs))
		for j := range m.addrs {
			if i == j {
				continue
			}
			p, err := New("127.0.0.1:0", m.addrs[j], nil)
			if err != nil {
				m.Close()
				return nil, fmt.Errorf("netproxy: link %d→%d: %w", i, j, err)
			}
			m.links[i][j] = p
		}
	}
	return m, nil
}

// N is the number of nodes.
func (m *Mesh) N() int { return len(m.addrs) }

// PeerAddr is the address node from must use to reach node to: the proxy of
// link from → to, or from's own real address when from == to.
func (m *Mesh) PeerAddr(from, to int) string {
	if from == to {
		return m.addrs[from]
	}
	return m.links[from][to].Addr()
}

// View is node i's view of the cluster: View(i)[j] is PeerAddr(i, j), so
// View(i)[i] is i's own real address, the one it listens on.
func (m *Mesh) View(i int) []string {
	v := make([]string, len(m.addrs))
	for j := range v {
		v[j] = m.PeerAddr(i, j)
	}
	return v
}

// Proxy is the proxy of link from → to, for faults the mesh methods do not
// cover (Delay, Reset, DropConnections on one link). It panics if from == to.
func (m *Mesh) Proxy(from, to int) *Proxy {
	if from == to {
		panic(fmt.Sprintf("netproxy: no link from node %d to itself", from))
	}
	return m.links[from][to]
}

// SetSeed seeds every link's generator, link (i, j) with seed+i*n+j, so one
// printed seed reproduces the random choices of the whole mesh.
func (m *Mesh) SetSeed(seed int64) {
	m.each(func(i, j int, p *Proxy) { p.SetSeed(seed + int64(i*len(m.addrs)+j)) })
}

// Partition splits the nodes into groups that cannot reach each other: every
// link between nodes of different groups is blackholed in both directions, and
// every link inside a group is un-blackholed, so Partition replaces the previous
// partition rather than adding to it. Delays and other faults are kept. Nodes
// named in no group form one further group together, so Partition([]int{0})
// isolates node 0.
func (m *Mesh) Partition(groups ...[]int) {
	group := make([]int, len(m.addrs))
	for i := range group {
		group[i] = -1
	}
	for g, nodes := range groups {
		for _, i := range nodes {
			m.check(i)
			if group[i] != -1 {
				panic(fmt.Sprintf("netproxy: node %d is in groups %d and %d", i, group[i], g))
			}
			group[i] = g
		}
	}
	for i := range group {
		if group[i] == -1 {
			group[i] = len(groups)
		}
	}
	m.each(func(i, j int, p *Proxy) {
		if group[i] != group[j] {
			p.Blackhole(Both)
		} else {
			p.Unblackhole(Both)
		}
	})
}

// Isolate cuts node i off from every other node, both ways, while the others
// still reach each other. It replaces the previous partition, as Partition does.
func (m *Mesh) Isolate(i int) {
	m.check(i)
	m.Partition([]int{i})
}

// CutOneWay makes everything node from sends to node to vanish while node to's
// traffic to node from still flows: link from → to is blackholed forward, link
// to → from backward. It adds to the faults already set.
func (m *Mesh) CutOneWay(from, to int) {
	m.check(from)
	m.check(to)
	if from == to {
		panic(fmt.Sprintf("netproxy: no link from node %d to itself", from))
	}
	m.links[from][to].Blackhole(Forward)
	m.links[to][from].Blackhole(Backward)
}

// HealAll removes every fault from every link (Proxy.Heal). Connections stay
// open; bytes discarded meanwhile are lost (see Proxy.Blackhole).
func (m *Mesh) HealAll() {
	m.each(func(_, _ int, p *Proxy) { p.Heal() })
}

// Close closes every proxy and waits for their goroutines to exit.
func (m *Mesh) Close() error {
	var errs []error
	m.each(func(_, _ int, p *Proxy) { errs = append(errs, p.Close()) })
	return errors.Join(errs...)
}

func (m *Mesh) each(f func(i, j int, p *Proxy)) {
	for i, row := range m.links {
		for j, p := range row {
			if p != nil {
				f(i, j, p)
			}
		}
	}
}

func (m *Mesh) check(i int) {
	if i < 0 || i >= len(m.addrs) {
		panic(fmt.Sprintf("netproxy: node %d out of range [0, %d)", i, len(m.addrs)))
	}
}
