package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
	"github.com/distkv/distkv/internal/vfs"
	"github.com/distkv/distkv/internal/wal"
)

type serverOptions struct {
	config          string
	id              string
	dataDir         string
	httpAddr        string
	peerAddr        string
	advertiseHTTP   string
	advertisePeer   string
	cluster         string
	clusterToken    string
	join            string
	dialOverride    string
	pprofAddr       string
	maxKeySize      byteSize
	maxValueSize    byteSize
	requestTimeout  time.Duration
	requestDedupTTL time.Duration
	shutdownTimeout time.Duration
	tick            time.Duration
	electionTicks   int
	heartbeatTicks  int
	snapshotEntries uint64
	catchupEntries  uint64
	walSegmentSize  byteSize
	rangeSplitBytes sizeOrZero
	historyKeep     time.Duration
	historyMax      byteSize
	placement       placementConfig
	rangeSplitQPS   int
	walCompression  string
	walDirect       bool
	logLevel        string
	logFormat       string
	tls             tlsOptions
	auth            authOptions // auth.go
	// Encryption at rest (encryption.go).
	encryptionKeyFile    string
	oldEncryptionKeyFile string
}

func newServerCommand() *cobra.Command {
	o := &serverOptions{maxKeySize: 4096, maxValueSize: 1 << 20, walSegmentSize: 64 << 20, rangeSplitBytes: sizeOrZero{64 << 20},
		historyMax: raftnode.DefaultHistoryMaxBytes}
	o.placement = placementConfig{Replicas: 3, DeadAfter: 5 * time.Minute, Interval: time.Second}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one distkv node",
		Long: `Run one distkv node.

Every flag can also be set with an environment variable DISTKV_<FLAG> (for
example DISTKV_DATA_DIR) or in a TOML file given with --config (keys are flag
names). Precedence: flag, environment, file, default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyConfigSources(cmd.Flags(), o.config); err != nil {
				return err
			}
			return runServer(o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "TOML configuration file")
	f.StringVar(&o.id, "id", "n1", "this node's name, unique in the cluster")
	f.StringVar(&o.dataDir, "data-dir", "", "data directory (default ./data/<id>)")
	f.StringVar(&o.httpAddr, "http", "127.0.0.1:8000", "HTTP API listen address")
	f.StringVar(&o.peerAddr, "peer", "127.0.0.1:9000", "peer (Raft) listen address of this node")
	f.StringVar(&o.advertiseHTTP, "advertise-http", "", "HTTP address this node publishes to the other members and clients (default: --http; required when --http has no host or 0.0.0.0)")
	f.StringVar(&o.advertisePeer, "advertise-peer", "", "peer address this node publishes and the other members dial; --cluster must list it (default: --peer; required when --peer has no host or 0.0.0.0)")
	f.StringVar(&o.cluster, "cluster", "", "initial members of a new cluster: n1=host:port,n2=host:port,... (peer addresses; ignored once the data directory has state)")
	f.StringVar(&o.clusterToken, "cluster-token", "distkv", "name shared by the members of one cluster; nodes of different clusters refuse each other")
	f.StringVar(&o.dialOverride, "dial-override", "", "dial these members at these addresses instead of the recorded ones: n2=host:port,... (NAT, tunnels, test proxies)")
	f.StringVar(&o.join, "join", "", "join an existing cluster through the HTTP address of any member (e.g. http://10.0.0.1:8000; https:// when this node serves TLS, the default then)")
	f.Var(&o.maxKeySize, "max-key-size", "largest key accepted (bytes; KiB/MiB suffixes allowed)")
	f.Var(&o.maxValueSize, "max-value-size", "largest value accepted (bytes; KiB/MiB suffixes allowed)")
	f.DurationVar(&o.requestTimeout, "request-timeout", 5*time.Second, "deadline of one client request")
	f.DurationVar(&o.requestDedupTTL, "request-dedup-ttl", time.Hour, "how long the outcome of a write sent with client_id and request_id (or an Idempotency-Key) is kept, so that its retries apply nothing")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for in-flight requests")
	f.DurationVar(&o.tick, "tick", 100*time.Millisecond, "Raft tick interval")
	f.IntVar(&o.electionTicks, "election-ticks", 10, "election timeout in ticks")
	f.IntVar(&o.heartbeatTicks, "heartbeat-ticks", 1, "heartbeat interval in ticks")
	f.Uint64Var(&o.snapshotEntries, "snapshot-entries", 10000, "applied entries between snapshots (which also wait for half the state's bytes of log)")
	f.Uint64Var(&o.catchupEntries, "snapshot-catchup-entries", 5000, "entries kept in memory behind a snapshot for slow followers; one further behind gets the snapshot")
	f.Var(&o.walSegmentSize, "wal-segment-size", "WAL segment size (bytes; KiB/MiB suffixes allowed)")
	f.IntVar(&o.placement.Replicas, "replicas", o.placement.Replicas, "replicas of each range (fewer while the cluster has fewer nodes)")
	f.DurationVar(&o.placement.DeadAfter, "dead-node-timeout", o.placement.DeadAfter, "move the replicas off a node that has not answered for this long")
	f.DurationVar(&o.placement.Interval, "placement-interval", o.placement.Interval, "how often the placement of replicas is looked at and changed")
	f.Var(&o.rangeSplitBytes, "range-split-bytes", "split a range once its keys and values pass this size (bytes; KiB/MiB suffixes allowed; 0: never)")
	f.IntVar(&o.rangeSplitQPS, "range-split-qps", defaultRangeSplitQPS, "split a range whose leader serves more than this many requests a second for 10 s, at the key that divides them (0: never)")
	f.DurationVar(&o.historyKeep, "history-retention", raftnode.DefaultHistoryRetention, "how long the versions that writes replace or delete stay readable at their revisions before they are compacted away")
	f.Var(&o.historyMax, "history-max-bytes", "compact a range's oldest replaced and deleted versions sooner than --history-retention once their keys and values pass this size (bytes; KiB/MiB suffixes allowed)")
	f.StringVar(&o.walCompression, "wal-compression", "s2", "WAL frame compression: s2 (cheap on the write path), zstd (smaller) or none")
	f.BoolVar(&o.walDirect, "wal-direct", true, "make each WAL sync one O_DIRECT write with RWF_DSYNC of the unsynced blocks (write and fdatasync where the file system refuses O_DIRECT); false: write each frame to the page cache and fdatasync")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off when empty")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	addTLSFlags(f, &o.tls)
	o.auth.addFlags(f)
	f.StringVar(&o.encryptionKeyFile, "encryption-key-file", "", "encrypt the WAL and snapshots at rest under the 32-byte master key in this file (32 raw bytes or 64 hex digits); off when empty")
	f.StringVar(&o.oldEncryptionKeyFile, "old-encryption-key-file", "", "the master key the data directory's data keys are wrapped with now, to rotate to --encryption-key-file at this start")
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func parseCompression(s string) (wal.Compression, error) {
	switch strings.ToLower(s) {
	case "zstd":
		return wal.CompressionZstd, nil
	case "s2":
		return wal.CompressionS2, nil
	case "none":
		return wal.CompressionNone, nil
	}
	return 0, fmt.Errorf("wal compression %q: want zstd, s2 or none", s)
}

func runServer(o *serverOptions) error {
	logger, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join("data", o.id)
	}
	sec, err := newServerTLS(o.tls, logger)
	if err != nil {
		return err
	}
	stopTLS := sec.start(logger)
	defer stopTLS()
	// Before the node opens: restoring a large snapshot is when the heap grows.
	gcCtx, stopGC := context.WithCancel(context.Background())
	defer stopGC()
	go tuneGC(gcCtx, logger)
	comp, err := parseCompression(o.walCompression)
	if err != nil {
		return err
	}
	if err := o.placement.validate(); err != nil {
		return err
	}
	if o.historyKeep <= 0 || o.historyMax <= 0 {
		return fmt.Errorf("--history-retention %v and --history-max-bytes %d must be above 0", o.historyKeep, o.historyMax)
	}
	self, err := advertisedSelf(o)
	if err != nil {
		return err
	}
	members, err := parseCluster(o.cluster, self)
	if err != nil {
		return err
	}
	overrides, err := parseDialOverrides(o.dialOverride)
	if err != nil {
		return err
	}
	hasState := dataDirHasState(o.dataDir)
	join := o.join != "" && !hasState
	if o.join != "" && hasState {
		logger.Info("data directory has state: ignoring --join", "data_dir", o.dataDir)
	}
	if hasState && o.cluster != "" {
		logger.Info("data directory has state: ignoring --cluster", "data_dir", o.dataDir)
	}
	if err := prepareDataDir(o.dataDir, logger); err != nil {
		return err
	}
	cipher, err := openEncryption(o.dataDir, o.encryptionKeyFile, o.oldEncryptionKeyFile, hasState, logger)
	if err != nil {
		return err
	}
	ncfg := raftnode.Config{
		Self:             self,
		Members:          members,
		Join:             join,
		DataDir:          o.dataDir,
		TickInterval:     o.tick,
		ElectionTicks:    o.electionTicks,
		HeartbeatTicks:   o.heartbeatTicks,
		SnapshotEntries:  o.snapshotEntries,
		RangeSplitBytes:  int64(o.rangeSplitBytes.byteSize),
		RangeSplitQPS:    o.rangeSplitQPS,
		LogEntriesKept:   o.catchupEntries,
		HistoryRetention: o.historyKeep,
		HistoryMaxBytes:  int64(o.historyMax),
		WALSegmentSize:   int64(o.walSegmentSize),
		WALCompression:   comp,
		WALBuffered:      !o.walDirect,
		Logger:           logger,
	}
	if err := withCipher(&ncfg, cipher); err != nil {
		return err
	}
	hcfg := httpapi.Config{
		MaxKeySize:     int(o.maxKeySize),
		MaxValueSize:   int(o.maxValueSize),
		RequestTimeout: o.requestTimeout,
		Logger:         logger,
	}
	hcfg.RequestDedupTTL = o.requestDedupTTL
	streamsEnd := make(chan struct{})
	hcfg.StreamsEnd = streamsEnd
	hcfg.HeartbeatInterval = o.tick * time.Duration(o.heartbeatTicks)
	hcfg.DataDir, hcfg.WALSegmentSize, hcfg.SnapshotEntries = o.dataDir, int64(o.walSegmentSize), o.snapshotEntries
	hcfg.TLS = sec.apiServer != nil
	if hcfg.Auth, err = o.auth.httpConfig(); err != nil {
		return err
	}
	if err := hcfg.Validate(); err != nil {
		return err
	}
	// Listen before opening the node so that a taken port fails fast and
	// touches no data.
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.httpAddr, err)
	}
	defer ln.Close()
	if sec.apiServer != nil {
		// A plain HTTP request on this port is answered 400 "Client sent an
		// HTTP request to an HTTPS server" by net/http.
		ln = tls.NewListener(ln, sec.apiServer)
	}
	// The transport is needed by the node and delivers to it: it starts with
	// a relay that drops traffic until the node is open.
	relay := &handlerRelay{}
	trCfg := transport.Config{
		ID:      raftnode.RaftID(o.id),
		Name:    o.id,
		Token:   tokenID(o.clusterToken),
		Listen:  o.peerAddr,
		Handler: relay,
		Logger:  logger,
		TLS:     sec.peerMutual,
	}
	if trCfg.ClusterID, err = settleClusterID(o, sec, trCfg, members, self, hasState, join, overrides, logger); err != nil {
		return err
	}
	ncfg.ClusterID = trCfg.ClusterID
	tr, err := transport.New(trCfg)
	if err != nil {
		return fmt.Errorf("peer listener on %s: %w", o.peerAddr, err)
	}
	defer tr.Close()
	ncfg.Transport = dialingTransport{Transport: tr, override: overrides}
	if join {
		ms, err := joinCluster(sec, o.join, self, o.requestTimeout, logger)
		if err != nil {
			return err
		}
		ncfg.Members = ms
	}
	if err := ncfg.Validate(); err != nil {
		return err
	}
	mx, err := newMetrics(&ncfg, logger)
	if err != nil {
		return err
	}
	// Every range's writes take revisions from the oracle on group 1's
	// leader (revisions.go).
	revs, err := newRevisions(tr, logger)
	if err != nil {
		return err
	}
	ncfg.Stamper = revs
	// Ranges made by splits, and those a leader adds this node to, are
	// opened as group 1 is, quiescing.
	ncfg.NewGroup = func(shard uint64) (raftnode.Config, bool) {
		cfg := ncfg
		cfg.Shard, cfg.Quiesce, cfg.Join, cfg.Members, cfg.NewGroup = shard, true, false, nil, nil
		return cfg, true
	}
	node, err := raftnode.Open(ncfg)
	if err != nil {
		return err
	}
	relay.set(node.Host())
	if err := openRanges(node, ncfg); err != nil {
		node.Stop()
		return err
	}
	if err := registerNode(mx, node, tr); err != nil {
		node.Stop()
		return err
	}
	pl := newPlacement(o.placement, node, tr, logger)
	pl.revs = revs
	relay.setServer(pl.handle)
	plCtx, plStop := context.WithCancel(context.Background())
	defer plStop()
	go pl.run(plCtx)
	go revs.run(plCtx, node)
	be := backend{n: node, pl: pl}
	go be.sweepTxns(plCtx)
	handler, err := httpapi.New(hcfg, be)
	if err != nil {
		node.Stop()
		return err
	}
	defer o.auth.start(be, logger)()
	srv := &http.Server{
		Handler:           mx.Handler(handler), // GET /metrics, then the API
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Streams (GET /watch) end when the server shuts down, rather than
	// hold the shutdown up until its timeout.
	srv.RegisterOnShutdown(func() { close(streamsEnd) })
	if o.pprofAddr != "" {
		pln, err := net.Listen("tcp", o.pprofAddr)
		if err != nil {
			node.Stop()
			return fmt.Errorf("pprof listener on %s: %w", o.pprofAddr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		// Mutex and block profiles record nothing unless sampling is on.
		runtime.SetMutexProfileFraction(5)
		runtime.SetBlockProfileRate(10000)
		psrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go psrv.Serve(pln)
		defer psrv.Close()
		logger.Info("pprof serving", "addr", pln.Addr().String())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("distkv node serving", "id", o.id, "cluster_id", transport.FormatClusterID(node.ClusterID()),
		"http", ln.Addr().String(), "peer", tr.Addr().String(), "advertise_http", self.HTTP, "advertise_peer", self.Peer, "data_dir", o.dataDir, "pid", os.Getpid(),
		"wal_sync", vfs.SyncMethod(), "wal_direct", node.WALDirect(), "go_sysmon", sysmonMode(),
		"api_tls", sec.apiServer != nil, "api_client_certs", o.tls.clientCAFile != "", "peer_tls", sec.peerMutual != nil)

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	select {
	case sig := <-sigc:
		logger.Info("shutting down", "signal", sig.String())
		ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		// In-flight requests are answered while the node still runs; then a
		// leader hands leadership to another voter so that the cluster does
		// not wait an election timeout; then the node stops and syncs and
		// closes its WAL.
		if err := srv.Shutdown(ctx); err != nil {
			logger.Warn("http shutdown", "err", err)
		}
		if st := node.Status(); st.Leader == o.id && len(st.Members) > 1 {
			tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
			if err := node.TransferLeader(tctx, ""); err != nil {
				logger.Warn("leadership transfer before exit failed", "err", err)
			} else {
				logger.Info("leadership transferred before exit", "to", node.Status().Leader)
			}
			tcancel()
		}
		if err := node.Stop(); err != nil {
			return &exitError{code: 1, err: err}
		}
		logger.Info("stopped cleanly")
		return nil
	case <-node.Done():
		srv.Close()
		err := node.Err()
		if errors.Is(err, raftnode.ErrRemoved) {
			logger.Info("removed from the cluster: exiting; its data directory can be deleted")
			return nil
		}
		if err == nil {
			err = errors.New("node stopped")
		}
		return &exitError{code: 1, err: fmt.Errorf("fatal: %w", err)}
	case err := <-serveErr:
		node.Stop()
		return fmt.Errorf("http server: %w", err)
	}
}

// advertisedSelf is the member this node publishes: its name and the
// addresses the others and the clients reach it at, --advertise-http and
// --advertise-peer, each defaulting to its listen address (--http, --peer),
// as etcd's advertise and listen URLs. A node in a container listens on
// 0.0.0.0 but must publish a name the others resolve (n1:9000).
func advertisedSelf(o *serverOptions) (raftnode.Member, error) {
	httpAddr, err := advertised("http", o.httpAddr, o.advertiseHTTP)
	if err != nil {
		return raftnode.Member{}, err
	}
	peerAddr, err := advertised("peer", o.peerAddr, o.advertisePeer)
	if err != nil {
		return raftnode.Member{}, err
	}
	return raftnode.Member{Name: o.id, Peer: peerAddr, HTTP: httpAddr}, nil
}

// advertised returns the address published for the listener of --name:
// advertise, or listen when advertise is empty. It refuses an address without
// a host or with an unspecified one (0.0.0.0, [::]): whoever dialed it would
// reach their own machine, not this node.
func advertised(name, listen, advertise string) (string, error) {
	if advertise == "" {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return "", fmt.Errorf("--%s %q: want host:port", name, listen)
		}
		if unspecified(host) {
			return "", fmt.Errorf("--%s %s listens on every interface, which is no address to reach this node at: "+
				"set --advertise-%s to one the other members and clients can reach (such as n1:%s in a container, or this machine's address)",
				name, listen, name, port)
		}
		return listen, nil
	}
	flag := "--advertise-" + name
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return "", fmt.Errorf("%s %q: want host:port", flag, advertise)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("%s %q: %q is not a port number", flag, advertise, port)
	}
	if unspecified(host) {
		return "", fmt.Errorf("%s %s is no address to reach this node at: give a host name or address the other members and clients can reach (such as n1:%s)",
			flag, advertise, port)
	}
	return advertise, nil
}

// unspecified reports whether host, of a host:port, names no one machine:
// empty, 0.0.0.0 or ::.
func unspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// backend adapts a node to the HTTP API: n is its group 1, the cluster's
// first group, which holds the membership, the auth state and the key
// space's first range; key requests go to the range that holds the key
// (router.go).
type backend struct {
	n *raftnode.Node
	// pl places ranges on nodes and finds them (nil: every node holds every
	// range, as in tests of one node).
	pl *placement
	// localOnly: answer from this node's replicas only (forward.go).
	localOnly bool
}

var _ httpapi.Backend = backend{}

func (b backend) Ready() error { return b.n.Ready() }

func (b backend) Status() httpapi.Status {
	s := b.n.Status()
	out := httpapi.Status{
		ID:           s.ID,
		ClusterID:    clusterIDString(s.ClusterID),
		Leader:       s.Leader,
		Term:         s.Term,
		CommitIndex:  s.CommitIndex,
		AppliedIndex: s.AppliedIndex,
		DiskFull:     s.DiskFull,
		Members:      make([]httpapi.Member, 0, len(s.Members)),
	}
	for _, m := range s.Members {
		hm := httpapi.Member{ID: m.Name, Peer: m.Peer, HTTP: m.HTTP, Role: "voter"}
		if m.ReachKnown {
			reachable := m.Reachable
			hm.Reachable = &reachable
		}
		if m.Learner {
			hm.Role = "learner"
		}
		if !m.LastContact.IsZero() {
			hm.LastContact = m.LastContact.UTC().Format(time.RFC3339Nano)
		}
		if m.HasProgress {
			match, lag := m.Match, m.Lag
			hm.MatchIndex, hm.Lag = &match, &lag
		}
		out.Members = append(out.Members, hm)
	}
	for _, g := range b.n.Host().Groups() {
		out.Ranges++
		locks, records := g.KV().TxnCounts()
		out.TxnLocks += locks
		out.TxnRecords += records
		if g.Status().Leader == s.ID {
			out.RangeLeaders++
		}
	}
	return out
}

// The ranges this node holds.
var _ httpapi.RangeLister = backend{}

// Ranges lists the groups of the node's Host, each a range of keys, sorted
// by their first key.
func (b backend) Ranges() []httpapi.Range {
	if b.pl != nil {
		if rs := b.pl.ranges(); len(rs) > 0 {
			return rs
		}
	}
	var out []httpapi.Range
	for _, g := range b.n.Host().Groups() {
		st, bounds := g.Status(), g.Bounds()
		r := httpapi.Range{ID: g.Shard(), Start: string(bounds.Start), End: string(bounds.End),
			Leader: st.Leader, Replicas: []string{}, Bytes: g.KV().Bytes()}
		for _, m := range st.Members {
			r.Replicas = append(r.Replicas, m.Name)
		}
		slices.Sort(r.Replicas)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b httpapi.Range) int { return strings.Compare(a.Start, b.Start) })
	return out
}

// openRanges opens the ranges the data directory holds besides group 1's.
// Group 1 may have opened some already, applying again a split it had made
// before the restart.
func openRanges(node *raftnode.Node, ncfg raftnode.Config) error {
	shards, err := node.Host().RecoveredGroups()
	if err != nil {
		return err
	}
	for _, s := range shards {
		cfg, _ := ncfg.NewGroup(s)
		if _, err := node.Host().OpenGroup(cfg); err != nil && !errors.Is(err, raftnode.ErrGroupOpen) && !errors.Is(err, raftnode.ErrGroupRemoved) {
			return fmt.Errorf("open range %d: %w", s, err)
		}
	}
	return nil
}

// defaultRangeSplitQPS is --range-split-qps of `distkv server` and `distkv
// dev`: a range busier than this for 10 s splits for load.
const defaultRangeSplitQPS = 2500

// sizeOrZero is a byteSize that may also be 0 (off).
type sizeOrZero struct{ byteSize }

func (b *sizeOrZero) Set(s string) error {
	if strings.TrimSpace(s) == "0" {
		b.byteSize = 0
		return nil
	}
	return b.byteSize.Set(s)
}

// byteSize is a flag value in bytes that accepts KiB, MiB and GiB suffixes.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Type() string   { return "bytes" }

func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return fmt.Errorf("%q is not a positive size (examples: 4096, 64KiB, 1MiB)", s)
	}
	*b = byteSize(v * mult)
	return nil
}
