package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is a request as a test server saw it.
type seen struct {
	method, path, rawPath, query, body string
}

// recorder is an httptest server that records each request and answers it
// with answer (called with the request's number, from 0).
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newRecorder(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		n := len(rec.reqs)
		rec.reqs = append(rec.reqs, seen{r.Method, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, string(b)})
		rec.mu.Unlock()
		answer(n, w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (r *recorder) requests() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// reply answers with code and body, as a distkv node does.
func reply(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// deadAddr returns the address of a listener that has been closed: a dial
// to it is refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 2 * time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func queryValue(raw, name string) string {
	for _, kv := range strings.Split(raw, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v
		}
	}
	return ""
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" for valid
	}{
		{Config{Endpoints: []string{"127.0.0.1:18400"}}, ""},
		{Config{Endpoints: []string{"http://n1:18400/", "https://n2:18400"}}, ""},
		{Config{}, "client config: no endpoints"},
		{Config{Endpoints: []string{"ftp://n1:1"}}, `client config: endpoint "ftp://n1:1" is not host:port or http(s)://host:port`},
		{Config{Endpoints: []string{"http://n1:1/api"}}, `client config: endpoint "http://n1:1/api" is not host:port or http(s)://host:port`},
		{Config{Endpoints: []string{"n1:1"}, ClientID: strings.Repeat("x", 257)}, "client config: ClientID is 257 bytes; the limit is 256"},
	} {
		_, err := New(tc.cfg)
		if got := fmt.Sprint(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	c := newTestClient(t, Config{Endpoints: []string{"n1:1", "http://n1:1", "n2:1/"}})
	if got := c.Endpoints(); !slices.Equal(got, []string{"http://n1:1", "http://n2:1"}) {
		t.Errorf("endpoints %q", got)
	}
	if id := c.ClientID(); !strings.HasPrefix(id, "distkv-go-") || len(id) != len("distkv-go-")+16 {
		t.Errorf("default client id %q", id)
	}
}

// TestFailover: the first endpoint refuses connections, the second answers;
// the next call starts with the second (it answered last).
func TestFailover(t *testing.T) {
	srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		reply(w, 200, `{"key":"k","value":"v","version":1,"revision":5}`)
	})
	c := newTestClient(t, Config{Endpoints: []string{deadAddr(t), srv.URL}})
	for i := 0; i < 2; i++ {
		kv, err := c.Get(context.Background(), "k")
		if err != nil || kv.Value != "v" || kv.Version != 1 || kv.Revision != 5 {
			t.Fatalf("get %d: %+v %v", i, kv, err)
		}
	}
	if n := len(srv.requests()); n != 2 {
		t.Fatalf("the answering endpoint got %d requests, want 2", n)
	}
	c.mu.Lock()
	preferred := c.endpoints[c.preferred]
	c.mu.Unlock()
	if preferred != srv.URL {
		t.Errorf("the client starts with %s, want %s, which answered last", preferred, srv.URL)
	}
}

// TestWriteRetriedWithItsRequestID: a write whose first attempt timed out
// (the server took longer than Config.Timeout) is sent again with the same
// client_id and request_id, and the next write gets a new request_id.
func TestWriteRetriedWithItsRequestID(t *testing.T) {
	release := make(chan struct{})
	srv := newRecorder(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			select { // the first attempt: no answer in time
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		reply(w, 200, `{"status":"ok","id":7,"key":"k","version":1}`)
	})
	defer close(release)
	c := newTestClient(t, Config{Endpoints: []string{srv.URL}, Timeout: 100 * time.Millisecond, ClientID: "cli-1"})
	res, err := c.Put(context.Background(), "k", "v", PrevVersion(0))
	if err != nil || res.Revision != 7 || res.Version != 1 || res.Key != "k" || string(res.Raw) != `{"status":"ok","id":7,"key":"k","version":1}` {
		t.Fatalf("put: %+v %v", res, err)
	}
	reqs := srv.requests()
	if len(reqs) != 2 || reqs[0].query != reqs[1].query || reqs[0].body != reqs[1].body {
		t.Fatalf("attempts %+v, want the same request twice", reqs)
	}
	if queryValue(reqs[0].query, "client_id") != "cli-1" || len(queryValue(reqs[0].query, "request_id")) != 16 {
		t.Fatalf("the write's query %q, want client_id=cli-1 and a request_id", reqs[0].query)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(reqs[0].body), &body); err != nil || body["value"] != "v" || body["prev_version"] != 0.0 || len(body) != 2 {
		t.Fatalf("body %s", reqs[0].body)
	}
	if _, err := c.Put(context.Background(), "k", "v", PrevVersion(0)); err != nil {
		t.Fatal(err)
	}
	reqs = srv.requests()
	if len(reqs) != 3 || queryValue(reqs[2].query, "request_id") == queryValue(reqs[0].query, "request_id") {
		t.Fatalf("a second write reused the request id: %+v", reqs)
	}
}

