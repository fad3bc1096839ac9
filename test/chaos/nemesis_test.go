package chaos

import (
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

// The faults the nemesis injects, one at a time.
var faultKinds = []string{"kill", "kill-leader", "pause", "isolate-leader", "partition", "one-way"}

// nemesis injects faults into c, holding each for 1-3 s and healing it
// before the next, and records them for the summary and the visualization.
type nemesis struct {
	c   *cluster
	rng *rand.Rand
	h   *history
	log *os.File

	mu     sync.Mutex
	counts map[string]int
	events []porcupine.Annotation
}

func newNemesis(c *cluster, seed int64, h *history, log *os.File) *nemesis {
	return &nemesis{c: c, rng: rand.New(rand.NewSource(seed)), h: h, log: log, counts: map[string]int{}}
}

// run injects faults until stop is closed, then heals the cluster. It
// returns the first error healing met: a node that would not come back.
func (n *nemesis) run(stop <-chan struct{}) error {
	for {
		quiet := 500*time.Millisecond + time.Duration(n.rng.Int63n(int64(time.Second)))
		select {
		case <-stop:
			return nil
		case <-time.After(quiet):
		}
		kind := faultKinds[n.rng.Intn(len(faultKinds))]
		hold := time.Second + time.Duration(n.rng.Int63n(int64(2*time.Second)))
		start := n.h.now()
		what, err := n.inject(kind)
		if err != nil {
			n.logf("%s skipped: %v", kind, err)
			continue
		}
		n.logf("%s: %s for %v", kind, what, hold.Round(time.Millisecond))
		select {
		case <-stop:
		case <-time.After(hold):
		}
		err = n.c.heal()
		n.logf("healed %s", kind)
		n.mu.Lock()
		n.counts[kind]++
		n.events = append(n.events, porcupine.Annotation{Tag: "nemesis", Start: start, End: n.h.now(),
			Description: kind, Details: what, BackgroundColor: "#ffd6d6"})
		n.mu.Unlock()
		if err != nil {
			return fmt.Errorf("healing %s (%s): %w", kind, what, err)
		}
	}
}

// inject starts one fault and says what it did.
func (n *nemesis) inject(kind string) (string, error) {
	c := n.c
	nn := len(c.nodes)
	i := n.rng.Intn(nn)
	j := (i + 1 + n.rng.Intn(nn-1)) % nn
	switch kind {
	case "kill-leader", "isolate-leader":
		l, err := c.leader(5 * time.Second)
		if err != nil {
			return "", err
		}
		i = l
	}
	switch kind {
	case "kill", "kill-leader":
		c.nodes[i].kill()
		return "kill -9 " + c.nodes[i].name, nil
	case "pause":
		if err := c.nodes[i].signal(syscall.SIGSTOP); err != nil {
			return "", err
		}
		return "SIGSTOP " + c.nodes[i].name, nil
	case "isolate-leader":
		c.mesh.Isolate(i)
		return "isolate " + c.nodes[i].name, nil
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
		return fmt.Sprintf("partition %s | %s", c.nodes[i].name, strings.Join(names, ",")), nil
	case "one-way":
		c.mesh.CutOneWay(i, j)
		return fmt.Sprintf("cut %s -> %s", c.nodes[i].name, c.nodes[j].name), nil
	}
	panic("unknown fault " + kind)
}

func (n *nemesis) logf(format string, args ...any) {
	fmt.Fprintf(n.log, "%9.3fs nemesis: %s\n", time.Duration(n.h.now()).Seconds(), fmt.Sprintf(format, args...))
}

func (n *nemesis) summary() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var parts []string
	for k, c := range n.counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
