package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/metrics"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
)

// newMetrics makes the node's registry, served at GET /metrics, and its
// runtime, process, HTTP and WAL-sync collectors. The WAL's syncs are
// observed from the node's start: ncfg gets the observer.
func newMetrics(ncfg *raftnode.Config, logger *slog.Logger) (*metrics.Metrics, error) {
	m, err := metrics.New(metrics.Config{Registry: prometheus.NewRegistry(), Route: httpapi.Route, Logger: logger})
	if err != nil {
		return nil, err
	}
	ncfg.WALSyncObserver = m.ObserveWALSync
	return m, nil
}

// registerNode adds the collectors that read the open node and its
// transport at every scrape.
func registerNode(m *metrics.Metrics, node *raftnode.Node, tr *transport.Transport) error {
	return m.Register(metrics.Sources{Node: node.Metrics, Peers: tr.Stats})
}
