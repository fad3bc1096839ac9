package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// prototypeValues are values of the prototype's `value: Any`, as sent in a
// PUT body and as every read must answer them.
var prototypeValues = []struct{ key, value string }{
	{"v/int", `12`},
	{"v/float", `1.5`},
	{"v/true", `true`},
	{"v/null", `null`},
	{"v/object", `{"a":[1,2]}`},
	{"v/string", `"12"`},
	{"v/exp", `1e3`},
}

// waitApplied waits until node name has applied at least index.
func (c *testCluster) waitApplied(name string, index uint64) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := c.status(name)
		if err == nil && st.Applied >= index {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not apply index %d: %+v %v", name, index, st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkValues reads every prototype value on node name from its local state
// (once it has applied what the leader, agreed on among live, had) and
// checks the exact JSON.
func (c *testCluster) checkValues(name, when string, live ...string) {
	c.t.Helper()
	leader := c.leader(10*time.Second, live...)
	lst, err := c.status(leader)
	if err != nil {
		c.t.Fatal(err)
	}
	c.waitApplied(name, lst.Applied)
	for _, v := range prototypeValues {
		code, body := do(c.t, http.MethodGet, c.url(name, "/key/"+v.key+"?consistency=stale"), "")
		want := fmt.Sprintf(`{"key":%q,"value":%s,"version":1,"revision":`, v.key, v.value)
		if code != 200 || !strings.HasPrefix(body, want) {
			c.t.Errorf("%s, %s: GET %s = %d %s, want %s...", when, name, v.key, code, body, want)
		}
	}
}

// TestPrototypeAnyValueSurvives writes values of every JSON type (and the
// string "12") and reads each back exactly as written: on every node, from a
// follower that caught up by installing the leader's snapshot, and on every
// node after a restart, which loads its own snapshot.
func TestPrototypeAnyValueSurvives(t *testing.T) {
	c := startCluster(t, 3, "--snapshot-entries", "20", "--snapshot-catchup-entries", "5")
	leader := c.leader(10 * time.Second)
	behind := c.names[0]
	if behind == leader {
		behind = c.names[1]
	}
	if code := c.servers[behind].stop(); code != 0 {
		t.Fatalf("%s exited with %d", behind, code)
	}
	for _, v := range prototypeValues {
		if code, body := do(t, http.MethodPut, c.url(leader, "/key/"+v.key), `{"value": `+v.value+`}`); code != 200 {
			t.Fatalf("PUT %s: %d %s", v.value, code, body)
		}
	}
	// Enough writes that the leader snapshots and drops the log the stopped
	// follower misses, so that it can catch up only from a snapshot.
	for i := range 60 {
		if code, body := do(t, http.MethodPut, c.url(leader, fmt.Sprintf("/key/filler/%02d", i)), `{"value":"x"}`); code != 200 {
			t.Fatalf("filler %d: %d %s", i, code, body)
		}
	}
	var live []string
	for _, n := range c.names {
		if n != behind {
			live = append(live, n)
		}
	}
	for _, n := range live {
		c.checkValues(n, "live", live...)
	}
	c.launch(behind).waitReady()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(readLog(t, c.servers[behind]), "installed snapshot from leader") {
		if time.Now().After(deadline) {
			t.Fatalf("%s never installed a snapshot from the leader:\n%s", behind, tail([]byte(readLog(t, c.servers[behind])), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.checkValues(behind, "from the leader's snapshot")

	for _, n := range c.names {
		if code := c.servers[n].stop(); code != 0 {
			t.Fatalf("%s exited with %d", n, code)
		}
	}
	for _, n := range c.names {
		c.launch(n)
	}
	for _, n := range c.names {
		c.servers[n].waitReady()
	}
	for _, n := range c.names {
		log := readLog(t, c.servers[n])
		if !strings.Contains(log, "recovered") || strings.Contains(log, "snapshot_index=0 ") {
			t.Errorf("%s did not recover from a snapshot of its own:\n%s", n, tail([]byte(log), 2000))
		}
		c.checkValues(n, "after a restart")
	}
}
