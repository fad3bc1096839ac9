package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// TestUI checks that /ui serves the embedded page, whatever the query
// string (the API's 422 for unknown parameters does not apply), that it
// loads nothing from another origin, and that other methods get 405.
func TestUI(t *testing.T) {
	h, _ := newTestAPI(t, Config{})
	for _, target := range []string{"/ui", "/ui/", "/ui?refresh=1"} {
		rec := serve(h, http.MethodGet, target, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q", target, ct)
		}
		body := rec.Body.String()
		for _, want := range []string{"<title>distkv</title>", `fetch("/cluster/status"`, `fetch("/metrics"`} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: page lacks %q", target, want)
			}
		}
		for _, external := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(body, external) && !strings.Contains(body, `"http://" + lead.http`) {
				t.Errorf("GET %s: page refers to %q", target, external)
			}
		}
	}
	if rec := serve(h, http.MethodHead, "/ui", nil); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD /ui: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if rec := serve(h, http.MethodPost, "/ui", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui: %d", rec.Code)
	}
	if got := Route(mustRequest(t, "/ui")); got != "/ui" {
		t.Errorf("Route(/ui) = %q", got)
	}
}

func mustRequest(t *testing.T, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