// TestWriteRetriedAfterMayHaveApplied: a write with ids is sent again after
// a 503 saying it may still have been applied, on the next endpoint, with
// the same ids; a membership change (no ids) is not.
func TestWriteRetriedAfterMayHaveApplied(t *testing.T) {
	const timedOut = `{"detail":"request timed out after 5s; a write may still have been applied"}`
	var mu sync.Mutex
	var queries []string
	first := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		reply(w, 503, timedOut)
	})
	second := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		reply(w, 200, `{"succeeded":true,"revision":9,"responses":[{"put":{"revision":9}}]}`)
	})
	c := newTestClient(t, Config{Endpoints: []string{first.URL, second.URL}})
	res, err := c.Txn(context.Background(), Txn{Success: []Op{OpPut("k", "v")}})
	if err != nil || !res.Succeeded || res.Revision != 9 || len(res.Responses) != 1 || res.Responses[0].Revision != 9 {
		t.Fatalf("txn: %+v %v", res, err)
	}
	if len(queries) != 2 || queries[0] != queries[1] || queryValue(queries[0], "request_id") == "" {
		t.Fatalf("the attempts were sent with %q, want the same ids twice", queries)
	}
	c2 := newTestClient(t, Config{Endpoints: []string{first.URL, second.URL}})
	_, err = c2.AddMember(context.Background(), NewMember{ID: "n4", Peer: "h:1"})
	var se *StatusError
	if !errors.As(err, &se) || !se.MayHaveApplied() || !errors.Is(err, ErrUnavailable) || len(first.requests()) != 2 || len(second.requests()) != 1 {
		t.Fatalf("a membership change after a timeout: %v; %d and %d attempts, want one", err, len(first.requests())-1, len(second.requests())-1)
	}
	if got := first.requests()[1].query; got != "" {
		t.Errorf("a membership change was sent with %q, want no request ids", got)
	}
}

// TestRetryUntilRetryFor: "no leader" (503) and refused connections are
// retried, with backoff, on every endpoint, until RetryFor passes; the
// error is the last answer, and matches ErrUnavailable. A connection error
// reads as itself and matches ErrUnavailable too.
func TestRetryUntilRetryFor(t *testing.T) {
	srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		reply(w, 503, `{"detail":"no leader: the cluster has no quorum or is electing one"}`)
	})
	c := newTestClient(t, Config{Endpoints: []string{deadAddr(t), srv.URL}, RetryFor: 400 * time.Millisecond})
	start := time.Now()
	_, err := c.RemoveMember(context.Background(), "n2")
	took := time.Since(start)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || !errors.Is(err, ErrUnavailable) || err.Error() != "503 no leader: the cluster has no quorum or is electing one" {
		t.Fatalf("err %v", err)
	}
	// It stops when the next backoff would pass RetryFor.
	if n := len(srv.requests()); n < 3 || took < 100*time.Millisecond || took > 400*time.Millisecond+time.Second {
		t.Fatalf("%d attempts in %v, want several within about 400ms", n, took)
	}
	c = newTestClient(t, Config{Endpoints: []string{deadAddr(t)}, RetryFor: -1})
	_, err = c.Get(context.Background(), "k")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("unreachable: %v", err)
	}
}

