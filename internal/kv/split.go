package kv

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Split applies the split of the store's key range at key, as the log entry
// at index: every key at or after key leaves this store for the Store
// returned, with its value, version, revisions and deadline. The returned
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
