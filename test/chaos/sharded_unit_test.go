package chaos

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// inGroup puts in into group g.
func inGroup(g int, in kvInput) kvInput {
	in.Group = g
	return in
}

// TestCheckRevisionsPerGroup checks that a sharded round compares revisions
// only within a group: two groups may each have a write at one revision
// (two ranges' logs), two writes of one group may not.
func TestCheckRevisionsPerGroup(t *testing.T) {
	twoGroups := []porcupine.Operation{
		{Input: inGroup(0, put(ka, "x")), Output: ok(5)}, {Input: inGroup(1, put(ka, "y")), Output: ok(5)},
	}
	oneGroup := []porcupine.Operation{
		{Input: inGroup(1, put(ka, "x")), Output: ok(5)}, {Input: inGroup(1, put(kb, "y")), Output: ok(5)},
	}
	// A write of group 1 whose outcome is unknown, read back at the
	// revision of a write of group 0.
	unknownY := []porcupine.Operation{twoGroups[0], {Input: inGroup(1, put(ka, "y")), Output: unknown}}
	readBack := []observation{{kind: opGet, group: 1, reads: []keyRead{{groupSize + ka, kvr("y", 1, 5)}}}}
	for _, tt := range []struct {
		name     string
		ops      []porcupine.Operation
		obs      []observation
		perGroup bool
		want     int
	}{
		{"two groups, one log", twoGroups, nil, false, 1},
		{"two groups, two ranges", twoGroups, nil, true, 0},
		{"one group", oneGroup, nil, true, 1},
		{"read in another group", unknownY, readBack, true, 0},
		{"read in another group, one log", unknownY, readBack, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := checkRevisions(&history{ops: tt.ops, obs: tt.obs}, tt.perGroup)
			if len(got) != tt.want {
				t.Errorf("found %q, want %d", got, tt.want)
			}
			if tt.perGroup && len(got) > 0 && !strings.Contains(got[0], "of group g1/") {
				t.Errorf("%q does not name the group", got[0])
			}
		})
	}
}

// TestCheckStalePerGroup checks the stale-read and freshness checks of a
// sharded round: an index another group's range reached says nothing of a
// group's reads; going back on one node is counted, not a violation (the
// node may have forwarded the reads to two replicas); a read that misses a
// write of its own group acknowledged before it is still found.
func TestCheckStalePerGroup(t *testing.T) {
	p1 := &exec.Cmd{}
	// g0/a: put x at r5, put y at r7 (acknowledged at 9, after the reads
	// below were invoked); group 1's range is at r100 by time 1.
	writes := []porcupine.Operation{
		{Input: put(ka, "x"), Output: ok(5), Call: 0, Return: 1},
		{Input: put(ka, "y"), Output: ok(7), Call: 2, Return: 9},
		{Input: inGroup(1, put(ka, "z")), Output: ok(100), Call: 0, Return: 1},
	}
	other := observation{node: 0, proc: p1, kind: opPut, group: 1, call: 0, ret: 1, applied: 100}
	staleX := observation{node: 0, proc: p1, kind: opStaleGet, call: 4, ret: 5, reads: []keyRead{{ka, kvr("x", 1, 5)}}, applied: 5}
	linX := observation{node: 0, proc: p1, kind: opGet, call: 4, ret: 5, reads: []keyRead{{ka, kvr("x", 1, 5)}}, applied: 5}
	ackY := observation{node: 0, proc: p1, kind: opPut, call: 2, ret: 3, applied: 7}
	written := map[string]int64{"x": 0, "y": 2, "z": 0}
	for _, tt := range []struct {
		name               string
		obs                []observation
		perGroup           bool
		violations, missed int
		forwarded          int
	}{
		{"another group's index, one log", []observation{other, staleX, linX}, false, 1, 1, 0},
		{"another group's index, two ranges", []observation{other, staleX, linX}, true, 0, 0, 0},
		{"back in time on one node, one log", []observation{ackY, staleX}, false, 1, 0, 0},
		{"back in time on one node, sharded", []observation{ackY, staleX}, true, 0, 0, 1},
		{"misses its own group's write", []observation{ackY, other, linX}, true, 0, 1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &history{ops: writes, obs: tt.obs, written: written}
			rep := checkStale(h, tt.perGroup)
			if len(rep.violations) != tt.violations || len(rep.missed) != tt.missed || rep.forwarded != tt.forwarded {
				t.Errorf("violations %q, missed %q, forwarded %d; want %d, %d, %d",
					rep.violations, rep.missed, rep.forwarded, tt.violations, tt.missed, tt.forwarded)
			}
		})
	}
}

// TestStraddling checks the end-of-round check that each group lies in one
// range.
func TestStraddling(t *testing.T) {
	cut := func(points ...string) []placedRange {
		var rs []placedRange
		start := ""
		for i, p := range append(points, "") {
			rs = append(rs, placedRange{ID: uint64(i + 1), Start: start, End: p})
			start = p
		}
		return rs
	}
	for _, tt := range []struct {
		name  string
		rs    []placedRange
		wants []int
	}{
		{"one range", cut(), nil},
		{"cut between the groups", cut("\x00", "a/1", "g0x/5", "g1/a", "g1x/0", "g2x/9", "ledger-1"), nil},
		{"cut at a group's first key", cut("g1/a", "g2/a"), nil},
		{"cut inside a group", cut("g0x/1", "g1/b"), []int{1}},
		{"cut inside two groups", cut("g0/c", "g2/b"), []int{0, 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := straddling(tt.rs)
			var gs []int
			for g := range got {
				gs = append(gs, g)
			}
			slices.Sort(gs)
			if !slices.Equal(gs, tt.wants) {
				t.Errorf("groups %v (%v), want %v", gs, got, tt.wants)
			}
		})
	}
}

// TestRoundFaults checks which faults each kind of round injects by default.
func TestRoundFaults(t *testing.T) {
	if *chaosFaults != "" || !*chaosKillLong {
		t.Skip("-chaos.faults or -chaos.sharded-kill-long=false given")
	}
	plain, err := roundFaults(false)
	if err != nil {
		t.Fatal(err)
	}
	sharded, err := roundFaults(true)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(plain, "kill-long") || !slices.Contains(plain, "member-replace") || !slices.Contains(plain, "snapshot-partition") {
		t.Errorf("three-node round injects %v", plain)
	}
	for _, k := range notSharded {
		if slices.Contains(sharded, k) {
			t.Errorf("sharded round injects %s: %v", k, sharded)
		}
	}
	if !slices.Contains(sharded, "kill-long") || !slices.Contains(sharded, "kill") || !slices.Contains(sharded, "partition") || !slices.Contains(sharded, "member-replace") {
		t.Errorf("sharded round injects %v", sharded)
	}
}
