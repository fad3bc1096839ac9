package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tidwall/btree"

	"github.com/distkv/distkv/internal/auth"
)

// ErrUnknownOp is returned by Apply for a Command whose Op this state machine does
// not know. The caller must stop applying: the log holds a command from a newer
// version of the software.
var ErrUnknownOp = errors.New("unknown command op")

// ErrBadIndex is returned by Apply and Restore for a log index that does not come
// strictly after the last one applied: applying it would break the revisions.
var ErrBadIndex = errors.New("log index not increasing")

// lockedRangeMax is the largest limit for which Range walks the live tree under the
// read lock. Longer scans walk an O(1) clone instead, so a big scan never holds up
// the apply loop.
const lockedRangeMax = 1024

// btreeDegree sets the node size (up to 2*btreeDegree-1 items). Bigger nodes make
// searches shallower; smaller ones make the first write after a Snapshot cheaper,
// since it copies the nodes on its path. 32 (the library default) did as well as
// any on Get and Put with 1M keys; 8 and 64 were no better beyond the noise.
const btreeDegree = 32

// Store is the ordered in-memory state of one shard: a copy-on-write B-tree, so a
// Snapshot is an O(1) clone taken without stopping writes.
//
// Apply and Restore must be called by one goroutine at a time (the Raft apply
// loop). Get, Range, Len and Snapshot may be called from any number of goroutines
// concurrently with them.
//
// Ownership: the store copies what it keeps of a Command, so the caller may reuse
// its buffers once Apply returns. KeyValues handed out by Get, Range, Result.Current,
// the get responses of Result.Txn and a View share memory with the store and are
// never modified by it afterwards; callers must treat their Key and Value as
// read-only.
type Store struct {
	mu sync.RWMutex
	// tree holds the live state. Its items are never modified in place: an update
	// replaces the item, so item slices handed out stay valid forever.
	tree *btree.BTreeG[item] // guarded by mu
	// applied is the index of the last Apply or Restore.
	applied uint64 // guarded by mu
	// rev is the revision of the last write: the log index of each write
	// applied by Apply, the stamp of each by ApplyStamped (cluster-wide
	// revisions; package tso). Invariant: every item's Revision <= rev,
	// and rev only grows.
	rev int64 // guarded by mu
	// mark is the largest timestamp oracle high-water mark applied
	// (OpMark); only the meta range's store holds one.
	mark uint64 // guarded by mu
	// view is a copy-on-write clone of tree shared by the Snapshots taken since
	// the last change, so repeated Snapshots cost nothing; nil after a change.
	view *View // guarded by mu
	// hint speeds up Apply's lookups of nearby keys; used only under mu's write lock.
	hint btree.PathHint
	// sessions is the client-session table (see session.go).
	sessions sessionTable // guarded by mu
	// expiring indexes the keys that have a deadline, earliest first (see
	// expiry.go). Invariant: it holds exactly one entry per item of tree
	// with a deadline, with that deadline.
	expiring *btree.BTreeG[deadlineEntry] // guarded by mu
	// auth is the users, roles and token secret (see auth.go); never
	// modified, replaced by each OpAuth.
	auth *auth.State // guarded by mu
	// bytes is the size of the keys and values in tree (see Bytes).
	bytes int64 // guarded by mu
	// hist holds the versions that writes replaced or deleted, by key and
	// end (see history.go); histLog the same versions in the order they
	// were retired, which is their ends' order; histBytes the size of their
	// keys and values. Invariant: hist and histLog hold the same versions,
	// each with an end above compacted and at or below rev.
	hist      *btree.BTreeG[histItem] // guarded by mu
	histLog   []histItem              // guarded by mu
	histBytes int64                   // guarded by mu
	// compacted is the compaction revision: reads below it are refused.
	compacted int64 // guarded by mu
	// locks holds the keys that transactions over several ranges lock, by
	// key; txns the same locks by transaction; records the commit records
	// this range keeps as the primary's; txnClock the largest lock or
	// recover time applied (see intent.go). Invariant: locks and txns hold
	// the same locks.
	locks    *btree.BTreeG[lockItem] // guarded by mu
	txns     map[string]*txnLocks    // guarded by mu
	records  map[string]*txnRecord   // guarded by mu
	txnClock int64                   // guarded by mu
	// locked is whether locks holds any lock, readable without mu so that
	// reads of a store with none (nearly always) do not take it twice.
	locked atomic.Bool
	// recorded is whether records holds any record, likewise.
	recorded atomic.Bool
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{tree: newTree(), expiring: newDeadlineIndex(), hist: newHistory(), locks: newLocks(), records: map[string]*txnRecord{}}
}

