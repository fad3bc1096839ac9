package chaos

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var (
	chaosRounds   = flag.Int("chaos.rounds", 2, "rounds, each on a new cluster with its own seed")
	chaosDuration = flag.Duration("chaos.duration", 35*time.Second, "how long clients and faults run in each round")
	chaosSeed     = flag.Int64("chaos.seed", 0, "seed of the first round's fault schedule and clients' choices; round r uses seed+r-1 (0: from the clock)")
	chaosClients  = flag.Int("chaos.clients", 5, "concurrent clients, each with one request in flight")
	chaosCheck    = flag.Duration("chaos.check-timeout", time.Minute, "give up the linearizability check after this long (verdict Unknown)")
	chaosKeep     = flag.Bool("chaos.keep", false, "keep the logs and data of rounds that pass too")
)

// TestChaos runs -chaos.rounds rounds, each on a new three-node cluster: clients
// run against it while the nemesis injects faults, then everything is healed,
// every key is read on every node, the whole history is checked for
// linearizability and the ledger's acknowledged writes are looked up on every
// node. It ends with a summary of all rounds.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos round skipped in -short mode")
	}
	base := *chaosSeed
	if base == 0 {
		base = time.Now().UnixNano()
	}
	var results []roundResult
	for r := 1; r <= *chaosRounds; r++ {
		seed := base + int64(r-1)
		t.Run(fmt.Sprintf("round%d", r), func(t *testing.T) {
			t.Logf("round %d of %d: seed %d (reproduce with -chaos.seed=%d -chaos.rounds=1)", r, *chaosRounds, seed, seed)
			res := roundResult{round: r, seed: seed, duration: *chaosDuration, verdict: "not checked"}
			defer func() {
				res.failed = t.Failed()
				results = append(results, res)
			}()
			runRound(t, &res, nil)
		})
	}
	printSummary(t, results)
}

// runRound starts a cluster, runs clients, ledger writers and the nemesis
// against it for res.duration, heals it and checks what the clients saw,
// filling in res as it goes. watch, if not nil, is started once the cluster
// is up and stopped (by calling what it returns) when the round ends.
func runRound(t *testing.T, res *roundResult, watch func(c *cluster, logDir string) (stop func())) {
	seed := res.seed
	logDir, nlog := roundLogs(t, res)
	defer nlog.Close()

	nodes, sharded := 3, res.shard != nil
	var extra []string
	if sharded {
		nodes, extra = shardedNodes, shardedFlags()
	}
	c := startCluster(t, nodes, logDir, seed, extra...)
	c.sharded = sharded
	if _, err := c.leader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if sharded {
		res.shard.begin(t, c, seed)
		defer res.shard.end()
	}
	if watch != nil {
		stopWatch := watch(c, logDir)
		defer stopWatch()
	}
	h := newHistory()
	nem := newNemesis(c, seed, h, nlog)
	nem.progress = t.Logf
	var err error
	if nem.kinds, err = roundFaults(sharded); err != nil {
		t.Fatal(err)
	}
	led := newLedger(c)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < *chaosClients; i++ {
		cl := newClient(i, seed+1+int64(i), h, c.nodes)
		wg.Add(1)
		go func() { defer wg.Done(); cl.run(stop) }()
	}
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); led.run(w, seed+1000+int64(w), stop) }()
	}
	// The nemesis stops first, so that its last heal (a new member catching
	// up, a follower installing a snapshot) happens under load too.
	nemStop := make(chan struct{})
	nemErr := make(chan error, 1)
	go func() { nemErr <- nem.run(nemStop) }()
	ticker := time.NewTicker(5 * time.Second)
	end := time.After(res.duration)
