package main

import (
	"context"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/raftnode"
)

// POST /compaction/run and the history of GET /compaction/status.
var _ httpapi.Compactor = backend{}

func (b backend) Compact(ctx context.Context) (httpapi.Compaction, error) {
	c, err := b.n.Compact(ctx)
	return compaction(c), err
}

func (b backend) Compactions() []httpapi.Compaction {
	cs := b.n.Compactions()
	out := make([]httpapi.Compaction, len(cs))
	for i, c := range cs {
		out[i] = compaction(c)
	}
	return out
}

func compaction(c raftnode.Compaction) httpapi.Compaction {
	return httpapi.Compaction{Time: c.Time, SnapshotIndex: c.SnapshotIndex, EntriesRemoved: c.EntriesRemoved,
		SegmentsRemoved: c.SegmentsRemoved, Duration: c.Duration}
}
