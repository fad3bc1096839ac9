package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// Backend is what the API needs from the node. The Raft layer implements it;
// tests use a fake.
type Backend interface {
	// Propose replicates cmd and returns its applied Result (kv outcomes such
	// as a failed condition are in Result.Status, not err). err != nil means the
	// outcome is unknown or the write was not made (context deadline, node
	// stopped, no leader...).
	Propose(ctx context.Context, cmd kv.Command) (kv.Result, error)
	// Get reads key; linearizable=false answers from local state at once.
	Get(ctx context.Context, key []byte, linearizable bool) (kv.KeyValue, bool, error)
	// Versions returns the retained versions of key since it was last
	// created, oldest first, ending with its latest (kv.Store.Versions);
	// nil if it does not exist. linearizable as for Get.
	Versions(ctx context.Context, key []byte, linearizable bool) ([]kv.KeyValue, error)
	// Range returns up to limit pairs with start <= key < end (end nil =
	// unbounded), in key order, and whether more exist.
	Range(ctx context.Context, start, end []byte, limit int, linearizable bool) ([]kv.KeyValue, bool, error)
	// Status describes the node and its view of the cluster.
	Status() Status
	// Ready returns nil when the node can serve linearizable requests (it
	// knows a leader and has applied its log), else the reason it cannot.
	Ready() error
	// Session returns the live record of the request id for op in the
	// state machine's client-session table (kv.Store.Record);
	// linearizable as for Get.
	Session(ctx context.Context, id kv.RequestID, op kv.Op, linearizable bool) (kv.Record, bool, error)
	// SessionStats describes this node's client-session table.
	SessionStats() kv.SessionStats
}

// Status is the body of GET /cluster/status.
type Status struct {
	ID string `json:"id"`
	// ClusterID is the cluster's id, 16 hex digits, created once when the
	// cluster was bootstrapped; absent on a node whose data predates ids.
	ClusterID    string `json:"cluster_id,omitempty"`
	Leader       string `json:"leader"` // "" when unknown
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// DiskFull: this node's disk is full; it refuses writes (507) until space
	// is freed, and resumes by itself.
	DiskFull bool     `json:"disk_full,omitempty"`
	Members  []Member `json:"members"`
	// Ranges is how many ranges this node holds a replica of, and
	// RangeLeaders how many of them it leads (absent where the backend
	// does not count them).
	Ranges       int `json:"ranges,omitempty"`
	RangeLeaders int `json:"range_leaders,omitempty"`
	// TxnLocks and TxnRecords count, over the node's replicas, the keys
	// that transactions over several ranges lock and the commit records
	// kept: both come and go within a transaction, and stay only while a
	// dead coordinator's transaction waits to be ended.
	TxnLocks   int `json:"txn_locks,omitempty"`
	TxnRecords int `json:"txn_records,omitempty"`
}

// Member is one node of the cluster, with its health as the answering node
// sees it. MatchIndex and Lag are reported by the leader only.
type Member struct {
	ID          string  `json:"id"`
	Peer        string  `json:"peer"`                   // address of the peer (Raft) listener
	HTTP        string  `json:"http"`                   // address of the HTTP API
	Role        string  `json:"role,omitempty"`         // "voter" or "learner"
	Reachable   *bool   `json:"reachable,omitempty"`    // absent when this node cannot know
	LastContact string  `json:"last_contact,omitempty"` // RFC 3339
	MatchIndex  *uint64 `json:"match_index,omitempty"`
	Lag         *uint64 `json:"lag,omitempty"`
}

// New returns the HTTP API of a node backed by b. It does its own routing and
// must be the server's handler (or be reached through a router that neither
// cleans nor unescapes paths): http.ServeMux would redirect keys holding "//"
// or "..". cfg is validated (and completed with defaults) by Config.Validate.
func New(cfg Config, b Backend) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errNilBackend
	}
	timeout := cfg.RequestTimeout.String()
	var dataFS fs.FS
	if cfg.DataDir != "" {
		dataFS = os.DirFS(cfg.DataDir)
	}
	an, err := newAuthn(cfg.Auth, b)
	if err != nil {
		return nil, err
	}
	return &handler{
		auth:          an,
		dataFS:        dataFS,
		now:           time.Now,
		cfg:           cfg,
		backend:       b,
		log:           cfg.Logger,
		bodyLimit:     cfg.bodyLimit(),
		writeTimedOut: "request timed out after " + timeout + "; a write may still have been applied",
		readTimedOut:  "request timed out after " + timeout,
	}, nil
}

