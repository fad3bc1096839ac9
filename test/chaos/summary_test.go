package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ledger counts acknowledged writes lost, explicitly, beside the
// linearizability check: its writers put unique values on a few keys of their
// own, one request in flight each, and record every put with its call and
// return time. At the end, with all faults healed, every acknowledged put must
// be on every node, or the value there must be one that could have been written
// after it (an acknowledged or unknown put whose return is after the
// acknowledged put's call). A value no writer sent, or a key missing, is a
// lost write too.
type ledger struct {
	c     *cluster
	start time.Time
	keys  []string

	mu     sync.Mutex
	writes map[string][]ledgerWrite // by key
	byVal  map[string]ledgerWrite
	sent   int
	// refused holds, by value, each put answered as refused for certain
	// (not made), none of which may be applied, and refusedWhy its answer.
	refused    map[string]ledgerWrite
	refusedWhy map[string]string
}

// ledgerWrite is one put. ret is math.MaxInt64 when its outcome is unknown.
type ledgerWrite struct {
	key, value string
	call, ret  int64
	acked      bool
}

const ledgerKeys = 4

func newLedger(c *cluster) *ledger {
	l := &ledger{c: c, start: time.Now(), writes: map[string][]ledgerWrite{}, byVal: map[string]ledgerWrite{},
		refused: map[string]ledgerWrite{}, refusedWhy: map[string]string{}}
	for i := 0; i < ledgerKeys; i++ {
		l.keys = append(l.keys, fmt.Sprintf("ledger-%d", i))
	}
	return l
}

func (l *ledger) now() int64 { return int64(time.Since(l.start)) }

// run writes until stop is closed, as writer w.
func (l *ledger) run(w int, seed int64, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	cli := &http.Client{Timeout: clientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer cli.CloseIdleConnections()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		key := l.keys[rng.Intn(len(l.keys))]
		nd := l.c.nodes[rng.Intn(len(l.c.nodes))]
		wr := ledgerWrite{key: key, value: fmt.Sprintf("L%d-%d", w, seq), call: l.now()}
		applied, answer := l.put(cli, nd, wr.key, wr.value)
		wr.ret = l.now()
		switch applied {
		case "no":
			l.mu.Lock()
			l.refused[wr.value] = wr
			l.refusedWhy[wr.value] = fmt.Sprintf("%s answered %s at %.3fs", nd.name, answer, time.Duration(wr.ret).Seconds())
			l.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			continue
		case "unknown":
			wr.ret = math.MaxInt64
			time.Sleep(20 * time.Millisecond)
		case "yes":
			wr.acked = true
		}
		l.mu.Lock()
		l.writes[key] = append(l.writes[key], wr)
		l.byVal[wr.value] = wr
		l.sent++
		l.mu.Unlock()
	}
}

// count is the number of puts recorded so far.
func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

// put sends one PUT and says whether it was applied: "yes" (200), "no"
// (never sent, or refused before it was proposed) or "unknown", and what
// the answer was.
func (l *ledger) put(cli *http.Client, nd *node, key, value string) (string, string) {
	req, err := http.NewRequest(http.MethodPut, nd.url("/key/"+key), strings.NewReader(fmt.Sprintf(`{"value":%q}`, value)))
	if err != nil {
		panic(err)
	}
	resp, err := cli.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return "no", err.Error()
		}
		return "unknown", err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	answer := fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	switch {
	case resp.StatusCode == 200:
		return "yes", answer
	case resp.StatusCode == 503 && !strings.Contains(string(b), "may still have been applied"):
		return "no", answer
	}
	return "unknown", answer
}