// item is an entry of the B-tree: one pair packed into a single allocation,
// rec = key | value | version | revision | create revision | kind | deadline
// (the numbers 8 bytes each, little-endian; the kind 1 byte), with its key's
// length and its first 8 bytes, so
// that most comparisons of a search are settled without loading the record from
// memory. Packing keeps a slot of a B-tree node at 40 bytes instead of the 80 of
// a KeyValue, which matters because nodes are often half full. A record is
// never modified once in the tree: Views share it.
//
// A probe (keyItem) has rec = the key alone; the zero item stands for a missing
// key and yields a zero KeyValue.
// Invariant: pfx == prefix64(it.key()).
type item struct {
	pfx  uint64
	rec  []byte
	klen uint32
}

const recMetaSize = 33 // version, revision, create revision, kind, deadline

func keyItem(key []byte) item {
	return item{pfx: prefix64(key), rec: key, klen: uint32(len(key))}
}

// newItem packs a pair into a new record. Keys are far below 4 GiB: a whole
// log entry is (the WAL frame limit).
func newItem(key, value []byte, kind ValueKind, version, revision, createRevision, deadline int64) item {
	k, v := len(key), len(value)
	rec := make([]byte, k+v+recMetaSize)
	copy(rec, key)
	copy(rec[k:], value)
	meta := rec[k+v:]
	binary.LittleEndian.PutUint64(meta, uint64(version))
	binary.LittleEndian.PutUint64(meta[8:], uint64(revision))
	binary.LittleEndian.PutUint64(meta[16:], uint64(createRevision))
	meta[24] = byte(kind)
	binary.LittleEndian.PutUint64(meta[25:], uint64(deadline))
	return item{pfx: prefix64(key), rec: rec, klen: uint32(k)}
}

func (it item) key() []byte { return it.rec[:it.klen:it.klen] }

// kv unpacks a stored item; its Key and Value share the record (capped, so an
// append cannot run into the rest of it).
func (it item) kv() KeyValue {
	if it.rec == nil {
		return KeyValue{}
	}
	end := len(it.rec) - recMetaSize
	meta := it.rec[end:]
	return KeyValue{
		Key:            it.rec[:it.klen:it.klen],
		Value:          it.rec[it.klen:end:end],
		Kind:           ValueKind(meta[24]),
		Version:        int64(binary.LittleEndian.Uint64(meta)),
		Revision:       int64(binary.LittleEndian.Uint64(meta[8:])),
		CreateRevision: int64(binary.LittleEndian.Uint64(meta[16:])),
		Deadline:       int64(binary.LittleEndian.Uint64(meta[25:])),
	}
}

// deadline returns the item's deadline (0: none).
func (it item) deadline() int64 {
	if it.rec == nil {
		return 0
	}
	return int64(binary.LittleEndian.Uint64(it.rec[len(it.rec)-8:]))
}

// prefix64 returns the first 8 bytes of key, zero-padded, as a big-endian number.
// It orders like the keys whenever two prefixes differ.
func prefix64(key []byte) uint64 {
	if len(key) >= 8 {
		return binary.BigEndian.Uint64(key)
	}
	var b [8]byte
	copy(b[:], key)
	return binary.BigEndian.Uint64(b[:])
}

func lessItem(a, b item) bool {
	if a.pfx != b.pfx {
		return a.pfx < b.pfx
	}
	return bytes.Compare(a.key(), b.key()) < 0
}

func newTree() *btree.BTreeG[item] {
	return btree.NewBTreeGOptions(lessItem, btree.Options{Degree: btreeDegree, NoLocks: true})
}

// Apply applies cmd as the log entry at index, which becomes the revision of the
// write (ApplyStamped with no stamp). index must be greater than that of every
// earlier Apply or Restore.
//
// A failed condition gives Status Conflict with the key's current state in
// Result.Current, and changes nothing; the delete of a missing key gives Status
// NotFound. A non-nil error (ErrBadIndex, ErrUnknownOp) means the command could not
// be applied at all and the store is unchanged: the caller must stop.
//
// An OpTxn always gives Status OK, Revision index and its outcome in
// Result.Txn; see Txn for its semantics. The KeyValues of its get responses
// share memory with the store (see Store). A Txn with a compare target or op,
// or an op type, that this version does not know gives ErrUnknownOp.
//
// Apply copies cmd.Key and cmd.Value (and the keys and values of cmd.Txn) if it
// keeps them; the caller may reuse them.
func (s *Store) Apply(index uint64, cmd Command) (Result, error) {
	return s.ApplyStamped(index, 0, cmd)
}

