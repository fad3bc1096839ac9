package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// proposals counts the proposals the backend got.
func proposals(f *fakeBackend) int {
	n := 0
	for _, c := range f.Calls() {
		if c.op == "propose" {
			n++
		}
	}
	return n
}

// The prototype's v1.3 session (idempotent receiver): the same request twice
// is applied once and answered the same; another operation with the same ids
// is another request.
func TestPrototypeIdempotentReceiver(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	const put = "/key/testkey?client_id=client1&request_id=req123"
	first := mustServe(t, h, "PUT", put, `{"value": "testvalue"}`, 200)
	if first != `{"status":"ok","id":11,"key":"testkey","version":1}` {
		t.Fatalf("first PUT: %s", first)
	}
	if again := mustServe(t, h, "PUT", put, `{"value": "testvalue"}`, 200); again != first {
		t.Fatalf("repeated PUT answered %s, want %s", again, first)
	}
	if n := proposals(f); n != 1 {
		t.Fatalf("%d proposals for one request sent twice", n)
	}
	if kvp, _ := f.store.Get([]byte("testkey")); kvp.Version != 1 {
		t.Fatalf("version %d after the repeated PUT", kvp.Version)
	}
	del := mustServe(t, h, "DELETE", "/key/testkey?client_id=client1&request_id=req123", "", 200)
	if del != `{"status":"ok","id":12}` {
		t.Fatalf("DELETE with the PUT's ids: %s", del)
	}
	if again := mustServe(t, h, "DELETE", "/key/testkey?client_id=client1&request_id=req123", "", 200); again != del {
		t.Fatalf("repeated DELETE answered %s, want %s", again, del)
	}
	stats := mustServe(t, h, "GET", "/deduplication_stats", "", 200)
	var st map[string]any
	if err := json.Unmarshal([]byte(stats), &st); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"current_cache_size": 2, "unique_request_ids": 1, "total_client_count": 1, "total_requests_cached": 2,
		"total_duplicates_detected": 3, "same_operation_duplicates": 2, "different_operation_duplicates": 1,
		"total_cache_cleanups": 0, "ttl_seconds": 3600,
	} {
		if st[name] != want {
			t.Errorf("%s = %v, want %v (%s)", name, st[name], want, stats)
		}
	}
	if _, ok := st["service_name"].(string); !ok {
		t.Errorf("no service_name: %s", stats)
	}
}

// A retry that finds no record (its first attempt not yet applied where it
// looked) is caught when applied: it changes nothing and gets the first
// answer, with the key the first attempt wrote.
func TestRetryCaughtWhenApplied(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	first := mustServe(t, h, "PUT", "/key/a?client_id=c&request_id=r", `{"value":1}`, 200)
	f.hideRecords = true
	again := mustServe(t, h, "PUT", "/key/a?client_id=c&request_id=r", `{"value":2}`, 200)
	if again != first || proposals(f) != 2 {
		t.Fatalf("retry: %s after %d proposals, want %s", again, proposals(f), first)
	}
	// Reusing the ids for another key is the same request: the first answer,
	// naming the key the request wrote.
	f.hideRecords = true
	other := mustServe(t, h, "PUT", "/key/b?client_id=c&request_id=r", `{"value":3}`, 200)
	if other != first {
		t.Fatalf("ids reused for another key: %s, want %s", other, first)
	}
	if _, ok := f.store.Get([]byte("b")); ok {
		t.Fatal("the reused ids wrote b")
	}
	if kvp, _ := f.store.Get([]byte("a")); string(kvp.Value) != "1" || kvp.Version != 1 {
		t.Fatalf("a = %q at version %d", kvp.Value, kvp.Version)
	}
}

