package kv

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrInvalidTxn is wrapped by the errors of Txn.Validate.
var ErrInvalidTxn = errors.New("invalid transaction")

// Txn is an atomic transaction in the style of etcd's: if every Compare holds
// the Success ops run, otherwise the Failure ops do. A Txn is the payload of
// one Command (OpTxn), so it is one log entry: replicas apply all of it at one
// log index or none of it, and no reader sees a state between two of its ops.
//
// The ops of the branch that runs are applied in order, all at revision
// index (the log index of the entry): a put counts as any put (Version+1,
// Revision = index), a delete of a missing key deletes nothing, and a get sees
// the writes of the ops before it in the branch. Validate rejects a branch
// that writes (puts or deletes) a key twice, as etcd does, so that the order
// matters only between gets and writes.
type Txn struct {
	Compares []Compare
	Success  []TxnOp
	Failure  []TxnOp
}

// CompareTarget is the part of a key's state that a Compare looks at.
type CompareTarget uint8

// The targets of a Compare. A missing key has version, revision and
// create revision 0, as in etcd.
const (
	// TargetValue compares the value byte-wise (bytes.Compare) with
	// Compare.Value, a byte string. As in etcd, a value compare on a missing
	// key is false whatever its op: the key has no value, which is not the
	// empty value. A key holding a value of another kind than a string
	// (KindJSON) differs from every string operand: == is false, != true,
	// and the orderings are false.
	TargetValue CompareTarget = 1
	// TargetVersion compares Version with Compare.Number.
	TargetVersion CompareTarget = 2
	// TargetRevision compares Revision (the log index of the key's last
	// change, etcd's mod revision) with Compare.Number.
	TargetRevision CompareTarget = 3
	// TargetCreateRevision compares CreateRevision with Compare.Number.
	TargetCreateRevision CompareTarget = 4
	// TargetExists compares whether the key exists with Compare.Exists; only
	// CompareEqual and CompareNotEqual apply.
	TargetExists CompareTarget = 5
)

func (t CompareTarget) String() string {
	switch t {
	case TargetValue:
		return "value"
	case TargetVersion:
		return "version"
	case TargetRevision:
		return "revision"
	case TargetCreateRevision:
		return "create_revision"
	case TargetExists:
		return "exists"
	}
	return fmt.Sprintf("target(%d)", uint8(t))
}

// CompareOp is the relation a Compare requires between the key's target and
// its operand (key's target on the left).
type CompareOp uint8

// The relations of a Compare.
const (
	CompareEqual        CompareOp = 1
	CompareNotEqual     CompareOp = 2
	CompareLess         CompareOp = 3
	CompareGreater      CompareOp = 4
	CompareLessEqual    CompareOp = 5
	CompareGreaterEqual CompareOp = 6
)

