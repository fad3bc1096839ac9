package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
)

// A request for a key whose range this node does not hold is sent, over the
// peer link, to a node that holds it (methodForward): its leader if the
// directory knows it, else another replica. The receiver runs it on its own
// replica as if a client had asked it there, and answers with the result or
// with a code that says what became of the request, so that the forwarding
// node answers its client exactly as the receiver would have. A receiver
// that no longer holds the key (a split or a move since the directory was
// made) answers codeNotHere; the request is then sent again after a refresh.
// The client was authenticated where it arrived: peers trust each other's
// calls (they are members, with mutual TLS where it is on).

// forwardRequest is a request sent to a node that holds its key's range.
type forwardRequest struct {
	Kind         string `json:"kind"` // forwardPropose, forwardGet or forwardRange
	Cmd          []byte `json:"cmd,omitempty"`
	Key          []byte `json:"key,omitempty"`
	End          []byte `json:"end,omitempty"`
	Limit        int    `json:"limit,omitempty"`
	Linearizable bool   `json:"linearizable,omitempty"`
	// Revision, if above 0, is the revision a forwardGet or forwardRange
	// reads at, the one a forwardCompact compacts to, or the last one a
	// forwardChanges asks for; After is the revision after which a
	// forwardChanges asks for changes.
	Revision int64 `json:"revision,omitempty"`
	After    int64 `json:"after,omitempty"`
	// Client, Request and Op name the request a forwardSession asks about.
	Client  []byte `json:"client,omitempty"`
	Request []byte `json:"request,omitempty"`
	Op      kv.Op  `json:"op,omitempty"`
}

const (
	forwardPropose = "propose"
	forwardGet     = "get"
	forwardRange   = "range"
	// forwardVersions asks for the retained versions of a key.
	forwardVersions = "versions"
	// forwardCompact compacts the history of the range that holds Key.
	forwardCompact = "compact"
	// forwardChanges asks for the changes of [Key, End) in (After,
	// Revision] in the range that holds Key.
	forwardChanges = "changes"
	// forwardSession asks every node for the record of a request, which
	// names no key (see backend.Session).
	forwardSession = "session"
)

// forwardReply is its answer.
type forwardReply struct {
	Code   string `json:"code,omitempty"`
	Detail string `json:"detail,omitempty"`
	Result []byte `json:"result,omitempty"` // kv.Result.Marshal
	// Replayed is the Result's Replayed, which its encoding leaves out.
	Replayed bool          `json:"replayed,omitempty"`
	KV       *kv.KeyValue  `json:"kv,omitempty"`
	KVs      []kv.KeyValue `json:"kvs,omitempty"`
	More     bool          `json:"more,omitempty"`
	// End is the end of the range the receiver read (a scan goes on from
	// there).
	End []byte `json:"end,omitempty"`
	// Record is the record a forwardSession found: Result is its result.
	Record *sessionRecord `json:"record,omitempty"`
	// Compacted is, with codeCompacted, the compaction revision of the
	// range that refused to read below it.
	Compacted int64 `json:"compacted,omitempty"`
	// Events are a forwardChanges' changes, complete through Through.
	Events  []kv.Event `json:"events,omitempty"`
	Through int64      `json:"through,omitempty"`
}

// sessionRecord is a kv.Record without its result.
type sessionRecord struct {
	Key     []byte `json:"key,omitempty"`
	Index   uint64 `json:"index"`
	Expires int64  `json:"expires"`
}

// Codes of a failed forwarded request.
const (
	codeNotHere    = "not_here"    // the receiver holds no range with the key: ask again
	codeNotMade    = "not_made"    // certainly not applied
	codeUnknown    = "unknown"     // may have been applied
	codeNoSpace    = "no_space"    // the receiver's disk is full
	codeDeadline   = "deadline"    // timed out, as Detail says
	codeCrossRange = "cross_range" // a transaction over several ranges
	codeCompacted  = "compacted"   // a read below the range's compaction
	codeFailed     = "failed"      // anything else
)

// forwardPageLimit bounds the pairs one forwarded scan returns (a call's
// frame has a size limit); the caller asks again from where it stopped.
const forwardPageLimit = 1000

