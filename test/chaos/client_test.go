package chaos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

// history records operations with times relative to start (monotonic).
// Linearizable operations go to ops, for porcupine; every answered operation
// also goes to obs, for the stale-read checks.
type history struct {
	start time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	obs     []observation
	clients int              // porcupine client ids handed out
	counts  map[string]int   // "<kind> <outcome>" -> operations
	written map[string]int64 // unique value -> call time of the write that carries it
	odd     []string         // answers no correct node gives, for the failure message
	oddOf   []int            // the group of each of odd
	// refused describes, by unique value, each write answered as refused
	// for certain (a 503 that does not say it may still have been
	// applied): left out of the history, it must never be read.
	refused map[string]string
}

// observation is an answered operation as the stale-read checks see it: the
// node and process that served it, and the keys it returned (Key: index in
// the whole key space, group*groupSize + key).
type observation struct {
	node  int
	proc  *exec.Cmd // the node's process; nil if it changed during the call
	kind  opKind
	group int // the group of the operation
	// call and ret are the window the operation is checked in: a
	// continued scan page's is its first page's (it reads at the revision
	// that page fixed); answered is when the node really answered, which
	// bounds what it had applied then.
	call, ret int64
	answered  int64
	reads     []keyRead
	// applied is a log index the node had applied when it answered: the
	// revision of a write or transaction it acknowledged (the node answers
	// once it has applied it), else the greatest revision read.
	applied int64
}

type keyRead struct {
	Key int
	kvRead
}

func newHistory() *history {
	return &history{start: time.Now(), counts: map[string]int{}, written: map[string]int64{}, refused: map[string]string{}}
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

// newClient returns a fresh porcupine client id. A client whose write has an
// unknown outcome takes a new one: its open operation never returns.
func (h *history) newClient() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients++
	return h.clients - 1
}

func (h *history) wrote(v string, call int64) {
	h.mu.Lock()
	h.written[v] = call
	h.mu.Unlock()
}

func (h *history) add(op porcupine.Operation, outcome string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	h.counts[op.Input.(kvInput).Kind.String()+" "+outcome]++
}

func (h *history) observe(o observation) {
	h.mu.Lock()
	h.obs = append(h.obs, o)
	h.mu.Unlock()
}

func (h *history) count(kind opKind, outcome string) {
	h.mu.Lock()
	h.counts[kind.String()+" "+outcome]++
	h.mu.Unlock()
}

func (h *history) unexpected(group int, format string, args ...any) {
	h.mu.Lock()
	h.odd = append(h.odd, fmt.Sprintf(format, args...))
	h.oddOf = append(h.oddOf, group)
	h.mu.Unlock()
}

// refuse records write in, answered as refused for certain (answer).
func (h *history) refuse(in kvInput, answer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range putValues(in) {
		h.refused[v] = answer
	}
}

// refusedButApplied lists each write answered as refused for certain whose
// value some read returned: it was applied. Porcupine only finds this as a
// read of a value no write in the history carries; this names the answer.
func (h *history) refusedButApplied() []string {
	seen := map[string]bool{}
	var out []string
	for _, o := range h.obs {
		for _, r := range o.reads {
			if answer, ok := h.refused[r.Value]; r.Found && ok && !seen[r.Value] {
				seen[r.Value] = true
				out = append(out, fmt.Sprintf("%s=%s v%d r%d was read (%s on n%d at %.3fs), but its write was refused for certain: %s",
					keyOf(r.Key), r.Value, r.Version, r.Revision, o.kind, o.node+1, seconds(o.ret), answer))
			}
		}
	}
	return out
}

// dropGroups leaves the operations, observations and unexpected answers of
// the groups in drop out of the history (a sharded round's group that ended
// in two ranges, whose revisions are then not one log's).
func (h *history) dropGroups(drop map[int]bool) {
	if len(drop) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var ops []porcupine.Operation
	for _, op := range h.ops {
		if !drop[op.Input.(kvInput).Group] {
			ops = append(ops, op)
		}
	}
	var obs []observation
	for _, o := range h.obs {
		if !drop[o.group] {
			obs = append(obs, o)
		}
	}
	var odd []string
	var oddOf []int
	for i, s := range h.odd {
		if !drop[h.oddOf[i]] {
			odd, oddOf = append(odd, s), append(oddOf, h.oddOf[i])
		}
	}
	h.ops, h.obs, h.odd, h.oddOf = ops, obs, odd, oddOf
}

