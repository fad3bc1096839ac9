package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/lattrace"
)

// The suffixes of the prototype's version endpoints, GET /key/{key}/history
// and /versions. They are recognised in the path as the client escaped it,
// so a key that itself ends in "/history" is addressed with its last slash
// percent-encoded: /key/notes%2Fhistory.
const (
	historySuffix  = "/history"
	versionsSuffix = "/versions"
)

// serveKey serves /key/{key}, /key/{key}/history and /key/{key}/versions;
// escKey is the escaped path after "/key/".
func (h *handler) serveKey(w http.ResponseWriter, r *http.Request, escKey string) {
	endpoint := ""
	for _, suffix := range []string{historySuffix, versionsSuffix} {
		if base, ok := strings.CutSuffix(escKey, suffix); ok {
			escKey, endpoint = base, suffix
			break
		}
	}
	switch {
	case endpoint != "":
		if !methodGet(w, r) {
			return
		}
	case r.Method == http.MethodGet, r.Method == http.MethodHead, r.Method == http.MethodPut, r.Method == http.MethodDelete:
	default:
		methodNotAllowed(w, allowKey)
		return
	}
	key, ok := unescapeKey(escKey)
	switch {
	case !ok:
		writeError(w, http.StatusBadRequest, "key has a malformed percent-encoding")
		return
	case len(key) == 0:
		writeError(w, http.StatusBadRequest, "key must not be empty")
		return
	case len(key) > h.cfg.MaxKeySize:
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("key is %d bytes; the limit is %d bytes", len(key), h.cfg.MaxKeySize))
		return
	}
	if !h.mayKey(w, r, key, r.Method == http.MethodPut || r.Method == http.MethodDelete) {
		return
	}
	if endpoint != "" {
		h.history(w, r, key, endpoint)
		return
	}
	switch r.Method {
	case http.MethodPut:
		h.put(w, r, key)
	case http.MethodDelete:
		h.delete(w, r, key)
	default:
		h.get(w, r, key)
	}
}

// readQuery parses the query of a read of what, which may carry the
// parameters allowed, and its consistency. A bad query is answered here,
// and ok is false.
func readQuery(w http.ResponseWriter, r *http.Request, what string, allowed []string) (q url.Values, linearizable, ok bool) {
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, what, allowed)
	}
	if aerr == nil {
		linearizable, aerr = consistency(q)
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return nil, false, false
	}
	return q, linearizable, true
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, key []byte) {
	q, linearizable, ok := readQuery(w, r, "GET /key/{key}", paramsGet)
	if !ok {
		return
	}
	version, hasVersion, aerr := queryInt(q, "version")
	if aerr == nil && hasVersion && version < 1 {
		aerr = unprocessable("query parameter version must be a positive integer, not %q", q.Get("version"))
	}
	var rev int64
	if aerr == nil {
		rev, aerr = revisionParam(q)
	}
	switch {
	case aerr != nil:
	case rev > 0 && hasVersion:
		aerr = unprocessable("query parameters version and revision both choose the version to read: give one")
	case rev > 0 && !linearizable:
		aerr = unprocessable("consistency=stale cannot be combined with revision: a read at a revision is made once that revision is final on the range, as a linearizable read")
	}
	if aerr == nil {
		// A read's ids are checked but not recorded: a read has no effect
		// to apply once, and is answered from the current state.
		_, aerr = requestID(r, q)
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if rev > 0 {
		h.getAtRevision(w, r, key, rev)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	if hasVersion {
		h.getVersion(ctx, w, r, key, version, linearizable)
		return
	}
	kvp, now, ok := h.getLive(ctx, w, r, key, linearizable)
	if !ok {
		return
	}
	buf := getBuf()
	*buf = appendKeyValue(*buf, key, kvp, now)
	writeJSON(w, http.StatusOK, *buf)
	putBuf(buf)
}

// getVersion answers GET /key/{key}?version=N, the prototype's read of one
// version, from the versions retained since the key was last created: 404
// with a detail that says why when version N is not among them.
func (h *handler) getVersion(ctx context.Context, w http.ResponseWriter, r *http.Request, key []byte, version int64, linearizable bool) {
	vs, ok := h.versions(ctx, w, r, key, linearizable)
	if !ok {
		return
	}
	for _, v := range vs {
		if v.Version == version {
			buf := getBuf()
			*buf = appendKeyValue(*buf, key, v, h.now().UnixNano())
			writeJSON(w, http.StatusOK, *buf)
			putBuf(buf)
			return
		}
	}
	writeError(w, http.StatusNotFound, versionNotRetained(key, version, vs[0].Version, vs[len(vs)-1].Version))
}

// getLive reads key for a GET and returns it with the time it was judged
// live at (Unix nanoseconds). Otherwise it answers the request itself (404
// for a key that is missing or past its deadline, or the backend's error)
// and returns false.
func (h *handler) getLive(ctx context.Context, w http.ResponseWriter, r *http.Request, key []byte, linearizable bool) (kv.KeyValue, int64, bool) {
	kvp, found, err := h.backend.Get(ctx, key, linearizable)
	if err != nil {
		h.backendError(ctx, w, r, "get", err, false)
		return kv.KeyValue{}, 0, false
	}
	now := h.now().UnixNano()
	if !found || kvp.Expired(now) {
		// Past its deadline, the key is gone to readers already, though
		// the entry that deletes it may not be applied yet.
		writeJSON(w, http.StatusNotFound, bodyKeyNotFound)
		return kv.KeyValue{}, 0, false
	}
	return kvp, now, true
}

// appendKeyValue appends {"key":..,"value":..,"version":..,"revision":..},
// and "ttl": the whole seconds left until its deadline at now (Unix
// nanoseconds), rounded up, if the key has one.
func appendKeyValue(b, key []byte, kvp kv.KeyValue, now int64) []byte {
	b = append(b, `{"key":`...)
	b = appendString(b, key)
	b = append(b, `,"value":`...)
	b = appendValue(b, kvp.Value, kvp.Kind)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, kvp.Version, 10)
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, kvp.Revision, 10)
	if kvp.Deadline != 0 {
		b = append(b, `,"ttl":`...)
		b = strconv.AppendInt(b, remainingTTL(kvp.Deadline, now), 10)
	}
	return append(b, '}')
}

