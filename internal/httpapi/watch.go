package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// Watch. GET /watch?key=K or ?prefix=P, optionally &start_revision=S, streams
// the changes of the key or the keys under the prefix, in revision order
// across ranges, one JSON object a line (or as server-sent events when the
// client accepts text/event-stream):
//
//	{"type":"PUT","key":k,"value":v,"revision":r,"version":n}
//	{"type":"DELETE","key":k,"revision":r}
//	{"type":"PROGRESS","revision":r}
//
// from revision S on (without it, from the changes after the current
// revision). The watcher asks its backend every watchPoll for the changes
// after the last revision it sent, up to the current one (the revision of
// the one range that holds every key watched, when there is one): each range
// answers once that revision is final there (RevisionReader), so no change
// is sent twice or skipped, and a watcher that reconnects with
// start_revision = the last revision it got + 1, to any node, goes on
// exactly where it was. After watchProgressEvery without a change it sends a
// PROGRESS line: everything up to that revision has been sent. A
// start_revision at or below the compaction answers 410; a stream that the
// compaction overtakes ends with an ERROR line saying so.

// watchPoll is how often a watcher asks for changes; watchProgressEvery how
// long it stays silent at most.
const (
	watchPoll          = 100 * time.Millisecond
	watchProgressEvery = 2 * time.Second
)

// Changes is what a watch needs of a RevisionReader backend; see
// backend.Changes in cmd/distkv.
type changesReader interface {
	// Changes returns the changes of the keys start <= key < end (end
	// empty: unbounded) with revisions in (after, upto], in revision
	// order, then key, and the revision through which they are complete
	// (upto, unless the answer was cut short to bound its size).
	Changes(ctx context.Context, start, end []byte, after, upto int64) ([]kv.Event, int64, error)
}

var paramsWatch = []string{"key", "prefix", "start_revision"}

func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	q, aerr := parseQuery(r)
	if aerr == nil {
		aerr = checkParams(q, "GET /watch", paramsWatch)
	}
	var key, prefix string
	var hasKey, hasPrefix bool
	if aerr == nil {
		key, hasKey, aerr = queryParam(q, "key")
	}
	if aerr == nil {
		prefix, hasPrefix, aerr = queryParam(q, "prefix")
	}
	var start int64
	var hasStart bool
	if aerr == nil {
		start, hasStart, aerr = queryInt(q, "start_revision")
	}
	switch {
	case aerr != nil:
	case hasKey == hasPrefix || (hasKey && key == "") || (hasPrefix && prefix == ""):
		aerr = unprocessable("GET /watch needs a key (?key=K) or a prefix (?prefix=P), not empty, and not both")
	case hasStart && start < 1:
		aerr = unprocessable("query parameter start_revision must be a positive integer, not %q", q.Get("start_revision"))
	}
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	spanStart, spanEnd := []byte(key), append([]byte(key), 0)
	if hasPrefix {
		spanStart, spanEnd = []byte(prefix), prefixEnd([]byte(prefix))
	}
	if !h.mayRange(w, r, spanStart, spanEnd) {
		return
	}
	rr, ok := h.revisionReader(w)
	if !ok {
		return
	}
	cr, ok := rr.(changesReader)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this node cannot list changes: GET /watch is not available")
		return
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	// The controller reaches the server's writer through wrappers that
	// Unwrap (the metrics' one does).
	rc := http.NewResponseController(w)
	ws := &watchStream{h: h, w: w, r: r, rr: rr, cr: cr, rc: rc, sse: sse, start: spanStart, end: spanEnd}
	if hasStart {
		ws.after = start - 1
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
		cur, err := rr.ScanRevision(ctx, spanStart, spanEnd)
		if err != nil {
			h.backendError(ctx, w, r, "revision", err, false)
			cancel()
			return
		}
		cancel()
		ws.after = cur
	}
	ws.run()
}

// watchStream is one watcher's state.
type watchStream struct {
	h        *handler
	w        http.ResponseWriter
	r        *http.Request
	rr       RevisionReader
	cr       changesReader
	rc       *http.ResponseController
	sse      bool
	start    []byte
	end      []byte
	after    int64 // every change up to it has been sent
	started  bool  // the 200 and headers are out
	lastSent time.Time
}

