package main

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/distkv/distkv/internal/tso"
)

// FuzzServeStamps: a request for revisions from a peer is refused unless it
// is 12 bytes asking for 1 to tso.MaxN revisions, never panics, and a node
// whose oracle is not serving hands out nothing.
func FuzzServeStamps(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, 3), 100))
	f.Add(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, 0), 0))
	f.Add([]byte{1, 2, 3})
	r, err := newRevisions(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(r.oracle.Close)
	f.Fuzz(func(t *testing.T, payload []byte) {
		b, err := r.serve(context.Background(), payload)
		if err == nil {
			t.Fatalf("a node that does not lead group 1 handed out % x", b)
		}
		if len(payload) == 12 {
			if n := binary.BigEndian.Uint32(payload); n >= 1 && n <= tso.MaxN && !errors.Is(err, tso.ErrNotServing) {
				t.Fatalf("a well-formed request: %v, want %v", err, tso.ErrNotServing)
			}
		}
	})
}
