package metrics

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
)

// Config configures the metrics of one node.
type Config struct {
	// Registry receives every collector and is what /metrics serves.
	// Required: each node (and each test) has its own.
	Registry *prometheus.Registry
	// Route names a request's endpoint for the route label: a path
	// template, never text from the request (httpapi.Route). Required.
	Route func(*http.Request) string
	// Logger receives the errors of a scrape that could not collect
	// something. Default: discard.
	Logger *slog.Logger
}

// Validate fills in defaults and reports what is missing.
func (c *Config) Validate() error {
	if c.Registry == nil {
		return errors.New("metrics: config: Registry is required")
	}
	if c.Route == nil {
		return errors.New("metrics: config: Route is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Metrics holds a node's collectors. Its methods are safe for concurrent
// use.
type Metrics struct {
	cfg  Config
	http *httpMetrics
	// walSync is distkv_wal_fsync_duration_seconds, observed by the WAL's
	// writer (ObserveWALSync).
	walSync prometheus.Histogram
}

// New registers the Go runtime and process collectors and the collectors
// observed as events happen (HTTP requests, WAL syncs) in cfg.Registry. The
// node's own collectors are registered by Register once it is open.
func New(cfg Config) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Metrics{
		cfg:  cfg,
		http: newHTTPMetrics(cfg.Route),
		walSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "distkv_wal_fsync_duration_seconds",
			Help: "Duration of each sync of appended WAL frames: an fdatasync, or with --wal-direct the O_DIRECT write with RWF_DSYNC.",
			// From a tmpfs's few microseconds to a stalled disk's second.
			Buckets: []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
				0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}),
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.http.requests, m.http.duration, m.walSync,
	} {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveWALSync records one WAL sync that took d; it is the WAL's
// SyncObserver (raftnode.Config.WALSyncObserver).
func (m *Metrics) ObserveWALSync(d time.Duration) { m.walSync.Observe(d.Seconds()) }

// Sources are the node's components, read at every scrape.
type Sources struct {
	// Node returns the Raft node's counters, with its WAL's
	// (raftnode.Node.Metrics). Required.
	Node func() raftnode.Metrics
	// Peers returns the peer links' counters (transport.Transport.Stats);
	// nil for a node without peers.
	Peers func() map[uint64]transport.PeerStats
}

// Register adds the collectors that read src at every scrape.
func (m *Metrics) Register(src Sources) error {
	if src.Node == nil {
		return errors.New("metrics: register: Sources.Node is required")
	}
	if err := m.cfg.Registry.Register(newNodeCollector(src.Node)); err != nil {
		return err
	}
	if src.Peers != nil {
		return m.cfg.Registry.Register(newPeerCollector(src.Peers))
	}
	return nil
}
