package kv

import (
	"math"
)

// The client-session table (the Raft thesis, §6.3): the outcome of each
// command that carried a RequestID, so that a client's retry of a request,
// through any replica, after a leader change or a restart, is answered with
// the first outcome and applies nothing. It is state machine state: changed
// only by Apply, in log order, identical on every replica, carried by
// snapshots (SnapshotPairs) and restored with them.
//
// A record is kept until its command's Time + TTL has passed, as measured by
// the Times of later commands with a RequestID (the table's clock is the
// greatest Time applied): every replica expires it at the same log index,
// whatever its own clock says. A proposer's clock that runs ahead makes
// records expire early; one that runs behind changes nothing.
//
// Memory is bounded: at most MaxRecords records, and at most MaxRecordBytes
// in all (a record costs its ids, its key and its encoded Result, plus
// recordOverhead). Beyond either bound the oldest records are dropped first,
// deterministically; a Result larger than MaxRecordedResult is not recorded
// (its record says the request was applied, and when).

// The bounds of the client-session table.
const (
	MaxRecords        = 100_000
	MaxRecordBytes    = 32 << 20
	MaxRecordedResult = 1 << 20
	// recordOverhead approximates what a record costs beyond its bytes: the
	// record, its map entry and its slot in the log.
	recordOverhead = 128
)

// sessionKey identifies a record: a request, and the op it was for.
// Different ops with the same ids are different requests, as in the
// prototype.
type sessionKey struct {
	client, request string
	op              Op
}

// record is one entry of the table. It is never modified once made: Views
// share it.
type record struct {
	key     sessionKey
	index   uint64 // the revision at which the request was applied (kept under its old name in the encoding)
	expires int64  // Unix nanoseconds: Time + TTL (saturated)
	opKey   []byte // the command's Key (OpPut, OpDelete)
	// result is the encoded Result of the first application; nil when it
	// was larger than MaxRecordedResult, whose size resultLen then is.
	result    []byte
	resultLen int
}

func (r *record) size() int {
	return len(r.key.client) + len(r.key.request) + len(r.opKey) + len(r.result) + recordOverhead
}

// sessionTable is the Store's table. Guarded by Store.mu.
type sessionTable struct {
	byKey map[sessionKey]*record
	// log holds the records in the order they were made, oldest first; an
	// expired or replaced record stays until it reaches the front. Views
	// share its backing array: it is only appended to and resliced, never
	// written in place.
	log []*record
	// bytes is the sum of the sizes of log's records.
	bytes int
	// clock is the greatest Time of a command with a RequestID applied.
	clock int64
	// dropped counts the records dropped since this Store was made (expired
	// or over a bound); it is not replicated state.
	dropped uint64
}

// live reports whether r is the record of its key and has not expired.
func (t *sessionTable) live(r *record) bool {
	return t.byKey[r.key] == r && r.expires > t.clock
}

// dropFront drops the oldest record.
func (t *sessionTable) dropFront() {
	r := t.log[0]
	t.log = t.log[1:]
	t.bytes -= r.size()
	if t.byKey[r.key] == r {
		delete(t.byKey, r.key)
	}
	t.dropped++
}

// trim drops the oldest records while they have expired or a bound is
// exceeded.
func (t *sessionTable) trim() {
	for len(t.log) > 0 && (t.log[0].expires <= t.clock || len(t.log) > MaxRecords || t.bytes > MaxRecordBytes) {
		t.dropFront()
	}
}

func (t *sessionTable) add(r *record) {
	if t.byKey == nil {
		t.byKey = make(map[sessionKey]*record)
	}
	t.byKey[r.key] = r
	t.log = append(t.log, r)
	t.bytes += r.size()
	t.trim()
}

func keyOf(id RequestID, op Op) sessionKey {
	return sessionKey{client: string(id.Client), request: string(id.Request), op: op}
}

// applyOnce applies cmd, which carries a Request, at revision rev (the log
// entry at index), unless its
// Request was applied before and its record is live: then it answers the
// recorded Result (Replayed) and changes nothing but the table's clock and
// its expired records. s.mu must be held for writing.
func (s *Store) applyOnce(index uint64, rev int64, cmd Command) Result {
	t := &s.sessions
	t.clock = max(t.clock, cmd.Time)
	t.trim()
	s.view = nil
	key := keyOf(cmd.Request, cmd.Op)
	if r, ok := t.byKey[key]; ok && t.live(r) {
		return r.replay()
	}
	res := s.apply(rev, cmd)
	r := &record{key: key, index: uint64(rev), expires: addSat(cmd.Time, cmd.TTL)}
	if cmd.Op != OpTxn {
		r.opKey = append([]byte(nil), cmd.Key...)
	}
	if n := res.size(); n <= MaxRecordedResult {
		r.result = res.AppendMarshal(make([]byte, 0, n))
	}
	r.resultLen = res.size()
	t.add(r)
	return res
}

// replay returns the Result r records.
func (r *record) replay() Result {
	if r.result == nil {
		return Result{Status: StatusAnswerNotKept, Revision: int64(r.index), Replayed: true}
	}
	res, err := UnmarshalResult(r.result)
	if err != nil {
		// Only Apply and decodeState make records, both from valid
		// encodings.
		panic("kv: a recorded result does not decode: " + err.Error())
	}
	res.Replayed = true
	return res
}

// addSat returns a+b, saturated at the int64 bounds.
func addSat(a, b int64) int64 {
	c := a + b
	switch {
	case b > 0 && c < a:
		return math.MaxInt64
	case b < 0 && c > a:
		return math.MinInt64
	}
	return c
}

// Record is what the client-session table holds of a request.
type Record struct {
	// Key is the key the request wrote (OpPut, OpDelete).
	Key []byte
	// Result is the request's outcome when it was first applied (Status
	// StatusAnswerNotKept if it was too large to record; see AnswerSize).
	Result Result
	// Revision is the revision at which it was applied.
	Revision uint64
	// Expires is when the record expires (Unix nanoseconds, measured by the
	// Times of the commands applied; see Command.Time).
	Expires int64
	// AnswerSize is the size of the encoded Result.
	AnswerSize int
}

// Record returns the live record of the request id for op, if the table
// holds one. Its slices are read-only.
func (s *Store) Record(id RequestID, op Op) (Record, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := &s.sessions
	r, ok := t.byKey[keyOf(id, op)]
	if !ok || !t.live(r) {
		return Record{}, false
	}
	return Record{Key: r.opKey, Result: r.replay(), Revision: r.index, Expires: r.expires, AnswerSize: r.resultLen}, true
}

// SessionStats describes the client-session table.
type SessionStats struct {
	// Records is the number of live records, Requests the number of
	// distinct (client, request) ids among them, Clients of distinct
	// clients.
	Records, Requests, Clients int
	// Bytes is what the table's records cost (see MaxRecordBytes), expired
	// ones not yet dropped included.
	Bytes int
	// Dropped counts the records dropped, expired or over a bound, since
	// this Store was made.
	Dropped uint64
}

// SessionStats returns the table's counts. It walks the whole table.
func (s *Store) SessionStats() SessionStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := &s.sessions
	st := SessionStats{Bytes: t.bytes, Dropped: t.dropped}
	type ids struct{ client, request string }
	requests := map[ids]bool{}
	clients := map[string]bool{}
	for _, r := range t.log {
		if !t.live(r) {
			continue
		}
		st.Records++
		requests[ids{r.key.client, r.key.request}] = true
		clients[r.key.client] = true
	}
	st.Requests, st.Clients = len(requests), len(clients)
	return st
}
