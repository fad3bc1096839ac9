package transport

import "errors"

var (
	// ErrClosed is returned by every method of a closed Transport, and to the
	// calls and snapshot streams that were pending when it was closed.
	ErrClosed = errors.New("transport closed")

	// ErrUnknownPeer is returned for a peer that was never added or was
	// removed (RemovePeer fails its pending calls with it).
	ErrUnknownPeer = errors.New("unknown peer")

	// ErrUnreachable means the request was not sent: the peer is not connected
	// and the last attempt to connect to it failed. Retrying later is safe.
	ErrUnreachable = errors.New("peer unreachable")

	// ErrConnLost means the connection broke after the request was handed to
	// it: the peer may or may not have executed it.
	ErrConnLost = errors.New("connection to peer lost")

	// ErrRemote wraps the error text a peer's handler returned.
	ErrRemote = errors.New("remote error")

	// ErrAborted is what a snapshot receiver's reader returns when the stream
	// ends before its end marker: the sender aborted it or the connection broke.
	ErrAborted = errors.New("snapshot stream aborted")

	// ErrProtocol reports bytes that break the wire protocol: a bad frame, a
	// failed checksum, a frame too large, a refused handshake. The connection
	// that carried them is closed.
	ErrProtocol = errors.New("transport protocol error")

	// ErrOtherCluster is a handshake refused because the two nodes belong to
	// different clusters: both know a cluster id, and the ids differ.
	ErrOtherCluster = errors.New("peer belongs to another cluster")
)