// check reads every ledger key on every node, linearizably, and returns how
// many writes were acknowledged and which of them were lost, described.
func (l *ledger) check() (acked int, lost []string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cli := &http.Client{Timeout: clientTimeout}
	finals := map[string]map[string]ledgerRead{} // node -> key -> final read
	// A node that does not answer a read is left out of the comparison
	// and named in err, after the others were compared.
	var errs []error
	var nodes []*node
	for _, nd := range l.c.nodes {
		finals[nd.name] = map[string]ledgerRead{}
		answered := true
		for _, k := range l.keys {
			deadline := time.Now().Add(20 * time.Second)
			for {
				out, rerr := l.read(cli, nd, k)
				if rerr == nil {
					finals[nd.name][k] = out
					break
				}
				if time.Now().After(deadline) {
					errs = append(errs, fmt.Errorf("final read of %s on %s: %w", k, nd.name, rerr))
					answered = false
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !answered {
				break
			}
		}
		if answered {
			nodes = append(nodes, nd)
		} else {
			delete(finals, nd.name)
		}
	}
	defer func() { err = errors.Join(errs...) }()
	// A final value may be one of a put refused for certain: that is named
	// as such (the put was applied though refused), and it is taken as a
	// put of unknown outcome for lostWrites, so that the acknowledged
	// writes before it are not all counted as lost too.
	byVal := l.byVal
	var applied []string
	for _, nd := range nodes {
		for _, k := range l.keys {
			r := finals[nd.name][k]
			w, ok := l.refused[r.value]
			if !r.found || !ok {
				continue
			}
			applied = append(applied, fmt.Sprintf("%s has %s=%q, a put refused for certain (%s): it was applied", nd.name, k, r.value, l.refusedWhy[r.value]))
			if _, copied := byVal[r.value]; !copied {
				byVal = maps.Clone(byVal)
				w.ret = math.MaxInt64
				byVal[r.value] = w
			}
		}
	}
	lost = append(applied, lostWrites(l.keys, l.writes, byVal, finals)...)
	for _, ws := range l.writes {
		for _, w := range ws {
			if w.acked {
				acked++
			}
		}
	}
	return acked, lost, nil
}

// lostWrites returns, described, every acknowledged write of writes (by key)
// that some node's final read (finals: node -> key -> read) neither shows nor
// can explain by a write that may have come after it: one whose value the
// node shows and whose return (open if unknown) is after the acknowledged
// write's call. byVal finds a write by its unique value.
func lostWrites(keys []string, writes map[string][]ledgerWrite, byVal map[string]ledgerWrite, finals map[string]map[string]ledgerRead) []string {
	nodes := make([]string, 0, len(finals))
	for n := range finals {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	var lost []string
	for _, k := range keys {
		for _, w := range writes[k] {
			if !w.acked {
				continue
			}
			var where []string
			for _, n := range nodes {
				out := finals[n][k]
				if out.found && out.value == w.value {
					continue
				}
				if out.found {
					if f, ok := byVal[out.value]; ok && f.key == k && f.ret > w.call {
						continue // f may have overwritten w
					}
				}
				where = append(where, fmt.Sprintf("%s has %s", n, out))
			}
			if len(where) > 0 {
				lost = append(lost, fmt.Sprintf("put(%s, %s) acknowledged at %.3fs: %s", k, w.value,
					time.Duration(w.ret).Seconds(), strings.Join(where, ", ")))
			}
		}
	}
	return lost
}

// ledgerRead is a key as a final read found it.
type ledgerRead struct {
	found bool
	value string
}

func (r ledgerRead) String() string {
	if !r.found {
		return "no value"
	}
	return fmt.Sprintf("%q", r.value)
}

// read is a linearizable GET of key on nd: a value, no value (404), or an
// error for any other answer.
func (l *ledger) read(cli *http.Client, nd *node, key string) (ledgerRead, error) {
	resp, err := cli.Get(nd.url("/key/" + key))
	if err != nil {
		return ledgerRead{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ledgerRead{}, err
	}
	switch resp.StatusCode {
	case 200:
		var got struct {
			Value string `json:"value"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			return ledgerRead{}, fmt.Errorf("200 with %q: %w", b, err)
		}
		return ledgerRead{found: true, value: got.Value}, nil
	case 404:
		return ledgerRead{}, nil
	}
	return ledgerRead{}, fmt.Errorf("%d %s", resp.StatusCode, b)
}

// roundResult is what one round found, for the summary.
type roundResult struct {
	round    int
	seed     int64
	duration time.Duration
	ops      int
	opCounts string
	faults   map[string]int
	verdict  string
	acked    int // acknowledged ledger writes checked
	lost     int // of them, lost
	failed   bool
	logDir   string
	keep     bool // keep logDir even if the round passes
	// maxCheckOps, if not 0, skips the linearizability check of a longer
	// history (the other checks still run).
	maxCheckOps int
	// shard, if not nil, makes the round a sharded one (sharded_test.go)
	// and holds what it counted.
	shard *shardStats
	// bank, if not nil, is what a bank round counted (bank_test.go); its
	// verdict is of strict serializability, not linearizability.
	bank *bankStats
}

// printSummary logs the totals over rounds and one line per round.
func printSummary(t *testing.T, results []roundResult) {
	t.Helper()
	ops, acked, lost, failed := 0, 0, 0, 0
	faults := map[string]int{}
	for _, r := range results {
		ops += r.ops
		acked += r.acked
		lost += r.lost
		for k, v := range r.faults {
			faults[k] += v
		}
		if r.failed {
			failed++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chaos summary: rounds=%d failed=%d operations=%d acknowledged-writes-checked=%d acknowledged-writes-lost=%d\n",
		len(results), failed, ops, acked, lost)
	fmt.Fprintf(&b, "  faults: %s\n", formatCounts(faults))
	for _, r := range results {
		verdict := "PASS"
		if r.failed {
			verdict = "FAIL (logs in " + r.logDir + ")"
		}
		checked := "linearizable"
		if r.bank != nil {
			checked = "strictly-serializable"
		}
		fmt.Fprintf(&b, "  round %d seed=%d duration=%v ops=%d %s=%s lost=%d/%d %s\n",
			r.round, r.seed, r.duration, r.ops, checked, r.verdict, r.lost, r.acked, verdict)
		if r.bank != nil {
			fmt.Fprintf(&b, "    bank: %s\n", r.bank)
		}
		if r.shard != nil {
			fmt.Fprintf(&b, "    sharded: %s\n", r.shard)
		}
	}
	t.Log(b.String())
}

// TestLostWrites checks the ledger's verdict on made-up histories.
func TestLostWrites(t *testing.T) {
	const open = math.MaxInt64
	w := func(value string, call, ret int64, acked bool) ledgerWrite {
		return ledgerWrite{key: "k", value: value, call: call, ret: ret, acked: acked}
	}
	got := func(v string) ledgerRead { return ledgerRead{found: true, value: v} }
	for _, tc := range []struct {
		name   string
		writes []ledgerWrite
		final  []ledgerRead // per node
		lost   int
	}{
		{"present everywhere", []ledgerWrite{w("a", 1, 2, true)}, []ledgerRead{got("a"), got("a")}, 0},
		{"missing on one node", []ledgerWrite{w("a", 1, 2, true)}, []ledgerRead{got("a"), {}}, 1},
		{"overwritten by a later ack", []ledgerWrite{w("a", 1, 2, true), w("b", 3, 4, true)}, []ledgerRead{got("b"), got("b")}, 0},
		{"overwritten by a concurrent unknown", []ledgerWrite{w("a", 1, 5, true), w("b", 3, open, false)}, []ledgerRead{got("b")}, 0},
		{"older value came back", []ledgerWrite{w("b", 1, 2, true), w("a", 3, 4, true)}, []ledgerRead{got("b")}, 1},
		{"value nobody wrote", []ledgerWrite{w("a", 1, 2, true)}, []ledgerRead{got("zz")}, 1},
		{"both acks lost to an old value", []ledgerWrite{w("x", 0, 1, true), w("a", 2, 3, true), w("b", 4, 5, true)}, []ledgerRead{got("x")}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writes := map[string][]ledgerWrite{"k": tc.writes}
			byVal := map[string]ledgerWrite{}
			for _, x := range tc.writes {
				byVal[x.value] = x
			}
			finals := map[string]map[string]ledgerRead{}
			for i, r := range tc.final {
				finals[fmt.Sprintf("n%d", i+1)] = map[string]ledgerRead{"k": r}
			}
			if lost := lostWrites([]string{"k"}, writes, byVal, finals); len(lost) != tc.lost {
				t.Fatalf("lost %d (%q), want %d", len(lost), lost, tc.lost)
			}
		})
	}
}
