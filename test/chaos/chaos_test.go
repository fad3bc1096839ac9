package chaos

import (
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var (
	chaosDuration = flag.Duration("chaos.duration", 20*time.Second, "how long clients and faults run")
	chaosSeed     = flag.Int64("chaos.seed", 0, "seed of the fault schedule and the clients' choices (0: from the clock)")
	chaosClients  = flag.Int("chaos.clients", 5, "concurrent clients, each with one request in flight")
	chaosCheck    = flag.Duration("chaos.check-timeout", time.Minute, "give up the linearizability check after this long (verdict Unknown)")
)

// TestChaos runs clients against a three-node cluster while the nemesis
// injects faults, then heals everything, reads every key on every node, and
// checks the whole history for linearizability.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos round skipped in -short mode")
	}
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (reproduce the schedule with -chaos.seed=%d)", seed, seed)
	logDir, err := os.MkdirTemp("", "distkv-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs, data and history kept in %s (seed %d)", logDir, seed)
			return
		}
		os.RemoveAll(logDir)
	})
	nlog, err := os.Create(filepath.Join(logDir, "nemesis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer nlog.Close()

	c := startCluster(t, 3, logDir, seed)
	if _, err := c.leader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	h := newHistory()
	nem := newNemesis(c, seed, h, nlog)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < *chaosClients; i++ {
		cl := newClient(i, seed+1+int64(i), h, c.nodes)
		wg.Add(1)
		go func() { defer wg.Done(); cl.run(stop) }()
	}
	nemErr := make(chan error, 1)
	go func() { nemErr <- nem.run(stop) }()
	time.Sleep(*chaosDuration)
	close(stop)
	wg.Wait()
	if err := <-nemErr; err != nil {
		t.Fatalf("nemesis: %v (logs in %s)", err, logDir)
	}
	for _, nd := range c.nodes {
		if nd.crashed() {
			t.Errorf("%s exited without being killed; see %s", nd.name, nd.logPath)
		}
	}
	if err := c.heal(); err != nil {
		t.Fatalf("final heal: %v", err)
	}

	finalReads(t, c, h)
	resolved := h.resolveObserved()
	staleReads(t, h)

	verdict, info := porcupine.CheckOperationsVerbose(kvModel, h.ops, *chaosCheck)
	info.AddAnnotations(nem.events)
	t.Logf("chaos summary: seed=%d duration=%v ops=%d [%s] unknown-resolved-by-reads=%d faults: [%s] linearizable=%s",
		seed, *chaosDuration, len(h.ops), h.summary(), resolved, nem.summary(), verdict)
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
		for _, part := range kvModel.Partition(h.ops) {
			if porcupine.CheckOperationsTimeout(kvModel, part, *chaosCheck) == porcupine.Illegal {
				t.Errorf("group %s: its %d operations are not linearizable", groupPrefix(part[0].Input.(kvInput).Group), len(part))
			}
		}
		t.Errorf("history is not linearizable (seed %d); visualization: %s", seed, path)
	case porcupine.Unknown:
		t.Logf("linearizability check gave up after %v; raise -chaos.check-timeout", *chaosCheck)
	}
}
