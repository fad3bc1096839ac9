package chaos

import (
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestCheckStale runs the stale-read checks on small histories whose verdict
// is known: each violation kind is found, and what is allowed is not flagged.
func TestCheckStale(t *testing.T) {
	p1, p2 := &exec.Cmd{}, &exec.Cmd{} // two processes of node n1
	// g0/a: put x at r5 (acknowledged by n1 at 1), put y at r7 (by n2 at 3).
	writes := []porcupine.Operation{
		{Input: put(ka, "x"), Output: ok(5), Call: 0, Return: 1},
		{Input: put(ka, "y"), Output: ok(7), Call: 2, Return: 3},
	}
	ack := func(node int, proc *exec.Cmd, rev, ret int64) observation {
		return observation{node: node, proc: proc, kind: opPut, call: ret - 1, ret: ret, applied: rev}
	}
	stale := func(node int, proc *exec.Cmd, call, ret int64, r kvRead) observation {
		return observation{node: node, proc: proc, kind: opStaleGet, call: call, ret: ret,
			reads: []keyRead{{Key: ka, kvRead: r}}, applied: r.Revision}
	}
	x, y := kvr("x", 1, 5), kvr("y", 2, 7)
	tests := []struct {
		name    string
		obs     []observation
		want    string // substring of the one violation expected; "" for none
		restart int
	}{
		{"old value before the node applied the new one", []observation{ack(0, p1, 5, 1), stale(0, p1, 4, 5, x)}, "", 0},
		{"new value", []observation{ack(1, p1, 7, 3), stale(1, p1, 4, 5, y)}, "", 0},
		{"other node may lag", []observation{ack(1, p1, 7, 3), stale(0, p2, 4, 5, x)}, "", 0},
		{"back in time on one node", []observation{ack(1, p1, 7, 3), stale(1, p1, 4, 5, x)}, "went back in time", 0},
		{"concurrent with the answer", []observation{ack(1, p1, 7, 3), stale(1, p1, 2, 5, x)}, "", 0},
		{"missing after a put it had applied", []observation{ack(1, p1, 7, 3), stale(1, p1, 4, 5, kvRead{})}, "missing", 0},
		{"back in time across a restart", []observation{ack(1, p1, 7, 3), stale(1, p2, 4, 5, x)}, "", 1},
		{"value nobody wrote", []observation{stale(0, p1, 4, 5, kvr("z", 1, 9))}, "no client wrote", 0},
		{"value before its write", []observation{stale(0, p1, 0, 1, y)}, "written only at", 0},
		{"value with another revision", []observation{stale(0, p1, 4, 5, kvr("y", 2, 8)), stale(1, p2, 6, 7, y)}, "showed it as", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &history{ops: writes, obs: tt.obs, written: map[string]int64{"x": 0, "y": 2}}
			rep := checkStale(h, false)
			switch {
			case tt.want == "" && len(rep.violations) > 0:
				t.Errorf("violations %q, want none", rep.violations)
			case tt.want != "" && (len(rep.violations) != 1 || !strings.Contains(rep.violations[0], tt.want)):
				t.Errorf("violations %q, want one with %q", rep.violations, tt.want)
			}
			if rep.acrossRestart != tt.restart {
				t.Errorf("%d across a restart, want %d", rep.acrossRestart, tt.restart)
			}
		})
	}
}

// TestCheckRevisions checks that a log index claimed by two writes is found.
func TestCheckRevisions(t *testing.T) {
	tests := []struct {
		name string
		ops  []porcupine.Operation
		obs  []observation
		want int
	}{
		{"distinct revisions", []porcupine.Operation{
			{Input: put(ka, "x"), Output: ok(5)}, {Input: put(kb, "y"), Output: ok(6)},
		}, nil, 0},
		{"a transaction's puts share one", []porcupine.Operation{
			{Input: txn(nil, []txnOp{{Kind: txnPut, Key: ka, Value: "x"}, {Kind: txnPut, Key: kb, Value: "y"}}, nil), Output: txnOut(true, 5, none, none)},
		}, []observation{{kind: opScan, reads: []keyRead{{ka, kvr("x", 1, 5)}, {kb, kvr("y", 1, 5)}}}}, 0},
		{"two acknowledged at one", []porcupine.Operation{
			{Input: put(ka, "x"), Output: ok(5)}, {Input: put(kb, "y"), Output: ok(5)},
		}, nil, 1},
		{"acknowledged, then another read at its revision", []porcupine.Operation{
			{Input: put(ka, "x"), Output: ok(5)}, {Input: put(ka, "y"), Output: unknown},
		}, []observation{{kind: opGet, reads: []keyRead{{ka, kvr("y", 1, 5)}}}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkRevisions(&history{ops: tt.ops, obs: tt.obs}, false)
			if len(got) != tt.want {
				t.Errorf("found %q, want %d", got, tt.want)
			}
		})
	}
}

