package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// authDo sends one request with a bearer token (none if empty).
func authDo(t *testing.T, token, method, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// login polls POST /auth/token on base until it gives a token (the node may
// not have applied the user, or the cluster's auth setup, yet).
func login(t *testing.T, base, user, password string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		code, body = authDo(t, "", "POST", base+"/auth/token", fmt.Sprintf(`{"user":%q,"password":%q}`, user, password))
		if code == http.StatusOK {
			var ans struct{ Token, ExpiresAt string }
			if err := json.Unmarshal([]byte(body), &ans); err != nil || ans.Token == "" {
				t.Fatalf("token answer %s: %v", body, err)
			}
			return ans.Token
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("login %s on %s: %d %s", user, base, code, body)
	return ""
}

func mustDo(t *testing.T, want int, token, method, url, body string) string {
	t.Helper()
	code, got := authDo(t, token, method, url, body)
	if code != want {
		t.Fatalf("%s %s: %d %s; want %d", method, url, code, got, want)
	}
	return got
}

func rootPasswordFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.pw")
	if err := os.WriteFile(p, []byte("root-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// scanAll returns every key and its value, read by root on base.
func scanAll(t *testing.T, root, base string) map[string]string {
	t.Helper()
	var page struct {
		KVs []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"kvs"`
		More bool `json:"more"`
	}
	if err := json.Unmarshal([]byte(mustDo(t, 200, root, "GET", base+"/keys?limit=1000", "")), &page); err != nil || page.More {
		t.Fatalf("scan: %v more=%v", err, page.More)
	}
	out := map[string]string{}
	for _, kv := range page.KVs {
		out[kv.Key] = kv.Value
	}
	return out
}

// TestAuthPermissionMatrix runs every request of users with a read role, a
// readwrite role, no role, and root, on a prefix their roles cover and one
// they do not, against a three-node cluster with --auth: each answer has the
// right code, and afterwards the data holds exactly what the allowed requests
// wrote, on every node.
func TestAuthPermissionMatrix(t *testing.T) {
	c := startCluster(t, 3, "--auth", "--initial-root-password-file", rootPasswordFile(t))
	n1 := c.url("n1", "")
	root := login(t, n1, "root", "root-secret")

	// Without a token, or with a bad one: 401 on every node; health stays open.
	for _, name := range c.names {
		base := c.url(name, "")
		mustDo(t, http.StatusUnauthorized, "", "GET", base+"/key/a/seed", "")
		mustDo(t, http.StatusUnauthorized, root+"x", "GET", base+"/key/a/seed", "")
		mustDo(t, http.StatusOK, "", "GET", base+"/healthz", "")
	}

	mustDo(t, 200, root, "PUT", n1+"/auth/roles/a-read", `{"permissions":[{"prefix":"a/","access":"read"}]}`)
	mustDo(t, 200, root, "PUT", n1+"/auth/roles/a-write", `{"permissions":[{"prefix":"a/","access":"readwrite"}]}`)
	users := map[string]string{"reader": `["a-read"]`, "writer": `["a-write"]`, "nobody": `[]`}
	for u, roles := range users {
		mustDo(t, 200, root, "PUT", n1+"/auth/users/"+u, fmt.Sprintf(`{"password":"%s-pw","roles":%s}`, u, roles))
	}
	want := map[string]string{}
	for _, p := range []string{"a/", "b/"} {
		mustDo(t, 200, root, "PUT", n1+"/key/"+p+"seed", `{"value":"0"}`)
		want[p+"seed"] = "0"
		for _, u := range []string{"reader", "writer", "nobody", "root"} {
			mustDo(t, 200, root, "PUT", n1+"/key/"+p+"del-"+u, `{"value":"x"}`)
			want[p+"del-"+u] = "x"
		}
	}
	tokens := map[string]string{"root": root}
	for u := range users {
		tokens[u] = login(t, n1, u, u+"-pw")
	}
	// Every node has applied the users before they are used there.
	for _, name := range c.names {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, body := authDo(t, root, "GET", c.url(name, "/auth/users"), "")
			if strings.Count(body, `"name"`) == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has not applied the users: %s", name, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	type cell struct {
		op     string
		method string
		path   func(p, u string) string
		body   func(p, u string) string
		write  bool // the key ops: allowed on a/ by readwrite only
		admin  bool // allowed to root only
		// wrote is the key and value an allowed request leaves.
		wrote func(p, u string) (string, string)
	}
	cells := []cell{
		{op: "GET", method: "GET", path: func(p, _ string) string { return "/key/" + p + "seed" }},
		{op: "PUT", method: "PUT", write: true, path: func(p, u string) string { return "/key/" + p + u },
			body:  func(_, u string) string { return `{"value":"` + u + `"}` },
			wrote: func(p, u string) (string, string) { return p + u, u }},
		{op: "DELETE", method: "DELETE", write: true, path: func(p, u string) string { return "/key/" + p + "del-" + u },
			wrote: func(p, u string) (string, string) { return p + "del-" + u, "" }},
		{op: "scan", method: "GET", path: func(p, _ string) string { return "/keys?prefix=" + p }},
		{op: "txn", method: "POST", write: true, path: func(string, string) string { return "/txn" },
			body: func(p, u string) string {
				return fmt.Sprintf(`{"compare":[{"key":"%sseed","target":"version","op":">","version":0}],"success":[{"put":{"key":"%stxn-%s","value":"t"}},{"get":{"key":"%sseed"}}]}`, p, p, u, p)
			},
			wrote: func(p, u string) (string, string) { return p + "txn-" + u, "t" }},
		{op: "members", method: "GET", admin: true, path: func(string, string) string { return "/cluster/members" }},
		{op: "auth admin", method: "GET", admin: true, path: func(string, string) string { return "/auth/users" }},
		{op: "compaction", method: "GET", admin: true, path: func(string, string) string { return "/compaction/status" }},
	}
	allowed := func(u, p string, c cell) bool {
		switch {
		case u == "root":
			return true
		case c.admin:
			return false
		case p != "a/":
			return false
		case c.write:
			return u == "writer"
		}
		return u == "reader" || u == "writer"
	}
	var grid []string
	i := 0
	for _, u := range []string{"reader", "writer", "nobody", "root"} {
		row := []string{fmt.Sprintf("%-7s", u)}
		for _, p := range []string{"a/", "b/"} {
			for _, cl := range cells {
				if cl.admin && p == "b/" {
					continue
				}
				node := c.names[i%len(c.names)] // spread over the nodes
				i++
				body := ""
				if cl.body != nil {
					body = cl.body(p, u)
				}
				code, got := authDo(t, tokens[u], cl.method, c.url(node, cl.path(p, u)), body)
				wantCode := http.StatusForbidden
				if allowed(u, p, cl) {
					wantCode = http.StatusOK
					if cl.wrote != nil {
						k, v := cl.wrote(p, u)
						if v == "" {
							delete(want, k)
						} else {
							want[k] = v
						}
					}
				}
				if code != wantCode {
					t.Errorf("%s %s %s on %s (%s): %d %s; want %d", u, cl.op, p, node, cl.path(p, u), code, got, wantCode)
				}
				if code != http.StatusOK && !strings.Contains(got, `"detail"`) {
					t.Errorf("%s %s %s: body %s has no detail", u, cl.op, p, got)
				}
				row = append(row, fmt.Sprintf("%s %s=%d", p, cl.op, code))
			}
		}
		grid = append(grid, strings.Join(row, " "))
	}
	t.Logf("matrix:\n%s", strings.Join(grid, "\n"))

	// A scan wider than the role's prefix is refused whole, as is a txn with
	// one forbidden key among allowed ones.
	mustDo(t, http.StatusForbidden, tokens["reader"], "GET", n1+"/keys", "")
	mustDo(t, http.StatusForbidden, tokens["writer"], "GET", n1+"/keys?start=a/&end=b/z", "")
	mustDo(t, http.StatusForbidden, tokens["writer"], "POST", n1+"/txn",
		`{"success":[{"put":{"key":"a/mixed","value":"1"}},{"put":{"key":"b/mixed","value":"1"}}]}`)
	// Users and roles are not keys.
	mustDo(t, http.StatusNotFound, root, "GET", n1+"/key/reader", "")

	for _, name := range c.names {
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := scanAll(t, root, c.url(name, ""))
			if fmt.Sprint(got) == fmt.Sprint(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %v\nwant %v", name, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestAuthSurvivesRestart manages users with the CLI, then restarts the
// node after a snapshot and more log entries: users, roles, and tokens
// issued before the restart (the secret is replicated state) still work,
// and revocation still applies.
func TestAuthSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	addr := freePort(t)
	// Debug logging, so that the check below covers every log line.
	args := []string{"--auth", "--initial-root-password-file", rootPasswordFile(t), "--snapshot-entries", "4", "--log-level", "debug"}
	s := startServer(t, dir, addr, args...)
	base := "http://" + addr
	root := login(t, base, "root", "root-secret")
	cli := func(args ...string) (string, error) {
		return run(t, append(args, "--endpoints", addr, "--retry-for", "2s")...)
	}
	for _, a := range [][]string{
		{"role", "add", "app", "--token", root},
		{"role", "grant", "app", "app/", "readwrite", "--token", root},
		{"user", "add", "alice", "--roles", "app", "--new-password", "alice-pw", "--user", "root", "--password", "root-secret"},
		{"user", "add", "bob", "--roles", "app", "--new-password", "bob-pw", "--token", root},
		{"put", "app/x", "1", "--user", "alice", "--password", "alice-pw"},
	} {
		if out, err := cli(a...); err != nil {
			t.Fatalf("distkv %s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}
	if out, err := cli("put", "other", "1", "--user", "alice", "--password", "alice-pw"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("put outside alice's role: %v %s", err, out)
	}
	if out, err := cli("user", "list", "--user", "alice", "--password", "alice-pw"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("user list by alice: %v %s", err, out)
	}
	if out, err := cli("get", "app/x"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("get without credentials: %v %s", err, out)
	}
	alice := login(t, base, "alice", "alice-pw")
	bob := login(t, base, "bob", "bob-pw")
	// Enough writes that a snapshot holds the auth state.
	for i := range 6 {
		mustDo(t, 200, alice, "PUT", fmt.Sprintf("%s/key/app/k%d", base, i), `{"value":"v"}`)
	}
	if out, err := cli("user", "delete", "bob", "--token", root); err != nil {
		t.Fatalf("user delete: %v %s", err, out)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snap", "*"))
	if len(snaps) == 0 {
		t.Fatalf("no snapshot in %s", dir)
	}
	// Nothing the node logged could be replayed: no password, no token.
	logged, err := os.ReadFile(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), "distkv node serving") {
		t.Fatalf("%s is not the server's log:\n%s", s.logPath, logged)
	}
	for what, secret := range map[string]string{"root's password": "root-secret", "alice's password": "alice-pw",
		"bob's password": "bob-pw", "root's token": root, "alice's token": alice, "bob's token": bob} {
		if strings.Contains(string(logged), secret) {
			t.Fatalf("the server log holds %s", what)
		}
	}
	// The log names the auth changes, never a password or its hash.
	dump, err := run(t, "wal", "dump", dir)
	if err != nil || !strings.Contains(dump, `"operation": "AUTH", "change": "put-user", "name": "alice"`) {
		t.Fatalf("wal dump: %v\n%s", err, dump)
	}
	if strings.Contains(dump, "$2a$") || strings.Contains(dump, "alice-pw") {
		t.Fatalf("wal dump shows a password or hash:\n%s", dump)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(segs) == 0 {
		t.Fatalf("no WAL segment in %s", dir)
	}
	for _, f := range append(snaps, segs...) {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "alice-pw") || strings.Contains(string(b), "root-secret") {
			t.Fatalf("%s holds a password in the clear", f)
		}
	}
	startServer(t, dir, addr, args...)
	// alice's token from before the restart still works; bob's does not.
	body := mustDo(t, 200, alice, "GET", base+"/key/app/x", "")
	if !strings.Contains(body, `"value":"1"`) {
		t.Fatalf("app/x after restart: %s", body)
	}
	mustDo(t, http.StatusUnauthorized, bob, "GET", base+"/key/app/x", "")
	mustDo(t, http.StatusForbidden, alice, "PUT", base+"/key/other", `{"value":"1"}`)
	login(t, base, "alice", "alice-pw")
	if out, err := cli("role", "get", "app", "--token", root); err != nil || !strings.Contains(out, `"app/"`) {
		t.Fatalf("role get after restart: %v %s", err, out)
	}
	// The root password file is read only for a new cluster: it does not
	// reset root's password.
	mustDo(t, http.StatusOK, root, "PUT", base+"/auth/users/root", `{"password":"changed"}`)
	mustDo(t, http.StatusUnauthorized, "", "POST", base+"/auth/token", `{"user":"root","password":"root-secret"}`)
	root = login(t, base, "root", "changed")

	// A backup (root only) restored into a new cluster keeps users, roles
	// and the secret: alice's token from the first cluster works there.
	file := filepath.Join(t.TempDir(), "auth.backup")
	if out, err := run(t, "backup", "--endpoints", addr, "--out", file, "--user", "alice", "--password", "alice-pw"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("backup by alice: %v %s", err, out)
	}
	if out, err := run(t, "backup", "--endpoints", addr, "--out", file, "--token", root); err != nil {
		t.Fatalf("backup: %v %s", err, out)
	}
	dir2, addr2, peer2 := filepath.Join(t.TempDir(), "r1"), freePort(t), freePort(t)
	if out, err := run(t, "restore", "--from", file, "--data-dir", dir2, "--id", "r1", "--cluster", "r1="+peer2); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	launch(t, dir2, addr2, []string{"server", "--id", "r1", "--data-dir", dir2, "--http", addr2, "--peer", peer2, "--tick", "20ms", "--auth"}).waitReady()
	base2 := "http://" + addr2
	if body := mustDo(t, 200, alice, "GET", base2+"/key/app/x", ""); !strings.Contains(body, `"value":"1"`) {
		t.Fatalf("app/x in the restored cluster: %s", body)
	}
	mustDo(t, http.StatusUnauthorized, bob, "GET", base2+"/key/app/x", "")
	login(t, base2, "root", "changed")
}