// ApplyStamped is Apply for a command whose revision was handed out by the
// timestamp oracle (stamp > 0): its writes take stamp as their revision
// instead of index. A stamp not above the store's revision (Revision) gives
// StatusStaleStamp and applies nothing, so revisions never go back; only
// the index is consumed. A command without a stamp takes the larger of
// index and the store's revision + 1, so that a log that mixes both (a
// range written before its cluster stamped) still grows. OpAllocate and
// OpMark take no revision: an OpAllocate answers its index (an id unique
// in its log), an OpMark the store's revision.
func (s *Store) ApplyStamped(index, stamp uint64, cmd Command) (Result, error) {
	switch cmd.Op {
	case OpPut, OpDelete:
		if err := cmd.Validate(); err != nil {
			return Result{}, fmt.Errorf("apply index %d: %w", index, err)
		}
	case OpTxn:
		if err := cmd.Txn.checkTypes(); err != nil {
			return Result{}, fmt.Errorf("apply index %d: %w: %w", index, ErrUnknownOp, err)
		}
		if err := cmd.checkRequest(); err != nil {
			return Result{}, fmt.Errorf("apply index %d: %w", index, err)
		}
	case OpExpire, OpAuth, OpAllocate, OpMark, OpCompact, OpAdvance, OpLock, OpCommit, OpResolve, OpRecover, OpForget:
		if err := cmd.Validate(); err != nil {
			return Result{}, fmt.Errorf("apply index %d: %w", index, err)
		}
	default:
		return Result{}, fmt.Errorf("apply index %d: %w: %v", index, ErrUnknownOp, cmd.Op)
	}
	if index > math.MaxInt64 || stamp > math.MaxInt64 {
		return Result{}, fmt.Errorf("apply index %d stamp %d: %w: beyond int64", index, stamp, ErrBadIndex)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.applied {
		return Result{}, fmt.Errorf("apply index %d after %d: %w", index, s.applied, ErrBadIndex)
	}
	s.applied = index
	switch cmd.Op {
	case OpAllocate:
		return Result{Status: StatusOK, Revision: int64(index)}, nil
	case OpMark:
		if cmd.Mark > s.mark {
			s.mark = cmd.Mark
			s.view = nil
		}
		return Result{Status: StatusOK, Revision: s.rev}, nil
	case OpCompact:
		return s.applyCompact(cmd.Revision), nil
	case OpAdvance:
		if cmd.Revision > s.rev {
			s.rev = cmd.Revision
			s.view = nil
		}
		return Result{Status: StatusOK, Revision: s.rev}, nil
	case OpLock, OpCommit, OpResolve, OpRecover, OpForget:
		return s.applyIntent(cmd), nil
	}
	if l, ok := s.lockedKey(&cmd); ok {
		return Result{Status: StatusLocked, Revision: s.rev, Intent: l.met()}, nil
	}
	rev := max(int64(index), s.rev+1)
	if stamp != 0 {
		if int64(stamp) <= s.rev {
			return Result{Status: StatusStaleStamp, Revision: s.rev}, nil
		}
		rev = int64(stamp)
	}
	s.rev = rev
	s.view = nil
	if cmd.Request.IsZero() {
		return s.apply(rev, cmd), nil
	}
	return s.applyOnce(index, rev, cmd), nil
}

// apply applies cmd at revision rev; s.mu must be held for writing.
func (s *Store) apply(rev int64, cmd Command) Result {
	switch cmd.Op {
	case OpTxn:
		return s.applyTxn(rev, cmd.Txn)
	case OpExpire:
		return s.applyExpire(rev, cmd.Now)
	case OpAuth:
		return s.applyAuth(rev, cmd.Auth)
	case OpAllocate:
		return Result{Status: StatusOK, Revision: rev}
	}
	if cmd.Op == OpPut && cmd.Cond == (Cond{}) {
		version := s.putBlind(cmd.Key, cmd.Value, cmd.Kind, rev, cmd.Deadline)
		s.view = nil
		return Result{Status: StatusOK, Revision: rev, Version: version}
	}
	probe := keyItem(cmd.Key)
	it, exists := s.tree.GetHint(probe, &s.hint)
	cur := it.kv()
	if !condHolds(cmd.Cond, cur) {
		return Result{Status: StatusConflict, Current: cur}
	}
	res := Result{Status: StatusOK, Revision: rev}
	switch cmd.Op {
	case OpPut:
		s.put(probe, it, exists, cmd.Value, cmd.Kind, rev, cmd.Deadline)
		res.Version = cur.Version + 1
	case OpDelete:
		if !exists {
			return Result{Status: StatusNotFound}
		}
		s.tree.DeleteHint(it, &s.hint)
		s.untrack(it)
		s.retire(it, rev)
	}
	s.view = nil
	return res
}

// put stores value, of kind, under probe's key as a write at rev, with
// deadline (0: none); prev is the key's current item and exists whether it
// has one. s.mu must be held for writing; the caller resets s.view.
func (s *Store) put(probe item, prev item, exists bool, value []byte, kind ValueKind, rev, deadline int64) {
	var it item
	if exists {
		// The record is shared with Views: write a new one.
		cur := prev.kv()
		it = newItem(cur.Key, value, kind, cur.Version+1, rev, cur.CreateRevision, deadline)
	} else {
		prev = item{}
		it = newItem(probe.key(), value, kind, 1, rev, rev, deadline)
	}
	s.tree.SetHint(it, &s.hint)
	s.track(prev, it)
	s.retire(prev, rev)
}

// putBlind stores value under key as an unconditional write at rev in one
// pass over the tree and returns the key's new version: the record goes in as
// the key's first version, and if it replaced one, its version and create
// revision are then set from the one it replaced. The record is not yet
// visible to anyone else: readers and Views take s.mu, which the caller holds
// for writing (it also resets s.view).
func (s *Store) putBlind(key, value []byte, kind ValueKind, rev, deadline int64) int64 {
	it := newItem(key, value, kind, 1, rev, rev, deadline)
	prev, replaced := s.tree.SetHint(it, &s.hint)
	s.track(prev, it)
	if !replaced {
		return 1
	}
	s.retire(prev, rev)
	p := prev.kv()
	meta := it.rec[len(it.rec)-recMetaSize:]
	binary.LittleEndian.PutUint64(meta, uint64(p.Version+1))
	binary.LittleEndian.PutUint64(meta[16:], uint64(p.CreateRevision))
	return p.Version + 1
}

// condHolds reports whether c holds for cur, the key's state (zero if absent).
func condHolds(c Cond, cur KeyValue) bool {
	if c.CreateOnly && cur.Version != 0 {
		return false
	}
	if c.PrevVersion != nil && *c.PrevVersion != cur.Version {
		return false
	}
	if c.PrevRevision != nil && *c.PrevRevision != cur.Revision {
		return false
	}
	return true
}

// Get returns the key's state. The result is read-only (see Store).
func (s *Store) Get(key []byte) (KeyValue, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.tree.Get(keyItem(key))
	return it.kv(), ok
}

// Range returns, in key order, up to limit pairs with start <= key < end, and
// whether the range holds more pairs beyond those returned. A nil start begins at
// the first key; an empty end (nil or zero length) means no upper bound; limit <= 0
// means no limit. The pairs are read-only (see Store).
func (s *Store) Range(start, end []byte, limit int) ([]KeyValue, bool) {
	if limit <= 0 || limit > lockedRangeMax {
		return s.Snapshot().Range(start, end, limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return rangeTree(s.tree, start, end, limit)
}

// Bytes returns the size of the keys and values the store holds, in bytes.
func (s *Store) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}

// size is the size of the key and value of it (0 for the zero item).
func (it item) size() int64 {
	if it.rec == nil {
		return 0
	}
	return int64(len(it.rec) - recMetaSize)
}

// Len returns the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tree.Len()
}

// Revision returns the revision of the last write applied: no key's
// revision is above it, and the next write's will be.
func (s *Store) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Mark returns the largest timestamp oracle high-water mark applied (OpMark),
// 0 if none.
func (s *Store) Mark() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mark
}

