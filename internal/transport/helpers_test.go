package transport

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

var seedFlag = flag.Uint64("transport.seed", 0, "seed for randomized tests (0: pick one)")

// testSeed returns the seed for a randomized test and logs it so a failure
// can be reproduced with: go test ./internal/transport -run <Test> -args -transport.seed=<seed>
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (reproduce with -args -transport.seed=%d)", seed, seed)
	return seed
}

// recorder is a Handler that records what it receives. Its hooks, if set,
// serve calls and snapshots.
type recorder struct {
	mu          sync.Mutex
	raft        map[flow][]raftpb.Message
	total       int
	unreachable map[uint64]int

	onRaft func(shard uint64, msgs []raftpb.Message)
	call   func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error)
	snap   func(from, shard uint64, r io.Reader) error
}

// flow is one ordered stream of messages: a sender and a shard.
type flow struct{ from, shard uint64 }

func newRecorder() *recorder {
	return &recorder{raft: map[flow][]raftpb.Message{}, unreachable: map[uint64]int{}}
}

func (r *recorder) HandleRaft(shard uint64, msgs []raftpb.Message) {
	r.mu.Lock()
	for _, m := range msgs {
		k := flow{m.From, shard}
		r.raft[k] = append(r.raft[k], m)
	}
	r.total += len(msgs)
	hook := r.onRaft
	r.mu.Unlock()
	if hook != nil {
		hook(shard, msgs)
	}
}

func (r *recorder) HandleCall(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
	if r.call == nil {
		return nil, errors.New("no calls here")
	}
	return r.call(ctx, from, shard, method, payload)
}

func (r *recorder) HandleSnapshot(from, shard uint64, rd io.Reader) error {
	if r.snap == nil {
		return errors.New("no snapshots here")
	}
	return r.snap(from, shard, rd)
}

func (r *recorder) PeerUnreachable(to uint64) {
	r.mu.Lock()
	r.unreachable[to]++
	r.mu.Unlock()
}

func (r *recorder) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

func (r *recorder) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *recorder) flow(from, shard uint64) []raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raftpb.Message(nil), r.raft[flow{from, shard}]...)
}

// testConfig is a config with short timeouts, listening on a free port.
func testConfig(id uint64, h Handler) Config {
	return Config{
		ID:             id,
		Token:          0xc1,
		Listen:         "127.0.0.1:0",
		Handler:        h,
		DialTimeout:    2 * time.Second,
		InitialBackoff: 5 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
	}
}

func start(t testing.TB, cfg Config) *Transport {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("new transport %d: %v", cfg.ID, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// mesh connects every transport to every other one.
func mesh(ts ...*Transport) {
	for _, a := range ts {
		for _, b := range ts {
			if a != b {
				a.AddPeer(b.cfg.ID, b.Addr().String())
			}
		}
	}
}

// waitFor polls cond until it reports true or the deadline passes; then it
// fails with cond's description of what it saw.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s; seen: %s", timeout, what, seen)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitConnected(t testing.TB, a *Transport, to uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("node %d connected to %d", a.cfg.ID, to), func() (bool, string) {
		s := a.Stats()[to]
		return s.Connected, fmt.Sprintf("%+v", s)
	})
}

// app returns a MsgApp-like message whose Index is its sequence number.
func app(from, to, seq uint64, data []byte) raftpb.Message {
	return raftpb.Message{
		Type: raftpb.MsgApp, From: from, To: to, Term: 3, Index: seq, LogTerm: 3, Commit: seq,
		Entries: []raftpb.Entry{{Term: 3, Index: seq + 1, Data: data}},
	}
}

func heartbeat(from, to, seq uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgHeartbeat, From: from, To: to, Term: 3, Commit: seq}
}

// checkInOrder verifies that msgs carry sequence numbers 0..want-1 in order.
func checkInOrder(t testing.TB, msgs []raftpb.Message, want int, what string) {
	t.Helper()
	if len(msgs) != want {
		t.Fatalf("%s: got %d messages, want %d", what, len(msgs), want)
	}
	for i, m := range msgs {
		if m.Index != uint64(i) {
			t.Fatalf("%s: message %d has sequence %d", what, i, m.Index)
		}
	}
}

// logBuffer is a slog destination tests can search.
type logBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
