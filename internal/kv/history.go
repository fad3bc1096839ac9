package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/tidwall/btree"
)

// Multi-version state. The tree holds each key's latest version; the history
// holds the versions that later writes replaced or deleted, each with the
// revision at which that happened (its end), so that the state as it was at
// any revision R since the last compaction can be read: a key's version at R
// is its latest one if that was written at or before R, otherwise the
// retained version whose [revision, end) holds R, otherwise none (the key
// did not exist at R).
//
// Compaction (OpCompact, through the log, so that every replica drops the
// same versions at the same index) to revision C drops the versions whose
// end is at or before C: none of them is what any key was at C or later.
// Reads below C are refused with ErrCompacted. Versions are retired in
// revision order (a write's revision is above every earlier one's), so the
// history's log, in the order they were retired, is in end order too, and
// compaction takes from its front.
//
// A store that is never overwritten keeps no history: it costs nothing
// beyond the latest versions until keys are replaced or deleted.

// ErrCompacted is the outcome of a read at a revision below the store's
// compaction revision (Store.Compacted): the versions it would need may be
// gone.
var ErrCompacted = errors.New("revision compacted")

// histItem is a version of a key that a later write replaced or deleted:
// the key's state for the revisions [its revision, end). Its record is the
// one the tree held (records are never modified), so retiring a version
// copies nothing.
type histItem struct {
	it  item
	end int64
}

// lessHist orders versions by key, then by end.
func lessHist(a, b histItem) bool {
	if a.it.pfx != b.it.pfx {
		return a.it.pfx < b.it.pfx
	}
	if c := bytes.Compare(a.it.key(), b.it.key()); c != 0 {
		return c < 0
	}
	return a.end < b.end
}

func newHistory() *btree.BTreeG[histItem] {
	return btree.NewBTreeGOptions(lessHist, btree.Options{Degree: btreeDegree, NoLocks: true})
}

// histProbe is the position of key's versions ending after rev.
func histProbe(key []byte, rev int64) histItem {
	return histItem{it: keyItem(key), end: rev + 1}
}

// revision returns the revision of the last change of a stored item.
func (it item) revision() int64 {
	return int64(binary.LittleEndian.Uint64(it.rec[len(it.rec)-recMetaSize+8:]))
}

// retire keeps old, the version of a key that the write at rev replaces or
// deletes, in the history. A version written at rev itself (a transaction
// that writes a key twice) was never visible and is not kept. s.mu must be
// held for writing; the caller resets s.view.
func (s *Store) retire(old item, rev int64) {
	if old.rec == nil || old.revision() >= rev || rev <= s.compacted {
		return
	}
	h := histItem{it: old, end: rev}
	s.hist.Set(h)
	// Ends come in order, but for a transaction's write resolved below
	// the store's revision (intent.go).
	i := len(s.histLog)
	for i > 0 && s.histLog[i-1].end > rev {
		i--
	}
	s.histLog = slices.Insert(s.histLog, i, h)
	s.histBytes += old.size()
}

// applyCompact drops the versions that no read at rev or later needs and
// refuses reads below rev from then on. A revision at or below the current
// compaction changes nothing. One above the store's revision first raises
// the store's revision to it, as OpAdvance does: the state at rev is then
// final (no write stamped at or below it applies afterwards), as a
// compaction to rev requires. It answers the compaction revision. s.mu must
// be held for writing.
func (s *Store) applyCompact(rev int64) Result {
	if rev <= s.compacted {
		return Result{Status: StatusOK, Revision: s.compacted}
	}
	s.rev = max(s.rev, rev)
	s.compacted = rev
	n := 0
	for n < len(s.histLog) && s.histLog[n].end <= rev {
		h := s.histLog[n]
		s.hist.Delete(h)
		s.histBytes -= h.it.size()
		n++
	}
	s.histLog = slices.Delete(s.histLog, 0, n)
	s.view = nil
	return Result{Status: StatusOK, Revision: rev}
}

// Compacted returns the compaction revision: reads at revisions below it
// are refused (0: every revision since the store began is readable).
func (s *Store) Compacted() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compacted
}

// HistoryStats returns how many replaced or deleted versions the store
// retains and the size of their keys and values, in bytes.
func (s *Store) HistoryStats() (versions int, size int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.histLog), s.histBytes
}

// HistoryCut returns the lowest revision a compaction to which drops at
// least size bytes of retained versions (their keys and values), the oldest
// first; 0 if none is retained.
func (s *Store) HistoryCut(size int64) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var freed int64
	for i, h := range s.histLog {
		freed += h.it.size()
		if freed >= size || i == len(s.histLog)-1 {
			// Versions with the same end go together.
			return h.end
		}
	}
	return 0
}