// TestNoRetryOn4xx: a 4xx answer is the call's error at once, for reads and
// writes alike; so are a 500 and a 507.
func TestNoRetryOn4xx(t *testing.T) {
	for _, tc := range []struct {
		code int
		body string
	}{
		{400, `{"detail":"key must not be empty"}`},
		{404, `{"detail":"Key not found"}`},
		{409, `{"detail":"this request was already applied, at revision 5, but its answer was more than the 1048576 bytes kept, so it cannot be given again; nothing was applied now"}`},
		{413, `{"detail":"key is 5000 bytes; the limit is 4096 bytes"}`},
		{422, `{"detail":"request body is empty"}`},
		{500, `{"detail":"internal error: x"}`},
		{507, `{"detail":"no space left on device: this node cannot write its log; writes resume when space is freed"}`},
	} {
		srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) { reply(w, tc.code, tc.body) })
		other := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) { reply(w, 200, `{}`) })
		c := newTestClient(t, Config{Endpoints: []string{srv.URL, other.URL}})
		ctx := context.Background()
		calls := map[string]func() error{
			"get":    func() error { _, err := c.Get(ctx, "k"); return err },
			"put":    func() error { _, err := c.Put(ctx, "k", "v"); return err },
			"delete": func() error { _, err := c.Delete(ctx, "k"); return err },
			"txn":    func() error { _, err := c.Txn(ctx, Txn{}); return err },
			"add":    func() error { _, err := c.AddMember(ctx, NewMember{ID: "n2", Peer: "h:1"}); return err },
		}
		for name, call := range calls {
			before := len(srv.requests())
			err := call()
			var se *StatusError
			var detail struct{ Detail string }
			json.Unmarshal([]byte(tc.body), &detail)
			if !errors.As(err, &se) || se.Code != tc.code || se.Detail != detail.Detail || string(se.Body) != tc.body ||
				err.Error() != fmt.Sprintf("%d %s", tc.code, detail.Detail) {
				t.Errorf("%s answered %d: %v", name, tc.code, err)
			}
			if n := len(srv.requests()) - before; n != 1 || len(other.requests()) != 0 {
				t.Errorf("%s answered %d: %d attempts, %d elsewhere; want 1 and 0", name, tc.code, n, len(other.requests()))
			}
			keyNotFound := tc.code == 404 && (name == "get" || name == "delete" || name == "put")
			if errors.Is(err, ErrNotFound) != keyNotFound || errors.Is(err, ErrUnavailable) {
				t.Errorf("%s answered %d: ErrNotFound %v, ErrUnavailable %v", name, tc.code, errors.Is(err, ErrNotFound), errors.Is(err, ErrUnavailable))
			}
		}
	}
}

// TestConflictError: a failed condition's 409 gives the key's current
// version and revision.
func TestConflictError(t *testing.T) {
	for _, tc := range []struct {
		body              string
		key               string
		version, revision int64
	}{
		{`{"detail":"condition failed: prev_version is 1 but the key's version is 2","key":"greeting","version":2,"revision":7}`, "greeting", 2, 7},
		{`{"detail":"condition failed: version is 1 but the key's version is 2","status":"error","message":"Version conflict: provided version 1 is outdated","current_version":2,"key":"greeting","version":2,"revision":7}`, "greeting", 2, 7},
		{`{"detail":"condition failed: prev_version is 2 but the key does not exist","key":"greeting","version":0,"revision":0}`, "greeting", 0, 0},
	} {
		srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) { reply(w, 409, tc.body) })
		c := newTestClient(t, Config{Endpoints: []string{srv.URL}})
		for _, err := range []error{
			func() error { _, err := c.Put(context.Background(), "greeting", "hey", Version(1)); return err }(),
			func() error { _, err := c.Delete(context.Background(), "greeting", PrevVersion(2)); return err }(),
		} {
			var ce *ConflictError
			var se *StatusError
			var detail struct{ Detail string }
			json.Unmarshal([]byte(tc.body), &detail)
			if !errors.As(err, &ce) || ce.Key != tc.key || ce.Version != tc.version || ce.Revision != tc.revision ||
				ce.Code != 409 || ce.Detail != detail.Detail || err.Error() != "409 "+detail.Detail || !errors.As(err, &se) {
				t.Errorf("409 %s: %#v", tc.body, err)
			}
		}
		reqs := srv.requests()
		if reqs[0].body != `{"value":"hey","version":1}` || reqs[1].body != "" || queryValue(reqs[1].query, "prev_version") != "2" {
			t.Errorf("conditions sent as %+v", reqs)
		}
	}
}

