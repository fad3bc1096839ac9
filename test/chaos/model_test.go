package chaos

import (
	"fmt"
	"hash/maphash"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The key set: numGroups groups of groupSize keys, "g0/a" .. "g2/c". A
// transaction compares and writes keys of one group and a scan reads one
// group's prefix, so the model is partitioned by group and its state is the
// group's keys.
const (
	numGroups = 3
	groupSize = 3
)

// keyName is the key of index k in group g.
func keyName(g, k int) string { return fmt.Sprintf("g%d/%c", g, 'a'+k) }

// groupPrefix is the scan prefix of group g; it matches its keys only.
func groupPrefix(g int) string { return fmt.Sprintf("g%d/", g) }

// opKind is what a client asked for.
type opKind uint8

const (
	opGet       opKind = iota // linearizable GET /key
	opPut                     // PUT with a unique value
	opCAS                     // PUT with prev_version
	opCreate                  // PUT with create_only
	opCASRev                  // PUT with prev_revision
	opDel                     // DELETE
	opDelIf                   // DELETE with prev_version
	opTxn                     // POST /txn
	opScan                    // linearizable GET /keys?prefix=<group>
	opStaleGet                // GET /key?consistency=stale; not in the linearizability check
	opStaleScan               // GET /keys?consistency=stale; not in the linearizability check
	opScanPage                // one page of a linearizable GET /keys?prefix=<group>&limit=<Prev>, from key Key on (a continued page at its first page's revision)
)

var opNames = [...]string{opGet: "get", opPut: "put", opCAS: "cas", opCreate: "create", opCASRev: "cas-rev",
	opDel: "delete", opDelIf: "delete-if", opTxn: "txn", opScan: "scan", opStaleGet: "stale-get", opStaleScan: "stale-scan", opScanPage: "scan-page"}

func (k opKind) String() string { return opNames[k] }

// write says whether the operation may change state.
func (k opKind) write() bool {
	switch k {
	case opPut, opCAS, opCreate, opCASRev, opDel, opDelIf, opTxn:
		return true
	}
	return false
}

// kvInput is one request on group Group. Key is the index of the key in the
// group (unused by txn and scan; for scan-page the first key the page may
// return: 0 on the first page, then the one after the previous page's last);
// Value is the unique value of a put; Prev is the prev_version of cas and
// delete-if, the prev_revision of cas-rev, the limit of scan-page. Token is
// the continuation token a scan-page sends (not part of the model).
type kvInput struct {
	Kind  opKind
	Group int
	Key   int
	Value string
	Prev  int64
	Txn   *txnInput
	Token string
}

// Compare targets of a transaction.
type cmpTarget uint8

const (
	cmpVersion cmpTarget = iota
	cmpValue
	cmpExists
	cmpRevision
)

// txnCompare is one compare: the key's target == (or, if Not, !=) the operand.
type txnCompare struct {
	Key     int
	Target  cmpTarget
	Not     bool
	Version int64 // version or revision
	Value   string
	Exists  bool
}

// Operations of a transaction branch.
type txnOpKind uint8

const (
	txnPut txnOpKind = iota
	txnDelete
	txnGet
)

type txnOp struct {
	Kind  txnOpKind
	Key   int
	Value string // of a put, unique
}

type txnInput struct {
	Compares         []txnCompare
	Success, Failure []txnOp
}

// Outcome statuses besides the HTTP ones (200, 404, 409).
const (
	statusUnknown = 0 // a write whose effect is unknown; its Return is open
)

// kvRead is one key as a read returned it.
type kvRead struct {
	Found    bool
	Value    string
	Version  int64
	Revision int64
}

// kvOutput is what the client saw. Read is the answer of a get (Found false:
// 404) or the current version and revision a 409 carries. Revision is the
// revision ("id") of an acknowledged write or of a transaction. A txn's
// Succeeded says which branch ran and Responses has one entry per operation
// of it (a delete's Found: deleted 1). A scan's Scan holds the group's keys
// by index, Found false for those it did not return; a scan-page's More says
// the range holds more keys than it returned and Continue is the token to
// send for the next page (not part of the model).
type kvOutput struct {
	Status    int
	Read      kvRead
	Revision  int64
	Succeeded bool
	Responses []kvRead
	Scan      []kvRead
	More      bool
	Continue  string
}

// keyState is one key in the model. Invariant: Version == 0 iff !Exists, and
// then Value is "" and Revision is 0. Revision 0 of an existing key means it
// was written by a write whose revision is unknown (an unknown outcome);
// RevAbove is then a revision it must be greater than. States compare with ==.
type keyState struct {
	Exists   bool
	Value    string
	Version  int64
	Revision int64
	RevAbove int64
}

// groupState is one group in the model. LastRev is a lower bound on the log
// index of the last write linearized so far: an acknowledged write or
// transaction must have a greater revision, since writes are applied in log
// order.
type groupState struct {
	Keys    [groupSize]keyState
	LastRev int64
}

// kvModel is distkv's key space as a sequential specification, partitioned by
// group. Step accepts exactly the outputs a correct node may give; an unknown
// write is linearized as applied (porcupine may place it after everything,
// which is the same as never).
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		var by [numGroups][]porcupine.Operation
		for _, op := range history {
			g := op.Input.(kvInput).Group
			by[g] = append(by[g], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			if len(ops) > 0 {
				out = append(out, ops)
			}
		}
		return out
	},
	Init: func() any { return groupState{} },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(groupState), input.(kvInput), output.(kvOutput))
	},
	Hash: func(state any) uint64 {
		s := state.(groupState)
		var h maphash.Hash
		h.SetSeed(hashSeed)
		for _, k := range s.Keys {
			h.WriteString(k.Value)
			fmt.Fprint(&h, k.Version, k.Revision)
		}
		return h.Sum64()
	},
	DescribeOperation: describeOp,
	DescribeState: func(state any) string {
		s := state.(groupState)
		var parts []string
		for i, k := range s.Keys {
			if !k.Exists {
				continue
			}
			rev := fmt.Sprint(k.Revision)
			if k.Revision == 0 {
				rev = fmt.Sprintf(">%d", k.RevAbove)
			}
			parts = append(parts, fmt.Sprintf("%c=%s v%d r%s", 'a'+i, k.Value, k.Version, rev))
		}
		return fmt.Sprintf("{%s} last r%d", strings.Join(parts, ", "), s.LastRev)
	},
}

