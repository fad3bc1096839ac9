package e2e

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
	want := `{"ranges":[{"id":1,"start":"","end":"","leader":"n1","replicas":["n1"],"bytes":12}]}`
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
	if err != nil || !regexp.MustCompile(`(?m)^ID\s+START\s+END\s+LEADER\s+REPLICAS\s+BYTES\n1\s+""\s+\(end\)\s+n1\s+n1\s+12\s*$`).MatchString(out) {
		t.Fatalf("distkv ranges -o table printed (%v):\n%s", err, out)
	}
}