func TestIdempotencyKeyAndTxn(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	do := func(method, target, body, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	first := do("PUT", "/key/k", `{"value":"v"}`, "k-1")
	again := do("PUT", "/key/k", `{"value":"v"}`, "k-1")
	if first.Code != 200 || again.Body.String() != first.Body.String() || proposals(f) != 1 {
		t.Fatalf("Idempotency-Key: %d %s, then %s", first.Code, first.Body, again.Body)
	}
	// The header's key and a client's ids are different requests.
	if rec := serveString(h, "PUT", "/key/k?client_id=x&request_id=k-1", `{"value":"v"}`); rec.Code != 200 || proposals(f) != 2 {
		t.Fatalf("client ids: %d %s", rec.Code, rec.Body)
	}
	txn := `{"success":[{"put":{"key":"n","value":1}},{"get":{"key":"n"}}]}`
	t1 := do("POST", "/txn?client_id=c&request_id=t", txn, "")
	t2 := do("POST", "/txn?client_id=c&request_id=t", `{"success":[{"delete":{"key":"n"}}]}`, "")
	if t1.Code != 200 || t2.Code != 200 || t1.Body.String() != t2.Body.String() || proposals(f) != 3 {
		t.Fatalf("txn retried (with another body): %d %s, then %d %s", t1.Code, t1.Body, t2.Code, t2.Body)
	}
	if kvp, _ := f.store.Get([]byte("n")); kvp.Version != 1 {
		t.Fatalf("n at version %d", kvp.Version)
	}
}

func TestRequestIDsRefused(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	for _, tc := range []struct {
		method, target, header string
		code                   int
		want                   string
	}{
		{"PUT", "/key/k?client_id=c", "", 422, "query parameters client_id and request_id name a request together: give both or neither"},
		{"PUT", "/key/k?request_id=r", "", 422, "give both or neither"},
		{"PUT", "/key/k?client_id=&request_id=r", "", 422, "query parameter client_id must not be empty"},
		{"PUT", "/key/k?client_id=c&request_id=r&request_id=s", "", 422, "query parameter request_id is given 2 times"},
		{"PUT", "/key/k?client_id=c&request_id=" + strings.Repeat("r", 257), "", 413, "query parameter request_id is 257 bytes; the limit is 256 bytes"},
		{"PUT", "/key/k?client_id=c&request_id=r", "key", 422, "a request is named by client_id and request_id or by an Idempotency-Key header, not both"},
		{"DELETE", "/key/k?client_id=c", "", 422, "give both or neither"},
		{"POST", "/txn?request_id=r", "", 422, "give both or neither"},
		{"GET", "/key/k?client_id=c", "", 422, "give both or neither"},
		{"GET", "/request_status", "", 422, "GET /request_status needs client_id and request_id (or an Idempotency-Key header)"},
		{"GET", "/request_status?client_id=c&request_id=r&operation=GET", "", 422, "operation GET is not recorded"},
		{"GET", "/request_status?client_id=c&request_id=r&operation=PATCH", "", 422, `query parameter operation must be SET (or PUT), DELETE or TXN, not "PATCH"`},
		{"GET", "/deduplication_stats?x=1", "", 422, `unknown query parameter "x"`},
	} {
		body := strings.NewReader(`{"value":"v"}`)
		if tc.method == "POST" {
			body = strings.NewReader(`{}`)
		}
		req := httptest.NewRequest(tc.method, tc.target, body)
		if tc.header != "" {
			req.Header.Set("Idempotency-Key", tc.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || !strings.Contains(detail(t, rec), tc.want) {
			t.Errorf("%s %.60s: %d %s, want %d %q", tc.method, tc.target, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
	if n := proposals(f); n != 0 {
		t.Fatalf("%d proposals for refused requests", n)
	}
	// A read with ids is answered afresh.
	mustServe(t, h, "PUT", "/key/r", `{"value":"v"}`, 200)
	if got := mustServe(t, h, "GET", "/key/r?client_id=c&request_id=r", "", 200); !strings.HasPrefix(got, `{"key":"r","value":"v"`) {
		t.Fatalf("GET with ids: %s", got)
	}
}

func TestRequestStatus(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	const ids = "client_id=c&request_id=r"
	if got := mustServe(t, h, "GET", "/request_status?"+ids, "", 200); got != `{"processed":false}` {
		t.Fatalf("before: %s", got)
	}
	mustServe(t, h, "PUT", "/key/k?"+ids, `{"value":{"a":1}}`, 200)
	want := `{"processed":true,"operation":"SET","status_code":200,"revision":11,"result":{"status":"ok","id":11,"key":"k","version":1}}`
	for _, q := range []string{ids, ids + "&operation=SET", ids + "&operation=put", ids + "&consistency=stale"} {
		if got := mustServe(t, h, "GET", "/request_status?"+q, "", 200); got != want {
			t.Fatalf("?%s: %s, want %s", q, got, want)
		}
	}
	if got := mustServe(t, h, "GET", "/request_status?"+ids+"&operation=DELETE", "", 200); got != `{"processed":false}` {
		t.Fatalf("DELETE: %s", got)
	}
	// A failed condition is an outcome too; without operation, the latest.
	mustServe(t, h, "DELETE", "/key/k?prev_version=5&"+ids, "", 409)
	want = `{"processed":true,"operation":"DELETE","status_code":409,"revision":12,"result":{"detail":"condition failed; the key's version was 1 and its revision 11","key":"k","version":1,"revision":11}}`
	if got := mustServe(t, h, "GET", "/request_status?"+ids, "", 200); got != want {
		t.Fatalf("after the DELETE: %s, want %s", got, want)
	}
	mustServe(t, h, "POST", "/txn?client_id=c&request_id=t", `{"success":[{"get":{"key":"k"}}]}`, 200)
	want = `{"processed":true,"operation":"TXN","status_code":200,"revision":13,"result":{"succeeded":true,"revision":13,"responses":[{"get":{"key":"k","value":{"a":1},"version":1,"revision":11,"create_revision":11}}]}}`
	if got := mustServe(t, h, "GET", "/request_status?client_id=c&request_id=t&operation=TXN", "", 200); got != want {
		t.Fatalf("txn: %s, want %s", got, want)
	}
	req := httptest.NewRequest("GET", "/request_status", nil)
	req.Header.Set("Idempotency-Key", "nope")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Body.String() != `{"processed":false}` {
		t.Fatalf("by Idempotency-Key: %s", rec.Body)
	}
}

// Records expire after RequestDedupTTL, measured by the writes' own times.
func TestRequestDedupTTL(t *testing.T) {
	h, f := newTestAPI(t, Config{RequestDedupTTL: time.Minute})
	now := time.Unix(1_700_000_000, 0)
	h.(*handler).now = func() time.Time { return now }
	mustServe(t, h, "PUT", "/key/k?client_id=c&request_id=r", `{"value":1}`, 200)
	now = now.Add(59 * time.Second)
	mustServe(t, h, "PUT", "/key/other?client_id=c&request_id=x", `{"value":1}`, 200)
	mustServe(t, h, "PUT", "/key/k?client_id=c&request_id=r", `{"value":1}`, 200)
	if kvp, _ := f.store.Get([]byte("k")); kvp.Version != 1 {
		t.Fatalf("repeated within the TTL: version %d", kvp.Version)
	}
	now = now.Add(2 * time.Second)
	mustServe(t, h, "PUT", "/key/k?client_id=c&request_id=r", `{"value":1}`, 200)
	if kvp, _ := f.store.Get([]byte("k")); kvp.Version != 2 {
		t.Fatalf("repeated after the TTL: version %d, want 2 (applied again)", kvp.Version)
	}
}

// A write with ids that timed out says how to learn its outcome.
func TestTimedOutWriteWithIDs(t *testing.T) {
	h, f := newTestAPI(t, Config{RequestTimeout: 20 * time.Millisecond})
	f.block = true
	rec := serveString(h, "PUT", "/key/k?client_id=c&request_id=r", `{"value":1}`)
	want := "request timed out after 20ms; a write may still have been applied; send it again with the same client_id and request_id to apply it at most once and learn its outcome"
	if rec.Code != 503 || detail(t, rec) != want {
		t.Fatalf("%d %s, want %q", rec.Code, rec.Body, want)
	}
}

func TestAnswerNotKept(t *testing.T) {
	h, f := newTestAPI(t, Config{MaxValueSize: 2 << 20})
	if _, err := f.Propose(t.Context(), kv.Command{Op: kv.OpPut, Key: []byte("big"), Value: []byte(strings.Repeat("v", kv.MaxRecordedResult))}); err != nil {
		t.Fatal(err)
	}
	txn := `{"success":[{"get":{"key":"big"}}]}`
	mustServe(t, h, "POST", "/txn?client_id=c&request_id=r", txn, 200)
	rec := serveString(h, "POST", "/txn?client_id=c&request_id=r", txn)
	if rec.Code != 409 || !strings.Contains(detail(t, rec), "this request was already applied, at revision 12, but its answer was more than the 1048576 bytes kept") {
		t.Fatalf("%d %.300s", rec.Code, rec.Body)
	}
}
