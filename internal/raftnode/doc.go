// Package raftnode runs the Raft groups of one distkv node on go.etcd.io/raft/v3.
//
// One goroutine (the loop) owns the RawNode, which runs with asynchronous
// storage writes: the loop ticks, hands proposals and read requests to Raft,
// and for every Ready it
//
//  1. sends the messages to peers (Raft holds back those that vouch for
//     something not yet durable here);
//  2. hands the append (new entries and hard state) to the appender, whose
//     writer writes everything queued as one WAL frame once no fsync is under
//     way, and whose syncer then fsyncs what is written, gives it to the
//     in-memory Raft log (raft.MemoryStorage), and delivers the appends'
//     responses (acknowledgements to peers, and to this node's Raft through
//     the loop);
//  3. applies committed entries to the state machine (package kv), after
//     recording in the applied mark how far it applies, and answers the
//     callers waiting on them.
//
// So the loop goes on stepping messages and proposals, and applying, while
// the log is synced; the proposals that arrive meanwhile share the next frame.
//
// Guarantees:
//
//   - A write is acknowledged only after its entry is committed (by a quorum) and
//     applied, and the entry is durable here: Raft hands out for applying only
//     committed entries that the appender has reported durable.
//   - A stale read never shows an older state after a restart than before it:
//     before entries are applied, the index of the last one is written to the
//     applied mark (in place, without an fsync: a process crash keeps it), and a
//     restart replays the WAL up to that index before stale reads are served
//     (see appliedmark.go).
//   - A failed WAL write or fsync stops the node (Err reports why). Nothing is
//     acknowledged after it; callers waiting get ErrStopped. Restarting recovers
//     exactly what the WAL holds: every acknowledged write.
//   - A full disk does not stop the node: the append that could not be written
//     is kept and retried with backoff while Raft is neither ticked nor
//     stepped; new writes (and linearizable reads that need the
//     loop) get ErrNoSpace at once, Ready reports it, and everything carries on
//     by itself once space is freed (see Node.stalled).
//   - Linearizable reads use Raft's ReadIndex: a read is answered from local state
//     only after this node has applied up to the commit index the leader confirmed
//     with a quorum after the read arrived. Concurrent reads share one ReadIndex.
//     With at most three voters, a follower's ReadIndex request is itself the
//     second member of that quorum: the leader answers it without a heartbeat
//     round, provided it has committed an entry of its own term (see
//     Node.readIndexAtOnce). The leader answers its own reads without a round
//     while it holds a lease: for one tick less than the election timeout
//     (nine tenths of it) after a round that a quorum confirmed was handed to
//     Raft, no voter that confirmed it votes for anyone else (CheckQuorum),
//     unless it restarts, and a node grants no vote for an election timeout
//     after it starts; a leadership transfer or a configuration change ends
//     the lease (see lease.go, and its assumption about clocks).
//   - With at most three voters a follower may take an entry as committed
//     before the leader does: the leader tells the followers (a durable
//     notice) how far its own log is durable, and an entry of the leader's
//     term that is durable both there and here is on a majority (see
//     durable.go). So a write forwarded by a follower is acknowledged one
//     round trip sooner. Because a write can then be acknowledged before the
//     leader has heard it is committed, the leader's read index is never below
//     the highest index it sent a notice for (Node.noticed).
//   - Every SnapshotEntries applied entries (whose bytes reach half the
//     state's) the state machine is cloned (O(1), a
//     copy-on-write B-tree) and written to a snapshot file by another goroutine
//     while writes go on; then the WAL is compacted behind the oldest snapshot
//     kept, so disk use stays bounded. Compact takes one at once, on demand.
//   - Restart = newest valid snapshot + replay of the WAL behind it; Raft then
//     re-delivers the committed entries after the snapshot for applying.
//   - Stop leaves nothing running: every goroutine of the node (the loop,
//     the appender's, snapshot writes and transfers, the notice to a removed
//     member, the publication of its addresses) is started by Node.goAsync
//     and ends soon after the loop exits, which cancels the node's context;
//     Stop waits for them all, so the node then calls neither the transport
//     nor its files again. A node removed from its group stops the same way.
//
// Entry payloads are an 8-byte request id (random start, so ids from before a
// restart do not collide with new ones) followed by a kv.Command.
//
// Files, one concern each: node.go the Node, Open (recovery from the data
// directory) and Stop; loop.go the loop and its handling of a Ready;
// propose.go proposals and the requests waiting on them; apply.go applying
// committed entries; appender.go writing the log and the loop's side of it;
// diskfull.go the stall on a full disk; reads.go and lease.go reads;
// durable.go the leader's durable notices; commitdefer.go held commit-only
// appends; appliedmark.go the applied mark; snapshot.go taking snapshots;
// compaction.go compaction on demand (Compact) and the record of recent
// compactions; peers.go the transport side (messages, snapshots sent and
// received); membership.go member changes; status.go Status and Ready;
// metrics.go Metrics, the counters read for monitoring;
// guard.go the screening of messages from the network (no remote message
// reaches a Raft panic); clusterid.go the cluster id; invariants.go the
// invariant checks that a build with the tag invariants makes; testhooks.go
// the deliberately broken behaviours of a build with the tag testhooks.
package raftnode
