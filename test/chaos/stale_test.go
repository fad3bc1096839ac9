package chaos

import (
	"fmt"
	"os/exec"
	"sort"
	"testing"
)

// Stale reads (?consistency=stale) are not linearizable and are not in the
// porcupine history. What they promise, and what checkStale checks:
//
//   - Origin: a value read was written by a put or transaction invoked before
//     the read returned, and every answer that shows a value shows it with the
//     same version and revision (a value is unique, so it is one write).
//   - No going back in time on a node: a node's state is its log applied up to
//     some index, and that index only grows while the process runs. An
//     answered operation on node N proves N had applied index L when it
//     answered: the revision of a write or transaction it acknowledged (it
//     answers once it has applied it), or the greatest revision among the keys
//     it returned. A stale read on N invoked after that answer returned must
//     show a state at an index >= L: for each key it returns, no write of that
//     key at a revision in (its revision, L]; and a key it reports missing must
//     not be one whose last write at or below L was a put that no later delete
//     (acknowledged at a greater revision, or of unknown outcome) removed.
//
// checkStale also checks, for linearizable reads, that each reflects every
// write acknowledged by any node before it was invoked (missed).
//
// A restarted node recovers from its snapshot and WAL and serves stale reads
// while it replays the committed entries, so across a restart the index can
// legitimately go back: the check holds per process, and what it finds across
// restarts is only counted.
//
// With perGroup (a sharded cluster), indexes are compared only within a
// group, since each range numbers its writes with its own log index; and
// going back in time on a node is only counted (forwarded), not a
// violation: a node that holds no replica of a group's range (or holds it
// no more, once placement moved it) forwards a stale read to another node's
// replica, the range's leader or, failing it, another replica, which may have
// applied less than the replica that answered before. Origin and the
// linearizable reads' freshness are checked as without perGroup.
type staleReport struct {
	checked       int      // stale reads checked
	violations    []string // within one process of a node, or of origin
	acrossRestart int      // going back across a restart of the node
	forwarded     int      // going back within one process, with perGroup
	// missed lists linearizable reads that missed a write acknowledged
	// before they were invoked.
	missed []string
}

// keyWrite is a write of one key at a known revision.
type keyWrite struct {
	rev int64
	put bool
}

