package chaos

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// checkLinearizable checks each group's operations with porcupine and returns
// the verdict, the information to visualize (of the first illegal group, else
// of the whole history) and what was found, for the test's message.
//
// Proving a history illegal means ruling out every placement of its writes
// with unknown outcomes before the violation, which grows exponentially with
// their number, so a full check of a long round with a violation late in it
// can run out of time. When a group's check gives up, its prefixes up to
// 1/8, 2/8, ... of the round are checked (see prefix): a prefix that is not
// linearizable proves the whole history is not either.
func checkLinearizable(ops []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo, string) {
	verdict := porcupine.Ok
	var notes []string
	var illegal *porcupine.LinearizationInfo
	for _, part := range kvModel.Partition(ops) {
		group := groupPrefix(part[0].Input.(kvInput).Group)
		res, info := porcupine.CheckOperationsVerbose(kvModel, part, timeout)
		if res == porcupine.Unknown {
			end := int64(0)
			for _, op := range part {
				if op.Return != math.MaxInt64 {
					end = max(end, op.Return)
				}
			}
			for i := int64(1); i < 8 && res == porcupine.Unknown; i++ {
				cut := end * i / 8
				pre := prefix(part, cut)
				r, in := porcupine.CheckOperationsVerbose(kvModel, pre, timeout/4)
				if r == porcupine.Unknown {
					break // a longer prefix will not do better
				}
				if r == porcupine.Illegal {
					res, info = r, in
					notes = append(notes, fmt.Sprintf("group %s: its operations called in the first %.1fs (%d of %d) are not linearizable (the whole group's check gave up after %v)",
						group, seconds(cut), len(pre), len(part), timeout))
				}
			}
			if res == porcupine.Unknown {
				notes = append(notes, fmt.Sprintf("group %s: the check of its %d operations gave up after %v", group, len(part), timeout))
			}
		} else if res == porcupine.Illegal {
			notes = append(notes, fmt.Sprintf("group %s: its %d operations are not linearizable", group, len(part)))
		}
		switch {
		case res == porcupine.Illegal:
			verdict = porcupine.Illegal
			if illegal == nil {
				illegal = &info
			}
		case res == porcupine.Unknown && verdict == porcupine.Ok:
			verdict = porcupine.Unknown
		}
	}
	if illegal != nil {
		return verdict, *illegal, strings.Join(notes, "; ")
	}
	_, info := porcupine.CheckOperationsVerbose(kvModel, nil, timeout)
	return verdict, info, strings.Join(notes, "; ")
}

// prefix is the history as it stood at cut: the operations called before
// it, where a write that had not returned by then has an unknown outcome
// and a read that had not is left out. Every linearization of ops, cut at
// cut, is one of the prefix (a write still open at cut took effect before it
// or, as far as the prefix shows, never), so a prefix that is not
// linearizable proves ops is not.
func prefix(ops []porcupine.Operation, cut int64) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Call >= cut {
			continue
		}
		if op.Return > cut {
			if !op.Input.(kvInput).Kind.write() {
				continue
			}
			op.Output, op.Return = kvOutput{Status: statusUnknown}, math.MaxInt64
		}
		out = append(out, op)
	}
	return out
}