type handler struct {
	// now stamps the writes with request ids (kv.Command.Time).
	now func() time.Time
	// dataFS is Config.DataDir, nil without one.
	dataFS  fs.FS
	dedup   dedupStats
	cfg     Config
	backend Backend
	// auth authenticates and authorizes requests; nil when auth is off.
	auth      *authn
	log       *slog.Logger
	bodyLimit int64
	// The details of 503 answers to requests that hit RequestTimeout.
	writeTimedOut, readTimedOut string
}

// errNilBackend is returned by New without a Backend.
var errNilBackend = errors.New("httpapi: nil Backend")

const keyPrefix = "/key/"

// Allow headers.
const (
	allowKey = "GET, HEAD, PUT, DELETE"
	allowGet = "GET, HEAD"
)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := escapedPath(r.URL)
	if h.auth != nil {
		var ok bool
		if r, ok = h.admit(w, r, path); !ok {
			return
		}
		if strings.HasPrefix(path, authPrefix) {
			h.serveAuth(w, r, path)
			return
		}
	}
	if rest, ok := strings.CutPrefix(path, keyPrefix); ok {
		h.serveKey(w, r, rest)
		return
	}
	if strings.HasPrefix(path, membersPrefix) {
		if noParams(w, r, r.Method+" "+path) {
			h.serveCluster(w, r, path)
		}
		return
	}
	switch path {
	case uiPath, uiPath + "/":
		serveUI(w, r)
	case "/keys":
		if methodGet(w, r) {
			h.scan(w, r)
		}
	case txnPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, allowTxn)
			return
		}
		h.txn(w, r)
	case "/cluster/status":
		if methodGet(w, r) && noParams(w, r, "GET /cluster/status") {
			h.status(w)
		}
	case "/cluster/ranges":
		if methodGet(w, r) && noParams(w, r, "GET /cluster/ranges") {
			h.ranges(w)
		}
	case "/request_status":
		if methodGet(w, r) {
			h.requestStatus(w, r)
		}
	case "/deduplication_stats":
		if methodGet(w, r) && noParams(w, r, "GET /deduplication_stats") {
			h.deduplicationStats(w)
		}
	case "/cluster_status":
		if methodGet(w, r) && noParams(w, r, "GET /cluster_status") {
			h.clusterStatus(w)
		}
	case "/segments":
		if methodGet(w, r) && noParams(w, r, "GET /segments") {
			h.segments(w)
		}
	case "/compaction/status":
		if methodGet(w, r) && noParams(w, r, "GET /compaction/status") {
			h.compactionStatus(w)
		}
	case "/compaction/run", "/compaction/configure":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		if path == "/compaction/run" {
			h.compactionRun(w, r)
		} else {
			h.compactionConfigure(w, r)
		}
	case "/watch":
		if methodGet(w, r) {
			h.watch(w, r)
		}
	case "/compact":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		h.compactHistory(w, r)
	case "/cluster/members", "/cluster/leader/transfer":
		if noParams(w, r, r.Method+" "+path) {
			h.serveCluster(w, r, path)
		}
	case "/backup":
		h.serveBackup(w, r)
	case "/healthz":
		if methodGet(w, r) && noParams(w, r, "GET /healthz") {
			writeJSON(w, http.StatusOK, bodyHealthy)
		}
	case "/readyz":
		if methodGet(w, r) && noParams(w, r, "GET /readyz") {
			if err := h.backend.Ready(); err != nil {
				writeError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, bodyReady)
		}
	default:
		writeJSON(w, http.StatusNotFound, bodyNotFound)
	}
}

// methodGet answers 405 unless r is a GET or HEAD.
func methodGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	methodNotAllowed(w, allowGet)
	return false
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
}

