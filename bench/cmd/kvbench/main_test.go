package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every workload against the do-nothing server: exactly -ops operations, no
// errors, latencies recorded.
func TestRunAgainstNull(t *testing.T) {
	srv := httptest.NewServer(nullHandler(64))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, w := range []string{"write", "read", "stale", "mixed50", "mixed95"} {
		for _, dist := range []string{"uniform", "zipf"} {
			c := config{target: "null", clients: 8, ops: 300, workload: w, keys: 50,
				valueSize: 64, dist: dist, zipfS: 1.1, preload: true, timeout: 5 * time.Second,
				route: "rr", quiet: true, conns: 1}
			res, err := runConfig(t, &c, addr+","+addr)
			if err != nil {
				t.Fatalf("%s/%s: %v", w, dist, err)
			}
			if res.ops != 300 || res.errors != 0 || res.hist.TotalCount() != 300 {
				t.Fatalf("%s/%s: ops %d errors %d (%s) recorded %d; want 300, 0, 300",
					w, dist, res.ops, res.errors, res.lastErr, res.hist.TotalCount())
			}
		}
	}
}

func TestValidate(t *testing.T) {
	bad := []config{
		{target: "distkv", clients: 0, valueSize: 256, keys: 1, workload: "write", dist: "uniform", route: "rr", duration: time.Second},
		{target: "distkv", clients: 1025, valueSize: 256, keys: 1, workload: "write", dist: "uniform", route: "rr", duration: time.Second},
		{target: "distkv", clients: 1, valueSize: 15, keys: 1, workload: "write", dist: "uniform", route: "rr", duration: time.Second},
		{target: "distkv", clients: 1, valueSize: 65537, keys: 1, workload: "write", dist: "uniform", route: "rr", duration: time.Second},
		{target: "distkv", clients: 1, valueSize: 256, keys: 1, workload: "scan", dist: "uniform", route: "rr", duration: time.Second},
		{target: "nope", clients: 1, valueSize: 256, keys: 1, workload: "write", dist: "uniform", route: "rr", duration: time.Second},
	}
	for i, c := range bad {
		if err := c.validate(""); err == nil {
			t.Errorf("case %d: want an error", i)
		}
	}
}

// The load workload writes every key exactly once, all 16 bytes long.
func TestLoadWritesEveryKeyOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			mu.Lock()
			seen[strings.TrimPrefix(r.URL.Path, "/key/")]++
			mu.Unlock()
		}
		nullHandler(64).ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := config{target: "null", clients: 16, duration: time.Hour, workload: "load", keys: 1000,
		valueSize: 64, dist: "uniform", timeout: 5 * time.Second, route: "rr", quiet: true, conns: 1}
	if err := c.validate(strings.TrimPrefix(srv.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	tg, err := newTarget(context.Background(), &c)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	res, err := run(context.Background(), tg, &c)
	if err != nil {
		t.Fatal(err)
	}
	if res.ops != 1000 || res.errors != 0 {
		t.Fatalf("ops %d errors %d; want 1000, 0", res.ops, res.errors)
	}
	if len(seen) != 1000 {
		t.Fatalf("%d distinct keys written; want 1000", len(seen))
	}
	for i := 0; i < 1000; i++ {
		k := keyName(i)
		if len(k) != 16 || seen[k] != 1 {
			t.Fatalf("key %q (%d bytes) written %d times; want 16 bytes, once", k, len(k), seen[k])
		}
	}
}

// Route "each" sends one worker's requests to every endpoint in turn, over
// one kept-alive connection per endpoint; "rr" keeps a worker on one endpoint.
func TestRoutes(t *testing.T) {
	for _, tc := range []struct {
		route string
		want  [3]int
	}{{"each", [3]int{10, 10, 10}}, {"rr", [3]int{30, 0, 0}}} {
		var counts, conns [3]atomic.Int64
		var eps []string
		for i := range counts {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut {
					counts[i].Add(1)
				}
				nullHandler(64).ServeHTTP(w, r)
			}))
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns[i].Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			eps = append(eps, strings.TrimPrefix(srv.URL, "http://"))
		}
		runPuts(t, eps, tc.route, 1)
		got := [3]int{int(counts[0].Load()), int(counts[1].Load()), int(counts[2].Load())}
		if got != tc.want {
			t.Errorf("route %s: puts per endpoint %v, want %v", tc.route, got, tc.want)
		}
		for i := range conns {
			if n := conns[i].Load(); n > 1 {
				t.Errorf("route %s: endpoint %d saw %d connections for %d puts; want one kept alive", tc.route, i, n, got[i])
			}
		}
	}
}

// Route "leader" sends every request to the node the first endpoint's
// /cluster/status names as leader, and fails when it names none.
func TestRouteLeader(t *testing.T) {
	var counts [3]atomic.Int64
	var eps []string
	leader := ""
	for i := range counts {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/cluster/status" {
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"id":"n1","leader":"` + leader + `","members":[` +
					`{"id":"n1","http":"` + eps[0] + `"},{"id":"n2","http":"` + eps[1] + `"},{"id":"n3","http":"` + eps[2] + `"}]}`))
				return
			}
			if r.Method == http.MethodPut {
				counts[i].Add(1)
			}
			nullHandler(64).ServeHTTP(w, r)
		}))
		defer srv.Close()
		eps = append(eps, strings.TrimPrefix(srv.URL, "http://"))
	}
	leader = "n3"
	c := runPuts(t, eps, "leader", 2)
	if got := [3]int64{counts[0].Load(), counts[1].Load(), counts[2].Load()}; got != [3]int64{0, 0, 30} {
		t.Errorf("puts per endpoint %v with n3 leading; want all 30 at the third", got)
	}

	leader = ""
	if _, err := newTarget(context.Background(), &c); err == nil || !strings.Contains(err.Error(), "no leader") {
		t.Errorf("no leader known: newTarget err = %v, want one that says so", err)
	}
	bad := c
	bad.target = "null"
	if err := bad.validate(strings.Join(eps, ",")); err == nil {
		t.Error("-route leader with -target null: validate accepted it")
	}
}

// runPuts makes 30 puts with the given route and clients against eps, and
// fails the test on any error; it returns the configuration it ran.
func runPuts(t *testing.T, eps []string, route string, clients int) config {
	t.Helper()
	c := config{target: "distkv", clients: clients, ops: 30, workload: "write", keys: 10,
		valueSize: 64, dist: "uniform", timeout: 5 * time.Second, route: route, quiet: true, conns: 1}
	res, err := runConfig(t, &c, strings.Join(eps, ","))
	if err != nil || res.errors != 0 {
		t.Fatalf("route %s: err %v, %d errors", route, err, res.errors)
	}
	return c
}

// runConfig validates c for endpoints, makes its target (failing the test if
// either fails) and runs it once.
func runConfig(t *testing.T, c *config, endpoints string) (*result, error) {
	t.Helper()
	if err := c.validate(endpoints); err != nil {
		t.Fatal(err)
	}
	tg, err := newTarget(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	return run(context.Background(), tg, c)
}
