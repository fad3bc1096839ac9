package httpapi

import (
	"context"
	"slices"
	"sync"

	"github.com/distkv/distkv/internal/kv"
)

// fakeBackend is an in-memory Backend: a real kv.Store that applies every
// proposal at the next index, as one replica would, and a record of every
// call.
type fakeBackend struct {
	mu    sync.Mutex
	store *kv.Store
	// rev is the index of the last proposal applied; the next one is
	// applied at rev+1. Tests may set it before the first proposal.
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
	// hideRecords makes Session find nothing until the next Propose, as on
	// a node that has not yet applied a request's first attempt.
	hideRecords bool
	status      Status
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
	return &fakeBackend{store: kv.NewStore(), rev: 10}
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
	if err := cmd.Validate(); err != nil {
		return kv.Result{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hideRecords = false
	// As in the Raft layer, the command goes through its encoding.
	dec, err := kv.UnmarshalCommand(cmd.Marshal())
	if err != nil {
		return kv.Result{}, err
	}
	f.rev++
	return f.store.Apply(uint64(f.rev), dec)
}

func (f *fakeBackend) Get(ctx context.Context, key []byte, linearizable bool) (kv.KeyValue, bool, error) {
	if err := f.record(fakeCall{op: "get", key: key, linearizable: linearizable}); err != nil {
		return kv.KeyValue{}, false, err
	}
	if err := f.wait(ctx); err != nil {
		return kv.KeyValue{}, false, err
	}
	p, ok := f.store.Get(key)
	return p, ok, nil
}

func (f *fakeBackend) Versions(ctx context.Context, key []byte, linearizable bool) ([]kv.KeyValue, error) {
	if err := f.record(fakeCall{op: "versions", key: key, linearizable: linearizable}); err != nil {
		return nil, err
	}
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.store.Versions(key), nil
}

func (f *fakeBackend) Range(ctx context.Context, start, end []byte, limit int, linearizable bool) ([]kv.KeyValue, bool, error) {
	if err := f.record(fakeCall{op: "range", start: start, end: end, limit: limit, linearizable: linearizable}); err != nil {
		return nil, false, err
	}
	if err := f.wait(ctx); err != nil {
		return nil, false, err
	}
	kvs, more := f.store.Range(start, end, limit)
	return kvs, more, nil
}

func (f *fakeBackend) Status() Status { return f.status }

func (f *fakeBackend) Ready() error { return f.notReady }

func (f *fakeBackend) Session(ctx context.Context, id kv.RequestID, op kv.Op, linearizable bool) (kv.Record, bool, error) {
	if err := f.record(fakeCall{op: "session", linearizable: linearizable}); err != nil {
		return kv.Record{}, false, err
	}
	f.mu.Lock()
	hide := f.hideRecords
	f.mu.Unlock()
	if hide {
		return kv.Record{}, false, nil
	}
	rec, ok := f.store.Record(id, op)
	return rec, ok, nil
}

func (f *fakeBackend) SessionStats() kv.SessionStats { return f.store.SessionStats() }

// compactingBackend is a fakeBackend that compacts on demand (Compactor):
// each Compact returns next, or err, and remembers what it returned.
type compactingBackend struct {
	*fakeBackend
	next    Compaction
	err     error
	history []Compaction
}

var _ Compactor = (*compactingBackend)(nil)

func (b *compactingBackend) Compact(ctx context.Context) (Compaction, error) {
	if b.err != nil {
		return Compaction{}, b.err
	}
	b.history = append(b.history, b.next)
	return b.next, nil
}

func (b *compactingBackend) Compactions() []Compaction { return slices.Clone(b.history) }

// adminBackend is a fakeBackend that manages membership (ClusterAdmin): each
// call records what it was asked and returns err.
type adminBackend struct {
	*fakeBackend
	err   error
	asked []string
}

var _ ClusterAdmin = (*adminBackend)(nil)

func (b *adminBackend) AddMember(ctx context.Context, m Member, learner bool) error {
	b.asked = append(b.asked, "add "+m.ID)
	return b.err
}

func (b *adminBackend) PromoteMember(ctx context.Context, id string) error {
	b.asked = append(b.asked, "promote "+id)
	return b.err
}

func (b *adminBackend) RemoveMember(ctx context.Context, id string) error {
	b.asked = append(b.asked, "remove "+id)
	return b.err
}

func (b *adminBackend) TransferLeader(ctx context.Context, id string) error {
	b.asked = append(b.asked, "transfer "+id)
	return b.err
}

var _ RevisionReader = (*fakeBackend)(nil)

// Revision is the store's (at least 1, the first revision): the fake is
// one range, written in log order.
func (f *fakeBackend) Revision(ctx context.Context) (int64, error) {
	if err := f.record(fakeCall{op: "revision"}); err != nil {
		return 0, err
	}
	return max(f.store.Revision(), 1), f.wait(ctx)
}

func (f *fakeBackend) ScanRevision(ctx context.Context, _, _ []byte) (int64, error) {
	return f.Revision(ctx)
}

func (f *fakeBackend) GetAt(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	if err := f.record(fakeCall{op: "get", key: key, linearizable: true}); err != nil {
		return kv.KeyValue{}, false, err
	}
	if err := f.wait(ctx); err != nil {
		return kv.KeyValue{}, false, err
	}
	return f.store.GetAt(key, rev)
}

func (f *fakeBackend) RangeAt(ctx context.Context, start, end []byte, limit int, rev int64) ([]kv.KeyValue, bool, error) {
	if err := f.record(fakeCall{op: "range", start: start, end: end, limit: limit, linearizable: true}); err != nil {
		return nil, false, err
	}
	if err := f.wait(ctx); err != nil {
		return nil, false, err
	}
	return f.store.RangeAt(start, end, rev, limit)
}

func (f *fakeBackend) CompactHistory(ctx context.Context, rev int64) error {
	_, err := f.Propose(ctx, kv.Command{Op: kv.OpCompact, Revision: rev})
	return err
}

func (f *fakeBackend) Changes(ctx context.Context, start, end []byte, after, upto int64) ([]kv.Event, int64, error) {
	if err := f.record(fakeCall{op: "changes", start: start, end: end}); err != nil {
		return nil, 0, err
	}
	if err := f.wait(ctx); err != nil {
		return nil, 0, err
	}
	evs, err := f.store.Changes(start, end, after, upto)
	return evs, upto, err
}
