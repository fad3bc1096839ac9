package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The handshake is the first exchange on every connection:
//
//	hello (dialer → acceptor), 40 bytes:
//	  [0:4] magic "DKVT"  [4:6] version  [6:8] flags
//	  [8:16] token  [16:24] cluster id  [24:32] dialer's node id
//	  [32:40] node id it expects to reach
//	hello-ack (acceptor → dialer), 31 bytes and a reason:
//	  [0:4] magic "DKVT"  [4:6] version  [6] status
//	  [7:15] token  [15:23] cluster id  [23:31] acceptor's node id
//	  [31:] reason text (refusals)
//
// The token is derived from the name the operator gave the cluster
// (--cluster-token); the cluster id is created at random once, when the
// cluster is bootstrapped, and is 0 on a node that does not know it yet (or
// whose cluster predates cluster ids). The acceptor refuses (and logs why) an
// unknown version, another token, a hello meant for another node id, a dialer
// claiming the acceptor's own id, and a cluster id other than its own when
// both know one. A hello with flagAskClusterID asks only for the acceptor's
// cluster id: it is answered with ackClusterID and the connection closed (a
// member bootstrapping a new cluster learns the id so, see AskClusterID).
// Before the handshake completes a frame may not exceed maxHelloSize, so an
// unauthenticated stranger cannot make a node allocate much.
const (
	protocolVersion = 2
	helloSize       = 40
	ackSize         = 31
	maxHelloSize    = 256
	maxReason       = maxHelloSize - ackSize
)

var magic = [4]byte{'D', 'K', 'V', 'T'}

// Hello flags.
const flagAskClusterID = 1

// Handshake statuses.
const (
	ackOK = iota
	ackBadVersion
	ackWrongToken
	ackWrongNode
	ackSameID
	ackWrongCluster
	ackClusterID // the answer to flagAskClusterID; not a refusal
)

type hello struct {
	version  uint16
	flags    uint16
	token    uint64
	cluster  uint64
	from, to uint64
}

func appendHello(dst []byte, h hello) []byte {
	dst, start := beginFrame(dst, frameHello)
	dst = append(dst, magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, h.version)
	dst = binary.BigEndian.AppendUint16(dst, h.flags)
	dst = binary.BigEndian.AppendUint64(dst, h.token)
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
	if len(b) < 6 || !bytes.Equal(b[0:4], magic[:]) {
		return hello{}, fmt.Errorf("%w: malformed hello", ErrProtocol)
	}
	h := hello{version: binary.BigEndian.Uint16(b[4:6])}
	if h.version != protocolVersion {
		// Judged (and refused by name) without reading a layout this
		// version does not know.
		return h, nil
	}
	if len(b) != helloSize {
		return hello{}, fmt.Errorf("%w: malformed hello", ErrProtocol)
	}
	h.flags = binary.BigEndian.Uint16(b[6:8])
	h.token = binary.BigEndian.Uint64(b[8:16])
	h.cluster = binary.BigEndian.Uint64(b[16:24])
	h.from = binary.BigEndian.Uint64(b[24:32])
	h.to = binary.BigEndian.Uint64(b[32:40])
	return h, nil
}

type ack struct {
	version uint16
	status  byte
	token   uint64
	cluster uint64
	id      uint64
	reason  string
}

func appendAck(dst []byte, a ack) []byte {
	dst, start := beginFrame(dst, frameHelloAck)
	dst = append(dst, magic[:]...)
	dst = binary.BigEndian.AppendUint16(dst, a.version)
	dst = append(dst, a.status)
	dst = binary.BigEndian.AppendUint64(dst, a.token)
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
		token:   binary.BigEndian.Uint64(b[7:15]),
		cluster: binary.BigEndian.Uint64(b[15:23]),
		id:      binary.BigEndian.Uint64(b[23:31]),
		reason:  string(b[31:]),
	}, nil
}

// FormatClusterID is how a cluster id is shown to people: 16 hex digits,
// as in logs, /cluster/status and refusals.
func FormatClusterID(id uint64) string {
	if id == 0 {
		return "(none)"
	}
	return fmt.Sprintf("%016x", id)
}

// self is what a node puts in its side of the handshake.
type self struct {
	id, token, cluster uint64
}

