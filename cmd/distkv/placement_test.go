package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
)

func TestMergeReportsTakesTheLeadersView(t *testing.T) {
	stale := replicaReport{Shard: 7, Start: []byte("a"), Voters: []string{"n1", "n2", "n3"}, Leader: "n1", Term: 3, Applied: 90}
	leader := replicaReport{Shard: 7, Start: []byte("a"), End: []byte("m"), Voters: []string{"n2", "n3", "n4"}, Leader: "n2", Leads: true, Term: 4, Applied: 80}
	old := replicaReport{Shard: 7, Start: []byte("a"), Voters: []string{"n1", "n2", "n3"}, Leader: "n1", Leads: true, Term: 3, Applied: 95}
	right := replicaReport{Shard: 9, Start: []byte("m"), Voters: []string{"n2", "n3", "n4"}, Term: 4, Applied: 10}
	meta := replicaReport{Shard: 1, Voters: []string{"n1", "n2", "n3", "n4"}, End: []byte{0}, Leader: "n3", Leads: true, Term: 2}
	d := mergeReports(map[string][]replicaReport{
		"n1": {old, meta},
		"n2": {leader, right},
		"n3": {stale, right, meta},
	})
	if len(d.Ranges) != 3 {
		t.Fatalf("%d ranges, want 3: %+v", len(d.Ranges), d.Ranges)
	}
	if d.Ranges[0].Shard != 1 || d.Ranges[1].Shard != 7 || d.Ranges[2].Shard != 9 {
		t.Fatalf("not sorted by first key: %v %v %v", d.Ranges[0].Shard, d.Ranges[1].Shard, d.Ranges[2].Shard)
	}
	// The leader in the highest term wins over a deposed leader that
	// applied more and a follower.
	if got := d.Ranges[1]; got.Leader != "n2" || !slices.Equal(got.Voters, []string{"n2", "n3", "n4"}) || string(got.End) != "m" {
		t.Fatalf("range 7 merged as %+v", got)
	}
	if !slices.Equal(d.Ranges[1].Holders, []string{"n1", "n2", "n3"}) {
		t.Fatalf("holders of range 7: %v", d.Ranges[1].Holders)
	}
	if !slices.Equal(d.Live, []string{"n1", "n2", "n3"}) {
		t.Fatalf("live: %v", d.Live)
	}
	for key, want := range map[string]uint64{"a": 7, "b": 7, "lzz": 7, "m": 9, "zzz": 9} {
		r, ok := d.lookup([]byte(key))
		if !ok || r.Shard != want {
			t.Errorf("lookup(%q) = %d %v, want %d", key, r.Shard, ok, want)
		}
	}
	if r, ok := d.lookup([]byte{0}); !ok || r.Shard != 1 && r.Shard != 7 {
		// "\x00" is below "a": in no range of keys but the meta range's end.
		t.Logf("lookup(\\x00) = %d %v", r.Shard, ok)
	}
}

func TestForwardOrder(t *testing.T) {
	r := replicaReport{Voters: []string{"n1", "n2", "n3"}, Learners: []string{"n4"}, Leader: "n3"}
	if got := forwardOrder(r, "n5"); !slices.Equal(got, []string{"n3", "n1", "n2", "n4"}) {
		t.Fatalf("order from n5: %v", got)
	}
	if got := forwardOrder(r, "n3"); !slices.Equal(got, []string{"n1", "n2", "n4"}) {
		t.Fatalf("order from the leader's node: %v", got)
	}
	r.Leader = "n9" // not a member: a stale view
	if got := forwardOrder(r, "n1"); !slices.Equal(got, []string{"n2", "n3", "n4"}) {
		t.Fatalf("order with a leader that is not a member: %v", got)
	}
}

