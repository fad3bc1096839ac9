package httpapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// POST /cluster/leader/transfer answers by what the backend says: a transfer
// that cannot succeed is a 409 (a client does not retry it, as it retries a
// 503), an unknown member a 404, no leader or a deadline a 503 that does not
// say a write may have been applied: moving leadership writes nothing.
func TestLeaderTransferStatus(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		err        error
		code       int
		want       string
		asked      string
	}{
		{"moved", `{"to":"n2"}`, nil, 200, `{"leader":"n2","status":"ok"}`, "transfer n2"},
		{"any voter", ``, nil, 200, `{"leader":"n2","status":"ok"}`, "transfer "},
		{"unknown member", `{"to":"n9"}`, fmt.Errorf("%w: %q", ErrUnknownMember, "n9"), 404, `{"detail":"no such member: \"n9\""}`, "transfer n9"},
		{"learner", `{"to":"n4"}`, fmt.Errorf("%w: member n4 is a learner, which cannot lead; promote it to a voter first", ErrTransferRefused), 409,
			`{"detail":"leadership transfer refused: member n4 is a learner, which cannot lead; promote it to a voter first"}`, "transfer n4"},
		{"no other voter", `{"to":""}`, fmt.Errorf("%w: no other voter to transfer leadership to", ErrTransferRefused), 409,
			`{"detail":"leadership transfer refused: no other voter to transfer leadership to"}`, "transfer "},
		{"no leader", `{"to":"n2"}`, errors.New("no leader: the cluster has no quorum or is electing one"), 503,
			`{"detail":"no leader: the cluster has no quorum or is electing one"}`, "transfer n2"},
		{"deadline", `{"to":"n2"}`, fmt.Errorf("leadership did not move to n2: %w", context.DeadlineExceeded), 503,
			`{"detail":"request timed out after 5s (leadership did not move to n2)"}`, "transfer n2"},
		{"not JSON", `{"to":`, nil, 422, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &adminBackend{fakeBackend: newFake(), err: tc.err}
			b.status = Status{ID: "n1", Leader: "n2"}
			h, err := New(Config{}, b)
			if err != nil {
				t.Fatal(err)
			}
			rec := serveString(h, "POST", "/cluster/leader/transfer", tc.body)
			if rec.Code != tc.code || (tc.want != "" && rec.Body.String() != tc.want) {
				t.Fatalf("= %d %s, want %d %s", rec.Code, rec.Body, tc.code, tc.want)
			}
			checkJSONHeaders(t, rec)
			var want []string
			if tc.asked != "" {
				want = []string{tc.asked}
			}
			if !slices.Equal(b.asked, want) {
				t.Fatalf("the backend was asked %q, want %q", b.asked, want)
			}
		})
	}
}
