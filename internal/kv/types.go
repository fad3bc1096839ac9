package kv

import (
	"errors"
	"fmt"

	"github.com/distkv/distkv/internal/auth"
)

// ErrConflict is the outcome of a conditional write whose condition did not hold:
// the write changed nothing and Result.Current holds the key's state.
var ErrConflict = errors.New("condition failed")

// ErrKeyNotFound is the outcome of a delete (or a read) of a key that does not exist.
var ErrKeyNotFound = errors.New("key not found")

// Op is the kind of a Command.
type Op uint8

// The commands the state machine applies.
const (
	OpPut    Op = 1
	OpDelete Op = 2
	// OpTxn is a transaction (Command.Txn): compares, then the ops of one of
	// two branches, all applied as one log entry. See Txn.
	OpTxn Op = 3
	// OpExpire deletes every key whose deadline is at or before
	// Command.Now (at most MaxExpireKeys of them, earliest first); see
	// expiry.go.
	OpExpire Op = 4
	// OpAuth changes the users, roles or token secret (Command.Auth); see
	// auth.go. It touches no key.
	OpAuth Op = 5
	// OpSplit splits the range at Command.Key: the keys from Key on become
	// the range Command.Shard. It is not applied by Apply but by Split, by
	// the Raft group that holds the range (package raftnode).
	OpSplit Op = 6
	// OpAllocate changes nothing: its Result.Revision, the index of its
	// log entry, is an id no other OpAllocate of the same log gets (the
	// first group's log hands out the ids of new ranges).
	OpAllocate Op = 7
	// OpMark records Command.Mark, the timestamp oracle's high-water mark
	// (package tso), if it is above the one the store holds (Store.Mark).
	// It touches no key and takes no revision. Only the meta range's log
	// holds marks.
	OpMark Op = 8
	// OpCompact drops the versions of keys that no read at Command.Revision
	// or later needs, and refuses reads below it from then on (see
	// history.go); if the store's revision is below it, it is first raised
	// to it, as by OpAdvance. It touches no key and takes no stamp; its
	// Result's Revision is the store's compaction revision after it.
	OpCompact Op = 9
	// OpAdvance raises the store's revision to Command.Revision if it is
	// below, so that no write stamped at or below it applies afterwards
	// (kv.StatusStaleStamp): a read at that revision, made once it has
	// applied, can never be changed by a write that was still in flight
	// (see history.go). It touches no key and takes no stamp; its Result's
	// Revision is the store's revision after it.
	OpAdvance Op = 10
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpTxn:
		return "txn"
	case OpExpire:
		return "expire"
	case OpAuth:
		return "auth"
	case OpSplit:
		return "split"
	case OpAllocate:
		return "allocate"
	case OpMark:
		return "mark"
	case OpCompact:
		return "compact"
	case OpAdvance:
		return "advance"
	case OpLock:
		return "lock"
	case OpCommit:
		return "commit"
	case OpResolve:
		return "resolve"
	case OpRecover:
		return "recover"
	case OpForget:
		return "forget"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Cond is the precondition of a write. All set fields must hold for the write to
// happen; if one does not, the write changes nothing and reports ErrConflict.
// The zero Cond always holds.
type Cond struct {
	// CreateOnly requires that the key does not exist.
	CreateOnly bool
	// PrevVersion, if not nil, requires the key's version to equal it. 0 means the
	// key must not exist (as in etcd).
	PrevVersion *int64
	// PrevRevision, if not nil, requires the key's revision (the revision of its
	// last change) to equal it. 0 means the key must not exist.
	PrevRevision *int64
}

// ValueKind says how a value's bytes are to be read: as a byte string, or as
// the JSON text of another JSON value. The store keeps it with the value, so
// nothing written as a string ever reads back as JSON, or the other way round.
type ValueKind uint8

// The kinds of values.
const (
	// KindString: the value is a byte string (shown as a JSON string).
	KindString ValueKind = 0
	// KindJSON: the value is the compact JSON text of a number, object,
	// array, boolean or null, as the client sent it (see package httpapi for
	// what is normalized). The state machine never parses it.
	KindJSON ValueKind = 1
)

func (k ValueKind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindJSON:
		return "json"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Command is one write, as proposed to Raft and stored in the log.
type Command struct {
	Op    Op
	Key   []byte    // OpPut and OpDelete only
	Value []byte    // OpPut only
	Kind  ValueKind // of Value; OpPut only
	Cond  Cond      // OpPut and OpDelete only
	// Txn is the transaction of an OpTxn (nil means the empty transaction);
	// other ops ignore it.
	Txn *Txn
	// Request, if not zero, identifies the client request that made the
	// command, for exactly-once execution: the first command with a Request
	// (and Op) is applied and its Result recorded; a later one with the same
	// Request and Op, applied before the record expires, changes nothing and
	// gets the recorded Result (see Store).
	Request RequestID
	// Time is when the command was proposed (Unix nanoseconds, the proposing
	// node's clock) and TTL how long its record is kept (nanoseconds, > 0).
	// Both come with a Request only. The store measures expiry by these
	// times alone, never by its own clock, so every replica expires the same
	// records at the same log index.
	Time, TTL int64
	// Deadline (OpPut only) is when the key expires: Unix nanoseconds, fixed
	// by the proposer; 0 means never, and clears a deadline the key had.
	Deadline int64
	// Now (OpExpire only, > 0) is the time, Unix nanoseconds by the
	// proposer's clock, at which the keys to delete are judged expired.
	Now int64
	// Auth (OpAuth only, not nil) is the change of the auth state.
	Auth *auth.Change
	// Shard (OpSplit only, > 0) is the Raft group of the range that the
	// keys from Key on become.
	Shard uint64
	// Mark (OpMark only, > 0) is the timestamp oracle's high-water mark.
	Mark uint64
	// Revision (OpCompact and OpAdvance only, > 0) is the revision to
	// compact to, or to advance the store's revision to; of OpCommit (> 0)
	// and OpResolve (0: abort), the transaction's commit revision.
	Revision int64
	// Intent (the ops of a transaction over several ranges only, not nil;
	// see intent.go) is the transaction's id, keys and record.
	Intent *Intent
}

// RequestID identifies a client's request: the client and its own id for the
// request. A Client may be empty (an Idempotency-Key names a request alone);
// Request may not, unless the RequestID is zero (no id).
type RequestID struct {
	Client  []byte
	Request []byte
}

// IsZero reports whether id names no request.
func (id RequestID) IsZero() bool { return len(id.Client) == 0 && len(id.Request) == 0 }

// KeyValue is a key with its value and metadata.
type KeyValue struct {
	Key   []byte
	Value []byte
	// Kind says how Value is to be read (a string unless set).
	Kind ValueKind
	// Version counts the writes to the key since it was (re)created: 1 after the
	// first put. A deleted key is gone; its next put starts again at 1.
	Version int64
	// Revision is the log index of the key's last change.
	Revision int64
	// CreateRevision is the log index of the put that created the key.
	CreateRevision int64
	// Deadline is when the key expires (Unix nanoseconds; 0: never). See
	// expiry.go: the key is deleted by an OpExpire, not by the clock.
	Deadline int64
}

// Status is the outcome of applying a Command.
type Status uint8

// The outcomes of a Command.
const (
	StatusOK       Status = 0
	StatusConflict Status = 1 // condition failed; see ErrConflict
	StatusNotFound Status = 2 // delete of a missing key; see ErrKeyNotFound
	// StatusAnswerNotKept: the command's Request was applied before, at
	// Result.Revision, but its Result was too large to record
	// (MaxRecordedResult), so it cannot be given again. Nothing was applied
	// now.
	StatusAnswerNotKept Status = 3
	// StatusStaleStamp: the command's revision stamp (ApplyStamped) was not
	// above the store's revision, so applying it would have made revisions
	// go back. Nothing was applied and no request recorded: the command
	// may be proposed again, with a new stamp.
	StatusStaleStamp Status = 4
)

// Result is what applying a Command produced.
type Result struct {
	Status Status
	// Revision is the revision of the write (its log index) when Status is OK.
	Revision int64
	// Version is, for an OpPut whose Status is OK, the key's version after
	// the write (1 when it created the key); 0 for other ops and outcomes.
	Version int64
	// Current is the key's state when Status is Conflict; Version 0 means the key
	// does not exist.
	Current KeyValue
	// Txn is the outcome of an OpTxn (whose Status is always OK and Revision
	// its log index), and of an OpLock (the locked keys' states); nil for
	// other ops.
	Txn *TxnResult
	// Intent is, with StatusLocked, the lock met; of an OpRecover that
	// found the transaction committed, its record (Keys).
	Intent *Intent
	// Replayed: the command's Request had been applied before; this is that
	// first application's Result, and nothing was applied now. It is not part
	// of the encoding.
	Replayed bool
}

// ErrAnswerNotKept is the outcome of a repeated request whose first answer
// was too large to record.
var ErrAnswerNotKept = errors.New("request already applied; its answer was not kept")

// ErrStaleStamp is the outcome of a command whose revision stamp was not
// above the store's revision; nothing was applied.
var ErrStaleStamp = errors.New("revision stamp not above the range's revision; not applied")

// Err returns nil, ErrConflict, ErrKeyNotFound or ErrAnswerNotKept according
// to r.Status.
func (r Result) Err() error {
	switch r.Status {
	case StatusOK:
		return nil
	case StatusConflict:
		return ErrConflict
	case StatusNotFound:
		return ErrKeyNotFound
	case StatusAnswerNotKept:
		return ErrAnswerNotKept
	case StatusStaleStamp:
		return ErrStaleStamp
	case StatusLocked:
		if r.Intent != nil {
			return &LockedError{Lock: *r.Intent}
		}
		return ErrLocked
	case StatusAborted:
		return ErrAborted
	}
	return fmt.Errorf("unknown result status %d", r.Status)
}