// TestScanPages: a scan follows the continue token from page to page with
// the same parameters, stops at Limit without asking for another page, and
// stops where the consumer stops.
func TestScanPages(t *testing.T) {
	keys := []string{"app/a", "app/b", "app/c", "app/d", "app/e"}
	srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		from := 0
		if tok := q.Get("continue"); tok != "" {
			fmt.Sscanf(tok, "tok%d", &from)
		}
		limit := 1000
		fmt.Sscanf(q.Get("limit"), "%d", &limit)
		end := min(from+limit, len(keys))
		var kvs []string
		for i, k := range keys[from:end] {
			if i == 1 {
				kvs = append(kvs, fmt.Sprintf(`{"key":%q,"value":{"n":%d},"version":1,"revision":%d}`, k, from+i, 10+from+i))
			} else {
				kvs = append(kvs, fmt.Sprintf(`{"key":%q,"value":"v%d","version":1,"revision":%d}`, k, from+i, 10+from+i))
			}
		}
		page := `{"kvs":[` + strings.Join(kvs, ",") + `],"keys":[],"count":0,"more":` + fmt.Sprint(end < len(keys))
		if end < len(keys) {
			page += fmt.Sprintf(`,"continue":"tok%d"`, end)
		}
		reply(w, 200, page+"}")
	})
	c := newTestClient(t, Config{Endpoints: []string{srv.URL}})
	scan := func(r Range, stopAfter int, opts ...ReadOption) (got []string) {
		for kv, err := range c.Scan(context.Background(), r, opts...) {
			if err != nil {
				t.Fatalf("scan %+v: %v", r, err)
			}
			v := kv.Value
			if kv.IsJSON {
				v = "json:" + v
			}
			got = append(got, kv.Key+"="+v)
			if len(got) == stopAfter {
				break
			}
		}
		return got
	}
	got := scan(Range{Prefix: "app/", PageSize: 2}, 0, Stale())
	want := []string{"app/a=v0", "app/b=json:{\"n\":1}", "app/c=v2", "app/d=json:{\"n\":3}", "app/e=v4"}
	if !slices.Equal(got, want) {
		t.Fatalf("scan: %q, want %q", got, want)
	}
	var queries []string
	for _, r := range srv.requests() {
		queries = append(queries, r.query)
	}
	wantQ := []string{"consistency=stale&limit=2&prefix=app%2F", "consistency=stale&continue=tok2&limit=2&prefix=app%2F", "consistency=stale&continue=tok4&limit=2&prefix=app%2F"}
	if !slices.Equal(queries, wantQ) {
		t.Fatalf("pages requested with %q, want %q", queries, wantQ)
	}
	for _, tc := range []struct {
		r         Range
		stopAfter int
		want      int // pairs
		pages     int
	}{
		{Range{Limit: 2}, 0, 2, 1},                 // a page of 2, no more asked for
		{Range{Limit: 3, PageSize: 2}, 0, 3, 2},    // stops inside the second page
		{Range{PageSize: 2}, 1, 1, 1},              // the consumer stops
		{Range{Start: "app/b", End: "x"}, 0, 5, 1}, // one page of the server's default size
	} {
		before := len(srv.requests())
		if got := scan(tc.r, tc.stopAfter); len(got) != tc.want || len(srv.requests())-before != tc.pages {
			t.Errorf("scan %+v (stop after %d): %q in %d pages, want %d pairs in %d", tc.r, tc.stopAfter, got, len(srv.requests())-before, tc.want, tc.pages)
		}
	}
}