func (h *handler) status(w http.ResponseWriter) {
	st := h.backend.Status()
	if st.Members == nil {
		st.Members = []Member{}
	}
	body, err := json.Marshal(st)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding status: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// Fixed response bodies. The 404 and 405 bodies are FastAPI's, as the
// prototype answered.
var (
	bodyNotFound         = []byte(`{"detail":"Not Found"}`)
	bodyKeyNotFound      = []byte(`{"detail":"Key not found"}`)
	bodyMethodNotAllowed = []byte(`{"detail":"Method Not Allowed"}`)
	bodyHealthy          = []byte(`{"status":"ok"}`)
	bodyReady            = []byte(`{"status":"ready"}`)
)

// contentTypeJSON is shared by all responses to spare an allocation per
// request; nothing appends to or modifies a header value in place.
var contentTypeJSON = []string{"application/json"}

// smallBody is the size up to which Content-Length is left to net/http, which
// adds it to any response of a few KB written at once (as documented on
// http.ResponseWriter.Write); this spares two allocations per request. Larger
// bodies declare it so that they are not sent chunked.
const smallBody = 1024

// writeJSON sends body, which must be a JSON document without a trailing
// newline, as the prototype's responses had none.
func writeJSON(w http.ResponseWriter, code int, body []byte) {
	hdr := w.Header()
	hdr["Content-Type"] = contentTypeJSON
	if len(body) > smallBody {
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(code)
	_, _ = w.Write(body) // a failed write means the client is gone
}

// writeError sends {"detail": detail}.
func writeError(w http.ResponseWriter, code int, detail string) {
	buf := getBuf()
	*buf = append(*buf, `{"detail":`...)
	*buf = appendStr(*buf, detail)
	*buf = append(*buf, '}')
	writeJSON(w, code, *buf)
	putBuf(buf)
}

func writeAPIError(w http.ResponseWriter, err *apiError) {
	writeError(w, err.code, err.detail)
}

// Errors a Backend wraps so that the API answers with the right status:
// ErrCrossRange, a request that needs one range whose keys lie in several
// (422, the request is refused whole); ErrNotBuilt, what this version
// cannot do yet in the cluster's present shape (501).
var (
	ErrCrossRange = errors.New("the keys lie in several ranges")
	ErrNotBuilt   = errors.New("not built yet")
)

// backendError answers a failed Backend call. Nothing is written when the
// client has gone away.
func (h *handler) backendError(ctx context.Context, w http.ResponseWriter, r *http.Request, op string, err error, write bool) {
	h.backendErrorHint(ctx, w, r, op, err, write, "")
}

// backendErrorHint is backendError, with hint appended to the detail of a
// write that may still have been applied.
func (h *handler) backendErrorHint(ctx context.Context, w http.ResponseWriter, r *http.Request, op string, err error, write bool, hint string) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		return
	}
	h.log.Debug("backend call failed", "op", op, "err", err)
	switch {
	case errors.Is(err, ErrCrossRange):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	case errors.Is(err, ErrNotBuilt):
		writeError(w, http.StatusNotImplemented, err.Error())
		return
	case errors.Is(err, kv.ErrCompacted):
		writeError(w, http.StatusGone, err.Error())
		return
	}
	var refused notMade
	if errors.As(err, &refused) && refused.NotMade() {
		// Certainly not made, even if the request's deadline passed.
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// A backend may say why (no leader, no quorum) by wrapping the
		// deadline error as "<reason>: context deadline exceeded".
		why := ""
		if reason, ok := strings.CutSuffix(err.Error(), ": "+context.DeadlineExceeded.Error()); ok && reason != "" {
			why = " (" + reason + ")"
		}
		if write {
			writeError(w, http.StatusServiceUnavailable, h.readTimedOut+why+h.writeTimedOut[len(h.readTimedOut):]+hint)
		} else {
			writeError(w, http.StatusServiceUnavailable, h.readTimedOut+why)
		}
		return
	}
	var unknown outcomeUnknown
	if write && errors.As(err, &unknown) && unknown.OutcomeUnknown() {
		writeError(w, http.StatusServiceUnavailable, err.Error()+"; a write may still have been applied"+hint)
		return
	}
	var full insufficientStorage
	if errors.As(err, &full) && full.InsufficientStorage() {
		detail := err.Error()
		if !write {
			detail += "; a stale read (?consistency=stale) is still answered from local state"
		}
		writeError(w, http.StatusInsufficientStorage, detail)
		return
	}
	writeError(w, http.StatusServiceUnavailable, err.Error())
}

// outcomeUnknown is implemented by a Backend error for a write that had
// reached the log when it failed (the node stopped meanwhile): it may still be
// applied. The answer says so, as for a timeout.
type outcomeUnknown interface {
	OutcomeUnknown() bool
}

// notMade is implemented by a Backend error for a write that was refused
// before it reached the log, though the request waited until its deadline
// (for a leader to be elected, say): unlike a timeout, its outcome is known.
type notMade interface {
	NotMade() bool
}

// insufficientStorage is implemented by a Backend error that refuses a request
// because the node's disk is full (raftnode.ErrNoSpace). It is answered 507
// Insufficient Storage: the request never reached the log, so a write was
// certainly not made, and the same request succeeds once space is freed.
type insufficientStorage interface {
	InsufficientStorage() bool
}

// Response buffers are pooled; they are copied by the ResponseWriter, so they
// can be reused once Write returns. Large ones are left to the collector.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

const maxPooledBuf = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}