// A forwarded request's failure is answered by the forwarding node as the
// receiving node would have answered it.
func TestForwardCodesRoundTrip(t *testing.T) {
	cases := []struct {
		err   error
		code  string
		check func(error) bool
	}{
		{errNotHere, codeNotHere, nil},
		{fmt.Errorf("x: %w", raftnode.ErrWrongRange), codeNotHere, nil},
		{fmt.Errorf("%w: a and m", httpapi.ErrCrossRange), codeCrossRange, func(e error) bool { return errors.Is(e, httpapi.ErrCrossRange) }},
		{fmt.Errorf("no leader: %w", context.DeadlineExceeded), codeDeadline, func(e error) bool { return errors.Is(e, context.DeadlineExceeded) }},
		{lostCall{errors.New("gone")}, codeUnknown, func(e error) bool { return e.(remoteError).OutcomeUnknown() }},
		{errors.New("boom"), codeFailed, nil},
	}
	for _, c := range cases {
		if got := forwardCode(c.err); got != c.code {
			t.Errorf("forwardCode(%v) = %q, want %q", c.err, got, c.code)
			continue
		}
		back := remoteError{c.code, c.err.Error()}
		if back.Error() != c.err.Error() {
			t.Errorf("detail %q came back as %q", c.err, back.Error())
		}
		if c.check != nil && !c.check(back) {
			t.Errorf("%q lost what it means on the way back", c.code)
		}
	}
	if !(remoteError{codeNotMade, ""}).NotMade() || !(remoteError{codeNoSpace, ""}).InsufficientStorage() {
		t.Fatal("not_made or no_space lost what it means")
	}
}

func TestMayHaveRun(t *testing.T) {
	for _, err := range []error{transport.ErrUnreachable, transport.ErrUnknownPeer, fmt.Errorf("x: %w", transport.ErrRemote)} {
		if mayHaveRun(err) {
			t.Errorf("%v: a call that never ran is taken as one that may have", err)
		}
	}
	for _, err := range []error{transport.ErrConnLost, context.DeadlineExceeded, context.Canceled, transport.ErrClosed} {
		if !mayHaveRun(err) {
			t.Errorf("%v: a write that may have run would be sent again", err)
		}
	}
}

// testNodes makes the controller's view of nodes n1..nN, all live, with the
// replica and leader counts of the ranges in rs.
func testNodes(n int, rs []replicaReport) map[string]*nodeState {
	nodes := map[string]*nodeState{}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		nodes[name] = &nodeState{member: raftnode.Member{Name: name, Peer: name + ":9000"}, live: true}
	}
	for _, r := range rs {
		for _, m := range r.replicas() {
			nodes[m].replicas++
		}
		if r.Leads {
			nodes[r.Leader].leaders++
		}
	}
	return nodes
}

func testPlacement() *placement {
	p := &placement{cfg: placementConfig{Replicas: 3, DeadAfter: time.Minute, Interval: time.Second}, logger: slog.New(slog.DiscardHandler)}
	p.resetController()
	return p
}

