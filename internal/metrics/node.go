package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
)

// series is one series a collector makes at scrape time from a snapshot of
// its source's counters.
type series[S any] struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*S) float64
}

func counter[S any](name, help string, value func(*S) float64) series[S] {
	return series[S]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, value}
}

func gauge[S any](name, help string, value func(*S) float64) series[S] {
	return series[S]{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, value}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// nodeCollector reads raftnode.Node.Metrics once per scrape and makes the
// Raft, snapshot and WAL series of it.
type nodeCollector struct {
	read   func() raftnode.Metrics
	series []series[raftnode.Metrics]
}

var _ prometheus.Collector = (*nodeCollector)(nil)

func newNodeCollector(read func() raftnode.Metrics) *nodeCollector {
	type m = raftnode.Metrics
	return &nodeCollector{read: read, series: []series[m]{
		gauge("distkv_raft_term", "Raft term this node is in.",
			func(s *m) float64 { return float64(s.Term) }),
		gauge("distkv_raft_has_leader", "1 if this node knows a leader of its Raft group, else 0.",
			func(s *m) float64 { return b2f(s.HasLeader) }),
		gauge("distkv_raft_ranges_led", "Raft groups (ranges) this node leads: 0 or 1 while the key space is one range.",
			func(s *m) float64 { return b2f(s.Leader) }),
		counter("distkv_raft_leader_changes_total", "Times this node learned of a leader other than the one it knew just before.",
			func(s *m) float64 { return float64(s.LeaderChanges) }),
		gauge("distkv_raft_commit_index", "Highest log index this node knows to be committed.",
			func(s *m) float64 { return float64(s.CommitIndex) }),
		gauge("distkv_raft_applied_index", "Highest log index applied to this node's state machine.",
			func(s *m) float64 { return float64(s.AppliedIndex) }),
		gauge("distkv_raft_apply_lag_entries", "Committed log entries not yet applied here (commit index minus applied index).",
			func(s *m) float64 { return float64(s.CommitIndex - s.AppliedIndex) }),
		counter("distkv_raft_proposals_committed_total", "Log entries this node learned were committed since it started.",
			func(s *m) float64 { return float64(s.EntriesCommitted) }),
		counter("distkv_raft_proposals_applied_total", "Log entries applied to this node's state machine since it started (the replay at start included).",
			func(s *m) float64 { return float64(s.EntriesApplied) }),
		counter("distkv_raft_proposals_failed_total", "Writes proposed through this node that failed: no leader, timed out, disk full, stopped.",
			func(s *m) float64 { return float64(s.ProposalsFailed) }),
		gauge("distkv_raft_proposals_pending", "Writes handed to Raft through this node and not yet answered.",
			func(s *m) float64 { return float64(s.ProposalsPending) }),
		counter("distkv_raft_messages_dropped_total", "Raft messages from peers dropped because this node's loop was behind (Raft retransmits).",
			func(s *m) float64 { return float64(s.MessagesDropped) }),
		gauge("distkv_raft_disk_full", "1 while this node refuses writes because its disk is full, else 0.",
			func(s *m) float64 { return b2f(s.DiskFull) }),
		counter("distkv_snapshots_taken_total", "Snapshot files this node wrote of its state machine.",
			func(s *m) float64 { return float64(s.SnapshotsTaken) }),
		counter("distkv_snapshots_sent_total", "Snapshots this node streamed to a follower that installed them.",
			func(s *m) float64 { return float64(s.SnapshotsSent) }),
		counter("distkv_snapshots_received_total", "Snapshots this node received from a leader and installed.",
			func(s *m) float64 { return float64(s.SnapshotsReceived) }),
		counter("distkv_wal_written_bytes_total", "Bytes of the frames appended to the WAL (as stored, compressed).",
			func(s *m) float64 { return float64(s.WAL.BytesWritten) }),
		counter("distkv_wal_frames_written_total", "Frames appended to the WAL; each holds the records of one or more coalesced appends.",
			func(s *m) float64 { return float64(s.WAL.Frames) }),
		counter("distkv_wal_records_written_total", "Records (entries, hard states, snapshot markers) appended to the WAL.",
			func(s *m) float64 { return float64(s.WAL.Records) }),
		gauge("distkv_wal_segments", "WAL segment files on disk.",
			func(s *m) float64 { return float64(s.WAL.Segments) }),
		gauge("distkv_wal_size_bytes", "Data bytes of the WAL's segment files.",
			func(s *m) float64 { return float64(s.WAL.SizeBytes) }),
	}}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.series {
		ch <- s.desc
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.read()
	for _, s := range c.series {
		ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.value(&m))
	}
}

// peerCollector reads transport.Transport.Stats once per scrape and makes
// the series of each peer link, labeled with the peer's member name.
type peerCollector struct {
	read   func() map[uint64]transport.PeerStats
	series []series[transport.PeerStats]
}

var _ prometheus.Collector = (*peerCollector)(nil)

func newPeerCollector(read func() map[uint64]transport.PeerStats) *peerCollector {
	type p = transport.PeerStats
	peer := []string{"peer"}
	mk := func(typ prometheus.ValueType, name, help string, value func(*p) float64) series[p] {
		return series[p]{prometheus.NewDesc(name, help, peer, nil), typ, value}
	}
	return &peerCollector{read: read, series: []series[p]{
		mk(prometheus.CounterValue, "distkv_peer_sent_bytes_total", "Bytes of frames sent to the peer, on both connections.",
			func(s *p) float64 { return float64(s.BytesSent) }),
		mk(prometheus.CounterValue, "distkv_peer_received_bytes_total", "Bytes of frames received from the peer, on both connections.",
			func(s *p) float64 { return float64(s.BytesReceived) }),
		mk(prometheus.CounterValue, "distkv_peer_messages_sent_total", "Raft messages written to the peer's connection.",
			func(s *p) float64 { return float64(s.Sent) }),
		mk(prometheus.CounterValue, "distkv_peer_messages_dropped_total", "Raft messages to the peer dropped: not connected, queue full, too large, or lost with a broken connection.",
			func(s *p) float64 { return float64(s.Dropped) }),
		mk(prometheus.CounterValue, "distkv_peer_reconnects_total", "Connections to the peer established after the first.",
			func(s *p) float64 { return float64(s.Reconnects) }),
		mk(prometheus.GaugeValue, "distkv_peer_connected", "1 while this node's connection to the peer is up, else 0.",
			func(s *p) float64 { return b2f(s.Connected) }),
	}}
}

func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.series {
		ch <- s.desc
	}
}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	for id, st := range c.read() {
		name := st.Name
		if name == "" {
			name = fmt.Sprintf("%016x", id)
		}
		for _, s := range c.series {
			ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.value(&st), name)
		}
	}
}
