// Package netproxy is a controllable, fault-injecting TCP proxy for system
// tests, in the spirit of Jepsen's nemesis and etcd's robustness-test proxy.
// Tests run real distkv processes on loopback and route every peer link through
// a Proxy, so they can cut, delay and degrade single links while the cluster
// runs.
//
// # Proxy
//
// A Proxy accepts TCP connections on its listen address and, for each one,
// dials the target and copies bytes both ways: Forward is client → target,
// Backward is target → client. Faults are held in one immutable snapshot that
// the copying goroutines load for every chunk they move, so a fault set or
// removed reaches live connections at their next chunk, not only new ones:
//
//   - Blackhole(d): bytes in direction d are read and thrown away. Reading goes
//     on so the sender sees no backpressure, as with lost packets; the bytes
//     are not delivered later (see Proxy.Blackhole for what that means for
//     framed streams after Heal).
//   - Delay(d, latency, jitter): every chunk waits latency plus [0, jitter)
//     before delivery; order is kept and throughput is not limited to one chunk
//     per latency (each direction has a reader and a writer goroutine with a
//     bounded queue of due-stamped chunks between them).
//   - Reset: every current connection is closed with a TCP reset on both sides.
//   - RefuseNew(true), DropConnections(f): new connections (all, or each with
//     probability f, seeded by SetSeed) are reset right after accept.
//   - Heal removes every fault; Close stops the proxy and waits until all of its
//     goroutines have exited.
//
// # Mesh
//
// A distkv node is configured with one peer address per member. A Mesh holds
// one Proxy per ordered pair of nodes (i, j), so that "i reaches j" and "k
// reaches j" are different links. Each node therefore gets its own view of the
// cluster: node i is started with its own real peer address for itself and
// Mesh.PeerAddr(i, j) for every other node j (Mesh.View(i)). With three nodes:
//
//	m, err := netproxy.NewMesh([]string{peer0, peer1, peer2}) // real listen addresses
//	// node 0: --peer peer0, members n0=peer0, n1=m.PeerAddr(0, 1), n2=m.PeerAddr(0, 2)
//	// node 1: --peer peer1, members n0=m.PeerAddr(1, 0), n1=peer1, n2=m.PeerAddr(1, 2)
//	// node 2: --peer peer2, members n0=m.PeerAddr(2, 0), n1=m.PeerAddr(2, 1), n2=peer2
//	m.Partition([]int{0}, []int{1, 2}) // 0 alone; 1 and 2 still talk
//	m.CutOneWay(1, 2)                  // then also: 1's messages to 2 vanish
//	m.HealAll()
//
// This needs distkv to dial peers at the addresses of the local configuration.
// Addresses that reach a node through replicated state (a member added by a
// membership change, the membership inside a snapshot from the leader) are the
// proposer's view and bypass or misroute the per-node proxies; a test using
// Mesh must keep to the bootstrap membership unless distkv lets the local
// configuration override peer addresses.
//
// The package uses only the standard library and has no knowledge of distkv's
// protocol; it moves bytes.
package netproxy
