package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/distkv/distkv/internal/kv"
)

// Idempotent requests (the prototype's v1.3, the Raft thesis §6.3). A write
// (PUT, DELETE, POST /txn) that names its request, with the query parameters
// client_id and request_id or with an Idempotency-Key header, is applied at
// most once: the state machine records its outcome (kv's client-session
// table), and the same request again, through any node, after a leader
// change or a restart, gets the same answer and applies nothing. The request
// is the ids and the operation (SET, DELETE or TXN): different operations
// with the same ids are different requests, as in the prototype.
//
// A write with ids first looks for its record (locally, then after a
// ReadIndex barrier), so that a retry of a write that was applied takes no
// log entry; a retry racing its first attempt is caught when applied, where
// it takes an entry but changes nothing.

// The limits of ids, in bytes.
const maxIDSize = 256

// The names of the operations a request id is recorded for, as the
// prototype's log named them.
var opNames = map[kv.Op]string{kv.OpPut: "SET", kv.OpDelete: "DELETE", kv.OpTxn: "TXN"}

// idempotencyHeader is the IETF draft's header; its value names a request
// alone (its client id is empty).
const idempotencyHeader = "Idempotency-Key"

// dedupStats counts the duplicates this node answered since it started.
type dedupStats struct {
	same  atomic.Int64 // a request already applied, answered from its record
	other atomic.Int64 // a request whose ids were used by another operation
}

// requestID reads the ids of a request: client_id and request_id from q, or
// the Idempotency-Key header. The zero RequestID means none. With auth on,
// the request id is prefixed with the user's name and a zero byte, so that
// no user can be answered the recorded outcome of another's request.
func requestID(r *http.Request, q url.Values) (kv.RequestID, *apiError) {
	id, aerr := parseRequestID(r, q)
	if p := principalOf(r); p != nil && aerr == nil && !id.IsZero() {
		id.Request = append([]byte(p.user+"\x00"), id.Request...)
	}
	return id, aerr
}

func parseRequestID(r *http.Request, q url.Values) (kv.RequestID, *apiError) {
	var id kv.RequestID
	client, hasClient, aerr := queryParam(q, "client_id")
	if aerr != nil {
		return id, aerr
	}
	request, hasRequest, aerr := queryParam(q, "request_id")
	if aerr != nil {
		return id, aerr
	}
	keys, hasKey := r.Header[idempotencyHeader]
	switch {
	case hasKey && (hasClient || hasRequest):
		return id, unprocessable("a request is named by client_id and request_id or by an %s header, not both", idempotencyHeader)
	case hasKey && len(keys) != 1:
		return id, unprocessable("the %s header is given %d times", idempotencyHeader, len(keys))
	case hasKey:
		return id, checkID(idempotencyHeader+" header", keys[0], &id.Request)
	case hasClient != hasRequest:
		return id, unprocessable("query parameters client_id and request_id name a request together: give both or neither")
	case !hasClient:
		return id, nil
	}
	if aerr := checkID("query parameter client_id", client, &id.Client); aerr != nil {
		return id, aerr
	}
	return id, checkID("query parameter request_id", request, &id.Request)
}

func checkID(what, v string, dst *[]byte) *apiError {
	switch {
	case v == "":
		return unprocessable("%s must not be empty", what)
	case len(v) > maxIDSize:
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("%s is %d bytes; the limit is %d bytes", what, len(v), maxIDSize)}
	}
	*dst = []byte(v)
	return nil
}

// retryHint ends the detail of a write with ids that may have been applied.
func retryHint(id kv.RequestID) string {
	if len(id.Client) == 0 {
		return "; send it again with the same " + idempotencyHeader + " to apply it at most once and learn its outcome"
	}
	return "; send it again with the same client_id and request_id to apply it at most once and learn its outcome"
}

// execute proposes cmd and returns its outcome, or answers the error and
// returns false. A cmd with a request id gets its time and TTL, and is not
// proposed when its record is found: the recorded outcome is returned
// (Replayed), with cmd.Key set to the key the request wrote.
func (h *handler) execute(ctx context.Context, w http.ResponseWriter, r *http.Request, cmd *kv.Command) (kv.Result, bool) {
	hint := ""
	if !cmd.Request.IsZero() {
		hint = retryHint(cmd.Request)
		cmd.Time, cmd.TTL = h.now().UnixNano(), int64(h.cfg.RequestDedupTTL)
		rec, found, err := h.recorded(ctx, cmd.Request, cmd.Op, false, cmd.Time)
		if err == nil && !found {
			rec, found, err = h.recorded(ctx, cmd.Request, cmd.Op, true, cmd.Time)
		}
		if err != nil {
			h.backendErrorHint(ctx, w, r, cmd.Op.String(), err, true, hint)
			return kv.Result{}, false
		}
		if found {
			h.dedup.same.Add(1)
			if cmd.Op != kv.OpTxn {
				cmd.Key = rec.Key
			}
			return rec.Result, true
		}
		h.countOtherOps(ctx, cmd.Request, cmd.Op)
	}
	res, err := h.backend.Propose(ctx, *cmd)
	if err != nil {
		h.backendErrorHint(ctx, w, r, cmd.Op.String(), err, true, hint)
		return kv.Result{}, false
	}
	if res.Replayed {
		// Its first attempt was applied after this one looked: the record
		// is here now, and names the key that was written.
		h.dedup.same.Add(1)
		if rec, ok, err := h.backend.Session(ctx, cmd.Request, cmd.Op, false); err == nil && ok && cmd.Op != kv.OpTxn {
			cmd.Key = rec.Key
		}
	}
	return res, true
}

