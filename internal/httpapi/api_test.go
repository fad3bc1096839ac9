package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/distkv/distkv/internal/kv"
)

func newTestAPI(t testing.TB, cfg Config) (http.Handler, *fakeBackend) {
	t.Helper()
	f := newFake()
	h, err := New(cfg, f)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h, f
}

// serve runs one request through h. body may be nil.
func serve(h http.Handler, method, target string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func serveString(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return serve(h, method, target, r)
}

// detail returns the "detail" string of an error response, failing the test
// if the response is not a JSON object with a non-empty detail.
func detail(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
	}
	if e.Detail == "" {
		t.Fatalf("error body %q has no detail", rec.Body)
	}
	return e.Detail
}

func checkJSONHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	// Small bodies get their Content-Length from net/http (see TestOverHTTP).
	if cl := rec.Header().Get("Content-Length"); (cl != "" || rec.Body.Len() > smallBody) && cl != fmt.Sprint(rec.Body.Len()) {
		t.Errorf("Content-Length = %q, body is %d bytes", cl, rec.Body.Len())
	}
}

// The curl session of the prototype's README, byte for byte (GET also carries
// version and revision now).
func TestPrototypeWalkthrough(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 13
	steps := []struct {
		method, target, body string
		code                 int
		want                 string
	}{
		{"PUT", "/key/key6", `{"value": "myvalue"}`, 200, `{"status":"ok","id":14,"key":"key6","version":1}`},
		{"GET", "/key/key6", "", 200, `{"key":"key6","value":"myvalue","version":1,"revision":14}`},
		{"DELETE", "/key/key6", "", 200, `{"status":"ok","id":15}`},
		{"GET", "/key/key6", "", 404, `{"detail":"Key not found"}`},
		{"DELETE", "/key/key6", "", 404, `{"detail":"Key not found"}`},
	}
	for _, s := range steps {
		req := httptest.NewRequest(s.method, s.target, strings.NewReader(s.body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != s.code || rec.Body.String() != s.want {
			t.Fatalf("%s %s = %d %s, want %d %s", s.method, s.target, rec.Code, rec.Body, s.code, s.want)
		}
		checkJSONHeaders(t, rec)
	}
}

// Through a real server and client: the net/http server must neither clean
// nor redirect key paths, and curl's form content type must not matter.
func TestOverHTTP(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct{ path, key string }{
		{"/key/key6", "key6"},
		{"/key/app/config/db", "app/config/db"},
		{"/key/a/../b", "a/../b"},
		{"/key/..", ".."},
		{"/key//x//", "/x//"},
		{"/key/c%2Fd", "c/d"},
		{"/key/%2e%2E/%2F", "..//"},
		{"/key/a%20b+c", "a b+c"},
		{"/key/é€", "é€"},
	} {
		req, err := http.NewRequest("PUT", srv.URL+tc.path, strings.NewReader(`{"value": "myvalue"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"status":"ok","id":`) ||
			resp.ContentLength != int64(len(body)) || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("PUT %s = %d %s, Content-Length %d, Content-Type %q", tc.path, resp.StatusCode, body, resp.ContentLength, resp.Header.Get("Content-Type"))
		}
		calls := f.Calls()
		if got := string(calls[len(calls)-1].cmd.Key); got != tc.key {
			t.Errorf("PUT %s stored key %q, want %q", tc.path, got, tc.key)
		}
		resp, err = srv.Client().Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		var got struct{ Key, Value string }
		if err := json.Unmarshal(body, &got); resp.StatusCode != 200 || err != nil || got.Key != tc.key || got.Value != "myvalue" {
			t.Errorf("GET %s = %d %s, want key %q", tc.path, resp.StatusCode, body, tc.key)
		}
	}
}

func TestKeyPaths(t *testing.T) {
	for _, tc := range []struct {
		path string
		key  string
	}{
		{"/key/app/config/db", "app/config/db"},
		{"/key/a%2Fb", "a/b"},
		{"/key/a/../b", "a/../b"},
		{"/key/%2e%2e", ".."},
		{"/key//", "/"},
		{"/key/a//b/", "a//b/"},
		{"/key/a%20b", "a b"},
		{"/key/a+b", "a+b"},
		{"/key/%25", "%"},
		{"/key/%E2%82%AC", "€"},
		{"/key/€", "€"},
		{"/key/%00%ff", "\x00\xff"},
		{"/key/" + strings.Repeat("k", 4096), strings.Repeat("k", 4096)},
	} {
		h, f := newTestAPI(t, Config{})
		rec := serveString(h, "PUT", tc.path, `{"value":"v"}`)
		if rec.Code != 200 {
			t.Errorf("PUT %s = %d %s", tc.path, rec.Code, rec.Body)
			continue
		}
		if got := f.Calls()[0].cmd.Key; string(got) != tc.key {
			t.Errorf("PUT %s: backend got key %q, want %q", tc.path, got, tc.key)
		}
		rec = serveString(h, "GET", tc.path, "")
		want := string(appendString([]byte(`{"key":`), []byte(tc.key))) + `,"value":"v","version":1,"revision":11}`
		if rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("GET %s = %d %s, want %s", tc.path, rec.Code, rec.Body, want)
		}
	}
}

// Every byte value can be part of a key through percent-encoding and reaches
// the Backend unchanged.
func TestKeyEveryByte(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	var all []byte
	var allEsc strings.Builder
	for c := 0; c < 256; c++ {
		key := []byte{'k', byte(c), 'z'}
		path := fmt.Sprintf("/key/k%%%02Xz", c)
		rec := serveString(h, "PUT", path, fmt.Sprintf(`{"value":"%d"}`, c))
		if rec.Code != 200 {
			t.Fatalf("PUT %s = %d %s", path, rec.Code, rec.Body)
		}
		calls := f.Calls()
		if got := calls[len(calls)-1].cmd.Key; !bytes.Equal(got, key) {
			t.Fatalf("PUT %s: backend got key %q, want %q", path, got, key)
		}
		rec = serveString(h, "GET", path, "")
		var got struct{ Key, Value string }
		if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
			t.Fatalf("GET %s = %d %s (%v)", path, rec.Code, rec.Body, err)
		}
		if want := validUTF8(string(key)); got.Key != want || got.Value != fmt.Sprint(c) {
			t.Errorf("GET %s = key %q value %q, want %q %d", path, got.Key, got.Value, want, c)
		}
		all = append(all, byte(c))
		fmt.Fprintf(&allEsc, "%%%02x", c)
	}
	rec := serveString(h, "PUT", "/key/"+allEsc.String(), `{"value":"all"}`)
	calls := f.Calls()
	if rec.Code != 200 || !bytes.Equal(calls[len(calls)-1].cmd.Key, all) {
		t.Fatalf("PUT of a key holding every byte = %d %s, backend got %q", rec.Code, rec.Body, calls[len(calls)-1].cmd.Key)
	}
	kvp, ok, _ := f.Get(context.Background(), all, false)
	if !ok || string(kvp.Value) != "all" {
		t.Fatalf("key holding every byte not stored: %v %q", ok, kvp.Value)
	}
}

func TestUnescapeKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"abc", "abc", true},
		{"a%2fb%2F", "a/b/", true},
		{"%", "", false},
		{"%4", "", false},
		{"%zz", "", false},
		{"a%4g", "", false},
		{"%41%42", "AB", true},
		{"+%2B", "++", true},
	} {
		got, ok := unescapeKey(tc.in)
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("unescapeKey(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func i64(n int64) *int64 { return &n }

func TestConditions(t *testing.T) {
	// Before each case, key "c" holds "v1" at version 1, revision 11.
	for _, tc := range []struct {
		name, method, target, body string
		code                       int
		want                       string  // exact body; "" to check only the code
		cond                       kv.Cond // what the backend must get
	}{
		{"body version holds", "PUT", "/key/c", `{"value":"v2","prev_version":1}`, 200, `{"status":"ok","id":12,"key":"c","version":2}`, kv.Cond{PrevVersion: i64(1)}},
		{"body version fails", "PUT", "/key/c", `{"value":"v2","prev_version":2}`, 409,
			`{"detail":"condition failed: prev_version is 2 but the key's version is 1","key":"c","version":1,"revision":11}`, kv.Cond{PrevVersion: i64(2)}},
		{"query version fails", "PUT", "/key/c?prev_version=3", `{"value":"v2"}`, 409,
			`{"detail":"condition failed: prev_version is 3 but the key's version is 1","key":"c","version":1,"revision":11}`, kv.Cond{PrevVersion: i64(3)}},
		{"query revision holds", "PUT", "/key/c?prev_revision=11", `{"value":"v2"}`, 200, `{"status":"ok","id":12,"key":"c","version":2}`, kv.Cond{PrevRevision: i64(11)}},
		{"body revision fails", "PUT", "/key/c", `{"value":"v2","prev_revision":17}`, 409,
			`{"detail":"condition failed: prev_revision is 17 but the key's revision is 11","key":"c","version":1,"revision":11}`, kv.Cond{PrevRevision: i64(17)}},
		{"create_only on existing key", "PUT", "/key/c", `{"value":"v2","create_only":true}`, 409,
			`{"detail":"condition failed: create_only is set but the key exists","key":"c","version":1,"revision":11}`, kv.Cond{CreateOnly: true}},
		{"create_only query on new key", "PUT", "/key/new?create_only=true", `{"value":"n"}`, 200, `{"status":"ok","id":12,"key":"new","version":1}`, kv.Cond{CreateOnly: true}},
		{"prev_version on missing key", "PUT", "/key/new", `{"value":"n","prev_version":4}`, 409,
			`{"detail":"condition failed: prev_version is 4 but the key does not exist","key":"new","version":0,"revision":0}`, kv.Cond{PrevVersion: i64(4)}},
		{"prev_version 0 on missing key", "PUT", "/key/new?prev_version=0", `{"value":"n"}`, 200, `{"status":"ok","id":12,"key":"new","version":1}`, kv.Cond{PrevVersion: i64(0)}},
		{"same condition in body and query", "PUT", "/key/c?prev_version=1&create_only=false", `{"value":"v2","prev_version":1,"create_only":false}`, 200, "", kv.Cond{PrevVersion: i64(1)}},
		{"null conditions are absent", "PUT", "/key/c", `{"value":"v2","prev_version":null,"prev_revision":null,"create_only":null}`, 200, "", kv.Cond{}},
		{"prototype version holds", "PUT", "/key/c", `{"value":"v2","version":1}`, 200, `{"status":"ok","id":12,"key":"c","version":2}`, kv.Cond{PrevVersion: i64(1)}},
		{"prototype version outdated", "PUT", "/key/c", `{"value":"v2","version":0}`, 409,
			`{"detail":"condition failed: version is 0 but the key's version is 1","status":"error","message":"Version conflict: provided version 0 is outdated","current_version":1,"key":"c","version":1,"revision":11}`,
			kv.Cond{PrevVersion: i64(0)}},
		{"prototype version ahead", "PUT", "/key/c", `{"value":"v2","version":5}`, 409,
			`{"detail":"condition failed: version is 5 but the key's version is 1","status":"error","message":"Version conflict: provided version 5 is ahead of the current version 1","current_version":1,"key":"c","version":1,"revision":11}`,
			kv.Cond{PrevVersion: i64(5)}},
		{"prototype version on missing key", "PUT", "/key/new", `{"value":"v2","version":1}`, 409,
			`{"detail":"condition failed: version is 1 but the key does not exist","status":"error","message":"Version conflict: provided version 1, but the key does not exist","current_version":0,"key":"new","version":0,"revision":0}`,
			kv.Cond{PrevVersion: i64(1)}},
		{"prototype version with another failing condition", "PUT", "/key/c", `{"value":"v2","version":1,"prev_revision":3}`, 409,
			`{"detail":"condition failed: prev_revision is 3 but the key's revision is 11","key":"c","version":1,"revision":11}`,
			kv.Cond{PrevVersion: i64(1), PrevRevision: i64(3)}},
		{"version and prev_version agree", "PUT", "/key/c", `{"value":"v2","version":1,"prev_version":1}`, 200, "", kv.Cond{PrevVersion: i64(1)}},
		{"version and query prev_version agree", "PUT", "/key/c?prev_version=1", `{"value":"v2","version":1}`, 200, "", kv.Cond{PrevVersion: i64(1)}},
		{"delete version holds", "DELETE", "/key/c?prev_version=1", "", 200, `{"status":"ok","id":12}`, kv.Cond{PrevVersion: i64(1)}},
		{"delete revision fails", "DELETE", "/key/c?prev_revision=5", "", 409,
			`{"detail":"condition failed: prev_revision is 5 but the key's revision is 11","key":"c","version":1,"revision":11}`, kv.Cond{PrevRevision: i64(5)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f := newTestAPI(t, Config{})
			f.rev = 10
			if _, err := f.Propose(context.Background(), kv.Command{Op: kv.OpPut, Key: []byte("c"), Value: []byte("v1")}); err != nil {
				t.Fatal(err)
			}
			f.calls = nil
			rec := serveString(h, tc.method, tc.target, tc.body)
			if rec.Code != tc.code || (tc.want != "" && rec.Body.String() != tc.want) {
				t.Fatalf("%s %s %s = %d %s, want %d %s", tc.method, tc.target, tc.body, rec.Code, rec.Body, tc.code, tc.want)
			}
			calls := f.Calls()
			if len(calls) != 1 {
				t.Fatalf("backend calls = %d, want 1", len(calls))
			}
			if got := calls[0].cmd.Cond; !condEqual(got, tc.cond) {
				t.Errorf("backend got %s, want %s", fmtCond(got), fmtCond(tc.cond))
			}
		})
	}
}

func condEqual(a, b kv.Cond) bool {
	eq := func(x, y *int64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.CreateOnly == b.CreateOnly && eq(a.PrevVersion, b.PrevVersion) && eq(a.PrevRevision, b.PrevRevision)
}

func fmtCond(c kv.Cond) string {
	p := func(x *int64) string {
		if x == nil {
			return "nil"
		}
		return fmt.Sprint(*x)
	}
	return fmt.Sprintf("{create_only:%v prev_version:%s prev_revision:%s}", c.CreateOnly, p(c.PrevVersion), p(c.PrevRevision))
}

// chunked hides the length of a body, as a chunked request does.
type chunked struct{ io.Reader }

func TestBadInput(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name, method, target string
		body                 io.Reader
		code                 int
		want                 string // substring of detail
	}{
		{"malformed JSON", "PUT", "/key/k", strings.NewReader(`{"value":`), 422, "not valid JSON"},
		{"truncated JSON", "PUT", "/key/k", strings.NewReader(`{"value":"abc`), 422, "not valid JSON"},
		{"bad JSON", "PUT", "/key/k", strings.NewReader(`{value:"abc"}`), 422, "not valid JSON"},
		{"trailing data", "PUT", "/key/k", strings.NewReader(`{"value":"a"} x`), 422, "not valid JSON"},
		{"form body", "PUT", "/key/k", strings.NewReader(`value=abc`), 422, "not valid JSON"},
		{"array", "PUT", "/key/k", strings.NewReader(`[]`), 422, "not an array"},
		{"string body", "PUT", "/key/k", strings.NewReader(`"v"`), 422, "not a string"},
		{"value nested too deep", "PUT", "/key/k", strings.NewReader(`{"value":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`), 422,
			`"value" is nested more than 64 levels deep (arrays and objects within one another); the limit is 64`},
		{"value nested too deep in objects", "PUT", "/key/k", strings.NewReader(`{"value":` + strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65) + `}`), 422,
			`nested more than 64 levels deep`},
		{"empty object", "PUT", "/key/k", strings.NewReader(`{}`), 422, `no "value" field`},
		{"wrong case", "PUT", "/key/k", strings.NewReader(`{"Value":"v"}`), 422, `unknown field "Value"`},
		{"no value", "PUT", "/key/k", strings.NewReader(`{"version":1}`), 422, `no "value" field`},
		{"empty body", "PUT", "/key/k", nil, 422, "body is empty"},
		{"blank body", "PUT", "/key/k", strings.NewReader(" \n"), 422, "body is empty"},
		{"body prev_version string", "PUT", "/key/k", strings.NewReader(`{"value":"v","prev_version":"3"}`), 422, `"prev_version" must be a non-negative integer, not a string`},
		{"body prev_version negative", "PUT", "/key/k", strings.NewReader(`{"value":"v","prev_version":-1}`), 422, "not -1"},
		{"body prev_revision fraction", "PUT", "/key/k", strings.NewReader(`{"value":"v","prev_revision":1.5}`), 422, "not 1.5"},
		{"body prev_revision huge", "PUT", "/key/k", strings.NewReader(`{"value":"v","prev_revision":99999999999999999999}`), 422, "prev_revision"},
		{"body create_only string", "PUT", "/key/k", strings.NewReader(`{"value":"v","create_only":"yes"}`), 422, `"create_only" must be a boolean`},
		{"query prev_version abc", "PUT", "/key/k?prev_version=abc", strings.NewReader(`{"value":"v"}`), 422, `prev_version must be a non-negative integer, not "abc"`},
		{"query prev_revision negative", "DELETE", "/key/k?prev_revision=-2", nil, 422, "prev_revision"},
		{"query create_only maybe", "PUT", "/key/k?create_only=maybe", strings.NewReader(`{"value":"v"}`), 422, "create_only must be true or false"},
		{"query repeated", "PUT", "/key/k?prev_version=1&prev_version=1", strings.NewReader(`{"value":"v"}`), 422, "given 2 times"},
		{"query malformed", "DELETE", "/key/k?a=%zz", nil, 422, "malformed query string"},
		{"body and query differ", "PUT", "/key/k?prev_version=2", strings.NewReader(`{"value":"v","prev_version":1}`), 422, "prev_version is 1 in the body but 2 in the query string"},
		{"create_only differs", "PUT", "/key/k?create_only=false", strings.NewReader(`{"value":"v","create_only":true}`), 422, "create_only is true in the body"},
		{"delete create_only", "DELETE", "/key/k?create_only=true", nil, 422, "create_only"},
		{"empty key", "PUT", "/key/", strings.NewReader(`{"value":"v"}`), 400, "key must not be empty"},
		{"empty key get", "GET", "/key/", nil, 400, "key must not be empty"},
		{"huge key", "PUT", "/key/" + long(4097), strings.NewReader(`{"value":"v"}`), 413, "key is 4097 bytes; the limit is 4096 bytes"},
		{"huge escaped key", "GET", "/key/" + strings.Repeat("%41", 4097), nil, 413, "key is 4097 bytes"},
		{"value over limit", "PUT", "/key/k", strings.NewReader(`{"value":"` + long(1<<20+1) + `"}`), 413, "value is 1048577 bytes; the limit is 1048576 bytes"},
		{"escaped value over limit", "PUT", "/key/k", strings.NewReader(`{"value":"` + strings.Repeat(`\u0041`, 1<<20+1) + `"}`), 413, "value is 1048577 bytes"},
		{"huge body", "PUT", "/key/k", strings.NewReader(`{"value":"v"` + strings.Repeat(" ", 7<<20) + `}`), 413, "request body is 7340045 bytes; the limit is 6356992 bytes"},
		{"huge chunked body", "PUT", "/key/k", chunked{strings.NewReader(`{"value":"v"` + strings.Repeat(" ", 7<<20) + `}`)}, 413, "request body exceeds the limit of 6356992 bytes"},
		{"get bad consistency", "GET", "/key/k?consistency=strong", nil, 422, `consistency must be linearizable or stale, not "strong"`},
		{"scan bad consistency", "GET", "/keys?consistency=", nil, 422, "consistency"},
		{"limit -1", "GET", "/keys?limit=-1", nil, 422, "limit must be an integer from 1 to 10000"},
		{"limit 0", "GET", "/keys?limit=0", nil, 422, "from 1 to 10000"},
		{"limit absurd", "GET", "/keys?limit=99999999999999999999999", nil, 422, "from 1 to 10000"},
		{"limit over max", "GET", "/keys?limit=10001", nil, 422, "from 1 to 10000"},
		{"limit abc", "GET", "/keys?limit=abc", nil, 422, "from 1 to 10000"},
		{"continue not base64", "GET", "/keys?continue=!!!", nil, 422, "continuation token"},
		{"continue wrong version", "GET", "/keys?continue=AAAA", nil, 422, "continuation token"},
		{"continue too short", "GET", "/keys?continue=AQ", nil, 422, "continuation token"},
		{"repeated prefix", "GET", "/keys?prefix=a&prefix=b", nil, 422, "prefix is given 2 times"},
		{"unknown body field", "PUT", "/key/k", strings.NewReader(`{"value":"v","prev_verison":1}`), 422,
			`request body has an unknown field "prev_verison"; a PUT body has "value", "ttl", "version", "prev_version", "prev_revision" and "create_only"`},
		{"unknown nested-looking field", "PUT", "/key/k", strings.NewReader(`{"x":{"value":1},"value":"v2"}`), 422, `unknown field "x"`},
		{"version and prev_version differ", "PUT", "/key/k", strings.NewReader(`{"value":"v","version":2,"prev_version":1}`), 422,
			`"version" is 2 but "prev_version" is 1`},
		{"version not an integer", "PUT", "/key/k", strings.NewReader(`{"value":"v","version":"2"}`), 422, `"version" must be a non-negative integer, not a string`},
		{"version and query prev_version differ", "PUT", "/key/k?prev_version=1", strings.NewReader(`{"value":"v","version":2}`), 422,
			"prev_version is 2 in the body but 1 in the query string"},
		{"unknown GET parameter", "GET", "/key/k?verison=1", nil, 422, `unknown query parameter "verison"; GET /key/{key} takes consistency, version, revision, client_id and request_id`},
		{"GET version zero", "GET", "/key/k?version=0", nil, 422, "query parameter version must be a positive integer, not \"0\""},
		{"GET version not a number", "GET", "/key/k?version=latest", nil, 422, "query parameter version must be a non-negative integer, not \"latest\""},
		{"unknown PUT parameter", "PUT", "/key/k?version=1", strings.NewReader(`{"value":"v"}`), 422,
			`unknown query parameter "version"; PUT /key/{key} takes prev_version, prev_revision, create_only, client_id and request_id`},
		{"unknown DELETE parameter", "DELETE", "/key/k?force=1", nil, 422, `unknown query parameter "force"; DELETE /key/{key} takes`},
		{"unknown scan parameter", "GET", "/keys?pefix=a", nil, 422, `unknown query parameter "pefix"; GET /keys takes prefix, start, end, limit, continue, consistency and revision`},
		{"unknown history parameter", "GET", "/key/k/history?version=1", nil, 422, `unknown query parameter "version"; GET /key/{key}/history takes consistency`},
		{"parameter of an endpoint without any", "GET", "/healthz?verbose=1", nil, 422, `unknown query parameter "verbose"; GET /healthz takes no query parameters`},
		{"parameter of cluster status", "GET", "/cluster/status?x=", nil, 422, `unknown query parameter "x"; GET /cluster/status takes no query parameters`},
		{"first unknown parameter named", "GET", "/key/k?zz=1&aa=2&consistency=stale", nil, 422, `unknown query parameter "aa"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f := newTestAPI(t, Config{})
			req := httptest.NewRequest(tc.method, tc.target, tc.body)
			if _, ok := tc.body.(chunked); ok {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("%s %.80s = %d %.200s, want %d", tc.method, tc.target, rec.Code, rec.Body, tc.code)
			}
			checkJSONHeaders(t, rec)
			if d := detail(t, rec); !strings.Contains(d, tc.want) {
				t.Errorf("detail %q does not contain %q", d, tc.want)
			}
			if calls := f.Calls(); len(calls) != 0 {
				t.Errorf("backend was called: %+v", calls[0].op)
			}
		})
	}
}

func TestValueLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		value string // JSON string contents
		want  int    // decoded length
	}{
		{"value at the default limit", Config{}, strings.Repeat("a", 1<<20), 1 << 20},
		{"escaped value at the limit", Config{MaxValueSize: 1000}, strings.Repeat(`\u0001`, 1000), 1000},
		{"escaped value at the limit with conditions and spaces", Config{MaxValueSize: 1000}, strings.Repeat(`\n`, 1000), 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f := newTestAPI(t, tc.cfg)
			rec := serveString(h, "PUT", "/key/k", ` { "value" : "`+tc.value+`" , "prev_version" : 0 , "create_only" : true } `)
			if rec.Code != 200 {
				t.Fatalf("PUT = %d %.200s", rec.Code, rec.Body)
			}
			if got := len(f.Calls()[0].cmd.Value); got != tc.want {
				t.Errorf("backend got a value of %d bytes, want %d", got, tc.want)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	for _, tc := range []struct{ method, target, allow string }{
		{"POST", "/key/k", "GET, HEAD, PUT, DELETE"},
		{"PATCH", "/key/", "GET, HEAD, PUT, DELETE"},
		{"OPTIONS", "/key/k", "GET, HEAD, PUT, DELETE"},
		{"PUT", "/keys", "GET, HEAD"},
		{"POST", "/cluster/status", "GET, HEAD"},
		{"DELETE", "/healthz", "GET, HEAD"},
		{"PUT", "/readyz", "GET, HEAD"},
	} {
		rec := serveString(h, tc.method, tc.target, `{"value":"v"}`)
		if rec.Code != 405 || rec.Body.String() != `{"detail":"Method Not Allowed"}` || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d %s Allow %q, want 405 with Allow %q", tc.method, tc.target, rec.Code, rec.Body, rec.Header().Get("Allow"), tc.allow)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("backend was called %d times", len(calls))
	}
}

func TestNotFound(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	for _, target := range []string{"/", "/key", "/keys/", "/kv/x", "/key%2Fx", "/cluster", "/healthz/", "/KEY/x"} {
		rec := serveString(h, "GET", target, "")
		if rec.Code != 404 || rec.Body.String() != `{"detail":"Not Found"}` {
			t.Errorf("GET %s = %d %s, want 404 Not Found", target, rec.Code, rec.Body)
		}
	}
}

func TestGetConsistency(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	for _, tc := range []struct {
		query string
		want  bool
	}{{"", true}, {"?consistency=linearizable", true}, {"?consistency=stale", false}} {
		serveString(h, "GET", "/key/k"+tc.query, "")
		calls := f.Calls()
		if c := calls[len(calls)-1]; c.op != "get" || c.linearizable != tc.want || string(c.key) != "k" {
			t.Errorf("GET /key/k%s: backend got %+v, want linearizable=%v", tc.query, c, tc.want)
		}
	}
}

func TestHead(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	serveString(h, "PUT", "/key/k", `{"value":"v"}`)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Head(srv.URL + "/key/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 49 {
		t.Errorf("HEAD /key/k = %d Content-Length %d, want 200 49", resp.StatusCode, resp.ContentLength)
	}
	serveString(h, "PUT", "/key/k", `{"value":"`+strings.Repeat("v", 5000)+`"}`)
	resp, err = srv.Client().Head(srv.URL + "/key/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 5048 || len(resp.TransferEncoding) != 0 {
		t.Errorf("HEAD /key/k = %d Content-Length %d %v, want 200 5048", resp.StatusCode, resp.ContentLength, resp.TransferEncoding)
	}
}

type scanPage struct {
	KVs []struct {
		Key, Value        string
		Version, Revision int64
	} `json:"kvs"`
	Count    int     `json:"count"`
	More     bool    `json:"more"`
	Continue *string `json:"continue"`
}

func getPage(t *testing.T, h http.Handler, target string) scanPage {
	t.Helper()
	rec := serveString(h, "GET", target, "")
	if rec.Code != 200 {
		t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
	}
	checkJSONHeaders(t, rec)
	var p scanPage
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("GET %s: %s is not a page: %v", target, rec.Body, err)
	}
	if p.Count != len(p.KVs) || p.More != (p.Continue != nil) {
		t.Fatalf("GET %s: inconsistent page %s", target, rec.Body)
	}
	return p
}

func TestScan(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	keys := []string{"a", "app/config/db", "app/config/log", "app/x", "apq", "b", "b\xff", "b\xff\xff", "c", "d 1", "d+2"}
	for _, k := range keys {
		if rec := serveString(h, "PUT", "/key/"+url.PathEscape(k), `{"value":"`+fmt.Sprint(len(k))+`"}`); rec.Code != 200 {
			t.Fatalf("PUT %q = %d %s", k, rec.Code, rec.Body)
		}
	}
	rec := serveString(h, "GET", "/keys?prefix=a&end=app", "")
	// A linearizable scan reads at the current revision, and says which.
	if want := `{"kvs":[{"key":"a","value":"1","version":1,"revision":11}],"keys":["a"],"count":1,"more":false,"revision":21}`; rec.Body.String() != want {
		t.Errorf("GET /keys?prefix=a&end=app = %s, want %s", rec.Body, want)
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", keys},
		{"?prefix=app/", []string{"app/config/db", "app/config/log", "app/x"}},
		{"?prefix=app%2Fconfig%2F&consistency=stale", []string{"app/config/db", "app/config/log"}},
		{"?start=app/x&end=c", []string{"app/x", "apq", "b", "b\xff", "b\xff\xff"}},
		{"?prefix=app&start=app/config/log", []string{"app/config/log", "app/x"}},
		{"?prefix=b%ff", []string{"b\xff", "b\xff\xff"}},
		{"?prefix=b&end=b%ff", []string{"b"}},
		{"?prefix=d%2B", []string{"d+2"}},
		{"?prefix=d+", []string{"d 1"}},
		{"?prefix=zz", nil},
		{"?prefix=b&start=c", nil},
		{"?start=c&end=b", nil},
	} {
		p := getPage(t, h, "/keys"+tc.query)
		var got []string
		for _, kv := range p.KVs {
			got = append(got, kv.Key)
		}
		var want []string
		for _, k := range tc.want {
			want = append(want, validUTF8(k))
		}
		if !slices.Equal(got, want) || p.More {
			t.Errorf("GET /keys%s = %q more=%v, want %q", tc.query, got, p.More, want)
		}
	}
	// An empty intersection is answered without asking the backend.
	n := len(f.Calls())
	getPage(t, h, "/keys?start=c&end=b")
	if len(f.Calls()) != n {
		t.Errorf("empty range reached the backend")
	}
}

// Paging with continue returns every key exactly once, in order, whatever the
// page size.
func TestScanPaging(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	var want []string
	for i := range 50 {
		k := fmt.Sprintf("p/%02d", i)
		want = append(want, k)
		serveString(h, "PUT", "/key/"+k, `{"value":"x"}`)
		serveString(h, "PUT", fmt.Sprintf("/key/q/%02d", i), `{"value":"x"}`)
	}
	serveString(h, "PUT", "/key/p/07%00", `{"value":"x"}`) // the smallest key after p/07
	want = slices.Insert(want, 8, "p/07\x00")
	for _, limit := range []int{1, 3, 7, 50, 51, 1000} {
		var got []string
		target := fmt.Sprintf("/keys?prefix=p/&limit=%d", limit)
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			p := getPage(t, h, target)
			if len(p.KVs) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(p.KVs))
			}
			for _, kv := range p.KVs {
				got = append(got, kv.Key)
			}
			if !p.More {
				break
			}
			target = fmt.Sprintf("/keys?prefix=p/&limit=%d&continue=%s", limit, *p.Continue)
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: paged keys %q, want %q", limit, got, want)
		}
	}
	calls := f.Calls()
	if last := calls[len(calls)-1]; last.op != "range" || last.limit != 1000 || !last.linearizable {
		t.Errorf("last range call %+v", last)
	}
	getPage(t, h, "/keys")
	calls = f.Calls()
	if last := calls[len(calls)-1]; last.limit != DefaultDefaultScanLimit || last.start != nil || last.end != nil {
		t.Errorf("GET /keys: backend got limit %d start %q end %q", last.limit, last.start, last.end)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{[]byte("a"), []byte("b")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("\xff\xff"), nil},
		{[]byte("ab\xfe\xff"), []byte("ab\xff")},
	} {
		if got := prefixEnd(tc.in); !bytes.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("prefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBackendErrors(t *testing.T) {
	for _, tc := range []struct {
		name, method, target, body string
		block                      bool
		err                        error
		want                       string
	}{
		{"put timeout", "PUT", "/key/k", `{"value":"v"}`, true, nil, `{"detail":"request timed out after 20ms; a write may still have been applied"}`},
		{"delete timeout", "DELETE", "/key/k", "", true, nil, `{"detail":"request timed out after 20ms; a write may still have been applied"}`},
		{"get timeout", "GET", "/key/k", "", true, nil, `{"detail":"request timed out after 20ms"}`},
		{"scan timeout", "GET", "/keys", "", true, nil, `{"detail":"request timed out after 20ms"}`},
		{"wrapped deadline gives its reason", "PUT", "/key/k", `{"value":"v"}`, false, fmt.Errorf("no leader: %w", context.DeadlineExceeded), `{"detail":"request timed out after 20ms (no leader); a write may still have been applied"}`},
		{"read deadline with reason", "GET", "/key/k", "", false, fmt.Errorf("leader n2 did not answer in time: %w", context.DeadlineExceeded), `{"detail":"request timed out after 20ms (leader n2 did not answer in time)"}`},
		{"no leader", "PUT", "/key/k", `{"value":"v"}`, false, errors.New("no leader"), `{"detail":"no leader"}`},
		{"stopped", "GET", "/key/k", "", false, errors.New(`node "n1" stopped`), `{"detail":"node \"n1\" stopped"}`},
		{"range error", "GET", "/keys", "", false, errors.New("boom"), `{"detail":"boom"}`},
		{"write in the log when the node stopped", "PUT", "/key/k", `{"value":"v"}`, false, stoppedAfterLog{}, `{"detail":"node stopped: removed from the cluster; a write may still have been applied"}`},
		{"delete in the log when the node stopped", "DELETE", "/key/k", "", false, stoppedAfterLog{}, `{"detail":"node stopped: removed from the cluster; a write may still have been applied"}`},
		{"txn in the log when the node stopped", "POST", "/txn", `{"success":[{"put":{"key":"a","value":"b"}}]}`, false, stoppedAfterLog{}, `{"detail":"node stopped: removed from the cluster; a write may still have been applied"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f := newTestAPI(t, Config{RequestTimeout: 20 * time.Millisecond})
			f.block, f.err = tc.block, tc.err
			rec := serveString(h, tc.method, tc.target, tc.body)
			if rec.Code != 503 || rec.Body.String() != tc.want {
				t.Errorf("%s %s = %d %s, want 503 %s", tc.method, tc.target, rec.Code, rec.Body, tc.want)
			}
		})
	}
}

// TestWriteNotMadeAtDeadline: a write the backend refused before it reached
// the log is answered as such (no "may still have been applied"), even when
// the refusal comes as the request's deadline passes.
func TestWriteNotMadeAtDeadline(t *testing.T) {
	for _, tc := range []struct{ name, method, target, body string }{
		{"put", "PUT", "/key/k", `{"value":"v"}`},
		{"delete", "DELETE", "/key/k", ""},
		{"txn", "POST", "/txn", `{"success":[{"put":{"key":"a","value":"b"}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f := newTestAPI(t, Config{RequestTimeout: 20 * time.Millisecond})
			f.block, f.atDeadline = true, notMadeErr{}
			rec := serveString(h, tc.method, tc.target, tc.body)
			want := `{"detail":"` + notMadeErr{}.Error() + `"}`
			if rec.Code != 503 || rec.Body.String() != want {
				t.Errorf("%s %s = %d %s, want 503 %s", tc.method, tc.target, rec.Code, rec.Body, want)
			}
		})
	}
}

// notMadeErr stands for the error raftnode gives a write that waited for a
// leader until its deadline and never reached the log.
type notMadeErr struct{}

func (notMadeErr) Error() string {
	return "no leader: the cluster has no quorum or is electing one (none known for as long as the request could wait)"
}
func (notMadeErr) NotMade() bool { return true }

// stoppedAfterLog stands for the error raftnode gives a proposal that was
// handed to Raft before the node stopped.
type stoppedAfterLog struct{}

func (stoppedAfterLog) Error() string        { return "node stopped: removed from the cluster" }
func (stoppedAfterLog) OutcomeUnknown() bool { return true }

// diskFullErr stands for raftnode.ErrNoSpace.
type diskFullErr struct{}

func (diskFullErr) Error() string {
	return "no space left on device: this node cannot write its log; writes resume when space is freed"
}
func (diskFullErr) InsufficientStorage() bool { return true }

// A node whose disk is full refuses requests with 507 and says why; an error
// that merely mentions ENOSPC (a node stopped by a failed fsync) stays 503.
func TestDiskFullIs507(t *testing.T) {
	for _, tc := range []struct {
		name, method, target, body string
		err                        error
		code                       int
		want                       string
	}{
		{"put", "PUT", "/key/k", `{"value":"v"}`, diskFullErr{}, 507,
			`{"detail":"no space left on device: this node cannot write its log; writes resume when space is freed"}`},
		{"delete", "DELETE", "/key/k", "", fmt.Errorf("propose: %w", diskFullErr{}), 507,
			`{"detail":"propose: no space left on device: this node cannot write its log; writes resume when space is freed"}`},
		{"txn", "POST", "/txn", `{"success":[{"put":{"key":"a","value":"b"}}]}`, diskFullErr{}, 507,
			`{"detail":"no space left on device: this node cannot write its log; writes resume when space is freed"}`},
		{"linearizable get", "GET", "/key/k", "", diskFullErr{}, 507,
			`{"detail":"no space left on device: this node cannot write its log; writes resume when space is freed; a stale read (?consistency=stale) is still answered from local state"}`},
		{"scan", "GET", "/keys", "", diskFullErr{}, 507,
			`{"detail":"no space left on device: this node cannot write its log; writes resume when space is freed; a stale read (?consistency=stale) is still answered from local state"}`},
		{"stopped by fsync ENOSPC", "PUT", "/key/k", `{"value":"v"}`, fmt.Errorf("node stopped: sync: %w", syscall.ENOSPC), 503,
			`{"detail":"node stopped: sync: no space left on device"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f := newTestAPI(t, Config{})
			f.err = tc.err
			rec := serveString(h, tc.method, tc.target, tc.body)
			if rec.Code != tc.code || rec.Body.String() != tc.want {
				t.Errorf("%s %s = %d %s, want %d %s", tc.method, tc.target, rec.Code, rec.Body, tc.code, tc.want)
			}
			checkJSONHeaders(t, rec)
		})
	}
	h, f := newTestAPI(t, Config{})
	f.status = Status{ID: "n1", DiskFull: true}
	if rec := serveString(h, "GET", "/cluster/status", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"disk_full":true`) {
		t.Errorf("GET /cluster/status of a node with a full disk = %d %s, want disk_full true", rec.Code, rec.Body)
	}
}

// A client that went away gets nothing written.
func TestClientGone(t *testing.T) {
	for _, method := range []string{"PUT", "GET", "DELETE"} {
		h, f := newTestAPI(t, Config{})
		f.block = true
		ctx, cancel := context.WithCancel(context.Background())
		req := httptest.NewRequestWithContext(ctx, method, "/key/k", strings.NewReader(`{"value":"v"}`))
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			h.ServeHTTP(rec, req)
			close(done)
		}()
		cancel()
		<-done
		if rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "" {
			t.Errorf("%s after the client left: wrote %q", method, rec.Body)
		}
	}
}

func TestStatusEndpoints(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	check := func(target string, code int, want string) {
		t.Helper()
		rec := serveString(h, "GET", target, "")
		if rec.Code != code || rec.Body.String() != want {
			t.Errorf("GET %s = %d %s, want %d %s", target, rec.Code, rec.Body, code, want)
		}
		checkJSONHeaders(t, rec)
	}
	check("/healthz", 200, `{"status":"ok"}`)
	check("/readyz", 200, `{"status":"ready"}`)
	check("/cluster/status", 200, `{"id":"","leader":"","term":0,"commit_index":0,"applied_index":0,"members":[]}`)
	f.notReady = errors.New("no leader known")
	f.status = Status{ID: "n1", ClusterID: "5e1a6c4f0b7d2e93", Leader: "n2", Term: 3, CommitIndex: 9, AppliedIndex: 8,
		Members: []Member{{ID: "n1", Peer: "10.0.0.1:7000", HTTP: "10.0.0.1:8000", Role: "voter", Reachable: ptr(true)},
			{ID: "n2", Peer: "10.0.0.2:7000", HTTP: "10.0.0.2:8000", Role: "learner", MatchIndex: ptr(uint64(7)), Lag: ptr(uint64(2))}}}
	check("/readyz", 503, `{"detail":"no leader known"}`)
	check("/cluster/status", 200, `{"id":"n1","cluster_id":"5e1a6c4f0b7d2e93","leader":"n2","term":3,"commit_index":9,"applied_index":8,"members":[`+
		`{"id":"n1","peer":"10.0.0.1:7000","http":"10.0.0.1:8000","role":"voter","reachable":true},`+
		`{"id":"n2","peer":"10.0.0.2:7000","http":"10.0.0.2:8000","role":"learner","match_index":7,"lag":2}]}`)
}

func ptr[T any](v T) *T { return &v }

func TestConfig(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxKeySize != 4096 || c.MaxValueSize != 1<<20 || c.RequestTimeout != 5*time.Second ||
		c.MaxScanLimit != 10000 || c.DefaultScanLimit != 1000 || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	small := Config{MaxScanLimit: 10}
	if err := small.Validate(); err != nil || small.DefaultScanLimit != 10 {
		t.Errorf("MaxScanLimit 10: DefaultScanLimit %d, err %v", small.DefaultScanLimit, err)
	}
	for _, bad := range []Config{
		{MaxKeySize: -1}, {MaxValueSize: -1}, {MaxValueSize: 2 << 30}, {RequestTimeout: -time.Second},
		{MaxScanLimit: -5}, {MaxScanLimit: 10, DefaultScanLimit: 11},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted it", bad)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New accepted a nil Backend")
	}
}

// validUTF8 replaces each byte of s that is not part of valid UTF-8 with
// U+FFFD, as encoding/json and the responses of this package do.
func validUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}
