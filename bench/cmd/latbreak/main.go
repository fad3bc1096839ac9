// Command latbreak splits the latency of writes across the nodes of a local
// distkv cluster, from the events its nodes record with
// DISTKV_LATENCY_TRACE=PREFIX (see internal/lattrace):
//
//	DISTKV_LATENCY_TRACE=/tmp/lt distkv dev ...   # then load it, e.g. kvbench
//	latbreak /tmp/lt
//
// For every write answered on the node it was sent to (its origin), it finds
// the entry's index and, on each node, the first event of each kind at or
// after the moment the write was proposed that covers that index; it prints,
// separately for writes sent to the leader and to a follower, the median time
// from the proposal to each such event. Roles: O is the origin; L the leader
// (for writes sent to a follower); Q, Q1 and Q2 the other nodes. Events:
// p handed to Raft, a appended, w written, f synced, s3 MsgApp sent, m3 MsgApp
// received, m4 MsgAppResp received, n notice sent, T notice taken,
// c committed, A applied, X answered by Raft, H/Y the HTTP handler's start
// and answer (H is before the proposal: negative).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type event struct {
	t    int64
	kind string // the event letter, with the message type for s and m (s3: MsgApp sent)
	a, b uint64
}

// node is one process's events by kind, each in time order.
type node struct {
	name   string
	byKind map[string][]event
}

func main() {
	skip := flag.Int("skip", 50, "writes to leave out at the start of each node's trace (connection set-up)")
	within := flag.Duration("within", 0, "ignore events later than this after the proposal (0: 5ms)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: latbreak [-skip N] PREFIX   (reads PREFIX.* written by DISTKV_LATENCY_TRACE=PREFIX)")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	files, err := filepath.Glob(flag.Arg(0) + ".*")
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "latbreak: no files %s.*\n", flag.Arg(0))
		os.Exit(1)
	}
	var nodes []*node
	for _, f := range files {
		n, err := readFile(f)
		if err != nil {
			fmt.Fprintf(os.Stderr, "latbreak: %v\n", err)
			os.Exit(1)
		}
		if len(n.byKind) > 0 {
			nodes = append(nodes, n)
		}
	}
	win := int64(5e6)
	if *within > 0 {
		win = within.Nanoseconds()
	}
	if err := report(os.Stdout, nodes, *skip, win); err != nil {
		fmt.Fprintf(os.Stderr, "latbreak: %v\n", err)
		os.Exit(1)
	}
}

func readFile(path string) (*node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(path, f)
}

// parse reads lines "unix-ns letter a b".
func parse(name string, r io.Reader) (*node, error) {
	n := &node{name: name, byKind: map[string][]event{}}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) != 4 || len(f[1]) != 1 {
			return nil, fmt.Errorf("%s:%d: want \"time event a b\", got %q", name, line, sc.Text())
		}
		t, err1 := strconv.ParseInt(f[0], 10, 64)
		a, err2 := strconv.ParseUint(f[2], 10, 64)
		b, err3 := strconv.ParseUint(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("%s:%d: bad number in %q", name, line, sc.Text())
		}
		kind := f[1]
		if kind == "s" || kind == "m" {
			kind += strconv.FormatUint(b, 10)
		}
		n.byKind[kind] = append(n.byKind[kind], event{t: t, kind: kind, a: a, b: b})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, evs := range n.byKind {
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].t < evs[j].t })
	}
	return n, nil
}

// firstCovering returns the time of the first event of kind on n at or after
// t0 (and within win of it) whose a is at least index.
func (n *node) firstCovering(kind string, t0, win int64, index uint64) (int64, bool) {
	evs := n.byKind[kind]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].t >= t0 })
	for ; i < len(evs) && evs[i].t-t0 <= win; i++ {
		if evs[i].a >= index {
			return evs[i].t, true
		}
	}
	return 0, false
}

var kinds = []string{"p", "a", "s3", "w", "f", "m3", "m4", "n", "T", "c", "A"}

// pairs are per-write differences worth printing: they are not the
// difference of the medians.
var pairs = [][2]string{{"O:f", "O:c"}, {"O:c", "O:A"}, {"O:A", "O:X"}, {"L:n", "O:T"}, {"O:f", "O:T"}}

