package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseRanges(t *testing.T) {
	good := `{"ranges":[{"id":1,"start":"","end":"m","leader":"n1","replicas":["n1","n2","n3"],"bytes":12,"generation":2},` +
		`{"id":7,"start":"m","end":"","leader":"","replicas":["n2","n3","n4"],"learners":["n4"],"bytes":0,"generation":1}]}`
	rs, err := parseRanges([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].ID != 1 || rs[0].End != "m" || rs[0].Leader != "n1" || rs[0].Generation != 2 ||
		rs[1].ID != 7 || rs[1].Start != "m" || rs[1].End != "" || len(rs[1].Replicas) != 3 || rs[1].Learners[0] != "n4" {
		t.Fatalf("parsed %+v", rs)
	}
	if rs, err := parseRanges([]byte(`{"ranges":[]}`)); err != nil || len(rs) != 0 {
		t.Fatalf("no ranges: %v, %v", rs, err)
	}
	for _, bad := range []string{
		``, `null`, `{}`, `{"ranges":null}`, `[]`, `{"ranges":[{"id":"1"}]}`,
		`{"ranges":[]} {}`, // two objects
		`{"ranges":[{"id":2,"start":"m","end":"m"}]}`, // empty range
		`{"ranges":[{"id":2,"start":"m","end":"a"}]}`, // ends before it starts
		`{"ranges":[{"id":2,"start":"m","end":"z"}]`,  // cut short
		`{"ranges":[{"id":-1,"start":"","end":""}]}`,  // id not a uint64
		`{"ranges":[{"id":1,"replicas":"n1"}]}`,       // replicas not a list
	} {
		if rs, err := parseRanges([]byte(bad)); err == nil {
			t.Errorf("parseRanges(%q) = %+v, want an error", bad, rs)
		}
	}
}

func TestParseStatus(t *testing.T) {
	st, err := parseStatus([]byte(`{"id":"n2","leader":"n1","members":[{"id":"n1","http":"10.0.0.1:8000"},{"id":"n2","http":"10.0.0.2:8000"},{"id":"n3","http":""}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.httpAddrs(); st.ID != "n2" || len(got) != 2 || got["n1"] != "10.0.0.1:8000" || got["n2"] != "10.0.0.2:8000" {
		t.Fatalf("status %+v, addresses %v", st, got)
	}
	for _, bad := range []string{``, `{}`, `{"leader":"n1"}`, `{"id":"n1"} x`, `{"id":3}`} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q): want an error", bad)
		}
	}
}

// Merging: the newest generation of a range wins, then a node's word about
// itself as leader; the result is sorted by start.
func TestMergeRanges(t *testing.T) {
	byNode := map[string][]rangeInfo{
		// n1 has not applied the split of range 1 at "m" yet.
		"n1": {{ID: 1, Start: "", End: "", Leader: "n1", Replicas: []string{"n1", "n2"}, Generation: 1}},
		"n2": {
			{ID: 5, Start: "m", End: "", Leader: "n1", Replicas: []string{"n1", "n2"}, Generation: 1},
			{ID: 1, Start: "", End: "m", Leader: "n1", Replicas: []string{"n1", "n2"}, Generation: 2},
		},
		// n3 leads range 9 but n4 thinks nobody does, and n4 is asked later.
		"n3": {{ID: 9, Start: "x", End: "", Leader: "n3", Generation: 4}},
		"n4": {{ID: 9, Start: "x", End: "", Leader: "", Generation: 4}},
	}
	got := mergeRanges(byNode)
	want := []string{`1 "" "m" n1`, `5 "m" "" n1`, `9 "x" "" n3`}
	if len(got) != len(want) {
		t.Fatalf("merged %+v, want %v", got, want)
	}
	for i, r := range got {
		if s := fmt.Sprintf("%d %q %q %s", r.ID, r.Start, r.End, r.Leader); s != want[i] {
			t.Errorf("range %d: %s, want %s", i, s, want[i])
		}
	}
	l := layoutOf(got, []string{"n1", "n2", "n3", "n4", "n5"})
	if l.ranges != 3 || l.leaderless != 0 || l.leads["n1"] != 2 || l.leads["n3"] != 1 || l.replicas["n2"] != 2 ||
		l.replicas["n5"] != 0 || formatCounts(l.leads) != "n1=2 n2=0 n3=1 n4=0 n5=0" {
		t.Errorf("layout %+v (leads %s)", l, formatCounts(l.leads))
	}
}

func TestRangeTableLeaderOf(t *testing.T) {
	tb := newRangeTable([]rangeInfo{
		{ID: 3, Start: "k", End: "p", Leader: "n3"},
		{ID: 1, Start: "", End: "c", Leader: "n1"},
		{ID: 2, Start: "c", End: "k", Leader: ""},
		// "p" to "t" is missing: a split some nodes have not reported.
		{ID: 4, Start: "t", End: "", Leader: "n4"},
	})
	for key, want := range map[string]string{
		"": "n1", "a": "n1", "bzzz": "n1", "c": "", "j": "", "k": "n3", "o\xff": "n3",
		"p": "", "s": "", "t": "n4", "zzz": "n4", "\xff\xff": "n4",
	} {
		if got := tb.leaderOf(key); got != want {
			t.Errorf("leaderOf(%q) = %q, want %q", key, got, want)
		}
	}
	if got := newRangeTable(nil).leaderOf("a"); got != "" {
		t.Errorf("no ranges: leaderOf = %q", got)
	}
}

// fakeNode is an HTTP server that answers /cluster/status and
// /cluster/ranges as the distkv node id would, and counts the PUTs of each
// key it receives.
type fakeNode struct {
	id  string
	srv *httptest.Server

	mu     sync.Mutex
	ranges string // the body of /cluster/ranges
	// rangesAt, if set, gives the body of the look-th /cluster/ranges
	// instead (1-based).
	rangesAt func(look int64) string
	puts     map[string]int
	peers    func() string // the members list of /cluster/status
	looks    atomic.Int64  // /cluster/ranges answered
}

func newFakeNode(t *testing.T, id string) *fakeNode {
	n := &fakeNode{id: id, ranges: `{"ranges":[]}`, puts: map[string]int{}}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		switch {
		case r.URL.Path == "/cluster/status":
			fmt.Fprintf(w, `{"id":%q,"leader":"n1","members":[%s]}`, n.id, n.peers())
		case r.URL.Path == "/cluster/ranges":
			look := n.looks.Add(1)
			if n.rangesAt != nil {
				n.ranges = n.rangesAt(look)
			}
			w.Write([]byte(n.ranges))
		case r.Method == http.MethodPut:
			n.puts[strings.TrimPrefix(r.URL.Path, "/key/")]++
			w.Write([]byte(`{"status":"ok","id":1}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) addr() string { return strings.TrimPrefix(n.srv.URL, "http://") }

func (n *fakeNode) setRanges(body string) {
	n.mu.Lock()
	n.ranges = body
	n.mu.Unlock()
}

// threeFakeNodes starts n1..n3, each listing all three as members.
func threeFakeNodes(t *testing.T) []*fakeNode {
	nodes := []*fakeNode{newFakeNode(t, "n1"), newFakeNode(t, "n2"), newFakeNode(t, "n3")}
	members := func() string {
		var parts []string
		for _, n := range nodes {
			parts = append(parts, fmt.Sprintf(`{"id":%q,"http":%q}`, n.id, n.addr()))
		}
		return strings.Join(parts, ",")
	}
	for _, n := range nodes {
		n.peers = members
	}
	return nodes
}

// Route "range" sends each write to the leader of its key's range, and a key
// whose range has no known leader where "rr" would.
func TestRouteRange(t *testing.T) {
	nodes := threeFakeNodes(t)
	// Keys bench-0000000000..04 lead by n2, 05..07 by n3, 08..09 by nobody.
	nodes[0].setRanges(`{"ranges":[{"id":1,"start":"","end":"bench-0000000005","leader":"n2","replicas":["n1","n2"],"generation":3},` +
		`{"id":4,"start":"bench-0000000008","end":"","leader":"","replicas":["n1","n3"],"generation":1}]}`)
	nodes[2].setRanges(`{"ranges":[{"id":2,"start":"bench-0000000005","end":"bench-0000000008","leader":"n3","replicas":["n2","n3"],"generation":1}]}`)
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.addr())
	}
	c := config{target: "distkv", clients: 1, ops: 200, workload: "write", keys: 10,
		valueSize: 64, dist: "uniform", timeout: 5 * time.Second, route: "range", quiet: true, conns: 1}
	res, err := runConfig(t, &c, strings.Join(eps, ","))
	if err != nil || res.errors != 0 || res.ops != 200 {
		t.Fatalf("err %v, %d ops, %d errors (%s)", err, res.ops, res.errors, res.lastErr)
	}
	want := map[string]string{} // key -> the node that must get all its PUTs
	for i := 0; i < 10; i++ {
		switch {
		case i < 5:
			want[keyName(i)] = "n2"
		case i < 8:
			want[keyName(i)] = "n3"
		default:
			want[keyName(i)] = "n1" // no leader: rr, and the one worker is worker 0
		}
	}
	total := 0
	for _, n := range nodes {
		for k, cnt := range n.puts {
			total += cnt
			if want[k] != n.id {
				t.Errorf("%s got %d PUTs of %s, which belong at %s", n.id, cnt, k, want[k])
			}
		}
	}
	if total != 200 {
		t.Errorf("%d PUTs arrived, want 200", total)
	}

	bad := c
	bad.target = "null"
	if err := bad.validate(strings.Join(eps, ",")); err == nil {
		t.Error("-route range with -target null: validate accepted it")
	}
}

// waitSettled returns once the ranges stop changing, with the last of them,
// and fails when they keep changing past its wait.
func TestWaitSettled(t *testing.T) {
	nodes := threeFakeNodes(t)
	c := config{clients: 1}
	for _, n := range nodes {
		c.endpoints = append(c.endpoints, n.addr())
	}
	tg := newHTTPTarget(&c)
	defer tg.Close()
	ranges := func(leader string, n, gen int) string {
		var parts []string
		for i := 0; i < n; i++ {
			end := ""
			if i < n-1 {
				end = keyName(i + 1)
			}
			start := keyName(i)
			if i == 0 {
				start = ""
			}
			parts = append(parts, fmt.Sprintf(`{"id":%d,"start":%q,"end":%q,"leader":%q,"replicas":["n1","n2","n3"],"generation":%d}`, i+1, start, end, leader, gen))
		}
		return `{"ranges":[` + strings.Join(parts, ",") + `]}`
	}

	// The ranges split on each of the first 10 looks at n1, then stay.
	nodes[0].mu.Lock()
	nodes[0].rangesAt = func(look int64) string { return ranges("n1", int(min(look, 10)), 1) }
	nodes[0].mu.Unlock()
	start := time.Now()
	v, stable, err := tg.waitSettled(context.Background(), 200*time.Millisecond, 20*time.Second, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if looks := nodes[0].looks.Load(); looks < 10 || stable < 200*time.Millisecond {
		t.Fatalf("settled after %d looks (stable for %v); want at least 10 looks, 200ms", looks, stable)
	}
	nodes[0].mu.Lock()
	rs, _ := parseRanges([]byte(nodes[0].ranges))
	nodes[0].mu.Unlock()
	if len(v.ranges) != 10 || signature(v.ranges) != signature(rs) || len(v.nodes) != 3 || v.http["n3"] != nodes[2].addr() {
		t.Fatalf("settled on %d ranges (nodes %v, http %v), want the last of n1's %d", len(v.ranges), v.nodes, v.http, len(rs))
	}
	t.Logf("settled on %d ranges after %v", len(v.ranges), time.Since(start).Round(time.Millisecond))

	// A leader that keeps moving (in a newer generation, n2's word) never
	// settles.
	nodes[1].mu.Lock()
	nodes[1].rangesAt = func(look int64) string { return ranges([]string{"n2", "n3"}[look%2], 3, 2) }
	nodes[1].mu.Unlock()
	if _, _, err := tg.waitSettled(context.Background(), 300*time.Millisecond, time.Second, 20*time.Millisecond); err == nil ||
		!strings.Contains(err.Error(), "did not stay the same") {
		t.Fatalf("moving leader: err %v, want one that says the ranges did not stay the same", err)
	}
}

func FuzzParseRanges(f *testing.F) {
	f.Add([]byte(`{"ranges":[{"id":1,"start":"","end":"","leader":"n1","replicas":["n1","n2","n3"],"bytes":123456}]}`))
	f.Add([]byte(`{"ranges":[{"id":1,"start":"","end":"m","leader":"n1","replicas":["n1"],"generation":2},{"id":7,"start":"m","end":"","leader":"","replicas":["n2"],"learners":["n2"]}]}`))
	f.Add([]byte(`{"ranges":[{"id":2,"start":"m","end":"a"}]}`))
	f.Add([]byte(`{"ranges":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := parseRanges(data)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.End != "" && r.End <= r.Start {
				t.Fatalf("accepted range %+v", r)
			}
		}
		merged := mergeRanges(map[string][]rangeInfo{"n1": rs, "n2": rs})
		tb := newRangeTable(merged)
		for _, r := range merged {
			tb.leaderOf(r.Start) // must not panic
		}
		_ = layoutOf(merged, []string{"n1"})
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"id":"n1","cluster_id":"f38f4e34ebdd33a9","leader":"n1","term":2,"members":[{"id":"n1","peer":"10.0.0.1:9000","http":"10.0.0.1:8000","role":"voter"}],"ranges":1,"range_leaders":1}`))
	f.Add([]byte(`{"id":""}`))
	f.Add([]byte(`{"id":"n1","members":[{"id":"n2"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseStatus(data)
		if err != nil {
			return
		}
		if st.ID == "" {
			t.Fatal("accepted a status without an id")
		}
		for id, addr := range st.httpAddrs() {
			if id == "" || addr == "" {
				t.Fatalf("address map has %q -> %q", id, addr)
			}
		}
	})
}
