// Package wal is the write-ahead log of a distkv node: one log for all the
// Raft groups (shards) of the node, so that the entries and hard states of
// every group in one Raft Ready cost one frame and one fsync.
//
// # Guarantees
//
//   - Append returns nil only after its records are written and, if it asked
//     for sync, fsynced (with fdatasync on Linux, see Files). Such records are replayed by every later Open, in the
//     order they were appended, even after a power loss. Records appended with
//     sync=false survive a process crash (they are in the page cache) and are
//     made durable by the next synced Append; with Config.Direct they wait in
//     memory for that Append, and a process crash loses them (see Direct
//     writes).
//   - A frame is atomic: after a crash, Open replays all of its records or
//     none of them.
//   - A full disk is not fatal: ENOSPC while reserving disk, writing a frame
//     or creating the next segment fails that Append with ErrNoSpace. A partly
//     written frame is truncated away (and the truncation fsynced) first, and
//     a segment that could not be created leaves no file behind, so the log
//     holds exactly the frames whose Append succeeded and takes appends again
//     as soon as space is freed.
//   - Any other write, sync, reserve or close error makes the WAL fail:
//     that Append and every later one return an error wrapping ErrFailed. After
//     a failed fsync the kernel may have dropped the dirty pages and cleared the
//     error (PostgreSQL's "fsyncgate"), so retrying could report success for
//     data that is gone; the only safe reaction is to stop, restart, and let
//     Open read what really is on disk. A failed fsync is fatal even when it
//     reports ENOSPC.
//   - Open never silently skips damage. The only damage it repairs is a torn
//     final frame of the last segment, which it truncates with a warning.
//     Anything else is reported as ErrCorrupt with file and byte offset.
//     Zeros after the last frame of the last segment are not damage but the
//     reserve (see Files): Open keeps them and appends over them.
//   - Compact never deletes a record that is still needed: the latest hard
//     state and snapshot marker of every shard are carried into the first
//     frame of each new segment, and a segment is deleted only when every
//     entry in it is covered by its shard's snapshot.
//
// # Files
//
// Dir holds segments named "<16 hex digits of seq>.wal", with consecutive
// sequence numbers (a gap is reported as corruption). A segment starts with a
// 32-byte header: magic "DKV-WAL\n", format version, sequence number, and a
// CRC32C of the header. A new segment is created as "<name>.tmp"; its header
// and the carry-over frame are written and fsynced, it is renamed into place,
// and the directory is fsynced, so a segment file either exists complete or
// not at all. Before that, the previous segment is trimmed to its data length
// and fsynced, so a non-final segment is always whole and any damage in it is
// corruption. Open deletes leftover .tmp files. Segments are cut once they
// hold SegmentSize bytes.
//
// Disk is reserved ahead of the write offset by writing zeros, in steps of
// PreallocSize (never past SegmentSize, where the segment is cut): the active
// segment's file length is the reserved end, and each frame overwrites zeros
// in place at the data end. So an append changes neither the file's size nor
// its block allocation, and the sync after it is an fdatasync (vfs
// File.SyncData), which writes the data blocks and no inode: measured on ext4
// on a virtio disk, about 30% less latency than an fsync of a growing file.
// Only the append that extends the reserve pays for writing and syncing the
// zeros (and a new segment gets its reserve before it is renamed into place).
// fallocate would not do: a write to its unwritten extents changes metadata.
// The zeros written ahead are never stale data: the reserve is only extended
// past the file's end, and whatever cuts the data back (a torn tail, a frame
// removed after a full disk) truncates the reserve with it. Cutting and
// closing a segment trim it to its data length, so only the active segment
// holds a reserve. Directory syncs remain full fsyncs.
//
// # Direct writes
//
// With Config.Direct, the active segment's frames are copied into a buffer
// aligned to vfs.DirectAlign that starts at the block holding the first byte
// not yet synced (Open and a cut load that block's earlier bytes into it). A
// sync writes the buffer up to the end of its last block, zeros after the
// data, with one vfs.File.WriteAtSync: on Linux an O_DIRECT write with
// RWF_DSYNC, through the io_uring. It rewrites the synced bytes of its first
// block with the same values, as the page cache's write-back of a partial
// page does. Nothing then goes through the page cache, so nothing is written
// back and no separate flush waits for the device: with three processes
// appending on one virtio disk, 167-230 us per synced append against 231-262
// us for a buffered write and fdatasync. The zeros of a reserve extension are
// synced at once, so a direct write never meets a dirty page (the kernel
// would write it back first) and never needs the file's size made durable;
// a write that ends past the reserve (only the last one before a cut, whose
// block passes SegmentSize) grows the file with zeros, which RWF_DSYNC makes
// durable with it. A full disk is then found when the reserve is extended; a
// failed direct write is fatal like a failed sync. A cut and Close write the
// buffer first.
//
// # Frames
//
// Each Append (or group of coalesced Appends) is one frame:
//
//	[0:4]   stored payload length       [4:8]   decoded payload length
//	[8]     flags (bit 0: compressed, bit 1: S2 rather than zstd,
//	        bit 2: encrypted)
//	[9:12]  reserved, zero              [12:16] CRC32C of the stored payload
//	[16:20] CRC32C of bytes [0:16]      [20:]   payload
//
// The decoded payload is a sequence of records: shard (uvarint), type (byte),
// index (uvarint), data length (uvarint), data. It is compressed (zstd or S2,
// per Config.Compression) when it is at least MinCompressSize bytes and that
// makes it smaller. Every length is checked before anything is allocated:
// payloads are capped at 256 MiB stored and decoded, a frame cannot claim more
// payload than the file holds, a compressed frame cannot claim to expand more
// than a valid zstd frame can (32768x), and decompression writes into exactly
// the announced decoded length.
//
// The header has its own checksum so that a flipped bit in the length field is
// seen as corruption instead of sending the reader past the real end of the
// frame, where it would find "a torn tail".
//
// # Encryption
//
// With Config.Cipher, every frame's payload is sealed after compression
// (package crypt): the stored payload is the data key id, a per-session salt
// and a counter (28 bytes), the ciphertext, and a 16-byte GCM tag, whose
// additional data are the segment's sequence number, the flags and the
// decoded length. The checksums stay over the bytes on disk, so torn frames
// are told from corruption exactly as without encryption; a frame whose
// checksums hold but whose tag does not is corruption. Each Open starts a
// new sealing session (a fresh random salt, hence a fresh subkey), so no
// nonce repeats across restarts, cuts or frames rewritten after a full disk.
// Segment headers stay in the clear: they hold no data. The seal protects
// each frame's contents and binds it to its segment; one who can write the
// files can still drop or reorder whole frames within a segment, as without
// encryption. A WAL is encrypted whole or not at all: with a Cipher a frame
// in the clear is refused (crypt.ErrNotEncrypted), without one a sealed
// frame (crypt.ErrKeyRequired); a frame of a data key the Cipher lacks fails
// with crypt.ErrWrongKey.
//
// # Recovery
//
// Open reads the segments in order and replays every record. In a non-final
// segment any damage is corruption. In the final segment, when every byte
// from a frame boundary to the end of the file is zero (where the next frame
// header would be included: no frame header is all zeros), that is the clean
// end of the log, the reserve of the process that wrote it: no warning, no
// truncation, and the next append writes at that offset. A damaged frame is a
// torn tail only if a crash in the middle of appending it explains it:
//
//   - fewer bytes than a frame header remain; or
//   - the header is good and its payload runs past the end of the file; or
//   - a checksum fails and every byte from the frame's claimed end to the end
//     of the file is zero, which is what unwritten blocks read as; for a bad
//     header, every byte from the header's last byte on: a header whose
//     every byte was written would be intact, so a crash can leave at most
//     its first 19 bytes followed by zeros. (Every payload holds non-zero
//     bytes, so a damaged header followed by its payload is still corruption.)
//
// A torn frame is truncated away together with the reserve after it, with a
// warning, and the next append reserves zeros again.
//
// A bad frame followed by non-zero bytes cannot come from an interrupted
// append that wrote its bytes in order (nothing is ever written after an
// unfinished frame: the WAL durably removes it first, or fails), so Open
// refuses to start and names file and offset. It could also be a lost or misdirected write in the middle
// of acknowledged data, and truncating there would silently drop acknowledged
// records. The price of refusing: after a power loss, a disk that persisted
// the unsynced tail out of order (a later page of the last frame, or a later
// sync=false frame, but not an earlier page) leaves a hole of zeros followed
// by data, and Open refuses although nothing acknowledged with sync is
// missing (an fsync covers every byte before it, so everything after a hole
// was never fsynced). distkv wal verify shows the offset; an operator decides.
//
// # Group commit
//
// Each Append enqueues a request (its records and whether it needs sync).
// One Append at a time holds the writer's turn: the first to find no write in
// progress takes it at once and writes its own frame on its own goroutine, so
// a lone caller (a Raft loop) pays no goroutine hand-off on top of its fsync.
// Appends that arrive meanwhile wait. When the writer is done it completes
// them or, if some are still queued, hands the turn to the oldest, which
// takes every queued request at once, encodes all their records into one
// payload, compresses it, writes one frame, fsyncs once if any request asked
// for it, and completes the requests in queue order. So under load every
// fsync carries the records of all callers that arrived during the previous
// one: with 64 concurrent appenders a frame holds tens of Appends, and
// throughput grows with the number of callers instead of being bounded by
// fsync latency. A new turn yields once before taking the queue: the callers
// just completed usually append again at once, and without the yield they
// split into two groups whose frames alternate, each fsync carrying only
// half of them. Only the turn's holder touches the file, so the offset,
// segment cuts and the sticky error stay simple: no two goroutines ever write
// to a segment.
//
// Compression runs in the turn's holder, outside the queue lock, so appenders keep
// queueing while a frame is compressed.
//
// # Compaction
//
// For each segment the WAL remembers, per shard, the highest entry index it
// holds. Compact(shard, index) raises that shard's covered index and deletes
// the oldest segments while every entry in them is covered (a shard never
// compacted covers nothing), one at a time with a directory fsync after each,
// so that a crash can only leave a shorter prefix deleted, never a gap. The
// active segment is never deleted. Entries that Raft overwrote (a conflicting
// suffix) keep their old segment until the snapshot passes their index:
// conservative, never unsafe.
//
// # Read-only tools
//
// Scan and Verify read a WAL directory without modifying it, applying the
// same rules as Open; Verify reports where Open would truncate a torn tail,
// and how many bytes of reserve follow the last frame.
package wal
