// Package backup is the file format of a distkv backup: a consistent copy of
// a cluster's state at one revision, written by GET /backup and
// `distkv backup`, read by `distkv restore`.
//
// A backup file is a snapshot stream (package snap: checksummed header, zstd
// body of pairs, trailer with the pair count and a CRC32C of every byte
// before it) whose Meta says what it is:
//
//	Meta.Shard  the shard the pairs belong to
//	Meta.Index  the revision: the applied index of the state copied
//	Meta.Term   0 (a backup is no Raft snapshot)
//	Meta.Extra  JSON {"format":"distkv-backup","version":1,"cluster_id":"<16 hex>",
//	            "nonce":"<32 hex>","created":"<RFC 3339>"}
//
// The pairs are those of kv.View.SnapshotPairs: the state pair (empty key:
// format version and the client-session table) first, then every key.
//
// Guarantees:
//
//   - Integrity. Verify reads the whole stream and accepts it only if every
//     checksum and the pair count hold and the Meta names a backup; a
//     truncated or altered file is refused with an error wrapping ErrCorrupt
//     that names the problem and, where the damage is found, its offset.
//     Since the checksum covers every byte, a file is trusted only after
//     Verify (or Decode) returned nil.
//   - Identity. The nonce is random per backup, so two backups are told
//     apart even at the same revision; `distkv restore` derives the new
//     cluster's id from it (see cmd/distkv/backup.go).
package backup
