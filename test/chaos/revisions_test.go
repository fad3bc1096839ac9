package chaos

import (
	"fmt"
	"sort"
	"testing"
)

// checkRevisions finds log indexes claimed by two different writes. A
// revision is the log index at which a write was applied, so each belongs to
// one write (a transaction's puts share its one). A write acknowledged at
// revision R while another write was acknowledged at R, or read back with
// revision R, was lost: its log entry was overwritten. This names the lost
// write directly, where porcupine only says the history has no
// linearization.
//
// With perGroup, revisions are compared only within a group: on a sharded
// cluster each range numbers its writes with its own log index, so two
// groups in two ranges may each have a write at the same revision. A group
// stays in one range (or in the half of a split that took it, whose log
// goes on from the split's index), so within it a revision is still one
// write's.
func checkRevisions(h *history, perGroup bool) []string {
	type groupRev struct {
		group int // -1 unless perGroup
		rev   int64
	}
	groupOf := func(g int) int {
		if perGroup {
			return g
		}
		return -1
	}
	// writer names the write that carries each unique value.
	writer := map[string]string{}
	claims := map[groupRev]map[string]string{} // revision -> writer -> how it was seen
	claim := func(rev groupRev, w, how string) {
		if claims[rev] == nil {
			claims[rev] = map[string]string{}
		}
		if _, ok := claims[rev][w]; !ok {
			claims[rev][w] = how
		}
	}
	for i, op := range h.ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		var w string
		switch {
		case in.Kind == opTxn:
			w = fmt.Sprintf("txn #%d", i)
		case in.Value != "":
			w = fmt.Sprintf("put %s=%s", keyName(in.Group, in.Key), in.Value)
		default:
			w = fmt.Sprintf("delete %s #%d", keyName(in.Group, in.Key), i)
		}
		for _, v := range putValues(in) {
			writer[v] = w
		}
		if in.Kind.write() && out.Status == 200 {
			claim(groupRev{groupOf(in.Group), out.Revision}, w, fmt.Sprintf("acknowledged at %.3fs", seconds(op.Return)))
		}
	}
	for _, o := range h.obs {
		for _, r := range o.reads {
			if w, ok := writer[r.Value]; r.Found && ok {
				claim(groupRev{groupOf(r.Key / groupSize), r.Revision}, w, fmt.Sprintf("read by %s on n%d at %.3fs", o.kind, o.node+1, seconds(o.ret)))
			}
		}
	}
	var revs []groupRev
	for rev, ws := range claims {
		if len(ws) > 1 {
			revs = append(revs, rev)
		}
	}
	sort.Slice(revs, func(i, j int) bool {
		if revs[i].rev != revs[j].rev {
			return revs[i].rev < revs[j].rev
		}
		return revs[i].group < revs[j].group
	})
	var out []string
	for _, rev := range revs {
		var parts []string
		for w, how := range claims[rev] {
			parts = append(parts, fmt.Sprintf("%s (%s)", w, how))
		}
		sort.Strings(parts)
		of := ""
		if rev.group >= 0 {
			of = " of group " + groupPrefix(rev.group)
		}
		out = append(out, fmt.Sprintf("revision %d%s belongs to %d writes, so all but one were lost: %v", rev.rev, of, len(parts), parts))
	}
	return out
}

// revisionReuse reports checkRevisions' findings as test errors and returns
// how many revisions were claimed twice (each is at least one lost write).
func revisionReuse(t *testing.T, h *history, perGroup bool) int {
	t.Helper()
	found := checkRevisions(h, perGroup)
	for i, s := range found {
		if i == 10 {
			t.Errorf("... and %d more revisions claimed twice", len(found)-10)
			break
		}
		t.Errorf("lost write: %s", s)
	}
	return len(found)
}
