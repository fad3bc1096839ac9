package httpapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
)

// revPage is a scan answer with its revision.
type revPage struct {
	KVs []struct {
		Key, Value string
	} `json:"kvs"`
	More     bool   `json:"more"`
	Continue string `json:"continue"`
	Revision int64  `json:"revision"`
}

// TestReadAtRevision: GET ?revision=R answers the key as it was at R, and
// refuses what cannot be read at a revision.
func TestReadAtRevision(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 0
	mustServe(t, h, "PUT", "/key/k", `{"value":"one"}`, 200) // revision 1
	mustServe(t, h, "PUT", "/key/k", `{"value":"two"}`, 200) // 2
	mustServe(t, h, "DELETE", "/key/k", "", 200)             // 3
	mustServe(t, h, "PUT", "/key/k", `{"value":"new"}`, 200) // 4
	for _, tc := range []struct {
		target string
		code   int
		want   string
	}{
		{"/key/k?revision=1", 200, `{"key":"k","value":"one","version":1,"revision":1}`},
		{"/key/k?revision=2", 200, `{"key":"k","value":"two","version":2,"revision":2}`},
		{"/key/k?revision=3", 404, `{"detail":"Key not found"}`},
		{"/key/k?revision=4", 200, `{"key":"k","value":"new","version":1,"revision":4}`},
		{"/key/other?revision=2", 404, `{"detail":"Key not found"}`},
		{"/key/k?revision=5", 400, `{"detail":"revision 5 is in the future; the current revision is 4"}`},
		{"/key/k?revision=0", 422, `{"detail":"query parameter revision must be a positive integer, not \"0\""}`},
		{"/key/k?revision=x", 422, `{"detail":"query parameter revision must be a non-negative integer, not \"x\""}`},
		{"/key/k?revision=1&version=1", 422, `{"detail":"query parameters version and revision both choose the version to read: give one"}`},
		{"/key/k?revision=1&consistency=stale", 422,
			`{"detail":"consistency=stale cannot be combined with revision: a read at a revision is made once that revision is final on the range, as a linearizable read"}`},
	} {
		if got := mustServe(t, h, "GET", tc.target, "", tc.code); got != tc.want {
			t.Errorf("GET %s = %s, want %s", tc.target, got, tc.want)
		}
	}
}