// TestContextCancel: cancelling the context ends a call at once, whether an
// attempt is in flight or the client is waiting to retry, and nothing more
// is sent.
func TestContextCancel(t *testing.T) {
	hang := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	busy := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		reply(w, 503, `{"detail":"no leader: the cluster has no quorum or is electing one"}`)
	})
	for _, srv := range []*recorder{hang, busy} {
		c := newTestClient(t, Config{Endpoints: []string{srv.URL}, RetryFor: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(150*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Put(ctx, "k", "v")
		if took := time.Since(start); !errors.Is(err, context.Canceled) || took > time.Second {
			t.Fatalf("put cancelled after 150ms: %v after %v", err, took)
		}
		n := len(srv.requests())
		time.Sleep(100 * time.Millisecond)
		if len(srv.requests()) != n {
			t.Fatalf("requests sent after the call ended")
		}
	}
	// A deadline shorter than RetryFor ends the retries with the last
	// answer rather than the context's error.
	c := newTestClient(t, Config{Endpoints: []string{busy.URL}, RetryFor: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("get with a deadline: %v", err)
	}
}

// TestKeyPaths: keys are escaped into the path so that the server reads the
// same key back, a key that ends in /history included.
func TestKeyPaths(t *testing.T) {
	srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		reply(w, 200, `{"key":"x","value":"v","version":1,"revision":1}`)
	})
	c := newTestClient(t, Config{Endpoints: []string{srv.URL}})
	for key, want := range map[string]string{
		"app/config/db": "/key/app/config/db",
		"a b+c?#%":      "/key/a%20b+c%3F%23%25",
		"notes/history": "/key/notes%2Fhistory",
		"x/versions":    "/key/x%2Fversions",
		"history":       "/key/history",
		"é\xff":         "/key/%C3%A9%FF",
	} {
		if _, err := c.Get(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		reqs := srv.requests()
		if got := reqs[len(reqs)-1].rawPath; got != want {
			t.Errorf("key %q sent as %s, want %s", key, got, want)
		}
	}
}

// TestValuesAndTxnEncoding: values of every JSON kind read back with their
// kind; transactions are sent in the API's format.
func TestValuesAndTxnEncoding(t *testing.T) {
	for raw, want := range map[string]KeyValue{
		`{"key":"s","value":"12","version":1,"revision":3}`:                 {Key: "s", Value: "12", Version: 1, Revision: 3},
		`{"key":"n","value":12,"version":2,"revision":4}`:                   {Key: "n", Value: "12", IsJSON: true, Version: 2, Revision: 4},
		`{"key":"o","value":{"a":[1,2],"r":1.50},"version":1,"revision":5}`: {Key: "o", Value: `{"a":[1,2],"r":1.50}`, IsJSON: true, Version: 1, Revision: 5},
		`{"key":"z","value":null,"version":1,"revision":6}`:                 {Key: "z", Value: "null", IsJSON: true, Version: 1, Revision: 6},
		`{"key":"u","value":"é \" \n","version":1,"revision":7}`:            {Key: "u", Value: "é \" \n", Version: 1, Revision: 7},
	} {
		kv, err := decodeKeyValue([]byte(raw))
		want.Raw = json.RawMessage(raw)
		if err != nil || kv.Key != want.Key || kv.Value != want.Value || kv.IsJSON != want.IsJSON || kv.Version != want.Version ||
			kv.Revision != want.Revision || string(kv.Raw) != raw {
			t.Errorf("decode %s: %+v %v", raw, kv, err)
		}
	}
	if got := (KeyValue{Value: "12"}).JSON(); string(got) != `"12"` {
		t.Errorf("JSON of the string 12: %s", got)
	}
	srv := newRecorder(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		reply(w, 200, `{"succeeded":false,"revision":23,"responses":[{"get":{"key":"a","value":"0","version":2,"revision":22,"create_revision":21}},{"get":null},{"delete":{"deleted":0}}]}`)
	})
	c := newTestClient(t, Config{Endpoints: []string{srv.URL}})
	res, err := c.Txn(context.Background(), Txn{
		Compare: []Compare{CompareValue("a", "==", "10"), CompareVersion("b", ">", 2), CompareRevision("c", "<", 100),
			CompareCreateRevision("e", "!=", 7), KeyMissing("d"), KeyExists("f")},
		Success: []Op{OpPut("a", "y"), OpPutJSON("n", json.RawMessage(`{"x": 1}`)), OpDelete("b"), OpGet("c")},
		Failure: []Op{OpGet("a"), OpGet("c"), OpDelete("c")},
	})
	if err != nil || res.Succeeded || res.Revision != 23 || len(res.Responses) != 3 ||
		res.Responses[0].Kind != "get" || res.Responses[0].KV == nil || res.Responses[0].KV.CreateRevision != 21 || res.Responses[0].KV.Value != "0" ||
		res.Responses[1].KV != nil || res.Responses[2].Kind != "delete" || res.Responses[2].Deleted {
		t.Fatalf("txn: %+v %v", res, err)
	}
	want := `{"compare":[{"key":"a","op":"==","target":"value","value":"10"},{"key":"b","op":"\u003e","target":"version","version":2},` +
		`{"key":"c","op":"\u003c","revision":100,"target":"revision"},{"create_revision":7,"key":"e","op":"!=","target":"create_revision"},` +
		`{"exists":false,"key":"d","op":"==","target":"exists"},{"exists":true,"key":"f","op":"==","target":"exists"}],` +
		`"success":[{"put":{"key":"a","value":"y"}},{"put":{"key":"n","value":{"x":1}}},{"delete":{"key":"b"}},{"get":{"key":"c"}}],` +
		`"failure":[{"get":{"key":"a"}},{"get":{"key":"c"}},{"delete":{"key":"c"}}]}`
	if got := srv.requests()[0]; got.body != want || got.path != "/txn" || got.method != "POST" {
		t.Fatalf("txn sent as %s %s %s\nwant %s", got.method, got.path, got.body, want)
	}
	if _, err := c.Txn(context.Background(), Txn{Success: []Op{OpPutJSON("n", json.RawMessage(`{`))}}); err == nil || len(srv.requests()) != 1 {
		t.Fatalf("a txn with invalid JSON: %v", err)
	}
	if _, err := c.PutJSON(context.Background(), "n", json.RawMessage(`1 2`)); err == nil || len(srv.requests()) != 1 {
		t.Fatalf("put of invalid JSON: %v", err)
	}
}

// TestSync: the members' HTTP addresses become endpoints, and the leader
// the one the next call starts with.
func TestSync(t *testing.T) {
	var status string // the same on both nodes
	answer := func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cluster/status" {
			reply(w, 200, status)
			return
		}
		reply(w, 200, `{"key":"k","value":"v","version":1,"revision":5}`)
	}
	first, leader := newRecorder(t, answer), newRecorder(t, answer)
	status = `{"id":"n1","leader":"n2","term":2,"commit_index":9,"applied_index":9,"members":[` +
		`{"id":"n1","peer":"h:1","http":"` + strings.TrimPrefix(first.URL, "http://") + `","role":"voter","reachable":true,"last_contact":"2026-12-07T01:43:05.29823299Z"},` +
		`{"id":"n2","peer":"h:2","http":"` + strings.TrimPrefix(leader.URL, "http://") + `","role":"voter"},{"id":"n3","peer":"h:3","http":"","role":"learner"}]}`
	c := newTestClient(t, Config{Endpoints: []string{first.URL}})
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.Endpoints(); !slices.Equal(got, []string{first.URL, leader.URL}) {
		t.Fatalf("endpoints after sync: %q", got)
	}
	if _, err := c.Get(context.Background(), "k"); err != nil || len(leader.requests()) != 1 || len(first.requests()) != 1 {
		t.Fatalf("get after sync went elsewhere than the leader: %v", err)
	}
	st, err := c.Status(context.Background())
	if err != nil || st.Leader != "n2" || len(st.Members) != 3 || st.Members[0].Reachable == nil || !*st.Members[0].Reachable ||
		st.Members[0].LastContact.IsZero() || st.Members[2].Role != "learner" {
		t.Fatalf("status %+v %v", st, err)
	}
}
