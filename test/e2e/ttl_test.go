package e2e

import (
	"encoding/json"
	"math"
	"net/http"
	"testing"
	"time"
)

// getTTL GETs key on node name (stale: the node's own state) and returns
// the status and the "ttl" shown (-1 if none).
func getTTL(t *testing.T, c *testCluster, name, key string) (int, int64) {
	t.Helper()
	code, body := do(t, http.MethodGet, c.url(name, "/key/"+key+"?consistency=stale"), "")
	var got struct {
		TTL *int64 `json:"ttl"`
	}
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("GET %s on %s: %v: %s", key, name, err, body)
		}
	}
	if got.TTL == nil {
		return code, -1
	}
	return code, *got.TTL
}

// TestTTLAcrossRestart: a key with ttl 2 and one with ttl 30; all three
// nodes are stopped (SIGTERM) and started again; the ttl-2 key is gone on
// every node 3 s after it was written, and the ttl-30 key is still there
// with the time left to its original deadline, not a new one.
func TestTTLAcrossRestart(t *testing.T) {
	c := startCluster(t, 3)
	c.leader(10 * time.Second)

	t0 := time.Now()
	for _, kv := range []struct{ key, body string }{
		{"short", `{"value":"s","ttl":2}`},
		{"long", `{"value":"l","ttl":30}`},
	} {
		if code, body := do(t, http.MethodPut, c.url("n1", "/key/"+kv.key), kv.body); code != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", kv.key, code, body)
		}
	}
	t1 := time.Now()
	if code, body := do(t, http.MethodGet, c.url("n2", "/key/short"), ""); code != http.StatusOK {
		t.Fatalf("GET short right after the PUT: %d %s", code, body)
	}

	for _, name := range c.names {
		if code := c.servers[name].stop(); code != 0 {
			t.Fatalf("%s exited with %d on SIGTERM", name, code)
		}
	}
	for _, name := range c.names {
		c.launch(name)
	}
	for _, name := range c.names {
		c.servers[name].waitReady()
	}
	c.leader(10 * time.Second)
	t.Logf("cluster restarted %v after the PUTs", time.Since(t0).Round(time.Millisecond))

	// Gone on every node 3 s after it was written (or at once, if the
	// restart took longer).
	deadline := t0.Add(3 * time.Second)
	for {
		var seen []string
		for _, name := range c.names {
			if code, _ := getTTL(t, c, name, "short"); code != http.StatusNotFound {
				seen = append(seen, name)
			}
		}
		if len(seen) == 0 {
			break
		}
		// A second beyond it for the reads themselves on a slow machine.
		if time.Since(deadline) > time.Second {
			t.Fatalf("%v after the PUT, the ttl-2 key is still on %v", time.Since(t0).Round(time.Millisecond), seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if el := time.Since(t0); el < 2*time.Second {
		t.Fatalf("the ttl-2 key was gone %v after the PUT", el)
	}
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}

	// The ttl-30 key kept its deadline (t0+30 s .. t1+30 s): the ttl shown
	// counts down from it, every node agrees, and a key rewritten at
	// restart would show 30.
	for _, name := range c.names {
		g0 := time.Now()
		code, ttl := getTTL(t, c, name, "long")
		g1 := time.Now()
		lo := int64(math.Floor((30*time.Second - g1.Sub(t0)).Seconds()))
		hi := int64(math.Ceil((30*time.Second - g0.Sub(t1)).Seconds()))
		if code != http.StatusOK || ttl < lo || ttl > hi || ttl >= 30 {
			t.Errorf("GET long on %s %v after the PUT: %d ttl %d, want 200 and ttl in [%d, %d]",
				name, g0.Sub(t0).Round(time.Millisecond), code, ttl, lo, hi)
		}
	}
}
