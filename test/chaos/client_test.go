package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"
)

// history records operations with times relative to start (monotonic).
type history struct {
	start time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	clients int            // porcupine client ids handed out
	counts  map[string]int // "<kind> <outcome>" -> operations
	written map[string]bool
	odd     []string // answers no correct node gives, for the failure message
}

func newHistory() *history {
	return &history{start: time.Now(), counts: map[string]int{}, written: map[string]bool{}}
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

func (h *history) wrote(v string) {
	h.mu.Lock()
	h.written[v] = true
	h.mu.Unlock()
}

func (h *history) add(op porcupine.Operation, outcome string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	h.counts[op.Input.(kvInput).Kind.String()+" "+outcome]++
}

func (h *history) count(kind opKind, outcome string) {
	h.mu.Lock()
	h.counts[kind.String()+" "+outcome]++
	h.mu.Unlock()
}

func (h *history) unexpected(format string, args ...any) {
	h.mu.Lock()
	h.odd = append(h.odd, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// resolveObserved closes the open end of every unknown put whose unique value
// some read returned: the write took effect before that read returned, so it
// succeeded and its return can be set to the read's. This keeps the search
// space small and loses nothing the checker could find.
func (h *history) resolveObserved() int {
	seen := map[string]int64{}
	for _, op := range h.ops {
		out := op.Output.(kvOutput)
		if op.Input.(kvInput).Kind == opGet && out.Status == 200 {
			if r, ok := seen[out.Value]; !ok || op.Return < r {
				seen[out.Value] = op.Return
			}
		}
	}
	n := 0
	for i, op := range h.ops {
		in := op.Input.(kvInput)
		if op.Output.(kvOutput).Status != statusUnknown || (in.Kind != opPut && in.Kind != opCAS) {
			continue
		}
		if r, ok := seen[in.Value]; ok && r >= op.Call {
			h.ops[i].Output = kvOutput{Status: 200}
			h.ops[i].Return = r
			n++
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

// client issues one request at a time to random nodes on keys.
type client struct {
	id    int
	rng   *rand.Rand
	h     *history
	nodes []*node
	keys  []string
	http  *http.Client
	// version is the last version this client saw per key, for cas.
	version map[string]int64
}

func newClient(id int, seed int64, h *history, nodes []*node, keys []string) *client {
	return &client{id: id, rng: rand.New(rand.NewSource(seed)), h: h, nodes: nodes, keys: keys,
		http:    &http.Client{Timeout: clientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		version: map[string]int64{}}
}

func (c *client) run(stop <-chan struct{}) {
	defer c.http.CloseIdleConnections()
	pid := c.h.newClient()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		in := kvInput{Key: c.keys[c.rng.Intn(len(c.keys))]}
		switch p := c.rng.Intn(100); {
		case p < 40:
			in.Kind = opGet
		case p < 65:
			in.Kind = opPut
		case p < 85:
			in.Kind = opCAS
			in.Prev = c.version[in.Key]
		default:
			in.Kind = opDel
		}
		if in.Kind == opPut || in.Kind == opCAS {
			in.Value = fmt.Sprintf("c%d-%d", c.id, seq)
		}
		nd := c.nodes[c.rng.Intn(len(c.nodes))]
		op, outcome := c.do(pid, nd, in)
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

// do sends in to nd and returns the operation to record (Input nil: drop it)
// and its outcome.
func (c *client) do(pid int, nd *node, in kvInput) (porcupine.Operation, string) {
	var method, body string
	switch in.Kind {
	case opGet:
		method = http.MethodGet
	case opPut:
		method, body = http.MethodPut, fmt.Sprintf(`{"value":%q}`, in.Value)
	case opCAS:
		method, body = http.MethodPut, fmt.Sprintf(`{"value":%q,"prev_version":%d}`, in.Value, in.Prev)
	case opDel:
		method = http.MethodDelete
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, nd.url("/key/"+in.Key), rd)
	if err != nil {
		panic(err)
	}
	write := in.Kind != opGet
	if write && in.Value != "" {
		c.h.wrote(in.Value)
	}
	op := porcupine.Operation{ClientId: pid, Input: in, Call: c.h.now()}
	resp, err := c.http.Do(req)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	op.Return = c.h.now()
	drop := porcupine.Operation{Input: nil}
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Never sent: nothing can have been applied.
			return drop, "refused"
		}
		if !write {
			return drop, "failed"
		}
		op.Output, op.Return = kvOutput{Status: statusUnknown}, math.MaxInt64
		return op, "unknown"
	}
	var got struct {
		Value   string `json:"value"`
		Version int64  `json:"version"`
	}
	switch code := resp.StatusCode; {
	case code == 200 && in.Kind == opGet:
		if err := json.Unmarshal(b, &got); err != nil {
			c.h.unexpected("%s on %s: 200 with %q: %v", in.Kind, nd.name, b, err)
			return drop, "odd"
		}
		c.version[in.Key] = got.Version
		op.Output = kvOutput{Status: 200, Value: got.Value, Version: got.Version}
		return op, "ok"
	case code == 200:
		op.Output = kvOutput{Status: 200}
		switch in.Kind {
		case opPut:
			c.version[in.Key]++ // a guess: others may have written too
		case opCAS:
			c.version[in.Key] = in.Prev + 1
		case opDel:
			c.version[in.Key] = 0
		}
		return op, "ok"
	case code == 404 && (in.Kind == opGet || in.Kind == opDel):
		c.version[in.Key] = 0
		op.Output = kvOutput{Status: 404}
		return op, "notfound"
	case code == 409 && in.Kind == opCAS:
		if err := json.Unmarshal(b, &got); err != nil {
			c.h.unexpected("%s on %s: 409 with %q: %v", in.Kind, nd.name, b, err)
			return drop, "odd"
		}
		c.version[in.Key] = got.Version
		op.Output = kvOutput{Status: 409, Version: got.Version}
		return op, "conflict"
	case code == 503:
		if !write {
			return drop, "failed"
		}
		if !strings.Contains(string(b), "may still have been applied") {
			// Refused before it was proposed (no leader, ...): as
			// the API documents, only a timed-out write may apply.
			return drop, "rejected"
		}
		op.Output, op.Return = kvOutput{Status: statusUnknown}, math.MaxInt64
		return op, "unknown"
	default:
		c.h.unexpected("%s %s on %s: %d %s", in.Kind, in.Key, nd.name, code, b)
		if !write {
			return drop, "odd"
		}
		op.Output, op.Return = kvOutput{Status: statusUnknown}, math.MaxInt64
		return op, "unknown"
	}
}
