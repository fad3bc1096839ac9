package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/distkv/distkv/internal/kv"
)

// RevisionReader is implemented by a Backend that keeps the versions of
// keys by revision (the multi-version state) and so reads the database as
// it was at a revision, across ranges.
type RevisionReader interface {
	// Revision returns the cluster's current revision: at or above that of
	// every write acknowledged before the call, below that of every write
	// that starts after it returned.
	Revision(ctx context.Context) (int64, error)
	// ScanRevision returns a revision at which a scan of start <= key <
	// end (end empty: unbounded) that starts now is linearizable: the
	// current revision, or a cheaper one that serves as well for these
	// keys (that of the one range that holds them all).
	ScanRevision(ctx context.Context, start, end []byte) (int64, error)
	// GetAt reads key as it was at rev; an error wrapping kv.ErrCompacted
	// (a *kv.CompactedError) if rev is compacted.
	GetAt(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error)
	// RangeAt is Backend.Range as the database was at rev.
	RangeAt(ctx context.Context, start, end []byte, limit int, rev int64) ([]kv.KeyValue, bool, error)
	// CompactHistory compacts every range to rev: the versions no read at
	// rev or later needs are dropped, and reads below rev are refused.
	CompactHistory(ctx context.Context, rev int64) error
}

// revisionParam reads the query parameter revision: 0 if absent.
func revisionParam(q url.Values) (int64, *apiError) {
	rev, ok, aerr := queryInt(q, "revision")
	if aerr == nil && ok && rev < 1 {
		aerr = unprocessable("query parameter revision must be a positive integer, not %q", q.Get("revision"))
	}
	return rev, aerr
}

// revisionReader returns the backend's RevisionReader; without one it
// answers 501 and returns false.
func (h *handler) revisionReader(w http.ResponseWriter) (RevisionReader, bool) {
	rr, ok := h.backend.(RevisionReader)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node keeps no versions by revision: reads at a revision and POST /compact are not available")
	}
	return rr, ok
}

// pastRevision checks that rev is not above the cluster's current revision
// (a read there could not be final: writes still to come would take
// revisions at or below it). It answers 400 itself, or the backend's error,
// and returns false.
func (h *handler) pastRevision(ctx context.Context, w http.ResponseWriter, r *http.Request, rr RevisionReader, rev int64) bool {
	cur, err := rr.Revision(ctx)
	if err != nil {
		h.backendError(ctx, w, r, "revision", err, false)
		return false
	}
	if rev > cur {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("revision %d is in the future; the current revision is %d", rev, cur))
		return false
	}
	return true
}

// getAtRevision answers GET /key/{key}?revision=R: the key as it was at R.
func (h *handler) getAtRevision(w http.ResponseWriter, r *http.Request, key []byte, rev int64) {
	rr, ok := h.revisionReader(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	if !h.pastRevision(ctx, w, r, rr, rev) {
		return
	}
	kvp, found, err := rr.GetAt(ctx, key, rev)
	if err != nil {
		h.backendError(ctx, w, r, "get", err, false)
		return
	}
	now := h.now().UnixNano()
	if !found || kvp.Expired(now) {
		// Past its deadline, a key is gone to readers at every revision.
		writeJSON(w, http.StatusNotFound, bodyKeyNotFound)
		return
	}
	buf := getBuf()
	*buf = appendKeyValue(*buf, key, kvp, now)
	writeJSON(w, http.StatusOK, *buf)
	putBuf(buf)
}

// compactHistory answers POST /compact {"revision":R}: every range drops the
// versions no read at R or later needs, and refuses reads below R from then
// on. Answer: 200 {"revision":R}. R above the current revision is 400.
func (h *handler) compactHistory(w http.ResponseWriter, r *http.Request) {
	if !noParams(w, r, "POST /compact") {
		return
	}
	var body struct {
		Revision *int64 `json:"revision"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || dec.More() {
		writeError(w, http.StatusUnprocessableEntity, `the body must be {"revision":R}, R the revision to compact to`+jsonErrorDetail(err))
		return
	}
	if body.Revision == nil || *body.Revision < 1 {
		writeError(w, http.StatusUnprocessableEntity, `"revision" must be a positive integer: the revision to compact to`)
		return
	}
	rev := *body.Revision
	rr, ok := h.revisionReader(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	if !h.pastRevision(ctx, w, r, rr, rev) {
		return
	}
	if err := rr.CompactHistory(ctx, rev); err != nil {
		h.backendError(ctx, w, r, "compact", err, true)
		return
	}
	b := strconv.AppendInt([]byte(`{"revision":`), rev, 10)
	writeJSON(w, http.StatusOK, append(b, '}'))
}

// jsonErrorDetail is ": " and err's text, or "" without one.
func jsonErrorDetail(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}
