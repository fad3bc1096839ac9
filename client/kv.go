package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// KeyValue is a key with its value, as Get, Scan and a transaction's get
// read it.
type KeyValue struct {
	Key string
	// Value is a string value as the string it is, and any other JSON
	// value (number, object, array, boolean, null) as its compact JSON
	// text, numbers as they were written (IsJSON tells which).
	Value string
	// IsJSON: the value is not a string, and Value holds its JSON text.
	IsJSON bool
	// Version counts the writes of the key since it was created: 1 after
	// the first.
	Version int64
	// Revision is the revision of the key's last change.
	Revision int64
	// CreateRevision is the revision that created the key; only a
	// transaction's get reports it (0 elsewhere).
	CreateRevision int64
	// TTL is the whole seconds left until the key expires, rounded up, for
	// a key written with the TTL option; 0 for a key without one (and in a
	// transaction's get).
	TTL int64
	// Raw is the pair as the server wrote it.
	Raw json.RawMessage
}

// JSON returns the value as a JSON value: a string value as a JSON string.
func (kv KeyValue) JSON() json.RawMessage {
	if kv.IsJSON {
		return json.RawMessage(kv.Value)
	}
	b, _ := json.Marshal(kv.Value)
	return b
}

// decodeKeyValue decodes a pair of an answer.
func decodeKeyValue(raw []byte) (KeyValue, error) {
	var p struct {
		Key            string          `json:"key"`
		Value          json.RawMessage `json:"value"`
		Version        int64           `json:"version"`
		Revision       int64           `json:"revision"`
		CreateRevision int64           `json:"create_revision"`
		TTL            int64           `json:"ttl"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return KeyValue{}, fmt.Errorf("decode key-value pair: %w", err)
	}
	kv := KeyValue{Key: p.Key, Version: p.Version, Revision: p.Revision, CreateRevision: p.CreateRevision, TTL: p.TTL, Raw: raw}
	if len(p.Value) > 0 && p.Value[0] == '"' {
		if err := json.Unmarshal(p.Value, &kv.Value); err != nil {
			return KeyValue{}, fmt.Errorf("decode the value of %q: %w", p.Key, err)
		}
	} else {
		kv.Value, kv.IsJSON = string(p.Value), true
	}
	return kv, nil
}

// Condition is a condition of a write, checked when the write is applied:
// if it does not hold, nothing is written and the write fails with a
// *ConflictError. All conditions given must hold.
type Condition func(*conditions)

type conditions struct {
	version      *int64 // PUT only, the prototype's "version"
	prevVersion  *int64
	prevRevision *int64
	createOnly   bool
	ttl          int64 // seconds; Put only
}

func (cs *conditions) apply(conds []Condition) {
	for _, c := range conds {
		c(cs)
	}
}

// PrevVersion holds when the key's version is n; 0: the key does not exist.
func PrevVersion(n int64) Condition { return func(c *conditions) { c.prevVersion = &n } }

// PrevRevision holds when the revision of the key's last change is n; 0:
// the key does not exist.
func PrevRevision(n int64) Condition { return func(c *conditions) { c.prevRevision = &n } }

// CreateOnly holds when the key does not exist. Put only: the server
// refuses it for a Delete (422).
func CreateOnly() Condition { return func(c *conditions) { c.createOnly = true } }

// TTL is not a condition but an option of a Put: the key expires d after
// the server receives the write (whole seconds, rounded up; at most 10
// years). The deadline is replicated with the write, so every node drops
// the key at the same point and a restart keeps it; Get reports the time
// left (KeyValue.TTL). A Put without TTL, or with a d of 0 or less,
// clears a key's deadline. Delete refuses it.
func TTL(d time.Duration) Condition {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	if d <= 0 {
		s = 0
	}
	return func(c *conditions) { c.ttl = s }
}

// Version is the Python prototype's form of PrevVersion, sent as the PUT
// body's "version": its 409 also carries the prototype's "status",
// "message" and "current_version" (in ConflictError.Body). Put only.
func Version(n int64) Condition { return func(c *conditions) { c.version = &n } }

// PutResult is the answer to a write of a key.
type PutResult struct {
	// Revision is the revision of the write (the answer's "id").
	Revision int64
	Key      string
	// Version is the key's version after the write.
	Version int64
	// Raw is the answer as the server sent it.
	Raw json.RawMessage
}

// Put writes the string value to key, if the conditions hold. It fails with
// a *ConflictError when one does not.
func (c *Client) Put(ctx context.Context, key, value string, conds ...Condition) (PutResult, error) {
	v, err := json.Marshal(value)
	if err != nil {
		return PutResult{}, err
	}
	return c.put(ctx, key, v, conds)
}

// PutJSON writes the JSON value (a number, object, array, boolean, null, or
// a string) to key, if the conditions hold; it is read back as that value
// (KeyValue.IsJSON for all but a string). It fails at once if value is not
// valid JSON.
func (c *Client) PutJSON(ctx context.Context, key string, value json.RawMessage, conds ...Condition) (PutResult, error) {
	if !json.Valid(value) {
		return PutResult{}, fmt.Errorf("put %q: the value is not valid JSON", key)
	}
	return c.put(ctx, key, value, conds)
}

func (c *Client) put(ctx context.Context, key string, value json.RawMessage, conds []Condition) (PutResult, error) {
	var cs conditions
	cs.apply(conds)
	body, err := json.Marshal(struct {
		Value        json.RawMessage `json:"value"`
		Version      *int64          `json:"version,omitempty"`
		PrevVersion  *int64          `json:"prev_version,omitempty"`
		PrevRevision *int64          `json:"prev_revision,omitempty"`
		CreateOnly   bool            `json:"create_only,omitempty"`
		TTL          int64           `json:"ttl,omitempty"`
	}{value, cs.version, cs.prevVersion, cs.prevRevision, cs.createOnly, cs.ttl})
	if err != nil {
		return PutResult{}, err
	}
	a, err := c.do(ctx, request{method: http.MethodPut, path: "/key/" + escapeKey(key), body: body, write: true, key: true})
	if err != nil {
		return PutResult{}, err
	}
	var res struct {
		ID      int64  `json:"id"`
		Key     string `json:"key"`
		Version int64  `json:"version"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil {
		return PutResult{}, fmt.Errorf("decode the answer to put %q: %w", key, err)
	}
	return PutResult{Revision: res.ID, Key: res.Key, Version: res.Version, Raw: a.body}, nil
}

// DeleteResult is the answer to a delete.
type DeleteResult struct {
	// Revision is the revision of the delete (the answer's "id").
	Revision int64
	// Raw is the answer as the server sent it.
	Raw json.RawMessage
}

// Delete deletes key, if the conditions hold (PrevVersion, PrevRevision).
// It fails with ErrNotFound when the key does not exist, with a
// *ConflictError when a condition does not hold.
func (c *Client) Delete(ctx context.Context, key string, conds ...Condition) (DeleteResult, error) {
	var cs conditions
	cs.apply(conds)
	if cs.ttl != 0 {
		return DeleteResult{}, fmt.Errorf("delete %q: TTL is an option of Put only", key)
	}
	if cs.version != nil {
		return DeleteResult{}, errors.New("delete: Version is a condition of Put; use PrevVersion")
	}
	q := url.Values{}
	if cs.prevVersion != nil {
		q.Set("prev_version", strconv.FormatInt(*cs.prevVersion, 10))
	}
	if cs.prevRevision != nil {
		q.Set("prev_revision", strconv.FormatInt(*cs.prevRevision, 10))
	}
	if cs.createOnly {
		q.Set("create_only", "true")
	}
	a, err := c.do(ctx, request{method: http.MethodDelete, path: "/key/" + escapeKey(key), query: q, write: true, key: true})
	if err != nil {
		return DeleteResult{}, err
	}
	var res struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil {
		return DeleteResult{}, fmt.Errorf("decode the answer to delete %q: %w", key, err)
	}
	return DeleteResult{Revision: res.ID, Raw: a.body}, nil
}

// ReadOption changes how Get and Scan read.
type ReadOption func(*readOptions)

type readOptions struct{ stale bool }

// Stale reads from the local state of the node that answers, at once: a
// read that may be behind the leader (though never behind what the same
// node answered before), needs no leader and costs no round trip to it.
// Without it a read is linearizable: it sees every write acknowledged
// before it began.
func Stale() ReadOption { return func(o *readOptions) { o.stale = true } }

func readQuery(opts []ReadOption) url.Values {
	var o readOptions
	for _, f := range opts {
		f(&o)
	}
	q := url.Values{}
	if o.stale {
		q.Set("consistency", "stale")
	}
	return q
}

// Get reads key. It fails with ErrNotFound when the key does not exist.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (KeyValue, error) {
	a, err := c.do(ctx, request{method: http.MethodGet, path: "/key/" + escapeKey(key), query: readQuery(opts), key: true})
	if err != nil {
		return KeyValue{}, err
	}
	return decodeKeyValue(a.body)
}

