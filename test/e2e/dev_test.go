package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distkv/distkv/test/distkvbin"
	"github.com/distkv/distkv/test/testport"
)

// freePortRange finds n consecutive free ports.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	base, err := testport.Range(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// TestDev starts `distkv dev`, runs the prototype's walkthrough across its
// nodes, stops it with SIGINT and checks that no node process is left.
func TestDev(t *testing.T) {
	httpBase := freePortRange(t, 3)
	peerBase := freePortRange(t, 3)
	cmd := command(t, "dev", "--nodes", "3", "--data-dir", t.TempDir(),
		"--http-port", strconv.Itoa(httpBase), "--peer-port", strconv.Itoa(peerBase), "--", "--tick", "20ms")
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pids := map[string]int{}
	pidLine := regexp.MustCompile(`^(n\d)\s+pid (\d+)`)
	sc := bufio.NewScanner(out)
	var logLines []string
	for sc.Scan() {
		line := sc.Text()
		logLines = append(logLines, line)
		if m := pidLine.FindStringSubmatch(line); m != nil {
			pids[m[1]], _ = strconv.Atoi(m[2])
		}
		if strings.Contains(line, "nodes running") {
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if len(pids) != 3 {
		t.Fatalf("dev printed %d node pids:\n%s", len(pids), strings.Join(logLines, "\n"))
	}
	url := func(i int, path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", httpBase+i, path) }
	for i := 0; i < 3; i++ {
		waitHTTP(t, url(i, "/readyz"))
	}
	// Each node listens on its own two ports and on nothing else.
	for name, pid := range pids {
		if err := distkvbin.CheckProcess(pid); err != nil {
			t.Errorf("node %s: %v", name, err)
		}
	}
	if code, body := do(t, http.MethodPut, url(0, "/key/key6"), `{"value": "myvalue"}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	for _, i := range []int{1, 2} {
		if code, body := do(t, http.MethodGet, url(i, "/key/key6"), ""); code != 200 || !strings.Contains(body, `"value":"myvalue"`) {
			t.Fatalf("GET on node %d: %d %s", i+1, code, body)
		}
	}
	do(t, http.MethodDelete, url(0, "/key/key6"), "")
	if code, body := do(t, http.MethodGet, url(2, "/key/key6"), ""); code != 404 {
		t.Fatalf("GET after DELETE: %d %s", code, body)
	}

	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not exit within 30s of SIGINT")
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("node %s (pid %d) still running after dev exited", name, pid)
		}
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 20s", url)
}