// resolveObserved closes the open end of every unknown write one of whose
// unique values some read (linearizable or stale) returned: the write took
// effect before that read returned. A single-key put becomes acknowledged
// with the revision the read showed; a transaction keeps its unknown outcome
// but must have happened by then. This keeps the search space small and
// loses nothing the checker could find.
func (h *history) resolveObserved() int {
	type seenAt struct {
		ret int64
		rev int64
	}
	seen := map[string]seenAt{}
	for _, o := range h.obs {
		for _, r := range o.reads {
			if s, ok := seen[r.Value]; r.Found && (!ok || o.ret < s.ret) {
				seen[r.Value] = seenAt{o.ret, r.Revision}
			}
		}
	}
	n := 0
	for i, op := range h.ops {
		in := op.Input.(kvInput)
		if op.Output.(kvOutput).Status != statusUnknown || !in.Kind.write() {
			continue
		}
		var values []string
		if in.Kind == opTxn {
			for _, o := range append(append([]txnOp(nil), in.Txn.Success...), in.Txn.Failure...) {
				if o.Kind == txnPut {
					values = append(values, o.Value)
				}
			}
		} else if in.Value != "" {
			values = []string{in.Value}
		}
		for _, v := range values {
			s, ok := seen[v]
			if !ok || s.ret < op.Call {
				continue
			}
			if in.Kind != opTxn {
				h.ops[i].Output = kvOutput{Status: 200, Revision: s.rev}
			}
			h.ops[i].Return = min(h.ops[i].Return, s.ret)
			n++
			break
		}
	}
	return n
}