// remainingTTL returns the whole seconds from now until deadline (Unix
// nanoseconds), rounded up, and at least 0.
func remainingTTL(deadline, now int64) int64 {
	if deadline <= now {
		return 0
	}
	left := deadline - now
	return left/int64(time.Second) + min(1, left%int64(time.Second))
}

func (h *handler) put(w http.ResponseWriter, r *http.Request, key []byte) {
	lattrace.Mark(lattrace.HTTPPut, 0, 0)
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, "PUT /key/{key}", paramsPut)
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	qc, aerr := queryConds(q)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	body, err := readBody(w, r, h.bodyLimit)
	if err != nil {
		if ae, ok := err.(*apiError); ok {
			writeAPIError(w, ae)
		}
		return // errClientGone
	}
	p, aerr := parsePutBody(body)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if len(p.value) > h.cfg.MaxValueSize {
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("value is %d bytes; the limit is %d bytes", len(p.value), h.cfg.MaxValueSize))
		return
	}
	cond, aerr := mergeConds(p.conds, qc)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	id, aerr := requestID(r, q)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	value := p.value
	if cap(value)-len(value) > len(value)/8+512 {
		// The value aliases a buffer much larger than itself (a body read
		// without Content-Length, or a heavily escaped one); the state machine
		// may keep it, so it gets its own.
		value = bytes.Clone(value)
	}
	cmd := kv.Command{Op: kv.OpPut, Key: key, Value: value[:len(value):len(value)], Kind: p.kind, Cond: cond, Request: id}
	if p.ttl > 0 {
		// The deadline is fixed here, by this node's clock, and goes into
		// the log: every replica, and a restart, keeps the same one.
		cmd.Deadline = h.now().Add(time.Duration(p.ttl) * time.Second).UnixNano()
	}
	h.propose(w, r, cmd, p.conds.byVersion)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request, key []byte) {
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, "DELETE /key/{key}", paramsDelete)
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	qc, aerr := queryConds(q)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	if qc.createOnly {
		writeError(w, http.StatusUnprocessableEntity, "create_only cannot hold for a DELETE: it requires that the key does not exist")
		return
	}
	cond, aerr := mergeConds(conds{}, qc)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	id, aerr := requestID(r, q)
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	h.propose(w, r, kv.Command{Op: kv.OpDelete, Key: key, Cond: cond, Request: id}, false)
}

// propose replicates cmd (unless its request id was applied before; see
// execute) and answers with its outcome. byVersion says that the PUT's
// version condition came from the prototype's "version" field, so that a
// conflict on it is answered in the prototype's shape as well.
func (h *handler) propose(w http.ResponseWriter, r *http.Request, cmd kv.Command, byVersion bool) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	res, ok := h.execute(ctx, w, r, &cmd)
	if !ok {
		return
	}
	buf := getBuf()
	var code int
	*buf, code = appendWriteAnswer(*buf, cmd.Key, res, &cmd.Cond, byVersion)
	if code == http.StatusInternalServerError {
		h.log.Error("backend returned an unknown result status", "op", cmd.Op.String(), "status", res.Status)
	}
	writeJSON(w, code, *buf)
	lattrace.Mark(lattrace.HTTPAnswered, 0, 0)
	putBuf(buf)
}