// serveForward runs a forwarded request on this node's replica of its key.
func (b backend) serveForward(ctx context.Context, payload []byte) ([]byte, error) {
	var req forwardRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("decode a forwarded request: %w", err)
	}
	var rep forwardReply
	err := func() error {
		switch req.Kind {
		case forwardPropose:
			cmd, err := kv.UnmarshalCommand(req.Cmd)
			if err != nil {
				return err
			}
			res, err := b.local().Propose(ctx, cmd)
			if err == nil {
				rep.Result, rep.Replayed = res.Marshal(), res.Replayed
			}
			return err
		case forwardGet:
			var v kv.KeyValue
			var ok bool
			var err error
			if req.Revision > 0 {
				v, ok, err = b.local().GetAt(ctx, req.Key, req.Revision)
			} else {
				v, ok, err = b.local().Get(ctx, req.Key, req.Linearizable)
			}
			if ok {
				rep.KV = &v
			}
			return err
		case forwardChanges:
			g := b.n.Host().GroupFor(req.Key)
			if g == nil {
				return errNotHere
			}
			bounds := g.Bounds()
			end := clipEnd(req.End, bounds.End)
			evs, err := g.Changes(ctx, req.Key, end, req.After, req.Revision)
			if errors.Is(err, raftnode.ErrWrongRange) {
				return errNotHere
			}
			rep.Events, rep.Through = kv.TrimEvents(evs, changesPageEvents, changesPageBytes, req.Revision)
			rep.End = bounds.End
			return err
		case forwardCompact:
			g := b.n.Host().GroupFor(req.Key)
			if g == nil {
				return errNotHere
			}
			_, err := g.CompactHistory(ctx, req.Revision)
			rep.End = g.Bounds().End
			return err
		case forwardVersions:
			vs, err := b.local().Versions(ctx, req.Key, req.Linearizable)
			rep.KVs = vs
			return err
		case forwardRange:
			g := b.n.Host().GroupFor(req.Key)
			if g == nil {
				return errNotHere
			}
			bounds := g.Bounds()
			end := req.End
			if len(bounds.End) > 0 && (len(end) == 0 || string(end) > string(bounds.End)) {
				end = bounds.End
			}
			limit := req.Limit
			if limit <= 0 || limit > forwardPageLimit {
				limit = forwardPageLimit
			}
			var kvs []kv.KeyValue
			var more bool
			var err error
			if req.Revision > 0 {
				kvs, more, err = g.RangeAt(ctx, req.Key, end, limit, req.Revision)
			} else {
				kvs, more, err = g.Range(ctx, req.Key, end, limit, req.Linearizable)
			}
			rep.KVs, rep.More, rep.End = kvs, more, bounds.End
			if errors.Is(err, raftnode.ErrWrongRange) {
				return errNotHere
			}
			return err
		case forwardSession:
			rec, ok, err := b.local().Session(ctx, kv.RequestID{Client: req.Client, Request: req.Request}, req.Op, req.Linearizable)
			if ok {
				rep.Record = &sessionRecord{Key: rec.Key, Index: rec.Revision, Expires: rec.Expires}
				rep.Result = rec.Result.Marshal()
			}
			return err
		default:
			return fmt.Errorf("unknown forwarded request %q", req.Kind)
		}
	}()
	if err != nil {
		rep = forwardReply{Code: forwardCode(err), Detail: err.Error()}
		var ce *kv.CompactedError
		if errors.As(err, &ce) {
			rep.Compacted = ce.Compacted
		}
	}
	return json.Marshal(rep)
}

// errNotHere: this node holds no range with the key.
var errNotHere = errors.New("no range here holds the key")

// forwardCode classifies err for the node that forwarded the request.
func forwardCode(err error) string {
	var (
		notMade interface{ NotMade() bool }
		unknown interface{ OutcomeUnknown() bool }
		full    interface{ InsufficientStorage() bool }
	)
	switch {
	case errors.Is(err, errNotHere), errors.Is(err, raftnode.ErrWrongRange):
		return codeNotHere
	case errors.Is(err, httpapi.ErrCrossRange):
		return codeCrossRange
	case errors.Is(err, kv.ErrCompacted):
		return codeCompacted
	case errors.As(err, &notMade) && notMade.NotMade():
		return codeNotMade
	case errors.Is(err, context.DeadlineExceeded):
		return codeDeadline
	case errors.As(err, &unknown) && unknown.OutcomeUnknown():
		return codeUnknown
	case errors.As(err, &full) && full.InsufficientStorage():
		return codeNoSpace
	}
	return codeFailed
}

