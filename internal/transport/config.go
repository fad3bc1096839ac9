package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Handler receives what peers send. The Transport calls it from its own
// goroutines; see each method for which ones.
type Handler interface {
	// HandleRaft receives Raft messages for shard from one peer, in the order
	// that peer queued them for this shard. It is called from the connection's
	// reader goroutine, so it must not block long: while it runs, nothing else
	// from that peer is read. The handler owns msgs.
	HandleRaft(shard uint64, msgs []raftpb.Message)

	// HandleCall serves a request from peer `from` in a goroutine of its own
	// and returns the response payload or an error, whose text travels back:
	// the caller gets an error wrapping ErrRemote. ctx is cancelled when the
	// caller gives up, the connection breaks or the Transport closes. The
	// handler owns payload.
	HandleCall(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error)

	// HandleSnapshot consumes a snapshot stream from peer `from`, in a
	// goroutine of its own. r yields the stream's bytes and returns io.EOF at
	// its end, or an error wrapping ErrAborted if the sender aborted or the
	// connection broke: a stream is never silently truncated. Returning nil
	// tells the sender the snapshot was installed, provided nothing but the
	// end of the stream was left unread (the transport checks, waiting for the
	// end marker if need be; unread data turns success into an error). An
	// error's text is reported to the sender. r must not be used after
	// HandleSnapshot returns.
	HandleSnapshot(from, shard uint64, r io.Reader) error

	// PeerUnreachable is called when messages to peer `to` could not be
	// delivered (not connected, queue full, connection lost), so that Raft can
	// be told (RawNode.ReportUnreachable). It is called from a goroutine of the
	// Transport, never from inside Send, and must not block. Reports are
	// coalesced: many drops in a burst give one call.
	PeerUnreachable(to uint64)
}

// Config configures a Transport. The zero value of every optional field
// selects its default (see Validate).
type Config struct {
	// ID is this node's Raft id. Required, non-zero.
	ID uint64
	// Token is derived from the name the operator gave the cluster
	// (--cluster-token): connections between nodes with different tokens are
	// refused in the handshake.
	Token uint64
	// ClusterID is the cluster's id, created at random once when the cluster
	// was bootstrapped; 0 if this node does not know it (yet), or its cluster
	// predates cluster ids. A connection between two nodes that both know a
	// cluster id is refused, with both ids logged, if the ids differ. Like
	// Token it guards against mistakes, not attackers: it is no secret. Use
	// TLS with client certificates to keep strangers out.
	ClusterID uint64
	// Listen is the host:port to accept peer connections on; port 0 picks a
	// free port (see Transport.Addr). Required.
	Listen string
	// Handler receives messages, calls and snapshots. Required.
	Handler Handler
	// TLS, if set, secures both directions: the listener serves TLS with it and
	// dials use it as a client configuration (ServerName defaults to the
	// peer's host). For mutual TLS set ClientAuth and ClientCAs as well as
	// Certificates and RootCAs. Nil means plain TCP; nothing else changes.
	TLS *tls.Config

	// QueueSize bounds the Raft messages queued per peer and not yet written;
	// beyond it Send drops (Raft retransmits). Default 4096.
	QueueSize int
	// DialTimeout bounds connecting to a peer: TCP, TLS and the hello
	// exchange. It also bounds the handshake of an accepted connection.
	// Default 1s.
	DialTimeout time.Duration
	// InitialBackoff and MaxBackoff shape the wait between failed dials:
	// doubling from InitialBackoff up to MaxBackoff, each wait drawn at random
	// from its upper half. Defaults 50ms and 1s.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// WriteTimeout is how long one write to a peer may block before the
	// connection is considered dead and closed. Default 5s.
	WriteTimeout time.Duration
	// KeepAlive is the TCP keepalive idle time and probe interval: a peer that
	// vanished without closing is noticed after about KeepAlive*4. Default 10s.
	KeepAlive time.Duration
	// MaxFrameSize bounds a frame's body; a larger frame is a protocol error
	// and closes the connection. Raft messages, call payloads and responses
	// larger than this cannot be sent. It must be the same on every node.
	// Default 16 MiB; at least 128 KiB.
	MaxFrameSize int

	// Logger receives connection events; default discards.
	Logger *slog.Logger
	// Name is this node's name in log lines (node=n1); default its ID in hex.
	Name string
}

const (
	minFrameSize = 128 << 10
	maxFrameSize = 1 << 30
)

// Validate fills in defaults and reports the first invalid setting.
func (c *Config) Validate() error {
	if c.ID == 0 {
		return errors.New("transport: node id must be non-zero")
	}
	if c.Listen == "" {
		return errors.New("transport: listen address must not be empty")
	}
	if c.Handler == nil {
		return errors.New("transport: handler must not be nil")
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d == 0 {
			*d = v
		}
		if *d < 0 {
			return fmt.Errorf("transport: %s %v is negative", name, *d)
		}
		return nil
	}
	for _, f := range []struct {
		d    *time.Duration
		v    time.Duration
		name string
	}{
		{&c.DialTimeout, time.Second, "dial timeout"},
		{&c.InitialBackoff, 50 * time.Millisecond, "initial backoff"},
		{&c.MaxBackoff, time.Second, "max backoff"},
		{&c.WriteTimeout, 5 * time.Second, "write timeout"},
		{&c.KeepAlive, 10 * time.Second, "keepalive"},
	} {
		if err := def(f.d, f.v, f.name); err != nil {
			return err
		}
	}
	if c.InitialBackoff > c.MaxBackoff {
		return fmt.Errorf("transport: initial backoff %v exceeds max backoff %v", c.InitialBackoff, c.MaxBackoff)
	}
	if c.QueueSize == 0 {
		c.QueueSize = 4096
	}
	if c.QueueSize < 1 {
		return fmt.Errorf("transport: queue size %d is below 1", c.QueueSize)
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = 16 << 20
	}
	if c.MaxFrameSize < minFrameSize || c.MaxFrameSize > maxFrameSize {
		return fmt.Errorf("transport: max frame size %d is outside [%d, %d]", c.MaxFrameSize, minFrameSize, maxFrameSize)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
