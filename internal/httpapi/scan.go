package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strconv"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/ranges"
)

// prefixEnd returns the smallest key greater than every key with prefix p; nil
// (unbounded) if there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] != 0xff {
			end := bytes.Clone(p[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

// scanRange is the intersection of the key ranges a scan request asks for:
// start <= key < end, with end nil meaning unbounded.
type scanRange struct {
	start, end   []byte
	limit        int
	linearizable bool
	// rev is the revision to read at: asked for, or carried by the continue
	// token; 0 to fix the current one (a linearizable scan) or to read each
	// range's local state (a stale one).
	rev int64
}

func (h *handler) parseScan(r *http.Request) (scanRange, *apiError) {
	sr := scanRange{limit: h.cfg.DefaultScanLimit, linearizable: true}
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, "GET /keys", paramsScan)
	}
	if aerr != nil || q == nil {
		return sr, aerr
	}
	param := func(name string) []byte {
		if aerr != nil {
			return nil
		}
		s, ok, err := queryParam(q, name)
		if err != nil {
			aerr = err
		}
		if !ok || s == "" {
			return nil
		}
		return []byte(s)
	}
	prefix, start, end, tok := param("prefix"), param("start"), param("end"), param("continue")
	limit := param("limit")
	if aerr != nil {
		return sr, aerr
	}
	if sr.linearizable, aerr = consistency(q); aerr != nil {
		return sr, aerr
	}
	if limit != nil {
		n, err := strconv.Atoi(string(limit))
		if err != nil || n < 1 || n > h.cfg.MaxScanLimit {
			return sr, unprocessable("query parameter limit must be an integer from 1 to %d, not %q", h.cfg.MaxScanLimit, limit)
		}
		sr.limit = n
	}
	sr.start, sr.end = start, end
	if prefix != nil {
		if bytes.Compare(prefix, sr.start) > 0 {
			sr.start = prefix
		}
		if pe := prefixEnd(prefix); pe != nil && (sr.end == nil || bytes.Compare(pe, sr.end) < 0) {
			sr.end = pe
		}
	}
	if sr.rev, aerr = revisionParam(q); aerr != nil {
		return sr, aerr
	}
	if tok != nil {
		from, rev, err := ranges.DecodeToken(string(tok))
		if err != nil {
			return sr, unprocessable("query parameter continue is not a continuation token returned by this API (%v)", err)
		}
		switch {
		case rev != 0 && sr.rev != 0 && rev != sr.rev:
			return sr, unprocessable("the continue token reads at revision %d, not at the revision %d asked for", rev, sr.rev)
		case rev != 0 && !sr.linearizable:
			return sr, unprocessable("the continue token is of a scan at revision %d; consistency=stale cannot continue it", rev)
		case rev != 0:
			sr.rev = rev
		}
		if bytes.Compare(from, sr.start) > 0 {
			sr.start = from
		}
	}
	if sr.rev != 0 && !sr.linearizable {
		return sr, unprocessable("consistency=stale cannot be combined with revision: a read at a revision is made once that revision is final on each range, as a linearizable read")
	}
	return sr, nil
}

func (h *handler) scan(w http.ResponseWriter, r *http.Request) {
	sr, aerr := h.parseScan(r)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if !h.mayRange(w, r, sr.start, sr.end) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	// A linearizable scan reads at one revision, the current one unless
	// asked for or continued, so that its pages, across ranges, show one
	// moment of the database; a stale scan reads each range's local state.
	rr, atRev := h.backend.(RevisionReader)
	if sr.rev != 0 && !atRev {
		h.revisionReader(w)
		return
	}
	empty := sr.end != nil && bytes.Compare(sr.start, sr.end) >= 0
	atRev = atRev && sr.linearizable && !empty
	if atRev {
		if sr.rev == 0 {
			cur, err := rr.ScanRevision(ctx, sr.start, sr.end)
			if err != nil {
				h.backendError(ctx, w, r, "revision", err, false)
				return
			}
			sr.rev = cur
		} else if !h.pastRevision(ctx, w, r, rr, sr.rev) {
			return
		}
	}
	var kvs []kv.KeyValue
	var more bool
	if !empty {
		var err error
		if atRev {
			kvs, more, err = rr.RangeAt(ctx, sr.start, sr.end, sr.limit, sr.rev)
		} else {
			kvs, more, err = h.backend.Range(ctx, sr.start, sr.end, sr.limit, sr.linearizable)
		}
		if err != nil {
			h.backendError(ctx, w, r, "range", err, false)
			return
		}
	}
	if more && len(kvs) == 0 {
		h.log.Error("backend range reported more pairs but returned none")
		writeError(w, http.StatusInternalServerError, "internal error: range reported more pairs but returned none")
		return
	}
	var token string
	if more {
		token = ranges.EncodeToken(kvs[len(kvs)-1].Key, sr.rev)
	}
	now := h.now().UnixNano()
	// Keys past their deadline are gone to readers (see get), at any
	// revision; a page may so hold fewer than limit pairs while more follow.
	kvs = slices.DeleteFunc(kvs, func(p kv.KeyValue) bool { return p.Expired(now) })
	buf := getBuf()
	b := append(*buf, `{"kvs":[`...)
	for i, p := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKeyValue(b, p.Key, p, now)
	}
	// The prototype's clients read the names alone from "keys".
	b = append(b, `],"keys":[`...)
	for i, p := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p.Key)
	}
	b = append(b, `],"count":`...)
	b = strconv.AppendInt(b, int64(len(kvs)), 10)
	if more {
		b = append(b, `,"more":true,"continue":"`...)
		b = append(b, token...)
		b = append(b, '"')
	} else {
		b = append(b, `,"more":false`...)
	}
	if atRev {
		b = append(b, `,"revision":`...)
		b = strconv.AppendInt(b, sr.rev, 10)
	}
	b = append(b, '}')
	*buf = b
	writeJSON(w, http.StatusOK, b)
	putBuf(buf)
}
