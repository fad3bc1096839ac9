// Package docker tests the container image and deploy/compose.yaml: it builds
// the image with `make image`, starts the compose cluster of three nodes,
// runs the prototype's walkthrough against it, kills the leader's container
// and restarts it. It skips where no Docker engine answers or docker-compose
// is missing, and nowhere else.
//
// It runs beside whatever else uses Docker on the machine, `distkv dev`
// included: the image gets a tag of its own (distkv:test-<random>), the
// compose project a name of its own, and the nodes' HTTP ports come from
// package testport instead of compose.yaml's default 127.0.0.1:8000-8002.
// Everything it creates (containers, network, volumes, the image's tag, the
// staged binary) is removed when it ends, failed or not.
package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distkv/distkv/test/testport"
)

// services are the nodes of deploy/compose.yaml, by service name, which is
// also each node's --id.
var services = []string{"n1", "n2", "n3"}

// cluster is one compose project of deploy/compose.yaml.
type cluster struct {
	t       *testing.T
	root    string            // the repository
	project string            // docker-compose -p
	env     []string          // docker-compose's environment: image, ports, token
	http    map[string]string // service -> base URL of its published HTTP port
	client  *http.Client
}

// needDocker skips the test unless a Docker engine answers and docker-compose
// is installed.
func needDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("skipped: no docker command, so no Docker engine to test the image and deploy/compose.yaml on")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("skipped: no Docker engine answers (docker info: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("skipped: docker-compose is not installed, so deploy/compose.yaml cannot be run")
	}
}