var hashSeed = maphash.MakeSeed()

// matches says whether a read r of key k is allowed, and returns k with its
// revision learned from r if it was unknown.
func matches(k keyState, r kvRead) (bool, keyState) {
	if !r.Found {
		return !k.Exists, k
	}
	if !k.Exists || r.Value != k.Value || r.Version != k.Version {
		return false, k
	}
	if k.Revision != 0 {
		return r.Revision == k.Revision, k
	}
	if r.Revision <= k.RevAbove {
		return false, k
	}
	k.Revision = r.Revision
	return true, k
}

// read checks r against key i and learns its revision; ok false if r is not
// what the key holds.
func (s *groupState) read(i int, r kvRead) bool {
	ok, k := matches(s.Keys[i], r)
	if ok {
		s.Keys[i] = k
		s.LastRev = max(s.LastRev, k.Revision)
	}
	return ok
}

// put writes value to key i at revision rev (0: unknown).
func (s *groupState) put(i int, value string, rev int64) {
	s.Keys[i] = keyState{Exists: true, Value: value, Version: s.Keys[i].Version + 1, Revision: rev, RevAbove: s.LastRev}
}

// commit checks that an acknowledged write at rev follows every write before
// it in the log; rev 0 is an unknown outcome.
func (s *groupState) commit(rev int64) bool {
	if rev == statusUnknown {
		return true
	}
	if rev <= s.LastRev {
		return false
	}
	s.LastRev = rev
	return true
}

// hasRevision says whether key k's revision is known to be rev. A key whose
// revision is unknown was last written by a write no recorded operation has
// shown the revision of, while a client only ever compares with revisions it
// was shown, so the two differ.
func hasRevision(k keyState, rev int64) bool {
	if !k.Exists {
		return rev == 0
	}
	return k.Revision != 0 && k.Revision == rev
}

// conflict checks a 409's current version and revision of key i.
func (s *groupState) conflict(i int, r kvRead) bool {
	k := s.Keys[i]
	if !k.Exists {
		return r.Version == 0 && r.Revision == 0
	}
	return s.read(i, kvRead{Found: true, Value: k.Value, Version: r.Version, Revision: r.Revision})
}

