package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClusterRanges: GET /cluster/ranges on a running node lists its one
// range over the whole key space, led by the node, with the size of the keys
// and values written; /cluster/status counts it; `distkv ranges` prints the
// same as JSON and as a table.
func TestClusterRanges(t *testing.T) {
	addr := freePort(t)
	startServer(t, filepath.Join(t.TempDir(), "n1"), addr)
	base := "http://" + addr
	for k, v := range map[string]string{"a": "1", "bb": "22", "ccc": "333"} {
		if code, body := do(t, "PUT", base+"/key/"+k, `{"value":"`+v+`"}`); code != 200 {
			t.Fatalf("PUT %s: %d %s", k, code, body)
		}
	}
	want := `{"ranges":[{"id":1,"start":"","end":"","leader":"n1","replicas":["n1"],"bytes":12,"meta":true}]}`
	if code, body := do(t, "GET", base+"/cluster/ranges", ""); code != 200 || body != want {
		t.Fatalf("GET /cluster/ranges: %d %s, want %s", code, body, want)
	}
	if code, body := do(t, "GET", base+"/cluster/status", ""); code != 200 || !strings.Contains(body, `"ranges":1,"range_leaders":1`) {
		t.Fatalf("GET /cluster/status does not count the range: %d %s", code, body)
	}
	out, err := run(t, "ranges", "-o", "json", "--endpoints", addr)
	if err != nil {
		t.Fatalf("distkv ranges -o json: %v\n%s", err, out)
	}
	var got struct {
		Ranges []struct {
			ID    uint64 `json:"id"`
			Bytes int64  `json:"bytes"`
		} `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Ranges) != 1 || got.Ranges[0].ID != 1 || got.Ranges[0].Bytes != 12 {
		t.Fatalf("distkv ranges -o json printed %s (%v)", out, err)
	}
	out, err = run(t, "ranges", "-o", "table", "--endpoints", addr)
	if err != nil || !regexp.MustCompile(`(?m)^ID\s+START\s+END\s+LEADER\s+REPLICAS\s+LEARNERS\s+BYTES\n1 \(meta\)\s+""\s+\(end\)\s+n1\s+n1\s+-\s+12\s*$`).MatchString(out) {
		t.Fatalf("distkv ranges -o table printed (%v):\n%s", err, out)
	}
}

// TestRangesSplitUnderLoad is the sharding issue's first check: a 3-node
// cluster with --range-split-bytes 64KiB, loaded with 4 MB through all its
// nodes, ends with at least 16 ranges that are contiguous, do not overlap
// and cover the key space on every node; every key is read back from every
// node, and one GET /keys walk returns every key once, in order, while
// ranges split under it (continue tokens name a key, not a range).
func TestRangesSplitUnderLoad(t *testing.T) {
	c := startCluster(t, 3, "--range-split-bytes", "64KiB")
	c.leader(10 * time.Second)
	const keys, size = 4096, 1000 // 4 MB of values
	value := strings.Repeat("v", size)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	start := time.Now()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += 8 {
				key := fmt.Sprintf("k%05d", (i*7919)%keys)
				url := c.url(c.names[i%3], "/key/"+key+"?client_id=w&request_id="+key)
				var code int
				var body string
				for attempt := 0; attempt < 50; attempt++ {
					// A range new from a split may still be electing
					// its leader: 503, try again.
					code, body = do(t, "PUT", url, `{"value":"`+value+`"}`)
					if code == 200 {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if code != 200 {
					errs <- fmt.Errorf("PUT %s: %d %s", key, code, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("4 MB written in %v", time.Since(start).Round(time.Millisecond))
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Splits go on for a moment after the last write: wait until every
	// range is under 64 KiB (plus a value) on every node and they tile
	// the key space.
	type rangeBody struct {
		Ranges []struct {
			ID       uint64   `json:"id"`
			Start    string   `json:"start"`
			End      string   `json:"end"`
			Replicas []string `json:"replicas"`
			Bytes    int64    `json:"bytes"`
		} `json:"ranges"`
	}
	var settled rangeBody
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range c.names {
		for {
			var rb rangeBody
			code, body := do(t, "GET", c.url(name, "/cluster/ranges"), "")
			err := json.Unmarshal([]byte(body), &rb)
			problem := ""
			switch {
			case code != 200 || err != nil:
				problem = fmt.Sprintf("%d %s %v", code, body, err)
			case len(rb.Ranges) < 16:
				problem = fmt.Sprintf("%d ranges", len(rb.Ranges))
			case rb.Ranges[0].Start != "" || rb.Ranges[len(rb.Ranges)-1].End != "":
				problem = "the ranges do not reach both ends of the key space"
			}
			for i, r := range rb.Ranges {
				if problem != "" {
					break
				}
				if i > 0 && rb.Ranges[i-1].End != r.Start {
					problem = fmt.Sprintf("range %d ends at %q, range %d starts at %q", rb.Ranges[i-1].ID, rb.Ranges[i-1].End, r.ID, r.Start)
				}
				if r.Bytes > 64<<10+2*size || len(r.Replicas) != 3 {
					problem = fmt.Sprintf("range %d: %d bytes, replicas %v", r.ID, r.Bytes, r.Replicas)
				}
			}
			if problem == "" {
				settled = rb
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the ranges did not settle: %s", name, problem)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%d ranges %v after the first write", len(settled.Ranges), time.Since(start).Round(time.Millisecond))
	for _, name := range c.names {
		for i := range keys {
			key := fmt.Sprintf("k%05d", i)
			if code, body := do(t, "GET", c.url(name, "/key/"+key), ""); code != 200 || !strings.Contains(body, value) {
				t.Fatalf("%s: GET %s: %d %.100s", name, key, code, body)
			}
		}
	}
	// The walk goes on while ranges split under it: before each page, the
	// next 40 keys get values of 4 KB (160 KB more than a range holds),
	// so the range the next page reads from splits while the walk holds a
	// continue token into it.
	rangesNow := func() int {
		_, body := do(t, "GET", c.url("n2", "/cluster/ranges"), "")
		var rb rangeBody
		json.Unmarshal([]byte(body), &rb)
		return len(rb.Ranges)
	}
	before := rangesNow()
	big := strings.Repeat("w", 4000)
	var walked []string
	next := c.url("n2", "/keys?limit=300")
	for next != "" {
		for i := len(walked); i < len(walked)+40 && i < keys; i++ {
			key := fmt.Sprintf("k%05d", i)
			for attempt := 0; ; attempt++ {
				code, body := do(t, "PUT", c.url(c.names[i%3], "/key/"+key), `{"value":"`+big+`"}`)
				if code == 200 {
					break
				}
				if attempt == 50 {
					t.Fatalf("PUT %s during the walk: %d %s", key, code, body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		time.Sleep(200 * time.Millisecond) // a size check every 10 ticks
		code, body := do(t, "GET", next, "")
		var page struct {
			KVs []struct {
				Key string `json:"key"`
			} `json:"kvs"`
			More     bool   `json:"more"`
			Continue string `json:"continue"`
		}
		if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil {
			t.Fatalf("GET /keys: %d %.200s %v", code, body, err)
		}
		for _, kv := range page.KVs {
			walked = append(walked, kv.Key)
		}
		next = ""
		if page.More {
			next = c.url("n2", "/keys?limit=300&continue="+url.QueryEscape(page.Continue))
		}
	}
	if len(walked) != keys {
		t.Fatalf("the walk returned %d keys, want %d", len(walked), keys)
	}
	// A transaction over two ranges writes both keys at one revision
	// (TestBankAcrossRanges tests them at length); one in one range works
	// as it did.
	txn := `{"compare":[],"success":[{"put":{"key":"k00000","value":"txn"}},{"put":{"key":"k04095","value":"txn"}}]}`
	code, body := do(t, "POST", c.url("n1", "/txn"), txn)
	var tr struct {
		Succeeded bool  `json:"succeeded"`
		Revision  int64 `json:"revision"`
	}
	if json.Unmarshal([]byte(body), &tr); code != 200 || !tr.Succeeded || tr.Revision == 0 {
		t.Fatalf("a txn over two ranges: %d %s", code, body)
	}
	for _, k := range []string{"k00000", "k04095"} {
		var kv struct {
			Value    string `json:"value"`
			Revision int64  `json:"revision"`
		}
		_, body := do(t, "GET", c.url("n2", "/key/"+k), "")
		if json.Unmarshal([]byte(body), &kv); kv.Value != "txn" || kv.Revision != tr.Revision {
			t.Fatalf("%s after the txn at %d: %s", k, tr.Revision, body)
		}
	}
	one := `{"compare":[],"success":[{"put":{"key":"k00000","value":"txn"}},{"put":{"key":"k00001","value":"txn"}}]}`
	if code, body := do(t, "POST", c.url("n3", "/txn"), one); code != 200 || !strings.Contains(body, `"succeeded":true`) {
		t.Fatalf("a txn in one range: %d %s", code, body)
	}
	if after := rangesNow(); after <= before {
		t.Fatalf("no range split during the walk (%d ranges before, %d after): it showed nothing about splits", before, after)
	} else {
		t.Logf("%d ranges before the walk, %d after", before, after)
	}
	for i, k := range walked {
		if want := fmt.Sprintf("k%05d", i); k != want {
			t.Fatalf("walk key %d is %q, want %q", i, k, want)
		}
	}
}