// judgeHello decides whether node s accepts h.
func judgeHello(h hello, s self) (status byte, reason string) {
	switch {
	case h.version != protocolVersion:
		return ackBadVersion, fmt.Sprintf("protocol version %d is not supported (want %d)", h.version, protocolVersion)
	case h.token != s.token:
		return ackWrongToken, fmt.Sprintf("cluster token %x does not match this node's %x (--cluster-token differs)", h.token, s.token)
	case h.to != s.id:
		return ackWrongNode, fmt.Sprintf("dialer expected node %x but this is node %x", h.to, s.id)
	case h.from == s.id || h.from == 0:
		return ackSameID, fmt.Sprintf("dialer claims node id %x, which is invalid here", h.from)
	case h.flags&flagAskClusterID != 0:
		return ackClusterID, ""
	case h.cluster != 0 && s.cluster != 0 && h.cluster != s.cluster:
		return ackWrongCluster, fmt.Sprintf("dialer belongs to cluster %s, this node to cluster %s",
			FormatClusterID(h.cluster), FormatClusterID(s.cluster))
	}
	return ackOK, ""
}

// acceptHandshake runs the acceptor's side on rw, whose incoming bytes fr
// reads (with fr.max set to maxHelloSize). It returns the hello (its from is
// 0 if none was read), and an error wrapping ErrProtocol if the hello was
// malformed or refused (the refusal is sent to the dialer first), or
// errAnswered if the hello only asked for the cluster id, which was sent.
func acceptHandshake(rw io.Writer, fr *frameReader, s self) (hello, error) {
	typ, body, err := fr.next()
	if err != nil {
		return hello{}, fmt.Errorf("read hello: %w", err)
	}
	h, err := decodeHello(typ, body)
	if err != nil {
		return hello{}, err
	}
	status, reason := judgeHello(h, s)
	a := ack{version: protocolVersion, status: status, token: s.token, cluster: s.cluster, id: s.id, reason: reason}
	if _, err := rw.Write(appendAck(nil, a)); err != nil {
		return h, fmt.Errorf("write hello-ack: %w", err)
	}
	switch status {
	case ackOK:
		return h, nil
	case ackClusterID:
		return h, errAnswered
	}
	return h, fmt.Errorf("%w: refused: %s", ErrProtocol, reason)
}

// errAnswered: the hello asked only for the cluster id, and got it.
var errAnswered = errors.New("cluster id asked and answered")

// dialHandshake runs the dialer's side: node s expects to reach node to.
// With ask, it only asks for to's cluster id, which it returns.
func dialHandshake(rw io.Writer, fr *frameReader, s self, to uint64, ask bool) (uint64, error) {
	h := hello{version: protocolVersion, token: s.token, cluster: s.cluster, from: s.id, to: to}
	if ask {
		h.flags = flagAskClusterID
	}
	if _, err := rw.Write(appendHello(nil, h)); err != nil {
		return 0, fmt.Errorf("write hello: %w", err)
	}
	typ, body, err := fr.next()
	if err != nil {
		return 0, fmt.Errorf("read hello-ack: %w", err)
	}
	a, err := decodeAck(typ, body)
	if err != nil {
		return 0, err
	}
	want := byte(ackOK)
	if ask {
		want = ackClusterID
	}
	if a.status != want {
		if a.status == ackWrongCluster {
			return 0, fmt.Errorf("%w: refused by peer: %s: %w", ErrProtocol, a.reason, ErrOtherCluster)
		}
		return 0, fmt.Errorf("%w: refused by peer: %q", ErrProtocol, a.reason)
	}
	if a.version != protocolVersion || a.token != s.token || a.id != to {
		return 0, fmt.Errorf("%w: peer answered as node %x with token %x and version %d", ErrProtocol, a.id, a.token, a.version)
	}
	if !ask && a.cluster != 0 && s.cluster != 0 && a.cluster != s.cluster {
		return 0, fmt.Errorf("%w: peer belongs to cluster %s, this node to cluster %s: %w", ErrProtocol,
			FormatClusterID(a.cluster), FormatClusterID(s.cluster), ErrOtherCluster)
	}
	return a.cluster, nil
}
