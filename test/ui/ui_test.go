// Package ui drives headless Chromium against a `distkv dev` cluster and
// checks what the dashboard at /ui renders. It skips where neither chromium
// nor chromium-browser is on PATH (.ci/run installs Debian's chromium).
// DISTKV_UI_SCREENSHOT=1 also writes docs/dashboard.png from the page.
package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distkv/distkv/test/distkvbin"
	"github.com/distkv/distkv/test/testport"
)

// screenshotEnv asks TestDashboard to rewrite docs/dashboard.png.
const screenshotEnv = "DISTKV_UI_SCREENSHOT"

// TestDashboard starts a three-node `distkv dev` cluster, loads the
// leader's /ui in headless Chromium and checks that the rendered page names
// the three nodes and the leader.
func TestDashboard(t *testing.T) {
	browser := findChromium()
	if browser == "" {
		t.Skip("chromium (or chromium-browser) is not on PATH: the dashboard's browser test needs it (apt-get install chromium)")
	}
	bin, cleanup, err := distkvbin.Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)

	httpBase, err := testport.Range(3)
	if err != nil {
		t.Fatal(err)
	}
	peerBase, err := testport.Range(3)
	if err != nil {
		t.Fatal(err)
	}
	startDev(t, bin, httpBase, peerBase)
	url := func(i int, path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", httpBase+i, path) }

	st := waitLeader(t, url(0, "/cluster/status"))
	leaderURL := ""
	for _, m := range st.Members {
		if m.ID == st.Leader {
			leaderURL = "http://" + m.HTTP
		}
	}
	if leaderURL == "" {
		t.Fatalf("leader %s has no HTTP address in %+v", st.Leader, st)
	}
	// Some traffic for the rates.
	for i := range 20 {
		put(t, leaderURL+"/key/k"+strconv.Itoa(i), `{"value":"v"}`)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dom, err := chromium(ctx, browser, "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=5000", "--dump-dom", leaderURL+"/ui").Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	page := string(dom)
	for _, n := range []string{"n1", "n2", "n3"} {
		if !strings.Contains(page, `id="node-`+n+`"`) {
			t.Errorf("the page has no row for %s:\n%s", n, page)
		}
	}
	if want := `id="leader">` + st.Leader + `<`; !strings.Contains(page, want) {
		t.Errorf("the page does not name the leader %s (%s):\n%s", st.Leader, want, page)
	}
	if want := st.Leader + " (leader)"; !strings.Contains(page, want) {
		t.Errorf("the leader's row is not marked (%q):\n%s", want, page)
	}
	if want := `id="self">` + st.Leader + `<`; !strings.Contains(page, want) {
		t.Errorf("the page does not say it is as seen by %s:\n%s", st.Leader, page)
	}

	if os.Getenv(screenshotEnv) != "1" {
		return
	}
	_, here, _, _ := runtime.Caller(0)
	out := filepath.Join(filepath.Dir(here), "..", "..", "docs", "dashboard.png")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // writes and reads while the page samples its rates
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			doReq(http.MethodPut, leaderURL+"/key/s"+strconv.Itoa(i%50), `{"value":"v"}`)
			doReq(http.MethodGet, leaderURL+"/key/s"+strconv.Itoa(i%50), "")
		}
	}()
	err = chromium(ctx, browser, "--user-data-dir="+t.TempDir(), "--window-size=1200,800",
		"--virtual-time-budget=4000", "--hide-scrollbars", "--screenshot="+out, leaderURL+"/ui").Run()
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("chromium --screenshot: %v", err)
	}
	t.Logf("wrote %s", out)
}

// findChromium returns the browser's path, "" if there is none.
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromium runs the browser headless with args.
func chromium(ctx context.Context, path string, args ...string) *exec.Cmd {
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-dev-shm-usage"}
	cmd := exec.CommandContext(ctx, path, append(base, args...)...)
	cmd.Stderr = io.Discard
	return cmd
}

// command returns the command that runs the distkv binary with args; it is
// the only way this package runs it (TestOnlyCommandRunsDistkv), and it
// fails the test if args would have distkv use an address it does not name.
func command(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	if err := distkvbin.CheckArgs(args); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = distkvbin.Env()
	return cmd
}

func TestOnlyCommandRunsDistkv(t *testing.T) {
	calls, err := distkvbin.CommandCalls(".", "command", "chromium")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		t.Errorf("%s: exec.Command of something other than a string literal; run distkv with command(t, bin, args...)", c)
	}
}

// startDev runs `distkv dev` with three nodes until the test ends; its
// output goes to dev.log in a temporary directory, named if the test fails.
func startDev(t *testing.T, bin string, httpBase, peerBase int) {
	t.Helper()
	cmd := command(t, bin, "dev", "--nodes", "3", "--data-dir", t.TempDir(),
		"--http-port", strconv.Itoa(httpBase), "--peer-port", strconv.Itoa(peerBase), "--", "--tick", "20ms")
	logPath := filepath.Join(t.TempDir(), "dev.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			t.Errorf("distkv dev did not exit within 15s of SIGINT")
			cmd.Process.Kill()
			<-exited
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("distkv dev's output:\n%s", b)
		}
	})
}

type member struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
}

type status struct {
	ID      string   `json:"id"`
	Leader  string   `json:"leader"`
	Members []member `json:"members"`
}

// waitLeader polls url (a /cluster/status) until it names a leader and
// three members that published their HTTP addresses.
func waitLeader(t *testing.T, url string) status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, body := doReq(http.MethodGet, url, "")
		last = fmt.Sprintf("%d %s", code, body)
		var st status
		if code == http.StatusOK && json.Unmarshal([]byte(body), &st) == nil && st.Leader != "" && len(st.Members) == 3 {
			ok := true
			for _, m := range st.Members {
				ok = ok && m.HTTP != ""
			}
			if ok {
				return st
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no leader with three members at %s within 20s; last answer: %s", url, last)
	return status{}
}

func put(t *testing.T, url, body string) {
	t.Helper()
	if code, resp := doReq(http.MethodPut, url, body); code != http.StatusOK {
		t.Fatalf("PUT %s: %d %s", url, code, resp)
	}
}

// doReq sends one request; code 0 when it could not be sent.
func doReq(method, url, body string) (int, string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