// Applied returns the index of the last Apply or Restore (0 for a new Store).
// Log entries the caller does not pass to Apply do not move it.
func (s *Store) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// Snapshot returns an immutable view of the current state in O(1). Later writes to
// the Store are not visible in it. The first write after a Snapshot copies the
// B-tree nodes on its path, so a View costs memory in proportion to the writes
// made while it is alive, not to the size of the state.
func (s *Store) Snapshot() *View {
	s.mu.RLock()
	v := s.view
	s.mu.RUnlock()
	if v != nil {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.view == nil {
		log := s.sessions.log
		s.view = &View{tree: s.tree.Copy(), sessions: log[:len(log):len(log)], clock: s.sessions.clock, auth: s.auth, rev: s.rev, mark: s.mark,
			hist: s.hist.Copy(), compacted: s.compacted, txnClock: s.txnClock}
		for _, l := range s.txns {
			s.view.locks = append(s.view.locks, l)
		}
		slices.SortFunc(s.view.locks, func(a, b *txnLocks) int { return cmp.Compare(a.id, b.id) })
		for _, r := range s.records {
			s.view.records = append(s.view.records, r)
		}
		slices.SortFunc(s.view.records, func(a, b *txnRecord) int { return cmp.Compare(a.id, b.id) })
	}
	return s.view
}

// Restore replaces the whole state with the pairs of seq and sets the applied index
// to index. It is the counterpart of a View's All, and what a snapshot loader feeds:
// seq yields the pairs in strictly ascending key order, each with a nil error, and
// may end with one non-nil error to say the source is damaged or unreadable.
//
// Restore is all or nothing: if seq yields an error, or a pair is out of order,
// duplicated, or has metadata inconsistent with index (Version < 1, CreateRevision
// < 1, Revision < CreateRevision, Revision > index), Restore returns an error and
// the Store is left exactly as it was.
//
// Restore copies the pairs: seq may reuse its buffers. The store's state
// beyond its pairs (the client-session table) is emptied: a snapshot file's
// pairs are restored with RestoreSnapshot, which keeps it. So is the auth
// state (users, roles, token secret).
func (s *Store) Restore(index uint64, seq iter.Seq2[KeyValue, error]) error {
	pairs := func(yield func(restorePair, error) bool) {
		for kv, err := range seq {
			if !yield(restorePair{kv: kv}, err) || err != nil {
				return
			}
		}
	}
	return s.restore(index, pairs, &state{})
}

// restore is Restore, with the state beyond the pairs that seq holds: st is
// read only once seq is exhausted (RestoreSnapshot fills it from seq's first
// pair). seq may hold retired versions too: each key's, by end, before its
// latest version.
func (s *Store) restore(index uint64, seq iter.Seq2[restorePair, error], st *state) error {
	if index > math.MaxInt64 {
		return fmt.Errorf("restore at index %d: %w: beyond int64", index, ErrBadIndex)
	}
	t := newTree()
	hist := newHistory()
	var histLog []histItem
	var histBytes int64
	expiring := newDeadlineIndex()
	var prev []byte
	var prevEnd int64 // the end of the pair before, if it was a retired version
	var size int64
	n := 0
	for p, err := range seq {
		if err != nil {
			return fmt.Errorf("restore at index %d: %w", index, err)
		}
		kv := p.kv
		if n > 0 {
			c := bytes.Compare(prev, kv.Key)
			if c > 0 || (c == 0 && (prevEnd == 0 || (p.end != 0 && p.end <= prevEnd))) {
				return fmt.Errorf("restore at index %d: pair %d: key %q not after %q", index, n, kv.Key, prev)
			}
		}
		// A snapshot of a store that took stamps carries its revision
		// (read with the state pair, before this pair); one written before
		// stamps has the index as its revision.
		top := max(int64(index), st.rev)
		if kv.Version < 1 || kv.CreateRevision < 1 || kv.Revision < kv.CreateRevision || kv.Revision > top {
			return fmt.Errorf("restore at index %d: pair %d (key %q): bad metadata version=%d revision=%d create_revision=%d",
				index, n, kv.Key, kv.Version, kv.Revision, kv.CreateRevision)
		}
		if p.end != 0 && (p.end <= kv.Revision || p.end > top || p.end <= st.compacted) {
			return fmt.Errorf("restore at index %d: pair %d (key %q): a retired version of revision %d ending at %d (revision %d, compacted to %d): %w",
				index, n, kv.Key, kv.Revision, p.end, top, st.compacted, ErrMalformed)
		}
		if len(kv.Key) > math.MaxUint32 {
			return fmt.Errorf("restore at index %d: pair %d: key of %d bytes", index, n, len(kv.Key))
		}
		if kv.Kind > KindJSON {
			return fmt.Errorf("restore at index %d: pair %d (key %q): unknown value kind %d", index, n, kv.Key, kv.Kind)
		}
		if kv.Deadline < 0 {
			return fmt.Errorf("restore at index %d: pair %d (key %q): negative deadline %d", index, n, kv.Key, kv.Deadline)
		}
		it := newItem(kv.Key, kv.Value, kv.Kind, kv.Version, kv.Revision, kv.CreateRevision, kv.Deadline)
		prev, prevEnd = it.key(), p.end
		n++
		if p.end != 0 {
			h := histItem{it: it, end: p.end}
			hist.Load(h)
			histLog = append(histLog, h)
			histBytes += it.size()
			continue
		}
		t.Load(it)
		size += it.size()
		if kv.Deadline != 0 {
			expiring.Set(deadlineEntry{at: kv.Deadline, key: it.key()})
		}
	}
	slices.SortStableFunc(histLog, func(a, b histItem) int { return cmp.Compare(a.end, b.end) })
	rev := st.rev
	if !st.hasRev {
		rev = int64(index)
	}
	txns, err := buildTxns(st, rev)
	if err != nil {
		return fmt.Errorf("restore at index %d: %w", index, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tree = t
	s.expiring = expiring
	s.bytes = size
	s.hist, s.histLog, s.histBytes = hist, histLog, histBytes
	s.compacted = st.compacted
	s.view = nil
	s.applied = index
	s.rev, s.mark = st.rev, st.mark
	if !st.hasRev {
		s.rev = int64(index) // a snapshot written before revisions were kept: the index was the revision
	}
	s.hint = btree.PathHint{}
	s.sessions = st.table(s.sessions.dropped)
	s.auth = st.auth
	s.txnClock, s.locks, s.txns, s.records = txns.clock, txns.locks, txns.txns, txns.records
	s.locked.Store(s.locks.Len() > 0)
	s.recorded.Store(len(s.records) > 0)
	return nil
}

// View is an immutable snapshot of a Store's state. It is safe for concurrent use
// and stays valid whatever happens to the Store. Its pairs are read-only.
type View struct {
	tree *btree.BTreeG[item] // never modified
	// sessions and clock are the client-session table's records and clock
	// (see sessionTable); the records are never modified.
	sessions []*record
	clock    int64
	auth     *auth.State // never modified
	rev      int64       // the store's revision (Store.Revision)
	mark     uint64      // the oracle's high-water mark (Store.Mark)
	// hist holds the retired versions (Store.hist), compacted the
	// compaction revision.
	hist      *btree.BTreeG[histItem] // never modified
	compacted int64
	// locks and records are the transactions' locks and commit records, by
	// id; txnClock the store's (see Store). Never modified.
	locks    []*txnLocks
	records  []*txnRecord
	txnClock int64
}

// Len returns the number of keys in the view.
func (v *View) Len() int { return v.tree.Len() }

// All yields the view's pairs in ascending key order.
func (v *View) All() iter.Seq[KeyValue] {
	return func(yield func(KeyValue) bool) {
		v.tree.Scan(func(it item) bool { return yield(it.kv()) })
	}
}

// Get returns the key's state in the view.
func (v *View) Get(key []byte) (KeyValue, bool) {
	it, ok := v.tree.Get(keyItem(key))
	return it.kv(), ok
}

// Range is Store.Range on the view.
func (v *View) Range(start, end []byte, limit int) ([]KeyValue, bool) {
	return rangeTree(v.tree, start, end, limit)
}

func rangeTree(t *btree.BTreeG[item], start, end []byte, limit int) ([]KeyValue, bool) {
	if len(end) > 0 && bytes.Compare(start, end) >= 0 {
		return nil, false
	}
	var out []KeyValue
	if limit > 0 {
		out = make([]KeyValue, 0, min(limit, t.Len()))
	}
	more := false
	t.Ascend(keyItem(start), func(it item) bool {
		kv := it.kv()
		if len(end) > 0 && bytes.Compare(kv.Key, end) >= 0 {
			return false
		}
		if limit > 0 && len(out) == limit {
			more = true
			return false
		}
		out = append(out, kv)
		return true
	})
	return out, more
}

// PrefixEnd returns the smallest key greater than every key that starts with
// prefix, so that Range(prefix, PrefixEnd(prefix), n) scans the prefix. It returns
// nil (no upper bound) when there is no such key: prefix is empty or all 0xff.
// prefix is not modified.
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			end := make([]byte, i+1)
			copy(end, prefix)
			end[i]++
			return end
		}
	}
	return nil
}
