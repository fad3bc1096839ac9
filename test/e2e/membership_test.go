package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJoinPromoteRemove grows a cluster with `distkv server --join`, promotes
// the new learner with the CLI, removes an old member while writes go on, and
// checks the data on the new member.
func TestJoinPromoteRemove(t *testing.T) {
	c := startCluster(t, 3)
	c.leader(10 * time.Second)
	for i := 0; i < 100; i++ {
		if code, body := do(t, http.MethodPut, c.url("n1", fmt.Sprintf("/key/k%03d", i)), `{"value":"before"}`); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	name := "n4"
	c.names = append(c.names, name)
	c.http[name], c.peer[name], c.dirs[name] = freePort(t), freePort(t), filepath.Join(t.TempDir(), name)
	args := []string{"server", "--id", name, "--data-dir", c.dirs[name], "--http", c.http[name],
		"--peer", c.peer[name], "--join", "http://" + c.http["n2"], "--tick", testTick.String()}
	c.servers[name] = launch(t, c.dirs[name], c.http[name], args)
	c.servers[name].waitReady()

	out, err := run(t, "member", "list", "--endpoints", c.http["n1"])
	if err != nil || !strings.Contains(out, `"id": "n4"`) || !strings.Contains(out, `"role": "learner"`) {
		t.Fatalf("member list after join: %v\n%s", err, out)
	}
	if out, err := run(t, "member", "promote", name, "--endpoints", c.http["n3"]); err != nil {
		t.Fatalf("promote: %v %s", err, out)
	}
	if out, err := run(t, "member", "remove", "n1", "--endpoints", c.http["n2"]); err != nil {
		t.Fatalf("remove n1: %v %s", err, out)
	}
	// The removed member learns it and exits cleanly.
	select {
	case <-c.servers["n1"].exited:
		if code := c.servers["n1"].cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("removed n1 exited with %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removed n1 is still running after 10s")
	}
	// The cluster of n2, n3, n4 serves; n4 has all data, old and new.
	leader := c.leader(10*time.Second, "n2", "n3", "n4")
	if code, body := do(t, http.MethodPut, c.url("n4", "/key/after"), `{"value":"membership changes"}`); code != 200 {
		t.Fatalf("write through the new member (leader %s): %d %s", leader, code, body)
	}
	for i := 0; i < 100; i++ {
		if code, body := do(t, http.MethodGet, c.url("n4", fmt.Sprintf("/key/k%03d", i)), ""); code != 200 || !strings.Contains(body, `"before"`) {
			t.Fatalf("n4 k%03d: %d %s", i, code, body)
		}
	}
	st, err := c.status("n4")
	if err != nil || len(st.Members) != 3 {
		t.Fatalf("members after join+remove: %+v %v", st, err)
	}
	for _, m := range st.Members {
		if m.ID == "n1" {
			t.Fatalf("n1 still a member: %+v", st.Members)
		}
	}
}

// TestSnapshotCatchUp keeps a follower down until the leader has compacted its
// log far past the follower's position; on restart the follower must catch up
// from a snapshot streamed over the peer link.
func TestSnapshotCatchUp(t *testing.T) {
	c := startCluster(t, 3, "--snapshot-entries", "200", "--snapshot-catchup-entries", "50")
	leader := c.leader(10 * time.Second)
	var down string
	for _, n := range c.names {
		if n != leader {
			down = n
		}
	}
	c.servers[down].kill9()
	for i := 0; i < 2000; i++ {
		if code, body := do(t, http.MethodPut, c.url(leader, fmt.Sprintf("/key/k%04d", i)), fmt.Sprintf(`{"value":"v%d"}`, i)); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	s := c.launch(down)
	s.waitReady()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := do(t, http.MethodGet, c.url(down, "/key/k1999?consistency=stale"), "")
		if code == 200 && strings.Contains(body, `"v1999"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted follower did not catch up: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	log := readLog(t, s)
	if !strings.Contains(log, "installed snapshot from leader") {
		t.Fatalf("follower caught up without a snapshot; its log:\n%s", tail([]byte(log), 3000))
	}
	for i := 0; i < 2000; i += 97 {
		if code, body := do(t, http.MethodGet, c.url(down, fmt.Sprintf("/key/k%04d?consistency=stale", i)), ""); code != 200 || !strings.Contains(body, fmt.Sprintf(`"v%d"`, i)) {
			t.Fatalf("k%04d on the caught-up follower: %d %s", i, code, body)
		}
	}
}

// TestSIGTERMLeaderHandsOver stops the leader with SIGTERM: it must transfer
// leadership before it exits, so another member leads at once, without an
// election timeout of unavailability.
func TestSIGTERMLeaderHandsOver(t *testing.T) {
	c := startCluster(t, 3, "--election-ticks", "50") // a 1s election timeout
	leader := c.leader(10 * time.Second)
	start := time.Now()
	if code := c.servers[leader].stop(); code != 0 {
		t.Fatalf("leader exited with %d", code)
	}
	var rest []string
	for _, n := range c.names {
		if n != leader {
			rest = append(rest, n)
		}
	}
	newLeader := c.leader(10*time.Second, rest...)
	took := time.Since(start)
	t.Logf("%s handed leadership to %s; %v from SIGTERM to an agreed new leader", leader, newLeader, took)
	if !strings.Contains(readLog(t, c.servers[leader]), "leadership transferred before exit") {
		t.Fatalf("the leader did not report a transfer:\n%s", tail([]byte(readLog(t, c.servers[leader])), 2000))
	}
	if took > time.Second {
		t.Fatalf("new leader after %v: the handover should beat the 1s election timeout", took)
	}
}
