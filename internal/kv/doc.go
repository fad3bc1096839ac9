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
//   - Cheap, consistent snapshots. The state is a copy-on-write B-tree
//     (github.com/tidwall/btree): Store.Snapshot clones it in O(1) without stopping
//     writes, and the View never sees later writes. Package snap streams a View to
//     disk; Store.Restore loads one back, all or nothing.
//   - Concurrency. One goroutine (the Raft apply loop) calls Apply and Restore;
//     any number of goroutines may read (Get, Range, Len, Snapshot) meanwhile.
//     Long scans read a clone, so they never hold up Apply.
//   - Ownership. Apply copies what it keeps of a Command; the store never modifies
//     a key or value after storing it, so pairs handed to readers stay valid and
//     unchanged forever (and must be treated as read-only).
//   - A stable wire format. Command and Result have a compact binary encoding with
//     a leading version byte; the decoders reject every malformed input with an
//     error wrapping ErrMalformed and never panic (they are fuzzed).
package kv
