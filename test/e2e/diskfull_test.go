package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory and unmounts it
// at cleanup (after the servers registered later are killed). It skips the
// test where mounting is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("a real full disk needs a small tmpfs, and mounting one is not permitted here (needs root): mount: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillDisk writes a ballast file in dir until the file system is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", dir, err)
				}
				break
			}
		}
	}
	return path
}

// putResult is one PUT's status, body and duration.
type putResult struct {
	code int
	body string
	took time.Duration
	err  error
}

var diskFullClient = &http.Client{Timeout: 30 * time.Second}

func putValue(url, value string) putResult {
	body, _ := json.Marshal(map[string]string{"value": value})
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(string(body)))
	start := time.Now()
	resp, err := diskFullClient.Do(req)
	if err != nil {
		return putResult{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return putResult{code: resp.StatusCode, body: string(b), took: time.Since(start)}
}

func randomValue(t *testing.T, n int) string {
	b := make([]byte, n/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (s *server) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// TestDiskFullSingleNode fills the real file system under a node's data
// directory. Writes then fail with 507 and a clear message, promptly; reads
// still answer; the process keeps running. Once the ballast is removed, writes
// succeed again without a restart, and after kill -9 and a restart every
// acknowledged write is there and no refused one is.
func TestDiskFullSingleNode(t *testing.T) {
	disk := mountTmpfs(t, "64m")
	dataDir := filepath.Join(disk, "n1")
	addr := freePort(t)
	const requestTimeout = 3 * time.Second
	args := []string{"--request-timeout", requestTimeout.String(), "--wal-segment-size", "1MiB", "--snapshot-entries", "500"}
	s := startServer(t, dataDir, addr, args...)
	url := func(k string) string { return "http://" + addr + "/key/" + k }

	acked := map[string]string{}
	var unknown, refused []string
	for i := range 20 {
		k, v := fmt.Sprintf("before-%03d", i), randomValue(t, 16<<10)
		if r := putValue(url(k), v); r.code != 200 {
			t.Fatalf("PUT %s before the disk filled: %d %s %v", k, r.code, r.body, r.err)
		}
		acked[k] = v
	}

	ballast := fillDisk(t, disk)
	// The WAL keeps writing into space it reserved ahead; once that is used up
	// the next write finds the disk full. Every answer must come within the
	// request timeout; the one whose entry was being written when the disk
	// filled is an unknown outcome (503), all later ones are 507.
	var first507 putResult
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; first507.code == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no 507 within 60s of filling the disk (%d writes acknowledged)", len(acked))
		}
		k, v := fmt.Sprintf("filling-%04d", i), randomValue(t, 16<<10)
		r := putValue(url(k), v)
		if r.took > requestTimeout+2*time.Second {
			t.Fatalf("PUT %s on a filling disk took %v: %d %s %v", k, r.took, r.code, r.body, r.err)
		}
		switch r.code {
		case 200:
			acked[k] = v
		case 503:
			unknown = append(unknown, k)
			t.Logf("PUT %s: 503 after %v: %s", k, r.took.Round(time.Millisecond), r.body)
		case 507:
			first507 = r
			refused = append(refused, k)
		default:
			t.Fatalf("PUT %s on a filling disk: %d %s %v", k, r.code, r.body, r.err)
		}
	}
	t.Logf("first 507 after %d acknowledged writes, in %v: %s", len(acked), first507.took.Round(time.Millisecond), first507.body)
	if !strings.Contains(first507.body, "no space left on device") || !strings.Contains(first507.body, "resume when space is freed") {
		t.Errorf("507 body %s does not say the disk is full and that writes will resume", first507.body)
	}
	for i := range 10 {
		k := fmt.Sprintf("refused-%02d", i)
		r := putValue(url(k), "x")
		if r.code != 507 || r.took > 2*time.Second {
			t.Fatalf("PUT %s on a full disk: %d %s in %v, want 507 at once", k, r.code, r.body, r.took)
		}
		refused = append(refused, k)
	}
	// Reads still answer: linearizable (a single node needs no round trip)
	// and stale.
	for _, q := range []string{"", "?consistency=stale"} {
		code, body := do(t, http.MethodGet, url("before-007")+q, "")
		if code != 200 || !strings.Contains(body, acked["before-007"]) {
			t.Fatalf("GET before-007%s on a full disk: %d %.200s", q, code, body)
		}
	}
	code, body := do(t, http.MethodGet, "http://"+addr+"/readyz", "")
	if code != 503 || !strings.Contains(body, "no space left on device") {
		t.Errorf("/readyz on a full disk: %d %s, want 503 saying the disk is full", code, body)
	}
	if code, body := do(t, http.MethodGet, "http://"+addr+"/cluster/status", ""); code != 200 || !strings.Contains(body, `"disk_full":true`) {
		t.Errorf("/cluster/status on a full disk: %d %s, want disk_full true", code, body)
	}
	// Not a wait for a condition: the node retries the write every 100 ms,
	// doubling to 500 ms (no retry can be seen from outside), and must stay
	// up, logging the stall once, through several retries: 2 s holds five.
	select {
	case <-s.exited:
		t.Fatalf("server exited on a full disk: %v", s.cmd.ProcessState)
	case <-time.After(2 * time.Second):
	}
	if c := strings.Count(readLog(t, s), "disk full: the log cannot be written"); c != 1 {
		t.Errorf("the stall was logged %d times, want once", c)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	// Writes resume by themselves.
	deadline = time.Now().Add(15 * time.Second)
	for {
		r := putValue(url("after-000"), "resumed")
		if r.code == 200 {
			acked["after-000"] = "resumed"
			break
		}
		if r.code != 507 && r.code != 503 {
			t.Fatalf("PUT after freeing space: %d %s %v", r.code, r.body, r.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume within 15s of freeing space: %d %s", r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 1; i < 50; i++ {
		k, v := fmt.Sprintf("after-%03d", i), randomValue(t, 4<<10)
		if r := putValue(url(k), v); r.code != 200 {
			t.Fatalf("PUT %s after freeing space: %d %s %v", k, r.code, r.body, r.err)
		}
		acked[k] = v
	}
	if c := strings.Count(readLog(t, s), "writes resumed"); c != 1 {
		t.Errorf("the resume was logged %d times, want once", c)
	}

	s.kill9()
	s = startServer(t, dataDir, addr, args...)
	for k, v := range acked {
		code, body := do(t, http.MethodGet, url(k), "")
		if code != 200 || !strings.Contains(body, `"value":"`+v+`"`) {
			t.Fatalf("after kill -9 and restart, acknowledged %s: %d %.200s", k, code, body)
		}
	}
	for _, k := range refused {
		if code, body := do(t, http.MethodGet, url(k), ""); code != 404 {
			t.Fatalf("after restart, refused write %s is there: %d %.200s", k, code, body)
		}
	}
	t.Logf("%d acknowledged writes present after restart; %d refused with 507 absent; %d unknown outcomes", len(acked), len(refused), len(unknown))
}

// startClusterOnTmpfs starts three nodes, each with its data directory on a
// tmpfs of its own, and returns the cluster and each node's mount point.
func startClusterOnTmpfs(t *testing.T) (*testCluster, map[string]string) {
	t.Helper()
	c := &testCluster{t: t, http: map[string]string{}, peer: map[string]string{}, dirs: map[string]string{},
		servers: map[string]*server{}, extra: []string{"--request-timeout", "3s"}}
	disks := map[string]string{}
	var parts []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		disks[name] = mountTmpfs(t, "64m")
		c.names = append(c.names, name)
		c.http[name], c.peer[name] = freePort(t), freePort(t)
		c.dirs[name] = filepath.Join(disks[name], name)
		parts = append(parts, name+"="+c.peer[name])
	}
	c.cluster = strings.Join(parts, ",")
	for _, name := range c.names {
		c.launch(name)
	}
	for _, name := range c.names {
		c.servers[name].waitReady()
	}
	return c, disks
}

// TestDiskFullFollower fills the disk of one follower of a three-node
// cluster: the cluster keeps writing through the leader, the full follower
// answers writes with 507 and reports not ready, and once its ballast is
// removed it catches up and holds every acknowledged write.
func TestDiskFullFollower(t *testing.T) {
	c, disks := startClusterOnTmpfs(t)
	leader := c.leader(10 * time.Second)
	f := c.names[0]
	if f == leader {
		f = c.names[1]
	}
	acked := map[string]string{}
	write := func(prefix string, count, size int) {
		t.Helper()
		for i := range count {
			k, v := fmt.Sprintf("%s-%03d", prefix, i), randomValue(t, size)
			if r := putValue(c.url(leader, "/key/"+k), v); r.code != 200 {
				t.Fatalf("PUT %s to leader %s: %d %s %v", k, leader, r.code, r.body, r.err)
			}
			acked[k] = v
		}
	}
	write("before", 20, 1<<10)

	ballast := fillDisk(t, disks[f])
	// Enough to use up the space the follower's WAL reserved ahead.
	write("during", 200, 64<<10)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := do(t, http.MethodGet, c.url(f, "/readyz"), "")
		if code == 503 && strings.Contains(body, "no space left on device") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower %s with a full disk still says %d %s", f, code, body)
		}
		write(fmt.Sprintf("more-%d", time.Now().UnixNano()), 5, 64<<10)
	}
	r := putValue(c.url(f, "/key/refused"), "x")
	if r.code != 507 || r.took > 2*time.Second || !strings.Contains(r.body, "no space left on device") {
		t.Fatalf("PUT to the full follower: %d %s in %v, want 507 at once", r.code, r.body, r.took)
	}
	write("still", 20, 1<<10)
	if l := c.leader(5 * time.Second); l != leader {
		t.Fatalf("leadership moved from %s to %s because a follower's disk filled", leader, l)
	}
	if !c.servers[f].running() {
		t.Fatalf("follower %s exited on a full disk", f)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	c.servers[f].waitReady()
	if r := putValue(c.url(f, "/key/via-follower"), "y"); r.code != 200 {
		t.Fatalf("PUT via the freed follower: %d %s %v", r.code, r.body, r.err)
	}
	acked["via-follower"] = "y"
	checkEverywhere(t, c, acked)
	for _, n := range c.names {
		if code, body := do(t, http.MethodGet, c.url(n, "/key/refused?consistency=stale"), ""); code != 404 {
			t.Fatalf("%s: the write refused with 507 is there: %d %s", n, code, body)
		}
	}
}

// TestDiskFullLeader fills the leader's disk. The leader stops heartbeating
// (its log is stalled), the other two elect a new leader and go on taking
// writes; the old leader answers 507; once its ballast is removed it rejoins
// as a follower and holds every acknowledged write.
func TestDiskFullLeader(t *testing.T) {
	c, disks := startClusterOnTmpfs(t)
	old := c.leader(10 * time.Second)
	var others []string
	for _, n := range c.names {
		if n != old {
			others = append(others, n)
		}
	}
	acked := map[string]string{}
	var unknown []string
	for i := range 20 {
		k, v := fmt.Sprintf("before-%03d", i), randomValue(t, 1<<10)
		if r := putValue(c.url(old, "/key/"+k), v); r.code != 200 {
			t.Fatalf("PUT %s: %d %s %v", k, r.code, r.body, r.err)
		}
		acked[k] = v
	}

	ballast := fillDisk(t, disks[old])
	// Write through the leader until its reserved WAL space is used up.
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("leader %s never answered 507 after its disk filled", old)
		}
		k, v := fmt.Sprintf("filling-%04d", i), randomValue(t, 64<<10)
		r := putValue(c.url(old, "/key/"+k), v)
		if r.code == 507 {
			break
		}
		switch r.code {
		case 200:
			acked[k] = v
		case 503:
			unknown = append(unknown, k)
		default:
			t.Fatalf("PUT %s to the filling leader: %d %s %v", k, r.code, r.body, r.err)
		}
	}
	next := c.leader(15*time.Second, others...)
	t.Logf("leader %s's disk is full; %s leads now", old, next)
	for i := range 30 {
		k, v := fmt.Sprintf("during-%03d", i), randomValue(t, 1<<10)
		if r := putValue(c.url(next, "/key/"+k), v); r.code != 200 {
			t.Fatalf("PUT %s to the new leader %s: %d %s %v", k, next, r.code, r.body, r.err)
		}
		acked[k] = v
	}
	if r := putValue(c.url(old, "/key/refused"), "x"); r.code != 507 || r.took > 2*time.Second {
		t.Fatalf("PUT to the old leader with a full disk: %d %s in %v, want 507 at once", r.code, r.body, r.took)
	}
	if !c.servers[old].running() {
		t.Fatalf("old leader %s exited on a full disk", old)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	c.servers[old].waitReady()
	if r := putValue(c.url(old, "/key/via-old-leader"), "y"); r.code != 200 {
		t.Fatalf("PUT via the freed old leader: %d %s %v", r.code, r.body, r.err)
	}
	acked["via-old-leader"] = "y"
	checkEverywhere(t, c, acked)
	for _, n := range c.names {
		if code, body := do(t, http.MethodGet, c.url(n, "/key/refused?consistency=stale"), ""); code != 404 {
			t.Fatalf("%s: the write refused with 507 is there: %d %s", n, code, body)
		}
	}
	t.Logf("%d acknowledged writes on all nodes; %d unknown outcomes", len(acked), len(unknown))
}
