package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestPutTTL: a PUT's "ttl" fixes the key's deadline by the node's clock;
// GET shows the whole seconds left, and answers 404 once the deadline has
// passed by the node's clock, before any expiry entry is applied; a PUT
// without "ttl" clears it.
func TestPutTTL(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	now := time.Unix(1_700_000_000, 0)
	h.(*handler).now = func() time.Time { return now }

	if rec := serve(h, "PUT", "/key/k", strings.NewReader(`{"value":"v","ttl":30}`)); rec.Code != 200 {
		t.Fatalf("PUT with ttl: %d %s", rec.Code, rec.Body)
	}
	calls := f.Calls()
	if d := calls[len(calls)-1].cmd.Deadline; d != now.Add(30*time.Second).UnixNano() {
		t.Fatalf("proposed deadline %d, want now + 30 s", d)
	}
	ttlOf := func() (int64, bool, int) {
		t.Helper()
		rec := serve(h, "GET", "/key/k", nil)
		var body struct {
			TTL *int64 `json:"ttl"`
		}
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
		}
		if body.TTL == nil {
			return 0, false, rec.Code
		}
		return *body.TTL, true, rec.Code
	}
	for _, tc := range []struct {
		after    time.Duration
		ttl      int64
		has      bool
		wantCode int
	}{
		{0, 30, true, 200},
		{500 * time.Millisecond, 30, true, 200},
		{29 * time.Second, 1, true, 200},
		{29*time.Second + 999*time.Millisecond, 1, true, 200},
		{30 * time.Second, 0, false, 404},
		{time.Hour, 0, false, 404},
	} {
		now = time.Unix(1_700_000_000, 0).Add(tc.after)
		ttl, has, code := ttlOf()
		if code != tc.wantCode || has != tc.has || ttl != tc.ttl {
			t.Errorf("GET %v after the PUT: %d ttl %d (%v), want %d ttl %d (%v)", tc.after, code, ttl, has, tc.wantCode, tc.ttl, tc.has)
		}
	}
	// The scan leaves it out too, and so do its history and versions.
	if rec := serve(h, "GET", "/keys", nil); rec.Code != 200 || strings.Contains(rec.Body.String(), `"k"`) {
		t.Errorf("scan past the deadline: %d %s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/key/k/history", "/key/k/versions"} {
		if rec := serve(h, "GET", path, nil); rec.Code != 404 {
			t.Errorf("GET %s past the deadline: %d %s, want 404", path, rec.Code, rec.Body)
		}
	}

	now = time.Unix(1_700_000_000, 0)
	if rec := serve(h, "PUT", "/key/k", strings.NewReader(`{"value":"v2"}`)); rec.Code != 200 {
		t.Fatalf("PUT without ttl: %d %s", rec.Code, rec.Body)
	}
	now = now.Add(time.Hour)
	if _, has, code := ttlOf(); code != 200 || has {
		t.Errorf("after a PUT without ttl: %d, ttl shown %v; want 200 and no ttl", code, has)
	}
}

func TestPutTTLRefused(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"value":"v","ttl":0}`, `"ttl" must be a whole number of seconds from 1 to 315360000, not 0`},
		{`{"value":"v","ttl":-5}`, `not -5`},
		{`{"value":"v","ttl":1.5}`, `not 1.5`},
		{`{"value":"v","ttl":"30"}`, `not a string`},
		{`{"value":"v","ttl":315360001}`, `not 315360001`},
		{`{"value":"v","ttl":1e3}`, `not 1e3`},
		{`{"success":[{"put":{"key":"k","value":"v","ttl":3}}]}`, `unknown field "ttl"`},
	} {
		h, f := newTestAPI(t, Config{})
		method, target := "PUT", "/key/k"
		if strings.HasPrefix(tc.body, `{"success"`) {
			method, target = "POST", txnPath
		}
		rec := serve(h, method, target, strings.NewReader(tc.body))
		if rec.Code != 422 {
			t.Errorf("%s: %d %s, want 422", tc.body, rec.Code, rec.Body)
			continue
		}
		if d := detail(t, rec); !strings.Contains(d, tc.want) {
			t.Errorf("%s: detail %q does not contain %q", tc.body, d, tc.want)
		}
		if len(f.Calls()) != 0 {
			t.Errorf("%s: the backend was called", tc.body)
		}
	}
}
