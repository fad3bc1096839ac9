// Package transport is the link between distkv nodes: Raft messages, calls
// (forwarded client requests) and snapshot streams, for every shard (Raft
// group), over one persistent TCP or TLS connection per peer and direction.
//
// # API
//
//	New(Config) (*Transport, error)   listens at once; Addr() tells the port
//	AddPeer(id, addr) / RemovePeer(id)
//	NamePeer(id, name)                how logs name the peer (peer=n2)
//	Send(shard, msgs)                 Raft messages, routed by msg.To; never blocks
//	Call(ctx, to, shard, method, payload) ([]byte, error)
//	SendSnapshot(ctx, to, shard, r) error
//	Stats() map[uint64]PeerStats
//	Close() error
//
// and, on the receiving side, a Handler (HandleRaft, HandleCall,
// HandleSnapshot, PeerUnreachable).
//
// # Connections
//
// For every peer a goroutine dials one connection and keeps it up: when it
// breaks or a dial fails it dials again after a backoff that doubles from
// Config.InitialBackoff to Config.MaxBackoff, each wait drawn from the upper
// half of its range (jitter). The dialer sends everything it originates on
// that connection: Raft messages, calls, snapshot chunks; the peer answers
// calls and snapshot streams on the same connection. So between two nodes
// there are two connections, one dialed by each, and a response always comes
// back on the connection its request went out on. A node identifies an
// accepted connection by the dialer's id in the handshake; a new connection
// from the same id replaces the old one (the peer redialed, so it considers
// the old one dead).
//
// There are no transport heartbeats: Raft's own heartbeats, TCP keepalive
// (Config.KeepAlive) and a deadline on every write (Config.WriteTimeout)
// notice a dead peer. Connections have no read deadline, so idle shards cost
// nothing.
//
// # Guarantees
//
//   - Send never blocks. Each peer's connection has a queue of at most
//     Config.QueueSize messages; when it is full, or the peer is not
//     connected, or not a peer at all, messages are dropped, counted
//     (PeerStats.Dropped) and the peer is reported to Handler.PeerUnreachable
//     (asynchronously, coalesced). Raft retransmits.
//   - Order: the messages of one shard from one sender reach HandleRaft in the
//     order they were passed to Send, without duplicates; losses happen only
//     as drops above or with a broken connection (counted and reported too).
//     A replacing connection delivers nothing before the replaced one's
//     reader has finished.
//   - Coalescing: a writer goroutine per connection takes everything queued
//     at once and writes it with one write call (pieces of at most 4 MiB):
//     under load many messages share a frame and a system call.
//   - Calls are multiplexed by request id and answered in any order. A call
//     fails with ErrUnreachable if it was not sent (the peer is down), with
//     ErrConnLost if the connection broke after it was queued (its outcome is
//     unknown), with ctx.Err() when the caller gives up (the handler's context
//     is cancelled), with ErrUnknownPeer after RemovePeer and ErrClosed after
//     Close. A handler's error text comes back wrapped in ErrRemote.
//   - Snapshot streams are sent in chunks of 64 KiB with credit-based flow
//     control: at most 8 chunks per stream are in flight or buffered at the
//     receiver, so both sides hold at most about 512 KiB of a stream however
//     large it is. The writer sends at most one chunk per stream before
//     looking at the other queues again, so a heartbeat waits behind at most
//     one chunk per stream. The receiver's reader returns io.EOF only after
//     the sender's end marker; an abort or a broken connection gives an error
//     wrapping ErrAborted instead, never a silent truncation. SendSnapshot
//     returns the receiving handler's verdict.
//   - Hostile bytes: every frame length is checked against
//     Config.MaxFrameSize before anything is read, a frame's buffer grows with
//     the bytes that actually arrive (not with what the header claims), and
//     before the handshake completes frames are limited to 256 bytes. Every
//     frame has a CRC32C. A malformed frame closes the connection with an
//     error wrapping ErrProtocol; decoders never panic (they are fuzzed).
//
// # Frames
//
// Every frame is a 12-byte header and a body:
//
//	[0:4]   body length n, big-endian uint32 (n <= MaxFrameSize)
//	[4]     frame type
//	[5:8]   reserved, zero
//	[8:12]  CRC32C (Castagnoli) of header bytes [4:8] followed by the body
//	[12:]   body, n bytes
//
// Bodies (uvarint is encoding/binary's unsigned varint):
//
//	1 hello        magic "DKVT", version u16, flags u16, token u64, cluster u64, from u64, to u64
//	2 hello-ack    magic "DKVT", version u16, status u8, token u64, cluster u64, id u64, reason
//	3 raft         { shard uvarint, length uvarint, raftpb.Message } repeated
//	4 call         id uvarint, shard uvarint, method u8, payload
//	5 cancel       id uvarint
//	6 reply        id uvarint, status u8 (0 ok, 1 error), payload or error text
//	7 snap-begin   stream uvarint, shard uvarint
//	8 snap-data    stream uvarint, 1 to 65536 bytes
//	9 snap-end     stream uvarint
//	10 snap-abort  stream uvarint, reason text
//	11 snap-credit stream uvarint, chunks uvarint
//	12 snap-result stream uvarint, status u8 (0 installed, 1 error), error text
//
// Types 3, 4, 5 and 7-10 flow from dialer to acceptor, 6, 11 and 12 back;
// a frame in the wrong direction is a protocol error. Request and stream ids
// are chosen by the dialer, per connection; stream ids grow.
//
// # Handshake
//
// The dialer sends hello with the cluster token, the cluster id (0 if it
// knows none), its own node id and the node id it means to reach; the
// acceptor checks version, token, node id and, when both know one, cluster
// id, and answers hello-ack with status 0, or with a refusal and its reason
// (a refusal for another cluster names both ids), which both sides log. Only
// then does other traffic flow. A hello may instead only ask for the
// acceptor's cluster id (AskClusterID). With Config.TLS the TLS handshake
// comes first and everything above runs inside TLS.
package transport
