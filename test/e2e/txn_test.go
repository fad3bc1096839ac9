package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTxnAcrossNodes runs compare-and-swap transactions through followers of a
// real cluster: the success branch runs only when the compare holds, both
// writes of a branch land at one revision, and of two racing transactions
// through different nodes exactly one succeeds.
func TestTxnAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader(10 * time.Second)
	var followers []string
	for _, n := range c.names {
		if n != leader {
			followers = append(followers, n)
		}
	}
	if code, body := do(t, http.MethodPut, c.url(leader, "/key/balance/a"), `{"value":"10"}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	move := `{"compare":[{"key":"balance/a","target":"value","op":"==","value":"10"}],
	          "success":[{"put":{"key":"balance/a","value":"0"}},{"put":{"key":"balance/b","value":"10"}}],
	          "failure":[{"get":{"key":"balance/a"}}]}`
	var wg sync.WaitGroup
	codes, bodies := make([]int, 2), make([]string, 2)
	for i, n := range followers {
		wg.Add(1)
		go func(i int, n string) {
			defer wg.Done()
			codes[i], bodies[i] = do(t, http.MethodPost, c.url(n, "/txn"), move)
		}(i, n)
	}
	wg.Wait()
	won := 0
	for i := range codes {
		if codes[i] != 200 {
			t.Fatalf("txn through %s: %d %s", followers[i], codes[i], bodies[i])
		}
		if strings.Contains(bodies[i], `"succeeded":true`) {
			won++
		} else if !strings.Contains(bodies[i], `"value":"0"`) {
			t.Fatalf("losing txn's failure branch should read the moved balance: %s", bodies[i])
		}
	}
	if won != 1 {
		t.Fatalf("%d transactions succeeded: %v", won, bodies)
	}
	ca, a := do(t, http.MethodGet, c.url(followers[0], "/key/balance/a"), "")
	cb, b := do(t, http.MethodGet, c.url(followers[1], "/key/balance/b"), "")
	if ca != 200 || cb != 200 || !strings.Contains(a, `"value":"0"`) || !strings.Contains(b, `"value":"10"`) {
		t.Fatalf("after the move: a=%d %s b=%d %s", ca, a, cb, b)
	}
	// Both writes of the branch carry the same revision.
	ra := a[strings.Index(a, `"revision":`):]
	rb := b[strings.Index(b, `"revision":`):]
	if ra != rb {
		t.Fatalf("writes of one transaction at different revisions: %s vs %s", a, b)
	}
	c.servers[leader].stop()
	out, err := run(t, "wal", "dump", c.dirs[leader])
	if err != nil || !strings.Contains(out, `"operation": "TXN", "compare": [{"key": "balance/a", "target": "value", "op": "==", "value": "10"}]`) {
		t.Fatalf("wal dump does not show the transaction: %v\n%s", err, out)
	}
}
