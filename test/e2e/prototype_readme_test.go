package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The curl examples of the prototype's README, from v1.0 to v1.6, each run
// with curl against a real three-node cluster, and each answer checked field
// by field: ids may differ, shapes, statuses and values may not. The
// prototype's leader on localhost:8000 is this cluster's leader, its
// followers on 8001 and 8002 the other two nodes. Where distkv answers
// otherwise by design, the test pins distkv's answer and says why:
//
//   - GET ?version=N of an older version, /history, /versions: a node keeps
//     the latest version of each key only (multi-version history is issue
//     20); an older version is a 404 that says so, never another's value.
//   - POST /compaction/run answers the prototype's fields and distkv's
//     snapshot_index and duration_seconds. POST /compaction/configure: 422,
//     there is nothing to configure (compaction happens every
//     --snapshot-entries entries, and on demand).

// answer is a decoded JSON answer with its status.
type answer struct {
	t    *testing.T
	what string
	code int
	body string
	obj  map[string]any
}

// curlJSON runs curl with args (the README's, with the host replaced) and
// decodes the JSON object it prints; the status comes from curl's -w.
func curlJSON(t *testing.T, what string, args ...string) *answer {
	t.Helper()
	out := curl(t, append([]string{"-w", "\n%{http_code}"}, args...)...)
	i := strings.LastIndexByte(out, '\n')
	a := &answer{t: t, what: what, body: out[:i]}
	fmt.Sscan(out[i+1:], &a.code)
	dec := json.NewDecoder(strings.NewReader(a.body))
	dec.UseNumber()
	if err := dec.Decode(&a.obj); err != nil {
		t.Fatalf("%s: answer %q is not a JSON object: %v", what, a.body, err)
	}
	t.Logf("%s: %d %s", what, a.code, a.body)
	return a
}

func (a *answer) status(code int) *answer {
	a.t.Helper()
	if a.code != code {
		a.t.Fatalf("%s: status %d, want %d: %s", a.what, a.code, code, a.body)
	}
	return a
}

// has checks that the answer's field name (a.b for nested objects) is want:
// a string, an int, a bool, nil (JSON null), or a kind: anyInt, anyNumber,
// anyString, anyBool, anyObject, anyArray. It returns the value.
func (a *answer) has(name string, want any) any {
	a.t.Helper()
	var v any = a.obj
	for _, part := range strings.Split(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			a.t.Fatalf("%s: %s: %q is not inside an object: %s", a.what, name, part, a.body)
		}
		if v, ok = m[part]; !ok {
			a.t.Fatalf("%s: no field %s: %s", a.what, name, a.body)
		}
	}
	ok := false
	switch w := want.(type) {
	case kind:
		switch w {
		case anyInt:
			n, isNum := v.(json.Number)
			_, err := n.Int64()
			ok = isNum && err == nil
		case anyNumber:
			_, ok = v.(json.Number)
		case anyString:
			_, ok = v.(string)
		case anyBool:
			_, ok = v.(bool)
		case anyObject:
			_, ok = v.(map[string]any)
		case anyArray:
			_, ok = v.([]any)
		}
	case int:
		ok = v == json.Number(fmt.Sprint(w))
	case string, bool, nil:
		ok = v == want
	default:
		ok = reflect.DeepEqual(v, want)
	}
	if !ok {
		a.t.Fatalf("%s: %s is %v (%T), want %v: %s", a.what, name, v, v, want, a.body)
	}
	return v
}

func (a *answer) int(name string) int64 {
	a.t.Helper()
	n, _ := a.has(name, anyInt).(json.Number).Int64()
	return n
}

type kind int

const (
	anyInt kind = iota
	anyNumber
	anyString
	anyBool
	anyObject
	anyArray
)

