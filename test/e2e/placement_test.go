package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type placedRange struct {
	ID       uint64   `json:"id"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"`
	Learners []string `json:"learners"`
	Meta     bool     `json:"meta"`
}

// tryPut sends a PUT and returns its status and answer, 0 if it got none
// (the node was killed meanwhile).
func tryPut(url, body string) (int, string) {
	req, err := http.NewRequest("PUT", url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *testCluster) placedRanges(name string) ([]placedRange, error) {
	code, body := do(c.t, "GET", c.url(name, "/cluster/ranges"), "")
	var rb struct {
		Ranges []placedRange `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(body), &rb); code != 200 || err != nil {
		return nil, fmt.Errorf("GET /cluster/ranges: %d %.200s %v", code, body, err)
	}
	return rb.Ranges, nil
}

// placementProblem says what keeps the ranges from being placed as the
// sharding issue asks on the nodes in live: the ranges tile the key space,
// each has `replicas` voters, all on live nodes, and no learner; every live
// node holds replicas, within ±30% of the mean, leads at most half the
// ranges, and holds fewer than all of them. The meta range is on every
// live node.
func placementProblem(rs []placedRange, live []string, replicas int) string {
	if len(rs) == 0 || rs[0].Start != "" || rs[len(rs)-1].End != "" {
		return "the ranges do not reach both ends of the key space"
	}
	count, leads := map[string]int{}, map[string]int{}
	data := 0
	for i, r := range rs {
		if i > 0 && rs[i-1].End != r.Start {
			return fmt.Sprintf("range %d ends at %q, range %d starts at %q", rs[i-1].ID, rs[i-1].End, r.ID, r.Start)
		}
		if r.Meta {
			for _, n := range live {
				if !slices.Contains(r.Replicas, n) && !slices.Contains(r.Learners, n) {
					return fmt.Sprintf("the meta range is not on %s: %v %v", n, r.Replicas, r.Learners)
				}
			}
			continue
		}
		data++
		if len(r.Replicas) != replicas || len(r.Learners) > 0 {
			return fmt.Sprintf("range %d: voters %v, learners %v", r.ID, r.Replicas, r.Learners)
		}
		for _, n := range r.Replicas {
			if !slices.Contains(live, n) {
				return fmt.Sprintf("range %d has a replica on %s, which is down", r.ID, n)
			}
			count[n]++
		}
		if r.Leader == "" {
			return fmt.Sprintf("range %d has no leader", r.ID)
		}
		leads[r.Leader]++
	}
	mean := float64(data*replicas) / float64(len(live))
	for _, n := range live {
		switch {
		case count[n] == 0:
			return fmt.Sprintf("%s holds no replica", n)
		case float64(count[n]) < 0.7*mean || float64(count[n]) > 1.3*mean:
			return fmt.Sprintf("%s holds %d replicas, the mean is %.1f: %v", n, count[n], mean, count)
		case count[n] == data:
			return fmt.Sprintf("%s holds every range", n)
		case 2*leads[n] > data:
			return fmt.Sprintf("%s leads %d of %d ranges", n, leads[n], data)
		}
	}
	return ""
}

// TestPlacement is the sharding issue's placement scenario: a 3-node
// cluster split into ranges grows to five nodes by --join, and the ranges
// spread over them (3 replicas each, balanced, leaders too); then one node
// is killed and its replicas are made again on the others. Writes go on
// throughout, and every acknowledged one is read back from every live node.
func TestPlacement(t *testing.T) {
	extra := []string{"--range-split-bytes", "64KiB", "--dead-node-timeout", "10s", "--placement-interval", "300ms"}
	c := startCluster(t, 3, extra...)
	c.leader(10 * time.Second)
	value := strings.Repeat("v", 1000)

	var mu sync.Mutex
	acked := map[string]string{}
	// maybe holds, per key, the values of writes after the last acknowledged
	// one whose outcome is unknown (no answer, or "may still have been
	// applied"): the key may hold one of them instead.
	maybe := map[string][]string{}
	var seq atomic.Int64
	var ids []string // request ids of acknowledged writes
	put := func(node, key, v string) bool {
		// A request id makes a retry inside the cluster safe.
		id := fmt.Sprintf("%s-%d", key, seq.Add(1))
		code, body := tryPut(c.url(node, "/key/"+key+"?client_id=p&request_id="+id), `{"value":"`+v+`"}`)
		mu.Lock()
		switch {
		case code == 200:
			acked[key] = v
			delete(maybe, key)
			ids = append(ids, id)
		case code == 0 || strings.Contains(body, "may still have been applied"):
			maybe[key] = append(maybe[key], v)
		}
		mu.Unlock()
		return code == 200
	}
	// 2 MB over 2048 keys, so about 32 ranges.
	const keys = 2048
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += 8 {
				key := fmt.Sprintf("k%05d", (i*7919)%keys)
				for attempt := 0; !put(c.names[i%3], key, value); attempt++ {
					if attempt == 50 {
						t.Errorf("PUT %s failed 50 times", key)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Writes go on while the cluster grows and loses a node.
	stop := make(chan struct{})
	var writes, failed atomic.Int64
	var writers sync.WaitGroup
	live := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, n := range c.names {
			if s := c.servers[n]; s != nil && s.cmd.ProcessState == nil {
				out = append(out, n)
			}
		}
		return out
	}
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				nodes := live()
				if len(nodes) == 0 {
					return
				}
				key := fmt.Sprintf("k%05d", (i*31%(keys/2))*2+w) // each writer its own keys
				if put(nodes[i%len(nodes)], key, fmt.Sprintf("w%d-%d", w, i)) {
					writes.Add(1)
				} else {
					failed.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	var stopOnce sync.Once
	stopWriters := func() {
		stopOnce.Do(func() { close(stop) })
		writers.Wait()
	}
	defer stopWriters() // before the servers stop, if the test fails

	start := time.Now()
	for _, name := range []string{"n4", "n5"} {
		mu.Lock()
		c.names = append(c.names, name)
		c.http[name], c.peer[name], c.dirs[name] = freePort(t), freePort(t), filepath.Join(t.TempDir(), name)
		args := append([]string{"server", "--id", name, "--data-dir", c.dirs[name], "--http", c.http[name],
			"--peer", c.peer[name], "--join", "http://" + c.http["n1"], "--tick", testTick.String()}, extra...)
		c.servers[name] = launch(t, c.dirs[name], c.http[name], args)
		mu.Unlock()
		c.servers[name].waitReady()
	}
	waitPlaced := func(within time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			nodes := live()
			rs, err := c.placedRanges(nodes[0])
			problem := ""
			if err != nil {
				problem = err.Error()
			} else {
				problem = placementProblem(rs, nodes, 3)
			}
			if problem == "" {
				t.Logf("%s: %d ranges placed on %v in %v", what, len(rs), nodes, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not placed within %v: %s", what, within, problem)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitPlaced(90*time.Second, "after n4 and n5 joined")

	start = time.Now()
	c.servers["n2"].kill9()
	waitPlaced(60*time.Second, "after n2 was killed")
	stopWriters()
	t.Logf("%d writes acknowledged during the moves, %d failed", writes.Load(), failed.Load())
	if writes.Load() == 0 {
		t.Fatal("no write was acknowledged while replicas moved")
	}

	// Every acknowledged write, from every live node; and the records of
	// requests, whichever range holds them.
	for _, name := range live() {
		for _, id := range []string{ids[0], ids[len(ids)/2], ids[len(ids)-1]} {
			code, body := do(t, "GET", c.url(name, "/request_status?client_id=p&request_id="+id), "")
			if code != 200 || !strings.Contains(body, `"processed":true`) {
				t.Fatalf("%s: request_status of %s: %d %.200s", name, id, code, body)
			}
		}
		// The versions of a key, from a node that may hold no replica of
		// its range (forwarded to one that does).
		checked := 0
		for key := range acked {
			if checked == 5 {
				break
			}
			checked++
			code, body := do(t, "GET", c.url(name, "/key/"+key+"/history"), "")
			if code != 200 || !strings.Contains(body, `"history":[{"version":1,`) {
				t.Fatalf("%s: GET %s/history: %d %.200s", name, key, code, body)
			}
		}
		for key, v := range acked {
			code, body := do(t, "GET", c.url(name, "/key/"+key), "")
			ok := code == 200 && strings.Contains(body, `"value":"`+v+`"`)
			for _, m := range maybe[key] {
				ok = ok || (code == 200 && strings.Contains(body, `"value":"`+m+`"`))
			}
			if !ok {
				t.Fatalf("%s: GET %s: %d %.120s, want %.20s (or one of %v)", name, key, code, body, v, maybe[key])
			}
		}
	}
	// Revisions are cluster-wide: writes made one after another, to keys of
	// many ranges through every live node, get increasing revisions (each
	// range's log index would not).
	var written []string
	for key := range acked {
		written = append(written, key)
	}
	sort.Strings(written)
	nodes, last := live(), int64(0)
	for i := 0; i < len(written); i += max(1, len(written)/40) {
		code, body := do(t, "PUT", c.url(nodes[i%len(nodes)], "/key/"+written[i]), `{"value":"rev"}`)
		var res struct {
			ID int64 `json:"id"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &res) != nil {
			t.Fatalf("PUT %s: %d %.200s", written[i], code, body)
		}
		if res.ID <= last {
			t.Fatalf("PUT %s after a write at revision %d was acknowledged: revision %d", written[i], last, res.ID)
		}
		last = res.ID
	}
}
