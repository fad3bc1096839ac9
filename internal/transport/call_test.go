package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCallMultiplexed runs concurrent calls on one connection; the handler
// answers them in reverse order of arrival, and each caller still gets its
// own response.
func TestCallMultiplexed(t *testing.T) {
	const n = 64
	ra, rb := newRecorder(), newRecorder()
	var (
		mu      sync.Mutex
		gates   []chan struct{}
		arrived atomic.Int32
	)
	rb.call = func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
		gate := make(chan struct{})
		mu.Lock()
		gates = append(gates, gate)
		mu.Unlock()
		arrived.Add(1)
		<-gate
		if from != 1 || method != 7 {
			return nil, fmt.Errorf("from %d method %d", from, method)
		}
		return fmt.Appendf(nil, "shard %d: %s", shard, bytes.ToUpper(payload)), nil
	}
	a, b := start(t, testConfig(1, ra)), start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())

	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			resp, err := a.Call(context.Background(), 2, uint64(i), 7, fmt.Appendf(nil, "req-%d", i))
			if want := fmt.Sprintf("shard %d: REQ-%d", i, i); err != nil || string(resp) != want {
				errs[i] = fmt.Errorf("call %d: %q, %v; want %q", i, resp, err, want)
			}
		})
	}
	waitFor(t, 10*time.Second, "all calls at the handler", func() (bool, string) {
		return arrived.Load() == n, fmt.Sprint(arrived.Load())
	})
	mu.Lock()
	for i := len(gates) - 1; i >= 0; i-- {
		close(gates[i])
	}
	mu.Unlock()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	a.mu.RLock()
	p := a.peers[2]
	a.mu.RUnlock()
	if d := p.dials.Load(); d != 1 {
		t.Errorf("%d dials for %d calls; want one connection", d, n)
	}
}

func TestCallRemoteError(t *testing.T) {
	rb := newRecorder()
	rb.call = func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
		return nil, fmt.Errorf("key %q: not leader, try node 3", payload)
	}
	a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())
	resp, err := a.Call(context.Background(), 2, 1, 1, []byte("k1"))
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), `key "k1": not leader, try node 3`) || resp != nil {
		t.Fatalf("Call = %q, %v; want the remote error text wrapped in ErrRemote", resp, err)
	}
	// Empty payloads both ways.
	rb.call = func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
		if len(payload) != 0 {
			return nil, errors.New("payload should be empty")
		}
		return nil, nil
	}
	if resp, err := a.Call(context.Background(), 2, 1, 1, nil); err != nil || len(resp) != 0 {
		t.Fatalf("empty call = %q, %v", resp, err)
	}
	// A payload over the frame limit is refused before sending.
	big := make([]byte, a.cfg.MaxFrameSize)
	if _, err := a.Call(context.Background(), 2, 1, 1, big); err == nil || !strings.Contains(err.Error(), "exceeds the frame size limit") {
		t.Fatalf("oversized call = %v", err)
	}
}

// blockingHandler is a call handler that waits for its context and reports
// that it saw the cancellation.
func blockingHandler(started chan<- struct{}, cancelled chan<- error) func(context.Context, uint64, uint64, uint8, []byte) ([]byte, error) {
	return func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		cancelled <- ctx.Err()
		return nil, ctx.Err()
	}
}

func TestCallContextCancel(t *testing.T) {
	rb := newRecorder()
	started, cancelled := make(chan struct{}, 1), make(chan error, 1)
	rb.call = blockingHandler(started, cancelled)
	a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, 2, 1, 1, nil)
		done <- err
	}()
	<-started
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Call = %v, want context.Canceled", err)
		}
		if el := time.Since(t0); el > time.Second {
			t.Fatalf("Call returned %v after cancel", el)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Call did not return after its context was cancelled")
	}
	// The cancellation reaches the handler.
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("handler context not cancelled")
	}
	// A deadline works the same way, and the connection is still fine.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.Call(ctx, 2, 1, 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call = %v, want DeadlineExceeded", err)
	}
	<-started
	<-cancelled
	if s := a.Stats()[2]; !s.Connected || s.Reconnects != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCallFailsOnRemovePeerAndClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(a *Transport)
		want error
	}{
		{"RemovePeer", func(a *Transport) { a.RemovePeer(2) }, ErrUnknownPeer},
		{"Close", func(a *Transport) { a.Close() }, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := newRecorder()
			started, cancelled := make(chan struct{}, 4), make(chan error, 4)
			rb.call = blockingHandler(started, cancelled)
			a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
			a.AddPeer(2, b.Addr().String())
			done := make(chan error, 2)
			for range 2 {
				go func() {
					_, err := a.Call(context.Background(), 2, 1, 1, nil)
					done <- err
				}()
			}
			<-started
			<-started
			tc.stop(a)
			for range 2 {
				select {
				case err := <-done:
					if !errors.Is(err, tc.want) {
						t.Fatalf("pending Call = %v, want %v", err, tc.want)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("pending Call did not fail")
				}
			}
			// The handlers see the connection go.
			<-cancelled
			<-cancelled
			if _, err := a.Call(context.Background(), 2, 1, 1, nil); !errors.Is(err, tc.want) {
				t.Fatalf("later Call = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestCallConnectionLost: the peer dies while a call is pending.
func TestCallConnectionLost(t *testing.T) {
	rb := newRecorder()
	started, cancelled := make(chan struct{}, 1), make(chan error, 1)
	rb.call = blockingHandler(started, cancelled)
	a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())
	done := make(chan error, 1)
	go func() {
		_, err := a.Call(context.Background(), 2, 1, 1, nil)
		done <- err
	}()
	<-started
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrConnLost) {
			t.Fatalf("Call = %v, want ErrConnLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Call did not fail when the peer went away")
	}
}
