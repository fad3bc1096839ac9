// Package kv is the replicated state machine of one shard: an ordered in-memory
// map from key to value and metadata, changed only by Commands applied in log order.
//
// Guarantees:
//
//   - Determinism. Store.Apply's outcome depends only on the state and the Command,
//     so replicas that apply the same log hold the same state. Every key carries
//     its Version (writes since creation), its Revision (log index of its last
//     change) and its CreateRevision.
//   - Conditional writes. A Command whose Cond does not hold changes nothing and
//     reports StatusConflict with the key's current state.
//   - Transactions. An OpTxn Command carries a Txn in the style of etcd's: a list
//     of Compares on keys' value, version, revision, create revision or
//     existence, and two branches of put, delete and get operations. If every
//     compare holds the Success branch runs, otherwise the Failure branch; the
//     outcome (which branch, one TxnResponse per operation) is in Result.Txn.
//     A transaction is one log entry, so it is atomic and isolated by
//     construction: Apply runs it under one hold of the write lock, no reader
//     sees part of it, and every replica applies all of it at the same index.
//     All its writes have that index as their revision; its operations run in
//     order, so a get sees the branch's earlier writes. A missing key has
//     version, revision and create revision 0, and (as in etcd) a value
//     compare on it never holds. Txn.Validate refuses a branch that writes a
//     key twice, as etcd does; Apply itself only requires known types.
//   - Transactions over several ranges (intent.go): locks on keys, taken and
//     released by the ops of a coordinator (OpLock, OpCommit, OpResolve,
//     OpRecover, OpForget), and commit records. Writes of other commands to
//     a locked key are refused (StatusLocked); readers ask LockOn and LockIn
//     which locks they must wait for. Txn.Evaluate runs a transaction on the
//     states its locks returned, as Apply would.
//   - Values of two kinds. A value is a byte string (KindString) or the JSON
//     text of another JSON value (KindJSON); the kind is stored with it, so a
//     value reads back as the kind it was written, never as the other.
//   - Exactly-once requests. A Command with a RequestID is applied once: the
//     client-session table (session.go, the Raft thesis §6.3) records its
//     Result, and a later Command with the same RequestID and Op gets that
//     Result (Replayed) and changes nothing. Records expire by the Times the
//     Commands carry, never by a replica's clock, and the table is bounded
//     (MaxRecords, MaxRecordBytes), so every replica keeps the same records.
//   - Expiring keys. A put may carry a Deadline (Unix nanoseconds, fixed by
//     its proposer); the key is deleted when an OpExpire whose Now is at or
//     past it is applied, never by a replica's clock, so every replica
//     deletes it at the same log index and a restart keeps the deadline
//     (expiry.go). A put without a Deadline clears the key's.
//   - Auth state. Users, roles and the token secret (package auth) are
//     state beside the pairs, out of the key space: no read or write of keys
//     reaches them. Only OpAuth changes them, in log order; a snapshot's
//     state pair carries them (auth.go).
//   - Cheap, consistent snapshots. The state is a copy-on-write B-tree
//     (github.com/tidwall/btree): Store.Snapshot clones it in O(1) without stopping
//     writes, and the View never sees later writes (the session table's
//     records are shared, never modified). Package snap streams a View to disk
//     as View.SnapshotPairs yields it: a state pair first (the session table),
//     then every pair with its kind folded into its value; Store.RestoreSnapshot
//     loads that, or the plain pairs of a snapshot written before it, all or
//     nothing. View.All and Store.Restore deal in plain pairs.
//   - Versions by revision. Every version a write replaces or deletes is kept,
//     with the revision that ended it, until an OpCompact drops it
//     (history.go): GetAt, RangeAt and Changes read the state as it was at a
//     revision, Versions a key's current life; reads below the compaction
//     revision fail with a *CompactedError. Snapshots carry the kept
//     versions (retired pairs, kind byte | 0x40) and the compaction revision
//     (state version 4). OpAdvance raises the revision without a write, so
//     that a revision read at is final (no stamp at or below it applies).
//   - Concurrency. One goroutine (the Raft apply loop) calls Apply and Restore;
//     any number of goroutines may read (Get, Range, Len, Snapshot) meanwhile.
//     Long scans read a clone, so they never hold up Apply.
//   - Ownership. Apply copies what it keeps of a Command; the store never modifies
//     a key or value after storing it, so pairs handed to readers stay valid and
//     unchanged forever (and must be treated as read-only).
//   - A stable wire format. Command and Result have a compact binary encoding with
//     a leading version byte; the decoders reject every malformed input with an
//     error wrapping ErrMalformed and never panic (they are fuzzed). Each value
//     has exactly one encoding. Transactions kept version 1: a txn is op 3 and
//     a Result's txn outcome is flag 2, both of which a decoder that predates
//     them rejects as malformed rather than misreads; so do JSON values (flag
//     8, txn put type 0x81), request ids (flag 16), deadlines (flag 32, and
//     kind byte | 0x80 in a snapshot pair), OpExpire (op 4), OpAuth (op 5) and a Result's
//     version and kinds (flags 4 and 8). A log or snapshot written before them decodes as
//     it always did: every value a string, no records.
package kv
