package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// sameTxn compares two transactions by their canonical encoding, which
// ignores the difference between nil and empty slices.
func sameTxn(a, b *kv.Txn) bool {
	return bytes.Equal(kv.Command{Op: kv.OpTxn, Txn: a}.Marshal(), kv.Command{Op: kv.OpTxn, Txn: b}.Marshal())
}

// mustServe runs a request and fails unless it gets code.
func mustServe(t *testing.T, h http.Handler, method, target, body string, code int) string {
	t.Helper()
	rec := serveString(h, method, target, body)
	if rec.Code != code {
		t.Fatalf("%s %s %s = %d %s, want %d", method, target, body, rec.Code, rec.Body, code)
	}
	checkJSONHeaders(t, rec)
	return rec.Body.String()
}

// The example of the package documentation, step by step.
func TestTxnWalkthrough(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 10
	for _, s := range []struct{ key, value string }{{"a", "x"}, {"b", "1"}, {"b", "2"}, {"b", "3"}, {"c", "cv"}} {
		mustServe(t, h, "PUT", "/key/"+s.key, `{"value":"`+s.value+`"}`, 200)
	}
	// a="x" v1 r11; b="3" v3 r14 c12; c="cv" v1 r15; d missing.
	body := `{"compare": [{"key":"a","target":"value","op":"==","value":"x"},
	                      {"key":"b","target":"version","op":">","version":2},
	                      {"key":"c","target":"revision","op":"<","revision":100},
	                      {"key":"d","target":"exists","exists":false}],
	          "success": [{"put":{"key":"a","value":"y"}}, {"delete":{"key":"b"}}, {"get":{"key":"c"}}, {"get":{"key":"d"}}],
	          "failure": [{"get":{"key":"a"}}]}`
	got := mustServe(t, h, "POST", "/txn", body, 200)
	want := `{"succeeded":true,"revision":16,"responses":[{"put":{"revision":16}},{"delete":{"deleted":1}},` +
		`{"get":{"key":"c","value":"cv","version":1,"revision":15,"create_revision":15}},{"get":null}]}`
	if got != want {
		t.Fatalf("txn:\n got %s\nwant %s", got, want)
	}
	calls := f.Calls()
	wantTxn := &kv.Txn{
		Compares: []kv.Compare{
			{Key: []byte("a"), Target: kv.TargetValue, Op: kv.CompareEqual, Value: []byte("x")},
			{Key: []byte("b"), Target: kv.TargetVersion, Op: kv.CompareGreater, Number: 2},
			{Key: []byte("c"), Target: kv.TargetRevision, Op: kv.CompareLess, Number: 100},
			{Key: []byte("d"), Target: kv.TargetExists, Op: kv.CompareEqual, Exists: false},
		},
		Success: []kv.TxnOp{{Type: kv.TxnPut, Key: []byte("a"), Value: []byte("y")}, {Type: kv.TxnDelete, Key: []byte("b")},
			{Type: kv.TxnGet, Key: []byte("c")}, {Type: kv.TxnGet, Key: []byte("d")}},
		Failure: []kv.TxnOp{{Type: kv.TxnGet, Key: []byte("a")}},
	}
	if last := calls[len(calls)-1]; last.op != "propose" || last.cmd.Op != kv.OpTxn || !sameTxn(last.cmd.Txn, wantTxn) {
		t.Fatalf("backend got %+v", last)
	}
	// The same again: a is "y" now, so the failure branch runs.
	got = mustServe(t, h, "POST", "/txn", body, 200)
	want = `{"succeeded":false,"revision":17,"responses":[{"get":{"key":"a","value":"y","version":2,"revision":16,"create_revision":11}}]}`
	if got != want {
		t.Fatalf("second txn:\n got %s\nwant %s", got, want)
	}
	if got := mustServe(t, h, "GET", "/key/a", "", 200); got != `{"key":"a","value":"y","version":2,"revision":16}` {
		t.Fatalf("GET a = %s", got)
	}
	mustServe(t, h, "GET", "/key/b", "", 404)
	// An empty transaction succeeds and takes a revision.
	if got := mustServe(t, h, "POST", "/txn", `{}`, 200); got != `{"succeeded":true,"revision":18,"responses":[]}` {
		t.Fatalf("empty txn = %s", got)
	}
	if got := mustServe(t, h, "POST", "/txn", `{"compare":null,"success":null,"failure":[]}`, 200); got != `{"succeeded":true,"revision":19,"responses":[]}` {
		t.Fatalf("txn of nulls = %s", got)
	}
}

