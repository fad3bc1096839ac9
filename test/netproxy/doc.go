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
//   - Lossy(d, f): each chunk in direction d is lost with probability f
//     (seeded by SetSeed); a stream cannot have a hole, so the loss resets
//     that connection, as a link whose losses TCP could not mask.
//   - Reset: every current connection is closed with a TCP reset on both sides.
//   - RefuseNew(true), DropConnections(f): new connections (all, or each with
//     probability f, seeded by SetSeed) are reset right after accept.
//   - Heal removes every fault; Close stops the proxy and waits until all of its
//     goroutines have exited.
//
// # Mesh
//
// A distkv cluster records one peer address per member, the same for every
// node. A Mesh holds one Proxy per ordered pair of nodes (i, j), so that "i
// reaches j" and "k reaches j" are different links, and each node gets its own
// view of the cluster: node i is started with the shared --cluster string of
// real addresses and, with --dial-override, told to dial every other node j at
// Mesh.PeerAddr(i, j). The override wins over the recorded address wherever it
// comes from (bootstrap, a membership change, a snapshot), so the view holds
// for the life of the process. With three nodes:
//
//	m, err := netproxy.NewMesh([]string{peer1, peer2, peer3}) // real listen addresses
//	// every node: --cluster n1=peer1,n2=peer2,n3=peer3
//	// node n1:    --peer peer1 --dial-override n2=m.PeerAddr(0, 1),n3=m.PeerAddr(0, 2)
//	// node n2:    --peer peer2 --dial-override n1=m.PeerAddr(1, 0),n3=m.PeerAddr(1, 2)
//	// node n3:    --peer peer3 --dial-override n1=m.PeerAddr(2, 0),n2=m.PeerAddr(2, 1)
//	m.Partition([]int{0}, []int{1, 2}) // n1 alone; n2 and n3 still talk
//	m.CutOneWay(1, 2)                  // then also: n2's bytes to n3 vanish
//	m.HealAll()
//
// A node started without the override, or a member added later without one,
// dials real addresses and bypasses the mesh.
//
// The package uses only the standard library and has no knowledge of distkv's
// protocol; it moves bytes.
package netproxy
