package chaos

import (
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/distkv/distkv/test/netproxy"
)

// The faults the nemesis injects, one at a time.
var faultKinds = []string{
	"kill", "kill-leader", "pause", "isolate-leader", "partition", "one-way",
	"delay", "lossy", "snapshot-partition", "member-replace", "transfer",
	"kill-long",
}

// chaosFaults limits the nemesis to some kinds of fault, to chase one.
var chaosFaults = flag.String("chaos.faults", "", "comma-separated fault kinds to inject (default: all of "+strings.Join(faultKinds, ",")+" but kill-long; see roundFaults)")

// enabledFaults is the kinds -chaos.faults names, or all of them.
func enabledFaults() ([]string, error) {
	if *chaosFaults == "" {
		return faultKinds, nil
	}
	var kinds []string
	for _, k := range strings.Split(*chaosFaults, ",") {
		if !slices.Contains(faultKinds, k) {
			return nil, fmt.Errorf("-chaos.faults: no fault %q; there are %s", k, strings.Join(faultKinds, ","))
		}
		kinds = append(kinds, k)
	}
	return kinds, nil
}

// onlyIfNamed are the kinds a round injects only if -chaos.faults names
// them, except kill-long in a sharded round (unless
// -chaos.sharded-kill-long=false): without placement a long kill is a kill.
var onlyIfNamed = []string{"kill-long"}

// notSharded are the kinds a sharded round does not inject:
// snapshot-partition waits for snapshots past one group's log index, which
// says nothing of the other ranges' logs. (member-replace is injected: the
// removal drains the member, and placement promotes the new one.)
var notSharded = []string{"snapshot-partition"}

// chaosKillLong adds kill-long to a sharded round's faults: a kill held past
// --dead-node-timeout, so that placement moves the node's replicas away
// while it is down, and the node comes back with replicas removed from it.
var chaosKillLong = flag.Bool("chaos.sharded-kill-long", true, "inject kill-long (a kill held past --dead-node-timeout) in sharded rounds")

