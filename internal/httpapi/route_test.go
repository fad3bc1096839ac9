package httpapi

import (
	"net/http/httptest"
	"testing"
)

// TestRoute checks the template of each kind of path, and that the API
// answers every route Route names, and only those: "other" is what it
// answers 404 Not Found.
func TestRoute(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	for _, tc := range []struct{ method, target, want string }{
		{"GET", "/key/k1", "/key/{key}"},
		{"PUT", "/key/a%2Fb/c?prev_version=1", "/key/{key}"},
		{"DELETE", "/key/", "/key/{key}"},
		{"GET", "/keys?prefix=a", "/keys"},
		{"POST", "/txn", "/txn"},
		{"GET", "/cluster/status", "/cluster/status"},
		{"GET", "/cluster/ranges", "/cluster/ranges"},
		{"GET", "/cluster/members", "/cluster/members"},
		{"DELETE", "/cluster/members/n2", "/cluster/members/{id}"},
		{"POST", "/cluster/members/n2/promote", "/cluster/members/{id}/promote"},
		{"POST", "/cluster/leader/transfer", "/cluster/leader/transfer"},
		{"GET", "/request_status?client_id=c&request_id=1&operation=PUT", "/request_status"},
		{"GET", "/deduplication_stats", "/deduplication_stats"},
		{"GET", "/cluster_status", "/cluster_status"},
		{"GET", "/segments", "/segments"},
		{"GET", "/compaction/status", "/compaction/status"},
		{"POST", "/compaction/run", "/compaction/run"},
		{"POST", "/compaction/configure", "/compaction/configure"},
		{"GET", "/healthz", "/healthz"},
		{"GET", "/readyz", "/readyz"},
		{"GET", "/", "other"},
		{"GET", "/secret-key-name", "other"},
		{"GET", "/key", "other"},
		{"GET", "/cluster/members/", "other"},
		{"POST", "/cluster/members/n2/demote", "other"},
		{"GET", "/cluster/statusx", "other"},
		{"GET", "/metrics", "other"},
	} {
		req := httptest.NewRequest(tc.method, tc.target, nil)
		if got := Route(req); got != tc.want {
			t.Errorf("Route(%s %s) = %q, want %q", tc.method, tc.target, got, tc.want)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		notFound := rec.Code == 404 && rec.Body.String() == string(bodyNotFound)
		// An empty key or member id is the route's own 404; the fake
		// backend manages no membership, so the API answers 501 before it
		// looks at the action.
		exception := map[string]bool{"/key/": true, "/cluster/members/": true, "/cluster/members/n2/demote": true}[tc.target]
		if notFound != (tc.want == "other") && !exception {
			t.Errorf("%s %s: route %q, answered %d %s", tc.method, tc.target, tc.want, rec.Code, rec.Body)
		}
	}
}
