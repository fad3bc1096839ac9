package httpapi

import (
	_ "embed"
	"net/http"
)

// uiPath is the dashboard's path. It takes any query string: the 422 rule
// for unknown parameters is the API's, and the page is not part of it.
const uiPath = "/ui"

// uiPage is the dashboard: one HTML page with its CSS and script inline, so
// the binary serves it with no external asset. Its script reads this node's
// GET /cluster/status and GET /metrics every 1.5 s (same origin, so no CORS)
// and shows the members as this node sees them; match index and lag are
// known on the leader only, and on a follower the page links to the
// leader's dashboard at its advertised HTTP address.
//
//go:embed ui/index.html
var uiPage []byte

// serveUI answers GET and HEAD of /ui and /ui/ with the dashboard.
func serveUI(w http.ResponseWriter, r *http.Request) {
	if !methodGet(w, r) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// The page loads nothing from elsewhere; say so to the browser.
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(uiPage)
	}
}