func TestRepair(t *testing.T) {
	now := time.Now()
	r := replicaReport{Shard: 5, Voters: []string{"n1", "n2", "n3"}, Leader: "n1", Leads: true}
	p := testPlacement()

	nodes := testNodes(5, []replicaReport{r})
	if c, _, ok := p.repair(r, nodes, 3, now); ok {
		t.Fatalf("a healthy range was changed: %+v", c)
	}
	// A dead voter: a learner goes on the least loaded live node, asked of
	// the leader.
	nodes["n2"].live, nodes["n2"].dead = false, true
	nodes["n4"].replicas = 7
	c, on, ok := p.repair(r, nodes, 3, now)
	if !ok || c.Op != opAddLearner || c.Member.Name != "n5" || on != "n1" {
		t.Fatalf("dead voter: %+v on %s (%v), want add_learner n5 on n1", c, on, ok)
	}
	// The learner is caught up: promoted.
	r.Learners, r.Lag = []string{"n5"}, map[string]uint64{"n5": 3}
	if c, _, ok := p.repair(r, nodes, 3, now); !ok || c.Op != opPromote || c.Member.Name != "n5" {
		t.Fatalf("caught-up learner: %+v %v", c, ok)
	}
	// Far behind: wait, and remove it once it has had learnerPatience.
	r.Lag["n5"] = 100000
	if c, _, ok := p.repair(r, nodes, 3, now); ok {
		t.Fatalf("a lagging learner was changed at once: %+v", c)
	}
	if c, _, ok := p.repair(r, nodes, 3, now.Add(learnerPatience+time.Second)); !ok || c.Op != opRemove || c.Member.Name != "n5" {
		t.Fatalf("a learner that never caught up: %+v %v", c, ok)
	}
	// Promoted: four voters, one dead: the dead one goes.
	r.Learners, r.Lag = nil, nil
	r.Voters = []string{"n1", "n2", "n3", "n5"}
	p.moveOff[5] = "n3" // a balance move was under way: the dead one goes first
	if c, _, ok := p.repair(r, nodes, 3, now); !ok || c.Op != opRemove || c.Member.Name != "n2" {
		t.Fatalf("extra voter with a dead one: %+v %v", c, ok)
	}
	// The one to remove leads: leadership moves first, to a healthy voter
	// leading the fewest.
	nodes["n2"].live, nodes["n2"].dead = true, false
	p.moveOff[5] = "n1"
	nodes["n3"].leaders, nodes["n5"].leaders = 4, 1
	if c, on, ok := p.repair(r, nodes, 3, now); !ok || c.Op != opTransfer || c.Member.Name != "n2" || on != "n1" {
		t.Fatalf("removing the leader: %+v on %s %v, want a transfer to n2", c, on, ok)
	}
	// A draining node's voter is replaced like a dead one's.
	delete(p.moveOff, 5)
	r.Voters = []string{"n1", "n2", "n3"}
	nodes["n3"].draining = true
	if c, _, ok := p.repair(r, nodes, 3, now); !ok || c.Op != opAddLearner || c.Member.Name == "n3" || slices.Contains(r.Voters, c.Member.Name) {
		t.Fatalf("draining voter: %+v %v", c, ok)
	}
}

func TestBalanceMovesFromTheFullestNode(t *testing.T) {
	var rs []replicaReport
	for i := range 6 {
		rs = append(rs, replicaReport{Shard: uint64(10 + i), Start: []byte{byte('a' + i)}, Voters: []string{"n1", "n2", "n3"}, Leader: "n1", Leads: true})
	}
	rs[0].Leader, rs[1].Leader = "n2", "n3"
	p := testPlacement()
	p.tr = nil
	started := map[uint64]replicaChange{}
	p.startHook = func(r replicaReport, on string, c replicaChange) { started[r.Shard] = c }
	nodes := testNodes(5, rs)
	p.balance(context.Background(), directory{Ranges: rs}, nodes, 3, 5)
	moves := 0
	for shard, c := range started {
		if c.Op == opAddLearner {
			moves++
			if c.Member.Name != "n4" && c.Member.Name != "n5" {
				t.Errorf("range %d: a learner on %s, not on an empty node", shard, c.Member.Name)
			}
			if p.moveOff[shard] == "" {
				t.Errorf("range %d: the move does not say which node it empties", shard)
			}
		}
	}
	if moves == 0 || moves > maxBalanceMoves {
		t.Fatalf("%d balance moves started, want 1..%d: %+v", moves, maxBalanceMoves, started)
	}
	transfers := 0
	for _, c := range started {
		if c.Op == opTransfer {
			transfers++
		}
	}
	if transfers == 0 {
		t.Fatalf("n1 leads 4 of 6 ranges on 5 nodes and nothing moved its leadership: %+v", started)
	}
}

