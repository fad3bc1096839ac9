package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
	"github.com/distkv/distkv/internal/vfs"
)

// A cluster's id is created once, at random, by one member when the cluster
// is bootstrapped: the member of --cluster whose name sorts first (so every
// member agrees on it, whatever order its --cluster lists them in). The
// others ask it for the id over the peer port before they bootstrap, so no
// member ever runs Raft without knowing which cluster it belongs to. A node
// that joins with --join learns the id from the member it joins through.
// Names and flags do not make the id: a cluster rebuilt with the same names
// and token gets a new one, and its nodes refuse the old incarnation's.

// bootstrapper is the member of a new cluster that creates its id.
func bootstrapper(members []raftnode.Member) raftnode.Member {
	return slices.MinFunc(members, func(a, b raftnode.Member) int { return strings.Compare(a.Name, b.Name) })
}

// newClusterID returns a random non-zero id.
func newClusterID() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("create a cluster id: %w", err)
		}
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id, nil
		}
	}
}

// askBootstrapper asks the member that creates the cluster's id for it, at
// addr, until it answers or ctx ends. It logs while it waits: that member may
// not have started yet.
func askBootstrapper(ctx context.Context, cfg transport.Config, first raftnode.Member, addr string, logger *slog.Logger) (uint64, error) {
	logger.Info("asking the member that creates the cluster id for it", "member", first.Name, "addr", addr)
	const maxWait = 2 * time.Second
	wait := 100 * time.Millisecond
	lastLog := time.Now()
	for {
		id, err := transport.AskClusterID(ctx, cfg, addr, raftnode.RaftID(first.Name))
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("waiting for the cluster id from %s (%s): %w", first.Name, addr, ctx.Err())
		}
		if time.Since(lastLog) > 10*time.Second {
			logger.Warn("still waiting for the member that creates the cluster id (the member of --cluster whose name sorts first)",
				"member", first.Name, "addr", addr, "err", err)
			lastLog = time.Now()
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait = min(2*wait, maxWait)
	}
}

// settleClusterID decides the cluster id this node runs with, before its
// transport starts: the one its data directory keeps; none if the directory
// has state from before cluster ids; the joined cluster's with --join; a new
// one if this node creates the id of a new cluster; else the one the member
// that creates it answers (see bootstrapper).
func settleClusterID(o *serverOptions, sec *serverTLS, trCfg transport.Config, members []raftnode.Member, self raftnode.Member,
	hasState, join bool, overrides map[uint64]string, logger *slog.Logger) (uint64, error) {
	id, known, err := raftnode.ReadClusterID(vfs.Default, o.dataDir)
	switch {
	case err != nil:
		return 0, err
	case known || hasState:
		return id, nil
	case join:
		return learnClusterID(sec, o.join, o.requestTimeout)
	}
	first := bootstrapper(members)
	if first.Name == self.Name {
		id, err := newClusterID()
		if err == nil {
			logger.Info("created the id of a new cluster", "cluster_id", transport.FormatClusterID(id))
		}
		return id, err
	}
	addr := first.Peer
	if a, ok := overrides[raftnode.RaftID(first.Name)]; ok {
		addr = a
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return askBootstrapper(ctx, trCfg, first, addr, logger)
}

// clusterIDString is how /cluster/status shows an id: empty for none.
func clusterIDString(id uint64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", id)
}
