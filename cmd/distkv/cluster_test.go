package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/raftnode"
)

// TestAdminErrorSaysItOnce: a membership error keeps raftnode's message and
// still picks the HTTP status (it used to read "no such member: no such
// member: ...").
func TestAdminErrorSaysItOnce(t *testing.T) {
	for _, c := range []struct {
		err  error
		mark error
	}{
		{fmt.Errorf("%w: %q", raftnode.ErrUnknownMember, "n9"), httpapi.ErrUnknownMember},
		{fmt.Errorf("%w: %q", raftnode.ErrMemberExists, "n2"), httpapi.ErrMemberExists},
		{fmt.Errorf("%w: no other voter to transfer leadership to", raftnode.ErrTransferRefused), httpapi.ErrTransferRefused},
	} {
		got := adminErr(c.err)
		if got.Error() != c.err.Error() || !errors.Is(got, c.mark) || !errors.Is(got, errors.Unwrap(c.err)) {
			t.Errorf("adminErr(%q) = %q; want the same text, matching %v", c.err, got, c.mark)
		}
	}
}

// newTestAPI serves the HTTP API of a single-node cluster of n1 in this
// process, through the backend adapter, as `distkv server` does. Its Raft
// ticks are a second apart: what the API shows must not wait for one.
func newTestAPI(t *testing.T) (http.Handler, *raftnode.Node) {
	t.Helper()
	cfg := raftnode.Config{
		Self:         raftnode.Member{Name: "n1", Peer: "127.0.0.1:19400", HTTP: "127.0.0.1:18400"},
		Members:      []raftnode.Member{{Name: "n1", Peer: "127.0.0.1:19400"}},
		DataDir:      t.TempDir(),
		TickInterval: time.Second,
	}
	n, err := raftnode.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	deadline := time.Now().Add(10 * time.Second)
	for n.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %v", n.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
	h, err := httpapi.New(httpapi.Config{}, backend{n: n})
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

func serve(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
	return rec
}

// TestMembersShowConfigurationAtOnce: right after POST /cluster/members
// returns, GET /cluster/members lists the new member as a learner, and a
// node lists its own HTTP address before it published it to the cluster.
func TestMembersShowConfigurationAtOnce(t *testing.T) {
	h, _ := newTestAPI(t)
	want := `{"members":[{"id":"n1","peer":"127.0.0.1:19400","http":"127.0.0.1:18400","role":"voter"`
	if rec := serve(h, "GET", "/cluster/members", ""); rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), want) {
		t.Fatalf("members of a new node: %d %s, want %s...", rec.Code, rec.Body, want)
	}
	if rec := serve(h, "POST", "/cluster/members", `{"id":"n2","peer":"127.0.0.1:19401","http":"127.0.0.1:18401"}`); rec.Code != 200 {
		t.Fatalf("add n2: %d %s", rec.Code, rec.Body)
	}
	want = `{"id":"n2","peer":"127.0.0.1:19401","http":"127.0.0.1:18401","role":"learner"`
	if rec := serve(h, "GET", "/cluster/members", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("members right after adding n2: %d %s, want %s...", rec.Code, rec.Body, want)
	}
}

// TestLeaderTransferAnswers: the distkv server's answers to
// POST /cluster/leader/transfer on a single voter with a learner: a
// transfer that cannot succeed is a 409 saying why, an unknown member a
// 404, a transfer to the leader itself done at once.
func TestLeaderTransferAnswers(t *testing.T) {
	h, _ := newTestAPI(t)
	if rec := serve(h, "POST", "/cluster/members", `{"id":"n2","peer":"127.0.0.1:19401"}`); rec.Code != 200 {
		t.Fatalf("add n2: %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{"to":"n2"}`, 409, `{"detail":"leadership transfer refused: member n2 is a learner, which cannot lead; promote it to a voter first"}`},
		{``, 409, `{"detail":"leadership transfer refused: no other voter to transfer leadership to"}`},
		{`{"to":"n9"}`, 404, `{"detail":"no such member: \"n9\""}`},
		{`{"to":"n1"}`, 200, `{"leader":"n1","status":"ok"}`},
	} {
		if rec := serve(h, "POST", "/cluster/leader/transfer", tc.body); rec.Code != tc.code || rec.Body.String() != tc.want {
			t.Errorf("transfer %s = %d %s, want %d %s", tc.body, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
}