// TestBalanceLeadersThroughNodesAtTheirShare: n4 leads 6 of 18 ranges on six
// nodes that hold 9 replicas each, and the other voters of those six, n5 and
// n6, lead 3 each: their share. Rounds of balancing, each transfer applied
// as done, end with every node leading 3: n4's excess goes through chains
// (n4 to n6, n6 to n3, say). When leadership could go only to a voter below
// the share, n5 and n6 never took one and n4 kept its 6; with direct
// transfers to any voter leading two fewer, n4 kept 4.
func TestBalanceLeadersThroughNodesAtTheirShare(t *testing.T) {
	var rs []replicaReport
	add := func(n int, leader string, voters ...string) {
		for range n {
			rs = append(rs, replicaReport{Shard: uint64(10 + len(rs)), Start: []byte{byte('a' + len(rs))}, Voters: voters, Leader: leader, Leads: true})
		}
	}
	add(6, "n4", "n4", "n5", "n6")
	add(3, "n5", "n5", "n1", "n2")
	add(3, "n6", "n6", "n2", "n3")
	add(3, "n1", "n4", "n1", "n3")
	add(3, "n2", "n1", "n2", "n3")
	p := testPlacement()
	p.tr = nil
	for range 20 {
		started := map[uint64]replicaChange{}
		p.startHook = func(r replicaReport, on string, c replicaChange) { started[r.Shard] = c }
		nodes := testNodes(6, rs)
		p.balance(context.Background(), directory{Ranges: rs}, nodes, 3, 6)
		for i := range rs {
			c, ok := started[rs[i].Shard]
			switch {
			case !ok:
			case c.Op != opTransfer:
				t.Fatalf("range %d: %+v; every range has its 3 replicas and every node holds 6: only leadership should move", rs[i].Shard, c)
			default:
				if !slices.Contains(rs[i].Voters, c.Member.Name) {
					t.Fatalf("range %d: leadership to %s, not a voter of %v", rs[i].Shard, c.Member.Name, rs[i].Voters)
				}
				rs[i].Leader = c.Member.Name
			}
		}
	}
	leads := map[string]int{}
	for _, r := range rs {
		leads[r.Leader]++
	}
	for n, l := range leads {
		if l != 3 {
			t.Fatalf("after 20 rounds %s leads %d of 18 ranges on 6 nodes, want 3 each: %v", n, l, leads)
		}
	}
	t.Logf("leaders per node after balancing: %v", leads)
}

// TestBalanceLeadersOfManyRanges: with 600 ranges, all led by n1 (splits keep
// their range's leader), one round starts transfers of 6 of them, one per
// 100 ranges, not 2: at 2 a round a node of thousands of ranges took many
// minutes to even out.
func TestBalanceLeadersOfManyRanges(t *testing.T) {
	var rs []replicaReport
	for i := range 600 {
		rs = append(rs, replicaReport{Shard: uint64(10 + i), Start: []byte{byte(i >> 8), byte(i)}, Voters: []string{"n1", "n2", "n3"}, Leader: "n1", Leads: true})
	}
	p := testPlacement()
	p.tr = nil
	transfers := 0
	p.startHook = func(r replicaReport, on string, c replicaChange) {
		if c.Op == opTransfer {
			transfers++
		}
	}
	p.balance(context.Background(), directory{Ranges: rs}, testNodes(3, rs), 3, 3)
	if transfers != 6 {
		t.Fatalf("one round of 600 ranges led by one node of three started %d transfers, want 6", transfers)
	}
}

// TestHandoverCountsTheNewLeader: until a report shows the leader a transfer
// of the controller moved a range to, the range counts as that node's and
// takes no other transfer; reports lag a round, and counting by them sent a
// second range to the same node, then moved them back.
func TestHandoverCountsTheNewLeader(t *testing.T) {
	p := testPlacement()
	r := replicaReport{Shard: 7, Voters: []string{"n1", "n2", "n3"}, Leader: "n1", Leads: true}
	p.handing[7] = handover{to: "n2", until: time.Now().Add(time.Minute)}
	if l, handing := p.leaderOf(&r); l != "n2" || !handing {
		t.Fatalf("leaderOf during the handover = %s, %v; want n2, true", l, handing)
	}
	nodes := testNodes(3, nil)
	nodes["n1"].leaders = 3 // n1 could give one to n2 or n3
	if chain := p.leaderChain(directory{Ranges: []replicaReport{r}}, nodes, []string{"n1", "n2", "n3"}, map[uint64]bool{}); chain != nil {
		t.Fatalf("a range being handed over was chosen again: %+v", chain)
	}
	r.Leader = "n2"
	if l, handing := p.leaderOf(&r); l != "n2" || handing || len(p.handing) != 0 {
		t.Fatalf("leaderOf once the report shows n2 = %s, %v (handing %v); want n2, false, forgotten", l, handing, p.handing)
	}
	r.Leader = "n1"
	p.handing[7] = handover{to: "n3", until: time.Now().Add(-time.Second)}
	if l, handing := p.leaderOf(&r); l != "n1" || handing {
		t.Fatalf("leaderOf after the handover's time = %s, %v; want n1, false", l, handing)
	}
}