wait:
	for {
		select {
		case <-ticker.C:
			t.Logf("%7.1fs ops=%d ledger-writes=%d faults so far: %s", time.Since(h.start).Seconds(), nem.ops(), led.count(), nem.summary())
		case <-end:
			break wait
		}
	}
	ticker.Stop()
	close(nemStop)
	nerr := <-nemErr
	close(stop)
	wg.Wait()
	res.faults = nem.countsByKind()
	res.ops = nem.ops()
	if nerr != nil {
		t.Fatalf("nemesis: %v (logs in %s)", nerr, logDir)
	}
	for _, nd := range c.nodes {
		if nd.crashed() {
			t.Errorf("%s exited without being killed; see %s", nd.name, nd.logPath)
		}
	}
	if err := c.heal(); err != nil {
		t.Fatalf("final heal: %v", err)
	}
	if err := c.checkVoters(30 * time.Second); err != nil {
		t.Errorf("after the final heal: %v", err)
	}

	acked, lost, err := led.check()
	res.acked, res.lost = acked, len(lost)
	for i, s := range lost {
		if i == 10 {
			t.Errorf("... and %d more acknowledged writes lost", len(lost)-10)
			break
		}
		t.Errorf("acknowledged write lost: %s", s)
	}
	if err != nil {
		if c.views != nil {
			t.Logf("the ranges as each node lists them:%s", c.views())
			for _, k := range led.keys {
				t.Logf("GET %s on every node:%s", k, c.askAll("/key/"+k))
			}
		}
		t.Fatalf("ledger (the nodes that answered were compared above): %v", err)
	}
	finalReads(t, c, h)
	if sharded {
		h.dropGroups(res.shard.check(t))
		res.acked += res.shard.fillerAcked
		res.lost += res.shard.fillerLost
		res.shard.verdict(t)
		t.Logf("sharded: %s", res.shard)
	}
	resolved := h.resolveObserved()
	for i, s := range h.refusedButApplied() {
		if i == 10 {
			t.Errorf("... and more writes refused for certain but applied")
			break
		}
		t.Errorf("write refused for certain but applied: %s", s)
	}
	staleReads(t, h, sharded)
	// Each revision claimed twice is at least one more lost acknowledged
	// write, one the ledger's writers may not have made.
	res.lost += revisionReuse(t, h, sharded)
	if err := h.save(filepath.Join(logDir, "history.txt")); err != nil {
		t.Errorf("saving the history: %v", err)
	}

	res.ops = len(h.ops)
	if res.maxCheckOps > 0 && len(h.ops) > res.maxCheckOps {
		// porcupine's verbose check of a history this long can take more
		// memory than the machine has; the ledger, the stale-read and
		// final-read checks above still ran.
		t.Logf("round summary: seed=%d duration=%v ops=%d [%s] faults: [%s] linearizable=not checked (more than %d operations) acknowledged-writes-lost=%d/%d",
			seed, res.duration, len(h.ops), h.summary(), nem.summary(), res.maxCheckOps, res.lost, acked)
		return
	}
	verdict, info, found := checkLinearizable(h.ops, *chaosCheck)
	res.verdict = string(verdict)
	info.AddAnnotations(nem.events)
	t.Logf("round summary: seed=%d duration=%v ops=%d [%s] unknown-resolved-by-reads=%d faults: [%s] linearizable=%s acknowledged-writes-lost=%d/%d",
		seed, res.duration, len(h.ops), h.summary(), resolved, nem.summary(), verdict, res.lost, acked)
	for i, s := range h.odd {
		if i == 10 {
			t.Errorf("... and %d more unexpected answers", len(h.odd)-10)
			break
		}
		t.Errorf("unexpected answer: %s", s)
	}
	switch verdict {
	case porcupine.Illegal:
		path := filepath.Join(logDir, "linearizability.html")
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Errorf("writing the visualization: %v", err)
		}
		t.Errorf("%s", found)
		t.Errorf("history is not linearizable (seed %d); visualization: %s", seed, path)
	case porcupine.Unknown:
		t.Logf("linearizability check gave up (%s); raise -chaos.check-timeout", found)
	}
}

// roundLogs makes the round's log directory, kept when the round fails (or
// with -chaos.keep or res.keep) and removed otherwise, and opens the
// nemesis's log in it.
func roundLogs(t *testing.T, res *roundResult) (string, *os.File) {
	t.Helper()
	logDir, err := os.MkdirTemp("", "distkv-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	res.logDir = logDir
	t.Cleanup(func() {
		if t.Failed() || *chaosKeep || res.keep {
			t.Logf("logs, data and history kept in %s (seed %d)", logDir, res.seed)
			return
		}
		os.RemoveAll(logDir)
	})
	nlog, err := os.Create(filepath.Join(logDir, "nemesis.log"))
	if err != nil {
		t.Fatal(err)
	}
	return logDir, nlog
}
