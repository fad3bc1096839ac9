package chaos

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// opKind is what a client asked for.
type opKind uint8

const (
	opGet opKind = iota // linearizable GET
	opPut               // PUT with a unique value
	opCAS               // PUT with prev_version
	opDel               // DELETE
)

var opNames = [...]string{opGet: "get", opPut: "put", opCAS: "cas", opDel: "delete"}

func (k opKind) String() string { return opNames[k] }

// kvInput is one request. Value is the unique value of a put or cas; Prev is
// the prev_version of a cas (0: the key must not exist).
type kvInput struct {
	Kind  opKind
	Key   string
	Value string
	Prev  int64
}

// Outcome statuses besides the HTTP ones (200, 404, 409).
const (
	statusUnknown = 0 // a write whose effect is unknown; its Return is open
)

// kvOutput is what the client saw. Value and Version are those of a GET's
// 200, or the current version a 409 carries.
type kvOutput struct {
	Status  int
	Value   string
	Version int64
}

// kvState is one key's state. Invariant: Version == 0 iff !Exists, and then
// Value is "", so states compare with ==.
type kvState struct {
	Exists  bool
	Value   string
	Version int64
}

// kvModel is distkv's key as a sequential specification, partitioned by key.
// Step accepts exactly the outputs a correct node may give; an unknown write
// is linearized as applied (porcupine may place it after everything, which is
// the same as never).
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(kvState), input.(kvInput), output.(kvOutput))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		var call string
		switch in.Kind {
		case opGet:
			call = fmt.Sprintf("get(%s)", in.Key)
		case opPut:
			call = fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
		case opCAS:
			call = fmt.Sprintf("put(%s, %s, prev_version=%d)", in.Key, in.Value, in.Prev)
		case opDel:
			call = fmt.Sprintf("delete(%s)", in.Key)
		}
		switch {
		case out.Status == statusUnknown:
			return call + " -> unknown"
		case out.Status == 200 && in.Kind == opGet:
			return fmt.Sprintf("%s -> %s v%d", call, out.Value, out.Version)
		case out.Status == 409:
			return fmt.Sprintf("%s -> 409 v%d", call, out.Version)
		default:
			return fmt.Sprintf("%s -> %d", call, out.Status)
		}
	},
	DescribeState: func(state any) string {
		s := state.(kvState)
		if !s.Exists {
			return "(none)"
		}
		return fmt.Sprintf("%s v%d", s.Value, s.Version)
	},
}

func step(s kvState, in kvInput, out kvOutput) (bool, kvState) {
	put := kvState{Exists: true, Value: in.Value, Version: s.Version + 1}
	switch in.Kind {
	case opGet:
		switch out.Status {
		case 200:
			return s.Exists && s.Value == out.Value && s.Version == out.Version, s
		case 404:
			return !s.Exists, s
		}
	case opPut:
		if out.Status == 200 || out.Status == statusUnknown {
			return true, put
		}
	case opCAS:
		holds := s.Version == in.Prev
		switch out.Status {
		case 200:
			return holds, put
		case 409:
			return !holds && out.Version == s.Version, s
		case statusUnknown:
			if holds {
				return true, put
			}
			return true, s
		}
	case opDel:
		switch out.Status {
		case 200:
			return s.Exists, kvState{}
		case 404:
			return !s.Exists, s
		case statusUnknown:
			return true, kvState{}
		}
	}
	return false, s
}