// Peers' replies and reports are outside bytes: decoding them never panics,
// and what decodes has its ranges in order.
func FuzzDecodeDirectory(f *testing.F) {
	d := mergeReports(map[string][]replicaReport{"n1": {{Shard: 1, Voters: []string{"n1"}, End: []byte{0}}, {Shard: 2, Start: []byte{0}, Voters: []string{"n1"}}}})
	b, _ := json.Marshal(d)
	f.Add(b)
	f.Add([]byte(`{"ranges":[{"shard":3,"start":"bQ=="},{"shard":2,"start":"YQ=="}]}`))
	f.Add([]byte(`{"ranges":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDirectory(b)
		if err != nil {
			return
		}
		for i := 1; i < len(d.Ranges); i++ {
			if string(d.Ranges[i-1].Start) > string(d.Ranges[i].Start) {
				t.Fatalf("decoded out of order: %q then %q", d.Ranges[i-1].Start, d.Ranges[i].Start)
			}
		}
		d.lookup([]byte("k"))
	})
}

func FuzzDecodeReports(f *testing.F) {
	b, _ := json.Marshal([]replicaReport{{Shard: 4, Start: []byte("a"), Voters: []string{"n1"}, Lag: map[string]uint64{"n2": 3}}})
	f.Add(b)
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"shard":1,"voters":null,"learners":["x"]}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeReports(b)
		if err != nil {
			return
		}
		d := mergeReports(map[string][]replicaReport{"n1": rs})
		for _, r := range d.Ranges {
			r.replicas()
			r.has("n1")
		}
	})
}

// A forwarded request is decoded by the receiver before anything runs.
func FuzzServeForwardDecode(f *testing.F) {
	for _, req := range []forwardRequest{
		{Kind: forwardPropose, Cmd: kv.Command{Op: kv.OpPut, Key: []byte("k"), Value: []byte("v")}.Marshal()},
		{Kind: forwardGet, Key: []byte("k"), Linearizable: true},
		{Kind: forwardRange, Key: []byte("a"), End: []byte("z"), Limit: 10},
		{Kind: forwardSession, Client: []byte("c"), Request: []byte("r"), Op: kv.OpPut},
	} {
		b, _ := json.Marshal(req)
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"propose","cmd":"AAAA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req forwardRequest
		if json.Unmarshal(b, &req) != nil || req.Kind != forwardPropose {
			return
		}
		kv.UnmarshalCommand(req.Cmd) // must not panic on any bytes
	})
}

// A report or directory asked for with the checksum of the copy the asker
// holds is answered "same" only if it is byte for byte that copy.
func TestUnlessSame(t *testing.T) {
	b := []byte(`[{"shard":1}]`)
	if got := unlessSame(b, sumOf(checksum(b))); !isSame(got) {
		t.Fatalf("the held copy's checksum answered %s", got)
	}
	for _, ask := range [][]byte{nil, sumOf(checksum([]byte(`[{"shard":2}]`))), {1, 2, 3}} {
		if got := unlessSame(b, ask); !bytes.Equal(got, b) {
			t.Fatalf("ask %x answered %s, want the report", ask, got)
		}
	}
	if isSame(b) || checksum(nil) == 0 {
		t.Fatal("a report reads as same, or a checksum is 0 (none)")
	}
}
