package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestScanAtRevisionAcrossRanges: a 3-node cluster with 64 KiB ranges. A
// scan's revision R is taken after a first load; then every key is
// overwritten, some are deleted and as many new keys are written, so that
// ranges split meanwhile. From every node, a paged scan at R returns exactly
// the first load (every key once, in order, with its first value), and so
// does GET ?revision=R; the current state shows the second. After POST
// /compact to R, R is still readable and R-1 answers 410.
func TestScanAtRevisionAcrossRanges(t *testing.T) {
	c := startCluster(t, 3, "--range-split-bytes", "64KiB")
	c.leader(10 * time.Second)
	const keys = 300
	pad := strings.Repeat("p", 1000)
	put := func(i int, path, body string) {
		t.Helper()
		var code int
		var resp string
		for range 50 {
			// A range new from a split may still be electing its leader.
			code, resp = do(t, "PUT", c.url(c.names[i%3], path), body)
			if code == 200 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("PUT %s: %d %s", path, code, resp)
	}
	for i := range keys {
		put(i, fmt.Sprintf("/key/r%04d", i), fmt.Sprintf(`{"value":"one-%d-%s"}`, i, pad))
	}
	type page struct {
		KVs []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"kvs"`
		More     bool   `json:"more"`
		Continue string `json:"continue"`
		Revision int64  `json:"revision"`
	}
	get := func(node, path string) page {
		t.Helper()
		code, body := do(t, "GET", c.url(node, path), "")
		var p page
		if code != 200 || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("GET %s on %s: %d %.300s", path, node, code, body)
		}
		return p
	}
	rev := get(c.names[0], "/keys?limit=1").Revision
	if rev == 0 {
		t.Fatal("a scan carries no revision")
	}
	ranges := func() int {
		var rb struct {
			Ranges []json.RawMessage `json:"ranges"`
		}
		_, body := do(t, "GET", c.url(c.names[0], "/cluster/ranges"), "")
		if err := json.Unmarshal([]byte(body), &rb); err != nil {
			t.Fatalf("GET /cluster/ranges: %.300s", body)
		}
		return len(rb.Ranges)
	}
	before := ranges()

	// The second load: every key overwritten, one in ten deleted, as many
	// new keys.
	for i := range keys {
		put(i, fmt.Sprintf("/key/r%04d", i), fmt.Sprintf(`{"value":"two-%d-%s"}`, i, pad))
		put(i, fmt.Sprintf("/key/s%04d", i), fmt.Sprintf(`{"value":"new-%d-%s"}`, i, pad))
		if i%10 == 0 {
			if code, body := do(t, "DELETE", c.url(c.names[i%3], fmt.Sprintf("/key/r%04d", i)), ""); code != 200 {
				t.Fatalf("DELETE r%04d: %d %s", i, code, body)
			}
		}
	}
	after := ranges()
	t.Logf("revision %d; %d ranges before the second load, %d after", rev, before, after)
	if after <= before {
		t.Fatalf("no range split during the second load (%d ranges before, %d after)", before, after)
	}

	scan := func(node, query string) (got []string, p page) {
		t.Helper()
		p = get(node, "/keys?limit=37"+query)
		for {
			for _, kv := range p.KVs {
				got = append(got, kv.Key+"="+strings.TrimSuffix(kv.Value, "-"+pad))
			}
			if !p.More {
				return got, p
			}
			p = get(node, "/keys?limit=37&continue="+url.QueryEscape(p.Continue))
		}
	}
	var first, second []string
	for i := range keys {
		first = append(first, fmt.Sprintf("r%04d=one-%d", i, i))
		if i%10 != 0 {
			second = append(second, fmt.Sprintf("r%04d=two-%d", i, i))
		}
	}
	for i := range keys {
		second = append(second, fmt.Sprintf("s%04d=new-%d", i, i))
	}
	for _, node := range c.names {
		got, last := scan(node, fmt.Sprintf("&revision=%d", rev))
		if strings.Join(got, " ") != strings.Join(first, " ") {
			t.Fatalf("%s: scan at %d: %d pairs, want the %d of the first load (first differences: %v)", node, rev, len(got), len(first), firstDiff(got, first))
		}
		if last.Revision != rev {
			t.Fatalf("%s: the last page read at %d, not %d", node, last.Revision, rev)
		}
		got, last = scan(node, "")
		if strings.Join(got, " ") != strings.Join(second, " ") || last.Revision <= rev {
			t.Fatalf("%s: current scan at %d: %d pairs, want the %d of the second load (first differences: %v)", node, last.Revision, len(got), len(second), firstDiff(got, second))
		}
		for _, i := range []int{0, 5, keys - 1} {
			code, body := do(t, "GET", c.url(node, fmt.Sprintf("/key/r%04d?revision=%d", i, rev)), "")
			if code != 200 || !strings.Contains(body, fmt.Sprintf(`"value":"one-%d-`, i)) {
				t.Fatalf("%s: GET r%04d at %d: %d %.100s", node, i, rev, code, body)
			}
		}
	}

	if code, body := do(t, "POST", c.url(c.names[1], "/compact"), fmt.Sprintf(`{"revision":%d}`, rev)); code != 200 || body != fmt.Sprintf(`{"revision":%d}`, rev) {
		t.Fatalf("POST /compact: %d %s", code, body)
	}
	for _, node := range c.names {
		code, body := do(t, "GET", c.url(node, fmt.Sprintf("/key/r0005?revision=%d", rev-1)), "")
		if want := fmt.Sprintf(`{"detail":"revision %d is compacted; the oldest readable is %d"}`, rev-1, rev); code != 410 || body != want {
			t.Fatalf("%s: GET below the compaction: %d %s, want 410 %s", node, code, body, want)
		}
		code, body = do(t, "GET", c.url(node, fmt.Sprintf("/keys?revision=%d", rev-1)), "")
		if code != 410 {
			t.Fatalf("%s: scan below the compaction: %d %.200s", node, code, body)
		}
		if got, _ := scan(node, fmt.Sprintf("&revision=%d", rev)); strings.Join(got, " ") != strings.Join(first, " ") {
			t.Fatalf("%s: scan at the compaction revision %d: %d pairs, want %d", node, rev, len(got), len(first))
		}
	}
}

// firstDiff returns the first few places where got and want differ.
func firstDiff(got, want []string) []string {
	var out []string
	for i := 0; i < max(len(got), len(want)) && len(out) < 3; i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			out = append(out, fmt.Sprintf("#%d got %q want %q", i, g, w))
		}
	}
	return out
}
