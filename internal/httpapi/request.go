package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/distkv/distkv/internal/kv"
)

// apiError is a request that gets an error response: {"detail": detail}.
type apiError struct {
	code   int
	detail string
}

func (e *apiError) Error() string { return e.detail }

func unprocessable(format string, args ...any) *apiError {
	return &apiError{http.StatusUnprocessableEntity, fmt.Sprintf(format, args...)}
}

// conds is a write condition as the client spelled it, in the body or in the
// query string.
type conds struct {
	prevVersion, prevRevision       int64
	hasPrevVersion, hasPrevRevision bool
	createOnly, hasCreateOnly       bool
	// byVersion: the version condition came from the prototype's "version"
	// field of a PUT body (not prev_version).
	byVersion bool
}

// putBody is the decoded body of a PUT.
type putBody struct {
	value []byte
	kind  kv.ValueKind
	conds conds
	// ttl is the "ttl" field: seconds until the key expires, 1 to MaxTTL;
	// 0 when absent (the key then has no deadline).
	ttl int64
}

// MaxTTL is the largest "ttl" a PUT may give, in seconds: 10 years.
const MaxTTL = 10 * 365 * 24 * 3600

// errClientGone means the client went away while its request was read; nothing
// is written back.
var errClientGone = errors.New("client gone")

// readBody reads the whole request body, at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &apiError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body is %d bytes; the limit is %d bytes", r.ContentLength, limit)}
	}
	if r.Body == nil || r.ContentLength == 0 {
		return nil, nil
	}
	var buf []byte
	var err error
	if r.ContentLength > 0 {
		// net/http never returns more than Content-Length bytes, so no
		// MaxBytesReader is needed. The value usually aliases this buffer and
		// may be kept by the state machine, so it is sized exactly rather than
		// grown by doubling.
		buf = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, buf)
	} else {
		buf, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &apiError{http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body exceeds the limit of %d bytes", limit)}
		}
		if r.Context().Err() != nil {
			return nil, errClientGone
		}
		return nil, &apiError{http.StatusBadRequest, "reading request body: " + err.Error()}
	}
	return buf, nil
}

// putFields names the fields of a PUT body in error details.
const putFields = `"value", "ttl", "version", "prev_version", "prev_revision" and "create_only"`

