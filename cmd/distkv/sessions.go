package main

import (
	"context"

	"github.com/distkv/distkv/internal/kv"
)

// Session answers from the node's client-session table (kv's record of the
// writes sent with request ids), after a ReadIndex barrier when linearizable.
func (b backend) Session(ctx context.Context, id kv.RequestID, op kv.Op, linearizable bool) (kv.Record, bool, error) {
	if linearizable {
		if err := b.n.ReadBarrier(ctx); err != nil {
			return kv.Record{}, false, err
		}
	}
	rec, ok := b.n.KV().Record(id, op)
	return rec, ok, nil
}

func (b backend) SessionStats() kv.SessionStats { return b.n.KV().SessionStats() }
