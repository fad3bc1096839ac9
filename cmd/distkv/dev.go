package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/internal/vfs"
)

func newDevCommand() *cobra.Command {
	var (
		nodes    int
		dataDir  string
		httpBase int
		peerBase int
		host     string
		advHost  string
		secure   bool
		splitQPS int
	)
	cmd := &cobra.Command{
		Use:   "dev [-- extra server flags]",
		Short: "Run a local cluster, one process per node, until Ctrl-C",
		Long: `Run a local cluster of --nodes members, each its own OS process (so kill -9
of one shows fail-over): node i (from 1) serves HTTP on 127.0.0.1:(8000+i-1) and
Raft on 127.0.0.1:(9000+i-1), with data in <data-dir>/n<i>. Flags after -- go to
every server. The nodes share the machine, so each gets an equal share of its
CPUs (GOMAXPROCS = CPUs / nodes, at least 1) unless GOMAXPROCS is set. Ctrl-C
(or SIGTERM) stops them all; a node that exits is reported with the command
that restarts it.`,
		RunE: func(cmd *cobra.Command, extra []string) error {
			if nodes < 1 || nodes > 99 {
				return fmt.Errorf("--nodes must be 1..99, got %d", nodes)
			}
			if advHost == "" {
				advHost = host
			}
			if unspecified(advHost) {
				return fmt.Errorf("--host %q listens on every interface, which is no address to reach the nodes at: "+
					"set --advertise-host to an address of this machine that the nodes and clients can reach (127.0.0.1 for this machine only)", host)
			}
			sec := newDevSecurity(secure, dataDir)
			if splitQPS < 0 {
				return fmt.Errorf("--range-split-qps must be 0 (never) or more, got %d", splitQPS)
			}
			extra = append([]string{"--range-split-qps", strconv.Itoa(splitQPS)}, extra...)
			return runDev(cmd.ErrOrStderr(), nodes, dataDir, host, advHost, httpBase, peerBase, sec, extra)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 3, "number of nodes")
	f.StringVar(&dataDir, "data-dir", "data", "parent of the nodes' data directories")
	f.StringVar(&host, "host", "127.0.0.1", "address the nodes listen on")
	f.StringVar(&advHost, "advertise-host", "", "address the nodes publish to each other and to clients (default: --host; required when --host is 0.0.0.0)")
	f.IntVar(&httpBase, "http-port", 8000, "HTTP port of the first node")
	f.IntVar(&peerBase, "peer-port", 9000, "peer port of the first node")
	f.IntVar(&splitQPS, "range-split-qps", defaultRangeSplitQPS, "split a range whose leader serves more than this many requests a second for 10 s (0: never); passed to every server, before the flags after --")
	f.BoolVar(&secure, "secure", false, "TLS everywhere and authentication on: make a CA and certificates under <data-dir>/certs, run the API and the peer links over TLS with client certificates required, and require a user on every request (the client certificate is user root; its password is in <data-dir>/certs/root-password)")
	return cmd
}

type devNode struct {
	name string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// nodeProcs is the GOMAXPROCS of each of nodes processes sharing cpus CPUs:
// more would only have their Go schedulers spin and hand work between
// threads that compete for the same cores.
func nodeProcs(cpus, nodes int) int {
	return max(1, cpus/nodes)
}

func runDev(out io.Writer, n int, dataDir, host, advHost string, httpBase, peerBase int, sec devSecurity, extra []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	token, err := devClusterToken(dataDir)
	if err != nil {
		return err
	}
	hosts := []string{advHost, "127.0.0.1", "localhost"}
	if !unspecified(host) {
		hosts = append(hosts, host)
	}
	if err := sec.prepare(n, hosts); err != nil {
		return err
	}
	env, envNote := os.Environ(), ""
	if os.Getenv("GOMAXPROCS") == "" {
		envNote = fmt.Sprintf("GOMAXPROCS=%d ", nodeProcs(runtime.NumCPU(), n))
		env = append(env, strings.TrimSpace(envNote))
	}
	var cluster []string
	for i := 0; i < n; i++ {
		cluster = append(cluster, fmt.Sprintf("n%d=%s:%d", i+1, advHost, peerBase+i))
	}
	var mu sync.Mutex // serializes output lines
	logf := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		mu.Unlock()
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)

	var started []*devNode
	stopAll := func() {
		for _, d := range started {
			d.cmd.Process.Signal(syscall.SIGTERM)
		}
		deadline := time.After(15 * time.Second)
		for _, d := range started {
			select {
			case <-d.done:
			case <-deadline:
				d.cmd.Process.Kill()
				<-d.done
			}
		}
	}
	exited := make(chan *devNode, n)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("n%d", i+1)
		args := []string{"server", "--id", name,
			"--data-dir", filepath.Join(dataDir, name),
			"--http", fmt.Sprintf("%s:%d", host, httpBase+i),
			"--peer", fmt.Sprintf("%s:%d", host, peerBase+i),
			"--cluster", strings.Join(cluster, ","),
			"--cluster-token", token}
		args = append(args, sec.serverArgs(name)...)
		if advHost != host {
			args = append(args, "--advertise-http", fmt.Sprintf("%s:%d", advHost, httpBase+i),
				"--advertise-peer", fmt.Sprintf("%s:%d", advHost, peerBase+i))
		}
		args = append(args, extra...) // a --cluster-token here wins: the last one counts
		c := exec.Command(self, args...)
		c.Env = env
		// Own process group: the terminal's Ctrl-C reaches only dev, which
		// stops the nodes in order. Pdeathsig: if dev dies, so do they.
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		stdout, _ := c.StdoutPipe()
		c.Stderr = c.Stdout
		if err := c.Start(); err != nil {
			stopAll()
			return fmt.Errorf("start %s: %w", name, err)
		}
		d := &devNode{name: name, args: args, cmd: c, done: make(chan struct{})}
		started = append(started, d)
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				logf("[%s] %s", d.name, sc.Text())
			}
			c.Wait()
			close(d.done)
			exited <- d
		}()
		logf("%s  pid %-7d  http %s://%s:%d  peer %s:%d  data %s", name, c.Process.Pid, sec.scheme(), advHost, httpBase+i, advHost, peerBase+i, filepath.Join(dataDir, name))
	}
	for _, line := range sec.howToReach(fmt.Sprintf("%s:%d", advHost, httpBase)) {
		logf("distkv dev: %s", line)
	}
	logf("distkv dev: %d nodes running; Ctrl-C stops them", n)
	alive := n
	for {
		select {
		case sig := <-sigc:
			logf("distkv dev: %v: stopping all nodes", sig)
			stopAll()
			logf("distkv dev: all nodes stopped")
			return nil
		case d := <-exited:
			alive--
			logf("distkv dev: %s exited (%v); restart it with:\n  %s%s %s", d.name, d.cmd.ProcessState, envNote, self, strings.Join(d.args, " "))
			if alive == 0 {
				return fmt.Errorf("every node has exited")
			}
		}
	}
}

// devClusterToken returns the cluster token of the dev cluster in dataDir,
// made up at random on its first start and kept in dataDir/cluster-token.
// Two dev clusters that are started one after the other on the same ports
// then refuse each other's nodes: a node of the old one that is still
// shutting down cannot reach into the new one.
func devClusterToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "cluster-token")
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("%s is empty; delete it to make a new token", path)
		}
		// A token file written before it was created 0600 is made private.
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return "", err
			}
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	tok := "dev-" + hex.EncodeToString(r[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	// vfs creates it 0600: the token lets a process join the cluster.
	if err := vfs.WriteFileAtomic(vfs.Default, path, []byte(tok+"\n")); err != nil {
		return "", err
	}
	return tok, nil
}