func checkStale(h *history, perGroup bool) staleReport {
	// groupOf is the group an observation's indexes are compared within.
	groupOf := func(o observation) int {
		if perGroup {
			return o.group
		}
		return -1
	}
	var rep staleReport
	writes := map[int][]keyWrite{} // key -> writes, sorted by revision below
	unknownDel := map[int]bool{}   // key -> some delete of it has an unknown outcome
	addWrite := func(key int, rev int64, put bool) {
		writes[key] = append(writes[key], keyWrite{rev, put})
	}
	for _, op := range h.ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		base := in.Group * groupSize
		switch {
		case in.Kind == opTxn:
			for bi, br := range [][]txnOp{in.Txn.Success, in.Txn.Failure} {
				ran := out.Status == 200 && out.Succeeded == (bi == 0)
				for i, o := range br {
					switch {
					case o.Kind == txnPut && ran:
						addWrite(base+o.Key, out.Revision, true)
					case o.Kind == txnDelete && ran && out.Responses[i].Found:
						addWrite(base+o.Key, out.Revision, false)
					case o.Kind == txnDelete && out.Status == statusUnknown:
						unknownDel[base+o.Key] = true
					}
				}
			}
		case in.Kind == opDel || in.Kind == opDelIf:
			if out.Status == 200 {
				addWrite(base+in.Key, out.Revision, false)
			} else if out.Status == statusUnknown {
				unknownDel[base+in.Key] = true
			}
		case in.Kind.write() && out.Status == 200:
			addWrite(base+in.Key, out.Revision, true)
		}
	}
	type shown struct {
		version, rev int64
		where        string
	}
	values := map[string]shown{}
	for _, o := range h.obs {
		for _, r := range o.reads {
			if !r.Found {
				continue
			}
			addWrite(r.Key, r.Revision, true)
			where := fmt.Sprintf("%s on n%d at %.3fs", o.kind, o.node+1, seconds(o.ret))
			call, ok := h.written[r.Value]
			switch {
			case !ok:
				rep.violations = append(rep.violations, fmt.Sprintf("%s returned %s=%s, a value no client wrote", where, keyOf(r.Key), r.Value))
			case call > o.ret:
				rep.violations = append(rep.violations, fmt.Sprintf("%s returned %s=%s, written only at %.3fs", where, keyOf(r.Key), r.Value, seconds(call)))
			}
			if s, ok := values[r.Value]; !ok {
				values[r.Value] = shown{r.Version, r.Revision, where}
			} else if s.version != r.Version || s.rev != r.Revision {
				rep.violations = append(rep.violations, fmt.Sprintf("%s returned %s=%s v%d r%d; %s showed it as v%d r%d",
					where, keyOf(r.Key), r.Value, r.Version, r.Revision, s.where, s.version, s.rev))
			}
		}
	}
	for k, ws := range writes {
		sort.Slice(ws, func(i, j int) bool { return ws[i].rev < ws[j].rev })
		writes[k] = ws
	}

	// behind says why read r cannot come from a state at an index >= applied;
	// "" if it can.
	behind := func(r keyRead, applied int64) string {
		ws := writes[r.Key]
		// i: the first write above applied.
		i := sort.Search(len(ws), func(i int) bool { return ws[i].rev > applied })
		if r.Found {
			if i > 0 && ws[i-1].rev > r.Revision {
				return fmt.Sprintf("%s at r%d, though it was written again at r%d", keyOf(r.Key), r.Revision, ws[i-1].rev)
			}
			return ""
		}
		if i == 0 || !ws[i-1].put || unknownDel[r.Key] {
			return ""
		}
		for _, w := range ws[i:] {
			if !w.put {
				return ""
			}
		}
		return fmt.Sprintf("%s missing, though it was put at r%d and never deleted after", keyOf(r.Key), ws[i-1].rev)
	}

	// check runs the going-back check over obs grouped by group(o), calling
	// found for each violation.
	check := func(group func(o observation) any, found func(id, msg string)) {
		byGroup := map[any][]observation{}
		for _, o := range h.obs {
			if o.proc != nil {
				byGroup[group(o)] = append(byGroup[group(o)], o)
			}
		}
		for _, obs := range byGroup {
			// By when each was answered: a continued scan page's window is
			// its first page's, but it proves what its node had applied
			// only from when that node answered it.
			byRet := append([]observation(nil), obs...)
			for i := range byRet {
				if byRet[i].answered != 0 {
					byRet[i].ret = byRet[i].answered
				}
			}
			sort.Slice(byRet, func(i, j int) bool { return byRet[i].ret < byRet[j].ret })
			stale := []observation{}
			for _, o := range obs {
				if o.kind == opStaleGet || o.kind == opStaleScan {
					stale = append(stale, o)
				}
			}
			sort.Slice(stale, func(i, j int) bool { return stale[i].call < stale[j].call })
			// A sweep: applied is the greatest index proven by answers that
			// returned before the stale read was invoked.
			var applied int64
			var from string
			j := 0
			for _, s := range stale {
				for ; j < len(byRet) && byRet[j].ret < s.call; j++ {
					if byRet[j].applied > applied {
						applied = byRet[j].applied
						from = fmt.Sprintf("%s answered at %.3fs", byRet[j].kind, seconds(byRet[j].ret))
					}
				}
				for _, r := range s.reads {
					if why := behind(r, applied); why != "" {
						found(fmt.Sprintf("%d/%d/%d", s.node, s.call, r.Key), fmt.Sprintf("%s on n%d at %.3f-%.3fs went back in time: it returned %s; the node had applied r%d (%s)",
							s.kind, s.node+1, seconds(s.call), seconds(s.ret), why, applied, from))
					}
				}
			}
		}
	}
	type proc struct {
		node  int
		cmd   *exec.Cmd
		group int
	}
	type nodeGroup struct{ node, group int }
	within := map[string]bool{}
	check(func(o observation) any { return proc{o.node, o.proc, groupOf(o)} }, func(id, msg string) {
		within[id] = true
		if perGroup {
			rep.forwarded++
			return
		}
		rep.violations = append(rep.violations, msg)
	})
	check(func(o observation) any { return nodeGroup{o.node, groupOf(o)} }, func(id, msg string) {
		if !within[id] {
			within[id] = true
			rep.acrossRestart++
		}
	})
	for _, o := range h.obs {
		if o.kind == opStaleGet || o.kind == opStaleScan {
			rep.checked++
		}
	}

	// A linearizable read reflects every write acknowledged, by any node,
	// before it was invoked: porcupine checks that too, but this names the
	// read and does not give up on a long history.
	var acks, lin []observation
	for _, o := range h.obs {
		if o.kind.write() && o.applied > 0 {
			acks = append(acks, o)
		}
		if (o.kind == opGet || o.kind == opScan || o.kind == opScanPage || o.kind == opTxn) && len(o.reads) > 0 {
			lin = append(lin, o)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].ret < acks[j].ret })
	sort.Slice(lin, func(i, j int) bool { return lin[i].call < lin[j].call })
	// acked is, by group, the greatest index acknowledged so far.
	acked := map[int]int64{}
	from := map[int]string{}
	j := 0
	for _, o := range lin {
		for ; j < len(acks) && acks[j].ret < o.call; j++ {
			g := groupOf(acks[j])
			if acks[j].applied > acked[g] {
				acked[g] = acks[j].applied
				from[g] = fmt.Sprintf("%s acknowledged by n%d at %.3fs", acks[j].kind, acks[j].node+1, seconds(acks[j].ret))
			}
		}
		g := groupOf(o)
		for _, r := range o.reads {
			if why := behind(r, acked[g]); why != "" {
				rep.missed = append(rep.missed, fmt.Sprintf("%s on n%d at %.3f-%.3fs is stale: it returned %s; r%d was acknowledged before (%s)",
					o.kind, o.node+1, seconds(o.call), seconds(o.ret), why, acked[g], from[g]))
			}
		}
	}
	return rep
}

func keyOf(k int) string { return keyName(k/groupSize, k%groupSize) }

func seconds(t int64) float64 { return float64(t) / 1e9 }

// staleReads runs checkStale and reports its violations as test errors.
func staleReads(t *testing.T, h *history, perGroup bool) {
	t.Helper()
	rep := checkStale(h, perGroup)
	if perGroup {
		t.Logf("stale reads: %d checked, %d went back in time on one node process (allowed when sharded: forwarded), %d across a restart of their node (allowed), %d violations",
			rep.checked, rep.forwarded, rep.acrossRestart, len(rep.violations))
	} else {
		t.Logf("stale reads: %d checked, %d went back in time across a restart of their node (allowed), %d violations",
			rep.checked, rep.acrossRestart, len(rep.violations))
	}
	for i, v := range rep.violations {
		if i == 10 {
			t.Errorf("... and %d more stale-read violations", len(rep.violations)-10)
			break
		}
		t.Errorf("stale read: %s", v)
	}
	for i, v := range rep.missed {
		if i == 10 {
			t.Errorf("... and %d more linearizable reads that missed an acknowledged write", len(rep.missed)-10)
			break
		}
		t.Errorf("linearizable read: %s", v)
	}
}