// Every target and op, through the API.
func TestTxnCompares(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 10
	mustServe(t, h, "PUT", "/key/k", `{"value":"a"}`, 200)
	mustServe(t, h, "PUT", "/key/k", `{"value":"m"}`, 200)
	// k = "m", version 2, revision 12, create_revision 11.
	for _, tc := range []struct {
		compare string
		want    bool
	}{
		{`{"key":"k","target":"value","op":"==","value":"m"}`, true},
		{`{"key":"k","target":"value","op":"!=","value":"m"}`, false},
		{`{"key":"k","target":"value","op":"<","value":"n"}`, true},
		{`{"key":"k","target":"value","op":">","value":"n"}`, false},
		{`{"key":"k","target":"value","op":"<=","value":"m"}`, true},
		{`{"key":"k","target":"value","op":">=","value":"m\u0000"}`, false},
		{`{"key":"nope","target":"value","op":"!=","value":"x"}`, false}, // as in etcd
		{`{"key":"k","target":"version","op":"==","version":2}`, true},
		{`{"key":"k","target":"version","op":"!=","version":2}`, false},
		{`{"key":"k","target":"version","op":"<","version":3}`, true},
		{`{"key":"k","target":"version","op":">","version":2}`, false},
		{`{"key":"k","target":"version","op":"<=","version":1}`, false},
		{`{"key":"k","target":"version","op":">=","version":2}`, true},
		{`{"key":"nope","target":"version","op":"==","version":0}`, true},
		{`{"key":"k","target":"revision","op":"==","revision":12}`, true},
		{`{"key":"k","target":"revision","op":"<","revision":100}`, true},
		{`{"key":"k","target":"revision","op":">","revision":12}`, false},
		{`{"key":"nope","target":"revision","op":"==","revision":0}`, true},
		{`{"key":"k","target":"create_revision","op":"==","create_revision":11}`, true},
		{`{"key":"k","target":"create_revision","op":"!=","create_revision":11}`, false},
		{`{"key":"k","target":"create_revision","op":">=","create_revision":12}`, false},
		{`{"key":"nope","target":"create_revision","op":"<=","create_revision":0}`, true},
		{`{"key":"k","target":"exists","exists":true}`, true},
		{`{"key":"k","target":"exists","exists":false}`, false},
		{`{"key":"k","target":"exists","op":"!=","exists":true}`, false},
		{`{"key":"nope","target":"exists","op":"==","exists":false}`, true},
		{`{"key":"nope","target":"exists","op":"!=","exists":false}`, false},
	} {
		body := `{"compare":[` + tc.compare + `],"success":[{"get":{"key":"k"}}],"failure":[]}`
		rec := serveString(h, "POST", "/txn", body)
		var got struct {
			Succeeded bool
			Responses []json.RawMessage
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
			t.Fatalf("%s: %d %s", tc.compare, rec.Code, rec.Body)
		}
		wantN := 0
		if tc.want {
			wantN = 1
		}
		if got.Succeeded != tc.want || len(got.Responses) != wantN {
			t.Errorf("%s: %s, want succeeded=%v", tc.compare, rec.Body, tc.want)
		}
	}
}

