package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distkv/distkv/test/netproxy"
)

// startProxiedCluster starts n nodes whose every peer link passes through a
// fault-injecting proxy of the mesh.
func startProxiedCluster(t *testing.T, n int) (*testCluster, *netproxy.Mesh) {
	t.Helper()
	c := &testCluster{t: t, http: map[string]string{}, peer: map[string]string{}, dirs: map[string]string{},
		servers: map[string]*server{}}
	base := t.TempDir()
	var parts, real []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		c.names = append(c.names, name)
		c.http[name] = freePort(t)
		c.peer[name] = freePort(t)
		c.dirs[name] = filepath.Join(base, name)
		parts = append(parts, name+"="+c.peer[name])
		real = append(real, c.peer[name])
	}
	c.cluster = strings.Join(parts, ",")
	mesh, err := netproxy.NewMesh(real)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mesh.Close() })
	for i, name := range c.names {
		var over []string
		for j, other := range c.names {
			if i != j {
				over = append(over, other+"="+mesh.PeerAddr(i, j))
			}
		}
		args := []string{"server", "--id", name, "--data-dir", c.dirs[name], "--http", c.http[name],
			"--peer", c.peer[name], "--cluster", c.cluster, "--tick", testTick.String(),
			"--request-timeout", "1s", "--dial-override", strings.Join(over, ",")}
		c.servers[name] = launch(t, c.dirs[name], c.http[name], args)
	}
	for _, name := range c.names {
		c.servers[name].waitReady()
	}
	return c, mesh
}

// TestMinorityPartition isolates the leader: the minority side answers 503
// for writes and linearizable reads, the majority elects a leader and keeps
// working, and after healing the old leader has the majority's writes and
// none of the refused ones.
func TestMinorityPartition(t *testing.T) {
	c, mesh := startProxiedCluster(t, 3)
	leader := c.leader(10 * time.Second)
	li := int(leader[1] - '1')
	mesh.Isolate(li)
	var majority []string
	for _, n := range c.names {
		if n != leader {
			majority = append(majority, n)
		}
	}
	// The isolated node cannot commit or confirm leadership.
	// The 503 says why.
	if code, body := do(t, http.MethodPut, c.url(leader, "/key/minority"), `{"value":"x"}`); code != 503 || !strings.Contains(body, "quorum") {
		t.Fatalf("write on the minority side: %d %s, want 503 naming the missing quorum", code, body)
	}
	if code, body := do(t, http.MethodGet, c.url(leader, "/key/minority"), ""); code != 503 || !strings.Contains(body, "quorum") {
		t.Fatalf("linearizable read on the minority side: %d %s, want 503 naming the missing quorum", code, body)
	}
	newLeader := c.leader(10*time.Second, majority...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := do(t, http.MethodPut, c.url(majority[0], "/key/majority"), `{"value":"y"}`)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("majority (leader %s) cannot write: %d %s", newLeader, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A stale read on the minority side is served at once, from old state.
	if code, _ := do(t, http.MethodGet, c.url(leader, "/key/majority?consistency=stale"), ""); code != 404 {
		t.Fatalf("stale read on the isolated node: %d, want 404 (it has not seen the write)", code)
	}
	mesh.HealAll()
	deadline = time.Now().Add(15 * time.Second)
	for {
		code, body := do(t, http.MethodGet, c.url(leader, "/key/majority"), "")
		if code == 200 && strings.Contains(body, `"value":"y"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old leader did not catch up after healing: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := do(t, http.MethodGet, c.url(majority[1], "/key/minority"), ""); code != 404 {
		t.Fatalf("the write refused on the minority side appeared: %d %s", code, body)
	}
}
