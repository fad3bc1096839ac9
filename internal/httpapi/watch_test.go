package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// watchLines opens GET target on srv and returns a channel of the stream's
// lines (without the SSE framing's blank lines), closed when it ends.
func watchLines(t *testing.T, srv *httptest.Server, target, accept string) (<-chan string, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines <- sc.Text()
			}
		}
	}()
	return lines, resp
}

// next returns the next line that is not a PROGRESS line, within 3 s.
func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			if !json.Valid([]byte(strings.TrimPrefix(l, "data: "))) {
				t.Fatalf("line %q is not JSON", l)
			}
			if !strings.Contains(l, `"PROGRESS"`) {
				return l
			}
		case <-timeout:
			t.Fatal("no line within 3 s")
		}
	}
}

// TestWatchStreamsChanges: a watch on a prefix gets the puts and deletes of
// its keys, in revision order, and nothing else; one from start_revision 1
// replays the history first; a key watch gets its key's alone; SSE framing
// when asked for; PROGRESS lines while nothing changes.
func TestWatchStreamsChanges(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 0
	srv := httptest.NewServer(h)
	// Registered first, so run last: after the watches' requests are
	// cancelled (Close waits for their handlers).
	t.Cleanup(srv.Close)
	mustServe(t, h, "PUT", "/key/a%2Fold", `{"value":"o"}`, 200) // 1

	lines, resp := watchLines(t, srv, "/watch?prefix=a/", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	keyLines, _ := watchLines(t, srv, "/watch?key=a/1", "")
	sseLines, sseResp := watchLines(t, srv, "/watch?prefix=a/&start_revision=1", "text/event-stream")
	if sseResp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE watch: %s", sseResp.Header.Get("Content-Type"))
	}
	time.Sleep(3 * watchPoll)                                      // the watches started before the writes
	mustServe(t, h, "PUT", "/key/a%2F1", `{"value":"x"}`, 200)     // 2
	mustServe(t, h, "PUT", "/key/b", `{"value":"other"}`, 200)     // 3
	mustServe(t, h, "PUT", "/key/a%2F2", `{"value":{"n":1}}`, 200) // 4
	mustServe(t, h, "DELETE", "/key/a%2F1", "", 200)               // 5
	mustServe(t, h, "PUT", "/key/a%2F1", `{"value":"y"}`, 200)     // 6

	want := []string{
		`{"type":"PUT","key":"a/1","value":"x","revision":2,"version":1}`,
		`{"type":"PUT","key":"a/2","value":{"n":1},"revision":4,"version":1}`,
		`{"type":"DELETE","key":"a/1","revision":5}`,
		`{"type":"PUT","key":"a/1","value":"y","revision":6,"version":1}`,
	}
	for _, w := range want {
		if got := next(t, lines); got != w {
			t.Fatalf("prefix watch: %s, want %s", got, w)
		}
	}
	for _, i := range []int{0, 2, 3} {
		if got := next(t, keyLines); got != want[i] {
			t.Fatalf("key watch: %s, want %s", got, want[i])
		}
	}
	for _, w := range append([]string{`{"type":"PUT","key":"a/old","value":"o","revision":1,"version":1}`}, want...) {
		if got := next(t, sseLines); got != "data: "+w {
			t.Fatalf("SSE watch from 1: %s, want data: %s", got, w)
		}
	}
	// Quiet: a PROGRESS line with the revision everything was sent up to.
	timeout := time.After(3 * watchProgressEvery)
	for {
		select {
		case l := <-lines:
			if !json.Valid([]byte(l)) {
				t.Fatalf("line %q is not JSON", l)
			}
			if l == `{"type":"PROGRESS","revision":6}` {
				return
			}
			if !strings.Contains(l, "PROGRESS") {
				t.Fatalf("unexpected line %s", l)
			}
		case <-timeout:
			t.Fatal("no PROGRESS line")
		}
	}
}

// TestWatchRefuses: a watch needs one of key and prefix, a positive
// start_revision above the compaction.
func TestWatchRefuses(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 0
	mustServe(t, h, "PUT", "/key/k", `{"value":"1"}`, 200)
	mustServe(t, h, "PUT", "/key/k", `{"value":"2"}`, 200)
	mustServe(t, h, "PUT", "/key/k", `{"value":"3"}`, 200)
	mustServe(t, h, "POST", "/compact", `{"revision":2}`, 200)
	for _, tc := range []struct {
		target string
		code   int
		want   string
	}{
		{"/watch", 422, "GET /watch needs a key (?key=K) or a prefix (?prefix=P), not empty, and not both"},
		{"/watch?key=a&prefix=b", 422, "GET /watch needs a key (?key=K) or a prefix (?prefix=P), not empty, and not both"},
		{"/watch?prefix=", 422, "GET /watch needs a key (?key=K) or a prefix (?prefix=P), not empty, and not both"},
		{"/watch?key=k&start_revision=0", 422, `query parameter start_revision must be a positive integer, not "0"`},
		{"/watch?key=k&since=3", 422, `unknown query parameter "since"; GET /watch takes key, prefix and start_revision`},
		{"/watch?key=k&start_revision=2", 410, "start_revision 2 is compacted; the oldest a watch can start from is 3"},
	} {
		rec := serveString(h, "GET", tc.target, "")
		if rec.Code != tc.code || detail(t, rec) != tc.want {
			t.Errorf("GET %s = %d %s, want %d %q", tc.target, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
	if rec := serveString(h, "POST", "/watch?key=k", ""); rec.Code != 405 {
		t.Errorf("POST /watch = %d", rec.Code)
	}
}