// TestCheckFreshness checks that a linearizable read that misses a write
// acknowledged before it was invoked is named, on any node.
func TestCheckFreshness(t *testing.T) {
	writes := []porcupine.Operation{
		{Input: put(ka, "x"), Output: ok(5), Call: 0, Return: 1},
		{Input: put(ka, "y"), Output: ok(7), Call: 2, Return: 3},
	}
	ack := observation{node: 1, proc: &exec.Cmd{}, kind: opPut, call: 2, ret: 3, applied: 7}
	read := func(call int64, r kvRead) observation {
		return observation{node: 0, proc: &exec.Cmd{}, kind: opGet, call: call, ret: call + 1,
			reads: []keyRead{{Key: ka, kvRead: r}}, applied: r.Revision}
	}
	tests := []struct {
		name string
		read observation
		want int
	}{
		{"sees the acknowledged write", read(4, kvr("y", 2, 7)), 0},
		{"concurrent with the write", read(2, kvr("x", 1, 5)), 0},
		{"misses the acknowledged write", read(4, kvr("x", 1, 5)), 1},
		{"misses the key", read(4, kvRead{}), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &history{ops: writes, obs: []observation{ack, tt.read}, written: map[string]int64{"x": 0, "y": 2}}
			if got := checkStale(h, false).missed; len(got) != tt.want {
				t.Errorf("missed %q, want %d", got, tt.want)
			}
		})
	}
}

// TestPrefix checks the cut of a history that checkLinearizable falls back
// to: later calls are left out, a write still open at the cut becomes
// unknown, a read still open is left out; and a violation before the cut is
// found in the prefix.
func TestPrefix(t *testing.T) {
	ops := toHistory([]mop{
		{0, put(ka, "x"), ok(5), 0, 1},
		{1, get(ka), notFound, 2, 3}, // misses the acknowledged put
		{0, put(ka, "y"), ok(6), 4, 10},
		{1, get(ka), val("y", 2, 6), 5, 11},
		{2, put(kb, "z"), ok(7), 12, 13},
	})
	pre := prefix(ops, 6)
	if len(pre) != 3 {
		t.Fatalf("prefix has %d operations, want 3: %v", len(pre), pre)
	}
	if out := pre[2].Output.(kvOutput); out.Status != statusUnknown || pre[2].Return != math.MaxInt64 {
		t.Errorf("the open put is %+v, want an unknown outcome", pre[2])
	}
	if got := porcupine.CheckOperations(kvModel, pre); got {
		t.Errorf("the prefix is linearizable; its get misses an acknowledged put")
	}
	if got := porcupine.CheckOperations(kvModel, prefix(ops, 2)); !got {
		t.Errorf("the prefix before the bad get is not linearizable")
	}
	verdict, _, found := checkLinearizable(ops, time.Second)
	if verdict != porcupine.Illegal || !strings.Contains(found, "g0/") {
		t.Errorf("checkLinearizable = %v (%s), want Illegal in g0/", verdict, found)
	}
}

// TestRefusedButApplied checks that a read of a value whose write was
// answered as refused for certain is named, and only that.
func TestRefusedButApplied(t *testing.T) {
	h := newHistory()
	h.refuse(put(ka, "x"), "put(g0/a, x) on n1: 503 no leader")
	h.refuse(txn(nil, []txnOp{{Kind: txnPut, Key: kb, Value: "y"}}, nil), "txn on n2: 503 no leader")
	read := func(r keyRead) observation { return observation{kind: opGet, reads: []keyRead{r}} }
	for _, tt := range []struct {
		name string
		obs  []observation
		want int
	}{
		{"not read", []observation{read(keyRead{ka, kvr("z", 1, 5)})}, 0},
		{"read missing", []observation{read(keyRead{Key: ka})}, 0},
		{"put read", []observation{read(keyRead{ka, kvr("x", 1, 5)}), read(keyRead{ka, kvr("x", 1, 5)})}, 1},
		{"txn's put read", []observation{read(keyRead{kb, kvr("y", 1, 6)})}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h.obs = tt.obs
			if got := h.refusedButApplied(); len(got) != tt.want {
				t.Errorf("found %q, want %d", got, tt.want)
			}
		})
	}
}
