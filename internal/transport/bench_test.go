package transport

import (
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// countingHandler counts Raft messages and wakes a waiter.
type countingHandler struct {
	fuzzHandler
	n    atomic.Int64
	wake chan struct{}
}

func (h *countingHandler) HandleRaft(_ uint64, msgs []raftpb.Message) {
	h.n.Add(int64(len(msgs)))
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// BenchmarkSendRaft measures Raft messages per second from one transport to
// another over loopback: MsgApp-like messages with one 128-byte entry, sent
// in batches of 64 (a Ready's worth), with at most half a queue in flight so
// that nothing is dropped.
func BenchmarkSendRaft(b *testing.B) {
	const batch = 64
	h := &countingHandler{wake: make(chan struct{}, 1)}
	src := start(b, testConfig(1, fuzzHandler{}))
	dst := start(b, testConfig(2, h))
	src.AddPeer(2, dst.Addr().String())
	waitConnected(b, src, 2)
	data := make([]byte, 128)
	msgs := make([]raftpb.Message, batch)
	for i := range msgs {
		msgs[i] = app(1, 2, uint64(i), data)
	}
	window := int64(src.cfg.QueueSize / 2)
	b.ReportAllocs()
	b.SetBytes(int64(msgs[0].Size()))
	b.ResetTimer()
	t0 := time.Now()
	sent := int64(0)
	for sent < int64(b.N) {
		for sent-h.n.Load() > window {
			<-h.wake
		}
		n := min(int64(batch), int64(b.N)-sent)
		src.Send(1, msgs[:n])
		sent += n
	}
	for h.n.Load() < sent {
		select {
		case <-h.wake:
		case <-time.After(10 * time.Second):
			b.Fatalf("received %d of %d", h.n.Load(), sent)
		}
	}
	el := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	if d := src.Stats()[2].Dropped; d != 0 {
		b.Fatalf("%d messages dropped", d)
	}
}
