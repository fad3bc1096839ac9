package raftnode

import (
	"bytes"
	"testing"
)

// FuzzDecodePayload: DecodePayload never panics; what it accepts, stamped
// again with its stamp (or without one), encodes back to the same bytes,
// and unstamping gives the unstamped payload of the same id and command.
func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x07\x01\x01\x00"))
	f.Add(stampPayload([]byte("\x00\x00\x00\x00\x00\x00\x00\x07\x01\x01\x00"), 42))
	f.Add([]byte("\x80\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\x80\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, stamp, cmd, err := DecodePayload(data)
		if err != nil {
			return
		}
		if id&payloadStamped != 0 {
			t.Fatalf("id %#x has the stamp bit", id)
		}
		if stamp != 0 {
			if got := stampPayload(data, stamp); !bytes.Equal(got, data) {
				t.Fatalf("stamped again: % x, was % x", got, data)
			}
		}
		plain := unstampPayload(data)
		id2, stamp2, cmd2, err := DecodePayload(plain)
		if err != nil || id2 != id || stamp2 != 0 || !bytes.Equal(cmd2, cmd) {
			t.Fatalf("unstamped: id %d stamp %d cmd % x, %v; want id %d, no stamp, cmd % x", id2, stamp2, cmd2, err, id, cmd)
		}
	})
}
