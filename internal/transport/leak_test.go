package transport

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// Transport a test starts is closed (start registers it), and Close leaves
// nothing running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestCloseWaitsForHandlers: Close returns only once every goroutine of the
// Transport has ended, handlers included, here a call or a snapshot stream
// being served whose handler takes a while to give up once the connection
// goes: nothing of the Transport is left running after Close (goleak). One
// handler runs at a time, so that Close waiting for another cannot hide it.
func TestCloseWaitsForHandlers(t *testing.T) {
	const linger = time.Second // beyond goleak's retries (about 0.4 s)
	for _, tc := range []struct {
		name  string
		serve func(rb *recorder, serving *atomic.Int64)
		send  func(a *Transport)
	}{
		{"call", func(rb *recorder, serving *atomic.Int64) {
			rb.call = func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
				serving.Add(1)
				defer serving.Add(-1)
				<-ctx.Done()
				time.Sleep(linger)
				return nil, ctx.Err()
			}
		}, func(a *Transport) { a.Call(context.Background(), 2, 1, 9, nil) }},
		{"snapshot", func(rb *recorder, serving *atomic.Int64) {
			rb.snap = func(from, shard uint64, r io.Reader) error {
				serving.Add(1)
				defer serving.Add(-1)
				_, err := io.Copy(io.Discard, r)
				time.Sleep(linger)
				return err
			}
		}, func(a *Transport) { a.SendSnapshot(context.Background(), 2, 1, genReader(5, -1)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			var serving atomic.Int64
			rb := newRecorder()
			tc.serve(rb, &serving)
			a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
			mesh(a, b)
			var callers sync.WaitGroup
			callers.Go(func() { tc.send(a) })
			waitFor(t, 10*time.Second, "the handler running", func() (bool, string) {
				return serving.Load() == 1, ""
			})

			begin := time.Now()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			took := time.Since(begin)
			if n := serving.Load(); n != 0 {
				t.Errorf("Close returned with %d handlers still running", n)
			}
			if took < linger {
				t.Errorf("Close took %v, less than the %v the handler took", took, linger)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			callers.Wait()
			goleak.VerifyNone(t, ignore)
		})
	}
}
