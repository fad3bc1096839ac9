package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// A write that timed out on one node ("may still have been applied") is
// sent again, with the same request id, to the next: the server applies it
// at most once, so the retry is safe. A write without ids is not retried.
func TestClientRetriesWritesWithTheirIDs(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	timedOut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"detail":"request timed out after 5s; a write may still have been applied"}`)
	}))
	defer timedOut.Close()
	answers := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		io.WriteString(w, `{"status":"ok","id":7,"key":"k","version":1}`)
	}))
	defer answers.Close()
	c := &client{endpoints: []string{timedOut.URL, answers.URL}, http: &http.Client{Timeout: time.Second}, wait: time.Second, clientID: "cli-1"}
	data, err := c.write(http.MethodPut, "/key/k", []byte(`{"value":"v"}`))
	if err != nil || string(data) != `{"status":"ok","id":7,"key":"k","version":1}` {
		t.Fatalf("write: %s, %v", data, err)
	}
	if len(queries) != 2 || queries[0] != queries[1] || !strings.HasPrefix(queries[0], "client_id=cli-1&request_id=") {
		t.Fatalf("the attempts were sent with %q, want the same ids twice", queries)
	}
	queries = nil
	if _, err := c.do(http.MethodPost, "/cluster/members", []byte(`{}`)); err == nil || len(queries) != 1 {
		t.Fatalf("a write without ids: %v after %d attempts, want one attempt and its error", err, len(queries))
	}
	// Each write has its own request id.
	queries = nil
	c.endpoints = []string{answers.URL}
	c.write(http.MethodDelete, "/key/a?prev_version=1", nil)
	c.write(http.MethodDelete, "/key/a?prev_version=1", nil)
	if len(queries) != 2 || queries[0] == queries[1] || !strings.HasPrefix(queries[0], "prev_version=1&client_id=cli-1&request_id=") {
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
		root := &cobra.Command{Use: "distkv", SilenceUsage: true, SilenceErrors: true}
		root.AddCommand(newClientCommands()...)
		root.SetArgs([]string{"leader", "transfer", "--to", "n2", "--endpoints", srv.URL, "--retry-for", "400ms"})
		err := root.Execute()
		srv.Close()
		var aerr *apiError
		if !errors.As(err, &aerr) || aerr.status != tc.code || !tc.attempts(attempts) {
			t.Errorf("leader transfer answered %d: %v after %d attempts", tc.code, err, attempts)
		}
	}
}
