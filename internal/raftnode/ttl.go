package raftnode

import (
	"context"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// Expiring keys (see package kv, expiry.go). A key's deadline is fixed in
// the log by the put that set it; the key leaves the state only when an
// OpExpire entry is applied, so every replica deletes it at the same index
// and a restart keeps every deadline. This node proposes that entry while it
// is the leader: every expiryInterval it compares the earliest deadline in
// its state with its clock, and once one has passed it proposes an OpExpire
// carrying its clock's time, and waits for it to apply before it looks
// again. One entry deletes every key due by that time (up to
// kv.MaxExpireKeys).
//
// So a key is deleted cluster-wide within about expiryInterval plus a
// commit's round trip after its deadline, as measured by the leader's clock.
// A leader whose clock runs behind deletes keys late; one that runs ahead,
// early. Readers that must not show a key past its deadline before the
// entry is applied filter by their own clock (kv.KeyValue.Expired).

// expiryInterval is how often the leader looks for keys past their
// deadline: two ticks (200 ms at the default tick).
func (n *Node) expiryInterval() time.Duration { return 2 * n.cfg.TickInterval }

// expireTimeout bounds the wait for one OpExpire entry to be applied.
const expireTimeout = 5 * time.Second

// expireLoop proposes OpExpire entries while this node leads, until ctx ends.
func (n *Node) expireLoop(ctx context.Context) {
	t := time.NewTicker(n.expiryInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.leader.Load() != n.raftID {
			continue
		}
		next, ok := n.kv.NextDeadline()
		now := time.Now().UnixNano()
		if !ok || next > now {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, expireTimeout)
		res, err := n.Propose(pctx, kv.Command{Op: kv.OpExpire, Now: now})
		cancel()
		if err != nil {
			// Not the leader any more, stopping, or a full disk: the next
			// leader (or this one, next time) proposes it again.
			n.logger.Debug("expire keys", "err", err)
			continue
		}
		n.logger.Debug("expired keys", "deleted", res.Version, "index", res.Revision)
	}
}
