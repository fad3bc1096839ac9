package main

// The ranges of a distkv cluster as the load generator sees them: GET
// /cluster/ranges of every node, merged into one view of the key space, for
// `-route range` (each write goes to the node that leads its key's range) and
// for `kvbench ranges` (wait until the ranges stop changing, then say how
// they lie on the nodes; bench/scaleout.sh uses it between its load and its
// measured run).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// maxInfoBody caps what is read of a /cluster/ranges or /cluster/status
// answer: thousands of ranges fit many times over.
const maxInfoBody = 32 << 20

// rangeInfo is one range in GET /cluster/ranges: keys from Start (inclusive)
// to End (exclusive, "" the end of the key space), the node leading its Raft
// group ("" while none is known) and its replicas.
type rangeInfo struct {
	ID         uint64   `json:"id"`
	Start      string   `json:"start"`
	End        string   `json:"end"`
	Leader     string   `json:"leader"`
	Replicas   []string `json:"replicas"`
	Learners   []string `json:"learners,omitempty"`
	Bytes      int64    `json:"bytes"`
	Generation uint64   `json:"generation"`
}

// parseRanges decodes a GET /cluster/ranges body, {"ranges":[...]}. It refuses
// anything else, trailing data included, and a range whose end is not after
// its start, so a routing table built from it never has an empty range.
func parseRanges(body []byte) ([]rangeInfo, error) {
	var v struct {
		Ranges *[]rangeInfo `json:"ranges"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("ranges: %w", err)
	}
	if dec.More() {
		return nil, errors.New("ranges: data after the JSON object")
	}
	if v.Ranges == nil {
		return nil, errors.New(`ranges: no "ranges" list`)
	}
	for _, r := range *v.Ranges {
		if r.End != "" && r.End <= r.Start {
			return nil, fmt.Errorf("ranges: range %d ends at %q, not after its start %q", r.ID, r.End, r.Start)
		}
	}
	return *v.Ranges, nil
}

// nodeStatus is the part of GET /cluster/status kvbench reads: the answering
// node's id, the leader of the first group and every member's HTTP address.
type nodeStatus struct {
	ID      string `json:"id"`
	Leader  string `json:"leader"`
	Members []struct {
		ID   string `json:"id"`
		HTTP string `json:"http"`
	} `json:"members"`
}

// parseStatus decodes a GET /cluster/status body; it needs the node's id.
func parseStatus(body []byte) (nodeStatus, error) {
	var st nodeStatus
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&st); err != nil {
		return nodeStatus{}, fmt.Errorf("status: %w", err)
	}
	if dec.More() {
		return nodeStatus{}, errors.New("status: data after the JSON object")
	}
	if st.ID == "" {
		return nodeStatus{}, errors.New(`status: no node "id"`)
	}
	return st, nil
}

// httpAddrs maps member ids to their HTTP addresses (members without one are
// left out).
func (st nodeStatus) httpAddrs() map[string]string {
	m := map[string]string{}
	for _, mb := range st.Members {
		if mb.ID != "" && mb.HTTP != "" {
			m[mb.ID] = mb.HTTP
		}
	}
	return m
}

// mergeRanges joins what each node reported (node id -> its ranges) into one
// list sorted by start. A range several nodes hold is taken from the report
// with the highest generation (the newest bounds); among equal generations,
// a node's report of itself as leader wins, then any report that names a
// leader, then the first node's by id.
func mergeRanges(byNode map[string][]rangeInfo) []rangeInfo {
	nodes := make([]string, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	best := map[uint64]rangeInfo{}
	bestBy := map[uint64]string{}
	rank := func(r rangeInfo, by string) int {
		switch {
		case r.Leader != "" && r.Leader == by:
			return 2
		case r.Leader != "":
			return 1
		}
		return 0
	}
	for _, n := range nodes {
		for _, r := range byNode[n] {
			b, ok := best[r.ID]
			if !ok || r.Generation > b.Generation ||
				(r.Generation == b.Generation && rank(r, n) > rank(b, bestBy[r.ID])) {
				best[r.ID], bestBy[r.ID] = r, n
			}
		}
	}
	out := make([]rangeInfo, 0, len(best))
	for _, r := range best {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b rangeInfo) int {
		if c := strings.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return int(a.ID) - int(b.ID)
	})
	return out
}

// layout says where ranges lie: for each node, how many it holds a replica of
// and how many it leads.
type layout struct {
	ranges     int
	leaderless int // ranges with no known leader
	replicas   map[string]int
	leads      map[string]int
}

func layoutOf(rs []rangeInfo, nodes []string) layout {
	l := layout{ranges: len(rs), replicas: map[string]int{}, leads: map[string]int{}}
	for _, n := range nodes {
		l.replicas[n], l.leads[n] = 0, 0
	}
	for _, r := range rs {
		for _, n := range r.Replicas {
			l.replicas[n]++
		}
		if r.Leader == "" {
			l.leaderless++
		} else {
			l.leads[r.Leader]++
		}
	}
	return l
}

// signature is what must stay the same for the ranges to count as stable:
// every range's id, bounds, replicas and leader (not its size).
func signature(rs []rangeInfo) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%d %q %q %s %v %v\n", r.ID, r.Start, r.End, r.Leader, r.Replicas, r.Learners)
	}
	return b.String()
}

// rangeTable finds the leader of a key's range. Its ranges are sorted by
// start; a key outside every range (a gap while a split is seen by some nodes
// only) has no leader.
type rangeTable struct {
	ranges []rangeInfo
}

func newRangeTable(rs []rangeInfo) *rangeTable {
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b rangeInfo) int { return strings.Compare(a.Start, b.Start) })
	return &rangeTable{ranges: rs}
}

// leaderOf returns the leader of the range holding key, "" if none is known.
func (t *rangeTable) leaderOf(key string) string {
	// The last range starting at or before key.
	i := sort.Search(len(t.ranges), func(i int) bool { return t.ranges[i].Start > key }) - 1
	if i < 0 {
		return ""
	}
	r := t.ranges[i]
	if r.End != "" && key >= r.End {
		return ""
	}
	return r.Leader
}

// get fetches path from base and returns the body of a 200 answer.
func (t *httpTarget) get(ctx context.Context, base, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInfoBody))
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", base, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s%s: %s: %s", base, path, resp.Status, bytes.TrimSpace(body[:min(len(body), 256)]))
	}
	return body, nil
}

// clusterView is one look at every endpoint: each node's ranges, merged, and
// the HTTP address of every member the nodes know.
type clusterView struct {
	ranges []rangeInfo
	nodes  []string          // ids of the endpoints' nodes, sorted
	http   map[string]string // member id -> HTTP address
}

// look asks every endpoint for its status and ranges. Every endpoint must
// answer: a node that does not is a failed benchmark, not a smaller cluster.
func (t *httpTarget) look(ctx context.Context) (clusterView, error) {
	v := clusterView{http: map[string]string{}}
	byNode := map[string][]rangeInfo{}
	for _, base := range t.bases {
		body, err := t.get(ctx, base, "/cluster/status")
		if err != nil {
			return v, err
		}
		st, err := parseStatus(body)
		if err != nil {
			return v, fmt.Errorf("%s: %w", base, err)
		}
		for id, addr := range st.httpAddrs() {
			v.http[id] = addr
		}
		if body, err = t.get(ctx, base, "/cluster/ranges"); err != nil {
			return v, err
		}
		rs, err := parseRanges(body)
		if err != nil {
			return v, fmt.Errorf("%s: %w", base, err)
		}
		byNode[st.ID] = rs
		v.nodes = append(v.nodes, st.ID)
	}
	sort.Strings(v.nodes)
	v.ranges = mergeRanges(byNode)
	return v, nil
}

// useRangeLeaders makes every later request go to the leader of its key's
// range, as the endpoints report the ranges now; a key whose range has no
// known leader, or whose leader has no known HTTP address, goes where -route
// rr would send it. It reports on stderr how the leaders lie.
func (t *httpTarget) useRangeLeaders(ctx context.Context, quiet bool) error {
	v, err := t.look(ctx)
	if err != nil {
		return fmt.Errorf("-route range: %w", err)
	}
	t.table = newRangeTable(v.ranges)
	t.memberBase = map[string]string{}
	for id, addr := range v.http {
		t.memberBase[id] = t.scheme + "://" + addr
	}
	t.route = "range"
	if !quiet {
		l := layoutOf(v.ranges, v.nodes)
		fmt.Fprintf(os.Stderr, "route range: %d ranges, %d without a leader; leads per node: %s\n",
			l.ranges, l.leaderless, formatCounts(l.leads))
	}
	return nil
}

// formatCounts prints n1=3 n2=0 ..., sorted by node id.
func formatCounts(m map[string]int) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%s=%d", id, m[id])
	}
	return strings.Join(parts, " ")
}

// serveRanges is `kvbench ranges`: with -settle 0 it looks once; otherwise
// it looks every -interval until the ranges (ids, bounds, replicas, leaders)
// have not changed for -settle, or fails after -wait. Then it prints one
// RANGES line and one NODE line per node, for scripts.
func serveRanges(args []string) error {
	fs := flag.NewFlagSet("ranges", flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002", "comma-separated HTTP addresses of the nodes, every one of which is asked")
	settle := fs.Duration("settle", 0, "wait until the ranges have not changed for this long (0: look once)")
	wait := fs.Duration("wait", 2*time.Minute, "give up when the ranges have not settled after this long")
	interval := fs.Duration("interval", 500*time.Millisecond, "time between looks")
	token := fs.String("token", os.Getenv("DISTKV_TOKEN"), "bearer token (default $DISTKV_TOKEN)")
	fs.Parse(args)
	c := config{clients: 1, token: *token}
	for _, e := range strings.Split(*endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.endpoints = append(c.endpoints, e)
		}
	}
	if len(c.endpoints) == 0 {
		return errors.New("-endpoints is empty")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t := newHTTPTarget(&c)
	defer t.Close()

	start := time.Now()
	v, stable, err := t.waitSettled(ctx, *settle, *wait, *interval)
	if err != nil {
		return err
	}
	l := layoutOf(v.ranges, v.nodes)
	fmt.Printf("RANGES ranges=%d leaderless=%d nodes=%d waited_s=%.1f stable_s=%.1f\n",
		l.ranges, l.leaderless, len(v.nodes), time.Since(start).Seconds(), stable.Seconds())
	ids := make([]string, 0, len(l.replicas))
	for id := range l.replicas {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Printf("NODE id=%s replicas=%d leads=%d\n", id, l.replicas[id], l.leads[id])
	}
	return nil
}

// waitSettled looks at the cluster every interval until the ranges (ids,
// bounds, replicas, leaders) have not changed for settle, and returns the
// last look and how long it had been stable. It fails once wait has passed
// without that. A look that fails (a node busy splitting may miss one)
// restarts the count; so does any change.
func (t *httpTarget) waitSettled(ctx context.Context, settle, wait, interval time.Duration) (clusterView, time.Duration, error) {
	start := time.Now()
	var sig string
	var since time.Time // when the ranges were first seen as sig
	for {
		v, err := t.look(ctx)
		now := time.Now()
		switch {
		case err != nil && ctx.Err() != nil:
			return v, 0, ctx.Err()
		case err != nil:
			if now.Sub(start) > wait {
				return v, 0, err
			}
			sig = ""
		case since.IsZero() || signature(v.ranges) != sig:
			sig, since = signature(v.ranges), now
		}
		if err == nil && now.Sub(since) >= settle {
			return v, now.Sub(since), nil
		}
		if now.Sub(start) > wait {
			return v, 0, fmt.Errorf("the ranges did not stay the same for %v within %v (%d ranges at the last look)", settle, wait, len(v.ranges))
		}
		select {
		case <-ctx.Done():
			return v, 0, ctx.Err()
		case <-time.After(interval):
		}
	}
}