// roundFaults is the kinds a round injects: those -chaos.faults names, or by
// default all but onlyIfNamed, less notSharded in a sharded round.
func roundFaults(sharded bool) ([]string, error) {
	kinds, err := enabledFaults()
	if err != nil {
		return nil, err
	}
	named := *chaosFaults != ""
	var out []string
	for _, k := range kinds {
		switch {
		case sharded && slices.Contains(notSharded, k):
			if named {
				return nil, fmt.Errorf("-chaos.faults: %s is not injected in a sharded round", k)
			}
		case !named && slices.Contains(onlyIfNamed, k) && !(sharded && k == "kill-long" && *chaosKillLong):
		default:
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-chaos.faults: no fault left to inject")
	}
	return out, nil
}

// nemesis injects faults into c, holding each for 1-3 s (a snapshot partition
// until the log was compacted past the isolated follower) and healing it
// before the next, and records them for the summary and the visualization.
type nemesis struct {
	c        *cluster
	rng      *rand.Rand
	h        *history
	log      *os.File
	progress func(format string, args ...any) // one line per fault; may be nil
	// kinds are the faults to inject; nil: enabledFaults.
	kinds []string
	// opCount, if set, counts the operations for progress lines instead
	// of h (a round whose clients record elsewhere).
	opCount func() int

	mu     sync.Mutex
	counts map[string]int
	events []porcupine.Annotation
}

func newNemesis(c *cluster, seed int64, h *history, log *os.File) *nemesis {
	n := &nemesis{c: c, rng: rand.New(rand.NewSource(seed)), h: h, log: log, counts: map[string]int{}}
	c.logf, c.note = n.logf, n.note
	return n
}

// fault is one injected fault.
type fault struct {
	what string
	// hold keeps the fault in place; nil holds it for the drawn time.
	hold func(stop <-chan struct{}, d time.Duration)
	// healed runs after the cluster was healed and reports on or checks the
	// recovery; nil when there is nothing to check.
	healed func() error
}

// run injects faults until stop is closed, then heals the cluster. It
// returns the first error healing met: a node that would not come back.
func (n *nemesis) run(stop <-chan struct{}) error {
	kinds := n.kinds
	if kinds == nil {
		var err error
		if kinds, err = enabledFaults(); err != nil {
			return err
		}
	}
	for {
		quiet := 500*time.Millisecond + time.Duration(n.rng.Int63n(int64(time.Second)))
		select {
		case <-stop:
			return nil
		case <-time.After(quiet):
		}
		kind := kinds[n.rng.Intn(len(kinds))]
		hold := time.Second + time.Duration(n.rng.Int63n(int64(2*time.Second)))
		start := n.h.now()
		f, err := n.inject(kind)
		if err != nil {
			n.logf("%s skipped: %v", kind, err)
			continue
		}
		n.logf("%s: %s", kind, f.what)
		if n.progress != nil {
			n.progress("%7.1fs ops=%d  %s: %s", time.Duration(start).Seconds(), n.ops(), kind, f.what)
		}
		if f.hold != nil {
			f.hold(stop, hold)
		} else {
			select {
			case <-stop:
			case <-time.After(hold):
			}
		}
		err = n.c.heal()
		if err == nil && f.healed != nil {
			err = f.healed()
		}
		took := time.Duration(n.h.now() - start).Round(time.Millisecond)
		n.logf("healed %s after %v", kind, took)
		if n.progress != nil {
			n.progress("%7.1fs ops=%d  healed %s after %v", time.Duration(n.h.now()).Seconds(), n.ops(), kind, took)
		}
		n.mu.Lock()
		n.counts[kind]++
		n.events = append(n.events, porcupine.Annotation{Tag: "nemesis", Start: start, End: n.h.now(),
			Description: kind, Details: f.what, BackgroundColor: "#ffd6d6"})
		n.mu.Unlock()
		if err != nil {
			return fmt.Errorf("healing %s (%s): %w", kind, f.what, err)
		}
	}
}

// ops is the number of operations recorded so far, for progress lines.
func (n *nemesis) ops() int {
	if n.opCount != nil {
		return n.opCount()
	}
	n.h.mu.Lock()
	defer n.h.mu.Unlock()
	return len(n.h.ops)
}

// note counts an outcome that is not a fault of its own, such as a snapshot
// transfer that a snapshot partition caused.
func (n *nemesis) note(kind string) {
	n.mu.Lock()
	n.counts[kind]++
	n.mu.Unlock()
}

// inject starts one fault and says what it did.
func (n *nemesis) inject(kind string) (*fault, error) {
	c := n.c
	nn := len(c.nodes)
	i := n.rng.Intn(nn)
	j := (i + 1 + n.rng.Intn(nn-1)) % nn
	switch kind {
	case "kill-leader", "isolate-leader", "transfer", "snapshot-partition":
		l, err := c.leader(5 * time.Second)
		if err != nil {
			return nil, err
		}
		switch kind {
		case "snapshot-partition":
			// A follower: the two others keep a quorum and compact.
			i = (l + 1 + n.rng.Intn(nn-1)) % nn
		case "transfer":
			i, j = l, (l+1+n.rng.Intn(nn-1))%nn
		default:
			i = l
		}
	}
	switch kind {
	case "kill", "kill-leader":
		c.nodes[i].kill()
		return &fault{what: "kill -9 " + c.nodes[i].name}, nil
	case "kill-long":
		// Held past --dead-node-timeout (of a sharded round) and a few
		// placement rounds, so that the node counts as dead and its
		// replicas are made again elsewhere.
		c.nodes[i].kill()
		return &fault{what: fmt.Sprintf("kill -9 %s for %v", c.nodes[i].name, killLongHold),
			hold: func(stop <-chan struct{}, d time.Duration) {
				select {
				case <-stop:
				case <-time.After(killLongHold):
				}
			}}, nil
	case "pause":
		if err := c.nodes[i].signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		return &fault{what: "SIGSTOP " + c.nodes[i].name}, nil
	case "isolate-leader":
		c.mesh.Isolate(i)
		return &fault{what: "isolate " + c.nodes[i].name}, nil
	case "partition":
		var rest []int
		var names []string
		for k := range c.nodes {
			if k != i {
				rest = append(rest, k)
				names = append(names, c.nodes[k].name)
			}
		}
		c.mesh.Partition([]int{i}, rest)
		return &fault{what: fmt.Sprintf("partition %s | %s", c.nodes[i].name, strings.Join(names, ","))}, nil
	case "one-way":
		c.mesh.CutOneWay(i, j)
		return &fault{what: fmt.Sprintf("cut %s -> %s", c.nodes[i].name, c.nodes[j].name)}, nil
	case "delay":
		// The election timeout is 10 ticks (200 ms): delays around it
		// make elections and lease-free reads race the heartbeats.
		latency := time.Duration(10+n.rng.Intn(90)) * time.Millisecond
		jitter := time.Duration(n.rng.Intn(60)) * time.Millisecond
		n.eachLink(i, func(p *netproxy.Proxy) { p.Delay(netproxy.Both, latency, jitter) })
		return &fault{what: fmt.Sprintf("delay %s's links %v + [0,%v) each way", c.nodes[i].name, latency, jitter)}, nil
	case "lossy":
		frac := 0.02 + 0.18*n.rng.Float64()
		n.eachLink(i, func(p *netproxy.Proxy) {
			p.Lossy(netproxy.Both, frac)
			p.DropConnections(frac)
		})
		return &fault{what: fmt.Sprintf("lose %.0f%% of chunks and of new connections on %s's links", 100*frac, c.nodes[i].name)}, nil
	case "snapshot-partition":
		return n.snapshotPartition(c.nodes[i])
	case "member-replace":
		what, err := c.remove(c.nodes[i])
		if err != nil {
			return nil, err
		}
		nd := c.nodes[i]
		return &fault{what: what, healed: func() error {
			if err := c.checkVoters(30 * time.Second); err != nil {
				return err
			}
			n.logf("%s is %s, a voter again; the cluster has %d voters", nd.name, nd.memberName(), len(c.nodes))
			return nil
		}}, nil
	case "transfer":
		to := c.nodes[j].memberName()
		code, body, err := c.admin(http.MethodPost, "/cluster/leader/transfer", fmt.Sprintf(`{"to":%q}`, to), i, 5*time.Second, 200)
		if err != nil {
			return nil, err
		}
		return &fault{what: fmt.Sprintf("leadership %s -> %s: %d %s", c.nodes[i].name, c.nodes[j].name, code, strings.TrimSpace(body))}, nil
	}
	panic("unknown fault " + kind)
}

// killLongHold is how long kill-long keeps its node down.
const killLongHold = deadNodeTimeout + 4*time.Second

// eachLink calls f with the proxy of every link to and from node i.
func (n *nemesis) eachLink(i int, f func(*netproxy.Proxy)) {
	for k := range n.c.nodes {
		if k != i {
			f(n.c.mesh.Proxy(i, k))
			f(n.c.mesh.Proxy(k, i))
		}
	}
}

var (
	snapshotSaved     = regexp.MustCompile(`msg="snapshot saved" .*?\bindex=(\d+)`)
	snapshotInstalled = regexp.MustCompile(`msg="installed snapshot from leader" .*?\bindex=(\d+)`)
)

// maxSnapshotHold bounds how long a snapshot partition waits for the others
// to compact their logs; clients write slowly on a loaded machine.
const maxSnapshotHold = 60 * time.Second

// snapshotPartition isolates follower nd and holds the partition until every
// other node has saved a snapshot far enough past nd's applied index that its
// log no longer holds what nd misses: index > applied + catch-up entries (and
// a margin). Once
// healed, it waits for nd to catch up with the commit index and reports
// whether it did so by installing a snapshot.
func (n *nemesis) snapshotPartition(nd *node) (*fault, error) {
	c := n.c
	st, err := nd.status()
	if err != nil {
		return nil, err
	}
	// The follower's log may run a little ahead of what it applied; the
	// margin covers that.
	need := st.Applied + uint64(*catchupEntries) + 100
	offsets := map[*node]int64{}
	for _, o := range c.nodes {
		offsets[o] = o.logSize()
	}
	c.mesh.Isolate(nd.idx)
	compacted := false
	return &fault{
		what: fmt.Sprintf("isolate follower %s at applied index %d until the others snapshot past %d", nd.name, st.Applied, need),
		hold: func(stop <-chan struct{}, d time.Duration) {
			start := time.Now()
			for {
				if time.Since(start) >= d && n.savedPast(nd, offsets, need) {
					compacted = true
					n.logf("the others saved snapshots past index %d after %v", need, time.Since(start).Round(time.Millisecond))
					return
				}
				if time.Since(start) > maxSnapshotHold {
					n.logf("the others did not snapshot past index %d within %v; healing anyway", need, maxSnapshotHold)
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
		healed: func() error {
			var commit uint64
			if l, err := c.leader(10 * time.Second); err == nil {
				if st, err := c.nodes[l].status(); err == nil {
					commit = st.Commit
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				st, err := nd.status()
				if err == nil && st.Applied >= commit {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s did not catch up with commit index %d within 30s after the partition healed (at %+v, %v)", nd.name, commit, st, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if m := snapshotInstalled.FindStringSubmatch(nd.logSince(offsets[nd])); m != nil {
				n.note("snapshot-installed")
				n.logf("%s caught up to %d by a snapshot transfer (installed snapshot from leader index=%s)", nd.name, commit, m[1])
			} else {
				n.logf("%s caught up to %d from the log, without a snapshot (log compacted past it: %v)", nd.name, commit, compacted)
			}
			return nil
		},
	}, nil
}

// savedPast says whether every node but nd logged, after its offset, a
// snapshot saved at an index of at least need.
func (n *nemesis) savedPast(nd *node, offsets map[*node]int64, need uint64) bool {
	for _, o := range n.c.nodes {
		if o == nd {
			continue
		}
		ok := false
		for _, m := range snapshotSaved.FindAllStringSubmatch(o.logSince(offsets[o]), -1) {
			if idx, err := strconv.ParseUint(m[1], 10, 64); err == nil && idx >= need {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (n *nemesis) logf(format string, args ...any) {
	fmt.Fprintf(n.log, "%9.3fs nemesis: %s\n", time.Duration(n.h.now()).Seconds(), fmt.Sprintf(format, args...))
}

// countsByKind is a copy of the faults injected so far, by kind.
func (n *nemesis) countsByKind() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]int, len(n.counts))
	for k, v := range n.counts {
		out[k] = v
	}
	return out
}

func (n *nemesis) summary() string { return formatCounts(n.countsByKind()) }

// formatCounts lists counts as "k=v" sorted by key.
func formatCounts(counts map[string]int) string {
	var parts []string
	for k, c := range counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