// parsePutBody decodes {"value": "...", "version": n, "prev_version": n,
// "prev_revision": n, "create_only": b, "ttl": n}. "version" is the prototype's
// precondition (v1.5): the key's current version must be n, as prev_version
// says. An unknown field is refused, naming it; field names are
// case-sensitive and a repeated field takes its last value, as in the
// prototype.
func parsePutBody(b []byte) (putBody, *apiError) {
	var p putBody
	i := skipSpace(b, 0)
	if i == len(b) {
		return p, unprocessable(`request body is empty; expected a JSON object such as {"value":"..."}`)
	}
	if v, ok := plainPutValue(b, i); ok {
		p.value = v
		return p, nil
	}
	if !json.Valid(b) {
		var raw json.RawMessage
		err := json.Unmarshal(b, &raw)
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return p, unprocessable("request body is not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		return p, unprocessable("request body is not valid JSON: %v", err)
	}
	if b[i] != '{' {
		return p, unprocessable(`request body must be a JSON object such as {"value":"..."}, not %s`, kindOf(b[i:]))
	}
	var value, version, prevVersion, prevRevision, createOnly, ttl []byte
	for i++; ; {
		i = skipSpace(b, i)
		if b[i] == '}' {
			break
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		end := skipString(b, i)
		name := unquote(b[i:end])
		i = skipSpace(b, end) + 1 // past ':'
		i = skipSpace(b, i)
		end = skipValue(b, i)
		raw := b[i:end]
		i = end
		switch string(name) {
		case "value":
			value = raw
		case "version":
			version = raw
		case "prev_version":
			prevVersion = raw
		case "prev_revision":
			prevRevision = raw
		case "create_only":
			createOnly = raw
		case "ttl":
			ttl = raw
		default:
			return p, unprocessable("request body has an unknown field %q; a PUT body has %s", name, putFields)
		}
	}
	if value == nil {
		return p, unprocessable(`request body has no "value" field; expected a JSON object such as {"value":"..."}`)
	}
	var err *apiError
	if p.value, p.kind, err = decodeValue(`"value"`, value); err != nil {
		return p, err
	}
	if p.conds.prevVersion, p.conds.hasPrevVersion, err = bodyInt("prev_version", prevVersion); err != nil {
		return p, err
	}
	v, hasV, err := bodyInt("version", version)
	switch {
	case err != nil:
		return p, err
	case hasV && p.conds.hasPrevVersion && v != p.conds.prevVersion:
		return p, unprocessable(`"version" is %d but "prev_version" is %d; both name the version the key must be at`, v, p.conds.prevVersion)
	case hasV:
		p.conds.prevVersion, p.conds.hasPrevVersion, p.conds.byVersion = v, true, !p.conds.hasPrevVersion
	}
	if p.conds.prevRevision, p.conds.hasPrevRevision, err = bodyInt("prev_revision", prevRevision); err != nil {
		return p, err
	}
	if p.ttl, err = bodyTTL(ttl); err != nil {
		return p, err
	}
	if createOnly != nil {
		switch string(createOnly) {
		case "true":
			p.conds.createOnly, p.conds.hasCreateOnly = true, true
		case "false":
			p.conds.hasCreateOnly = true
		case "null":
		default:
			return p, unprocessable(`"create_only" must be a boolean, not %s`, kindOf(createOnly))
		}
	}
	return p, nil
}

// plainPutValue recognises, from b[i] on (b[:i] is JSON whitespace), the body
// nearly every PUT sends: {"value":"..."} and nothing else but whitespace
// between the tokens, the string holding only printable ASCII and no escape.
// It returns the string's contents, as parsePutBody's general path would, in
// one pass and without json.Valid; false sends every other body down that
// path.
func plainPutValue(b []byte, i int) ([]byte, bool) {
	const name = `"value"`
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if !bytes.HasPrefix(b[i:], []byte(name)) {
		return nil, false
	}
	i = skipSpace(b, i+len(name))
	if i >= len(b) || b[i] != ':' {
		return nil, false
	}
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] != '"' {
		return nil, false
	}
	start := i + 1
	for i = start; i < len(b) && b[i] != '"'; i++ {
		if c := b[i]; c < 0x20 || c >= utf8.RuneSelf || c == '\\' {
			return nil, false
		}
	}
	if i >= len(b) {
		return nil, false
	}
	value := b[start:i]
	i = skipSpace(b, i+1)
	if i >= len(b) || b[i] != '}' {
		return nil, false
	}
	if skipSpace(b, i+1) != len(b) {
		return nil, false
	}
	return value, true
}

// decodeValue decodes raw, the well-formed JSON value of a value field (what
// names it in details), as the prototype's `value: Any` takes it: a string is
// the byte string it holds (kv.KindString); any other JSON value (number,
// object, array, boolean, null) is kept as its compact text (kv.KindJSON,
// see appendCompact).
func decodeValue(what string, raw []byte) ([]byte, kv.ValueKind, *apiError) {
	if raw[0] == '"' {
		return unquote(raw), kv.KindString, nil
	}
	v, deep := appendCompact(make([]byte, 0, len(raw)), raw)
	if deep != nil {
		return nil, 0, unprocessable("%s is nested more than %d levels deep (arrays and objects within one another); the limit is %d",
			what, maxValueDepth, maxValueDepth)
	}
	return v, kv.KindJSON, nil
}

// bodyInt interprets the raw JSON value of a condition field; null means absent.
func bodyInt(name string, raw []byte) (int64, bool, *apiError) {
	if raw == nil || string(raw) == "null" {
		return 0, false, nil
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, false, unprocessable(`%q must be a non-negative integer, not %s`, name, kindOf(raw))
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return 0, false, unprocessable(`%q must be a non-negative integer, not %s`, name, raw)
	}
	return n, true, nil
}

// bodyTTL decodes a PUT body's "ttl": a whole number of seconds from 1 to
// MaxTTL (0 when absent or null).
func bodyTTL(raw []byte) (int64, *apiError) {
	if raw == nil || string(raw) == "null" {
		return 0, nil
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, unprocessable(`"ttl" must be a whole number of seconds from 1 to %d, not %s`, MaxTTL, kindOf(raw))
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 1 || n > MaxTTL {
		return 0, unprocessable(`"ttl" must be a whole number of seconds from 1 to %d, not %s`, MaxTTL, raw)
	}
	return n, nil
}

// parseQuery parses the query string; nil when there is none.
func parseQuery(r *http.Request) (url.Values, *apiError) {
	if r.URL.RawQuery == "" {
		return nil, nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, unprocessable("malformed query string: %v", err)
	}
	return q, nil
}

// queryParam returns the single value of query parameter name.
func queryParam(q url.Values, name string) (string, bool, *apiError) {
	vs, ok := q[name]
	if !ok {
		return "", false, nil
	}
	if len(vs) != 1 {
		return "", false, unprocessable("query parameter %s is given %d times", name, len(vs))
	}
	return vs[0], true, nil
}

// queryConds reads prev_version, prev_revision and create_only from the query.
func queryConds(q url.Values) (conds, *apiError) {
	var c conds
	if q == nil {
		return c, nil
	}
	var err *apiError
	if c.prevVersion, c.hasPrevVersion, err = queryInt(q, "prev_version"); err != nil {
		return c, err
	}
	if c.prevRevision, c.hasPrevRevision, err = queryInt(q, "prev_revision"); err != nil {
		return c, err
	}
	s, ok, err := queryParam(q, "create_only")
	if err != nil || !ok {
		return c, err
	}
	b, perr := strconv.ParseBool(s)
	if perr != nil {
		return c, unprocessable("query parameter create_only must be true or false, not %q", s)
	}
	c.createOnly, c.hasCreateOnly = b, true
	return c, nil
}

// queryInt reads a non-negative integer query parameter.
func queryInt(q url.Values, name string) (int64, bool, *apiError) {
	s, ok, err := queryParam(q, name)
	if err != nil || !ok {
		return 0, false, err
	}
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil || n < 0 {
		return 0, false, unprocessable("query parameter %s must be a non-negative integer, not %q", name, s)
	}
	return n, true, nil
}

// mergeConds combines the conditions of the body and of the query string; a
// condition given in both must have the same value in both.
func mergeConds(body, query conds) (kv.Cond, *apiError) {
	var c kv.Cond
	var err *apiError
	if c.PrevVersion, err = mergeInt("prev_version", body.prevVersion, query.prevVersion, body.hasPrevVersion, query.hasPrevVersion); err != nil {
		return c, err
	}
	if c.PrevRevision, err = mergeInt("prev_revision", body.prevRevision, query.prevRevision, body.hasPrevRevision, query.hasPrevRevision); err != nil {
		return c, err
	}
	if body.hasCreateOnly && query.hasCreateOnly && body.createOnly != query.createOnly {
		return c, unprocessable("create_only is %t in the body but %t in the query string", body.createOnly, query.createOnly)
	}
	c.CreateOnly = body.createOnly || query.createOnly
	return c, nil
}

// mergeInt merges one integer condition; nil when neither side gives it.
func mergeInt(name string, bv, qv int64, bok, qok bool) (*int64, *apiError) {
	switch {
	case bok && qok && bv != qv:
		return nil, unprocessable("%s is %d in the body but %d in the query string", name, bv, qv)
	case bok:
		p := new(int64)
		*p = bv
		return p, nil
	case qok:
		p := new(int64)
		*p = qv
		return p, nil
	}
	return nil, nil
}
