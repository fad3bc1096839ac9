package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// genReader returns a deterministic stream of pseudo-random bytes for seed,
// n bytes long (n < 0: endless). It is generated as it is read.
func genReader(seed uint64, n int64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	var r io.Reader = rand.NewChaCha8(key)
	if n >= 0 {
		r = io.LimitReader(r, n)
	}
	return r
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// failingReader yields n bytes of r, then err.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	n, err := f.r.Read(p[:min(len(p), f.n)])
	f.n -= n
	return n, err
}

// TestSnapshotStream sends 64 MiB while heartbeats flow: the receiver gets
// exactly the bytes, heartbeats arrive while the stream is in progress, and
// flow control keeps the sender from reading ahead of the receiver.
func TestSnapshotStream(t *testing.T) {
	const size = 64 << 20
	seed := testSeed(t)
	ra, rb := newRecorder(), newRecorder()
	var heartbeats atomic.Int64
	rb.onRaft = func(shard uint64, msgs []raftpb.Message) {
		if shard == 2 {
			heartbeats.Add(int64(len(msgs)))
		}
	}
	src := &countingReader{r: genReader(seed, size)}
	type outcome struct {
		sum               [32]byte
		n                 int64
		duringStream      int64 // heartbeats between the stream's start and end
		aheadAtHalf       int64 // bytes the sender had read beyond the receiver's at the pause
		shard, from       uint64
		heartbeatsAtPause int64
		whileStreaming    int64 // heartbeats while the second half streamed
	}
	got := make(chan outcome, 1)
	rb.snap = func(from, shard uint64, r io.Reader) error {
		var o outcome
		o.from, o.shard = from, shard
		h := sha256.New()
		atStart := heartbeats.Load()
		// Read half, then stall: the sender must stop within its window
		// and heartbeats must still get through.
		n, err := io.CopyN(h, r, size/2)
		if err != nil {
			return fmt.Errorf("first half: %w", err)
		}
		paused := heartbeats.Load()
		deadline := time.Now().Add(10 * time.Second)
		for heartbeats.Load() < paused+20 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		o.heartbeatsAtPause = heartbeats.Load() - paused
		o.aheadAtHalf = src.n.Load() - n
		resumed := heartbeats.Load()
		m, err := io.Copy(h, r)
		if err != nil {
			return fmt.Errorf("second half: %w", err)
		}
		o.n = n + m
		o.duringStream = heartbeats.Load() - atStart
		o.whileStreaming = heartbeats.Load() - resumed
		h.Sum(o.sum[:0])
		got <- o
		return nil
	}
	a, b := start(t, testConfig(1, ra)), start(t, testConfig(2, rb))
	mesh(a, b)
	waitConnected(t, a, 2)

	// Raft heartbeats of shard 2 every millisecond until the stream ends.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				a.Send(2, []raftpb.Message{heartbeat(1, 2, i)})
			}
		}
	})
	sent := sha256.New()
	t0 := time.Now()
	err := a.SendSnapshot(context.Background(), 2, 9, io.TeeReader(src, sent))
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("SendSnapshot: %v", err)
	}
	o := <-got
	t.Logf("64 MiB in %v; %d heartbeats during the stream, %d while paused, %d during the second half; sender ahead by %d KiB at the pause",
		time.Since(t0), o.duringStream, o.heartbeatsAtPause, o.whileStreaming, o.aheadAtHalf>>10)
	if o.n != size || !bytes.Equal(o.sum[:], sent.Sum(nil)) {
		t.Fatalf("received %d bytes with sha256 %x; sent %d with %x", o.n, o.sum, src.n.Load(), sent.Sum(nil))
	}
	if o.from != 1 || o.shard != 9 {
		t.Fatalf("stream from %d shard %d, want 1, 9", o.from, o.shard)
	}
	if o.heartbeatsAtPause < 20 || o.whileStreaming < 1 {
		t.Fatalf("heartbeats before the stream ended: %d while it was paused, %d while it flowed", o.heartbeatsAtPause, o.whileStreaming)
	}
	// In flight: the window at the receiver, one chunk in the sender's
	// hands and io.CopyN's look-ahead of at most one chunk.
	if limit := int64(snapWindow+2) * snapChunkSize; o.aheadAtHalf > limit {
		t.Fatalf("sender read %d bytes ahead of the receiver, flow control allows %d", o.aheadAtHalf, limit)
	}
	if s := a.Stats()[2]; s.Dropped != 0 {
		t.Fatalf("dropped heartbeats: %+v", s)
	}
}