// GetAt returns the key's state as it was at revision rev: ErrCompacted if
// rev is below the compaction revision. A revision above the store's is
// read as the store's (no write of this store came after it). The result is
// read-only (see Store).
func (s *Store) GetAt(key []byte, rev int64) (KeyValue, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := checkReadRev(rev, s.compacted); err != nil {
		return KeyValue{}, false, err
	}
	it, ok := getAt(s.tree, s.hist, key, rev)
	return it.kv(), ok, nil
}

// RangeAt is Range on the state as it was at revision rev (see GetAt).
func (s *Store) RangeAt(start, end []byte, rev int64, limit int) ([]KeyValue, bool, error) {
	return s.Snapshot().RangeAt(start, end, rev, limit)
}

// Versions returns the retained versions of the key's current life, oldest
// first, ending with its latest: those written since the put that created it
// (a delete ends a life, and the next put starts a new one at version 1).
// It returns nil if the key does not exist. The results are read-only.
func (s *Store) Versions(key []byte) []KeyValue {
	s.mu.RLock()
	defer s.mu.RUnlock()
	live, ok := s.tree.Get(keyItem(key))
	if !ok {
		return nil
	}
	cur := live.kv()
	var out []KeyValue
	s.hist.Ascend(histItem{it: keyItem(key)}, func(h histItem) bool {
		if !bytes.Equal(h.it.key(), key) {
			return false
		}
		if kv := h.it.kv(); kv.CreateRevision == cur.CreateRevision {
			out = append(out, kv)
		}
		return true
	})
	return append(out, cur)
}

// CompactedError is the error of a read at Revision, below the compaction
// revision Compacted of the range it read; it wraps ErrCompacted.
type CompactedError struct {
	Revision, Compacted int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("revision %d is compacted; the oldest readable is %d", e.Revision, e.Compacted)
}

// Unwrap makes errors.Is(err, ErrCompacted) hold.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// checkReadRev refuses a read at rev below compacted.
func checkReadRev(rev, compacted int64) error {
	switch {
	case rev < 1:
		return fmt.Errorf("revision %d: revisions start at 1", rev)
	case rev < compacted:
		return &CompactedError{Revision: rev, Compacted: compacted}
	}
	return nil
}

// getAt returns the version of key that was current at rev, from the latest
// versions in tree and the retired ones in hist.
func getAt(tree *btree.BTreeG[item], hist *btree.BTreeG[histItem], key []byte, rev int64) (item, bool) {
	if it, ok := tree.Get(keyItem(key)); ok && it.revision() <= rev {
		return it, true
	}
	return histAt(hist, key, rev)
}

// histAt returns the retired version of key whose [revision, end) holds rev.
func histAt(hist *btree.BTreeG[histItem], key []byte, rev int64) (item, bool) {
	var found item
	ok := false
	hist.Ascend(histProbe(key, rev), func(h histItem) bool {
		if bytes.Equal(h.it.key(), key) && h.it.revision() <= rev {
			found, ok = h.it, true
		}
		return false
	})
	return found, ok
}

// RangeAt is Store.RangeAt on the view.
func (v *View) RangeAt(start, end []byte, rev int64, limit int) ([]KeyValue, bool, error) {
	if err := checkReadRev(rev, v.compacted); err != nil {
		return nil, false, err
	}
	if rev >= v.rev {
		kvs, more := rangeTree(v.tree, start, end, limit)
		return kvs, more, nil
	}
	if len(end) > 0 && bytes.Compare(start, end) >= 0 {
		return nil, false, nil
	}
	var out []KeyValue
	more := false
	live, past := v.tree.Iter(), v.hist.Iter()
	defer live.Release()
	defer past.Release()
	lok, pok := live.Seek(keyItem(start)), past.Seek(histItem{it: keyItem(start)})
	for lok || pok {
		// The next key in order: the live tree's, or one that only the
		// history holds (deleted since).
		var key []byte
		switch {
		case !pok:
			key = live.Item().key()
		case !lok:
			key = past.Item().it.key()
		case lessItem(past.Item().it, live.Item()):
			key = past.Item().it.key()
		default:
			key = live.Item().key()
		}
		if len(end) > 0 && bytes.Compare(key, end) >= 0 {
			break
		}
		var found item
		ok := false
		if lok && bytes.Equal(live.Item().key(), key) {
			if it := live.Item(); it.revision() <= rev {
				found, ok = it, true
			}
			lok = live.Next()
		}
		if pok && bytes.Equal(past.Item().it.key(), key) {
			if !ok {
				found, ok = histAt(v.hist, key, rev)
			}
			// Past the key's other versions.
			pok = past.Seek(histItem{it: keyItem(key), end: maxRevision})
			for pok && bytes.Equal(past.Item().it.key(), key) {
				pok = past.Next()
			}
		}
		if !ok {
			continue
		}
		if limit > 0 && len(out) == limit {
			more = true
			break
		}
		out = append(out, found.kv())
	}
	return out, more, nil
}

