// Package snap writes, reads and keeps the snapshot files of a node: the full
// state of one shard (its sorted key-value pairs with their versions and
// revisions) at one log index, so the log before that index can be dropped.
//
// Guarantees:
//
//   - Integrity. A snapshot stream (Encode, Decode) has a checksummed header and a
//     trailer holding the pair count and a CRC32C of every byte before it. Decode
//     reports any damage as an error wrapping ErrCorrupt, never a panic and never
//     a silently shorter set of pairs; since the check completes only at the end
//     of the stream, callers of Decode discard what they got unless it returns nil
//     (Store.Load and kv.Store.Restore are built so this cannot be forgotten).
//   - Safety on hostile input. Decode will also read snapshots streamed from other
//     nodes: every length is bounded (MaxKey, MaxValue, MaxExtra, 1 MiB chunks, an
//     8 MiB zstd window) and allocation follows the bytes actually present.
//   - Bounded memory. Encode compresses (zstd, klauspost/compress) and writes
//     pairs as they come, and Decode hands them over one at a time, whatever the
//     size of the snapshot.
//   - Atomic installation. Store.Save writes <name>.tmp, fsyncs it, renames it and
//     fsyncs the directory: a crash leaves no new snapshot or a complete one, and
//     NewStore removes leftover temporary files. Every file-system call goes
//     through a vfs.FS so tests can inject failed writes, fsyncs and renames.
//   - Concurrency. A Store serves Save, Receive, Install, Load, Open and
//     Purge of one shard at once (a node writes a snapshot while it receives
//     and installs the leader's and streams its own): temporary files have
//     names of their own and snapshots appear only by an atomic rename (see
//     Store).
//   - Encryption at rest. With StoreConfig.Cipher every file is a sealed
//     stream (package crypt, AES-256-GCM in 64 KiB chunks) of the snapshot
//     stream, so the checks above still run inside the seal; damage to a
//     sealed file is ErrCorrupt (Load falls back as for any damaged file),
//     but a missing key, a data key the Cipher lacks or a file in the clear
//     is an error of its own (crypt.ErrKeyRequired, crypt.ErrWrongKey,
//     crypt.ErrNotEncrypted) that stops Load: never a silent misread or a
//     quiet fallback. Receive takes and Open gives the plain stream: two
//     nodes exchange snapshots in Encode's format (over the peer link's TLS)
//     and each seals them under its own keys.
//   - Files are created 0600 in a directory created 0700.
//   - Fallback. Store.Load installs the newest intact snapshot of a shard,
//     logging and skipping damaged newer files. Falling back to an older snapshot
//     is only useful if the log still holds the entries after it, so the WAL must
//     be compacted behind the oldest snapshot kept, not the newest (keep >= 2 in
//     Purge).
package snap
