// Package httpapi is the HTTP API of one distkv node. It keeps the API of the
// Python prototype (pydistributedkv) working byte for byte and adds
// conditional writes, scans and cluster endpoints. It parses and validates
// requests and turns them into calls on a Backend (the Raft layer); it holds no
// state of its own.
//
// # Responses
//
// Every response is compact JSON with Content-Type application/json and no
// trailing newline, as the prototype's FastAPI sent. Errors are
// {"detail":"<what is wrong>"}. A request rejected for bad input never reaches
// the Backend.
//
//	Request                      Status  Body
//	PUT    /key/{key}            200     {"status":"ok","id":<revision of the write>,"key":k,"version":n}
//	                             409     {"detail":"condition failed: ...","key":k,"version":v,"revision":r}
//	GET    /key/{key}            200     {"key":k,"value":v,"version":n,"revision":r}
//	                             404     {"detail":"Key not found"}
//	GET    /key/{key}/history    200     {"key":k,"versions":[n],"history":[{"version":n,"value":v}]}
//	GET    /key/{key}/versions   200     {"key":k,"versions":[n],"latest_version":n}
//	DELETE /key/{key}            200     {"status":"ok","id":<revision of the delete>}
//	                             404     {"detail":"Key not found"}
//	                             409     as for PUT
//	GET    /keys                 200     {"kvs":[{"key":..,"value":..,"version":..,"revision":..},...],
//	                                      "keys":[<names>],"count":n,"more":b[,"continue":"<token>"]}
//	POST   /txn                  200     {"succeeded":b,"revision":n,"responses":[...]} (see Transactions),
//	                                     also when the compares failed
//	GET    /request_status       200     {"processed":false} or {"processed":true,"operation":..,"status_code":..,
//	                                      "revision":..,"result":<the answer>} (see Idempotent requests)
//	GET    /deduplication_stats  200     the client-session table's counts, in the prototype's shape
//	GET    /cluster_status       200     the prototype's cluster view: leader, followers, heartbeats
//	GET    /segments             200     the WAL's segment files (Config.DataDir)
//	GET    /compaction/status    200     the recent compactions and the snapshots kept, as the prototype's history
//	POST   /compaction/run       200     {"status":"success","segments_compacted":n,"entries_removed":n,
//	                                      "snapshot_index":n,"duration_seconds":s}: a snapshot now, the log
//	                                      compacted behind it (501 without a Compactor)
//	POST   /compaction/configure 422     compaction follows the snapshots; nothing to configure
//	GET    /backup               200     a consistent copy of the state at one revision (header
//	                                      X-Distkv-Revision), streamed in the backup format of
//	                                      internal/backup; 501 without a Backuper
//	GET    /cluster/status       200     Status as JSON
//	GET    /healthz              200     {"status":"ok"}
//	GET    /readyz               200     {"status":"ready"}
//	                             503     {"detail":"<why the node is not ready>"}
//	GET    /ui                   200     the dashboard, an HTML page (ui.go); any query string is accepted
//	any    other path            404     {"detail":"Not Found"}
//	wrong method                 405     {"detail":"Method Not Allowed"}, with an Allow header
//
// GET endpoints also answer HEAD. The errors of any endpoint:
//
//	400  empty key, a key with a malformed percent-encoding, or a body that could
//	     not be read
//	413  key longer than Config.MaxKeySize, value longer than Config.MaxValueSize
//	     (both in bytes after decoding; the detail names the limit), or a request
//	     body longer than 6*MaxValueSize + 64 KiB, the longest JSON encoding a
//	     maximal value can need plus room for the other fields; in a
//	     transaction, also more than Config.MaxTxnOps compares, or operations
//	     in a branch
//	422  a body that is empty, not JSON, not a JSON object, without "value", with
//	     a field it does not know, or whose "value" nests arrays and objects
//	     more than 64 levels deep; a query
//	     parameter the endpoint does not take; a condition of the wrong type or
//	     negative;
//	     a condition given in body and query with different values; create_only on
//	     DELETE; a malformed query string or a repeated parameter; a bad
//	     consistency, limit or continue parameter; a transaction that does not
//	     follow the format below (the detail names the entry, as in
//	     "compare[2].op must be ...")
//	503  the Backend failed: its error as detail, or, when Config.RequestTimeout
//	     passed, "request timed out after 5s; a write may still have been applied"
//	     (writes) or "request timed out after 5s" (reads). When the client has
//	     gone away nothing is written.
//
// # Keys
//
// The key is everything in the path after "/key/", taken from the path exactly
// as the client escaped it and percent-decoded here: "/" and "%2F" both stand
// for the byte '/', "..", "//" and "+" are literal, and any byte 0x00-0xff can
// be sent as %XX. Nothing is cleaned or redirected, which is why the handler
// must not be mounted under an http.ServeMux pattern.
//
// # Writes
//
// PUT reads the body whatever its Content-Type (curl -d sends a form type):
//
//	{"value":<any JSON value>,"version":n,"prev_version":n,"prev_revision":n,"create_only":b}
//
// "value" is required; the other fields are optional (null means absent) and
// an unknown field is refused with 422 naming it. Field names are
// case-sensitive and a repeated field takes its last value, as Python's json
// module did. "version" is the prototype's precondition (its v1.5) and means
// what prev_version means: the key's current version must be n. The
// conditions (kv.Cond) can also be given as query parameters of PUT and
// DELETE: ?prev_version=3&prev_revision=17&create_only=true. A write whose
// condition fails changes nothing and gets 409 with the key's current version
// and revision (0 and 0 if it does not exist); when the failed condition is a
// body's "version", the answer also has the prototype's "status":"error",
// "message" and "current_version".
//
// # Versions
//
// A node keeps the latest version of each key only. GET /key/{key}?version=n
// answers as GET when n is the key's version and 404 with a detail saying
// that version is not retained (or does not exist yet) otherwise, never
// another version's value. /key/{key}/history and /key/{key}/versions answer
// in the prototype's shapes with the one version retained. The suffixes are
// matched on the escaped path, so a key that itself ends in "/history" is
// addressed with its last slash as %2F.
//
// # Idempotent requests
//
// PUT, DELETE and POST /txn take client_id and request_id query parameters
// (the prototype's v1.3), or an Idempotency-Key header (a request id with an
// empty client id). The first application of such a request records its
// outcome in the state machine (kv's client-session table); the same ids and
// operation again get that outcome and apply nothing, through any node, also
// after a leader change or a restart. A write with ids first looks for its
// record (Backend.Session, locally and then linearizably), so that a repeat
// of an applied write takes no log entry; each write carries the node's time
// and Config.RequestDedupTTL, by which the state machine expires records.
// GET /key/{key} accepts the ids and does not record them: a read has no
// effect to apply once.
//
// # Query parameters
//
// Every endpoint refuses a query parameter it does not take (422, naming
// it), as it refuses an unknown field of a body: nothing a client sends is
// silently ignored.
//
// # Transactions
//
// POST /txn applies an atomic transaction in the style of etcd's Txn: if all
// compares hold, the "success" operations run, otherwise the "failure" ones.
// It is proposed as one command (kv.OpTxn): the Backend applies it whole at
// one revision or not at all, as one log entry of a range or, over several
// ranges, in two phases (kv.OpLock and the ops after it), and nothing sees a
// state between two of its operations. The body:
//
//	{"compare": [{"key":"a","target":"value","op":"==","value":"x"},
//	             {"key":"b","target":"version","op":">","version":2},
//	             {"key":"c","target":"revision","op":"<","revision":100},
//	             {"key":"e","target":"create_revision","op":"!=","create_revision":7},
//	             {"key":"d","target":"exists","exists":false}],
//	 "success": [{"put":{"key":"a","value":"y"}}, {"delete":{"key":"b"}}, {"get":{"key":"c"}}],
//	 "failure": [{"get":{"key":"a"}}]}
//
// All three fields are optional (absent, null or [] is an empty list; {} is a
// transaction that succeeds and does nothing). A compare has "key", "target"
// (value, version, revision, create_revision or exists), "op" (==, !=, <, >,
// <=, >=; for exists only == and !=, and it may be left out to mean ==) and the
// operand in the field named by its target: a string for value (compared
// byte-wise), a non-negative integer for version, revision (of the key's last
// change, etcd's mod revision) and create_revision, a boolean for exists. A
// missing key has version, revision and create_revision 0, and (as in etcd) a
// value compare on it is false whatever the op. An operation is exactly one of
// {"put":{"key":k,"value":v}}, {"delete":{"key":k}} and {"get":{"key":k}}.
// Keys must not be empty. Unlike a PUT body, the format is strict: an unknown
// or repeated field is refused with 422 rather than ignored, and so is a branch
// that puts or deletes one key twice (as etcd refuses it). Limits: at most
// Config.MaxTxnOps (default 128) compares and as many operations per branch,
// keys and values (operands of value compares too) within MaxKeySize and
// MaxValueSize, the whole body within the limit of a PUT body.
//
// The answer is 200 whichever branch ran:
//
//	{"succeeded":true,"revision":16,"responses":[
//	  {"put":{"revision":16}},
//	  {"delete":{"deleted":1}},
//	  {"get":{"key":"c","value":"cv","version":1,"revision":15,"create_revision":15}}]}
//
// "succeeded" says which branch ran and "responses" has one entry per
// operation of that branch, in order. "revision" is the log index at which the
// transaction was applied, even if it wrote nothing; every put in it gets that
// revision and, as any put, version+1. The operations run in order, so a
// get after a put of the same key in the branch sees the put. A delete reports
// "deleted":0 for a missing key, and a get of a missing key is {"get":null}.
// Backend errors are answered as for PUT (503; on a timeout the transaction
// may still have been applied).
//
// # Reads
//
// Reads are linearizable unless ?consistency=stale asks for the node's local
// state. GET /keys takes prefix, start, end (start <= key < end; an empty or
// absent end is unbounded), limit (1 to Config.MaxScanLimit, default
// Config.DefaultScanLimit), continue and consistency. prefix and start/end
// combine as an intersection. When "more" is true, "continue" holds an opaque
// token; passing it back with the same parameters returns the next page.
// Query values are form-decoded, so a '+' in a key must be sent as %2B.
//
// # Values and UTF-8
//
// A value is any JSON value, as the prototype's `value: Any` took it. A
// string is stored as the byte string it holds (kv.KindString); any other
// value (number, object, array, boolean, null) as its compact JSON text
// (kv.KindJSON, see appendCompact): numbers keep their text exactly as sent,
// whitespace between tokens is dropped, strings inside are written as every
// string is below. Every read answers the value as it was written: the
// number 12 as 12, the string "12" as "12". MaxValueSize applies to the
// stored text; values nested more than 64 levels deep are refused.
//
// Keys are byte strings but JSON carries text. In responses, strings are written as Python's json.dumps
// (ensure_ascii=False) wrote them: only '"', '\' and control characters are
// escaped, other characters are raw UTF-8; each byte that is not part of valid
// UTF-8 is written as \ufffd, exactly as encoding/json would. So keys or
// values that are not valid UTF-8 can be stored (keys by percent-encoding) but
// are read back with U+FFFD replacements. Request strings are decoded as
// encoding/json decodes them, with the same replacement.
//
// # Authentication and authorization
//
// With Config.Auth (auth.go) every request but health, readiness, the UI
// and POST /auth/token names a user, by a bearer token or a verified client
// certificate (401 otherwise), and is checked before anything is proposed
// or read: a key against the user's roles, a scan's whole range (refused
// if covered only in part), every key of a transaction in both branches
// (refused whole), and every other endpoint against the root role (403,
// nothing changed). The users, roles and token secret are the Backend's
// replicated state (AuthBackend); this package changes them only by
// proposing kv.OpAuth commands. Without Config.Auth nothing of this
// applies and /auth/ paths are 404.
package httpapi
