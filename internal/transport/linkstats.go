package transport

import "sync/atomic"

// linkBytes counts the frame bytes exchanged with one node, over both
// connections (the one this node dialed and the one the peer dialed), since
// the Transport started. Handshakes are not counted; with TLS the bytes are
// those inside TLS.
type linkBytes struct {
	sent, received atomic.Uint64
}

// linkBytesFor returns the counters of node id, creating them. A node's
// counters are kept for the life of the Transport, across connections and
// RemovePeer, so that they only grow; only nodes that passed the handshake
// (or were added as peers) get any.
func (t *Transport) linkBytesFor(id uint64) *linkBytes {
	t.linksMu.Lock()
	defer t.linksMu.Unlock()
	lb := t.links[id]
	if lb == nil {
		if t.links == nil {
			t.links = map[uint64]*linkBytes{}
		}
		lb = &linkBytes{}
		t.links[id] = lb
	}
	return lb
}

// addLinkStats fills in the name and byte counts of node id in s.
func (t *Transport) addLinkStats(id uint64, s *PeerStats) {
	t.namesMu.RLock()
	s.Name = t.names[id]
	t.namesMu.RUnlock()
	t.linksMu.Lock()
	lb := t.links[id]
	t.linksMu.Unlock()
	if lb != nil {
		s.BytesSent, s.BytesReceived = lb.sent.Load(), lb.received.Load()
	}
}
