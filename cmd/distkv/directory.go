package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/distkv/distkv/internal/raftnode"
)

// The range directory: which ranges exist, which nodes hold them and which
// leads each. Nothing replicated holds it: each range's own Raft state is
// the truth about it (its bounds and its members), and each node reports
// the replicas it holds (replicaReport). The node that leads group 1 asks
// every node for its report once a placement round, merges them into a
// directory (mergeReports) and acts on it (placement.go); the other nodes
// fetch that directory from it to route requests for ranges they do not
// hold (router.go). A directory may be a moment old: a request it sends to
// the wrong node is answered "not here" and asked again after a refresh.

// Peer calls of the server (transport.Call methods), handled before the
// Host's own (see handlerRelay.HandleCall).
const (
	// methodReport asks a node for the replicas it holds.
	methodReport uint8 = 100 + iota
	// methodDirectory asks group 1's leader for its directory.
	methodDirectory
	// methodForward runs a request on a range the receiver holds.
	methodForward
	// methodReplicaChange asks a replica of a range to change its members
	// or its leader, or a node to accept a range again (unbury).
	methodReplicaChange
	// methodDrain asks group 1's leader to move every replica off a node.
	methodDrain
	// methodStamps asks group 1's leader for revisions (revisions.go).
	methodStamps
)

// isServerMethod reports whether a peer call is the server's, not a group's.
func isServerMethod(m uint8) bool { return m >= methodReport && m <= methodStamps }

// replicaReport is one replica as the node that holds it sees its range.
type replicaReport struct {
	Shard    uint64   `json:"shard"`
	Start    []byte   `json:"start,omitempty"`
	End      []byte   `json:"end,omitempty"`
	Voters   []string `json:"voters"`
	Learners []string `json:"learners,omitempty"`
	// Leader is the range's leader as this replica knows it; Leads: it is
	// this node.
	Leader  string `json:"leader,omitempty"`
	Leads   bool   `json:"leads,omitempty"`
	Term    uint64 `json:"term"`
	Applied uint64 `json:"applied"`
	Bytes   int64  `json:"bytes"`
	// Lag is, on the leader, how far each learner's log is behind.
	Lag map[string]uint64 `json:"lag,omitempty"`
	// Quiet: the group is quiesced, which its leader does only once every
	// member, learners too, has the whole log.
	Quiet bool `json:"quiet,omitempty"`
	// Holders are the nodes that report an open replica (merged views only).
	Holders []string `json:"holders,omitempty"`
}

func (r *replicaReport) bounds() raftnode.Bounds { return raftnode.Bounds{Start: r.Start, End: r.End} }

// replicas returns the range's members: voters, then learners.
func (r *replicaReport) replicas() []string { return append(slices.Clone(r.Voters), r.Learners...) }

func (r *replicaReport) has(node string) bool {
	return slices.Contains(r.Voters, node) || slices.Contains(r.Learners, node)
}

// localReport describes the replicas this node holds.
func localReport(h *raftnode.Host, self string) []replicaReport {
	var out []replicaReport
	for _, g := range h.Groups() {
		st, b := g.Status(), g.Bounds()
		r := replicaReport{Shard: g.Shard(), Start: b.Start, End: b.End, Voters: []string{}, Leader: st.Leader,
			Leads: st.Leader == self, Term: st.Term, Applied: st.AppliedIndex, Bytes: g.KV().Bytes(), Quiet: g.Quiesced()}
		for _, m := range st.Members {
			if m.Learner {
				r.Learners = append(r.Learners, m.Name)
				if m.HasProgress {
					if r.Lag == nil {
						r.Lag = map[string]uint64{}
					}
					r.Lag[m.Name] = m.Lag
				}
			} else {
				r.Voters = append(r.Voters, m.Name)
			}
		}
		slices.Sort(r.Voters)
		slices.Sort(r.Learners)
		out = append(out, r)
	}
	// In a fixed order, so that a report that did not change encodes the
	// same (see sameAnswer).
	slices.SortFunc(out, func(a, b replicaReport) int { return cmp.Compare(a.Shard, b.Shard) })
	return out
}