func TestTxnResponseStrings(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 10
	body := `{"success":[{"put":{"key":"k\"\\é\u0001","value":"v\n\ud83d\ude00"}},{"get":{"key":"k\"\\é\u0001"}},{"delete":{"key":"missing"}}]}`
	got := mustServe(t, h, "POST", "/txn", body, 200)
	want := `{"succeeded":true,"revision":11,"responses":[{"put":{"revision":11}},` +
		`{"get":{"key":"k\"\\é\u0001","value":"v\n😀","version":1,"revision":11,"create_revision":11}},{"delete":{"deleted":0}}]}`
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func TestTxnMethods(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	for _, m := range []string{"GET", "HEAD", "PUT", "DELETE", "PATCH"} {
		rec := serveString(h, m, "/txn", `{}`)
		if rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
			t.Errorf("%s /txn = %d, Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
	for _, p := range []string{"/txn/", "/txn/x", "/Txn"} {
		if rec := serveString(h, "POST", p, `{}`); rec.Code != 404 {
			t.Errorf("POST %s = %d", p, rec.Code)
		}
	}
	if n := len(f.Calls()); n != 0 {
		t.Fatalf("backend called %d times", n)
	}
}

func TestTxnBadRequests(t *testing.T) {
	cfg := Config{MaxKeySize: 8, MaxValueSize: 16, MaxTxnOps: 3}
	long := func(n int) string { return strings.Repeat("x", n) }
	ops := func(n int, op string) string { return strings.TrimSuffix(strings.Repeat(op+",", n), ",") }
	cmp := `{"key":"a","target":"version","op":"==","version":1}`
	tests := []struct {
		name, target, body string
		code               int
		detail             string // a part of the detail
	}{
		{"empty body", "/txn", "", 422, "request body is empty"},
		{"only spaces", "/txn", " \n", 422, "request body is empty"},
		{"not JSON", "/txn", `{"compare":[}`, 422, "not valid JSON"},
		{"trailing data", "/txn", `{} {}`, 422, "not valid JSON"},
		{"an array", "/txn", `[]`, 422, "must be a JSON object"},
		{"a string", "/txn", `"txn"`, 422, "not a string"},
		{"query string", "/txn?timeout=1", `{}`, 422, `unknown query parameter "timeout"; POST /txn takes client_id and request_id`},
		{"unknown field", "/txn", `{"compares":[]}`, 422, `unknown field "compares"`},
		{"field names are case-sensitive", "/txn", `{"Success":[]}`, 422, `unknown field "Success"`},
		{"repeated field", "/txn", `{"success":[],"success":[]}`, 422, `"success" more than once`},
		{"compare not an array", "/txn", `{"compare":{}}`, 422, `"compare" must be an array, not an object`},
		{"success not an array", "/txn", `{"success":"put"}`, 422, `"success" must be an array, not a string`},

		{"compare not an object", "/txn", `{"compare":[1]}`, 422, "compare[0] must be an object"},
		{"compare without key", "/txn", `{"compare":[{"target":"value","op":"==","value":"x"}]}`, 422, `compare[0] has no "key" field`},
		{"compare with null key", "/txn", `{"compare":[{"key":null,"target":"value","op":"==","value":"x"}]}`, 422, `compare[0] has no "key" field`},
		{"compare with empty key", "/txn", `{"compare":[{"key":"","target":"version","op":"==","version":1}]}`, 422, "compare[0].key must not be empty"},
		{"compare key a number", "/txn", `{"compare":[{"key":1,"target":"version","op":"==","version":1}]}`, 422, "compare[0].key must be a string, not a number"},
		{"second compare bad", "/txn", `{"compare":[` + cmp + `,{"key":"b"}]}`, 422, "compare[1].target is missing"},
		{"unknown target", "/txn", `{"compare":[{"key":"a","target":"mod","op":"=="}]}`, 422, `compare[0].target must be one of "value", "version", "revision", "create_revision" and "exists", not "mod"`},
		{"target not a string", "/txn", `{"compare":[{"key":"a","target":2,"op":"==","version":1}]}`, 422, "compare[0].target must be a string, not a number"},
		{"missing op", "/txn", `{"compare":[{"key":"a","target":"version","version":1}]}`, 422, "compare[0].op is missing"},
		{"unknown op", "/txn", `{"compare":[{"key":"a","target":"version","op":"=<","version":1}]}`, 422, `compare[0].op must be one of "==", "!=", "<", ">", "<=" and ">=", not "=<"`},
		{"word op", "/txn", `{"compare":[{"key":"a","target":"version","op":"EQUAL","version":1}]}`, 422, `not "EQUAL"`},
		{"ordering op on exists", "/txn", `{"compare":[{"key":"a","target":"exists","op":"<","exists":true}]}`, 422, `compare[0].op must be "==" or "!=" for the target "exists"`},
		{"missing operand", "/txn", `{"compare":[{"key":"a","target":"version","op":"=="}]}`, 422, `compare[0] has the target "version" but no "version" field`},
		{"nulls are absent", "/txn", `{"compare":[{"op":"==","version":null,"exists":null,"target":"exists","key":"k","value":null}]}`, 422, `compare[0] has the target "exists" but no "exists" field`},
		{"null operand", "/txn", `{"compare":[{"key":"a","target":"revision","op":"==","revision":null}]}`, 422, `no "revision" field`},
		{"operand of another target", "/txn", `{"compare":[{"key":"a","target":"version","op":"==","value":"3"}]}`, 422, `target "version", so the field "value" does not apply`},
		{"two operands", "/txn", `{"compare":[{"key":"a","target":"version","op":"==","version":3,"revision":3}]}`, 422, `the field "revision" does not apply`},
		{"version a string", "/txn", `{"compare":[{"key":"a","target":"version","op":"==","version":"3"}]}`, 422, `compare[0]: "version" must be a non-negative integer, not a string`},
		{"negative revision", "/txn", `{"compare":[{"key":"a","target":"revision","op":">","revision":-1}]}`, 422, "non-negative integer, not -1"},
		{"fractional create_revision", "/txn", `{"compare":[{"key":"a","target":"create_revision","op":">","create_revision":1.5}]}`, 422, "non-negative integer, not 1.5"},
		{"huge version", "/txn", `{"compare":[{"key":"a","target":"version","op":">","version":99999999999999999999}]}`, 422, "non-negative integer"},
		{"value operand a number", "/txn", `{"compare":[{"key":"a","target":"value","op":"==","value":1}]}`, 422, "compare[0].value must be a string, not a number"},
		{"exists a string", "/txn", `{"compare":[{"key":"a","target":"exists","exists":"no"}]}`, 422, "compare[0].exists must be a boolean, not a string"},
		{"unknown compare field", "/txn", `{"compare":[{"key":"a","target":"version","op":"==","version":1,"prev_version":1}]}`, 422, `compare[0] has an unknown field "prev_version"`},
		{"repeated compare field", "/txn", `{"compare":[{"key":"a","key":"b","target":"version","op":"==","version":1}]}`, 422, `compare[0] has the field "key" more than once`},

		{"op not an object", "/txn", `{"success":[["put"]]}`, 422, "success[0] must be an object"},
		{"empty op", "/txn", `{"success":[{}]}`, 422, "success[0] is empty"},
		{"two kinds in one op", "/txn", `{"failure":[{"put":{"key":"a","value":"1"},"get":{"key":"a"}}]}`, 422, `failure[0] has both "put" and "get"`},
		{"unknown op kind", "/txn", `{"success":[{"set":{"key":"a","value":"1"}}]}`, 422, `success[0] has an unknown field "set"`},
		{"null put", "/txn", `{"success":[{"put":null}]}`, 422, "success[0].put must be an object, not null"},
		{"put without value", "/txn", `{"success":[{"put":{"key":"a"}}]}`, 422, `success[0].put has no "value" field`},
		{"put without value", "/txn", `{"success":[{"put":{"key":"a"}}]}`, 422, `success[0].put has no "value" field`},
		{"put value nested too deep", "/txn", `{"success":[{"put":{"key":"a","value":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}}]}`, 422,
			"success[0].put.value is nested more than 64 levels deep"},
		{"put without key", "/txn", `{"success":[{"put":{"value":"1"}}]}`, 422, `success[0].put has no "key" field`},
		{"put with a condition", "/txn", `{"success":[{"put":{"key":"a","value":"1","prev_version":1}}]}`, 422, `success[0].put has an unknown field "prev_version"`},
		{"get with a value", "/txn", `{"success":[{"get":{"key":"a","value":"1"}}]}`, 422, `success[0].get has an unknown field "value"; a get has only "key"`},
		{"delete range", "/txn", `{"failure":[{"delete":{"key":"a","range_end":"b"}}]}`, 422, `failure[0].delete has an unknown field "range_end"`},
		{"delete with empty key", "/txn", `{"success":[{"delete":{"key":""}}]}`, 422, "success[0].delete.key must not be empty"},
		{"repeated key in an op", "/txn", `{"success":[{"get":{"key":"a","key":"b"}}]}`, 422, `success[0].get has the field "key" more than once`},
		{"put twice", "/txn", `{"success":[{"put":{"key":"a","value":"1"}},{"put":{"key":"a","value":"2"}}]}`, 422, `success[1]: key "a" is already written by success[0]`},
		{"put and delete", "/txn", `{"failure":[{"get":{"key":"a"}},{"delete":{"key":"a"}},{"put":{"key":"a","value":"2"}}]}`, 422, `failure[2]: key "a" is already written by failure[1]`},

		{"compare key too long", "/txn", `{"compare":[{"key":"` + long(9) + `","target":"exists","exists":true}]}`, 413, "compare[0].key is 9 bytes; the limit is 8 bytes"},
		{"op key too long", "/txn", `{"success":[{"get":{"key":"` + long(9) + `"}}]}`, 413, "success[0].get.key is 9 bytes; the limit is 8 bytes"},
		{"escaped key too long", "/txn", `{"success":[{"delete":{"key":"` + strings.Repeat(`\u00e9`, 5) + `"}}]}`, 413, "success[0].delete.key is 10 bytes"},
		{"put value too long", "/txn", `{"failure":[{"put":{"key":"a","value":"` + long(17) + `"}}]}`, 413, "failure[0].put.value is 17 bytes; the limit is 16 bytes"},
		{"compare value too long", "/txn", `{"compare":[{"key":"a","target":"value","op":"<","value":"` + long(17) + `"}]}`, 413, "compare[0].value is 17 bytes; the limit is 16 bytes"},
		{"too many compares", "/txn", `{"compare":[` + ops(4, cmp) + `]}`, 413, `"compare" has 4 compares; the limit is 3`},
		{"too many successes", "/txn", `{"success":[` + ops(4, `{"get":{"key":"a"}}`) + `]}`, 413, `"success" has 4 operations; the limit is 3`},
		{"too many failures", "/txn", `{"failure":[` + ops(5, `{}`) + `]}`, 413, `"failure" has 5 operations; the limit is 3`},
		{"body too long", "/txn", `{"success":[` + long(6*16+64<<10) + `]}`, 413, "the limit is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f := newTestAPI(t, cfg)
			rec := serveString(h, "POST", tt.target, tt.body)
			if rec.Code != tt.code {
				t.Fatalf("%s = %d %s, want %d", tt.body, rec.Code, rec.Body, tt.code)
			}
			checkJSONHeaders(t, rec)
			if d := detail(t, rec); !strings.Contains(d, tt.detail) {
				t.Fatalf("detail %q does not contain %q", d, tt.detail)
			}
			if calls := f.Calls(); len(calls) != 0 {
				t.Fatalf("the backend was called: %+v", calls)
			}
		})
	}
}

// Limits are inclusive, and MaxTxnOps bounds each list on its own.
func TestTxnAtLimits(t *testing.T) {
	h, f := newTestAPI(t, Config{MaxKeySize: 8, MaxValueSize: 16, MaxTxnOps: 3})
	key, value := strings.Repeat("k", 8), strings.Repeat("v", 16)
	cmp := `{"key":"` + key + `","target":"value","op":"<","value":"` + value + `"}`
	body := `{"compare":[` + cmp + `,` + cmp + `,` + cmp + `],` +
		`"success":[{"put":{"key":"` + key + `","value":"` + value + `"}},{"get":{"key":"` + key + `"}},{"delete":{"key":"b"}}],` +
		`"failure":[{"put":{"key":"` + key + `","value":"` + value + `"}},{"put":{"key":"a","value":""}},{"put":{"key":"b","value":""}}]}`
	rec := serveString(h, "POST", "/txn", body)
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"succeeded":false,"revision":11,"responses":[{"put":{"revision":11}},{"put":`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if n := len(f.Calls()); n != 1 {
		t.Fatalf("%d backend calls", n)
	}
	var c Config
	if err := c.Validate(); err != nil || c.MaxTxnOps != 128 {
		t.Fatalf("default MaxTxnOps %d, %v", c.MaxTxnOps, err)
	}
	if c := (Config{MaxTxnOps: -1}); c.Validate() == nil {
		t.Fatal("MaxTxnOps -1 accepted")
	}
}

func TestTxnBackendErrors(t *testing.T) {
	body := `{"success":[{"put":{"key":"a","value":"1"}}]}`
	h, f := newTestAPI(t, Config{})
	f.err = errors.New("no leader")
	rec := serveString(h, "POST", "/txn", body)
	if rec.Code != 503 || detail(t, rec) != "no leader" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}

	h, f = newTestAPI(t, Config{RequestTimeout: 10 * time.Millisecond})
	f.block = true
	rec = serveString(h, "POST", "/txn", body)
	if rec.Code != 503 || detail(t, rec) != "request timed out after 10ms; a write may still have been applied" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}

	// A client that has gone away gets nothing written.
	h, f = newTestAPI(t, Config{})
	f.block = true
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("POST", "/txn", strings.NewReader(body)).WithContext(ctx)
	cancel()
	rec2 := httptest.NewRecorder()
	h.ServeHTTP(rec2, req)
	if rec2.Body.Len() != 0 {
		t.Fatalf("wrote %d %s to a client that had gone", rec2.Code, rec2.Body)
	}
}

// resultBackend answers every Propose with res.
type resultBackend struct {
	*fakeBackend
	res kv.Result
}

func (b resultBackend) Propose(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	return b.res, nil
}

func TestTxnMalformedResult(t *testing.T) {
	body := `{"success":[{"put":{"key":"a","value":"1"}},{"get":{"key":"a"}}]}`
	for _, tc := range []struct {
		name string
		res  kv.Result
	}{
		{"no txn outcome", kv.Result{Status: kv.StatusOK, Revision: 5}},
		{"conflict", kv.Result{Status: kv.StatusConflict, Txn: &kv.TxnResult{Succeeded: true}}},
		{"too few responses", kv.Result{Status: kv.StatusOK, Txn: &kv.TxnResult{Succeeded: true, Responses: []kv.TxnResponse{{Type: kv.TxnPut}}}}},
		{"responses of the other branch", kv.Result{Status: kv.StatusOK, Txn: &kv.TxnResult{Succeeded: false, Responses: []kv.TxnResponse{{Type: kv.TxnPut}}}}},
		{"wrong type", kv.Result{Status: kv.StatusOK, Txn: &kv.TxnResult{Succeeded: true, Responses: []kv.TxnResponse{{Type: kv.TxnPut}, {Type: kv.TxnDelete}}}}},
	} {
		h, err := New(Config{}, resultBackend{newFake(), tc.res})
		if err != nil {
			t.Fatal(err)
		}
		rec := serveString(h, "POST", "/txn", body)
		if rec.Code != 500 || !strings.HasPrefix(detail(t, rec), "internal error: ") {
			t.Errorf("%s: %d %s", tc.name, rec.Code, rec.Body)
		}
	}
}

// refDecodeTxn decodes a txn body the slow, obvious way with encoding/json:
// the oracle FuzzTxnBody checks the hand-written parser against. It reports
// false for every body the API must refuse, except that encoding/json lets a
// repeated field name take its last value where the API refuses it.
func refDecodeTxn(body []byte, cfg Config) (*kv.Txn, bool) {
	if !json.Valid(body) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var top any
	if dec.Decode(&top) != nil {
		return nil, false
	}
	obj, ok := top.(map[string]any)
	if !ok {
		return nil, false
	}
	onlyFields := func(m map[string]any, names ...string) bool {
		for k := range m {
			found := false
			for _, n := range names {
				found = found || k == n
			}
			if !found {
				return false
			}
		}
		return true
	}
	if !onlyFields(obj, "compare", "success", "failure") {
		return nil, false
	}
	list := func(name string) ([]any, bool) {
		v := obj[name]
		if v == nil {
			return nil, true
		}
		arr, ok := v.([]any)
		return arr, ok && len(arr) <= cfg.MaxTxnOps
	}
	str := func(v any, limit int) ([]byte, bool) {
		s, ok := v.(string)
		return []byte(s), ok && len(s) <= limit
	}
	key := func(v any) ([]byte, bool) {
		k, ok := str(v, cfg.MaxKeySize)
		return k, ok && len(k) > 0
	}
	tx := &kv.Txn{}
	cmps, ok := list("compare")
	if !ok {
		return nil, false
	}
	targets := map[string]kv.CompareTarget{"value": kv.TargetValue, "version": kv.TargetVersion,
		"revision": kv.TargetRevision, "create_revision": kv.TargetCreateRevision, "exists": kv.TargetExists}
	cmpOps := map[string]kv.CompareOp{"==": kv.CompareEqual, "!=": kv.CompareNotEqual, "<": kv.CompareLess,
		">": kv.CompareGreater, "<=": kv.CompareLessEqual, ">=": kv.CompareGreaterEqual}
	for _, e := range cmps {
		m, ok := e.(map[string]any)
		if !ok || !onlyFields(m, "key", "target", "op", "value", "version", "revision", "create_revision", "exists") {
			return nil, false
		}
		var c kv.Compare
		if c.Key, ok = key(m["key"]); !ok {
			return nil, false
		}
		tname, _ := m["target"].(string)
		if c.Target, ok = targets[tname]; !ok {
			return nil, false
		}
		opName, isStr := m["op"].(string)
		switch {
		case m["op"] == nil && c.Target == kv.TargetExists:
			c.Op = kv.CompareEqual
		case !isStr:
			return nil, false
		default:
			if c.Op, ok = cmpOps[opName]; !ok {
				return nil, false
			}
		}
		if c.Target == kv.TargetExists && c.Op != kv.CompareEqual && c.Op != kv.CompareNotEqual {
			return nil, false
		}
		for name := range targets {
			if name != tname && m[name] != nil {
				return nil, false
			}
		}
		switch v := m[tname]; c.Target {
		case kv.TargetValue:
			if c.Value, ok = str(v, cfg.MaxValueSize); !ok {
				return nil, false
			}
		case kv.TargetExists:
			if c.Exists, ok = v.(bool); !ok {
				return nil, false
			}
		default:
			num, ok := v.(json.Number)
			if !ok {
				return nil, false
			}
			n, err := strconv.ParseInt(string(num), 10, 64)
			if err != nil || n < 0 {
				return nil, false
			}
			c.Number = n
		}
		tx.Compares = append(tx.Compares, c)
	}
	branch := func(name string) ([]kv.TxnOp, bool) {
		elems, ok := list(name)
		if !ok {
			return nil, false
		}
		var ops []kv.TxnOp
		for _, e := range elems {
			m, ok := e.(map[string]any)
			if !ok || len(m) != 1 {
				return nil, false
			}
			var op kv.TxnOp
			var inner map[string]any
			for k, v := range m {
				switch k {
				case "put":
					op.Type = kv.TxnPut
				case "delete":
					op.Type = kv.TxnDelete
				case "get":
					op.Type = kv.TxnGet
				default:
					return nil, false
				}
				inner, ok = v.(map[string]any)
			}
			if !ok {
				return nil, false
			}
			if op.Type == kv.TxnPut {
				ok = onlyFields(inner, "key", "value")
			} else {
				ok = onlyFields(inner, "key")
			}
			if !ok {
				return nil, false
			}
			if op.Key, ok = key(inner["key"]); !ok {
				return nil, false
			}
			if op.Type == kv.TxnPut {
				if op.Value, ok = str(inner["value"], cfg.MaxValueSize); !ok {
					return nil, false
				}
			}
			ops = append(ops, op)
		}
		return ops, true
	}
	if tx.Success, ok = branch("success"); !ok {
		return nil, false
	}
	if tx.Failure, ok = branch("failure"); !ok {
		return nil, false
	}
	return tx, tx.Validate() == nil
}

func FuzzTxnBody(f *testing.F) {
	for _, seed := range []string{
		`{"compare":[{"key":"a","target":"value","op":"==","value":"x"},{"key":"b","target":"version","op":">","version":2}],` +
			`"success":[{"put":{"key":"a","value":"y"}},{"delete":{"key":"b"}},{"get":{"key":"c"}}],"failure":[{"get":{"key":"a"}}]}`,
		`{"compare":[{"key":"d","target":"exists","exists":false},{"key":"c","target":"revision","op":"<","revision":100}],"success":[{"put":{"key":"d","value":""}}]}`,
		`{"compare":[{"key":"a","target":"create_revision","op":">=","create_revision":0}],"failure":[{"get":{"key":"a"}}]}`,
		`{}`,
		`{"compare":null,"success":[],"failure":null}`,
		`{"success":[{"put":{"key":"a","value":"1"}},{"put":{"key":"a","value":"2"}}]}`,
		`{"success":[{"put":{"key":"a","value":"1"},"get":{"key":"a"}}]}`,
		`{"compare":[{"key":"a","key":"b","target":"exists","exists":true}]}`,
		`{"compare":[{"key":"a","target":"version","op":"==","value":"1"}]}`,
		`{"compare":[{"key":"\u00e9\ud800","target":"value","op":"!=","value":"\u0000\\"}]}`,
		`{"success":[{"get":{"key":"123456789"}}]}`,
		`{"success":[{},{},{},{}]}`,
		` [ ] `,
		`{"compare":[{"key":"a","target":"version","op":"<","version":-0}]}`,
		`{"compare":[{"key":"a","target":"version","op":"<","version":1e3}]}`,
		`{"\u0073uccess":[{"get":{"key":"a"}}]}`,
	} {
		f.Add([]byte(seed))
	}
	cfg := Config{MaxKeySize: 8, MaxValueSize: 16, MaxTxnOps: 3}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, fake := newTestAPI(t, cfg)
		rec := serve(h, "POST", "/txn", bytes.NewReader(body))
		checkResponse(t, rec)
		calls := fake.Calls()
		ref, refOK := refDecodeTxn(body, cfg)
		switch rec.Code {
		case 200:
			if !refOK {
				t.Fatalf("200 %s for body %q, which the encoding/json reference rejects", rec.Body, body)
			}
			if len(calls) != 1 || calls[0].cmd.Op != kv.OpTxn || !sameTxn(calls[0].cmd.Txn, ref) {
				t.Fatalf("body %q: backend got %+v, want %+v", body, calls, ref)
			}
			var got struct {
				Succeeded *bool
				Revision  *int64
				Responses []json.RawMessage
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Succeeded == nil || got.Revision == nil || got.Responses == nil {
				t.Fatalf("response %s: %v", rec.Body, err)
			}
			want := len(ref.Failure)
			if *got.Succeeded {
				want = len(ref.Success)
			}
			if len(got.Responses) != want {
				t.Fatalf("response %s has %d responses, want %d", rec.Body, len(got.Responses), want)
			}
		case 413, 422:
			if len(calls) != 0 {
				t.Fatalf("%d, yet the backend was called", rec.Code)
			}
			if refOK && !strings.Contains(detail(t, rec), "more than once (repeated)") {
				t.Fatalf("%d %s for body %q, which the encoding/json reference accepts as %+v", rec.Code, rec.Body, body, ref)
			}
		default:
			t.Fatalf("status %d %s", rec.Code, rec.Body)
		}
	})
}

// BenchmarkTxnParse measures the parsing of a typical small transaction.
func BenchmarkTxnParse(b *testing.B) {
	body := []byte(`{"compare":[{"key":"a","target":"value","op":"==","value":"x"},{"key":"b","target":"version","op":">","version":2}],` +
		`"success":[{"put":{"key":"a","value":"y"}},{"delete":{"key":"b"}},{"get":{"key":"c"}}],"failure":[{"get":{"key":"a"}}]}`)
	cfg := Config{}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, aerr := parseTxn(body, &cfg); aerr != nil {
			b.Fatal(aerr)
		}
	}
}