// run polls for changes and sends them until the client goes away.
func (s *watchStream) run() {
	ctx := s.r.Context()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.h.cfg.StreamsEnd:
			return
		case <-timer.C:
		}
		if !s.poll(ctx) {
			return
		}
		timer.Reset(watchPoll)
	}
}

// poll sends the changes since the last poll; false ends the stream.
func (s *watchStream) poll(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, s.h.cfg.RequestTimeout)
	defer cancel()
	// As a scan's: keys that one range holds are read up to its own
	// revision, which costs no write to make final.
	cur, err := s.rr.ScanRevision(cctx, s.start, s.end)
	var evs []kv.Event
	through := s.after
	if err == nil && cur > s.after {
		evs, through, err = s.cr.Changes(cctx, s.start, s.end, s.after, cur)
	}
	if err != nil {
		return s.failed(cctx, err)
	}
	if !s.started {
		s.begin()
	}
	buf := getBuf()
	defer putBuf(buf)
	b := (*buf)[:0]
	for _, e := range evs {
		b = s.frame(b, appendEvent(nil, e))
	}
	if through > s.after {
		s.after = through
	}
	now := time.Now()
	if len(evs) == 0 && now.Sub(s.lastSent) >= watchProgressEvery {
		b = s.frame(b, append(strconv.AppendInt([]byte(`{"type":"PROGRESS","revision":`), s.after, 10), '}'))
	}
	*buf = b
	if len(b) == 0 {
		return true
	}
	if _, err := s.w.Write(b); err != nil {
		return false // the client is gone
	}
	if err := s.rc.Flush(); err != nil {
		s.h.log.Error("watch: the response cannot be streamed", "err", err)
		return false
	}
	s.lastSent = now
	return true
}

// begin sends the 200 and the headers of the stream.
func (s *watchStream) begin() {
	hdr := s.w.Header()
	if s.sse {
		hdr.Set("Content-Type", "text/event-stream")
	} else {
		hdr.Set("Content-Type", "application/x-ndjson")
	}
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	s.w.WriteHeader(http.StatusOK)
	_ = s.rc.Flush() // poll reports a writer that cannot flush
	s.started = true
	s.lastSent = time.Now()
}

// frame appends one message to b: a line, or an event of the stream.
func (s *watchStream) frame(b, msg []byte) []byte {
	if s.sse {
		b = append(b, "data: "...)
		b = append(b, msg...)
		return append(b, '\n', '\n')
	}
	b = append(b, msg...)
	return append(b, '\n')
}

// failed handles a poll's error: before the stream started, the answer a
// read would get (410 for a compacted start); after, transient errors are
// retried on the next poll and a compaction that overtook the watcher ends
// the stream with an ERROR line. False ends the stream.
func (s *watchStream) failed(ctx context.Context, err error) bool {
	if s.r.Context().Err() != nil {
		return false
	}
	var ce *kv.CompactedError
	compacted := errors.As(err, &ce)
	if !s.started {
		if compacted {
			writeError(s.w, http.StatusGone, fmt.Sprintf("start_revision %d is compacted; the oldest a watch can start from is %d", s.after+1, ce.Compacted+1))
			return false
		}
		s.h.backendError(ctx, s.w, s.r, "watch", err, false)
		return false
	}
	if compacted {
		msg := []byte(`{"type":"ERROR","detail":`)
		msg = appendString(msg, []byte(fmt.Sprintf("revision %d is compacted; the oldest a watch can go on from is %d: everything up to %d was sent", s.after+1, ce.Compacted+1, s.after)))
		_, _ = s.w.Write(s.frame(nil, append(msg, '}')))
		_ = s.rc.Flush()
		return false
	}
	s.h.log.Debug("watch: poll failed, retrying", "err", err)
	return true
}

// appendEvent appends the JSON object of a change.
func appendEvent(b []byte, e kv.Event) []byte {
	if e.Type == kv.EventDelete {
		b = append(b, `{"type":"DELETE","key":`...)
		b = appendString(b, e.KV.Key)
		b = append(b, `,"revision":`...)
		b = strconv.AppendInt(b, e.KV.Revision, 10)
		return append(b, '}')
	}
	b = append(b, `{"type":"PUT","key":`...)
	b = appendString(b, e.KV.Key)
	b = append(b, `,"value":`...)
	b = appendValue(b, e.KV.Value, e.KV.Kind)
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, e.KV.Revision, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, e.KV.Version, 10)
	return append(b, '}')
}