// report prints the breakdown of writes sent to the leader and to followers.
func report(w io.Writer, nodes []*node, skip int, win int64) error {
	if len(nodes) < 2 {
		return fmt.Errorf("%d node traces; want those of every node of the cluster", len(nodes))
	}
	// The leader is the node that sent the most MsgApp messages.
	leader := nodes[0]
	for _, n := range nodes {
		if len(n.byKind["s3"]) > len(leader.byKind["s3"]) {
			leader = n
		}
	}
	type group struct {
		total  []int64
		byStep map[string][]int64
	}
	groups := map[string]*group{}
	for _, o := range nodes {
		applied := map[uint64]uint64{} // proposal id -> index
		for _, e := range o.byKind["A"] {
			applied[e.b] = e.a
		}
		answered := map[uint64]int64{}
		for _, e := range o.byKind["X"] {
			answered[e.a] = e.t
		}
		roles := map[string]*node{"O": o}
		var others []*node
		for _, n := range nodes {
			if n != o {
				others = append(others, n)
			}
		}
		name := "leader"
		if o == leader {
			for i, n := range others {
				roles[fmt.Sprintf("Q%d", i+1)] = n
			}
		} else {
			name = "follower"
			roles["L"] = leader
			for _, n := range others {
				if n != leader {
					roles["Q"] = n
				}
			}
		}
		g := groups[name]
		if g == nil {
			g = &group{byStep: map[string][]int64{}}
			groups[name] = g
		}
		props := o.byKind["P"]
		for k, p := range props {
			if k < skip {
				continue
			}
			id, t0 := p.a, p.t
			index, ok1 := applied[id]
			end, ok2 := answered[id]
			if !ok1 || !ok2 {
				continue
			}
			g.total = append(g.total, end-t0)
			at := map[string]int64{"O:X": end - t0}
			hs := o.byKind["H"]
			if i := sort.Search(len(hs), func(i int) bool { return hs[i].t > t0 }); i > 0 && t0-hs[i-1].t <= win {
				at["O:H"] = hs[i-1].t - t0
			}
			if t, ok := o.firstCovering("Y", end, win, 0); ok {
				at["O:Y"] = t - t0
			}
			for role, n := range roles {
				for _, kind := range kinds {
					var t int64
					var ok bool
					if (kind == "n" || kind == "T") && o == leader {
						continue // notices go only to followers that forwarded a write
					}
					if kind == "p" {
						if role != "O" {
							continue
						}
						t, ok = firstWithA(n.byKind["p"], t0, win, id)
					} else {
						t, ok = n.firstCovering(kind, t0, win, index)
					}
					if ok {
						at[role+":"+kind] = t - t0
					}
				}
			}
			for k, v := range at {
				g.byStep[k] = append(g.byStep[k], v)
			}
			for _, pr := range pairs {
				x, okx := at[pr[0]]
				y, oky := at[pr[1]]
				if okx && oky {
					k := pr[1] + " - " + pr[0]
					g.byStep[k] = append(g.byStep[k], y-x)
				}
			}
		}
	}
	for _, name := range []string{"leader", "follower"} {
		g := groups[name]
		if g == nil || len(g.total) == 0 {
			continue
		}
		fmt.Fprintf(w, "writes sent to the %s: %d, median %s from proposal to answer\n", name, len(g.total), us(median(g.total)))
		type row struct {
			step string
			med  int64
			n    int
		}
		var rows []row
		for step, v := range g.byStep {
			if 10*len(v) >= 3*len(g.total) { // present for at least 30% of the writes
				rows = append(rows, row{step, median(v), len(v)})
			}
		}
		slices.SortFunc(rows, func(a, b row) int {
			if c := strings.Count(a.step, " - ") - strings.Count(b.step, " - "); c != 0 {
				return c
			}
			if a.med != b.med {
				return int(a.med - b.med)
			}
			return strings.Compare(a.step, b.step)
		})
		for _, r := range rows {
			fmt.Fprintf(w, "  %-12s %9s  (%d)\n", r.step, us(r.med), r.n)
		}
	}
	return nil
}

func firstWithA(evs []event, t0, win int64, a uint64) (int64, bool) {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].t >= t0 })
	for ; i < len(evs) && evs[i].t-t0 <= win; i++ {
		if evs[i].a == a {
			return evs[i].t, true
		}
	}
	return 0, false
}

func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func us(ns int64) string { return fmt.Sprintf("%d us", (ns+500*sign(ns))/1000) }

func sign(x int64) int64 {
	if x < 0 {
		return -1
	}
	return 1
}