func (o CompareOp) String() string {
	switch o {
	case CompareEqual:
		return "=="
	case CompareNotEqual:
		return "!="
	case CompareLess:
		return "<"
	case CompareGreater:
		return ">"
	case CompareLessEqual:
		return "<="
	case CompareGreaterEqual:
		return ">="
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Compare is one condition of a Txn: "<Target of Key> <Op> <operand>", where
// the operand is the field named by Target.
type Compare struct {
	Key    []byte
	Target CompareTarget
	Op     CompareOp
	// Value is the operand of TargetValue (nil and empty are the same).
	Value []byte
	// Number is the operand of TargetVersion, TargetRevision and
	// TargetCreateRevision.
	Number int64
	// Exists is the operand of TargetExists.
	Exists bool
}

// TxnOpType is the kind of a TxnOp.
type TxnOpType uint8

// The operations of a Txn branch.
const (
	TxnPut    TxnOpType = 1
	TxnDelete TxnOpType = 2
	TxnGet    TxnOpType = 3
)

func (t TxnOpType) String() string {
	switch t {
	case TxnPut:
		return "put"
	case TxnDelete:
		return "delete"
	case TxnGet:
		return "get"
	}
	return fmt.Sprintf("txnop(%d)", uint8(t))
}

// TxnOp is one operation of a Txn branch.
type TxnOp struct {
	Type  TxnOpType
	Key   []byte
	Value []byte    // TxnPut only
	Kind  ValueKind // of Value; TxnPut only
}

// TxnResult is the outcome of a Txn.
type TxnResult struct {
	// Succeeded reports whether all compares held, so that the Success ops
	// ran; otherwise the Failure ops did.
	Succeeded bool
	// Responses has one entry per op of the branch that ran, in order.
	Responses []TxnResponse
}

// TxnResponse is the outcome of one TxnOp. A put has nothing to report
// beyond the revision of the whole transaction (Result.Revision).
type TxnResponse struct {
	Type TxnOpType
	// Deleted is, for a TxnDelete, the number of keys deleted: 1, or 0 if the
	// key did not exist.
	Deleted int64
	// Found reports, for a TxnGet, whether the key existed; KV is then its
	// state (read-only, see Store), and the zero KeyValue otherwise.
	Found bool
	KV    KeyValue
}

// Validate reports the first reason to refuse t before proposing it: a
// compare with an unknown target or op, a TargetExists compare with an op
// other than == and !=, an op of unknown type, or a branch that writes (puts
// or deletes) a key more than once. The error wraps ErrInvalidTxn and names
// the offending entry as compare[i], success[i] or failure[i]. A nil Txn is
// the empty transaction and valid.
//
// Store.Apply needs only the known types (UnmarshalCommand guarantees them):
// it applies a branch that writes a key twice in order.
func (t *Txn) Validate() error {
	if err := t.checkTypes(); err != nil {
		return err
	}
	if t == nil {
		return nil
	}
	if err := checkDuplicates("success", t.Success); err != nil {
		return err
	}
	return checkDuplicates("failure", t.Failure)
}

// Validate reports why c should not be proposed: an Op this version does not
// know (ErrUnknownOp), or an OpTxn whose Txn fails Txn.Validate. A proposer
// should call it, since a command that UnmarshalCommand rejects stops every
// replica that applies its log entry.
func (c Command) Validate() error {
	switch c.Op {
	case OpPut, OpDelete:
		if c.Kind > KindJSON || (c.Kind != KindString && c.Op != OpPut) {
			return fmt.Errorf("%w: value kind %v on a %v", ErrUnknownOp, c.Kind, c.Op)
		}
		if err := c.checkDeadline(); err != nil {
			return err
		}
		return c.checkRequest()
	case OpTxn:
		if err := c.checkDeadline(); err != nil {
			return err
		}
		if err := c.checkRequest(); err != nil {
			return err
		}
		return c.Txn.Validate()
	case OpExpire:
		if err := c.checkDeadline(); err != nil {
			return err
		}
		if len(c.Key) != 0 || len(c.Value) != 0 || c.Kind != KindString || c.Cond != (Cond{}) || c.Txn != nil || !c.Request.IsZero() || c.Time != 0 || c.TTL != 0 {
			return fmt.Errorf("%w: an expire carries only its time", ErrUnknownOp)
		}
		return nil
	case OpAuth:
		return c.checkAuth()
	case OpAllocate:
		if len(c.Key) != 0 || c.Shard != 0 || len(c.Value) != 0 || c.Cond != (Cond{}) || c.Txn != nil || !c.Request.IsZero() ||
			c.Time != 0 || c.TTL != 0 || c.Deadline != 0 || c.Now != 0 || c.Auth != nil {
			return fmt.Errorf("%w: an allocate carries nothing", ErrUnknownOp)
		}
		return nil
	case OpMark:
		if c.Mark == 0 || len(c.Key) != 0 || c.Shard != 0 || len(c.Value) != 0 || c.Cond != (Cond{}) || c.Txn != nil || !c.Request.IsZero() ||
			c.Time != 0 || c.TTL != 0 || c.Deadline != 0 || c.Now != 0 || c.Auth != nil {
			return fmt.Errorf("%w: a mark carries only its mark, > 0", ErrUnknownOp)
		}
		return nil
	case OpCompact, OpAdvance:
		if c.Revision <= 0 || c.Mark != 0 || len(c.Key) != 0 || c.Shard != 0 || len(c.Value) != 0 || c.Cond != (Cond{}) || c.Txn != nil || !c.Request.IsZero() ||
			c.Time != 0 || c.TTL != 0 || c.Deadline != 0 || c.Now != 0 || c.Auth != nil {
			return fmt.Errorf("%w: a %v carries only its revision, > 0", ErrUnknownOp, c.Op)
		}
		return nil
	case OpLock, OpCommit, OpResolve, OpRecover, OpForget:
		return c.checkIntent()
	case OpSplit:
		if len(c.Key) == 0 || c.Shard == 0 || len(c.Value) != 0 || c.Cond != (Cond{}) || c.Txn != nil || !c.Request.IsZero() ||
			c.Time != 0 || c.TTL != 0 || c.Deadline != 0 || c.Now != 0 || c.Auth != nil {
			return fmt.Errorf("%w: a split carries only its key and its new shard", ErrUnknownOp)
		}
		return nil
	}
	return fmt.Errorf("%w: %v", ErrUnknownOp, c.Op)
}

// ErrBadRequestID is wrapped by the errors of a Command whose Request, Time
// or TTL are not as Command requires.
var ErrBadRequestID = errors.New("invalid request id")

// checkRequest reports a Request without a request id, or one without a
// positive TTL; Time and TTL must be zero without a Request.
func (c Command) checkRequest() error {
	switch {
	case c.Request.IsZero() && (c.Time != 0 || c.TTL != 0):
		return fmt.Errorf("%w: a time and TTL without a request id", ErrBadRequestID)
	case c.Request.IsZero():
		return nil
	case len(c.Request.Request) == 0:
		return fmt.Errorf("%w: a client id without a request id", ErrBadRequestID)
	case c.TTL <= 0:
		return fmt.Errorf("%w: TTL %d is not positive", ErrBadRequestID, c.TTL)
	}
	return nil
}

// checkTypes reports a compare target or op, or an op type, that this
// version does not know.
func (t *Txn) checkTypes() error {
	if t == nil {
		return nil
	}
	for i, c := range t.Compares {
		if !validCompare(c.Target, c.Op) {
			return fmt.Errorf("%w: compare[%d]: op %v on target %v", ErrInvalidTxn, i, c.Op, c.Target)
		}
	}
	for _, b := range []struct {
		name string
		ops  []TxnOp
	}{{"success", t.Success}, {"failure", t.Failure}} {
		for i, op := range b.ops {
			if op.Type < TxnPut || op.Type > TxnGet {
				return fmt.Errorf("%w: %s[%d]: unknown operation %v", ErrInvalidTxn, b.name, i, op.Type)
			}
			if op.Kind > KindJSON || (op.Kind != KindString && op.Type != TxnPut) {
				return fmt.Errorf("%w: %s[%d]: value kind %v on a %v", ErrInvalidTxn, b.name, i, op.Kind, op.Type)
			}
		}
	}
	return nil
}

// validCompare reports whether op on target is a compare this version knows.
func validCompare(target CompareTarget, op CompareOp) bool {
	switch {
	case target < TargetValue || target > TargetExists:
		return false
	case target == TargetExists:
		return op == CompareEqual || op == CompareNotEqual
	}
	return op >= CompareEqual && op <= CompareGreaterEqual
}

func checkDuplicates(branch string, ops []TxnOp) error {
	var written map[string]int
	for i, op := range ops {
		if op.Type == TxnGet {
			continue
		}
		if j, dup := written[string(op.Key)]; dup {
			return fmt.Errorf("%w: %s[%d]: key %q is already written by %s[%d]; a branch may write each key once",
				ErrInvalidTxn, branch, i, op.Key, branch, j)
		}
		if written == nil {
			written = make(map[string]int, len(ops))
		}
		written[string(op.Key)] = i
	}
	return nil
}

// holds reports whether c holds for cur, the key's state (zero if absent).
func (c *Compare) holds(cur KeyValue, exists bool) bool {
	var cmp int
	switch c.Target {
	case TargetValue:
		if !exists {
			return false
		}
		if cur.Kind != KindString {
			return c.Op == CompareNotEqual
		}
		cmp = bytes.Compare(cur.Value, c.Value)
	case TargetVersion:
		cmp = compareInt(cur.Version, c.Number)
	case TargetRevision:
		cmp = compareInt(cur.Revision, c.Number)
	case TargetCreateRevision:
		cmp = compareInt(cur.CreateRevision, c.Number)
	case TargetExists:
		if exists != c.Exists {
			cmp = 1
		}
	}
	switch c.Op {
	case CompareEqual:
		return cmp == 0
	case CompareNotEqual:
		return cmp != 0
	case CompareLess:
		return cmp < 0
	case CompareGreater:
		return cmp > 0
	case CompareLessEqual:
		return cmp <= 0
	case CompareGreaterEqual:
		return cmp >= 0
	}
	return false
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// applyTxn applies t as the log entry at revision rev. s.mu must be held for
// writing; t has passed checkTypes.
func (s *Store) applyTxn(rev int64, t *Txn) Result {
	res := &TxnResult{Succeeded: true}
	if t == nil {
		return Result{Status: StatusOK, Revision: rev, Txn: res}
	}
	for i := range t.Compares {
		c := &t.Compares[i]
		it, exists := s.tree.GetHint(keyItem(c.Key), &s.hint)
		if !c.holds(it.kv(), exists) {
			res.Succeeded = false
			break
		}
	}
	ops := t.Success
	if !res.Succeeded {
		ops = t.Failure
	}
	if len(ops) > 0 {
		res.Responses = make([]TxnResponse, len(ops))
	}
	changed := false
	for i, op := range ops {
		probe := keyItem(op.Key)
		it, exists := s.tree.GetHint(probe, &s.hint)
		r := &res.Responses[i]
		r.Type = op.Type
		switch op.Type {
		case TxnPut:
			s.put(probe, it, exists, op.Value, op.Kind, rev, 0)
			changed = true
		case TxnDelete:
			if exists {
				s.tree.DeleteHint(it, &s.hint)
				s.untrack(it)
				s.retire(it, rev)
				r.Deleted = 1
				changed = true
			}
		case TxnGet:
			r.Found = exists
			r.KV = it.kv()
		}
	}
	if changed {
		s.view = nil
	}
	return Result{Status: StatusOK, Revision: rev, Txn: res}
}

// Evaluate runs t as applyTxn would at revision rev on the states that read
// gives of its keys (found: the key exists), without a store: it returns
// the outcome and the writes of the branch that ran (its puts and deletes,
// in order, a delete only of a key that exists). A transaction over
// several ranges is evaluated so by its coordinator, on the states its
// locks returned.
func (t *Txn) Evaluate(rev int64, read func(key []byte) (KeyValue, bool)) (*TxnResult, []TxnOp) {
	res := &TxnResult{Succeeded: true}
	if t == nil {
		return res, nil
	}
	type state struct {
		kv     KeyValue
		exists bool
	}
	written := map[string]state{}
	get := func(key []byte) (KeyValue, bool) {
		if st, ok := written[string(key)]; ok {
			return st.kv, st.exists
		}
		return read(key)
	}
	for i := range t.Compares {
		c := &t.Compares[i]
		cur, exists := read(c.Key)
		if !c.holds(cur, exists) {
			res.Succeeded = false
			break
		}
	}
	ops := t.Success
	if !res.Succeeded {
		ops = t.Failure
	}
	if len(ops) > 0 {
		res.Responses = make([]TxnResponse, len(ops))
	}
	var writes []TxnOp
	for i, op := range ops {
		cur, exists := get(op.Key)
		r := &res.Responses[i]
		r.Type = op.Type
		switch op.Type {
		case TxnPut:
			next := KeyValue{Key: op.Key, Value: op.Value, Kind: op.Kind, Version: 1, Revision: rev, CreateRevision: rev}
			if exists {
				next.Version, next.CreateRevision = cur.Version+1, cur.CreateRevision
			}
			written[string(op.Key)] = state{next, true}
			writes = append(writes, op)
		case TxnDelete:
			if exists {
				written[string(op.Key)] = state{}
				r.Deleted = 1
				writes = append(writes, op)
			}
		case TxnGet:
			r.Found, r.KV = exists, cur
		}
	}
	return res, writes
}
