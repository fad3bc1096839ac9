package httpapi

import (
	"net/http"
	"strings"
)

// Route names the endpoint r is for, as its path template: "/key/{key}",
// "/cluster/members/{id}", "/cluster/members/{id}/promote",
// "/auth/users/{name}" (served with Config.Auth only), or the path
// itself for the endpoints without a variable part ("/keys", "/txn",
// "/cluster/status", ...), and "other" for a path the API does not serve.
// It is for labels of metrics: it never returns text from the request
// beyond these, so a key never becomes a label value. The method plays no
// part: a wrong one is still this route (answered 405).
func Route(r *http.Request) string {
	path := escapedPath(r.URL)
	if strings.HasPrefix(path, keyPrefix) {
		return "/key/{key}"
	}
	if rest, ok := strings.CutPrefix(path, membersPrefix); ok {
		id, action, _ := strings.Cut(rest, "/")
		switch {
		case id == "":
			return "other"
		case action == "":
			return "/cluster/members/{id}"
		case action == "promote":
			return "/cluster/members/{id}/promote"
		}
		return "other"
	}
	if rest, ok := strings.CutPrefix(path, authPrefix); ok {
		return authRoute(rest)
	}
	switch path {
	case "/keys", txnPath, "/cluster/status", "/cluster/ranges", "/cluster/members", "/cluster/leader/transfer",
		"/request_status", "/deduplication_stats", "/cluster_status", "/segments",
		"/compaction/status", "/compaction/run", "/compaction/configure", "/compact", "/watch",
		"/healthz", "/readyz", "/backup":
		return path
	case uiPath, uiPath + "/":
		return uiPath
	}
	return "other"
}
