package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The query parameters of each endpoint. A request with any other is refused
// with 422 naming it: a parameter the API does not know is a request it does
// not understand, and answering it as if the parameter were absent could do
// something other than what the client meant (a misspelt prev_version makes
// an unconditional write).
var (
	paramsGet           = []string{"consistency", "version", "revision", "client_id", "request_id"}
	paramsHistory       = []string{"consistency"}
	paramsPut           = []string{"prev_version", "prev_revision", "create_only", "client_id", "request_id"}
	paramsDelete        = []string{"prev_version", "prev_revision", "create_only", "client_id", "request_id"}
	paramsScan          = []string{"prefix", "start", "end", "limit", "continue", "consistency", "revision"}
	paramsTxn           = []string{"client_id", "request_id"}
	paramsRequestStatus = []string{"client_id", "request_id", "operation", "consistency"}
	paramsNone          = []string(nil)
)

// checkParams refuses a query parameter of q that is not in allowed; what
// names the endpoint in the detail ("GET /key/{key}").
func checkParams(q url.Values, what string, allowed []string) *apiError {
	if len(q) == 0 {
		return nil
	}
	var unknown []string
	for name := range q {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	takes := "takes no query parameters"
	if len(allowed) > 0 {
		takes = "takes " + joinAnd(allowed)
	}
	return unprocessable("unknown query parameter %q; %s %s", unknown[0], what, takes)
}

// joinAnd joins names as "a, b and c".
func joinAnd(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// noParams answers 422 and returns false if r has a query string, which the
// endpoint what does not take; the detail names the first parameter.
func noParams(w http.ResponseWriter, r *http.Request, what string) bool {
	if r.URL.RawQuery == "" {
		return true
	}
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, what, paramsNone)
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return false
	}
	return true
}
