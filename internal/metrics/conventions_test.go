package metrics

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestCheckConventionsCatches: each rule of CheckConventions refuses a name
// that breaks it.
func TestCheckConventionsCatches(t *testing.T) {
	counter, gauge, histogram := dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM
	for _, tc := range []struct {
		name string
		typ  dto.MetricType
		want string // "" for a good name
	}{
		{"distkv_wal_written_bytes_total", counter, ""},
		{"distkv_wal_size_bytes", gauge, ""},
		{"distkv_http_request_duration_seconds", histogram, ""},
		{"distkv_raft_term", gauge, ""},
		{"kv_writes_total", counter, "no distkv_ prefix"},
		{"distkv_walBytes_total", counter, "snake_case"},
		{"distkv_writes", counter, "must end in _total"},
		{"distkv_writes_total", gauge, "only a counter"},
		{"distkv_request_duration", histogram, "histogram's name must end"},
		{"distkv_wal_bytes_written_total", counter, "must be the last word"},
		{"distkv_sync_latency", gauge, "end the name in its unit"},
		{"distkv_sync_milliseconds", gauge, "not a base unit"},
	} {
		mf := &dto.MetricFamily{Name: &tc.name, Type: tc.typ.Enum()}
		got := strings.Join(CheckConventions([]*dto.MetricFamily{mf}), "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s (%v): %q, want %q", tc.name, tc.typ, got, tc.want)
		}
	}
}
