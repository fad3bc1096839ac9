package metrics

import (
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
	"github.com/distkv/distkv/internal/wal"
)

// fakeSources stands for a node: tests set the counters it reports.
type fakeSources struct {
	mu    sync.Mutex
	node  raftnode.Metrics
	peers map[uint64]transport.PeerStats
}

func (f *fakeSources) Node() raftnode.Metrics {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.node
}

func (f *fakeSources) Peers() map[uint64]transport.PeerStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers
}

func (f *fakeSources) set(fn func(*fakeSources)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// testRoute is a stand-in for httpapi.Route.
func testRoute(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/key/") {
		return "/key/{key}"
	}
	return "other"
}

func newTest(t testing.TB) (*Metrics, *prometheus.Registry, *fakeSources) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(Config{Registry: reg, Route: testRoute})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSources{peers: map[uint64]transport.PeerStats{}}
	if err := m.Register(Sources{Node: src.Node, Peers: src.Peers}); err != nil {
		t.Fatal(err)
	}
	return m, reg, src
}

// value returns the value of the series name{labels} (a counter's or
// gauge's value, a histogram's count), failing the test if there is none.
func value(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Route: testRoute}, "Registry is required"},
		{Config{Registry: prometheus.NewRegistry()}, "Route is required"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	m, err := New(Config{Registry: prometheus.NewRegistry(), Route: testRoute})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Register(Sources{}); err == nil {
		t.Error("Register without Sources.Node succeeded")
	}
}

// TestRuntimeAndProcess: the Go runtime's and the process's collectors are
// in the registry.
func TestRuntimeAndProcess(t *testing.T) {
	_, reg, _ := newTest(t)
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
}