// appendWriteAnswer appends the answer to a PUT or DELETE of key whose
// outcome is res, and returns its status code. cond is the write's condition
// (nil when unknown, as for a recorded outcome) and byVersion says it came
// from a PUT body's "version".
func appendWriteAnswer(b, key []byte, res kv.Result, cond *kv.Cond, byVersion bool) ([]byte, int) {
	switch res.Status {
	case kv.StatusOK:
		b = append(b, `{"status":"ok","id":`...)
		b = strconv.AppendInt(b, res.Revision, 10)
		if res.Version != 0 {
			// A put's answer: the prototype's since its v1.5 (versioned values).
			b = append(b, `,"key":`...)
			b = appendString(b, key)
			b = append(b, `,"version":`...)
			b = strconv.AppendInt(b, res.Version, 10)
		}
		return append(b, '}'), http.StatusOK
	case kv.StatusNotFound:
		return append(b, bodyKeyNotFound...), http.StatusNotFound
	case kv.StatusConflict:
		b = append(b, `{"detail":`...)
		if cond != nil {
			b = appendStr(b, conflictDetail(*cond, res.Current, byVersion))
		} else {
			b = appendStr(b, conflictState(res.Current))
		}
		if cond != nil && byVersion && cond.PrevVersion != nil && *cond.PrevVersion != res.Current.Version {
			// The prototype's (v1.5) conflict answer, beside distkv's.
			b = append(b, `,"status":"error","message":`...)
			b = appendStr(b, versionConflictMessage(*cond.PrevVersion, res.Current.Version))
			b = append(b, `,"current_version":`...)
			b = strconv.AppendInt(b, res.Current.Version, 10)
		}
		b = append(b, `,"key":`...)
		b = appendString(b, key)
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, res.Current.Version, 10)
		b = append(b, `,"revision":`...)
		b = strconv.AppendInt(b, res.Current.Revision, 10)
		return append(b, '}'), http.StatusConflict
	case kv.StatusAnswerNotKept:
		return appendNotKept(b, res), http.StatusConflict
	}
	b = append(b, `{"detail":`...)
	b = appendStr(b, res.Err().Error())
	return append(b, '}'), http.StatusInternalServerError
}

// conflictState is the detail of a failed condition that is not known (the
// recorded outcome of a request): the key's state when it failed.
func conflictState(cur kv.KeyValue) string {
	if cur.Version == 0 {
		return kv.ErrConflict.Error() + "; the key did not exist"
	}
	return fmt.Sprintf("%s; the key's version was %d and its revision %d", kv.ErrConflict, cur.Version, cur.Revision)
}

// conflictDetail says which condition of c failed against the key's current
// state cur (Version 0: the key does not exist). byVersion names the version
// condition "version", the field of the prototype's PUT body it came from.
func conflictDetail(c kv.Cond, cur kv.KeyValue, byVersion bool) string {
	versionName := "prev_version"
	if byVersion {
		versionName = "version"
	}
	prefix := kv.ErrConflict.Error() + ": "
	state := func(what string, n int64) string {
		if cur.Version == 0 {
			return "the key does not exist"
		}
		return fmt.Sprintf("the key's %s is %d", what, n)
	}
	switch {
	case c.CreateOnly && cur.Version != 0:
		return prefix + "create_only is set but the key exists"
	case c.PrevVersion != nil && *c.PrevVersion != cur.Version:
		return prefix + fmt.Sprintf("%s is %d but %s", versionName, *c.PrevVersion, state("version", cur.Version))
	case c.PrevRevision != nil && *c.PrevRevision != cur.Revision:
		return prefix + fmt.Sprintf("prev_revision is %d but %s", *c.PrevRevision, state("revision", cur.Revision))
	}
	return prefix + "the key changed before the write was applied"
}

// versionConflictMessage is the "message" of the prototype's answer to a PUT
// whose "version" is not the key's current version cur (0: no such key).
func versionConflictMessage(given, cur int64) string {
	switch {
	case cur == 0:
		return fmt.Sprintf("Version conflict: provided version %d, but the key does not exist", given)
	case given < cur:
		return fmt.Sprintf("Version conflict: provided version %d is outdated", given)
	}
	return fmt.Sprintf("Version conflict: provided version %d is ahead of the current version %d", given, cur)
}

// versionNotRetained is the detail of a 404 to a read of version of key
// whose retained versions are oldest to cur.
func versionNotRetained(key []byte, version, oldest, cur int64) string {
	if version > cur {
		return fmt.Sprintf("version %d of key %q does not exist; the key is at version %d", version, key, cur)
	}
	return fmt.Sprintf("version %d of key %q is not retained (compacted, or written before the key was last deleted); versions %d to %d are", version, key, oldest, cur)
}

// consistency reads the consistency query parameter: true for linearizable
// (the default), false for stale.
func consistency(q map[string][]string) (bool, *apiError) {
	s, ok, aerr := queryParam(q, "consistency")
	if aerr != nil {
		return false, aerr
	}
	switch {
	case !ok || s == "linearizable":
		return true, nil
	case s == "stale":
		return false, nil
	}
	return false, unprocessable("query parameter consistency must be linearizable or stale, not %q", s)
}
