// Package metrics exports a distkv node's metrics in the Prometheus format,
// at GET /metrics on the node's HTTP listener.
//
// It owns the collectors; the registry is made by the caller (cmd/distkv)
// and passed in, so nothing is registered globally. The components know
// nothing of Prometheus: they keep plain counters (raftnode.Node.Metrics,
// wal.WAL.Stats, transport.Transport.Stats) that the collectors here read
// when Prometheus scrapes, so the write path pays nothing for them. Only
// what needs each event's value is observed as it happens, once per event:
// an HTTP request's latency and outcome (Handler) and a WAL sync's duration
// (ObserveWALSync, given to the WAL as its SyncObserver).
//
// # Series
//
// Names follow the Prometheus conventions: the prefix distkv_, counters end
// in _total, durations are in seconds (_seconds) and sizes in bytes
// (_bytes). Labels take few values: a request's route is its path template
// (httpapi.Route: "/key/{key}", never the key), its method one of the
// standard ones or "other", and a peer is named by its member name. The
// full list, with what each series means, is in docs/operations.md
// (Metrics); TestSeriesFollowConventions checks every name.
//
// # Wiring
//
//	reg := prometheus.NewRegistry()
//	m, _ := metrics.New(metrics.Config{Registry: reg, Route: httpapi.Route})
//	nodeCfg.WALSyncObserver = m.ObserveWALSync   // before the node opens
//	node, _ := raftnode.Open(nodeCfg)
//	m.Register(metrics.Sources{Node: node.Metrics, Peers: tr.Stats})
//	srv.Handler = m.Handler(api)                 // /metrics, then the API
package metrics
