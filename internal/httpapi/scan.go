package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"

	"github.com/distkv/distkv/internal/kv"
)

// tokenVersion is the first byte of every continuation token, so that the
// format can change without old tokens being misread.
const tokenVersion = 1

// encodeToken returns the continuation token of a scan that resumes at the
// smallest key after last.
func encodeToken(last []byte) string {
	raw := make([]byte, 0, len(last)+2)
	raw = append(raw, tokenVersion)
	raw = append(raw, last...)
	raw = append(raw, 0)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// decodeToken returns the key at which the scan resumes.
func decodeToken(tok string) ([]byte, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 2 || raw[0] != tokenVersion {
		return nil, false
	}
	return raw[1:], true
}

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
	if tok != nil {
		from, ok := decodeToken(string(tok))
		if !ok {
			return sr, unprocessable("query parameter continue is not a continuation token returned by this API")
		}
		if bytes.Compare(from, sr.start) > 0 {
			sr.start = from
		}
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
	var kvs []kv.KeyValue
	var more bool
	if sr.end == nil || bytes.Compare(sr.start, sr.end) < 0 {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
		defer cancel()
		var err error
		kvs, more, err = h.backend.Range(ctx, sr.start, sr.end, sr.limit, sr.linearizable)
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
		token = encodeToken(kvs[len(kvs)-1].Key)
	}
	now := h.now().UnixNano()
	// Keys past their deadline are gone to readers (see get); a page may
	// so hold fewer than limit pairs while more follow.
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
		b = append(b, `"}`...)
	} else {
		b = append(b, `,"more":false}`...)
	}
	*buf = b
	writeJSON(w, http.StatusOK, b)
	putBuf(buf)
}
