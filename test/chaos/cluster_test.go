package chaos

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distkv/distkv/test/distkvbin"
	"github.com/distkv/distkv/test/netproxy"
)

// binary is the distkv executable built once for the package.
var binary string

// chaosBin names a prebuilt binary to test instead of building one, so a
// deliberately broken build can be tried from a copy of the tree.
var chaosBin = flag.String("chaos.bin", "", "test this distkv binary instead of building ../../cmd/distkv")

func TestMain(m *testing.M) {
	flag.Parse()
	if *chaosBin != "" {
		binary = *chaosBin
		os.Exit(m.Run())
	}
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

// Raft timing of the cluster: 20ms ticks, elections after 10 ticks; requests
// give up after requestTimeout on the server and clientTimeout on the client.
const (
	tick           = 20 * time.Millisecond
	requestTimeout = time.Second
	clientTimeout  = 3 * time.Second
)

// node is one member, started and restarted with the same arguments. Its log
// is appended to across restarts.
type node struct {
	name    string
	http    string // host:port of the HTTP API
	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	down   bool // killed on purpose and not restarted yet
	paused bool
}

// cluster is three nodes whose peer links all pass through mesh.
type cluster struct {
	nodes []*node
	mesh  *netproxy.Mesh
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCluster starts n nodes with logs in logDir and waits until each is
// ready. Every process is killed when the test ends.
func startCluster(t *testing.T, n int, logDir string, seed int64) *cluster {
	t.Helper()
	var parts, real, httpAddrs []string
	for i := 0; i < n; i++ {
		real = append(real, freePort(t))
		httpAddrs = append(httpAddrs, freePort(t))
		parts = append(parts, fmt.Sprintf("n%d=%s", i+1, real[i]))
	}
	mesh, err := netproxy.NewMesh(real)
	if err != nil {
		t.Fatal(err)
	}
	mesh.SetSeed(seed)
	c := &cluster{mesh: mesh}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.killForGood()
		}
		mesh.Close()
	})
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("n%d", i+1)
		var over []string
		for j := 0; j < n; j++ {
			if j != i {
				over = append(over, fmt.Sprintf("n%d=%s", j+1, mesh.PeerAddr(i, j)))
			}
		}
		nd := &node{
			name:    name,
			http:    httpAddrs[i],
			logPath: filepath.Join(logDir, name+".log"),
			args: []string{"server", "--id", name, "--data-dir", filepath.Join(logDir, "data", name),
				"--http", httpAddrs[i], "--peer", real[i], "--cluster", strings.Join(parts, ","),
				"--tick", tick.String(), "--request-timeout", requestTimeout.String(),
				"--dial-override", strings.Join(over, ",")},
		}
		if err := nd.start(); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		if err := nd.waitReady(20 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (nd *node) url(path string) string { return "http://" + nd.http + path }

func (nd *node) start() error {
	lf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(lf, "=== chaos: start %s at %s\n", nd.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(binary, nd.args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", nd.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); lf.Close(); close(exited) }()
	nd.mu.Lock()
	nd.cmd, nd.exited, nd.down, nd.paused = cmd, exited, false, false
	nd.mu.Unlock()
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (nd *node) kill() {
	nd.mu.Lock()
	cmd, exited := nd.cmd, nd.exited
	nd.down, nd.paused = true, false
	nd.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (nd *node) killForGood() {
	nd.mu.Lock()
	cmd, exited := nd.cmd, nd.exited
	nd.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

func (nd *node) signal(sig syscall.Signal) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.paused = sig == syscall.SIGSTOP
	return nd.cmd.Process.Signal(sig)
}

// crashed says whether the process exited without being killed on purpose.
func (nd *node) crashed() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.down {
		return false
	}
	select {
	case <-nd.exited:
		return true
	default:
		return false
	}
}

// waitReady polls /readyz until it answers 200.
func (nd *node) waitReady(timeout time.Duration) error {
	cli := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		nd.mu.Lock()
		exited := nd.exited
		nd.mu.Unlock()
		select {
		case <-exited:
			return fmt.Errorf("%s exited while starting; see %s", nd.name, nd.logPath)
		default:
		}
		resp, err := cli.Get(nd.url("/readyz"))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %s", nd.name, timeout, last)
}

type status struct {
	ID      string `json:"id"`
	Leader  string `json:"leader"`
	Term    uint64 `json:"term"`
	Applied uint64 `json:"applied_index"`
}

func (nd *node) status() (status, error) {
	var st status
	cli := &http.Client{Timeout: time.Second}
	resp, err := cli.Get(nd.url("/cluster/status"))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// leader returns the index of the node that the running nodes name as leader,
// once they agree, or an error after timeout.
func (c *cluster) leader(timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	var seen []string
	for time.Now().Before(deadline) {
		seen = seen[:0]
		leader := ""
		agree := true
		for _, nd := range c.nodes {
			nd.mu.Lock()
			skip := nd.down || nd.paused
			nd.mu.Unlock()
			if skip {
				continue
			}
			st, err := nd.status()
			seen = append(seen, fmt.Sprintf("%s:%q/%v", nd.name, st.Leader, err))
			if err != nil || st.Leader == "" || (leader != "" && st.Leader != leader) {
				agree = false
			}
			leader = st.Leader
		}
		if agree {
			for i, nd := range c.nodes {
				if nd.name == leader {
					return i, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1, fmt.Errorf("no agreed leader after %v: %v", timeout, seen)
}

// heal removes every network fault, resumes paused nodes and restarts killed
// ones, and waits until every node is ready.
func (c *cluster) heal() error {
	c.mesh.HealAll()
	var errs []error
	for _, nd := range c.nodes {
		nd.mu.Lock()
		down, paused := nd.down, nd.paused
		nd.mu.Unlock()
		if paused {
			errs = append(errs, nd.signal(syscall.SIGCONT))
		}
		if down {
			errs = append(errs, nd.start())
		}
	}
	for _, nd := range c.nodes {
		errs = append(errs, nd.waitReady(20*time.Second))
	}
	return errors.Join(errs...)
}
