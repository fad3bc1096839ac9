package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/distkv/distkv/internal/kv"
)

// refPut decodes a PUT body the slow, obvious way with encoding/json: it is
// the oracle the hand-written decoder is fuzzed against.
type refPut struct {
	ok         bool   // an object with a "value" and no unknown field
	value      []byte // a string value's bytes
	json       []byte // the raw text of any other value
	depth      int    // of json: arrays and objects within one another
	hasConds   bool   // any condition field that is not null
	condsValid bool   // every condition field well-typed
	ttl        int64  // the "ttl" field, 0 if absent or null
}

func refDecodePut(body []byte) refPut {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return refPut{}
	}
	var r refPut
	for name := range obj {
		switch name {
		case "value", "version", "prev_version", "prev_revision", "create_only", "ttl":
		default:
			return r
		}
	}
	raw, ok := obj["value"]
	if !ok {
		return r
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return r
		}
		r.value = []byte(s)
	} else {
		r.json, r.depth = raw, jsonDepth(raw)
	}
	r.ok, r.condsValid = true, true
	if raw, ok := obj["ttl"]; ok && string(raw) != "null" {
		var n int64
		if json.Unmarshal(raw, &n) != nil || n < 1 || n > MaxTTL {
			r.condsValid = false
		}
		r.ttl = n
	}
	for _, name := range []string{"version", "prev_version", "prev_revision", "create_only"} {
		raw, ok := obj[name]
		if !ok || string(raw) == "null" {
			continue
		}
		r.hasConds = true
		var err error
		if name == "create_only" {
			var b bool
			err = json.Unmarshal(raw, &b)
		} else {
			var n int64
			err = json.Unmarshal(raw, &n)
			if err == nil && n < 0 {
				r.condsValid = false
			}
		}
		if err != nil {
			r.condsValid = false
		}
	}
	return r
}

// jsonDepth returns how deep arrays and objects nest in the valid JSON raw.
func jsonDepth(raw []byte) int {
	dec := json.NewDecoder(bytes.NewReader(raw))
	depth, most := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return most
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			most = max(most, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}

// sameJSON reports whether a and b decode to the same value, numbers
// compared as their text.
func sameJSON(a, b []byte) bool {
	decode := func(b []byte) (any, bool) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return nil, false
		}
		return v, true
	}
	x, ok1 := decode(a)
	y, ok2 := decode(b)
	return ok1 && ok2 && reflect.DeepEqual(x, y)
}

// isCompact reports whether the valid JSON b has no whitespace between tokens.
func isCompact(b []byte) bool {
	var c bytes.Buffer
	return json.Compact(&c, b) == nil && bytes.Equal(c.Bytes(), b)
}

// FuzzCompactValue checks appendCompact, which turns a JSON value of a
// request into the text distkv stores, against encoding/json: the same value
// (numbers as the same text), compact, valid, stable when compacted again,
// and refused only beyond maxValueDepth.
func FuzzCompactValue(f *testing.F) {
	for _, seed := range []string{
		`12`, `1.5`, `1e3`, `-0.0E-7`, `true`, `null`, `{"a":[1,2]}`, ` [ 1 , { "b" : "c\"\u00e9" } ] `,
		`"str"`, `{"a":1,"a":2}`, "[\"\xff\"]", `{"\ud83d\ude00":"\ud800"}`, strings.Repeat("[", 64) + strings.Repeat("]", 64),
		strings.Repeat("[", 65) + strings.Repeat("]", 65), `123456789012345678901234567890`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		raw = bytes.TrimSpace(raw)
		if !json.Valid(raw) {
			return
		}
		got, deep := appendCompact(nil, raw)
		if deep != nil {
			if jsonDepth(raw) <= maxValueDepth {
				t.Fatalf("%q refused as too deep at depth %d", raw, jsonDepth(raw))
			}
			return
		}
		if jsonDepth(raw) > maxValueDepth {
			t.Fatalf("%q accepted at depth %d", raw, jsonDepth(raw))
		}
		if !json.Valid(got) || !isCompact(got) || !sameJSON(got, raw) {
			t.Fatalf("%q compacted to %q", raw, got)
		}
		if again, _ := appendCompact(nil, got); !bytes.Equal(again, got) {
			t.Fatalf("%q compacted to %q, then to %q", raw, got, again)
		}
	})
}

// checkResponse checks what every response must be: JSON with the right
// headers, an error carrying a detail.
func checkResponse(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var obj map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &obj); err != nil {
		t.Fatalf("response %q is not a JSON object: %v", rec.Body, err)
	}
	if rec.Code != http.StatusOK {
		if d, _ := obj["detail"].(string); d == "" {
			t.Fatalf("%d response %q has no detail", rec.Code, rec.Body)
		}
	}
	return obj
}

