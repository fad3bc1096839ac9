package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distkv/distkv/internal/wal"
)

// BenchmarkHandler measures what the instrumentation adds to a request: an
// API handler that answers a PUT at once, bare and behind Handler. The
// difference is the cost per request (see httpapi's BenchmarkPutMetrics
// for it beside the real API's work).
func BenchmarkHandler(b *testing.B) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"status":"ok"}`))
	})
	m, err := New(Config{Registry: prometheus.NewRegistry(), Route: testRoute})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"bare", api}, {"instrumented", m.Handler(api)}} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(`{"value": "myvalue"}`)
			rd := bytes.NewReader(body)
			req := httptest.NewRequest("PUT", "/key/key6", rd)
			rec := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(body)
				req.Body = io.NopCloser(rd)
				rec.Body.Reset()
				rec.Code = 0
				bc.h.ServeHTTP(rec, req)
			}
		})
	}
}

// BenchmarkWALAppendSync is the WAL's BenchmarkAppendSync1 (one writer, one
// 256-byte entry per synced Append) without a SyncObserver and with
// ObserveWALSync, on the disk (os.TempDir) and, where there is one, on a
// tmpfs (/dev/shm), where a sync costs little and the observer's share
// shows.
func BenchmarkWALAppendSync(b *testing.B) {
	dirs := []struct{ name, dir string }{{"disk", ""}}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dirs = append(dirs, struct{ name, dir string }{"tmpfs", "/dev/shm"})
	}
	for _, d := range dirs {
		for _, observed := range []bool{false, true} {
			name := d.name + "/bare"
			if observed {
				name = d.name + "/observed"
			}
			b.Run(name, func(b *testing.B) {
				dir, err := os.MkdirTemp(d.dir, "walbench")
				if err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(dir)
				cfg := wal.Config{Dir: dir, Direct: true}
				if observed {
					m, err := New(Config{Registry: prometheus.NewRegistry(), Route: testRoute})
					if err != nil {
						b.Fatal(err)
					}
					cfg.SyncObserver = m.ObserveWALSync
				}
				w, err := wal.Open(cfg, func(wal.Record) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				rec := []wal.Record{{Shard: 1, Type: wal.RecordEntry, Data: bytes.Repeat([]byte("v"), 256)}}
				b.SetBytes(256)
				i := uint64(0)
				for b.Loop() {
					i++
					rec[0].Index = i
					if err := w.Append(rec, true); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkObserveWALSync is what the WAL's writer pays per sync for the
// fsync histogram: the two clock reads of its SyncObserver timing and the
// observation.
func BenchmarkObserveWALSync(b *testing.B) {
	m, err := New(Config{Registry: prometheus.NewRegistry(), Route: testRoute})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		m.ObserveWALSync(time.Since(start))
	}
}
