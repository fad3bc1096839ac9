// Package raftnode runs the Raft groups of one distkv node on go.etcd.io/raft/v3.
//
// One goroutine (the loop) owns the RawNode: it ticks, hands proposals and read
// requests to Raft, and for every Ready it
//
//  1. appends the new entries and hard state to the WAL as one frame and, when
//     Raft says so (Ready.MustSync), fsyncs it;
//  2. appends them to the in-memory Raft log (raft.MemoryStorage);
//  3. sends messages (to peers, once there are peers);
//  4. applies committed entries to the state machine (package kv) and answers
//     the callers waiting on them;
//  5. calls Advance.
//
// Guarantees:
//
//   - A write is acknowledged only after its entry is committed (by a quorum) and
//     applied, and the entry is durable: step 1 completes before step 4 for the
//     same Ready, and a committed entry was fsynced in an earlier or the same Ready.
//   - A failed WAL write or fsync stops the node (Err reports why). Nothing is
//     acknowledged after it; callers waiting get ErrStopped. Restarting recovers
//     exactly what the WAL holds: every acknowledged write.
//   - A full disk does not stop the node: the Ready that could not be written
//     is kept, not advanced, and retried with backoff while Raft is neither
//     ticked nor stepped; new writes (and linearizable reads that need the
//     loop) get ErrNoSpace at once, Ready reports it, and everything carries on
//     by itself once space is freed (see Node.stalled).
//   - Linearizable reads use Raft's ReadIndex: a read is answered from local state
//     only after this node has applied up to the commit index the leader confirmed
//     with a quorum after the read arrived. Concurrent reads share one ReadIndex.
//   - Every SnapshotEntries applied entries the state machine is cloned (O(1), a
//     copy-on-write B-tree) and written to a snapshot file by another goroutine
//     while writes go on; then the WAL is compacted behind the oldest snapshot
//     kept, so disk use stays bounded.
//   - Restart = newest valid snapshot + replay of the WAL behind it; Raft then
//     re-delivers the committed entries after the snapshot for applying.
//
// Entry payloads are an 8-byte request id (random start, so ids from before a
// restart do not collide with new ones) followed by a kv.Command.
package raftnode
