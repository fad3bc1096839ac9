package e2e

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/distkv/distkv/internal/metrics"
)

// scrape fetches url (a node's /metrics) and parses it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return mfs
}

// sample returns the value of the series name{labels} in mfs (a histogram's
// count), and whether there is one.
func sample(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetrics scrapes a node of a three-node cluster before and after
// writes and reads through it: the series of the requests, the WAL and Raft
// moved by at least the number of writes, the peer links carry bytes, every
// distkv_ series follows the naming conventions and is documented in
// docs/operations.md.
func TestMetrics(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader(10 * electionTimeout)
	url := c.url("n1", "/metrics")
	before := scrape(t, url)
	const writes = 20
	for i := range writes {
		if code, body := do(t, "PUT", c.url("n1", fmt.Sprintf("/key/metrics-%d", i)), `{"value":"v"}`); code != 200 {
			t.Fatalf("PUT = %d %s", code, body)
		}
		if code, body := do(t, "GET", c.url("n1", fmt.Sprintf("/key/metrics-%d", i)), ""); code != 200 {
			t.Fatalf("GET = %d %s", code, body)
		}
	}
	if code, _ := do(t, "GET", c.url("n1", "/key/metrics-none"), ""); code != 404 {
		t.Fatalf("GET of a missing key = %d", code)
	}
	// The API's rules are not /metrics's: a query parameter it would
	// refuse is ignored.
	if code, body := do(t, "GET", c.url("n1", "/metrics?unknown=1"), ""); code != 200 || !strings.Contains(body, "distkv_raft_term") {
		t.Fatalf("GET /metrics?unknown=1 = %d %.300s", code, body)
	}
	after := scrape(t, url)

	moved := func(name string, labels ...string) float64 {
		b, _ := sample(before, name, labels...)
		a, ok := sample(after, name, labels...)
		if !ok {
			t.Errorf("no series %s%v after the writes", name, labels)
		}
		return a - b
	}
	for _, tc := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"distkv_http_requests_total", []string{"route", "/key/{key}", "method", "PUT", "code", "200"}, writes},
		{"distkv_http_requests_total", []string{"route", "/key/{key}", "method", "GET", "code", "200"}, writes},
		{"distkv_http_requests_total", []string{"route", "/key/{key}", "method", "GET", "code", "404"}, 1},
		{"distkv_http_request_duration_seconds", []string{"route", "/key/{key}", "method", "PUT"}, writes},
		{"distkv_wal_written_bytes_total", nil, writes},
		{"distkv_wal_fsync_duration_seconds", nil, writes},
		{"distkv_raft_proposals_committed_total", nil, writes},
		{"distkv_raft_proposals_applied_total", nil, writes},
	} {
		if d := moved(tc.name, tc.labels...); d < tc.min {
			t.Errorf("%s%v moved by %v, want at least %v", tc.name, tc.labels, d, tc.min)
		}
	}
	// Every write succeeded.
	if d := moved("distkv_raft_proposals_failed_total"); d != 0 {
		t.Errorf("distkv_raft_proposals_failed_total moved by %v", d)
	}
	if v, _ := sample(after, "distkv_raft_term"); v < 1 {
		t.Errorf("term %v", v)
	}
	if v, _ := sample(after, "distkv_raft_has_leader"); v != 1 {
		t.Errorf("has_leader %v", v)
	}
	// The leader talks with every follower (followers only with it).
	ofLeader := scrape(t, c.url(leader, "/metrics"))
	for _, peer := range c.names {
		if peer == leader {
			continue
		}
		for _, name := range []string{"distkv_peer_sent_bytes_total", "distkv_peer_received_bytes_total", "distkv_peer_messages_sent_total"} {
			if v, ok := sample(ofLeader, name, "peer", peer); !ok || v <= 0 {
				t.Errorf("the leader %s: %s{peer=%q} = %v (%v)", leader, name, peer, v, ok)
			}
		}
		if v, ok := sample(ofLeader, "distkv_peer_connected", "peer", peer); !ok || v != 1 {
			t.Errorf("the leader %s: distkv_peer_connected{peer=%q} = %v (%v)", leader, peer, v, ok)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := sample(after, name); !ok {
			t.Errorf("no %s", name)
		}
	}

	// Every distkv_ series: the conventions, and a line in the docs.
	docs, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var ours []*dto.MetricFamily
	var names []string
	for name, mf := range after {
		if strings.HasPrefix(name, "distkv_") {
			ours = append(ours, mf)
			names = append(names, name)
		}
		if strings.Contains(name, "distkv") && !strings.HasPrefix(name, "distkv_") {
			t.Errorf("%s: a distkv series without the distkv_ prefix", name)
		}
	}
	sort.Strings(names)
	for _, p := range metrics.CheckConventions(ours) {
		t.Error(p)
	}
	for _, name := range names {
		if !regexp.MustCompile("`" + name + "`").Match(docs) {
			t.Errorf("%s is not in docs/operations.md's Metrics section", name)
		}
	}
	if len(names) < 30 {
		t.Errorf("only %d distkv_ series: %v", len(names), names)
	}
	t.Logf("%d distkv_ series: %s", len(names), strings.Join(names, " "))
}
