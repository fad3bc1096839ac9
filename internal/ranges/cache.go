package ranges

import (
	"bytes"
	"slices"
	"sort"
	"sync"
)

// Cache is one node's routing table: the descriptors it has learned, with a
// hint of each range's leader. It may be incomplete or stale; a miss or a
// wrong answer is corrected by reading the meta range (or a reply that
// carries a newer descriptor) and calling Update. Safe for concurrent use.
type Cache struct {
	mu sync.RWMutex
	// Invariant: sorted by Start, pairwise non-overlapping, at most one
	// entry per range id.
	entries []*cacheEntry
	byID    map[uint64]*cacheEntry // Invariant: the entries, by range id
}

type cacheEntry struct {
	desc   Descriptor
	leader string
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{byID: make(map[uint64]*cacheEntry)} }

// Lookup returns the cached range that holds key and its leader hint ("" if
// none is known); ok is false on a miss.
func (c *Cache) Lookup(key []byte) (desc Descriptor, leader string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i := c.search(key)
	if i < 0 || !c.entries[i].desc.Contains(key) {
		return Descriptor{}, "", false
	}
	e := c.entries[i]
	return e.desc, e.leader, true
}

// search returns the index of the last entry starting at or before key, -1
// if none. The caller holds mu.
func (c *Cache) search(key []byte) int {
	return sort.Search(len(c.entries), func(i int) bool { return bytes.Compare(c.entries[i].desc.Start, key) > 0 }) - 1
}

// Update records desc with a leader hint and reports whether it was taken.
// Entries it overlaps (or that carry its id) with a lower generation are
// evicted: the ranges they described have been split or changed since. If
// one of them has a higher generation, desc is the stale one and is dropped
// (false). At an equal generation the descriptor is the same one and only
// the leader hint changes; an empty leader keeps the known hint. desc is
// copied.
func (c *Cache) Update(desc Descriptor, leader string) bool {
	if desc.Valid() != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// The entries overlapping desc are contiguous in key order: from the one
	// holding desc.Start (or the first after it) up to the last starting
	// before desc.End.
	lo := c.search(desc.Start)
	if lo < 0 || !c.entries[lo].desc.overlaps(desc) {
		lo++
	}
	hi := lo
	for hi < len(c.entries) && c.entries[hi].desc.overlaps(desc) {
		hi++
	}
	sameID := -1
	if e, ok := c.byID[desc.ID]; ok {
		sameID = c.search(e.desc.Start)
	}
	if sameID >= lo && sameID < hi && hi-lo == 1 {
		if e := c.entries[sameID]; e.desc.Generation == desc.Generation &&
			bytes.Equal(e.desc.Start, desc.Start) && bytes.Equal(e.desc.End, desc.End) {
			if leader != "" {
				e.leader = leader
			}
			return true
		}
	}
	for _, e := range c.entries[lo:hi] {
		if e.desc.Generation > desc.Generation {
			return false
		}
	}
	if sameID >= 0 && (sameID < lo || sameID >= hi) {
		if c.entries[sameID].desc.Generation > desc.Generation {
			return false
		}
		delete(c.byID, desc.ID)
		c.entries = slices.Delete(c.entries, sameID, sameID+1)
		if sameID < lo {
			lo, hi = lo-1, hi-1
		}
	}
	for _, e := range c.entries[lo:hi] {
		delete(c.byID, e.desc.ID)
	}
	e := &cacheEntry{desc: desc.Clone(), leader: leader}
	c.entries = slices.Replace(c.entries, lo, hi, e)
	c.byID[desc.ID] = e
	return true
}

// SetLeader records a new leader hint for range id (a not-leader reply that
// names the leader) and reports whether the range is cached.
func (c *Cache) SetLeader(id uint64, leader string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if ok {
		e.leader = leader
	}
	return ok
}

// Invalidate forgets range id (a reply said the cached descriptor is wrong),
// so the next Lookup of its keys misses and the caller refreshes it.
func (c *Cache) Invalidate(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return
	}
	delete(c.byID, id)
	i := c.search(e.desc.Start)
	c.entries = slices.Delete(c.entries, i, i+1)
}

// Len returns the number of cached ranges.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
