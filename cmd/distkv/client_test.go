package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/client"
)

// runClient runs a client command with args and returns what it printed.
func runClient(t *testing.T, args ...string) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	stdout := os.Stdout
	os.Stdout = w
	root := &cobra.Command{Use: "distkv", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newClientCommands()...)
	root.SetArgs(args)
	err = root.Execute()
	os.Stdout = stdout
	w.Close()
	return <-out, err
}

// A write that timed out on one node ("may still have been applied") is
// sent again, with the same request id, to the next: the server applies it
// at most once, so the retry is safe. A write without ids (a membership
// change) is not retried. The command prints the answer as sent.
func TestClientRetriesWritesWithTheirIDs(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	record := func(r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
	}
	timedOut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"detail":"request timed out after 5s; a write may still have been applied"}`)
	}))
	defer timedOut.Close()
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		io.WriteString(w, `{"status":"ok","id":7,"key":"k","version":1}`)
	}))
	defer answers.Close()
	both := timedOut.URL + "," + answers.URL
	out, err := runClient(t, "put", "k", "v", "--endpoints", both, "--retry-for", "1s")
	if err != nil || out != `{"status":"ok","id":7,"key":"k","version":1}`+"\n" {
		t.Fatalf("put: %q, %v", out, err)
	}
	if len(queries) != 2 || queries[0] != queries[1] || !strings.HasPrefix(queries[0], "client_id=distkv-cli-") || !strings.Contains(queries[0], "&request_id=") {
		t.Fatalf("the attempts were sent with %q, want the same ids twice", queries)
	}
	queries = nil
	if _, err := runClient(t, "member", "add", "n4", "--peer", "h:1", "--endpoints", both, "--retry-for", "1s"); err == nil || len(queries) != 1 {
		t.Fatalf("a write without ids: %v after %d attempts, want one attempt and its error", err, len(queries))
	}
	// Each write has its own request id.
	queries = nil
	runClient(t, "del", "a", "--endpoints", answers.URL)
	runClient(t, "del", "a", "--endpoints", answers.URL)
	if len(queries) != 2 || queries[0] == queries[1] || !strings.HasPrefix(queries[0], "client_id=distkv-cli-") {
		t.Fatalf("two writes sent with %q", queries)
	}
}

// TestLeaderTransferNotRetriedOn4xx: `distkv leader transfer` gives up at
// once on a transfer that cannot succeed (409), and retries one refused for
// want of a leader (503) until --retry-for.
func TestLeaderTransferNotRetriedOn4xx(t *testing.T) {
	for _, tc := range []struct {
		code     int
		body     string
		attempts func(int) bool
	}{
		{409, `{"detail":"leadership transfer refused: member n2 is a learner, which cannot lead; promote it to a voter first"}`, func(n int) bool { return n == 1 }},
		{503, `{"detail":"no leader: the cluster has no quorum or is electing one"}`, func(n int) bool { return n > 1 }},
	} {
		var mu sync.Mutex
		attempts := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			attempts++
			mu.Unlock()
			w.WriteHeader(tc.code)
			io.WriteString(w, tc.body)
		}))
		_, err := runClient(t, "leader", "transfer", "--to", "n2", "--endpoints", srv.URL, "--retry-for", "400ms")
		srv.Close()
		var serr *client.StatusError
		detail := strings.TrimSuffix(strings.TrimPrefix(tc.body, `{"detail":"`), `"}`)
		if !errors.As(err, &serr) || serr.Code != tc.code || err.Error() != fmt.Sprint(tc.code, " ", detail) || !tc.attempts(attempts) {
			t.Errorf("leader transfer answered %d: %v after %d attempts", tc.code, err, attempts)
		}
	}
}

// TestClientCommandsPrintAnswers: each command prints the server's answer
// as it was sent (status and member list indented), and an error reads
// "<status> <detail>".
func TestClientCommandsPrintAnswers(t *testing.T) {
	answers := map[string]string{
		"GET /key/a/b%2Fhistory":           `{"key":"a/b/history","value":{"n":1.50},"version":2,"revision":9}`,
		"PUT /key/k":                       `{"status":"ok","id":3,"key":"k","version":1}`,
		"DELETE /key/k":                    `{"status":"ok","id":4}`,
		"GET /cluster/status":              `{"id":"n1","leader":"n1","term":2,"members":[]}`,
		"GET /cluster/members":             `{"members":[]}`,
		"POST /cluster/members":            `{"status":"ok"}`,
		"POST /cluster/members/n2/promote": `{"status":"ok"}`,
		"DELETE /cluster/members/n2":       `{"status":"ok"}`,
		"POST /cluster/leader/transfer":    `{"leader":"n2","status":"ok"}`,
		"GET /key/missing":                 `{"detail":"Key not found"}`,
	}
	var mu sync.Mutex
	var scans []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/keys" {
			mu.Lock()
			scans = append(scans, r.URL.RawQuery)
			mu.Unlock()
			if r.URL.Query().Get("continue") == "" {
				io.WriteString(w, `{"kvs":[{"key":"a","value":"é","version":1,"revision":5}],"keys":["a"],"count":1,"more":true,"continue":"AWEA"}`)
			} else {
				io.WriteString(w, `{"kvs":[{"key":"b","value":[1],"version":1,"revision":6}],"keys":["b"],"count":1,"more":false}`)
			}
			return
		}
		body, ok := answers[r.Method+" "+r.URL.EscapedPath()]
		if !ok || strings.Contains(body, "detail") {
			w.WriteHeader(404)
		}
		io.WriteString(w, body)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "a/b/history", "--stale"}, `{"key":"a/b/history","value":{"n":1.50},"version":2,"revision":9}` + "\n"},
		{[]string{"put", "k", "[1, 2]", "--json", "--prev-version", "0"}, `{"status":"ok","id":3,"key":"k","version":1}` + "\n"},
		{[]string{"del", "k"}, `{"status":"ok","id":4}` + "\n"},
		{[]string{"scan", "--prefix", "x"}, `{"key":"a","value":"é","version":1,"revision":5}` + "\n" + `{"key":"b","value":[1],"version":1,"revision":6}` + "\n"},
		{[]string{"scan", "--limit", "1"}, `{"key":"a","value":"é","version":1,"revision":5}` + "\n"},
		{[]string{"status"}, "{\n  \"id\": \"n1\",\n  \"leader\": \"n1\",\n  \"term\": 2,\n  \"members\": []\n}\n"},
		{[]string{"member", "list"}, "{\n  \"members\": []\n}\n"},
		{[]string{"member", "add", "n2", "--peer", "h:1"}, `{"status":"ok"}` + "\n"},
		{[]string{"member", "promote", "n2"}, `{"status":"ok"}` + "\n"},
		{[]string{"member", "remove", "n2"}, `{"status":"ok"}` + "\n"},
		{[]string{"leader", "transfer", "--to", "n2"}, `{"leader":"n2","status":"ok"}` + "\n"},
	} {
		out, err := runClient(t, append(tc.args, "--endpoints", srv.URL)...)
		if err != nil || out != tc.want {
			t.Errorf("distkv %s: %q %v, want %q", strings.Join(tc.args, " "), out, err, tc.want)
		}
	}
	if want := []string{"prefix=x", "continue=AWEA&prefix=x", "limit=1"}; strings.Join(scans, " ") != strings.Join(want, " ") {
		t.Errorf("scans sent %q, want %q", scans, want)
	}
	if out, err := runClient(t, "get", "missing", "--endpoints", srv.URL); out != "" || err == nil || err.Error() != "404 Key not found" {
		t.Errorf("get of a missing key: %q %v", out, err)
	}
	if _, err := runClient(t, "put", "k", "{", "--json", "--endpoints", srv.URL); err == nil || err.Error() != `--json: "{" is not a JSON value` {
		t.Errorf("put --json of invalid JSON: %v", err)
	}
}
