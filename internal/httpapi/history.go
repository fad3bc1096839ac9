package httpapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/distkv/distkv/internal/kv"
)

// history answers the prototype's version endpoints from the versions the
// key's range retains (its multi-version state, until compaction) since the
// key was last created, oldest first:
//
//	GET /key/{key}/history   {"key":k,"versions":[1,2],"history":[{"version":1,"value":..},{"version":2,"value":..}]}
//	GET /key/{key}/versions  {"key":k,"versions":[1,2],"latest_version":2}
//
// A missing key (or one past its deadline) is 404 {"detail":"Key not found"}.
func (h *handler) history(w http.ResponseWriter, r *http.Request, key []byte, endpoint string) {
	_, linearizable, ok := readQuery(w, r, "GET /key/{key}"+endpoint, paramsHistory)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	vs, ok := h.versions(ctx, w, r, key, linearizable)
	if !ok {
		return
	}
	buf := getBuf()
	b := append(*buf, `{"key":`...)
	b = appendString(b, key)
	b = append(b, `,"versions":[`...)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, v.Version, 10)
	}
	b = append(b, ']')
	if endpoint == historySuffix {
		b = append(b, `,"history":[`...)
		for i, v := range vs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"version":`...)
			b = strconv.AppendInt(b, v.Version, 10)
			b = append(b, `,"value":`...)
			b = appendValue(b, v.Value, v.Kind)
			b = append(b, '}')
		}
		b = append(b, `]}`...)
	} else {
		b = append(b, `,"latest_version":`...)
		b = strconv.AppendInt(b, vs[len(vs)-1].Version, 10)
		b = append(b, '}')
	}
	*buf = b
	writeJSON(w, http.StatusOK, b)
	putBuf(buf)
}

// versions reads the retained versions of key's current life, oldest first.
// If the key is missing or past its deadline, or the backend fails, it
// answers the request itself and returns false.
func (h *handler) versions(ctx context.Context, w http.ResponseWriter, r *http.Request, key []byte, linearizable bool) ([]kv.KeyValue, bool) {
	vs, err := h.backend.Versions(ctx, key, linearizable)
	if err != nil {
		h.backendError(ctx, w, r, "get", err, false)
		return nil, false
	}
	if len(vs) == 0 || vs[len(vs)-1].Expired(h.now().UnixNano()) {
		writeJSON(w, http.StatusNotFound, bodyKeyNotFound)
		return nil, false
	}
	return vs, true
}