// TestNodeSeries: each series carries its counter's current value.
func TestNodeSeries(t *testing.T) {
	_, reg, src := newTest(t)
	src.set(func(f *fakeSources) {
		f.node = raftnode.Metrics{
			Term: 7, Leader: true, HasLeader: true, CommitIndex: 120, AppliedIndex: 100,
			LeaderChanges: 2, EntriesCommitted: 50, EntriesApplied: 40, ProposalsFailed: 3, ProposalsPending: 4,
			SnapshotsTaken: 5, SnapshotsSent: 6, SnapshotsReceived: 1, MessagesDropped: 9, DiskFull: true,
			WAL: wal.Stats{Frames: 11, Records: 22, Syncs: 10, BytesWritten: 4096, Segments: 2, SizeBytes: 5000},
		}
		f.peers[0x1234] = transport.PeerStats{Name: "n2", Connected: true, Sent: 30, Dropped: 2, Reconnects: 1, BytesSent: 1000, BytesReceived: 2000}
		f.peers[0xabc] = transport.PeerStats{Dropped: 8} // an id that is no peer: named by its id
	})
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"distkv_raft_term", nil, 7},
		{"distkv_raft_has_leader", nil, 1},
		{"distkv_raft_ranges_led", nil, 1},
		{"distkv_raft_leader_changes_total", nil, 2},
		{"distkv_raft_commit_index", nil, 120},
		{"distkv_raft_applied_index", nil, 100},
		{"distkv_raft_apply_lag_entries", nil, 20},
		{"distkv_raft_proposals_committed_total", nil, 50},
		{"distkv_raft_proposals_applied_total", nil, 40},
		{"distkv_raft_proposals_failed_total", nil, 3},
		{"distkv_raft_proposals_pending", nil, 4},
		{"distkv_raft_messages_dropped_total", nil, 9},
		{"distkv_raft_disk_full", nil, 1},
		{"distkv_snapshots_taken_total", nil, 5},
		{"distkv_snapshots_sent_total", nil, 6},
		{"distkv_snapshots_received_total", nil, 1},
		{"distkv_wal_written_bytes_total", nil, 4096},
		{"distkv_wal_frames_written_total", nil, 11},
		{"distkv_wal_records_written_total", nil, 22},
		{"distkv_wal_segments", nil, 2},
		{"distkv_wal_size_bytes", nil, 5000},
		{"distkv_peer_sent_bytes_total", []string{"peer", "n2"}, 1000},
		{"distkv_peer_received_bytes_total", []string{"peer", "n2"}, 2000},
		{"distkv_peer_messages_sent_total", []string{"peer", "n2"}, 30},
		{"distkv_peer_messages_dropped_total", []string{"peer", "n2"}, 2},
		{"distkv_peer_reconnects_total", []string{"peer", "n2"}, 1},
		{"distkv_peer_connected", []string{"peer", "n2"}, 1},
		{"distkv_peer_messages_dropped_total", []string{"peer", "0000000000000abc"}, 8},
		{"distkv_peer_connected", []string{"peer", "0000000000000abc"}, 0},
	} {
		if got := value(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// Read at every scrape: a counter that moved shows its new value.
	src.set(func(f *fakeSources) { f.node.WAL.BytesWritten = 8192 })
	if got := value(t, reg, "distkv_wal_written_bytes_total"); got != 8192 {
		t.Errorf("bytes written after it moved: %v", got)
	}
}

func TestObserveWALSync(t *testing.T) {
	m, reg, _ := newTest(t)
	for _, d := range []time.Duration{30 * time.Microsecond, 2 * time.Millisecond, 2 * time.Millisecond} {
		m.ObserveWALSync(d)
	}
	if n := testutil.CollectAndCount(m.walSync); n != 1 {
		t.Fatalf("%d series", n)
	}
	if got := value(t, reg, "distkv_wal_fsync_duration_seconds"); got != 3 {
		t.Fatalf("fsync histogram count %v, want 3", got)
	}
	var h dto.Metric
	if err := m.walSync.Write(&h); err != nil {
		t.Fatal(err)
	}
	if sum := h.GetHistogram().GetSampleSum(); sum < 0.00402 || sum > 0.00404 {
		t.Errorf("sum %v s, want 0.00403", sum)
	}
}

// TestHandler: requests are counted by route template, method and code;
// /metrics is served whatever the API would say of it; no key reaches a
// label.
func TestHandler(t *testing.T) {
	m, reg, _ := newTest(t)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut:
			w.Write([]byte(`{"status":"ok"}`)) // an implicit 200
		case strings.HasPrefix(r.URL.Path, "/key/"):
			w.WriteHeader(http.StatusNotFound)
		case r.URL.RawQuery != "":
			w.WriteHeader(http.StatusUnprocessableEntity) // as the API's unknown parameters
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	})
	h := m.Handler(api)
	do := func(method, target string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
		return rec
	}
	for range 3 {
		do("PUT", "/key/secret-key-1")
	}
	do("GET", "/key/secret-key-2")
	do("GET", "/nowhere?x=1")
	do("BREW", "/key/pot")
	if rec := do("POST", "/metrics"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %d", rec.Code)
	}
	rec := do("GET", "/metrics?unknown=1")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "distkv_http_requests_total") {
		t.Fatalf("GET /metrics?unknown=1 = %d %.200s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "secret") {
		t.Error("a key became a label value")
	}
	for _, tc := range []struct {
		route, method, code string
		want                float64
	}{
		{"/key/{key}", "PUT", "200", 3},
		{"/key/{key}", "GET", "404", 1},
		{"other", "GET", "422", 1},
		{"/key/{key}", "other", "404", 1},
		{"/metrics", "POST", "405", 1},
	} {
		if got := value(t, reg, "distkv_http_requests_total", "route", tc.route, "method", tc.method, "code", tc.code); got != tc.want {
			t.Errorf("requests %s %s %s = %v, want %v", tc.route, tc.method, tc.code, got, tc.want)
		}
	}
	if got := value(t, reg, "distkv_http_request_duration_seconds", "route", "/key/{key}", "method", "PUT"); got != 3 {
		t.Errorf("duration count of PUT /key/{key} = %v, want 3", got)
	}
	// The scrape above is counted once it is answered.
	if got := value(t, reg, "distkv_http_requests_total", "route", "/metrics", "method", "GET", "code", "200"); got != 1 {
		t.Errorf("GET /metrics counted %v times", got)
	}
}

// TestSeriesFollowConventions lints every series the package makes, with
// promlint and with the rules of the package's doc (the prefix distkv_,
// counters ending in _total, units in _seconds and _bytes), and checks that
// docs/operations.md lists each.
func TestSeriesFollowConventions(t *testing.T) {
	m, reg, src := newTest(t)
	src.set(func(f *fakeSources) { f.peers[2] = transport.PeerStats{Name: "n2"} })
	m.ObserveWALSync(time.Millisecond)
	m.Handler(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/key/k", nil))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ours []*dto.MetricFamily
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "distkv_") {
			ours = append(ours, mf)
		}
	}
	if len(ours) < 30 {
		t.Fatalf("only %d distkv_ families", len(ours))
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, p := range CheckConventions(ours) {
		t.Error(p)
	}
	docs, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(ours))
	for i, mf := range ours {
		names[i] = mf.GetName()
		if !strings.Contains(string(docs), "`"+names[i]+"`") {
			t.Errorf("%s is not in docs/operations.md's Metrics section", names[i])
		}
	}
	sort.Strings(names)
	t.Logf("%d families: %s", len(names), strings.Join(names, " "))
}