// recorded looks up the record of the request id for op, as live at now
// (Unix nanoseconds). The state machine's clock moves only with the writes it
// applies, so a record it still holds may have expired by now: such a record
// is not found, and the write is proposed with now, at which the state
// machine finds it expired too and applies the write anew.
func (h *handler) recorded(ctx context.Context, id kv.RequestID, op kv.Op, linearizable bool, now int64) (kv.Record, bool, error) {
	rec, ok, err := h.backend.Session(ctx, id, op, linearizable)
	if err != nil || !ok || rec.Expires <= now {
		return kv.Record{}, false, err
	}
	return rec, true, nil
}

// countOtherOps counts a request whose ids another operation used.
func (h *handler) countOtherOps(ctx context.Context, id kv.RequestID, op kv.Op) {
	for other := range opNames {
		if other == op {
			continue
		}
		if _, ok, err := h.recorded(ctx, id, other, false, h.now().UnixNano()); err == nil && ok {
			h.dedup.other.Add(1)
			return
		}
	}
}

// appendNotKept appends the answer to a repeated request whose first answer
// was too large to record.
func appendNotKept(b []byte, res kv.Result) []byte {
	b = append(b, `{"detail":`...)
	b = appendStr(b, fmt.Sprintf("this request was already applied, at revision %d, but its answer was more than the %d bytes kept, so it cannot be given again; nothing was applied now",
		res.Revision, kv.MaxRecordedResult))
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, res.Revision, 10)
	return append(b, '}')
}

// parseOperation reads the operation parameter of /request_status.
func parseOperation(s string) (kv.Op, *apiError) {
	switch strings.ToUpper(s) {
	case "SET", "PUT":
		return kv.OpPut, nil
	case "DELETE":
		return kv.OpDelete, nil
	case "TXN":
		return kv.OpTxn, nil
	case "GET":
		return 0, unprocessable("operation GET is not recorded: a read has no effect to apply once, and is answered afresh; SET, DELETE and TXN are")
	}
	return 0, unprocessable("query parameter operation must be SET (or PUT), DELETE or TXN, not %q", s)
}

// requestStatus answers GET /request_status?client_id=&request_id=[&operation=]
// (or with an Idempotency-Key header instead of the ids):
// {"processed":false}, or {"processed":true,"operation":..,"status_code":..,
// "result":<the answer the request got>}. Without operation, the latest
// applied of the request's operations is reported.
func (h *handler) requestStatus(w http.ResponseWriter, r *http.Request) {
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, "GET /request_status", paramsRequestStatus)
	}
	var id kv.RequestID
	if aerr == nil {
		id, aerr = requestID(r, q)
	}
	if aerr == nil && id.IsZero() {
		aerr = unprocessable("GET /request_status needs client_id and request_id (or an %s header)", idempotencyHeader)
	}
	var ops []kv.Op
	if aerr == nil {
		if s, ok, err := queryParam(q, "operation"); err != nil {
			aerr = err
		} else if ok {
			op, err := parseOperation(s)
			aerr, ops = err, []kv.Op{op}
		} else {
			ops = []kv.Op{kv.OpPut, kv.OpDelete, kv.OpTxn}
		}
	}
	linearizable := true
	if aerr == nil {
		linearizable, aerr = consistency(q)
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	var best kv.Record
	var bestOp kv.Op
	now := h.now().UnixNano()
	for i, op := range ops {
		rec, ok, err := h.recorded(ctx, id, op, linearizable && i == 0, now)
		if err != nil {
			h.backendError(ctx, w, r, "request status", err, false)
			return
		}
		if ok && rec.Revision > best.Revision {
			best, bestOp = rec, op
		}
	}
	if bestOp == 0 {
		writeJSON(w, http.StatusOK, []byte(`{"processed":false}`))
		return
	}
	var answer []byte
	code := http.StatusOK
	switch {
	case best.Result.Status == kv.StatusAnswerNotKept:
		answer, code = appendNotKept(nil, best.Result), http.StatusConflict
	case bestOp == kv.OpTxn:
		answer = appendTxnResult(nil, best.Result)
	default:
		answer, code = appendWriteAnswer(nil, best.Key, best.Result, nil, false)
	}
	buf := getBuf()
	b := append(*buf, `{"processed":true,"operation":"`...)
	b = append(b, opNames[bestOp]...)
	b = append(b, `","status_code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, best.Revision, 10)
	b = append(b, `,"result":`...)
	b = append(b, answer...)
	b = append(b, '}')
	*buf = b
	writeJSON(w, http.StatusOK, b)
	putBuf(buf)
}

// deduplicationStats answers GET /deduplication_stats in the prototype's
// shape, from the client-session table (replicated: the same on every node)
// and this node's counts of duplicates since it started.
func (h *handler) deduplicationStats(w http.ResponseWriter) {
	st := h.backend.SessionStats()
	same, other := h.dedup.same.Load(), h.dedup.other.Load()
	b := []byte(`{"service_name":`)
	b = appendStr(b, h.backend.Status().ID)
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"current_cache_size", int64(st.Records)},
		{"unique_request_ids", int64(st.Requests)},
		{"total_client_count", int64(st.Clients)},
		{"total_requests_cached", int64(st.Records)},
		{"total_duplicates_detected", same + other},
		{"same_operation_duplicates", same},
		{"different_operation_duplicates", other},
		{"total_cache_cleanups", int64(st.Dropped)},
		{"cache_bytes", int64(st.Bytes)},
		{"max_cache_size", kv.MaxRecords},
		{"max_cache_bytes", kv.MaxRecordBytes},
		{"ttl_seconds", int64(h.cfg.RequestDedupTTL.Seconds())},
	} {
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, f.v, 10)
	}
	writeJSON(w, http.StatusOK, append(b, '}'))
}