// TestScanKeepsItsRevision: a scan's pages all read at the revision of its
// first page, carried by the continue token, whatever is written between
// them; a new scan reads at the current revision.
func TestScanKeepsItsRevision(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 0
	for i := range 6 {
		mustServe(t, h, "PUT", fmt.Sprintf("/key/k%d", i), fmt.Sprintf(`{"value":"v%d"}`, i), 200)
	}
	page := func(target string) revPage {
		t.Helper()
		var p revPage
		if err := json.Unmarshal([]byte(mustServe(t, h, "GET", target, "", 200)), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := page("/keys?limit=2")
	if p.Revision != 6 || len(p.KVs) != 2 || !p.More {
		t.Fatalf("first page: %+v", p)
	}
	// Between the pages: a key added at the end, one deleted, one changed.
	mustServe(t, h, "PUT", "/key/k9", `{"value":"late"}`, 200)
	mustServe(t, h, "DELETE", "/key/k3", "", 200)
	mustServe(t, h, "PUT", "/key/k4", `{"value":"changed"}`, 200)
	var got []string
	for _, kv := range p.KVs {
		got = append(got, kv.Key+"="+kv.Value)
	}
	for p.More {
		p = page("/keys?limit=2&continue=" + url.QueryEscape(p.Continue))
		if p.Revision != 6 {
			t.Fatalf("a later page read at %d, not 6", p.Revision)
		}
		for _, kv := range p.KVs {
			got = append(got, kv.Key+"="+kv.Value)
		}
	}
	if want := "[k0=v0 k1=v1 k2=v2 k3=v3 k4=v4 k5=v5]"; fmt.Sprint(got) != want {
		t.Fatalf("scan at 6 across writes: %v, want %s", got, want)
	}
	if p := page("/keys"); p.Revision != 9 || len(p.KVs) != 6 {
		t.Fatalf("a new scan: %+v", p)
	}
	if p := page("/keys?revision=7"); p.Revision != 7 || len(p.KVs) != 7 {
		t.Fatalf("a scan at 7: %+v", p)
	}
	// The token's revision cannot be changed, nor read stale.
	first := page("/keys?limit=1&revision=6")
	for _, tc := range []struct{ target, want string }{
		{"/keys?revision=7&continue=" + url.QueryEscape(first.Continue), "the continue token reads at revision 6, not at the revision 7 asked for"},
		{"/keys?consistency=stale&continue=" + url.QueryEscape(first.Continue), "the continue token is of a scan at revision 6; consistency=stale cannot continue it"},
		{"/keys?consistency=stale&revision=6", "consistency=stale cannot be combined with revision: a read at a revision is made once that revision is final on each range, as a linearizable read"},
	} {
		rec := serveString(h, "GET", tc.target, "")
		if rec.Code != 422 || detail(t, rec) != tc.want {
			t.Errorf("GET %s = %d %s, want 422 %q", tc.target, rec.Code, rec.Body, tc.want)
		}
	}
	// A stale scan reads local state, at no one revision.
	if got := mustServe(t, h, "GET", "/keys?consistency=stale&prefix=k9", "", 200); got != `{"kvs":[{"key":"k9","value":"late","version":1,"revision":7}],"keys":["k9"],"count":1,"more":false}` {
		t.Fatalf("stale scan: %s", got)
	}
}

// TestCompactAPI: POST /compact {"revision":R} compacts; reads below R then
// answer 410 naming the oldest readable revision; bad bodies are refused.
func TestCompactAPI(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 0
	mustServe(t, h, "PUT", "/key/k", `{"value":"one"}`, 200)   // 1
	mustServe(t, h, "PUT", "/key/k", `{"value":"two"}`, 200)   // 2
	mustServe(t, h, "PUT", "/key/k", `{"value":"three"}`, 200) // 3
	if got := mustServe(t, h, "POST", "/compact", `{"revision":2}`, 200); got != `{"revision":2}` {
		t.Fatalf("POST /compact: %s", got)
	}
	gone := `{"detail":"revision 1 is compacted; the oldest readable is 2"}`
	if got := mustServe(t, h, "GET", "/key/k?revision=1", "", 410); got != gone {
		t.Fatalf("GET below the compaction: %s", got)
	}
	if got := mustServe(t, h, "GET", "/keys?revision=1", "", 410); got != gone {
		t.Fatalf("scan below the compaction: %s", got)
	}
	if got := mustServe(t, h, "GET", "/key/k?revision=2", "", 200); got != `{"key":"k","value":"two","version":2,"revision":2}` {
		t.Fatalf("GET at the compaction: %s", got)
	}
	if got := mustServe(t, h, "GET", "/key/k/versions", "", 200); got != `{"key":"k","versions":[2,3],"latest_version":3}` {
		t.Fatalf("versions after the compaction: %s", got)
	}
	for _, tc := range []struct {
		method, target, body string
		code                 int
		want                 string
	}{
		{"POST", "/compact", `{"revision":9}`, 400, "revision 9 is in the future; the current revision is 3"},
		{"POST", "/compact", `{"revision":0}`, 422, `"revision" must be a positive integer: the revision to compact to`},
		{"POST", "/compact", `{}`, 422, `"revision" must be a positive integer: the revision to compact to`},
		{"POST", "/compact", `{"revision":2,"physical":true}`, 422, `the body must be {"revision":R}, R the revision to compact to: json: unknown field "physical"`},
		{"POST", "/compact", `{"revision":"2"}`, 422, `the body must be {"revision":R}, R the revision to compact to: json: cannot unmarshal string into Go struct field .revision of type int64`},
		{"POST", "/compact?revision=2", `{"revision":2}`, 422, `unknown query parameter "revision"; POST /compact takes no query parameters`},
		{"GET", "/compact", "", 405, "Method Not Allowed"},
	} {
		rec := serveString(h, tc.method, tc.target, tc.body)
		if rec.Code != tc.code || detail(t, rec) != tc.want {
			t.Errorf("%s %s %s = %d %s, want %d %q", tc.method, tc.target, tc.body, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
}
