package kv

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Split applies the split of the store's key range at key, as the log entry
// at index: every key at or after key leaves this store for the Store
// returned, with its value, version, revisions and deadline, and its
// retained history; both stores keep the compaction revision. The returned
// store also gets a copy of the client-session table, so that a request
// retried after the split finds its record on whichever side its key now
// lies; the auth state stays here. Both stores have then applied index.
//
// Like Apply, Split is deterministic: every replica that applies the same
// entry ends with the same two stores.
func (s *Store) Split(index uint64, key []byte) (*Store, error) {
	if len(key) == 0 {
		return nil, errors.New("split: the key must not be empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.applied {
		return nil, fmt.Errorf("split at index %d after %d: %w", index, s.applied, ErrBadIndex)
	}
	right := NewStore()
	var moved []item
	s.tree.Ascend(keyItem(key), func(it item) bool {
		moved = append(moved, it)
		return true
	})
	for _, it := range moved {
		s.tree.Delete(it)
		s.untrack(it)
		right.tree.Set(it)
		right.track(item{}, it)
	}
	// The retired versions of the moved keys go with them, in the order
	// they were retired.
	var movedHist []histItem
	s.hist.Ascend(histItem{it: keyItem(key)}, func(h histItem) bool {
		movedHist = append(movedHist, h)
		return true
	})
	for _, h := range movedHist {
		s.hist.Delete(h)
		right.hist.Set(h)
	}
	if len(movedHist) > 0 {
		keep := s.histLog[:0]
		for _, h := range s.histLog {
			if bytes.Compare(h.it.key(), key) >= 0 {
				right.histLog = append(right.histLog, h)
				right.histBytes += h.it.size()
			} else {
				keep = append(keep, h)
			}
		}
		clear(s.histLog[len(keep):])
		s.histLog = keep
		s.histBytes -= right.histBytes
	}
	s.splitTxns(right, key)
	right.compacted = s.compacted
	right.sessions = sessionTable{
		byKey: maps.Clone(s.sessions.byKey),
		log:   slices.Clone(s.sessions.log),
		bytes: s.sessions.bytes,
		clock: s.sessions.clock,
	}
	right.applied, right.rev = index, s.rev
	s.applied = index
	s.view = nil
	return right, nil
}
