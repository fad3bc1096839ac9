package chaos

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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
	"github.com/distkv/distkv/test/testport"
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

// Snapshot settings of every node: small, so that the log is compacted often
// and a follower cut off for a few seconds needs a snapshot to catch up.
var (
	snapshotEntries = flag.Int("chaos.snapshot-entries", 300, "--snapshot-entries of every node")
	catchupEntries  = flag.Int("chaos.snapshot-catchup-entries", 100, "--snapshot-catchup-entries of every node")
)

// maxGenerations bounds how often one slot's member can be replaced: every
// node is told where to dial each future member name up front (see
// memberName), since --dial-override is fixed for the life of a process.
const maxGenerations = 64

// memberName is the Raft member name of slot i's generation gen: n1, then
// n1r1, n1r2, ... after each replacement. A replaced member never comes back
// under its old name, as an operator would do it.
func memberName(i, gen int) string {
	if gen == 0 {
		return fmt.Sprintf("n%d", i+1)
	}
	return fmt.Sprintf("n%dr%d", i+1, gen)
}

// node is one slot of the cluster: an HTTP and a peer address that stay the
// same while the member behind them is restarted or replaced. Its log is
// appended to across restarts and replacements.
type node struct {
	name    string // the slot, n1..n3; for messages only
	idx     int
	http    string // host:port of the HTTP API
	peer    string // real peer listen address; the mesh forwards here
	dataDir string
	logPath string
	// common are the flags every generation of the slot gets.
	common []string

	mu      sync.Mutex
	gen     int
	member  string   // Raft member name of the current generation
	args    []string // of the current generation
	cmd     *exec.Cmd
	exited  chan struct{}
	down    bool // killed or stopped on purpose and not restarted yet
	paused  bool
	removed bool // removed from the cluster and wiped; heal adds it back
}

// cluster is three nodes whose peer links all pass through mesh.
type cluster struct {
	nodes []*node
	mesh  *netproxy.Mesh
	// logf, if set, is told about membership changes as they happen; note,
	// if set, counts what they ran into (see rejoin).
	logf func(format string, args ...any)
	note func(kind string)
	// views, if set, describes how the nodes see the cluster, for a
	// failure message (a sharded round's ranges as each node lists them).
	views func() string
	// sharded: the nodes place ranges (more nodes than --replicas), so a
	// removal drains the member first and a new member is promoted by the
	// cluster, not by hand (see remove and rejoin).
	sharded bool
}

