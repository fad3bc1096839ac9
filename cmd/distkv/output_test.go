package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/distkv/distkv/client"
)

// TestStatusTable checks the table `distkv status -o table` prints for a
// leader's answer: the header line, the leader marked, and "-" for what the
// answering node does not know.
func TestStatusTable(t *testing.T) {
	raw := `{"id":"n1","cluster_id":"00c0ffee00c0ffee","leader":"n1","term":3,"commit_index":42,"applied_index":41,
	"members":[{"id":"n1","peer":"127.0.0.1:9000","http":"127.0.0.1:8000","role":"voter","reachable":true,"match_index":42,"lag":0},
	{"id":"n2","peer":"127.0.0.1:9001","http":"127.0.0.1:8001","role":"voter","reachable":false,"last_contact":"2026-01-01T00:00:00Z","match_index":40,"lag":2},
	{"id":"n3","peer":"127.0.0.1:9002","http":"","role":"learner"}]}`
	var st client.Status
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 1, 500e6, time.UTC)
	if err := writeStatusTable(&buf, st, now); err != nil {
		t.Fatal(err)
	}
	want := `cluster 00c0ffee00c0ffee  leader n1  term 3  commit 42  applied 41  (as seen by n1)
ID  ROLE     REACHABLE  HTTP            PEER            MATCH  LAG  LAST CONTACT
n1  leader   true       127.0.0.1:8000  127.0.0.1:9000  42     0    -
n2  voter    false      127.0.0.1:8001  127.0.0.1:9001  40     2    1.5s ago
n3  learner  -          -               127.0.0.1:9002  -      -    -
`
	if got := buf.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestOutputFormat(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"json", "json", ""},
		{"table", "table", ""},
		{"yaml", "", `want json or table`},
	} {
		got, err := outputFormat(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("outputFormat(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
	// Under go test stdout is not a terminal: scripts get the JSON.
	if got, _ := outputFormat(""); got != outputJSON && !stdoutIsTerminal() {
		t.Errorf("default format off a terminal = %q, want json", got)
	}
}
