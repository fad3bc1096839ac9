package transport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// TestWriteAfterWriterDeadline: a message sent on a connection idle for
// longer than WriteTimeout since its last write is delivered, without a drop
// or a new connection: each write sets its own deadline. (A write that met
// the previous write's expired deadline used to close the connection and
// lose the message: a forwarded proposal lost so waited out the client's
// request timeout, 503.)
func TestWriteAfterWriterDeadline(t *testing.T) {
	rb := newRecorder()
	rb.call = func(context.Context, uint64, uint64, uint8, []byte) ([]byte, error) { return nil, nil }
	cfg := testConfig(1, newRecorder())
	cfg.WriteTimeout = 100 * time.Millisecond
	a, b := start(t, cfg), start(t, testConfig(2, rb))
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	for i := range 3 {
		if _, err := a.Call(context.Background(), 2, 1, 1, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * cfg.WriteTimeout)
		a.Send(1, []raftpb.Message{heartbeat(1, 2, uint64(i))})
		waitFor(t, 5*time.Second, fmt.Sprintf("heartbeat %d delivered", i), func() (bool, string) {
			return rb.received() == i+1, fmt.Sprintf("%d received; %+v", rb.received(), a.Stats()[2])
		})
	}
	if s := a.Stats()[2]; s.Reconnects != 0 || s.Dropped != 0 {
		t.Fatalf("stats %+v", s)
	}
}
