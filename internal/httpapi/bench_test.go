package httpapi

import (
	"bytes"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func BenchmarkPut(b *testing.B) {
	benchPut(b, []byte(`{"value": "myvalue"}`))
}

// BenchmarkPut256 sends the body of the side-by-side benchmarks (bench/): a
// 256-byte value.
func BenchmarkPut256(b *testing.B) {
	benchPut(b, []byte(`{"value":"`+strings.Repeat("v", 256)+`"}`))
}

func benchPut(b *testing.B, body []byte) {
	h, _ := newTestAPI(b, Config{})
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

func BenchmarkGet(b *testing.B) {
	h, _ := newTestAPI(b, Config{})
	if rec := serveString(h, "PUT", "/key/key6", `{"value": "myvalue"}`); rec.Code != 200 {
		b.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	req := httptest.NewRequest("GET", "/key/key6", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("GET = %d %s", rec.Code, rec.Body)
		}
	}
}