// summary lists the operation counts by kind and outcome.
func (h *history) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for k, n := range h.counts {
		parts = append(parts, fmt.Sprintf("%s=%d", strings.ReplaceAll(k, " ", ":"), n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// client issues one request at a time to random nodes on the key groups.
type client struct {
	id    int
	rng   *rand.Rand
	h     *history
	nodes []*node
	http  *http.Client
	// known is the last state of each key (by index in the key space) this
	// client saw in a linearizable answer, for the conditions it sends. Only
	// linearizable answers: the model relies on a client comparing only with
	// revisions the checked history shows.
	known [numGroups * groupSize]kvRead
	seq   int
	// page is the next page of a paged scan under way, if any;
	// pageCall and pageRet are when its first page was asked and answered.
	page              *kvInput
	pageCall, pageRet int64
}

func newClient(id int, seed int64, h *history, nodes []*node) *client {
	return &client{id: id, rng: rand.New(rand.NewSource(seed)), h: h, nodes: nodes,
		http: &http.Client{Timeout: clientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
}

func (c *client) value() string {
	c.seq++
	return fmt.Sprintf("c%d-%d", c.id, c.seq)
}

// next picks the next request. Conflicts are frequent: 9 keys, and the
// conditions use what this client last saw, which others keep changing.
func (c *client) next() kvInput {
	in := kvInput{Group: c.rng.Intn(numGroups), Key: c.rng.Intn(groupSize)}
	k := c.known[in.Group*groupSize+in.Key]
	switch p := c.rng.Intn(100); {
	case p < 18:
		in.Kind = opGet
	case p < 26:
		in.Kind = opStaleGet
	case p < 30:
		in.Kind = opScan
	case p < 33:
		in.Kind, in.Key, in.Prev = opScanPage, 0, int64(1+c.rng.Intn(2))
	case p < 37:
		in.Kind = opStaleScan
	case p < 50:
		in.Kind, in.Value = opPut, c.value()
	case p < 60:
		in.Kind, in.Value, in.Prev = opCAS, c.value(), k.Version
	case p < 64:
		in.Kind, in.Value = opCreate, c.value()
	case p < 69:
		in.Kind, in.Value, in.Prev = opCASRev, c.value(), k.Revision
	case p < 75:
		in.Kind = opDel
	case p < 79:
		in.Kind, in.Prev = opDelIf, k.Version
	default:
		in.Kind, in.Txn = opTxn, c.txn(in.Group)
	}
	return in
}

// txn builds a transaction on group g: one or two compares built from what
// this client last saw, a success branch of up to three writes and reads,
// and a failure branch that reads the compared keys or writes one.
func (c *client) txn(g int) *txnInput {
	tx := &txnInput{}
	for n := 1 + c.rng.Intn(2); n > 0; n-- {
		cmp := txnCompare{Key: c.rng.Intn(groupSize), Not: c.rng.Intn(5) == 0}
		k := c.known[g*groupSize+cmp.Key]
		switch c.rng.Intn(4) {
		case 0:
			cmp.Target, cmp.Version = cmpVersion, k.Version
		case 1:
			cmp.Target, cmp.Value = cmpValue, k.Value
			if !k.Found {
				cmp.Value = "never-written"
			}
		case 2:
			cmp.Target, cmp.Exists = cmpExists, k.Found
		case 3:
			cmp.Target, cmp.Version = cmpRevision, k.Revision
		}
		tx.Compares = append(tx.Compares, cmp)
	}
	branch := func(n int) []txnOp {
		var ops []txnOp
		written := map[int]bool{}
		for _, key := range c.rng.Perm(groupSize)[:n] {
			op := txnOp{Key: key}
			switch p := c.rng.Intn(10); {
			case p < 5:
				op.Kind, op.Value = txnPut, c.value()
			case p < 7:
				op.Kind = txnDelete
			default:
				op.Kind = txnGet
			}
			written[key] = op.Kind != txnGet
			ops = append(ops, op)
		}
		// A get after a write of the same key in the branch sees the write.
		if c.rng.Intn(4) == 0 && len(ops) > 0 {
			ops = append(ops, txnOp{Kind: txnGet, Key: ops[0].Key})
		}
		return ops
	}
	tx.Success = branch(1 + c.rng.Intn(groupSize))
	if c.rng.Intn(2) == 0 {
		for _, cmp := range tx.Compares {
			tx.Failure = append(tx.Failure, txnOp{Kind: txnGet, Key: cmp.Key})
		}
	} else {
		tx.Failure = branch(1)
	}
	// A branch must not write one key twice; reads may repeat.
	for _, br := range [][]txnOp{tx.Success, tx.Failure} {
		seen := map[int]bool{}
		for i := range br {
			if br[i].Kind != txnGet && seen[br[i].Key] {
				br[i] = txnOp{Kind: txnGet, Key: br[i].Key}
			}
			if br[i].Kind != txnGet {
				seen[br[i].Key] = true
			}
		}
	}
	return tx
}

func (c *client) run(stop <-chan struct{}) {
	defer c.http.CloseIdleConnections()
	pid := c.h.newClient()
	for {
		select {
		case <-stop:
			return
		default:
		}
		in := c.next()
		if c.page != nil {
			in, c.page = *c.page, nil
		}
		ni := c.rng.Intn(len(c.nodes))
		op, outcome := c.do(pid, ni, in)
		if op.Input != nil {
			c.h.add(op, outcome)
		} else {
			c.h.count(in.Kind, outcome)
		}
		switch outcome {
		case "unknown":
			pid = c.h.newClient()
			fallthrough
		case "failed", "refused", "rejected":
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// request is the HTTP request of in.
func request(in kvInput, nd *node) (*http.Request, error) {
	key := "/key/" + keyName(in.Group, in.Key)
	var method, path string
	var body any
	switch in.Kind {
	case opGet:
		method, path = http.MethodGet, key
	case opStaleGet:
		method, path = http.MethodGet, key+"?consistency=stale"
	case opScan, opStaleScan:
		method, path = http.MethodGet, "/keys?limit=10&prefix="+url.QueryEscape(groupPrefix(in.Group))
		if in.Kind == opStaleScan {
			path += "&consistency=stale"
		}
	case opScanPage:
		method, path = http.MethodGet, fmt.Sprintf("/keys?limit=%d&prefix=%s", in.Prev, url.QueryEscape(groupPrefix(in.Group)))
		if in.Token != "" {
			path += "&continue=" + url.QueryEscape(in.Token)
		}
	case opPut:
		method, path, body = http.MethodPut, key, map[string]any{"value": in.Value}
	case opCAS:
		method, path, body = http.MethodPut, key, map[string]any{"value": in.Value, "prev_version": in.Prev}
	case opCreate:
		method, path, body = http.MethodPut, key, map[string]any{"value": in.Value, "create_only": true}
	case opCASRev:
		method, path, body = http.MethodPut, key, map[string]any{"value": in.Value, "prev_revision": in.Prev}
	case opDel:
		method, path = http.MethodDelete, key
	case opDelIf:
		method, path = http.MethodDelete, fmt.Sprintf("%s?prev_version=%d", key, in.Prev)
	case opTxn:
		method, path, body = http.MethodPost, "/txn", txnBody(in.Group, in.Txn)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	return http.NewRequest(method, nd.url(path), rd)
}

func txnBody(g int, tx *txnInput) map[string]any {
	var cmps []map[string]any
	for _, c := range tx.Compares {
		m := map[string]any{"key": keyName(g, c.Key), "op": "=="}
		if c.Not {
			m["op"] = "!="
		}
		switch c.Target {
		case cmpVersion:
			m["target"], m["version"] = "version", c.Version
		case cmpRevision:
			m["target"], m["revision"] = "revision", c.Version
		case cmpValue:
			m["target"], m["value"] = "value", c.Value
		case cmpExists:
			m["target"], m["exists"] = "exists", c.Exists
		}
		cmps = append(cmps, m)
	}
	ops := func(br []txnOp) []map[string]any {
		out := []map[string]any{}
		for _, op := range br {
			switch op.Kind {
			case txnPut:
				out = append(out, map[string]any{"put": map[string]string{"key": keyName(g, op.Key), "value": op.Value}})
			case txnDelete:
				out = append(out, map[string]any{"delete": map[string]string{"key": keyName(g, op.Key)}})
			case txnGet:
				out = append(out, map[string]any{"get": map[string]string{"key": keyName(g, op.Key)}})
			}
		}
		return out
	}
	return map[string]any{"compare": cmps, "success": ops(tx.Success), "failure": ops(tx.Failure)}
}

// wireKV is a key as GET /key, GET /keys and a txn's get return it.
type wireKV struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Version  int64  `json:"version"`
	Revision int64  `json:"revision"`
}

func (w *wireKV) read() kvRead {
	if w == nil {
		return kvRead{}
	}
	return kvRead{Found: true, Value: w.Value, Version: w.Version, Revision: w.Revision}
}

// wireAnswer is the union of the 200 and 409 bodies the client parses.
type wireAnswer struct {
	wireKV
	ID        int64    `json:"id"`
	KVs       []wireKV `json:"kvs"`
	More      bool     `json:"more"`
	Continue  string   `json:"continue"`
	Succeeded bool     `json:"succeeded"`
	Responses []struct {
		Put    *struct{ Revision int64 } `json:"put"`
		Delete *struct{ Deleted int64 }  `json:"delete"`
		Get    *wireKV                   `json:"get"`
	} `json:"responses"`
}

// decode turns a 200 answer to in into its output; ok false if the body is
// not one a correct node sends.
func decode(in kvInput, b []byte) (kvOutput, bool) {
	var a wireAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return kvOutput{}, false
	}
	out := kvOutput{Status: 200}
	switch in.Kind {
	case opGet, opStaleGet:
		if a.Key != keyName(in.Group, in.Key) {
			return out, false
		}
		out.Read = a.wireKV.read()
	case opScan, opStaleScan, opScanPage:
		if a.More && in.Kind != opScanPage {
			return out, false // limit=10 covers a group of 3 in one page
		}
		if a.More != (a.Continue != "") {
			return out, false
		}
		out.More, out.Continue = a.More, a.Continue
		out.Scan = make([]kvRead, groupSize)
		last := ""
		for _, kv := range a.KVs {
			if kv.Key == "" {
				return out, false
			}
			k := strings.IndexByte("abc", kv.Key[len(kv.Key)-1])
			if kv.Key <= last || !strings.HasPrefix(kv.Key, groupPrefix(in.Group)) || k < 0 || kv.Key != keyName(in.Group, k) {
				return out, false
			}
			last = kv.Key
			out.Scan[k] = kv.read()
		}
	case opTxn:
		out.Revision, out.Succeeded = a.Revision, a.Succeeded
		ops := in.Txn.Failure
		if a.Succeeded {
			ops = in.Txn.Success
		}
		if len(a.Responses) != len(ops) {
			return out, false
		}
		for i, r := range a.Responses {
			var rd kvRead
			switch ops[i].Kind {
			case txnPut:
				if r.Put == nil || r.Put.Revision != a.Revision {
					return out, false
				}
			case txnDelete:
				if r.Delete == nil || r.Delete.Deleted > 1 {
					return out, false
				}
				rd.Found = r.Delete.Deleted == 1
			case txnGet:
				if r.Get != nil && r.Get.Key != keyName(in.Group, ops[i].Key) {
					return out, false
				}
				rd = r.Get.read()
			}
			out.Responses = append(out.Responses, rd)
		}
	default:
		if a.ID <= 0 {
			return out, false
		}
		out.Revision = a.ID
	}
	return out, true
}

// do sends in to node ni and returns the operation to record (Input nil:
// drop it) and its outcome.
func (c *client) do(pid, ni int, in kvInput) (porcupine.Operation, string) {
	nd := c.nodes[ni]
	req, err := request(in, nd)
	if err != nil {
		panic(err)
	}
	write := in.Kind.write()
	proc := process(nd)
	op := porcupine.Operation{ClientId: pid, Input: in, Call: c.h.now()}
	if write {
		for _, v := range putValues(in) {
			c.h.wrote(v, op.Call)
		}
	}
	resp, err := c.http.Do(req)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	op.Return = c.h.now()
	if process(nd) != proc {
		proc = nil
	}
	drop := porcupine.Operation{Input: nil}
	unknown := func() (porcupine.Operation, string) {
		if !write {
			return drop, "failed"
		}
		op.Output, op.Return = kvOutput{Status: statusUnknown}, math.MaxInt64
		return op, "unknown"
	}
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Never sent: nothing can have been applied.
			return drop, "refused"
		}
		return unknown()
	}
	odd := func() (porcupine.Operation, string) {
		c.h.unexpected(in.Group, "%s on %s: %d %s", describeOp(in, kvOutput{Status: -1}), nd.name, resp.StatusCode, b)
		if !write {
			return drop, "odd"
		}
		op.Output, op.Return = kvOutput{Status: statusUnknown}, math.MaxInt64
		return op, "odd"
	}
	var out kvOutput
	outcome := "ok"
	switch code := resp.StatusCode; {
	case code == 200:
		var ok bool
		if out, ok = decode(in, b); !ok {
			return odd()
		}
	case code == 404 && (in.Kind == opGet || in.Kind == opStaleGet || in.Kind == opDel || in.Kind == opDelIf):
		out, outcome = kvOutput{Status: 404}, "notfound"
	case code == 409 && (in.Kind == opCAS || in.Kind == opCreate || in.Kind == opCASRev || in.Kind == opDelIf):
		var a wireAnswer
		if err := json.Unmarshal(b, &a); err != nil || a.Key != keyName(in.Group, in.Key) {
			return odd()
		}
		out, outcome = kvOutput{Status: 409, Read: kvRead{Found: a.Version != 0, Version: a.Version, Revision: a.Revision}}, "conflict"
	case code == 503:
		if !write {
			return drop, "failed"
		}
		if !strings.Contains(string(b), "may still have been applied") {
			// Refused before it was proposed (no leader, ...): as
			// the API documents, only a timed-out write may apply.
			c.h.refuse(in, fmt.Sprintf("%s on %s at %.3f-%.3fs: %d %s", describeOp(in, kvOutput{Status: -1}), nd.name,
				seconds(op.Call), seconds(op.Return), resp.StatusCode, strings.TrimSpace(string(b))))
			return drop, "rejected"
		}
		return unknown()
	default:
		return odd()
	}
	op.Output = out
	if in.Kind == opTxn && !out.Succeeded {
		outcome = "failed-compare"
	}
	// What the node that answered proves it had applied, for the stale
	// reads, it proves when it answered (observation.answered), whatever
	// window the history checks the answer in.
	answeredRet := op.Return
	if in.Kind == opScanPage && in.Token != "" {
		// A continued page reads at the revision its scan's first page
		// fixed (the token carries it): it shows the database as it was
		// while the first page was served.
		op.Call, op.Return = c.pageCall, c.pageRet
	}
	if in.Kind == opScanPage && out.More {
		if in.Token == "" {
			c.pageCall, c.pageRet = op.Call, op.Return
		}
		// The next page starts after this one's last key.
		next := kvInput{Kind: opScanPage, Group: in.Group, Prev: in.Prev, Token: out.Continue}
		for k, r := range out.Scan {
			if r.Found {
				next.Key = k + 1
			}
		}
		c.page = &next
	}
	c.learn(in, out)
	if o := observe(in, out); o.reads != nil || o.applied != 0 {
		o.node, o.proc, o.kind, o.call, o.ret, o.answered = ni, proc, in.Kind, op.Call, op.Return, answeredRet
		c.h.observe(o)
	}
	if in.Kind == opStaleGet || in.Kind == opStaleScan {
		return drop, outcome
	}
	return op, outcome
}

// putValues lists the unique values in writes.
func putValues(in kvInput) []string {
	if in.Kind != opTxn {
		if in.Value == "" {
			return nil
		}
		return []string{in.Value}
	}
	var vs []string
	for _, br := range [][]txnOp{in.Txn.Success, in.Txn.Failure} {
		for _, op := range br {
			if op.Kind == txnPut {
				vs = append(vs, op.Value)
			}
		}
	}
	return vs
}

// observe extracts what the stale-read checks use from an answer.
func observe(in kvInput, out kvOutput) observation {
	o := observation{group: in.Group}
	base := in.Group * groupSize
	add := func(k int, r kvRead) {
		o.reads = append(o.reads, keyRead{Key: base + k, kvRead: r})
		o.applied = max(o.applied, r.Revision)
	}
	switch in.Kind {
	case opGet, opStaleGet:
		add(in.Key, out.Read)
	case opScan, opStaleScan:
		for k, r := range out.Scan {
			add(k, r)
		}
	case opScanPage:
		// What the page covers: from its first key to its last, or to
		// the end of the group if it is the last page.
		end := groupSize
		if out.More {
			for k, r := range out.Scan {
				if r.Found {
					end = k + 1
				}
			}
		}
		for k := in.Key; k < end; k++ {
			add(k, out.Scan[k])
		}
	case opTxn:
		br := in.Txn.Failure
		if out.Succeeded {
			br = in.Txn.Success
		}
		for i, op := range br {
			if op.Kind == txnGet {
				add(op.Key, out.Responses[i])
			}
		}
	}
	if out.Status == 200 && in.Kind.write() {
		o.applied = max(o.applied, out.Revision)
	}
	return o
}

// learn updates what the client knows of the keys from a linearizable answer.
func (c *client) learn(in kvInput, out kvOutput) {
	base := in.Group * groupSize
	switch in.Kind {
	case opGet:
		c.known[base+in.Key] = out.Read
	case opScan:
		copy(c.known[base:base+groupSize], out.Scan)
	case opScanPage:
		for k, r := range out.Scan {
			if r.Found {
				c.known[base+k] = r
			}
		}
	case opPut, opCAS, opCreate, opCASRev:
		switch out.Status {
		case 200:
			k := &c.known[base+in.Key]
			*k = kvRead{Found: true, Value: in.Value, Version: k.Version + 1, Revision: out.Revision}
		case 409:
			c.known[base+in.Key] = out.Read
		}
	case opDel, opDelIf:
		switch out.Status {
		case 200, 404:
			c.known[base+in.Key] = kvRead{}
		case 409:
			c.known[base+in.Key] = out.Read
		}
	case opTxn:
		br := in.Txn.Failure
		if out.Succeeded {
			br = in.Txn.Success
		}
		for i, op := range br {
			k := &c.known[base+op.Key]
			switch op.Kind {
			case txnPut:
				*k = kvRead{Found: true, Value: op.Value, Version: k.Version + 1, Revision: out.Revision}
			case txnDelete:
				*k = kvRead{}
			case txnGet:
				*k = out.Responses[i]
			}
		}
	}
}

// process is the node's current process, to tell its restarts apart.
func process(nd *node) *exec.Cmd {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd
}

// save writes the history to path, one operation a line in call order: the
// checked operations (with porcupine's client id) and the stale reads, for
// reading next to the nodes' logs when a round fails.
func (h *history) save(path string) error {
	type line struct {
		call int64
		text string
	}
	var lines []line
	at := func(t int64) string {
		if t == math.MaxInt64 {
			return "open"
		}
		return fmt.Sprintf("%.6fs", seconds(t))
	}
	for _, op := range h.ops {
		lines = append(lines, line{op.Call, fmt.Sprintf("%s %s client %d: %s",
			at(op.Call), at(op.Return), op.ClientId, describeOp(op.Input, op.Output))})
	}
	for _, o := range h.obs {
		if o.kind != opStaleGet && o.kind != opStaleScan {
			continue
		}
		var parts []string
		for _, r := range o.reads {
			parts = append(parts, fmt.Sprintf("%s=%s", keyOf(r.Key), describeRead(r.kvRead)))
		}
		lines = append(lines, line{o.call, fmt.Sprintf("%s %s n%d: %s -> [%s]",
			at(o.call), at(o.ret), o.node+1, o.kind, strings.Join(parts, ", "))})
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].call < lines[j].call })
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
