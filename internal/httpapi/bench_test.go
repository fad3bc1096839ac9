package httpapi

import (
	"bytes"
	"io"
	"net/http/httptest"
	"testing"
)

func BenchmarkPut(b *testing.B) {
	h, _ := newTestAPI(b, Config{})
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