// directory is a merged view of the cluster's ranges, sorted by first key.
type directory struct {
	Ranges []replicaReport `json:"ranges"`
	// Live are the nodes that answered the round that made it.
	Live []string `json:"live"`
}

// mergeReports makes one view of each range from the reports of the nodes
// that hold it: the report of its leader in the highest term, or else the
// one that applied the most (its bounds and members are the newest).
func mergeReports(reports map[string][]replicaReport) directory {
	best := map[uint64]replicaReport{}
	holders := map[uint64][]string{}
	nodes := make([]string, 0, len(reports))
	for node := range reports {
		nodes = append(nodes, node)
	}
	sort.Strings(nodes)
	for _, node := range nodes {
		for _, r := range reports[node] {
			holders[r.Shard] = append(holders[r.Shard], node)
			cur, ok := best[r.Shard]
			if !ok || newerReport(r, cur) {
				best[r.Shard] = r
			}
		}
	}
	var d directory
	for shard, r := range best {
		r.Holders = holders[shard]
		d.Ranges = append(d.Ranges, r)
	}
	slices.SortFunc(d.Ranges, func(a, b replicaReport) int {
		if c := bytes.Compare(a.Start, b.Start); c != 0 {
			return c
		}
		return int(a.Shard) - int(b.Shard)
	})
	d.Live = nodes
	return d
}

// newerReport reports whether r describes its range more recently than cur.
func newerReport(r, cur replicaReport) bool {
	switch {
	case r.Leads != cur.Leads:
		return r.Leads
	case r.Leads:
		return r.Term > cur.Term
	default:
		return r.Applied > cur.Applied
	}
}

// lookup returns the range that holds key: the last whose first key is not
// after key, if it reaches key.
func (d *directory) lookup(key []byte) (replicaReport, bool) {
	i := sort.Search(len(d.Ranges), func(i int) bool { return bytes.Compare(d.Ranges[i].Start, key) > 0 })
	for i--; i >= 0; i-- {
		if r := d.Ranges[i]; r.bounds().Contains(key) {
			return r, true
		}
	}
	return replicaReport{}, false
}

// directoryCache is a node's copy of the directory, refreshed in the
// background and when a request misses.
type directoryCache struct {
	mu    sync.Mutex
	dir   directory
	at    time.Time
	fetch func(ctx context.Context) (directory, error)
	// refreshing is closed when the fetch under way ends.
	refreshing chan struct{}
}

func (c *directoryCache) get() directory {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dir
}

func (c *directoryCache) set(d directory) {
	c.mu.Lock()
	c.dir, c.at = d, time.Now()
	c.mu.Unlock()
}

// refresh fetches the directory again unless it is younger than minAge;
// callers that come while a fetch is under way wait for it.
func (c *directoryCache) refresh(ctx context.Context, minAge time.Duration) error {
	c.mu.Lock()
	if time.Since(c.at) < minAge {
		c.mu.Unlock()
		return nil
	}
	if ch := c.refreshing; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	c.refreshing = ch
	c.mu.Unlock()
	d, err := c.fetch(ctx)
	c.mu.Lock()
	if err == nil {
		c.dir, c.at = d, time.Now()
	}
	c.refreshing = nil
	c.mu.Unlock()
	close(ch)
	return err
}

// decodeDirectory reads a directory sent by a peer.
func decodeDirectory(b []byte) (directory, error) {
	var d directory
	if err := json.Unmarshal(b, &d); err != nil {
		return directory{}, fmt.Errorf("decode the range directory: %w", err)
	}
	for i := range d.Ranges {
		if i > 0 && bytes.Compare(d.Ranges[i-1].Start, d.Ranges[i].Start) > 0 {
			return directory{}, fmt.Errorf("decode the range directory: ranges out of order at %d", i)
		}
	}
	return d, nil
}

// decodeReports reads a node's report of its replicas.
func decodeReports(b []byte) ([]replicaReport, error) {
	var rs []replicaReport
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("decode a replica report: %w", err)
	}
	return rs, nil
}