// remoteError is a forwarded request's failure, which the API answers as it
// would the same failure here.
type remoteError struct{ code, detail string }

func (e remoteError) Error() string             { return e.detail }
func (e remoteError) NotMade() bool             { return e.code == codeNotMade }
func (e remoteError) OutcomeUnknown() bool      { return e.code == codeUnknown }
func (e remoteError) InsufficientStorage() bool { return e.code == codeNoSpace }
func (e remoteError) Unwrap() error {
	switch e.code {
	case codeDeadline:
		return context.DeadlineExceeded
	case codeCrossRange:
		return httpapi.ErrCrossRange
	}
	return nil
}

// lostCall is a forwarded write whose link broke before the answer came.
type lostCall struct{ err error }

func (e lostCall) Error() string {
	return "the node the write was sent to did not answer: " + e.err.Error()
}
func (e lostCall) Unwrap() error        { return e.err }
func (e lostCall) OutcomeUnknown() bool { return true }

// forward sends req to a node that holds the range of key and returns its
// answer, asking again (after refreshing the directory) while the nodes it
// asks do not hold the key, until ctx ends.
func (b backend) forward(ctx context.Context, key []byte, req forwardRequest) (forwardReply, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return forwardReply{}, err
	}
	self := b.n.Status().ID
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				if last == nil {
					last = ctx.Err()
				}
				return forwardReply{}, fmt.Errorf("no node answered for key %q: %w (last: %v)", key, ctx.Err(), last)
			case <-time.After(min(time.Duration(attempt)*2*time.Millisecond, 50*time.Millisecond)):
			}
			b.pl.dir.refresh(ctx, 50*time.Millisecond)
		}
		d := b.pl.dir.get()
		r, ok := d.lookup(key)
		if !ok {
			last = fmt.Errorf("the range directory has no range for key %q yet", key)
			continue
		}
		for _, node := range forwardOrder(r, self) {
			out, err := b.pl.call(ctx, node, r.Shard, methodForward, payload)
			if err != nil {
				if req.Kind == forwardPropose && mayHaveRun(err) {
					// Sent again elsewhere it could be applied twice.
					return forwardReply{}, lostCall{err}
				}
				last = err
				continue
			}
			var rep forwardReply
			if err := json.Unmarshal(out, &rep); err != nil {
				return forwardReply{}, fmt.Errorf("answer of %s: %w", node, err)
			}
			if rep.Code == codeNotHere {
				last = fmt.Errorf("%s: %s", node, rep.Detail)
				continue
			}
			if rep.Code == codeCompacted {
				return forwardReply{}, &kv.CompactedError{Revision: req.Revision, Compacted: rep.Compacted}
			}
			if rep.Code != "" {
				return forwardReply{}, remoteError{rep.Code, rep.Detail}
			}
			return rep, nil
		}
	}
}

// mayHaveRun reports whether a call that failed with err may have run on
// the peer: unless it certainly never got there (no connection, no such
// peer) or its handler refused it before running it.
func mayHaveRun(err error) bool {
	for _, never := range []error{transport.ErrUnreachable, transport.ErrUnknownPeer,
		transport.ErrRemote, transport.ErrOtherCluster} {
		if errors.Is(err, never) {
			return false
		}
	}
	return true
}

// forwardOrder lists the nodes to try for range r: its leader, then its
// other voters, then learners; never this node (it holds no replica, or it
// would have served the request itself).
func forwardOrder(r replicaReport, self string) []string {
	var out []string
	if r.Leader != "" && r.Leader != self && r.has(r.Leader) {
		out = append(out, r.Leader)
	}
	for _, n := range r.replicas() {
		if n != self && n != r.Leader {
			out = append(out, n)
		}
	}
	return out
}
