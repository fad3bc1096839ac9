// Package ranges is the pure logic of range sharding: which range holds a
// key, how ranges split, and how a node finds a range's replicas. It does
// no I/O and knows nothing of Raft; the range directory lives in the meta
// range, whose state machine uses this package, and every node routes with
// a Cache.
//
// Guarantees:
//
//   - A Descriptor names a span [Start, End) of the ordered byte key space
//     (End empty: no upper bound), its replicas and a Generation. Valid
//     refuses empty spans, replica lists with a node or Raft id twice, and
//     ranges with no voter.
//   - Generations order the descriptors of the same keys. A split gives both
//     halves the parent's generation plus one (the right half a new id,
//     never the left one's), and every replica change bumps it. So along
//     the history of any key, the descriptor of the range holding it has a
//     strictly rising generation, and of two descriptors whose spans overlap
//     the one with the higher generation is the newer, whatever their ids.
//     The Cache relies on this: Update evicts the overlapped entries of
//     lower generation (a split has happened since) and drops a descriptor
//     older than an entry it overlaps (a late reply), so a cache never
//     goes back in time and never holds two entries for one key. A merge,
//     if one is added, must give the merged range a generation above both
//     of its parts' to keep this.
//   - A Directory that passes Check tiles the key space: every key is in
//     exactly one range. Split and Replace keep that, refuse a split key
//     that would leave a half empty, and refuse a replica change that is
//     not newer (ErrStale) so a replayed or late change is a no-op.
//   - Encodings (Descriptor.Marshal, Directory.Marshal) are versioned by
//     their first byte and canonical (shortest varints, no trailing bytes),
//     so equal values encode to equal bytes and replicas that apply the same
//     meta log hold the same bytes. Decoders take any input without
//     panicking (fuzzed), say what is wrong and where (ErrCorrupt), and
//     check what they decode (ErrInvalid).
//   - Continue tokens name a key, the one after the last returned, never a
//     range: a scan resumed from one starts in whichever range holds that
//     key by then, so paging survives splits and moves. Their format is the
//     one GET /keys has always used.
//   - SplitKey reads a range's keys once in constant memory and picks a key
//     after the first, so both halves hold data. LoadTracker counts a
//     range's requests with one atomic add each, keeping the key of one in
//     16 (BenchmarkLoadTrackerRecord), and reads no clock: its ticker hands
//     it the time. It calls a range hot only if its rate over the whole
//     window was above the threshold and no interval between ticks fell
//     below half of it, and a long pause between ticks (a quiet range)
//     starts the measure over.
//     LoadSplitKey picks a key after the least sampled one, so both sides
//     carry load, and none if a side would carry under a fifth of it.
package ranges
