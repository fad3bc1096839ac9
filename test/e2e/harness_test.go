// Package e2e runs real distkv processes and talks to them over sockets: the
// prototype's curl walkthrough, kill -9 durability, clean shutdown, and the WAL
// tools on a real data directory.
package e2e

import (
	"bytes"
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

	"github.com/distkv/distkv/test/distkvbin"
	"github.com/distkv/distkv/test/testport"
)

// binary is the distkv executable built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	bin, cleanup, err := distkvbin.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// server is one running distkv process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string
	addr    string // host:port of the HTTP API
	log     *os.File
	logPath string
	exited  chan struct{}
	args    []string
}

// freePort returns a loopback address for a server that is started later, in
// another process (see package testport for why not 127.0.0.1:0).
func freePort(t *testing.T) string {
	t.Helper()
	addr, err := testport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// command returns the command that runs the distkv binary with args; it is
// the only way the tests of this package run it (TestOnlyCommandRunsDistkv).
// It fails the test if args would have distkv listen on or talk to an
// address it does not name, such as the default ports of `distkv dev`, which
// may be running on the same machine (distkvbin.CheckArgs); and the process
// gets no DISTKV_ variable that sets a listen address.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if err := distkvbin.CheckArgs(args); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = distkvbin.Env()
	return cmd
}

// TestOnlyCommandRunsDistkv keeps command the one place that starts a
// process of the distkv binary, so that each gets its command line checked.
func TestOnlyCommandRunsDistkv(t *testing.T) {
	calls, err := distkvbin.CommandCalls(".", "command")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		t.Errorf("%s: exec.Command of something other than a string literal; run distkv with command(t, args...)", c)
	}
}

// startServer starts distkv server on dataDir and waits until it is ready.
func startServer(t *testing.T, dataDir, addr string, extra ...string) *server {
	t.Helper()
	args := append([]string{"server", "--id", "n1", "--data-dir", dataDir, "--http", addr,
		"--peer", freePort(t), "--tick", "20ms"}, extra...)
	s := launch(t, dataDir, addr, args)
	s.waitReady()
	return s
}

// launch starts distkv with args without waiting for it.
func launch(t *testing.T, dataDir, addr string, args []string) *server {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "server.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := command(t, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, dataDir: dataDir, addr: addr, log: lf, logPath: logPath, exited: make(chan struct{}), args: args}
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("server log (%s):\n%s", addr, tail(b, 4000))
			// DISTKV_E2E_LOGS=dir keeps the whole logs of a failed test.
			if dir := os.Getenv("DISTKV_E2E_LOGS"); dir != "" {
				os.WriteFile(filepath.Join(dir, strings.ReplaceAll(addr, ":", "_")+".log"), b, 0o644)
			}
		}
	})
	return s
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (s *server) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			s.t.Fatalf("server exited during start: %v", s.cmd.ProcessState)
		default:
		}
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if err := distkvbin.CheckProcess(s.cmd.Process.Pid); err != nil {
					s.t.Fatal(err)
				}
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("server on %s not ready after 15s: %s", s.addr, last)
}

func (s *server) kill9() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatal(err)
	}
	<-s.exited
}

// stop sends SIGTERM and returns the exit code.
func (s *server) stop() int {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.t.Fatal("server did not exit within 20s of SIGTERM")
	}
	return s.cmd.ProcessState.ExitCode()
}

// do sends one request and returns status and body.
func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// run runs the distkv binary with args and returns its stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := command(t, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// readLog returns what the server has logged so far.
func readLog(t *testing.T, s *server) string {
	t.Helper()
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
