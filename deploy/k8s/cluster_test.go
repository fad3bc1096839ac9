package k8s

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPodsFormACluster runs, as processes on this machine, the command line
// and environment the StatefulSet gives each of its pods, as the kubelet
// would expand them, started together as podManagementPolicy Parallel does
// (distkv-0 last, so the others wait for it to create the cluster's id).
// Only what a machine without Kubernetes cannot provide is changed, by
// arguments appended after the manifest's (the last one wins): listen
// addresses on the loopback, a data directory of the test, and
// --dial-override for the pods' DNS names, which do not resolve here. Every
// node must then be ready (GET /readyz, the readiness probe), agree on one
// leader and cluster id, publish the addresses of the manifest, take a write,
// and stop cleanly on SIGTERM within the pod's grace period.
func TestPodsFormACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes; -short skips it")
	}
	o := loadObjects(t)
	c := o.container(t)
	n := o.replicas()
	const ns = "ns-under-test"
	grace := 30 * time.Second
	if g := o.sts.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}

	type node struct {
		pc         podConfig
		http, peer string // loopback listen addresses
		cmd        *exec.Cmd
		log        string
		exited     chan error
		started    bool
		done       bool // its exit was received from exited
	}
	nodes := make([]*node, n)
	for i := range n {
		nodes[i] = &node{pc: podConfigFor(t, o, c, i, ns), http: freeAddr(t), peer: freeAddr(t)}
	}
	if t.Failed() {
		t.FailNow()
	}
	dir := t.TempDir()
	for i, nd := range nodes {
		var overrides []string
		for j, other := range nodes {
			if j != i {
				overrides = append(overrides, other.pc.name+"="+other.peer)
			}
		}
		args := append(slices.Clone(nd.pc.args),
			"--http="+nd.http, "--peer="+nd.peer,
			"--data-dir="+filepath.Join(dir, nd.pc.name),
			"--dial-override="+strings.Join(overrides, ","))
		nd.cmd = exec.Command(distkvBin, args...)
		// The container's environment only: not this test's DISTKV_*.
		nd.cmd.Env = nd.pc.envs
		nd.log = filepath.Join(dir, nd.pc.name+".log")
		f, err := os.Create(nd.log)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		nd.cmd.Stdout, nd.cmd.Stderr = f, f
		nd.exited = make(chan error, 1)
	}
	dumpLogs := func() {
		for _, nd := range nodes {
			data, _ := os.ReadFile(nd.log)
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			t.Logf("%s's last log lines:\n%s", nd.pc.name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	}
	defer func() {
		for _, nd := range nodes {
			if nd.started && !nd.done {
				nd.cmd.Process.Kill()
				<-nd.exited
			}
		}
		if t.Failed() {
			dumpLogs()
		}
	}()
	for i := n - 1; i >= 0; i-- {
		nd := nodes[i]
		if err := nd.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nd.started = true
		go func() { nd.exited <- nd.cmd.Wait() }()
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
	}

	client := &http.Client{Timeout: 2 * time.Second}
	get := func(addr, path string) (int, []byte, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, body, err
	}

	// The readiness probe, on every node.
	deadline := time.Now().Add(60 * time.Second)
	for _, nd := range nodes {
		for {
			code, body, err := get(nd.http, "/readyz")
			if err == nil && code == http.StatusOK {
				break
			}
			select {
			case err := <-nd.exited:
				nd.done = true
				t.Fatalf("%s exited: %v", nd.pc.name, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready after 60s: %d %s %v", nd.pc.name, code, body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code, body, err := get(nd.http, "/healthz"); err != nil || code != http.StatusOK {
			t.Errorf("%s: GET /healthz: %d %s %v", nd.pc.name, code, body, err)
		}
	}

	type status struct {
		ID        string `json:"id"`
		ClusterID string `json:"cluster_id"`
		Leader    string `json:"leader"`
		Members   []struct {
			ID   string `json:"id"`
			Peer string `json:"peer"`
			HTTP string `json:"http"`
		} `json:"members"`
	}
	getStatus := func(nd *node) status {
		t.Helper()
		code, body, err := get(nd.http, "/cluster/status")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s: GET /cluster/status: %d %s %v", nd.pc.name, code, body, err)
		}
		var st status
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("%s: /cluster/status %s: %v", nd.pc.name, body, err)
		}
		return st
	}
	// Each node publishes its HTTP address through the log once it is up:
	// wait until the first node has seen them all.
	for {
		st := getStatus(nodes[0])
		all := len(st.Members) == n
		for _, m := range st.Members {
			all = all && m.HTTP != ""
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("members' HTTP addresses not all published after 60s: %+v", st.Members)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var leader *node
	var first status
	for i, nd := range nodes {
		st := getStatus(nd)
		if st.ID != nd.pc.name {
			t.Errorf("%s: /cluster/status id %q", nd.pc.name, st.ID)
		}
		if i == 0 {
			first = st
		} else if st.ClusterID != first.ClusterID || st.Leader != first.Leader {
			t.Errorf("%s: cluster id %q, leader %q; %s says %q, %q", nd.pc.name, st.ClusterID, st.Leader,
				nodes[0].pc.name, first.ClusterID, first.Leader)
		}
		for _, other := range nodes {
			if other.pc.name == st.Leader {
				leader = other
			}
		}
	}
	if first.ClusterID == "" || leader == nil {
		t.Fatalf("cluster id %q, leader %q", first.ClusterID, first.Leader)
	}
	// Every member is published at the addresses of the manifest (its DNS
	// names), not at the loopback addresses of this test.
	published := map[string][2]string{}
	for _, m := range first.Members {
		published[m.ID] = [2]string{m.Peer, m.HTTP}
	}
	for _, nd := range nodes {
		want := [2]string{nd.pc.settings["advertise-peer"], nd.pc.settings["advertise-http"]}
		if got, ok := published[nd.pc.name]; !ok || got != want {
			t.Errorf("member %s published as %q, want %q", nd.pc.name, got, want)
		}
	}
	if len(published) != n {
		t.Errorf("%d members, want %d: %v", len(published), n, published)
	}

	// A write on the leader, read back linearizably on every node.
	req, _ := http.NewRequest(http.MethodPut, "http://"+leader.http+"/key/k8s", strings.NewReader(`{"value":"manifest"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /key/k8s on %s: %d %s", leader.pc.name, resp.StatusCode, body)
	}
	for _, nd := range nodes {
		code, body, err := get(nd.http, "/key/k8s")
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), `"value":"manifest"`) {
			t.Errorf("%s: GET /key/k8s: %d %s %v", nd.pc.name, code, body, err)
		}
	}

	// SIGTERM, as the kubelet stops a pod: each node must exit 0 within the
	// grace period, or it would be killed.
	for _, nd := range nodes {
		if err := nd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, nd := range nodes {
		select {
		case err := <-nd.exited:
			nd.done = true
			if err != nil {
				t.Errorf("%s: exit after SIGTERM: %v", nd.pc.name, err)
			}
		case <-ctx.Done():
			t.Errorf("%s still running %v after SIGTERM (terminationGracePeriodSeconds)", nd.pc.name, grace)
		}
	}
}

// freeAddr is a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