// TestSnapshotConcurrentStreams interleaves several streams and calls on
// one connection.
func TestSnapshotConcurrentStreams(t *testing.T) {
	seed := testSeed(t)
	const streams, size = 4, 3<<20 + 12345
	rb := newRecorder()
	var mu sync.Mutex
	sums := map[uint64][32]byte{}
	rb.snap = func(from, shard uint64, r io.Reader) error {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return err
		}
		mu.Lock()
		sums[shard] = [32]byte(h.Sum(nil))
		mu.Unlock()
		return nil
	}
	rb.call = func(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error) {
		return payload, nil
	}
	a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())
	var wg sync.WaitGroup
	want := make([][32]byte, streams)
	errs := make([]error, streams+1)
	for i := range streams {
		wg.Go(func() {
			h := sha256.New()
			errs[i] = a.SendSnapshot(context.Background(), 2, uint64(i), io.TeeReader(genReader(seed+uint64(i), size), h))
			want[i] = [32]byte(h.Sum(nil))
		})
	}
	wg.Go(func() {
		for i := range 200 {
			p := fmt.Appendf(nil, "call %d", i)
			if r, err := a.Call(context.Background(), 2, 1, 1, p); err != nil || !bytes.Equal(r, p) {
				errs[streams] = fmt.Errorf("call %d: %q %v", i, r, err)
				return
			}
		}
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	for i := range streams {
		if sums[uint64(i)] != want[i] {
			t.Fatalf("stream %d: received sha256 %x, sent %x", i, sums[uint64(i)], want[i])
		}
	}
	// An empty snapshot is a stream too.
	if err := a.SendSnapshot(context.Background(), 2, 99, strings.NewReader("")); err != nil {
		t.Fatalf("empty snapshot: %v", err)
	}
}

// TestSnapshotReceiverError: the receiver fails part way; the sender, whose
// source never ends, gets the receiver's error text.
func TestSnapshotReceiverError(t *testing.T) {
	rb := newRecorder()
	rb.snap = func(from, shard uint64, r io.Reader) error {
		if _, err := io.CopyN(io.Discard, r, 1<<20); err != nil {
			return err
		}
		return errors.New("install snapshot: disk full")
	}
	a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())
	err := a.SendSnapshot(context.Background(), 2, 1, genReader(1, -1))
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "install snapshot: disk full") {
		t.Fatalf("SendSnapshot = %v, want the receiver's error", err)
	}
	// A receiver that returns nil before the end is not a success either.
	rb.snap = func(from, shard uint64, r io.Reader) error {
		_, err := io.CopyN(io.Discard, r, 1<<20)
		return err
	}
	err = a.SendSnapshot(context.Background(), 2, 1, genReader(1, 8<<20))
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "before the end") {
		t.Fatalf("SendSnapshot to a receiver that quit early = %v", err)
	}
	// But one that read every byte without waiting for io.EOF succeeded.
	err = a.SendSnapshot(context.Background(), 2, 1, genReader(1, 1<<20))
	if err != nil {
		t.Fatalf("SendSnapshot to a receiver that read everything but io.EOF = %v", err)
	}
	// The connection survives both.
	if s := a.Stats()[2]; !s.Connected || s.Reconnects != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestSnapshotSenderAbort: the sender's source fails, or its context ends,
// or it goes away: the receiver's reader reports ErrAborted, never io.EOF.
func TestSnapshotSenderAbort(t *testing.T) {
	for _, tc := range []struct {
		name       string
		send       func(a *Transport, started <-chan struct{}) error
		wantSender error  // errors.Is target, or nil for any error
		senderText string // substring of the sender's error
		recvText   string // substring of the receiver's error
	}{
		{
			name: "source error",
			send: func(a *Transport, _ <-chan struct{}) error {
				return a.SendSnapshot(context.Background(), 2, 1, &failingReader{r: genReader(2, -1), n: 1 << 20, err: errors.New("source broke")})
			},
			senderText: "source broke", recvText: "source broke",
		},
		{
			name: "context cancelled",
			send: func(a *Transport, started <-chan struct{}) error {
				ctx, cancel := context.WithCancel(context.Background())
				go func() { <-started; cancel() }()
				return a.SendSnapshot(ctx, 2, 1, genReader(3, -1))
			},
			wantSender: context.Canceled, recvText: "context canceled",
		},
		{
			name: "sender closed",
			send: func(a *Transport, started <-chan struct{}) error {
				go func() { <-started; a.Close() }()
				return a.SendSnapshot(context.Background(), 2, 1, genReader(4, -1))
			},
			wantSender: ErrClosed, recvText: "connection",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rb := newRecorder()
			started := make(chan struct{})
			recvErr := make(chan error, 1)
			rb.snap = func(from, shard uint64, r io.Reader) error {
				_, err := io.CopyN(io.Discard, r, 256<<10)
				close(started)
				if err == nil {
					// Read slowly so the sender is still streaming.
					buf := make([]byte, 1024)
					for err == nil {
						_, err = r.Read(buf)
					}
				}
				recvErr <- err
				return err
			}
			a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
			a.AddPeer(2, b.Addr().String())
			err := tc.send(a, started)
			if err == nil || (tc.wantSender != nil && !errors.Is(err, tc.wantSender)) || !strings.Contains(err.Error(), tc.senderText) {
				t.Fatalf("SendSnapshot = %v, want %v / %q", err, tc.wantSender, tc.senderText)
			}
			select {
			case err := <-recvErr:
				if !errors.Is(err, ErrAborted) || !strings.Contains(err.Error(), tc.recvText) {
					t.Fatalf("receiver read error = %v, want ErrAborted with %q", err, tc.recvText)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("receiver never saw the abort")
			}
		})
	}
}