func TestPrototypeREADME(t *testing.T) {
	c := startCluster(t, 3, "--snapshot-entries", "20")
	leader := c.leader(10 * time.Second)
	host := map[string]string{"localhost:8000": c.http[leader]}
	port := 8001
	for _, n := range c.names {
		if n != leader {
			host[fmt.Sprintf("localhost:%d", port)] = c.http[n]
			port++
		}
	}
	// u is the README's URL on this cluster.
	u := func(readme string) string {
		for from, to := range host {
			readme = strings.Replace(readme, from, to, 1)
		}
		return readme
	}
	ctJSON := []string{"-H", "Content-Type: application/json"}

	// v1.0: set, get from the leader and the followers, delete.
	put := curlJSON(t, "v1.0 SET key6", append([]string{"-X", "PUT", u("http://localhost:8000/key/key6")}, append(ctJSON, "-d", `{"value": "myvalue"}`)...)...).status(200)
	put.has("status", "ok")
	putID := put.int("id")
	put.has("key", "key6") // v1.5 and later
	put.has("version", 1)
	for _, node := range []string{"8000", "8001", "8002"} {
		get := curlJSON(t, "v1.0 GET key6 from "+node, u("http://localhost:"+node+"/key/key6")).status(200)
		get.has("key", "key6")
		get.has("value", "myvalue")
	}
	del := curlJSON(t, "v1.0 DELETE key6", "-X", "DELETE", u("http://localhost:8000/key/key6")).status(200)
	del.has("status", "ok")
	if delID := del.int("id"); delID <= putID {
		t.Fatalf("DELETE id %d not after the SET's %d", delID, putID)
	}
	curlJSON(t, "v1.0 GET key6 after DELETE", u("http://localhost:8002/key/key6")).status(404).has("detail", "Key not found")

	// v1.2: segments.
	seg := curlJSON(t, "v1.2 segments", u("http://localhost:8000/segments")).status(200)
	segs := seg.has("segments", anyArray).([]any)
	if n := seg.int("total_segments"); n != int64(len(segs)) || n < 1 {
		t.Fatalf("total_segments %d for %d segments", n, len(segs))
	}
	seg.has("max_segment_size", anyInt)
	for i, s := range segs {
		m := s.(map[string]any)
		if _, ok := m["path"].(string); !ok {
			t.Fatalf("segment %d without a path: %s", i, seg.body)
		}
		if _, ok := m["size"].(json.Number); !ok {
			t.Fatalf("segment %d without a size: %s", i, seg.body)
		}
		if m["is_active"] != (i == len(segs)-1) {
			t.Fatalf("segment %d: is_active %v: %s", i, m["is_active"], seg.body)
		}
	}

	// v1.3: idempotent receiver.
	idem := append([]string{"-X", "PUT", u("http://localhost:8000/key/testkey?client_id=client1&request_id=req123")}, append(ctJSON, "-d", `{"value": "testvalue"}`)...)
	first := curlJSON(t, "v1.3 first", idem...).status(200)
	first.has("status", "ok")
	again := curlJSON(t, "v1.3 same request again", idem...).status(200)
	if again.body != first.body {
		t.Fatalf("the same request answered %s, then %s", first.body, again.body)
	}
	curlJSON(t, "v1.3 version after the repeat", u("http://localhost:8000/key/testkey")).status(200).has("version", 1)
	curlJSON(t, "v1.3 DELETE with the same ids", "-X", "DELETE", u("http://localhost:8000/key/testkey?client_id=client1&request_id=req123")).status(200).has("status", "ok")
	stats := curlJSON(t, "v1.3 deduplication stats", u("http://localhost:8000/deduplication_stats")).status(200)
	stats.has("service_name", leader)
	stats.has("current_cache_size", 2)
	stats.has("unique_request_ids", 1)
	stats.has("total_client_count", 1)
	stats.has("total_requests_cached", 2)
	stats.has("same_operation_duplicates", 1)
	stats.has("different_operation_duplicates", 1)
	if n := stats.int("total_duplicates_detected"); n < 1 {
		t.Fatalf("total_duplicates_detected %d", n)
	}
	stats.has("total_cache_cleanups", 0)

	// v1.4: cluster status from the leader and from a follower, once they
	// know every member's HTTP address (members publish theirs through the
	// cluster after they start).
	for _, n := range []string{leader, strings.TrimPrefix(u("http://localhost:8001"), "http://")} {
		c.waitHTTPAddrs(nameOf(c, n))
	}
	for _, node := range []string{"8000", "8001"} {
		cs := curlJSON(t, "v1.4 cluster status from "+node, u("http://localhost:"+node+"/cluster_status")).status(200)
		cs.has("leader.id", leader)
		cs.has("leader.url", "http://"+c.http[leader])
		cs.has("leader.status", "healthy")
		cs.has("heartbeat_interval", anyNumber)
		followers := cs.has("followers", anyObject).(map[string]any)
		if len(followers) != 2 {
			t.Fatalf("%d followers: %s", len(followers), cs.body)
		}
		for name, f := range followers {
			m := f.(map[string]any)
			if m["url"] != "http://"+c.http[name] {
				t.Fatalf("follower %s: url %v", name, m["url"])
			}
			// The leader knows every follower's health; a follower only
			// its own and its leader's.
			if st := m["status"]; st != "healthy" && !(node != "8000" && st == "unknown") {
				t.Fatalf("follower %s: status %v from %s", name, st, node)
			}
			if m["status"] == "healthy" {
				cs.has("followers."+name+".last_heartbeat", anyNumber)
				cs.has("followers."+name+".seconds_since_last_heartbeat", anyNumber)
			}
		}
	}

	// v1.5: versioned values.
	set := func(body string) *answer {
		return curlJSON(t, "v1.5 PUT config "+body, append([]string{"-X", "PUT", u("http://localhost:8000/key/config")}, append(ctJSON, "-d", body)...)...)
	}
	a := set(`{"value": "initial-setting"}`).status(200)
	a.has("status", "ok")
	a.int("id")
	a.has("key", "config")
	a.has("version", 1)
	a = set(`{"value": "updated-setting"}`).status(200)
	a.has("key", "config")
	a.has("version", 2)
	latest := curlJSON(t, "v1.5 GET config", u("http://localhost:8000/key/config")).status(200)
	latest.has("key", "config")
	latest.has("value", "updated-setting")
	latest.has("version", 2)
	old := curlJSON(t, "v1.5 GET config?version=1", u("http://localhost:8000/key/config?version=1")).status(200)
	old.has("key", "config")
	old.has("value", "initial-setting")
	old.has("version", 1)
	curlJSON(t, "v1.5 GET config?version=2", u("http://localhost:8000/key/config?version=2")).status(200).has("value", "updated-setting")
	conflict := set(`{"value": "conflict-value", "version": 1}`).status(409)
	conflict.has("status", "error")
	conflict.has("message", "Version conflict: provided version 1 is outdated")
	conflict.has("current_version", 2)
	curlJSON(t, "v1.5 GET config after the conflict", u("http://localhost:8000/key/config")).status(200).has("value", "updated-setting")
	hist := curlJSON(t, "v1.5 history", u("http://localhost:8000/key/config/history")).status(200)
	hist.has("key", "config")
	hist.has("versions", []any{json2(1), json2(2)})
	hist.has("history", []any{
		map[string]any{"version": json2(1), "value": "initial-setting"},
		map[string]any{"version": json2(2), "value": "updated-setting"},
	})
	vers := curlJSON(t, "v1.5 versions", u("http://localhost:8000/key/config/versions")).status(200)
	vers.has("key", "config")
	vers.has("versions", []any{json2(1), json2(2)})
	vers.has("latest_version", 2)

	// v1.6: compaction. Enough writes for snapshots (every 20 entries).
	for i := range 45 {
		if code, body := do(t, http.MethodPut, c.url(leader, fmt.Sprintf("/key/user%d", i%3)), fmt.Sprintf(`{"value":"v%d"}`, i)); code != 200 {
			t.Fatalf("write %d: %d %s", i, code, body)
		}
	}
	applied := curlJSON(t, "status before the compaction run", u("http://localhost:8000/cluster/status")).status(200).int("applied_index")
	crun := curlJSON(t, "v1.6 compaction run", "-X", "POST", u("http://localhost:8000/compaction/run")).status(200)
	crun.has("status", "success")
	crun.has("segments_compacted", anyInt)
	crun.has("entries_removed", anyInt)
	crun.has("duration_seconds", anyNumber)
	if idx := crun.int("snapshot_index"); idx < applied {
		t.Fatalf("the compaction's snapshot is at %d, before the %d entries applied when it was asked for", idx, applied)
	}
	// Run again with nothing new: nothing to do.
	crun2 := curlJSON(t, "v1.6 compaction run again", "-X", "POST", u("http://localhost:8000/compaction/run")).status(200)
	if crun2.int("snapshot_index") == crun.int("snapshot_index") {
		crun2.has("segments_compacted", 0)
		crun2.has("entries_removed", 0)
	}
	cst := curlJSON(t, "v1.6 compaction status", u("http://localhost:8000/compaction/status")).status(200)
	// The run is the newest compaction, told with every field.
	history := cst.has("compaction_history", anyArray).([]any)
	if len(history) == 0 {
		t.Fatalf("no compaction in the history after a run: %s", cst.body)
	}
	last := history[len(history)-1].(map[string]any)
	if last["snapshot_index"] != crun2.obj["snapshot_index"] || last["segments_compacted"] == nil || last["duration_seconds"] == nil || last["entries_removed"] == nil {
		t.Fatalf("the newest compaction is %v, want the run's (snapshot %v) with every field: %s", last, crun2.obj["snapshot_index"], cst.body)
	}
	cst.has("enabled", true)
	cst.has("compaction_interval_seconds", nil)
	cst.has("min_compaction_interval_seconds", nil)
	cst.has("compaction_running", anyBool)
	cst.has("last_compaction", anyString)
	for i, h := range cst.has("compaction_history", anyArray).([]any) {
		m := h.(map[string]any)
		if _, err := time.Parse("2006-01-02T15:04:05.000000", fmt.Sprint(m["timestamp"])); err != nil {
			t.Fatalf("compaction %d: timestamp %v: %v", i, m["timestamp"], err)
		}
		for _, f := range []string{"duration_seconds", "segments_compacted", "entries_removed"} {
			if _, ok := m[f]; !ok {
				t.Fatalf("compaction %d has no %s: %s", i, f, cst.body)
			}
		}
	}
	conf := curlJSON(t, "v1.6 compaction configure", "-X", "POST", u("http://localhost:8000/compaction/configure?enabled=true&interval=7200")).status(422)
	conf.has("detail", anyString)

	// Beyond the README: the names of GET /keys, which the prototype's
	// clients read.
	keys := curlJSON(t, "keys", u("http://localhost:8001/keys?prefix=user")).status(200)
	keys.has("keys", []any{"user0", "user1", "user2"})
	keys.has("count", 3)

	// v1.0: the WAL's writes in the prototype's format, from a node's log.
	if code := c.servers[leader].stop(); code != 0 {
		t.Fatalf("leader exited with %d", code)
	}
	out, err := run(t, "wal", "dump", c.dirs[leader])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`{"id": %d, "operation": "SET", "key": "key6", "value": "myvalue"}`, putID),
		fmt.Sprintf(`{"id": %d, "operation": "DELETE", "key": "key6", "value": null}`, del.int("id")),
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("wal dump has no line %s:\n%s", want, out)
		}
	}
}

// nameOf returns the name of the node whose name or HTTP address is n.
func nameOf(c *testCluster, n string) string {
	for name, addr := range c.http {
		if name == n || addr == n {
			return name
		}
	}
	return n
}

// waitHTTPAddrs waits until node name's status lists every member's HTTP
// address.
func (c *testCluster) waitHTTPAddrs(name string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := c.status(name)
		ok := err == nil && len(st.Members) == len(c.names)
		for _, m := range st.Members {
			ok = ok && m.HTTP == c.http[m.ID]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s's status never listed every HTTP address: %+v %v", name, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// json2 is n as a decoded JSON number.
func json2(n int) json.Number { return json.Number(fmt.Sprint(n)) }
