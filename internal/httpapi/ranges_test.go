package httpapi

import (
	"net/http"
	"testing"
)

// rangedBackend is a fakeBackend that lists ranges.
type rangedBackend struct {
	*fakeBackend
	ranges []Range
}

func (r rangedBackend) Ranges() []Range { return r.ranges }

// TestClusterRanges: GET /cluster/ranges lists the backend's ranges as the
// API documents them; other methods get 405, parameters 422, and a backend
// that cannot list ranges 501.
func TestClusterRanges(t *testing.T) {
	b := rangedBackend{fakeBackend: newFake(), ranges: []Range{
		{ID: 7, Start: "", End: "key5", Leader: "n2", Replicas: []string{"n1", "n2", "n3"}, Bytes: 123456},
		{ID: 9, Start: "key5", End: "", Leader: "", Bytes: 0},
	}}
	h, err := New(Config{}, b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"ranges":[{"id":7,"start":"","end":"key5","leader":"n2","replicas":["n1","n2","n3"],"bytes":123456},` +
		`{"id":9,"start":"key5","end":"","leader":"","replicas":[],"bytes":0}]}`
	if rec := serveString(h, "GET", "/cluster/ranges", ""); rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Fatalf("GET /cluster/ranges: %d %s, want %s", rec.Code, rec.Body, want)
	}
	if rec := serveString(h, "POST", "/cluster/ranges", ""); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /cluster/ranges: %d Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	if rec := serveString(h, "GET", "/cluster/ranges?limit=3", ""); rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("GET /cluster/ranges with a parameter: %d %s", rec.Code, rec.Body)
	}
	plain, _ := newTestAPI(t, Config{})
	if rec := serveString(plain, "GET", "/cluster/ranges", ""); rec.Code != http.StatusNotImplemented {
		t.Fatalf("a backend without ranges: %d %s", rec.Code, rec.Body)
	}
}
