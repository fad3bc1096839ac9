package httpapi

import (
	"context"
	"net/http"
	"strconv"
)

// history answers the prototype's version endpoints from what this node
// retains, which is the latest version of each key only (multi-version
// history is not kept yet):
//
//	GET /key/{key}/history   {"key":k,"versions":[v],"history":[{"version":v,"value":..}]}
//	GET /key/{key}/versions  {"key":k,"versions":[v],"latest_version":v}
//
// A missing key is 404 {"detail":"Key not found"}.
func (h *handler) history(w http.ResponseWriter, r *http.Request, key []byte, endpoint string) {
	_, linearizable, ok := readQuery(w, r, "GET /key/{key}"+endpoint, paramsHistory)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	kvp, _, ok := h.getLive(ctx, w, r, key, linearizable)
	if !ok {
		return
	}
	buf := getBuf()
	b := append(*buf, `{"key":`...)
	b = appendString(b, key)
	b = append(b, `,"versions":[`...)
	b = strconv.AppendInt(b, kvp.Version, 10)
	b = append(b, ']')
	if endpoint == historySuffix {
		b = append(b, `,"history":[{"version":`...)
		b = strconv.AppendInt(b, kvp.Version, 10)
		b = append(b, `,"value":`...)
		b = appendValue(b, kvp.Value, kvp.Kind)
		b = append(b, `}]}`...)
	} else {
		b = append(b, `,"latest_version":`...)
		b = strconv.AppendInt(b, kvp.Version, 10)
		b = append(b, '}')
	}
	*buf = b
	writeJSON(w, http.StatusOK, b)
	putBuf(buf)
}