func (c txnCompare) holds(k keyState) bool {
	var eq bool
	switch c.Target {
	case cmpVersion:
		eq = k.Version == c.Version
	case cmpValue:
		if !k.Exists {
			return false // as etcd: a value compare on a missing key is false whatever the op
		}
		eq = k.Value == c.Value
	case cmpExists:
		eq = k.Exists == c.Exists
	case cmpRevision:
		eq = hasRevision(k, c.Version)
	}
	return eq != c.Not
}

func step(s groupState, in kvInput, out kvOutput) (bool, groupState) {
	unknown := out.Status == statusUnknown
	k := s.Keys[in.Key]
	switch in.Kind {
	case opGet:
		return s.read(in.Key, out.Read), s
	case opScan:
		if len(out.Scan) != groupSize {
			return false, s
		}
		for i, r := range out.Scan {
			if !s.read(i, r) {
				return false, s
			}
		}
		return true, s
	case opScanPage:
		// One page is one linearizable read: the first Prev keys from Key on
		// that exist, and More iff any exists after them.
		if len(out.Scan) != groupSize {
			return false, s
		}
		n, more := int64(0), false
		for i, r := range out.Scan {
			switch {
			case i < in.Key || n == in.Prev:
				if r.Found {
					return false, s
				}
				more = more || (i >= in.Key && s.Keys[i].Exists)
			case !s.read(i, r):
				return false, s
			case r.Found:
				n++
			}
		}
		return out.More == more, s
	case opPut, opCAS, opCreate, opCASRev:
		var holds bool
		switch in.Kind {
		case opPut:
			holds = true
		case opCAS:
			holds = k.Version == in.Prev
		case opCreate:
			holds = !k.Exists
		case opCASRev:
			holds = hasRevision(k, in.Prev)
		}
		switch {
		case unknown:
			if holds {
				s.put(in.Key, in.Value, 0)
			}
			return true, s
		case out.Status == 200:
			if !holds || !s.commit(out.Revision) {
				return false, s
			}
			s.put(in.Key, in.Value, out.Revision)
			return true, s
		case out.Status == 409 && in.Kind != opPut:
			return !holds && s.conflict(in.Key, out.Read), s
		}
	case opDel, opDelIf:
		holds := in.Kind == opDel || k.Version == in.Prev
		switch {
		case unknown:
			if holds {
				s.Keys[in.Key] = keyState{}
			}
			return true, s
		case out.Status == 200:
			if !holds || !k.Exists || !s.commit(out.Revision) {
				return false, s
			}
			s.Keys[in.Key] = keyState{}
			return true, s
		case out.Status == 404:
			return holds && !k.Exists, s
		case out.Status == 409 && in.Kind == opDelIf:
			return !holds && s.conflict(in.Key, out.Read), s
		}
	case opTxn:
		return stepTxn(s, in.Txn, out)
	}
	return false, s
}

func stepTxn(s groupState, tx *txnInput, out kvOutput) (bool, groupState) {
	unknown := out.Status == statusUnknown
	if !unknown && out.Status != 200 {
		return false, s
	}
	succeeded := true
	for _, c := range tx.Compares {
		if !c.holds(s.Keys[c.Key]) {
			succeeded = false
			break
		}
	}
	ops := tx.Failure
	if succeeded {
		ops = tx.Success
	}
	rev := int64(statusUnknown)
	if !unknown {
		if out.Succeeded != succeeded || len(out.Responses) != len(ops) || !s.commit(out.Revision) {
			return false, s
		}
		rev = out.Revision
	}
	for i, op := range ops {
		switch op.Kind {
		case txnPut:
			s.put(op.Key, op.Value, rev)
		case txnDelete:
			if !unknown && out.Responses[i].Found != s.Keys[op.Key].Exists {
				return false, s
			}
			s.Keys[op.Key] = keyState{}
		case txnGet:
			if !unknown && !s.read(op.Key, out.Responses[i]) {
				return false, s
			}
		}
	}
	return true, s
}

func describeRead(r kvRead) string {
	if !r.Found {
		return "none"
	}
	return fmt.Sprintf("%s v%d r%d", r.Value, r.Version, r.Revision)
}

