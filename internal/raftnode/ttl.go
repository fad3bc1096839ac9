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
// is the leader: every expiryTicks ticks it compares the earliest deadline in
// its state with its clock, and once one has passed it proposes an OpExpire
// carrying its clock's time, and waits for it to apply before it looks
// again. One entry deletes every key due by that time (up to
// kv.MaxExpireKeys).
//
// So a key is deleted cluster-wide within about expiryTicks ticks plus a
// commit's round trip after its deadline, as measured by the leader's clock.
// A leader whose clock runs behind deletes keys late; one that runs ahead,
// early. Readers that must not show a key past its deadline before the
// entry is applied filter by their own clock (kv.KeyValue.Expired).

// expiryTicks is how often, in ticks of the loop, the leader looks for keys
// past their deadline: every second tick (200 ms at the default tick).
const expiryTicks = 2

// expireTimeout bounds the wait for one OpExpire entry to be applied.
const expireTimeout = 5 * time.Second

// maybeExpire starts proposing an OpExpire, on the loop's tick, if this node
// leads, a key's deadline has passed and no such proposal is under way. The
// proposal is made on a goroutine of its own (Propose waits for the loop).
func (n *Node) maybeExpire() {
	if n.leader.Load() != n.raftID || n.expiring.Load() {
		return
	}
	next, ok := n.kv.NextDeadline()
	now := time.Now().UnixNano()
	if !ok || next > now {
		return
	}
	n.expiring.Store(true)
	n.goAsync(func(ctx context.Context) {
		defer n.expiring.Store(false)
		pctx, cancel := context.WithTimeout(ctx, expireTimeout)
		res, err := n.Propose(pctx, kv.Command{Op: kv.OpExpire, Now: now})
		cancel()
		if err != nil {
			// Not the leader any more, stopping, or a full disk: the next
			// leader (or this one, on a later tick) proposes it again.
			n.logger.Debug("expire keys", "err", err)
			return
		}
		n.logger.Debug("expired keys", "deleted", res.Version, "index", res.Revision)
	})
}
