package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPrototypeRetryAfterLeaderKilled sends a write with request ids to the
// leader, kills the leader, and sends the same write again to another node:
// the answer is the same, the key was written once (version 1), and the log
// of every survivor holds one entry of the write (the retry, which found the
// request's record, took none).
func TestPrototypeRetryAfterLeaderKilled(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.leader(10 * time.Second)
	const path = "/key/config?client_id=client1&request_id=req-failover"
	body := `{"value": {"setting": "initial", "n": 12}}`
	code, first := do(t, http.MethodPut, c.url(leader, path), body)
	if code != 200 || !strings.HasPrefix(first, `{"status":"ok","id":`) || !strings.HasSuffix(first, `,"key":"config","version":1}`) {
		t.Fatalf("PUT to the leader %s: %d %s", leader, code, first)
	}
	var survivors []string
	for _, n := range c.names {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	c.servers[leader].kill9()
	newLeader := c.leader(10*time.Second, survivors...)
	for _, n := range survivors {
		code, again := do(t, http.MethodPut, c.url(n, path), body)
		if code != 200 || again != first {
			t.Fatalf("retry through %s (leader now %s): %d %s, want the first answer %s", n, newLeader, code, again, first)
		}
	}
	for _, n := range survivors {
		code, got := do(t, http.MethodGet, c.url(n, "/key/config"), "")
		if code != 200 || !strings.HasPrefix(got, `{"key":"config","value":{"setting":"initial","n":12},"version":1,`) {
			t.Fatalf("GET on %s: %d %s", n, code, got)
		}
		code, st := do(t, http.MethodGet, c.url(n, "/request_status?client_id=client1&request_id=req-failover"), "")
		if code != 200 || !strings.HasPrefix(st, `{"processed":true,"operation":"SET","status_code":200,`) || !strings.HasSuffix(st, `"result":`+first+`}`) {
			t.Fatalf("request status on %s: %d %s", n, code, st)
		}
	}
	for _, n := range survivors {
		if code := c.servers[n].stop(); code != 0 {
			t.Fatalf("%s exited with %d", n, code)
		}
		out, err := run(t, "wal", "dump", c.dirs[n])
		if err != nil {
			t.Fatal(err)
		}
		var writes []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, `"key": "config"`) {
				writes = append(writes, line)
			}
		}
		want := fmt.Sprintf(`{"id": %s, "operation": "SET", "key": "config", "value": {"setting":"initial","n":12}, "client_id": "client1", "request_id": "req-failover"}`,
			strings.TrimSuffix(strings.TrimPrefix(first, `{"status":"ok","id":`), `,"key":"config","version":1}`))
		if len(writes) != 1 || writes[0] != want {
			t.Fatalf("%s's log holds %d entries of the write: %q, want one: %s", n, len(writes), writes, want)
		}
	}
}

// TestCLIWritesCarryRequestIDs: the CLI's writes name their requests, so
// that its retries are safe; --json writes a JSON value.
func TestCLIWritesCarryRequestIDs(t *testing.T) {
	addr := freePort(t)
	s := startServer(t, t.TempDir(), addr)
	out, err := run(t, "put", "n", "12", "--json", "--endpoints", addr)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(out), `,"key":"n","version":1}`) {
		t.Fatalf("put --json: %q %v", out, err)
	}
	if out, err := run(t, "get", "n", "--endpoints", addr); err != nil || !strings.HasPrefix(out, `{"key":"n","value":12,"version":1,`) {
		t.Fatalf("get: %q %v", out, err)
	}
	if out, err := run(t, "del", "n", "--endpoints", addr); err != nil || !strings.HasPrefix(out, `{"status":"ok","id":`) {
		t.Fatalf("del: %q %v", out, err)
	}
	s.stop()
	dump, err := run(t, "wal", "dump", s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(dump), "\n")
	if len(lines) != 2 {
		t.Fatalf("wal dump:\n%s", dump)
	}
	for _, l := range lines {
		if !strings.Contains(l, `"client_id": "distkv-cli-`) || !strings.Contains(l, `"request_id": "`) {
			t.Errorf("a CLI write without request ids: %s", l)
		}
	}
	if !strings.Contains(lines[0], `"value": 12,`) {
		t.Errorf("the JSON value in the dump: %s", lines[0])
	}
}