// maxPageSize is the largest page the server gives.
const maxPageSize = 10000

// Range selects the keys of a Scan. Prefix and Start/End combine as an
// intersection; the zero Range is every key.
type Range struct {
	// Prefix: only keys starting with it.
	Prefix string
	// Start is the first key, inclusive; End the end, exclusive ("":
	// unbounded).
	Start, End string
	// Limit stops the scan after this many pairs; 0: no limit.
	Limit int
	// PageSize is the number of pairs a request asks for, 1 to 10000.
	// Default: Limit if it is smaller than 10000, else the server's
	// default (1000).
	PageSize int
}

// Scan returns the pairs of r in key order, requesting one page after
// another, each continuing where the last ended. Each page is a read of its
// own: together they are not one snapshot (a write between two pages is
// seen by the second only). An error ends the sequence: it is the last
// element.
func (c *Client) Scan(ctx context.Context, r Range, opts ...ReadOption) iter.Seq2[KeyValue, error] {
	return func(yield func(KeyValue, error) bool) {
		q := readQuery(opts)
		for name, v := range map[string]string{"prefix": r.Prefix, "start": r.Start, "end": r.End} {
			if v != "" {
				q.Set(name, v)
			}
		}
		switch {
		case r.PageSize > 0:
			q.Set("limit", strconv.Itoa(r.PageSize))
		case r.Limit > 0:
			q.Set("limit", strconv.Itoa(min(r.Limit, maxPageSize)))
		}
		n := 0
		for {
			a, err := c.do(ctx, request{method: http.MethodGet, path: "/keys", query: q})
			if err != nil {
				yield(KeyValue{}, err)
				return
			}
			var page struct {
				KVs      []json.RawMessage `json:"kvs"`
				More     bool              `json:"more"`
				Continue string            `json:"continue"`
			}
			if err := json.Unmarshal(a.body, &page); err != nil {
				yield(KeyValue{}, fmt.Errorf("decode scan page: %w", err))
				return
			}
			for _, raw := range page.KVs {
				kv, err := decodeKeyValue(raw)
				if !yield(kv, err) || err != nil {
					return
				}
				if n++; r.Limit > 0 && n >= r.Limit {
					return
				}
			}
			if !page.More || page.Continue == "" {
				return
			}
			// The same parameters with the token give the next page.
			q.Set("continue", page.Continue)
		}
	}
}
