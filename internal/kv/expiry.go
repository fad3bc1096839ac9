package kv

import (
	"bytes"
	"fmt"

	"github.com/tidwall/btree"
)

// Expiring keys. An OpPut may carry a Deadline (Unix nanoseconds, fixed by
// the proposer from its clock and the requested TTL), which the store keeps
// with the pair, in snapshots too. The store never reads a clock: a key
// leaves the state only when an OpExpire is applied whose Now is at or past
// its deadline, so every replica deletes the same keys at the same log
// index, and a restart (which replays the log or loads a snapshot) keeps
// each deadline as it was. A later put without a Deadline (a PUT, a
// conditional PUT or a txn put) clears the key's deadline; a delete drops it
// with the key.
//
// Who proposes OpExpire, and when, is up to the caller (package raftnode's
// leader does, as soon as NextDeadline has passed by its clock). Until it is
// applied, a key past its deadline is still in the state: readers that must
// not show it compare KeyValue.Deadline with their own clock (Expired).

// MaxExpireKeys bounds how many keys one OpExpire deletes, so that one log
// entry's apply stays short; the rest go with the next one.
const MaxExpireKeys = 10_000

// deadlineEntry is an entry of the Store's expiry index: a key with a deadline.
type deadlineEntry struct {
	at  int64
	key []byte // the item's key (shared with its record; never modified)
}

func lessDeadline(a, b deadlineEntry) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return bytes.Compare(a.key, b.key) < 0
}

func newDeadlineIndex() *btree.BTreeG[deadlineEntry] {
	return btree.NewBTreeGOptions(lessDeadline, btree.Options{NoLocks: true})
}

// Expired reports whether kv has a deadline and now (Unix nanoseconds) is at
// or past it.
func (kv KeyValue) Expired(now int64) bool { return kv.Deadline != 0 && now >= kv.Deadline }

// track notes in the expiry index that it (just stored) replaced prev
// (the zero item if none). s.mu must be held for writing.
func (s *Store) track(prev item, it item) {
	s.untrack(prev)
	s.bytes += it.size()
	if d := it.deadline(); d != 0 {
		s.expiring.Set(deadlineEntry{at: d, key: it.key()})
	}
}

// untrack removes a deleted or replaced item from the expiry index.
func (s *Store) untrack(prev item) {
	if prev.rec == nil {
		return
	}
	s.bytes -= prev.size()
	if d := prev.deadline(); d != 0 {
		s.expiring.Delete(deadlineEntry{at: d, key: prev.key()})
	}
}

// applyExpire deletes, at revision rev, the keys whose deadline is at or
// before now, earliest first, at most MaxExpireKeys of them. Result.Version
// is how many it deleted. s.mu must be held for writing.
func (s *Store) applyExpire(rev int64, now int64) Result {
	var due []deadlineEntry
	s.expiring.Scan(func(e deadlineEntry) bool {
		if e.at > now || len(due) == MaxExpireKeys {
			return false
		}
		due = append(due, e)
		return true
	})
	deleted := 0
	for _, e := range due {
		if _, locked := s.lockOf(e.key); locked {
			continue // expires once its transaction lets go of it
		}
		s.expiring.Delete(e)
		if old, ok := s.tree.DeleteHint(keyItem(e.key), &s.hint); ok {
			s.bytes -= old.size()
			s.retire(old, rev)
		}
		deleted++
	}
	if deleted > 0 {
		s.view = nil
	}
	return Result{Status: StatusOK, Revision: rev, Version: int64(deleted)}
}

// NextDeadline returns the earliest deadline of a key in the state, and
// false if no key has one.
func (s *Store) NextDeadline() (int64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.expiring.Min()
	return e.at, ok
}

// checkDeadline reports a Deadline or Now that does not belong to c's Op.
func (c Command) checkDeadline() error {
	switch {
	case c.Deadline < 0:
		return fmt.Errorf("%w: negative deadline %d", ErrUnknownOp, c.Deadline)
	case c.Deadline != 0 && c.Op != OpPut:
		return fmt.Errorf("%w: a deadline on a %v", ErrUnknownOp, c.Op)
	case c.Op == OpExpire && c.Now <= 0:
		return fmt.Errorf("%w: expire with time %d", ErrUnknownOp, c.Now)
	case c.Op != OpExpire && c.Now != 0:
		return fmt.Errorf("%w: a time to expire at on a %v", ErrUnknownOp, c.Op)
	}
	return nil
}
