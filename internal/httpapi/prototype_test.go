package httpapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// The prototype's v1.5 session (versioned values), with distkv's answers:
// the same fields and values, plus revision where distkv adds it; the
// versions a key had are read back until compaction drops them.
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
		{"GET", "/key/config?version=1", "", 200, `{"key":"config","value":"initial-setting","version":1,"revision":1}`},
		{"GET", "/key/config?version=3", "", 404, `{"detail":"version 3 of key \"config\" does not exist; the key is at version 2"}`},
		{"GET", "/key/nope?version=1", "", 404, `{"detail":"Key not found"}`},
		{"PUT", "/key/config", `{"value": "conflict-value", "version": 1}`, 409,
			`{"detail":"condition failed: version is 1 but the key's version is 2","status":"error","message":"Version conflict: provided version 1 is outdated","current_version":2,"key":"config","version":2,"revision":2}`},
		{"GET", "/key/config", "", 200, `{"key":"config","value":"updated-setting","version":2,"revision":2}`},
		{"GET", "/key/config/history", "", 200,
			`{"key":"config","versions":[1,2],"history":[{"version":1,"value":"initial-setting"},{"version":2,"value":"updated-setting"}]}`},
		{"GET", "/key/config/versions", "", 200, `{"key":"config","versions":[1,2],"latest_version":2}`},
		{"GET", "/key/config/versions?consistency=stale", "", 200, `{"key":"config","versions":[1,2],"latest_version":2}`},
		{"GET", "/key/nope/history", "", 404, `{"detail":"Key not found"}`},
		{"PUT", "/key/config", `{"value": "third", "version": 2}`, 200, `{"status":"ok","id":4,"key":"config","version":3}`},
		// A key that itself ends in /history: its last slash is encoded.
		{"PUT", "/key/config%2Fhistory", `{"value": "a key"}`, 200, `{"status":"ok","id":5,"key":"config/history","version":1}`},
		{"GET", "/key/config%2Fhistory", "", 200, `{"key":"config/history","value":"a key","version":1,"revision":5}`},
		{"GET", "/key/config%2Fhistory/versions", "", 200, `{"key":"config/history","versions":[1],"latest_version":1}`},
		{"GET", "/key/config/history", "", 200,
			`{"key":"config","versions":[1,2,3],"history":[{"version":1,"value":"initial-setting"},{"version":2,"value":"updated-setting"},{"version":3,"value":"third"}]}`},
		// Once compacted, older versions are gone; a delete ends the key's
		// versions, and a new put starts them again at 1.
		{"POST", "/test/compact?revision=4", "", 200, ``},
		{"GET", "/key/config?version=1", "", 404,
			`{"detail":"version 1 of key \"config\" is not retained (compacted, or written before the key was last deleted); versions 3 to 3 are"}`},
		{"GET", "/key/config/versions", "", 200, `{"key":"config","versions":[3],"latest_version":3}`},
		{"DELETE", "/key/config", "", 200, `{"status":"ok","id":7}`},
		{"PUT", "/key/config", `{"value": "again"}`, 200, `{"status":"ok","id":8,"key":"config","version":1}`},
		{"GET", "/key/config/history", "", 200, `{"key":"config","versions":[1],"history":[{"version":1,"value":"again"}]}`},
		{"PUT", "/key/config/history", `{"value": "x"}`, 405, `{"detail":"Method Not Allowed"}`},
		{"DELETE", "/key/config/versions", "", 405, `{"detail":"Method Not Allowed"}`},
		{"GET", "/key//history", "", 400, `{"detail":"key must not be empty"}`},
	}
	for _, s := range steps {
		if s.target == "/test/compact?revision=4" {
			f.rev++
			if _, err := f.store.Apply(uint64(f.rev), kv.Command{Op: kv.OpCompact, Revision: 4}); err != nil {
				t.Fatal(err)
			}
			continue
		}
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

// The prototype's `value: Any`: a value of any JSON type is stored and every
// read answers the same JSON value, not a string of it; a string stays a
// string. Numbers keep their text.
func TestAnyJSONValue(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	for _, tc := range []struct {
		key, sent, stored string
	}{
		{"int", `12`, `12`},
		{"float", `1.5`, `1.5`},
		{"true", `true`, `true`},
		{"null", `null`, `null`},
		{"object", `{"a":[1,2]}`, `{"a":[1,2]}`},
		{"string", `"12"`, `"12"`},
		{"exp", `1e3`, `1e3`},
		{"trailing-zero", `1.50`, `1.50`},
		{"big-int", `123456789012345678901234567890`, `123456789012345678901234567890`},
		{"negative-zero", `-0`, `-0`},
		{"spaced", ` { "a" : [ 1 , 2 ] , "b" : { } } `, `{"a":[1,2],"b":{}}`},
		{"nested-strings", `["\u00e9\n", {"\u0041": "\ud800"}]`, `["é\n",{"A":"�"}]`},
		{"repeated-names", `{"a":1,"a":2}`, `{"a":1,"a":2}`},
		{"empty-array", `[]`, `[]`},
	} {
		rec := serveString(h, "PUT", "/key/"+tc.key, `{"value": `+tc.sent+`}`)
		if rec.Code != 200 {
			t.Fatalf("PUT %s: %d %s", tc.sent, rec.Code, rec.Body)
		}
		rec = serveString(h, "GET", "/key/"+tc.key, "")
		want := `{"key":"` + tc.key + `","value":` + tc.stored + `,"version":1,"revision":`
		if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), want) {
			t.Errorf("GET after PUT %s = %d %s, want %s...", tc.sent, rec.Code, rec.Body, want)
		}
		for _, path := range []string{"/key/" + tc.key + "/history", "/keys?prefix=" + tc.key + "&limit=1"} {
			if rec := serveString(h, "GET", path, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"value":`+tc.stored+`,`) &&
				!strings.Contains(rec.Body.String(), `"value":`+tc.stored+`}`) {
				t.Errorf("GET %s after PUT %s = %d %s", path, tc.sent, rec.Code, rec.Body)
			}
		}
	}
	// A transaction puts and gets JSON values too.
	rec := serveString(h, "POST", "/txn", `{"success":[{"put":{"key":"t","value":{"n":1.0}}},{"get":{"key":"t"}},{"get":{"key":"string"}}]}`)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `{"get":{"key":"t","value":{"n":1.0},"version":1,`) ||
		!strings.Contains(rec.Body.String(), `{"get":{"key":"string","value":"12","version":1,`) {
		t.Errorf("txn with JSON values: %d %s", rec.Code, rec.Body)
	}
	// A value compare with a string operand never equals a JSON value.
	rec = serveString(h, "POST", "/txn", `{"compare":[{"key":"int","target":"value","op":"==","value":"12"}]}`)
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"succeeded":false`) {
		t.Errorf("compare of the number 12 with the string \"12\": %d %s", rec.Code, rec.Body)
	}
	rec = serveString(h, "POST", "/txn", `{"compare":[{"key":"string","target":"value","op":"==","value":"12"}]}`)
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"succeeded":true`) {
		t.Errorf("compare of the string \"12\": %d %s", rec.Code, rec.Body)
	}
}

// The limit on values applies to the stored (compact) text of a JSON value.
func TestJSONValueLimit(t *testing.T) {
	h, _ := newTestAPI(t, Config{MaxValueSize: 10})
	if rec := serveString(h, "PUT", "/key/k", `{"value": [ 1 , 2 , 3 , 4 ] }`); rec.Code != 200 {
		t.Fatalf("[1,2,3,4] (9 bytes compact): %d %s", rec.Code, rec.Body)
	}
	rec := serveString(h, "PUT", "/key/k", `{"value":[1,2,3,4,5]}`)
	if rec.Code != 413 || detail(t, rec) != "value is 11 bytes; the limit is 10 bytes" {
		t.Fatalf("[1,2,3,4,5]: %d %s", rec.Code, rec.Body)
	}
}

// The prototype's v1.4 cluster status, from the Raft view: the leader, the
// followers with their health and last contact, the heartbeat interval.
func TestPrototypeClusterStatus(t *testing.T) {
	h, f := newTestAPI(t, Config{HeartbeatInterval: 100 * time.Millisecond})
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	h.(*handler).now = func() time.Time { return now }
	yes, no := true, false
	f.status = Status{ID: "n2", Leader: "n1", Term: 3, Members: []Member{
		{ID: "n1", HTTP: "10.0.0.1:8000", Role: "voter", Reachable: &yes, LastContact: now.Add(-250 * time.Millisecond).Format(time.RFC3339Nano)},
		{ID: "n2", HTTP: "10.0.0.2:8000", Role: "voter", Reachable: &yes, LastContact: now.Format(time.RFC3339Nano)},
		{ID: "n3", HTTP: "10.0.0.3:8000", Role: "learner", Reachable: &no, LastContact: now.Add(-42700 * time.Millisecond).Format(time.RFC3339Nano)},
		{ID: "n4", HTTP: "10.0.0.4:8000", Role: "voter"},
	}}
	got := mustServe(t, h, "GET", "/cluster_status", "", 200)
	want := `{"leader":{"id":"n1","url":"http://10.0.0.1:8000","status":"healthy"},"followers":{` +
		`"n2":{"url":"http://10.0.0.2:8000","status":"healthy","last_heartbeat":1796637600,"seconds_since_last_heartbeat":0,"role":"voter"},` +
		`"n3":{"url":"http://10.0.0.3:8000","status":"down","last_heartbeat":1796637557.3,"seconds_since_last_heartbeat":42.7,"role":"learner"},` +
		`"n4":{"url":"http://10.0.0.4:8000","status":"unknown","last_heartbeat":null,"seconds_since_last_heartbeat":null,"role":"voter"}},` +
		`"heartbeat_interval":0.1,"id":"n2","term":3}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	f.status = Status{ID: "n1"}
	if got := mustServe(t, h, "GET", "/cluster_status", "", 200); !strings.HasPrefix(got, `{"leader":null,"followers":{},`) {
		t.Fatalf("without a leader: %s", got)
	}
}

// The prototype's segments (v1.2) and compaction (v1.6) endpoints, from the
// files of the data directory.
func TestPrototypeSegmentsAndCompaction(t *testing.T) {
	h, _ := newTestAPI(t, Config{DataDir: "data/n1", WALSegmentSize: 1 << 20, SnapshotEntries: 100})
	at := time.Date(2023, 8, 25, 14, 30, 45, 123456000, time.UTC)
	h.(*handler).dataFS = fstest.MapFS{
		"wal/0000000000000003.wal":                        {Data: make([]byte, 1<<20)},
		"wal/0000000000000004.wal":                        {Data: make([]byte, 325420)},
		"wal/0000000000000005.wal.tmp":                    {Data: []byte("x")},
		"wal/notes.txt":                                   {Data: []byte("x")},
		"snap/0000000000000001-00000000000000c8.snap":     {Data: []byte("s"), ModTime: at},
		"snap/0000000000000001-0000000000000064.snap":     {Data: []byte("s"), ModTime: at.Add(-time.Hour)},
		"snap/0000000000000001-000000000000012c.snap.tmp": {Data: []byte("s")},
	}
	got := mustServe(t, h, "GET", "/segments", "", 200)
	want := `{"segments":[{"path":"data/n1/wal/0000000000000003.wal","size":1048576,"is_active":false},` +
		`{"path":"data/n1/wal/0000000000000004.wal","size":325420,"is_active":true}],"total_segments":2,"max_segment_size":1048576,"total_size":1373996}`
	if got != want {
		t.Fatalf("segments:\n got %s\nwant %s", got, want)
	}
	got = mustServe(t, h, "GET", "/compaction/status", "", 200)
	want = `{"enabled":true,"compaction_interval_seconds":null,"min_compaction_interval_seconds":null,"snapshot_entries":100,` +
		`"last_compaction":"2023-08-25T14:30:45.123456","compaction_running":true,"compaction_history":[` +
		`{"timestamp":"2023-08-25T13:30:45.123456","snapshot_index":100,"entries_removed":null,"duration_seconds":null,"segments_compacted":null},` +
		`{"timestamp":"2023-08-25T14:30:45.123456","snapshot_index":200,"entries_removed":100,"duration_seconds":null,"segments_compacted":null}]}`
	if got != want {
		t.Fatalf("compaction status:\n got %s\nwant %s", got, want)
	}
	rec := serveString(h, "POST", "/compaction/run", "")
	if rec.Code != 501 || !strings.Contains(detail(t, rec), "every 100 applied entries (--snapshot-entries)") {
		t.Fatalf("compaction run: %d %s", rec.Code, rec.Body)
	}
	rec = serveString(h, "POST", "/compaction/configure?enabled=true&interval=7200", "")
	if rec.Code != 422 || !strings.Contains(detail(t, rec), "it has no interval and cannot be switched off") {
		t.Fatalf("compaction configure: %d %s", rec.Code, rec.Body)
	}
	if rec := serveString(h, "GET", "/compaction/run", ""); rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
		t.Fatalf("GET /compaction/run: %d", rec.Code)
	}
	// Without a data directory the file endpoints say so.
	h2, _ := newTestAPI(t, Config{})
	if rec := serveString(h2, "GET", "/segments", ""); rec.Code != 501 {
		t.Fatalf("segments without a data directory: %d %s", rec.Code, rec.Body)
	}
}

// POST /compaction/run on a backend that compacts on demand answers in the
// prototype's shape, plus the snapshot and the time it took; the status then
// tells every compaction the node remembers with all its fields, and the
// older snapshot files with what they tell.
func TestPrototypeCompactionRun(t *testing.T) {
	at := time.Date(2023, 8, 25, 14, 30, 45, 123456000, time.UTC)
	b := &compactingBackend{fakeBackend: newFake()}
	h, err := New(Config{DataDir: "data/n1", SnapshotEntries: 100}, b)
	if err != nil {
		t.Fatal(err)
	}
	h.(*handler).dataFS = fstest.MapFS{
		"snap/0000000000000001-0000000000000064.snap": {Data: []byte("s"), ModTime: at.Add(-time.Hour)},
		"snap/0000000000000001-00000000000000c8.snap": {Data: []byte("s"), ModTime: at.Add(-time.Minute)},
	}
	b.history = []Compaction{{Time: at.Add(-time.Minute), SnapshotIndex: 200, EntriesRemoved: 100, SegmentsRemoved: 1, Duration: 20 * time.Millisecond}}
	b.next = Compaction{Time: at, SnapshotIndex: 300, EntriesRemoved: 150, SegmentsRemoved: 2, Duration: 750 * time.Millisecond}
	got := mustServe(t, h, "POST", "/compaction/run", "", 200)
	if want := `{"status":"success","segments_compacted":2,"entries_removed":150,"snapshot_index":300,"duration_seconds":0.75}`; got != want {
		t.Fatalf("compaction run:\n got %s\nwant %s", got, want)
	}
	// The snapshot at 300 was purged meanwhile (not in the files); the one
	// at 100 predates what the node remembers.
	got = mustServe(t, h, "GET", "/compaction/status", "", 200)
	want := `{"enabled":true,"compaction_interval_seconds":null,"min_compaction_interval_seconds":null,"snapshot_entries":100,` +
		`"last_compaction":"2023-08-25T14:30:45.123456","compaction_running":false,"compaction_history":[` +
		`{"timestamp":"2023-08-25T13:30:45.123456","snapshot_index":100,"entries_removed":null,"duration_seconds":null,"segments_compacted":null},` +
		`{"timestamp":"2023-08-25T14:29:45.123456","snapshot_index":200,"entries_removed":100,"duration_seconds":0.02,"segments_compacted":1},` +
		`{"timestamp":"2023-08-25T14:30:45.123456","snapshot_index":300,"entries_removed":150,"duration_seconds":0.75,"segments_compacted":2}]}`
	if got != want {
		t.Fatalf("compaction status:\n got %s\nwant %s", got, want)
	}
	// Nothing new since the last snapshot: zeros.
	b.next = Compaction{SnapshotIndex: 300}
	if got := mustServe(t, h, "POST", "/compaction/run", "", 200); got != `{"status":"success","segments_compacted":0,"entries_removed":0,"snapshot_index":300,"duration_seconds":0}` {
		t.Fatalf("compaction run with nothing new: %s", got)
	}
	for _, tc := range []struct {
		err  error
		code int
		want string
	}{
		{diskFullErr{}, 507, "no space left on device: this node cannot write its log; writes resume when space is freed; a stale read (?consistency=stale) is still answered from local state"},
		{errors.New("snapshot at index 301 failed: disk on fire"), 503, "snapshot at index 301 failed: disk on fire"},
		{context.DeadlineExceeded, 503, "request timed out after 5s"},
	} {
		b.err = tc.err
		rec := serveString(h, "POST", "/compaction/run", "")
		if rec.Code != tc.code || detail(t, rec) != tc.want {
			t.Errorf("compaction run failing with %v = %d %s, want %d %q", tc.err, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
	if rec := serveString(h, "POST", "/compaction/run?now=1", ""); rec.Code != 422 {
		t.Errorf("compaction run with a query parameter: %d %s", rec.Code, rec.Body)
	}
}

// GET /keys carries the names alone in "keys", as the prototype's clients
// read them.
func TestScanKeys(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	mustServe(t, h, "PUT", "/key/b", `{"value":1}`, 200)
	mustServe(t, h, "PUT", "/key/a", `{"value":"x"}`, 200)
	got := mustServe(t, h, "GET", "/keys", "", 200)
	if !strings.Contains(got, `],"keys":["a","b"],"count":2,"more":false,"revision":12}`) {
		t.Fatalf("%s", got)
	}
	if got := mustServe(t, h, "GET", "/keys?prefix=zz", "", 200); got != `{"kvs":[],"keys":[],"count":0,"more":false,"revision":12}` {
		t.Fatalf("empty: %s", got)
	}
}