func describeOp(input, output any) string {
	in, out := input.(kvInput), output.(kvOutput)
	key := keyName(in.Group, in.Key)
	var call string
	switch in.Kind {
	case opGet, opStaleGet:
		call = fmt.Sprintf("%s(%s)", in.Kind, key)
	case opPut:
		call = fmt.Sprintf("put(%s, %s)", key, in.Value)
	case opCAS:
		call = fmt.Sprintf("put(%s, %s, prev_version=%d)", key, in.Value, in.Prev)
	case opCreate:
		call = fmt.Sprintf("put(%s, %s, create_only)", key, in.Value)
	case opCASRev:
		call = fmt.Sprintf("put(%s, %s, prev_revision=%d)", key, in.Value, in.Prev)
	case opDel:
		call = fmt.Sprintf("delete(%s)", key)
	case opDelIf:
		call = fmt.Sprintf("delete(%s, prev_version=%d)", key, in.Prev)
	case opScan, opStaleScan:
		call = fmt.Sprintf("%s(%s)", in.Kind, groupPrefix(in.Group))
	case opScanPage:
		call = fmt.Sprintf("scan-page(%s, from %c, limit %d)", groupPrefix(in.Group), 'a'+in.Key, in.Prev)
	case opTxn:
		call = describeTxn(in.Group, in.Txn)
	}
	switch {
	case out.Status == statusUnknown:
		return call + " -> unknown"
	case out.Status == 409:
		return fmt.Sprintf("%s -> 409 v%d r%d", call, out.Read.Version, out.Read.Revision)
	case out.Status != 200:
		return fmt.Sprintf("%s -> %d", call, out.Status)
	}
	switch in.Kind {
	case opGet, opStaleGet:
		return call + " -> " + describeRead(out.Read)
	case opScan, opStaleScan, opScanPage:
		var parts []string
		for i, r := range out.Scan {
			if r.Found {
				parts = append(parts, fmt.Sprintf("%c=%s", 'a'+i, describeRead(r)))
			}
		}
		if out.More {
			parts = append(parts, "more")
		}
		return fmt.Sprintf("%s -> [%s]", call, strings.Join(parts, ", "))
	case opTxn:
		br := in.Txn.Failure
		if out.Succeeded {
			br = in.Txn.Success
		}
		var parts []string
		for i, r := range out.Responses {
			switch {
			case i >= len(br) || br[i].Kind == txnGet:
				parts = append(parts, describeRead(r))
			case br[i].Kind == txnPut:
				parts = append(parts, "put")
			case r.Found:
				parts = append(parts, "deleted 1")
			default:
				parts = append(parts, "deleted 0")
			}
		}
		return fmt.Sprintf("%s -> succeeded=%v r%d [%s]", call, out.Succeeded, out.Revision, strings.Join(parts, "; "))
	}
	return fmt.Sprintf("%s -> ok r%d", call, out.Revision)
}

func describeTxn(g int, tx *txnInput) string {
	var cmps []string
	for _, c := range tx.Compares {
		op := "=="
		if c.Not {
			op = "!="
		}
		var operand string
		switch c.Target {
		case cmpVersion:
			operand = fmt.Sprintf("version %s %d", op, c.Version)
		case cmpRevision:
			operand = fmt.Sprintf("revision %s %d", op, c.Version)
		case cmpValue:
			operand = fmt.Sprintf("value %s %s", op, c.Value)
		case cmpExists:
			operand = fmt.Sprintf("exists %s %v", op, c.Exists)
		}
		cmps = append(cmps, fmt.Sprintf("%s %s", keyName(g, c.Key), operand))
	}
	branch := func(ops []txnOp) string {
		var parts []string
		for _, op := range ops {
			switch op.Kind {
			case txnPut:
				parts = append(parts, fmt.Sprintf("put %s=%s", keyName(g, op.Key), op.Value))
			case txnDelete:
				parts = append(parts, "delete "+keyName(g, op.Key))
			case txnGet:
				parts = append(parts, "get "+keyName(g, op.Key))
			}
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("txn(if %s then %s else %s)", strings.Join(cmps, " && "), branch(tx.Success), branch(tx.Failure))
}
