// Package tso is the timestamp oracle that keeps revisions cluster-wide once
// the key space is cut into ranges, in the manner of TiKV's PD: the leader
// of the meta range hands out revisions from memory, below a high-water mark
// it has persisted through the meta range's log, and every range's leader
// gets the revisions of its writes from it in batches (raftnode/stamp.go,
// cmd/distkv/revisions.go). It does no I/O of its own: persisting the mark
// and the leader lease are functions the host injects.
//
// Guarantees of the Oracle:
//
//   - Strictly increasing in real time. One Oracle hands out values from one
//     counter under a lock, so a Next that starts after another returned
//     gets larger values, and no value twice.
//   - Never below the persisted mark's protection. A value is handed out
//     only once a mark at or above it has been persisted (Persist returned
//     nil: the mark is committed in the meta range). Persists run ahead in
//     steps of Config.Window's worth of values at the measured rate, so a
//     Next almost always returns from memory; callers that find the
//     reservation used up wait for the persist under way and share the next
//     one (one persist for any number of them). A failed persist fails the
//     callers that waited on it and raises nothing: no value above the last
//     persisted mark is ever handed out.
//   - Never repeated across leader changes and restarts. A new leader calls
//     Start with the largest mark the meta range holds, read after it has
//     applied an entry of its own term: Raft's leader completeness puts every
//     mark its predecessors persisted in its log by then, so the mark is at
//     or above every value they handed out, and it serves only above it. The
//     meta range's state machine must keep the largest mark it applies (a
//     late smaller one must not lower it). Values reserved but not handed out
//     are skipped: revisions grow, but not by one.
//   - One server at a time. A deposed leader that has not noticed yet must
//     not hand out values from memory after its successor started: its
//     values would be below the successor's. Next therefore serves only
//     while Config.Lease holds, a leader lease of the kind lease-based reads
//     use (CheckQuorum: the old leader's lease ends before a quorum of
//     followers, having heard nothing for an election timeout, can elect
//     another), and the host calls Stop when it loses leadership.
//
// Why a write stamped after another was acknowledged gets a larger revision:
// say write A was acknowledged at time t, and write B started after t. A's
// revision a was handed out before A was acknowledged, so before t. B's
// revision b is handed out after B started, so after t. If the same Oracle
// handed out both, b > a because it hands out values in increasing order in
// real time. If a later one handed out b, b is above the mark that later
// Oracle started from, which is at or above every value handed out before,
// a included. A range's leader keeps this by fetching a write's stamps only
// after the write reached it (writes arriving during a fetch wait for the
// next one; raftnode/stamp.go), so b is still handed out after t.
// Whichever ranges A and B touched, b > a; that is what lets the revision
// order writes across ranges as the single Raft log did.
package tso
