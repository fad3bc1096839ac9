package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// The handshake is the first exchange on every connection:
//
//	hello (dialer → acceptor), 32 bytes:
//	  [0:4] magic "DKVT"  [4:6] version  [6:8] zero
//	  [8:16] cluster id   [16:24] dialer's node id   [24:32] node id it expects to reach
//	hello-ack (acceptor → dialer), 23 bytes and a reason:
//	  [0:4] magic "DKVT"  [4:6] version  [6] status
//	  [7:15] cluster id   [15:23] acceptor's node id   [23:] reason text (refusals)
//
// The acceptor refuses (and logs why) an unknown version, another cluster,
// a hello meant for another node id, and a dialer claiming the acceptor's own
// id. Before the handshake completes a frame may not exceed maxHelloSize, so an
// unauthenticated stranger cannot make a node allocate much.
const (
	protocolVersion = 1
	helloSize       = 32
	ackSize         = 23
	maxHelloSize    = 256
	maxReason       = maxHelloSize - ackSize
)

var magic = [4]byte{'D', 'K', 'V', 'T'}

// Handshake statuses.
const (
	ackOK = iota
	ackBadVersion
	ackWrongCluster
	ackWrongNode
	ackSameID
)

type hello struct {
	version       uint16
	cluster, from uint64
	to            uint64
}

func appendHello(dst []byte, h hello) []byte {
	dst, start := beginFrame(dst, frameHello)
	dst = append(dst, magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, h.version)
	dst = append(dst, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, h.cluster)
	dst = binary.BigEndian.AppendUint64(dst, h.from)
	dst = binary.BigEndian.AppendUint64(dst, h.to)
	finishFrame(dst, start)
	return dst
}

func decodeHello(typ frameType, b []byte) (hello, error) {
	if typ != frameHello {
		return hello{}, fmt.Errorf("%w: expected hello, got %s frame", ErrProtocol, typ)
	}
	if len(b) != helloSize || !bytes.Equal(b[0:4], magic[:]) {
		return hello{}, fmt.Errorf("%w: malformed hello", ErrProtocol)
	}
	return hello{
		version: binary.BigEndian.Uint16(b[4:6]),
		cluster: binary.BigEndian.Uint64(b[8:16]),
		from:    binary.BigEndian.Uint64(b[16:24]),
		to:      binary.BigEndian.Uint64(b[24:32]),
	}, nil
}

type ack struct {
	version uint16
	status  byte
	cluster uint64
	id      uint64
	reason  string
}

func appendAck(dst []byte, a ack) []byte {
	dst, start := beginFrame(dst, frameHelloAck)
	dst = append(dst, magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, a.version)
	dst = append(dst, a.status)
	dst = binary.BigEndian.AppendUint64(dst, a.cluster)
	dst = binary.BigEndian.AppendUint64(dst, a.id)
	r := a.reason
	if len(r) > maxReason {
		r = r[:maxReason]
	}
	dst = append(dst, r...)
	finishFrame(dst, start)
	return dst
}

func decodeAck(typ frameType, b []byte) (ack, error) {
	if typ != frameHelloAck {
		return ack{}, fmt.Errorf("%w: expected hello-ack, got %s frame", ErrProtocol, typ)
	}
	if len(b) < ackSize || !bytes.Equal(b[0:4], magic[:]) {
		return ack{}, fmt.Errorf("%w: malformed hello-ack", ErrProtocol)
	}
	return ack{
		version: binary.BigEndian.Uint16(b[4:6]),
		status:  b[6],
		cluster: binary.BigEndian.Uint64(b[7:15]),
		id:      binary.BigEndian.Uint64(b[15:23]),
		reason:  string(b[23:]),
	}, nil
}

// judgeHello decides whether node self of cluster accepts h.
func judgeHello(h hello, self, cluster uint64) (status byte, reason string) {
	switch {
	case h.version != protocolVersion:
		return ackBadVersion, fmt.Sprintf("protocol version %d is not supported (want %d)", h.version, protocolVersion)
	case h.cluster != cluster:
		return ackWrongCluster, fmt.Sprintf("cluster id %x does not match this node's cluster id %x", h.cluster, cluster)
	case h.to != self:
		return ackWrongNode, fmt.Sprintf("dialer expected node %x but this is node %x", h.to, self)
	case h.from == self || h.from == 0:
		return ackSameID, fmt.Sprintf("dialer claims node id %x, which is invalid here", h.from)
	}
	return ackOK, ""
}

// acceptHandshake runs the acceptor's side on rw, whose incoming bytes fr
// reads (with fr.max set to maxHelloSize). It returns the node id the dialer
// claims in its hello (0 if none was read), and an error wrapping ErrProtocol
// if the hello was malformed or refused (the refusal is sent to the dialer
// first).
func acceptHandshake(rw io.Writer, fr *frameReader, self, cluster uint64) (uint64, error) {
	typ, body, err := fr.next()
	if err != nil {
		return 0, fmt.Errorf("read hello: %w", err)
	}
	h, err := decodeHello(typ, body)
	if err != nil {
		return 0, err
	}
	status, reason := judgeHello(h, self, cluster)
	a := ack{version: protocolVersion, status: status, cluster: cluster, id: self, reason: reason}
	if _, err := rw.Write(appendAck(nil, a)); err != nil {
		return h.from, fmt.Errorf("write hello-ack: %w", err)
	}
	if status != ackOK {
		return h.from, fmt.Errorf("%w: refused: %s", ErrProtocol, reason)
	}
	return h.from, nil
}

// dialHandshake runs the dialer's side: node self of cluster expects to reach
// node to.
func dialHandshake(rw io.Writer, fr *frameReader, self, cluster, to uint64) error {
	if _, err := rw.Write(appendHello(nil, hello{version: protocolVersion, cluster: cluster, from: self, to: to})); err != nil {
		return fmt.Errorf("write hello: %w", err)
	}
	typ, body, err := fr.next()
	if err != nil {
		return fmt.Errorf("read hello-ack: %w", err)
	}
	a, err := decodeAck(typ, body)
	if err != nil {
		return err
	}
	if a.status != ackOK {
		return fmt.Errorf("%w: refused by peer: %q", ErrProtocol, a.reason)
	}
	if a.version != protocolVersion || a.cluster != cluster || a.id != to {
		return fmt.Errorf("%w: peer answered as node %x of cluster %x with version %d", ErrProtocol, a.id, a.cluster, a.version)
	}
	return nil
}