// run runs a command in the repository and returns its combined output.
func (c *cluster) run(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// compose runs docker-compose on deploy/compose.yaml in this cluster's
// project and fails the test if it fails.
func (c *cluster) compose(args ...string) string {
	c.t.Helper()
	out, err := c.run(2*time.Minute, c.env, "docker-compose",
		append([]string{"-p", c.project, "-f", filepath.Join(c.root, "deploy", "compose.yaml")}, args...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// container returns the id of the container of service.
func (c *cluster) container(service string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.compose("ps", "-q", service))
	if id == "" {
		c.t.Fatalf("docker-compose ps: no container for %s", service)
	}
	return id
}

// do sends one request to service and returns the status and body.
func (c *cluster) do(method, service, path, body string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.http[service]+path, rd)
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustDo is do that fails the test on a transport error.
func (c *cluster) mustDo(method, service, path, body string) (int, string) {
	c.t.Helper()
	code, got, err := c.do(method, service, path, body)
	if err != nil {
		c.t.Fatalf("%s %s on %s: %v", method, path, service, err)
	}
	return code, got
}

// waitFor polls cond every 100 ms until it returns "" (done) or timeout
// passes, then fails the test with what it last returned.
func (c *cluster) waitFor(timeout time.Duration, what string, cond func() string) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		last := cond()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not within %v; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady waits until service's /readyz answers 200.
func (c *cluster) waitReady(service string, timeout time.Duration) {
	c.t.Helper()
	c.waitFor(timeout, service+" ready", func() string {
		code, body, err := c.do(http.MethodGet, service, "/readyz", "")
		switch {
		case err != nil:
			return err.Error()
		case code != http.StatusOK:
			return fmt.Sprintf("%d %s", code, body)
		}
		return ""
	})
}

// status is the part of /cluster/status the test reads.
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

func (c *cluster) status(service string) (status, error) {
	var st status
	code, body, err := c.do(http.MethodGet, service, "/cluster/status", "")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("/cluster/status on %s: %d %s", service, code, body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return st, fmt.Errorf("/cluster/status on %s: %v: %s", service, err, body)
	}
	return st, nil
}

// putOK and delOK are the bodies of a successful PUT of key6 (the
// prototype's answer, to which the prototype's later versions add the key
// and its version) and of a DELETE; writeOK is any successful write.
var (
	putOK   = regexp.MustCompile(`^\{"status":"ok","id":(\d+)(?:,"key":"key6","version":1)?\}$`)
	delOK   = regexp.MustCompile(`^\{"status":"ok","id":(\d+)\}$`)
	writeOK = regexp.MustCompile(`^\{"status":"ok","id":\d+[,}]`)
)

// TestComposeCluster builds the image, starts deploy/compose.yaml, runs the
// prototype's walkthrough against it, kills the leader's container, checks
// that writes go on through the other two and that the restarted container
// catches up from its volume and the log, then removes what it created.
func TestComposeCluster(t *testing.T) {
	needDocker(t)
	start := time.Now()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	suffix := hex.EncodeToString(r[:])
	image := "distkv:test-" + suffix
	stage := filepath.Join("bin", "image-test-"+suffix) // .dockerignore sends bin/image* only
	port, err := testport.Range(len(services))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{
		t: t, root: root, project: "distkvtest" + suffix,
		env:    []string{"DISTKV_IMAGE=" + image, "DISTKV_CLUSTER_TOKEN=test-" + suffix},
		http:   map[string]string{},
		client: &http.Client{Timeout: 10 * time.Second},
	}
	for i, s := range services {
		c.env = append(c.env, fmt.Sprintf("DISTKV_HTTP_PORT_%d=%d", i+1, port+i))
		c.http[s] = fmt.Sprintf("http://127.0.0.1:%d", port+i)
	}

	// Removed in any case, failed or not; cleanups run last registered first.
	t.Cleanup(func() {
		os.RemoveAll(filepath.Join(root, stage))
		if out, err := c.run(time.Minute, nil, "docker", "rmi", image); err != nil && !strings.Contains(out, "No such image") {
			t.Errorf("remove the test's image tag: %v", err)
		}
	})
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed to build the image (make image)")
	}
	out, err := c.run(5*time.Minute, nil, "make", "--no-print-directory", "image", "IMAGE="+image, "IMAGE_STAGE="+stage)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Successfully tagged "+image) && !strings.Contains(out, "naming to docker.io/library/"+image) {
		t.Logf("make image:\n%s", out)
	}
	size, err := c.run(time.Minute, nil, "docker", "image", "inspect", "--format", "{{.Size}} bytes, user {{.Config.User}}, volumes {{json .Config.Volumes}}", image)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s with make image (%s) in %v", image, strings.TrimSpace(size), time.Since(start).Round(time.Second))
	if !strings.Contains(size, "user 65532:65532") {
		t.Fatalf("the image runs as %q, want the non-root user 65532:65532", size)
	}

	t.Cleanup(func() {
		if t.Failed() {
			if out, err := c.run(time.Minute, c.env, "docker-compose", "-p", c.project, "-f", filepath.Join(root, "deploy", "compose.yaml"),
				"logs", "--no-color", "--tail", "40"); err == nil {
				t.Logf("the nodes' last log lines:\n%s", out)
			}
		}
		if _, err := c.run(2*time.Minute, c.env, "docker-compose", "-p", c.project, "-f", filepath.Join(root, "deploy", "compose.yaml"),
			"down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Errorf("remove the compose project %s: %v", c.project, err)
		}
		// What docker-compose down left behind, if anything, is the test's fault.
		for _, kind := range []string{"ps -a", "network ls", "volume ls"} {
			args := append(strings.Fields(kind), "-q", "--filter", "label=com.docker.compose.project="+c.project)
			if out, err := c.run(time.Minute, nil, "docker", args...); err == nil && strings.TrimSpace(out) != "" {
				t.Errorf("docker %s: left behind by project %s: %s", kind, c.project, strings.Fields(out))
			}
		}
	})
	c.compose("up", "-d")
	for _, s := range services {
		c.waitReady(s, 90*time.Second)
	}
	t.Logf("project %s up, HTTP on %s, %s, %s (%v)", c.project, c.http["n1"], c.http["n2"], c.http["n3"], time.Since(start).Round(time.Second))

	// Each node publishes its service name, not the 0.0.0.0 it listens on
	// (its HTTP address through the log, soon after it starts).
	var st status
	c.waitFor(30*time.Second, "every member's published addresses in n1's /cluster/status", func() string {
		var err error
		if st, err = c.status("n1"); err != nil {
			return err.Error()
		}
		if len(st.Members) != len(services) || st.ClusterID == "" {
			return fmt.Sprintf("%+v, want 3 members and a cluster id", st)
		}
		for _, m := range st.Members {
			if m.Peer != m.ID+":9000" || m.HTTP != m.ID+":8000" {
				return fmt.Sprintf("member %s publishes peer %q and http %q, want %s:9000 and %s:8000", m.ID, m.Peer, m.HTTP, m.ID, m.ID)
			}
		}
		return ""
	})

	// The prototype's walkthrough: write on n1, read on the others.
	code, put := c.mustDo(http.MethodPut, "n1", "/key/key6", `{"value": "myvalue"}`)
	m := putOK.FindStringSubmatch(put)
	if code != http.StatusOK || m == nil {
		t.Fatalf("PUT key6 on n1 answered %d %q, want {\"status\":\"ok\",\"id\":N}", code, put)
	}
	for _, s := range []string{"n2", "n3"} {
		if code, got := c.mustDo(http.MethodGet, s, "/key/key6", ""); code != http.StatusOK ||
			got != `{"key":"key6","value":"myvalue","version":1,"revision":`+m[1]+`}` {
			t.Fatalf("GET key6 on %s answered %d %q", s, code, got)
		}
	}
	code, del := c.mustDo(http.MethodDelete, "n1", "/key/key6", "")
	dm := delOK.FindStringSubmatch(del)
	if code != http.StatusOK || dm == nil {
		t.Fatalf("DELETE key6 on n1 answered %d %q", code, del)
	}
	if putID, _ := strconv.Atoi(m[1]); atoi(dm[1]) <= putID {
		t.Fatalf("DELETE id %s not after PUT id %s: ids must increase", dm[1], m[1])
	}
	if code, got := c.mustDo(http.MethodGet, "n3", "/key/key6", ""); code != http.StatusNotFound || got != `{"detail":"Key not found"}` {
		t.Fatalf("GET key6 on n3 after DELETE answered %d %q, want 404 {\"detail\":\"Key not found\"}", code, got)
	}
	t.Logf("walkthrough: PUT key6 on n1 %s, GET on n2 and n3 at revision %s, DELETE %s, then 404 Key not found", put, m[1], del)

	// Kill the leader's container without warning.
	var leader string
	c.waitFor(20*time.Second, "a leader", func() string {
		st, err := c.status("n1")
		if err != nil {
			return err.Error()
		}
		leader = st.Leader
		if leader == "" {
			return "no leader known to n1"
		}
		return ""
	})
	var survivors []string
	for _, s := range services {
		if s != leader {
			survivors = append(survivors, s)
		}
	}
	id := c.container(leader)
	if _, err := c.run(time.Minute, nil, "docker", "kill", id); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s, the leader (container %.12s)", leader, id)

	// Writes go on through the other two; a write may meet the election and
	// get 503, and is then retried (the same value again).
	const writes = 5
	for i := 0; i < writes; i++ {
		s := survivors[i%len(survivors)]
		key := fmt.Sprintf("/key/while-down/%d", i)
		c.waitFor(30*time.Second, "PUT "+key+" on "+s, func() string {
			code, body, err := c.do(http.MethodPut, s, key, fmt.Sprintf(`{"value": "v%d"}`, i))
			switch {
			case err != nil:
				return err.Error()
			case code != http.StatusOK || !writeOK.MatchString(body):
				return fmt.Sprintf("%d %s", code, body)
			}
			return ""
		})
	}
	st, err = c.status(survivors[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader == leader || st.Leader == "" {
		t.Fatalf("after %d writes, %s knows leader %q, want one of %v", writes, survivors[0], st.Leader, survivors)
	}
	t.Logf("%d writes went on through %v; the new leader is %s", writes, survivors, st.Leader)

	// The restarted container recovers from its volume and catches up.
	if _, err := c.run(time.Minute, nil, "docker", "start", id); err != nil {
		t.Fatal(err)
	}
	c.waitReady(leader, 60*time.Second)
	for i := 0; i < writes; i++ {
		key := fmt.Sprintf("/key/while-down/%d", i)
		c.waitFor(30*time.Second, "the restarted "+leader+" to show "+key, func() string {
			code, body, err := c.do(http.MethodGet, leader, key+"?consistency=stale", "")
			switch {
			case err != nil:
				return err.Error()
			case code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"value":"v%d"`, i)):
				return fmt.Sprintf("%d %s", code, body)
			}
			return ""
		})
	}
	rst, err := c.status(leader)
	if err != nil {
		t.Fatal(err)
	}
	if rst.ClusterID != st.ClusterID {
		t.Fatalf("the restarted %s reports cluster id %q, the others %q: it did not recover from its volume", leader, rst.ClusterID, st.ClusterID)
	}
	t.Logf("restarted %s caught up: its stale reads show all %d writes made while it was down (%v in all)", leader, writes, time.Since(start).Round(time.Second))
}

// TestComposeFileDefaults: by hand, `docker-compose -f deploy/compose.yaml
// up` runs distkv:latest and publishes HTTP on 127.0.0.1:8000-8002, as
// `distkv dev` does; TestComposeCluster moves them with environment
// variables only.
func TestComposeFileDefaults(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("skipped: docker-compose is not installed, so deploy/compose.yaml cannot be read")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, root: root}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DISTKV_") && !strings.HasPrefix(kv, "COMPOSE_") {
			env = append(env, kv)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-compose", "-f", filepath.Join(root, "deploy", "compose.yaml"), "config")
	cmd.Dir, cmd.Env = c.root, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for _, want := range []string{
		"image: distkv:latest",
		"127.0.0.1:8000:8000/tcp", "127.0.0.1:8001:8000/tcp", "127.0.0.1:8002:8000/tcp",
		"n1:/var/lib/distkv", "n2:/var/lib/distkv", "n3:/var/lib/distkv",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("docker-compose config of deploy/compose.yaml lacks %q:\n%s", want, out)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