func FuzzPutBody(f *testing.F) {
	for _, seed := range []struct{ body, query string }{
		{`{"value": "myvalue"}`, ""},
		{`{"value":"a\u00e9\ud83d\ude00\ud800x\\\"\/\b\f\n\r\t"}`, ""},
		{`{"value":"v","prev_version":0,"create_only":true}`, "prev_revision=0"},
		{`{"value":"v","prev_version":1}`, "prev_version=2"},
		{`{"x":[{"value":1},"}"],"value":"v","value":"w"}`, "create_only=false"},
		{`{"\u0076alue":"v"}`, ""},
		{`[]`, ""},
		{`{"value":null}`, "a=%zz"},
		{"{\"value\":\"\xff\xfe\"}", ""},
		{`{"value":"v","version":1,"prev_version":1}`, ""},
		{`{"value":"v","version":2,"prev_version":1}`, ""},
		{`{"value":"v","unknown":2}`, ""},
		{`{"value": 12}`, ""},
		{`{"value": 1.50e+3}`, ""},
		{`{"value": [1, {"a": "\u00e9\ud800"}, null, true, false, -0]}`, ""},
		{`{"value": {"a": 1, "a": 2}}`, ""},
		{`{"value":"` + strings.Repeat("x", 65) + `"}`, ""},
		{`{"value":"v","ttl":30}`, ""},
		{`{"ttl":1.5,"value":"v"}`, ""},
		{`{"value":"v","ttl":0}`, ""},
		{`{"value":"v","ttl":null}`, ""},
	} {
		f.Add([]byte(seed.body), seed.query)
	}
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		const maxValue = 64
		h, fake := newTestAPI(t, Config{MaxValueSize: maxValue})
		req := httptest.NewRequest("PUT", "/key/k", bytes.NewReader(body))
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkResponse(t, rec)
		calls := fake.Calls()
		ref := refDecodePut(body)
		// The stored size of a JSON value is that of its compact form.
		size := len(ref.value)
		if ref.json != nil {
			c, _ := appendCompact(nil, ref.json)
			size = len(c)
		}
		switch rec.Code {
		case 200, 409:
			if !ref.ok || !ref.condsValid || size > maxValue || ref.depth > maxValueDepth {
				t.Fatalf("%d for body %q, which encoding/json rejects", rec.Code, body)
			}
			if len(calls) != 1 || string(calls[0].cmd.Key) != "k" {
				t.Fatalf("body %q: backend got %+v", body, calls)
			}
			got := calls[0].cmd
			switch {
			case ref.json == nil && (got.Kind != kv.KindString || !bytes.Equal(got.Value, ref.value)):
				t.Fatalf("body %q: backend got %v value %q, want the string %q", body, got.Kind, got.Value, ref.value)
			case ref.json != nil && (got.Kind != kv.KindJSON || !sameJSON(got.Value, ref.json) || !json.Valid(got.Value)):
				t.Fatalf("body %q: backend got %v value %q, want the JSON value %s", body, got.Kind, got.Value, ref.json)
			case ref.json != nil && !isCompact(got.Value):
				t.Fatalf("body %q: the JSON value %q is not compact", body, got.Value)
			case (ref.ttl > 0) != (got.Deadline > 0):
				t.Fatalf("body %q: ttl %d, yet the backend got deadline %d", body, ref.ttl, got.Deadline)
			}
		case 413, 422:
			if len(calls) != 0 {
				t.Fatalf("%d, yet the backend was called", rec.Code)
			}
			if ref.ok && ref.condsValid && !ref.hasConds && query == "" && size <= maxValue && ref.depth <= maxValueDepth {
				t.Fatalf("%d %s for the valid body %q", rec.Code, rec.Body, body)
			}
		default:
			t.Fatalf("status %d %s", rec.Code, rec.Body)
		}
	})
}

func FuzzKeyPath(f *testing.F) {
	for _, seed := range []string{
		"key6", "app/config/db", "a%2Fb", "..", "a/../b", "//", "a%20b", "a+b", "%E2%82%AC", "€",
		"%00%ff", "%25", "%zz", "", "a?create_only=true", "a#b", "%2e%2e/",
		"a/history", "a%2Fhistory", "/versions", "a/versions?consistency=stale",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		target := "/key/" + p
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 before any handler runs
		}
		h, fake := newTestAPI(t, Config{MaxKeySize: 64})
		do := func(method, body string) *httptest.ResponseRecorder {
			req := httptest.NewRequest(method, "/", strings.NewReader(body))
			req.URL, req.RequestURI = u, target
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			checkResponse(t, rec)
			return rec
		}
		rec := do("PUT", `{"value":"v"}`)
		calls := fake.Calls()
		switch rec.Code {
		case 200, 409: // 409: a condition in the query string
			if len(calls) != 1 || "/key/"+string(calls[0].cmd.Key) != u.Path {
				t.Fatalf("PUT %q (path %q): backend got %+v", target, u.Path, calls)
			}
			if rec.Code == 409 {
				return
			}
		case 405:
			// The version endpoints of a key take GET only.
			esc := escapedPath(u)
			if len(calls) != 0 || !strings.HasSuffix(esc, historySuffix) && !strings.HasSuffix(esc, versionsSuffix) {
				t.Fatalf("PUT %q: 405, backend calls %+v", target, calls)
			}
			return
		case 400, 404, 413, 422:
			if len(calls) != 0 {
				t.Fatalf("PUT %q: %d, yet the backend was called", target, rec.Code)
			}
			if rec.Code == 404 && strings.HasPrefix(escapedPath(u), "/key/") {
				t.Fatalf("PUT %q: 404 for a /key/ path", target)
			}
			if rec.Code == 400 && len(u.Path) > len("/key/") && strings.HasPrefix(escapedPath(u), "/key/") {
				t.Fatalf("PUT %q: 400 for the key %q", target, u.Path)
			}
			return
		default:
			t.Fatalf("PUT %q: status %d %s", target, rec.Code, rec.Body)
		}
		u.RawQuery = "" // the PUT's conditions are not parameters of a GET
		rec = do("GET", "")
		var got struct{ Key, Value string }
		if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
			t.Fatalf("GET %q = %d %s", target, rec.Code, rec.Body)
		}
		if want := validUTF8(string(calls[0].cmd.Key)); got.Key != want || got.Value != "v" {
			t.Fatalf("GET %q: key %q value %q, want key %q", target, got.Key, got.Value, want)
		}
	})
}

