package metrics

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/distkv/distkv/internal/transport"
)

// TestDashboard keeps deploy/grafana/distkv.json in step with the series:
// every series its queries name exists, and the dashboard shows what it is
// for (requests, latency, Raft, WAL, snapshots, peer links).
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/distkv.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type       string                  `json:"type"`
			Title      string                  `json:"title"`
			Datasource struct{ UID string }    `json:"datasource"`
			Targets    []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("decode: %v", err)
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Errorf("template variables %v, want datasource and instance", vars)
	}

	m, reg, src := newTest(t)
	src.set(func(f *fakeSources) { f.peers[2] = transport.PeerStats{Name: "n2"} })
	m.ObserveWALSync(time.Millisecond)
	m.Handler(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/key/k", nil))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
	}
	name := regexp.MustCompile(`\b(?:distkv|go|process)_[a-z0-9_]+\b`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: %s does not select $instance", p.Title, tg.Expr)
			}
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(n, suffix); ok && types[b] == dto.MetricType_HISTOGRAM {
						base = b
					}
				}
				if _, ok := types[base]; !ok {
					t.Errorf("panel %q: %s is no series", p.Title, n)
				}
				used[base] = true
			}
		}
	}
	for _, want := range []string{
		"distkv_http_requests_total", "distkv_http_request_duration_seconds",
		"distkv_raft_term", "distkv_raft_leader_changes_total", "distkv_raft_ranges_led",
		"distkv_raft_proposals_committed_total", "distkv_raft_proposals_applied_total", "distkv_raft_proposals_failed_total",
		"distkv_raft_apply_lag_entries", "distkv_wal_fsync_duration_seconds", "distkv_wal_written_bytes_total",
		"distkv_snapshots_taken_total", "distkv_snapshots_sent_total", "distkv_snapshots_received_total",
		"distkv_peer_sent_bytes_total", "distkv_peer_received_bytes_total", "distkv_peer_messages_dropped_total",
		"distkv_peer_reconnects_total",
	} {
		if !used[want] {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}
