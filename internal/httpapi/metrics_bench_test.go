package httpapi

import (
	"bytes"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distkv/distkv/internal/metrics"
)

// BenchmarkPutMetrics is BenchmarkPut behind the metrics middleware that
// cmd/distkv puts in front of the API (metrics.Metrics.Handler): the
// difference between the two is what counting and timing a request costs.
func BenchmarkPutMetrics(b *testing.B) {
	api, _ := newTestAPI(b, Config{})
	m, err := metrics.New(metrics.Config{Registry: prometheus.NewRegistry(), Route: Route})
	if err != nil {
		b.Fatal(err)
	}
	h := m.Handler(api)
	body := []byte(`{"value": "myvalue"}`)
	rd := bytes.NewReader(body)
	req := httptest.NewRequest("PUT", "/key/key6", rd)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("PUT = %d %s", rec.Code, rec.Body)
		}
	}
}