// FuzzJSONString checks the hand-written JSON string encoder and decoder
// against encoding/json.
func FuzzJSONString(f *testing.F) {
	for _, seed := range []string{
		"", "plain", `"\`, "\x00\x1f\x7f\b\f\n\r\t", "é€😀", "\xff", "a\xed\xa0\x80b", "\u2028<>&",
		`"\ud800"`, `"\ud800\udc00"`, `"\udc00\ud800"`, `"\ud83d\ude00\ud800\u0041"`, `"\u00e9\/"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		// Encoding: the output is valid JSON that decodes to what
		// encoding/json's own encoding decodes to.
		enc := appendString(nil, s)
		var got, want string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: invalid JSON: %v", s, enc, err)
		}
		ref, _ := json.Marshal(string(s))
		if err := json.Unmarshal(ref, &want); err != nil || got != want {
			t.Fatalf("appendString(%q) = %s decodes to %q; encoding/json gives %q", s, enc, got, want)
		}
		// Decoding: s itself as a JSON string token.
		if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && json.Valid(s) {
			var want string
			if err := json.Unmarshal(s, &want); err != nil {
				t.Fatal(err)
			}
			if got := unquote(s); string(got) != want {
				t.Fatalf("unquote(%s) = %q; encoding/json gives %q", s, got, want)
			}
		}
	})
}

func TestAppendStringPython(t *testing.T) {
	// As json.dumps(s, ensure_ascii=False) writes it.
	for _, tc := range []struct{ in, want string }{
		{"myvalue", `"myvalue"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\n\r\t\b\f\x00\x1f\x7f", `"\n\r\t\b\f\u0000\u001f` + "\x7f\""},
		{"é€😀<>&\u2028", `"é€😀<>&` + "\u2028\""},
		{"a\xffb", `"a\ufffdb"`},
	} {
		if got := string(appendString(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("appendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzScanQuery sends GET /keys with any query string: every answer is a
// JSON object with a known status, the backend is asked for a range only for
// a 200, and then for one within what the query allowed.
func FuzzScanQuery(f *testing.F) {
	for _, seed := range []string{
		"", "prefix=a", "prefix=a&limit=2", "start=a&end=b", "start=b&end=a", "limit=0", "limit=-1",
		"limit=10001", "limit=1e3", "limit=99999999999999999999", "continue=AWEA", "continue=!!",
		"continue=", "prefix=%FF%FF", "prefix=a&start=b&end=a", "consistency=stale", "consistency=bogus",
		"prefix=a&prefix=b", "limit=1&limit=2", "%zz", "prefix=%00", "start=a&continue=AXoA",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, q string) {
		target := "/keys?" + q
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http answers 400 before any handler runs
		}
		h, fake := newTestAPI(t, Config{MaxScanLimit: 100, DefaultScanLimit: 10})
		req := httptest.NewRequest("GET", "/", nil)
		req.URL, req.RequestURI = u, target
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		obj := checkResponse(t, rec)
		calls := fake.Calls()
		switch rec.Code {
		case 200:
			kvs, ok := obj["kvs"].([]any)
			if !ok || obj["count"] != float64(len(kvs)) {
				t.Fatalf("GET %q: 200 %s: want kvs and a matching count", target, rec.Body)
			}
			// A revision (unless the range is empty), then one range.
			if len(calls) > 2 {
				t.Fatalf("GET %q: %d backend calls", target, len(calls))
			}
			for _, c := range calls {
				if c.op == "revision" {
					continue
				}
				if c.op != "range" || c.limit < 1 || c.limit > 100 {
					t.Fatalf("GET %q: backend call %+v", target, c)
				}
				if c.end != nil && bytes.Compare(c.start, c.end) >= 0 {
					t.Fatalf("GET %q: backend asked for the empty range [%q, %q)", target, c.start, c.end)
				}
			}
		case 400, 422:
			if len(calls) != 0 {
				t.Fatalf("GET %q: %d, yet the backend was called: %+v", target, rec.Code, calls)
			}
		default:
			t.Fatalf("GET %q: status %d %s", target, rec.Code, rec.Body)
		}
	})
}
