package httpapi

import (
	"testing"
)

// The prototype's v1.5 session (versioned values), with distkv's answers:
// the same fields and values, plus revision where distkv adds it; versions
// other than the latest are not retained.
func TestPrototypeVersionedValues(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	f.rev = 0
	steps := []struct {
		method, target, body string
		code                 int
		want                 string
	}{
		{"PUT", "/key/config", `{"value": "initial-setting"}`, 200, `{"status":"ok","id":1,"key":"config","version":1}`},
		{"PUT", "/key/config", `{"value": "updated-setting"}`, 200, `{"status":"ok","id":2,"key":"config","version":2}`},
		{"GET", "/key/config", "", 200, `{"key":"config","value":"updated-setting","version":2,"revision":2}`},
		{"GET", "/key/config?version=2", "", 200, `{"key":"config","value":"updated-setting","version":2,"revision":2}`},
		{"GET", "/key/config?version=1", "", 404,
			`{"detail":"version 1 of key \"config\" is not retained; this node keeps the latest version only (version 2)"}`},
		{"GET", "/key/config?version=3", "", 404, `{"detail":"version 3 of key \"config\" does not exist; the key is at version 2"}`},
		{"GET", "/key/nope?version=1", "", 404, `{"detail":"Key not found"}`},
		{"PUT", "/key/config", `{"value": "conflict-value", "version": 1}`, 409,
			`{"detail":"condition failed: version is 1 but the key's version is 2","status":"error","message":"Version conflict: provided version 1 is outdated","current_version":2,"key":"config","version":2,"revision":2}`},
		{"GET", "/key/config", "", 200, `{"key":"config","value":"updated-setting","version":2,"revision":2}`},
		{"GET", "/key/config/history", "", 200, `{"key":"config","versions":[2],"history":[{"version":2,"value":"updated-setting"}]}`},
		{"GET", "/key/config/versions", "", 200, `{"key":"config","versions":[2],"latest_version":2}`},
		{"GET", "/key/config/versions?consistency=stale", "", 200, `{"key":"config","versions":[2],"latest_version":2}`},
		{"GET", "/key/nope/history", "", 404, `{"detail":"Key not found"}`},
		{"PUT", "/key/config", `{"value": "third", "version": 2}`, 200, `{"status":"ok","id":4,"key":"config","version":3}`},
		// A key that itself ends in /history: its last slash is encoded.
		{"PUT", "/key/config%2Fhistory", `{"value": "a key"}`, 200, `{"status":"ok","id":5,"key":"config/history","version":1}`},
		{"GET", "/key/config%2Fhistory", "", 200, `{"key":"config/history","value":"a key","version":1,"revision":5}`},
		{"GET", "/key/config%2Fhistory/versions", "", 200, `{"key":"config/history","versions":[1],"latest_version":1}`},
		{"GET", "/key/config/history", "", 200, `{"key":"config","versions":[3],"history":[{"version":3,"value":"third"}]}`},
		{"PUT", "/key/config/history", `{"value": "x"}`, 405, `{"detail":"Method Not Allowed"}`},
		{"DELETE", "/key/config/versions", "", 405, `{"detail":"Method Not Allowed"}`},
		{"GET", "/key//history", "", 400, `{"detail":"key must not be empty"}`},
	}
	for _, s := range steps {
		rec := serveString(h, s.method, s.target, s.body)
		if rec.Code != s.code || rec.Body.String() != s.want {
			t.Fatalf("%s %s %s = %d %s, want %d %s", s.method, s.target, s.body, rec.Code, rec.Body, s.code, s.want)
		}
		checkJSONHeaders(t, rec)
		if rec.Code == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", s.method, s.target, rec.Header().Get("Allow"))
		}
	}
	if rec := serveString(h, "HEAD", "/key/config/history", ""); rec.Code != 200 {
		t.Errorf("HEAD history = %d", rec.Code)
	}
}

// A PUT whose "version" is stale changes nothing: the value and version
// stay, and the answer names the current version.
func TestStaleVersionWritesNothing(t *testing.T) {
	h, f := newTestAPI(t, Config{})
	mustServe(t, h, "PUT", "/key/k", `{"value":"a"}`, 200)
	mustServe(t, h, "PUT", "/key/k", `{"value":"b"}`, 200)
	rec := serveString(h, "PUT", "/key/k", `{"value":"stale","version":1}`)
	if rec.Code != 409 || detail(t, rec) != "condition failed: version is 1 but the key's version is 2" {
		t.Fatalf("stale version: %d %s", rec.Code, rec.Body)
	}
	if kvp, _ := f.store.Get([]byte("k")); string(kvp.Value) != "b" || kvp.Version != 2 {
		t.Fatalf("after the conflict: %q at version %d", kvp.Value, kvp.Version)
	}
	rec = serveString(h, "PUT", "/key/k", `{"value":"c","typo":1}`)
	if rec.Code != 422 {
		t.Fatalf("unknown field: %d %s", rec.Code, rec.Body)
	}
	if kvp, _ := f.store.Get([]byte("k")); string(kvp.Value) != "b" || kvp.Version != 2 {
		t.Fatalf("after the unknown field: %q at version %d", kvp.Value, kvp.Version)
	}
}
