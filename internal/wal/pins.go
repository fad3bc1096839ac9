package wal

import "slices"

// Pinning returns the shards whose entries keep the oldest segment: those
// with a RecordEntry in it that no Compact for the shard has covered yet,
// ascending. It returns nil while there is only the active segment, which
// Compact never deletes. Safe for concurrent use.
//
// Many shards share one WAL, and a segment goes only once every shard's
// snapshot covers its entries: a shard that writes little, and so rarely
// takes a snapshot, keeps segments that the others no longer need. Its
// owner learns here that a snapshot (or a Compact behind the one it has)
// would free them.
func (w *WAL) Pinning() []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.segs) < 2 {
		return nil
	}
	var out []uint64
	for shard, max := range w.segs[0].maxEntry {
		if c, ok := w.covered[shard]; !ok || max > c {
			out = append(out, shard)
		}
	}
	slices.Sort(out)
	return out
}
