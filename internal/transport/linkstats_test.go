package transport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// TestStatsBytes checks that the bytes one side counts as sent the other
// counts as received, in both directions (Raft messages go out on the
// connection node 1 dialed, a call's reply comes back on it), and that
// Stats names the peer.
func TestStatsBytes(t *testing.T) {
	rb := newRecorder()
	rb.call = func(context.Context, uint64, uint64, uint8, []byte) ([]byte, error) {
		return make([]byte, 1000), nil
	}
	a, b := start(t, testConfig(1, newRecorder())), start(t, testConfig(2, rb))
	a.NamePeer(2, "n2")
	b.NamePeer(1, "n1")
	a.AddPeer(2, b.Addr().String())
	waitConnected(t, a, 2)
	const n = 50
	msgs := make([]raftpb.Message, n)
	for i := range msgs {
		msgs[i] = app(1, 2, uint64(i), make([]byte, 100))
	}
	a.Send(1, msgs)
	if _, err := a.Call(context.Background(), 2, 1, 1, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	// b has no peer 1: it answers on a's connection and reports on 1 only
	// once it is added as a peer.
	b.AddPeer(1, a.Addr().String())
	waitFor(t, 10*time.Second, "the raft messages and the call's bytes counted on both sides", func() (bool, string) {
		sa, sb := a.Stats()[2], b.Stats()[1]
		ok := rb.received() == n && sa.BytesSent > n*100 && sa.BytesReceived > 1000 &&
			sa.BytesSent == sb.BytesReceived && sb.BytesSent == sa.BytesReceived
		return ok, fmt.Sprintf("received %d; a→2 %+v; b→1 %+v", rb.received(), sa, sb)
	})
	if s := a.Stats()[2]; s.Name != "n2" {
		t.Errorf("a's peer 2 named %q, want n2", s.Name)
	}
}