// maxRevision is above every revision.
const maxRevision = int64(^uint64(0) >> 1)

// GetAt is Store.GetAt on the view.
func (v *View) GetAt(key []byte, rev int64) (KeyValue, bool, error) {
	if err := checkReadRev(rev, v.compacted); err != nil {
		return KeyValue{}, false, err
	}
	it, ok := getAt(v.tree, v.hist, key, rev)
	return it.kv(), ok, nil
}

// EventType says what an Event is.
type EventType uint8

// The kinds of events.
const (
	EventPut    EventType = 1
	EventDelete EventType = 2
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event is a change of one key: a put, with the version it wrote (KV), or a
// delete, with the key and the revision of the delete in KV.Key and
// KV.Revision (and nothing else).
type Event struct {
	Type EventType
	KV   KeyValue
}

// Changes returns the changes of the keys start <= key < end (end empty:
// unbounded) with revisions in (after, upto], ordered by revision, then
// key: each put with the version it wrote, each delete (including one by
// expiry). after must not be below the compaction revision (the changes at
// or below it may be gone): ErrCompacted otherwise, a *CompactedError. It
// walks every key of the span, so it costs in proportion to the span's
// keys and their retained versions. The results are read-only.
func (s *Store) Changes(start, end []byte, after, upto int64) ([]Event, error) {
	return s.Snapshot().Changes(start, end, after, upto)
}

// Changes is Store.Changes on the view.
func (v *View) Changes(start, end []byte, after, upto int64) ([]Event, error) {
	if after < v.compacted {
		return nil, &CompactedError{Revision: after, Compacted: v.compacted}
	}
	in := func(rev int64) bool { return rev > after && rev <= upto }
	inSpan := func(key []byte) bool { return len(end) == 0 || bytes.Compare(key, end) < 0 }
	var out []Event
	v.tree.Ascend(keyItem(start), func(it item) bool {
		if !inSpan(it.key()) {
			return false
		}
		if in(it.revision()) {
			out = append(out, Event{Type: EventPut, KV: it.kv()})
		}
		return true
	})
	// Retired versions: each was put at its revision, and ended by the
	// next version's put at its end, or else by a delete then.
	var prev histItem
	hasPrev := false
	endOf := func(h histItem, next item, hasNext bool) {
		if in(h.end) && (!hasNext || next.revision() != h.end) {
			out = append(out, Event{Type: EventDelete, KV: KeyValue{Key: h.it.key(), Revision: h.end}})
		}
	}
	flush := func() {
		if hasPrev {
			next, ok := v.tree.Get(keyItem(prev.it.key()))
			endOf(prev, next, ok)
		}
	}
	v.hist.Ascend(histItem{it: keyItem(start)}, func(h histItem) bool {
		if !inSpan(h.it.key()) {
			return false
		}
		if hasPrev {
			if bytes.Equal(prev.it.key(), h.it.key()) {
				endOf(prev, h.it, true)
			} else {
				flush()
			}
		}
		if in(h.it.revision()) {
			out = append(out, Event{Type: EventPut, KV: h.it.kv()})
		}
		prev, hasPrev = h, true
		return true
	})
	flush()
	slices.SortFunc(out, func(a, b Event) int {
		if c := cmp.Compare(a.KV.Revision, b.KV.Revision); c != 0 {
			return c
		}
		return bytes.Compare(a.KV.Key, b.KV.Key)
	})
	return out, nil
}

// TrimEvents cuts evs, the changes in (after, upto] in revision order, to
// at most maxEvents events and maxBytes of keys and values, but never
// inside one revision's changes (and always keeps the first revision's,
// whatever their size): it returns the events kept and the revision up to
// which they are complete, upto if nothing was cut.
func TrimEvents(evs []Event, maxEvents, maxBytes int, upto int64) ([]Event, int64) {
	size := 0
	for i, e := range evs {
		size += len(e.KV.Key) + len(e.KV.Value)
		if i < maxEvents && size <= maxBytes {
			continue
		}
		// Cut before the revision of evs[i], unless it is the first.
		rev := e.KV.Revision
		j := i
		for j > 0 && evs[j-1].KV.Revision == rev {
			j--
		}
		if j == 0 {
			for j < len(evs) && evs[j].KV.Revision == rev {
				j++
			}
			if j == len(evs) {
				return evs, upto
			}
			return evs[:j], rev
		}
		return evs[:j], evs[j-1].KV.Revision
	}
	return evs, upto
}
