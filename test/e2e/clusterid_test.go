package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOtherIncarnationIsRefused rebuilds a cluster in place while a node of
// the old one is paused: cluster A (n1, n2, n3) takes 200 writes, its n3 is
// paused, n1 and n2 are killed, and a new cluster B starts on the same
// addresses with the same --cluster and token and fresh data directories for
// n1 and n2. Then A's n3 resumes. Before cluster ids both of B's nodes
// panicked within seconds ("tocommit(207) is out of range [lastIndex(7)]");
// now B goes on serving its own data, and its nodes refuse A's n3 at the
// handshake with a log line naming both clusters' ids.
func TestOtherIncarnationIsRefused(t *testing.T) {
	a := startCluster(t, 3)
	leader := a.leader(10 * time.Second)
	for i := 0; i < 200; i++ {
		if code, body := do(t, http.MethodPut, a.url(leader, fmt.Sprintf("/key/a%d", i)), `{"value":"from A"}`); code != 200 {
			t.Fatalf("write %d to A: %d %s", i, code, body)
		}
	}
	idA := clusterIDOf(t, a, leader)
	stale := a.servers["n3"]
	if err := stale.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	a.servers["n1"].kill9()
	a.servers["n2"].kill9()

	// B: the same addresses and --cluster, fresh data directories.
	fresh := t.TempDir()
	for _, n := range []string{"n1", "n2"} {
		a.dirs[n] = filepath.Join(fresh, n)
		a.launch(n)
	}
	for _, n := range []string{"n1", "n2"} {
		a.servers[n].waitReady()
	}
	b := a
	idB := clusterIDOf(t, b, "n1")
	if idB == idA || idB == "" {
		t.Fatalf("B's cluster id %q, A's %q: a rebuilt cluster must get a new id", idB, idA)
	}
	if code, body := do(t, http.MethodPut, b.url("n1", "/key/b"), `{"value":"from B"}`); code != 200 {
		t.Fatalf("write to B: %d %s", code, body)
	}

	if err := stale.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// A's n3 now has a longer log and a higher term than B and redials both
	// of B's nodes; give it many election timeouts while B keeps writing.
	deadline := time.Now().Add(30 * electionTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		for _, n := range []string{"n1", "n2"} {
			select {
			case <-b.servers[n].exited:
				t.Fatalf("B's %s exited after A's n3 resumed: %v\n%s", n, b.servers[n].cmd.ProcessState, tail([]byte(readLog(t, b.servers[n])), 3000))
			default:
			}
		}
		if code, body := do(t, http.MethodPut, b.url(b.names[i%2], fmt.Sprintf("/key/b%d", i)), `{"value":"from B"}`); code != 200 {
			t.Fatalf("write %d to B after A's n3 resumed: %d %s", i, code, body)
		}
		time.Sleep(electionTimeout / 4)
	}

	// B's data is B's: its own writes, none of A's.
	for _, n := range []string{"n1", "n2"} {
		if code, body := do(t, http.MethodGet, b.url(n, "/key/b"), ""); code != 200 || !strings.Contains(body, "from B") {
			t.Fatalf("B's %s reads its key: %d %s", n, code, body)
		}
		if code, body := do(t, http.MethodGet, b.url(n, "/key/a7"), ""); code != 404 {
			t.Fatalf("B's %s holds A's key: %d %s", n, code, body)
		}
	}
	// And it says why it refused A's node, naming both ids.
	waitForLog(t, 10*time.Second, func() (bool, string) {
		var all string
		for _, n := range []string{"n1", "n2"} {
			l := readLog(t, b.servers[n])
			all += l
			for _, line := range strings.Split(l, "\n") {
				if strings.Contains(line, "refused peer connection") && strings.Contains(line, "peer=n3") &&
					strings.Contains(line, idA) && strings.Contains(line, idB) {
					return true, line
				}
			}
		}
		return false, all
	})
	if id, err := os.ReadFile(filepath.Join(b.dirs["n1"], "cluster-id")); err != nil || !strings.Contains(string(id), idB) {
		t.Fatalf("B's n1 keeps cluster id %q (%v), want %s", id, err, idB)
	}
}

// clusterIDOf returns the cluster id node name reports in /cluster/status.
func clusterIDOf(t *testing.T, c *testCluster, name string) string {
	t.Helper()
	code, body := do(t, http.MethodGet, c.url(name, "/cluster/status"), "")
	if code != 200 {
		t.Fatalf("status of %s: %d %s", name, code, body)
	}
	const key = `"cluster_id":"`
	i := strings.Index(body, key)
	if i < 0 || len(body) < i+len(key)+16 {
		t.Fatalf("status of %s has no cluster_id: %s", name, body)
	}
	return body[i+len(key) : i+len(key)+16]
}

// waitForLog polls cond until it holds or timeout passes.
func waitForLog(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			t.Logf("logged: %s", seen)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal naming both cluster ids in B's logs:\n%s", tail([]byte(seen), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
