package httpapi

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/distkv/distkv/internal/kv"
)

// fakeBackend is an in-memory Backend: a sorted map that implements the write
// conditions, and a record of every call. Transactions are applied by a real
// kv.Store loaded with the map's contents.
type fakeBackend struct {
	mu    sync.Mutex
	data  map[string]kv.KeyValue
	rev   int64
	calls []fakeCall

	// err, if set, is returned by Propose, Get and Range.
	err error
	// block makes Propose, Get and Range wait for their context to end.
	block bool
	// atDeadline, if set, is what a blocked call returns when its context
	// ends (the context's error otherwise).
	atDeadline error
	// notReady is returned by Ready.
	notReady error
	status   Status
}

// fakeCall is one call on the fakeBackend.
type fakeCall struct {
	op           string // "propose", "get" or "range"
	cmd          kv.Command
	key          []byte
	start, end   []byte
	limit        int
	linearizable bool
}

var _ Backend = (*fakeBackend)(nil)

func newFake() *fakeBackend {
	return &fakeBackend{data: make(map[string]kv.KeyValue), rev: 10}
}

func (f *fakeBackend) record(c fakeCall) error {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	return f.err
}

func (f *fakeBackend) wait(ctx context.Context) error {
	if !f.block {
		return nil
	}
	<-ctx.Done()
	if f.atDeadline != nil {
		return f.atDeadline
	}
	return ctx.Err()
}

// Calls returns the calls made so far.
func (f *fakeBackend) Calls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeBackend) Propose(ctx context.Context, cmd kv.Command) (kv.Result, error) {
	if err := f.record(fakeCall{op: "propose", cmd: cmd}); err != nil {
		return kv.Result{}, err
	}
	if err := f.wait(ctx); err != nil {
		return kv.Result{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if cmd.Op == kv.OpTxn {
		return f.applyTxn(cmd)
	}
	cur, exists := f.data[string(cmd.Key)]
	c := cmd.Cond
	if (c.CreateOnly && exists) ||
		(c.PrevVersion != nil && *c.PrevVersion != cur.Version) ||
		(c.PrevRevision != nil && *c.PrevRevision != cur.Revision) {
		return kv.Result{Status: kv.StatusConflict, Current: cur}, nil
	}
	switch cmd.Op {
	case kv.OpPut:
		f.rev++
		next := kv.KeyValue{Key: cmd.Key, Value: cmd.Value, Version: cur.Version + 1, Revision: f.rev, CreateRevision: cur.CreateRevision}
		if !exists {
			next.CreateRevision = f.rev
		}
		f.data[string(cmd.Key)] = next
		return kv.Result{Status: kv.StatusOK, Revision: f.rev}, nil
	case kv.OpDelete:
		if !exists {
			return kv.Result{Status: kv.StatusNotFound}, nil
		}
		f.rev++
		delete(f.data, string(cmd.Key))
		return kv.Result{Status: kv.StatusOK, Revision: f.rev}, nil
	}
	return kv.Result{}, errors.New("fake: unknown op")
}

// applyTxn applies cmd (an OpTxn) at revision f.rev+1 with kv.Store's
// semantics: the store is loaded with f.data, and f.data is replaced by the
// store's state afterwards. f.mu must be held.
func (f *fakeBackend) applyTxn(cmd kv.Command) (kv.Result, error) {
	s := kv.NewStore()
	keys := slices.Sorted(maps.Keys(f.data))
	err := s.Restore(uint64(f.rev), func(yield func(kv.KeyValue, error) bool) {
		for _, k := range keys {
			if !yield(f.data[k], nil) {
				return
			}
		}
	})
	if err != nil {
		return kv.Result{}, err
	}
	// As in the Raft layer, the command goes through its encoding.
	dec, err := kv.UnmarshalCommand(cmd.Marshal())
	if err != nil {
		return kv.Result{}, err
	}
	f.rev++
	res, err := s.Apply(uint64(f.rev), dec)
	if err != nil {
		return kv.Result{}, err
	}
	clear(f.data)
	for p := range s.Snapshot().All() {
		f.data[string(p.Key)] = p
	}
	return res, nil
}

func (f *fakeBackend) Get(ctx context.Context, key []byte, linearizable bool) (kv.KeyValue, bool, error) {
	if err := f.record(fakeCall{op: "get", key: key, linearizable: linearizable}); err != nil {
		return kv.KeyValue{}, false, err
	}
	if err := f.wait(ctx); err != nil {
		return kv.KeyValue{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.data[string(key)]
	return p, ok, nil
}

func (f *fakeBackend) Range(ctx context.Context, start, end []byte, limit int, linearizable bool) ([]kv.KeyValue, bool, error) {
	if err := f.record(fakeCall{op: "range", start: start, end: end, limit: limit, linearizable: linearizable}); err != nil {
		return nil, false, err
	}
	if err := f.wait(ctx); err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.data {
		if bytes.Compare([]byte(k), start) >= 0 && (end == nil || bytes.Compare([]byte(k), end) < 0) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	out := make([]kv.KeyValue, len(keys))
	for i, k := range keys {
		out[i] = f.data[k]
	}
	return out, more, nil
}

func (f *fakeBackend) Status() Status { return f.status }

func (f *fakeBackend) Ready() error { return f.notReady }