// freePort returns a loopback address for a node started later (see package
// testport for why not 127.0.0.1:0).
func freePort(t *testing.T) string {
	t.Helper()
	addr, err := testport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startCluster starts n nodes with logs in logDir and waits until each is
// ready; every node gets the server flags extra too. Every process is
// killed when the test ends.
func startCluster(t *testing.T, n int, logDir string, seed int64, extra ...string) *cluster {
	t.Helper()
	var parts, real, httpAddrs []string
	for i := 0; i < n; i++ {
		real = append(real, freePort(t))
		httpAddrs = append(httpAddrs, freePort(t))
		parts = append(parts, fmt.Sprintf("%s=%s", memberName(i, 0), real[i]))
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
		var over []string
		for j := 0; j < n; j++ {
			if j == i {
				continue
			}
			for g := 0; g < maxGenerations; g++ {
				over = append(over, fmt.Sprintf("%s=%s", memberName(j, g), mesh.PeerAddr(i, j)))
			}
		}
		nd := &node{
			name:    memberName(i, 0),
			idx:     i,
			http:    httpAddrs[i],
			peer:    real[i],
			dataDir: filepath.Join(logDir, "data", memberName(i, 0)),
			logPath: filepath.Join(logDir, memberName(i, 0)+".log"),
			common: []string{"--data-dir", filepath.Join(logDir, "data", memberName(i, 0)),
				"--http", httpAddrs[i], "--peer", real[i],
				"--tick", tick.String(), "--request-timeout", requestTimeout.String(),
				"--snapshot-entries", fmt.Sprint(*snapshotEntries),
				"--snapshot-catchup-entries", fmt.Sprint(*catchupEntries),
				"--dial-override", strings.Join(over, ",")},
		}
		nd.common = append(nd.common, extra...)
		nd.member = memberName(i, 0)
		nd.args = append([]string{"server", "--id", nd.member, "--cluster", strings.Join(parts, ",")}, nd.common...)
		if err := nd.start(); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		if err := nd.waitReady(20 * time.Second); err != nil {
			t.Fatal(err)
		}
		// It listens on its --http and --peer and nothing else.
		if err := distkvbin.CheckProcess(nd.pid()); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestOnlyStartRunsDistkv keeps (*node).start the one place that starts a
// process of the distkv binary, so that each gets its command line checked.
func TestOnlyStartRunsDistkv(t *testing.T) {
	calls, err := distkvbin.CommandCalls(".", "start")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		t.Errorf("%s: exec.Command of something other than a string literal; start distkv with (*node).start", c)
	}
}

func (nd *node) url(path string) string { return "http://" + nd.http + path }

func (nd *node) start() error {
	lf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	nd.mu.Lock()
	args, member := nd.args, nd.member
	nd.mu.Unlock()
	// A node must name every address it listens on or talks to: a default
	// one may belong to a `distkv dev` running on the same machine.
	if err := distkvbin.CheckArgs(args); err != nil {
		lf.Close()
		return err
	}
	fmt.Fprintf(lf, "=== chaos: start %s (member %s) at %s\n", nd.name, member, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(binary, args...)
	cmd.Env = distkvbin.Env()
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", nd.name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); lf.Close(); close(exited) }()
	nd.mu.Lock()
	nd.cmd, nd.exited, nd.down, nd.paused, nd.removed = cmd, exited, false, false, false
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
	Commit  uint64 `json:"commit_index"`
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
				if nd.memberName() == leader {
					return i, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1, fmt.Errorf("no agreed leader after %v: %v", timeout, seen)
}

// memberName is the Raft member name of the slot's current generation.
func (nd *node) memberName() string {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.member
}

// pid is the process id of the running member, 0 when it is not running.
func (nd *node) pid() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd == nil || nd.down || nd.removed {
		return 0
	}
	select {
	case <-nd.exited:
		return 0
	default:
	}
	return nd.cmd.Process.Pid
}

// logSize is the length of the slot's log now, so that a caller can later
// read only what was logged after this point (logSince).
func (nd *node) logSize() int64 {
	fi, err := os.Stat(nd.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns what the slot logged from offset on.
func (nd *node) logSince(offset int64) string {
	b, err := os.ReadFile(nd.logPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// heal removes every network fault, resumes paused nodes, restarts killed
// ones and adds removed ones back as new members, and waits until every node
// is ready.
func (c *cluster) heal() error {
	c.mesh.HealAll()
	var errs []error
	for _, nd := range c.nodes {
		nd.mu.Lock()
		down, paused, removed := nd.down, nd.paused, nd.removed
		nd.mu.Unlock()
		switch {
		case paused:
			errs = append(errs, nd.signal(syscall.SIGCONT))
		case removed:
			errs = append(errs, c.rejoin(nd))
		case down:
			errs = append(errs, nd.start())
		}
	}
	for _, nd := range c.nodes {
		errs = append(errs, nd.waitReady(20*time.Second))
	}
	return errors.Join(errs...)
}

// admin sends an administrative request (membership, leadership) to the
// running nodes in turn, starting with the one at index first, until one
// answers with a status in ok or timeout passes. It returns the status and
// body of the last answer.
func (c *cluster) admin(method, path, body string, first int, timeout time.Duration, ok ...int) (int, string, error) {
	cli := &http.Client{Timeout: 2 * requestTimeout}
	deadline := time.Now().Add(timeout)
	last := ""
	for try := 0; ; try++ {
		nd := c.nodes[(first+try)%len(c.nodes)]
		if nd.pid() != 0 {
			req, err := http.NewRequest(method, nd.url(path), strings.NewReader(body))
			if err != nil {
				return 0, "", err
			}
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := cli.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				for _, code := range ok {
					if resp.StatusCode == code {
						return resp.StatusCode, string(b), nil
					}
				}
				last = fmt.Sprintf("%s: %d %s", nd.name, resp.StatusCode, strings.TrimSpace(string(b)))
				if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusInternalServerError {
					return resp.StatusCode, string(b), fmt.Errorf("%s %s: %s", method, path, last)
				}
			} else {
				last = fmt.Sprintf("%s: %v", nd.name, err)
			}
		}
		if time.Now().After(deadline) {
			return 0, "", fmt.Errorf("%s %s: no success after %v; last: %s", method, path, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// remove takes slot nd's member out of the cluster as an operator would: it
// asks another member to remove it, waits for the removed process to stop
// (it is told and exits by itself; it is killed if it has not after a while),
// and wipes its data directory. heal then adds the slot back as a new member.
func (c *cluster) remove(nd *node) (string, error) {
	member := nd.memberName()
	nd.mu.Lock()
	nd.down = true // it exits on purpose from now on
	exited := nd.exited
	nd.mu.Unlock()
	// A sharded cluster moves the member's replicas away first; the
	// request answers 503 while some are left, and is sent again.
	timeout := 20 * time.Second
	if c.sharded {
		timeout = 60 * time.Second
	}
	_, _, err := c.admin(http.MethodDelete, "/cluster/members/"+member, "", nd.idx+1, timeout, 200, 404)
	if err != nil {
		nd.mu.Lock()
		nd.down = false
		nd.mu.Unlock()
		return "", err
	}
	how := "exited by itself"
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		how = "did not exit within 10s of its removal; killed"
		nd.kill()
	}
	if err := os.RemoveAll(nd.dataDir); err != nil {
		return "", err
	}
	nd.mu.Lock()
	nd.down, nd.removed = true, true
	nd.mu.Unlock()
	return fmt.Sprintf("removed member %s from slot %s (%s), data wiped", member, nd.name, how), nil
}

// rejoin starts slot nd, wiped by remove, as the next generation's member with
// --join through another member, waits until the learner has caught up with
// the leader's commit index, and promotes it to voter.
func (c *cluster) rejoin(nd *node) error {
	nd.mu.Lock()
	if nd.gen+1 >= maxGenerations {
		nd.mu.Unlock()
		return fmt.Errorf("slot %s was replaced %d times: no dial override for another", nd.name, nd.gen)
	}
	nd.gen++
	nd.member = memberName(nd.idx, nd.gen)
	via := c.nodes[(nd.idx+1)%len(c.nodes)]
	nd.args = append([]string{"server", "--id", nd.member, "--join", "http://" + via.http}, nd.common...)
	member := nd.member
	nd.mu.Unlock()
	offset := nd.logSize()
	if err := nd.start(); err != nil {
		return err
	}
	if err := nd.waitReady(30 * time.Second); err != nil {
		return fmt.Errorf("new member %s: %w", member, err)
	}
	if c.sharded {
		// Placement promotes the new learner of the meta range once it
		// has caught up, and moves replicas onto it: a promotion by hand
		// would race it. The fault's healed check and the final heal wait
		// for it to be a voter (checkVoters).
		if c.logf != nil {
			c.logf("new member %s in slot %s is ready; placement promotes it", member, nd.name)
		}
		return nil
	}
	commit, err := c.leaderCommit(nd, 10*time.Second)
	if err != nil {
		return fmt.Errorf("new member %s: %w", member, err)
	}
	started := time.Now()
	var st status
	for {
		st, err = nd.status()
		if err == nil && st.Applied >= commit {
			break
		}
		if time.Since(started) > learnerCatchUp {
			// An operator would not promote it: the cluster is not
			// healthy, and the log says why.
			return fmt.Errorf("new member %s (learner) applied %d of commit index %d after %v (%v); its log has %d %q snapshot rejections; see %s",
				member, st.Applied, commit, learnerCatchUp, err, strings.Count(nd.logSince(offset), notInConfState), notInConfState, nd.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A learner that joins after the leader compacted its log is sent the
	// leader's latest snapshot, which may predate the learner's addition;
	// Raft then refuses it, and the learner waits for the next snapshot.
	rejected := strings.Count(nd.logSince(offset), notInConfState)
	if rejected > 0 && c.note != nil {
		c.note("learner-snapshot-refused")
	}
	if c.logf != nil {
		c.logf("new member %s in slot %s caught up with commit index %d after %v (snapshots it refused as %q: %d)",
			member, nd.name, commit, time.Since(started).Round(time.Millisecond), notInConfState, rejected)
	}
	_, _, err = c.admin(http.MethodPost, "/cluster/members/"+member+"/promote", "", nd.idx+1, 30*time.Second, 200)
	return err
}

// notInConfState is what Raft logs when it refuses a snapshot whose
// membership does not include the node.
const notInConfState = "is not in the ConfState"

// learnerCatchUp is how long a new member may take to catch up before it is
// promoted; longer fails the heal.
const learnerCatchUp = 90 * time.Second

// leaderCommit returns the commit index of the node, other than except, that
// says it is the leader.
func (c *cluster) leaderCommit(except *node, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	var seen []string
	for time.Now().Before(deadline) {
		seen = seen[:0]
		for _, nd := range c.nodes {
			if nd == except || nd.pid() == 0 {
				continue
			}
			st, err := nd.status()
			if err == nil && st.Leader != "" && st.Leader == st.ID {
				return st.Commit, nil
			}
			seen = append(seen, fmt.Sprintf("%s:%q/%v", nd.name, st.Leader, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("no leader after %v: %v", timeout, seen)
}

// member is one entry of GET /cluster/members.
type member struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

// checkVoters polls until the leader lists exactly the slots' current members,
// all voters, or fails after timeout with what it saw.
func (c *cluster) checkVoters(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := map[string]bool{}
	for _, nd := range c.nodes {
		want[nd.memberName()] = true
	}
	cli := &http.Client{Timeout: 2 * time.Second}
	var seen string
	for time.Now().Before(deadline) {
		l, err := c.leader(5 * time.Second)
		if err != nil {
			seen = err.Error()
			continue
		}
		var list struct {
			Members []member `json:"members"`
		}
		resp, err := cli.Get(c.nodes[l].url("/cluster/members"))
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
		}
		if err == nil {
			voters := 0
			for _, m := range list.Members {
				if want[m.ID] && m.Role == "voter" {
					voters++
				}
			}
			if voters == len(want) && len(list.Members) == len(want) {
				return nil
			}
			seen = fmt.Sprintf("%+v", list.Members)
		} else {
			seen = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("want voters %v, leader lists %s", want, seen)
}

// askAll sends GET path to every running node and lists their answers, for
// a failure message: whether one node or all of them fail a read.
func (c *cluster) askAll(path string) string {
	cli := &http.Client{Timeout: 3 * time.Second}
	var b strings.Builder
	for _, nd := range c.nodes {
		fmt.Fprintf(&b, "\n  %s: ", nd.name)
		resp, err := cli.Get(nd.url(path))
		if err != nil {
			fmt.Fprintf(&b, "%v", err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&b, "%d %.300s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return b.String()
}
