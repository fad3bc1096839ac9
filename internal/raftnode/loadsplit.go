package raftnode

import (
	"bytes"
	"math"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/ranges"
)

// Splits for load: a range whose leader serves more than Config.RangeSplitQPS
// requests a second over Config.RangeLoadWindow, never less than half of
// that between two looks at it (a second apart by default; see
// ranges.LoadTracker.Hot), splits at the key that divides those requests
// most evenly, through the same path as a split by size (maybeSplit,
// startSplit), never while another split of the range is under way.
//
// What counts is what the leader serves: every entry of the range's log
// that it applies (a write proposed here or forwarded by a follower, a
// transaction; so counting costs a write nothing), and every read it
// answers, linearizable or not (one atomic add in Get and Range, and the
// key of one read in 16 kept). Reads a follower answers from its own state
// are that follower's load, not counted. The keys of the writes are taken
// from the log on the leader's tick: up to loadWriteSamples entries spread
// over those applied since the last look, each standing for its share.
//
// Only the leader measures: a node makes its tracker as it looks at the load
// as the leader, and drops it once it is not. A quiet (quiesced) range does
// not tick, so nobody looks and nothing wakes it; the first look after it
// wakes starts the measure over if it was quiet for longer than the window
// (ranges.LoadTracker's maxGap), since the reads it served meanwhile are of
// unknown times. A leader does not quiesce while its rate is above half
// the threshold (settled), so a range kept hot by stale reads alone, which
// do not wake a quiet range, is still watched.
//
// A range hot on one key (or whose split would leave more than four fifths
// of its load on one side) is not split: no key divides its load
// (ranges.LoadSplitKey). Neither is one whose split key would leave a side
// without data. The leader says so at debug level once per range and
// leadership.

// loadWriteSamples bounds the log entries whose keys a look at the load
// decodes.
const loadWriteSamples = 32

// noteRead counts a read served by this node if it leads the range (or led
// it until the loop's last look, at most splitCheckTicks ago).
func (n *Node) noteRead(key []byte) {
	if t := n.load.Load(); t != nil {
		t.Record(key)
	}
}

// trackLoad is the loop's look at the load, every splitCheckTicks ticks:
// it makes or drops the tracker as this node leads the range or not, counts
// the entries applied since the last look, and closes the tracker's
// interval. It returns the tracker, nil if this node is not the leader.
func (n *Node) trackLoad() *ranges.LoadTracker {
	if n.cfg.RangeSplitQPS <= 0 {
		return nil
	}
	t := n.load.Load()
	if n.leader.Load() != n.raftID {
		if t != nil {
			n.load.Store(nil)
		}
		return nil
	}
	b, applied := n.bounds.Load(), n.applied.Load()
	if t == nil {
		// A look may come late (the loop is busy, ticks are dropped): only
		// a gap of a whole window (a quiet range) starts the measure over.
		t = ranges.NewLoadTracker(n.cfg.RangeLoadWindow, n.cfg.RangeLoadWindow)
		n.load.Store(t)
		n.loadBounds, n.loadApplied, n.loadRefused = b, applied, false
	}
	if b != n.loadBounds {
		// The range split (or a snapshot replaced it): what was measured
		// is of another range.
		t.Reset()
		n.loadBounds, n.loadRefused = b, false
	}
	n.countApplied(t, applied)
	t.Tick(time.Now())
	return t
}

// countApplied counts the entries applied since the last look, up to
// applied, and samples the keys of some.
func (n *Node) countApplied(t *ranges.LoadTracker, applied uint64) {
	from := n.loadApplied
	n.loadApplied = applied
	if applied <= from {
		return
	}
	t.RecordN(int64(applied - from))
	first, err := n.storage.FirstIndex()
	if err != nil {
		return
	}
	lo := max(from+1, first)
	if lo > applied {
		return
	}
	span := applied - lo + 1
	k := min(span, loadWriteSamples)
	weight := float64(applied-from) / float64(k)
	for i := range k {
		idx := lo + i*span/k
		ents, err := n.storage.Entries(idx, idx+1, math.MaxUint64)
		if err != nil || len(ents) == 0 {
			continue
		}
		if key := entryKey(&ents[0]); key != nil {
			t.Sample(key, weight)
		}
	}
}

// entryKey returns the key a log entry writes (a transaction's first), nil
// for one that writes no key.
func entryKey(e *raftpb.Entry) []byte {
	if e.Type != raftpb.EntryNormal {
		return nil
	}
	_, _, enc, err := DecodePayload(e.Data)
	if err != nil {
		return nil
	}
	cmd, err := kv.UnmarshalCommand(enc)
	if err != nil {
		return nil
	}
	switch cmd.Op {
	case kv.OpPut, kv.OpDelete:
		return cmd.Key
	case kv.OpTxn:
		if t := cmd.Txn; t != nil {
			switch {
			case len(t.Compares) > 0:
				return t.Compares[0].Key
			case len(t.Success) > 0:
				return t.Success[0].Key
			case len(t.Failure) > 0:
				return t.Failure[0].Key
			}
		}
	}
	return nil
}

// loadSplitKey returns the key at which to split the range for load, if it
// is hot (t, nil if this node does not measure, says) and some key divides
// its load with data on both sides.
func (n *Node) loadSplitKey(t *ranges.LoadTracker) ([]byte, bool) {
	if t == nil || !t.Hot(float64(n.cfg.RangeSplitQPS)) {
		return nil, false
	}
	b := n.Bounds()
	key, ok := t.SplitKey(b.Contains)
	if ok && (!b.Contains(key) || bytes.Equal(key, b.Start) ||
		!n.holdsData(b.Start, key) || !n.holdsData(key, b.End)) {
		ok = false
	}
	if !ok && !n.loadRefused {
		n.loadRefused = true
		n.logger.Debug("range is hot but not split: its load is on one key (or a split would leave a side without data)",
			"range", b, "qps", int(t.Rate()), "threshold", n.cfg.RangeSplitQPS)
	}
	return key, ok
}

// holdsData reports whether the state holds a key in [start, end).
func (n *Node) holdsData(start, end []byte) bool {
	kvs, _ := n.kv.Range(start, end, 1)
	return len(kvs) > 0
}
