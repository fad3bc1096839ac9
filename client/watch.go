package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Watch names what Client.Watch follows: one key, or every key with a
// prefix, from StartRevision on (0: the changes made after the watch
// starts).
type Watch struct {
	Key           string
	Prefix        string
	StartRevision int64
}

// Event is one line of a watch: a change of a key ("PUT" with the version
// it wrote, "DELETE" with the key and the delete's revision), or "PROGRESS":
// every change up to Revision has been delivered.
type Event struct {
	Type string
	// Key, Value, IsJSON and Version as in KeyValue (a DELETE and a
	// PROGRESS have no value and no version; a PROGRESS no key).
	Key      string
	Value    string
	IsJSON   bool
	Version  int64
	Revision int64
	// Raw is the event as the server sent it.
	Raw []byte
}

// Watch streams the changes that w names, in revision order, across the
// ranges of the key space. When the connection to a node breaks (the node
// died, or the network failed) it connects again, to the same or another
// endpoint, from the revision after the last event or progress it
// delivered, so that no change is delivered twice or missed. It ends when
// ctx ends (yielding nothing more), or with an error that no new connection
// can mend: a refused request (4xx: a compacted start revision is a
// *StatusError with Code 410), or a stream the compaction overtook.
func (c *Client) Watch(ctx context.Context, w Watch) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		pos := watchPos{start: w.StartRevision}
		backoff := firstBackoff
		for ctx.Err() == nil {
			c.mu.Lock()
			eps, first := c.endpoints, c.preferred
			c.mu.Unlock()
			for i := range eps {
				ep := eps[(first+i)%len(eps)]
				progressed, err, retry := c.watchFrom(ctx, ep, w, &pos, yield)
				if err == errStopped || ctx.Err() != nil {
					return
				}
				if !retry {
					yield(Event{}, err)
					return
				}
				if progressed {
					backoff = firstBackoff
				}
			}
			t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// errStopped: the caller stopped the iteration.
var errStopped = errors.New("watch stopped")

// watchPos is where a watch resumes: from revision start, whose first skip
// events were delivered already (events of one revision come in key order,
// the same on every node, so skipping that many is exact even when a
// connection broke in the middle of a revision).
type watchPos struct {
	start int64
	skip  int
}

// watchFrom streams from ep, from *pos on, advancing *pos past every event
// and progress it delivers. It returns whether it delivered anything, and
// why the stream ended: errStopped, an error to give up on (retry false), or
// one to connect again after.
func (c *Client) watchFrom(ctx context.Context, ep string, w Watch, pos *watchPos, yield func(Event, error) bool) (progressed bool, err error, retry bool) {
	q := url.Values{}
	if w.Prefix != "" {
		q.Set("prefix", w.Prefix)
	} else {
		q.Set("key", w.Key)
	}
	if pos.start > 0 {
		q.Set("start_revision", strconv.FormatInt(pos.start, 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep+"/watch?"+q.Encode(), nil)
	if err != nil {
		return false, err, false
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err, true
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return false, statusError(resp.StatusCode, data, false), resp.StatusCode >= 500
	}
	skip := pos.skip
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		ev, err := decodeEvent(line)
		if err != nil {
			return progressed, err, false
		}
		switch {
		case ev.Type == "ERROR":
			return progressed, fmt.Errorf("watch ended by %s: %s", ep, ev.Value), false
		case ev.Type == "PROGRESS":
			// Everything up to its revision was delivered.
			if ev.Revision >= pos.start {
				*pos = watchPos{start: ev.Revision + 1}
			}
		case ev.Revision == pos.start && skip > 0:
			skip-- // delivered before the connection broke
			continue
		case ev.Revision == pos.start:
			pos.skip++
		default:
			*pos = watchPos{start: ev.Revision, skip: 1}
		}
		skip = 0
		progressed = true
		if !yield(ev, nil) {
			return progressed, errStopped, false
		}
	}
	err = sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return progressed, err, true
}

// decodeEvent decodes one line of a watch.
func decodeEvent(line []byte) (Event, error) {
	var e struct {
		Type     string          `json:"type"`
		Key      string          `json:"key"`
		Value    json.RawMessage `json:"value"`
		Version  int64           `json:"version"`
		Revision int64           `json:"revision"`
		Detail   string          `json:"detail"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("decode watch event %q: %w", line, err)
	}
	ev := Event{Type: e.Type, Key: e.Key, Version: e.Version, Revision: e.Revision, Raw: append([]byte(nil), line...)}
	switch {
	case e.Type == "ERROR":
		ev.Value = e.Detail
	case len(e.Value) > 0 && e.Value[0] == '"':
		if err := json.Unmarshal(e.Value, &ev.Value); err != nil {
			return Event{}, fmt.Errorf("decode the value of %q: %w", e.Key, err)
		}
	case len(e.Value) > 0:
		ev.Value, ev.IsJSON = string(e.Value), true
	}
	return ev, nil
}
