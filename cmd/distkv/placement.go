package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/distkv/distkv/internal/httpapi"
	"github.com/distkv/distkv/internal/kv"
	"github.com/distkv/distkv/internal/raftnode"
	"github.com/distkv/distkv/internal/transport"
)

// Placement: which nodes hold a replica of which range.
//
// Group 1 is the meta range. Every node of the cluster is a member of it
// (up to metaVoters voters, the others learners), so its membership is the
// list of the cluster's nodes and their addresses, and every node holds the
// users and roles. Once the cluster has more nodes than --replicas, the meta
// range gives its keys away (a split at metaSplitKey, below every key) and
// holds none: each range of keys then lives on --replicas nodes.
//
// The node that leads group 1 runs the controller: once a round
// (--placement-interval) it asks every node which replicas it holds, merges
// the answers into the directory (directory.go) and makes at most one change
// to each range, so that a range stays available through every step:
//
//   - a learner that has caught up is promoted; one on a dead or draining
//     node is removed;
//   - a range with more voters than --replicas loses one: the one being
//     moved off, else one on a dead or draining node, else one on the node
//     with the most replicas (its leadership is handed away first);
//   - a range with fewer healthy voters than --replicas (a node dead for
//     --dead-node-timeout or draining counts as not healthy) gets a learner
//     on the live node with the fewest replicas;
//   - when no range needs repair: a replica moves from the node with the
//     most to the one with the fewest (a learner first, then the rest as
//     above), and leadership moves from the node leading the most to one
//     leading at least two fewer, through a chain of transfers if need be.
//
// The controller keeps no state that matters across leaders of group 1: a
// new one reads the cluster as it is and goes on.

const (
	// metaVoters is the most voters group 1 has; the other nodes are its
	// learners.
	metaVoters = 5
	// learnerCaughtUp is how far behind its leader a learner may be to be
	// promoted.
	learnerCaughtUp = 256
	// learnerPatience is how long a learner may take to catch up before the
	// controller gives up on it and removes it.
	learnerPatience = 2 * time.Minute
	// changeTimeout bounds one change asked of a range.
	changeTimeout = 10 * time.Second
	// maxBalanceMoves is how many replica moves for balance may be under
	// way at once.
	maxBalanceMoves = 2
)

// metaSplitKey is where the meta range ends once it holds no keys: no key is
// below it (keys are not empty).
var metaSplitKey = []byte{0}

// placementConfig is what --replicas, --dead-node-timeout and
// --placement-interval set.
type placementConfig struct {
	Replicas  int
	DeadAfter time.Duration
	Interval  time.Duration
}

func (c placementConfig) validate() error {
	switch {
	case c.Replicas < 1:
		return fmt.Errorf("--replicas %d: a range needs at least one replica", c.Replicas)
	case c.DeadAfter <= 0:
		return fmt.Errorf("--dead-node-timeout %v: want a positive duration", c.DeadAfter)
	case c.Interval <= 0:
		return fmt.Errorf("--placement-interval %v: want a positive duration", c.Interval)
	}
	return nil
}

type placement struct {
	cfg    placementConfig
	node   *raftnode.Node // group 1
	self   string
	tr     *transport.Transport
	logger *slog.Logger
	dir    *directoryCache

	mu sync.Mutex
	// The controller's state, while this node leads group 1.
	leading bool
	since   time.Time            // when it began to lead
	seen    map[string]time.Time // when each node last answered
	// lastReports are the nodes' last replica reports (on group 1's
	// leader), heldDir the last directory fetched (elsewhere); see
	// sameAnswer.
	lastReports map[string]heldReports
	heldDir     heldDirectory
	heldReport  heldReport
	draining    map[string]bool
	moveOff     map[uint64]string // range -> the node a balance move empties
	busy        map[uint64]bool   // ranges with a change under way
	// handing: ranges whose leadership a transfer of this controller moves,
	// until a report shows the new leader (see leaderOf).
	handing  map[uint64]handover
	learning map[uint64]time.Time // range -> when its learner was added
	// revs serves the revisions of every range while this node leads
	// group 1 (methodStamps).
	revs *revisions
	// startHook, in tests, takes the changes start would make.
	startHook func(r replicaReport, on string, c replicaChange)
}

func newPlacement(cfg placementConfig, node *raftnode.Node, tr *transport.Transport, logger *slog.Logger) *placement {
	p := &placement{cfg: cfg, node: node, self: node.Status().ID, tr: tr, logger: logger}
	p.dir = &directoryCache{fetch: p.fetchDirectory}
	p.resetController()
	return p
}

func (p *placement) resetController() {
	p.seen, p.draining, p.moveOff = map[string]time.Time{}, map[string]bool{}, map[uint64]string{}
	p.lastReports = map[string]heldReports{}
	p.busy, p.learning, p.handing = map[uint64]bool{}, map[uint64]time.Time{}, map[uint64]handover{}
}

// handover is a transfer of leadership this controller started.
type handover struct {
	to    string
	until time.Time // when to stop waiting for the reports to show it
}

// leaderOf is the node that leads r, or will once the transfer this
// controller started is done: reports lag the transfers of the last round,
// and counting by them moved leadership twice toward the same node, then
// back.
func (p *placement) leaderOf(r *replicaReport) (leader string, handing bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.handing[r.Shard]
	switch {
	case !ok:
		return r.Leader, false
	case r.Leader == h.to || time.Now().After(h.until):
		delete(p.handing, r.Shard)
		return r.Leader, false
	}
	return h.to, true
}

// call makes a server call on node (this node's own are made directly).
func (p *placement) call(ctx context.Context, node string, shard uint64, method uint8, payload []byte) ([]byte, error) {
	if node == p.self {
		return p.handle(ctx, shard, method, payload)
	}
	if p.tr == nil {
		return nil, fmt.Errorf("node %s cannot be reached: no peer transport", node)
	}
	return p.tr.Call(ctx, raftnode.RaftID(node), shard, method, payload)
}

// handle serves a server call from a peer.
func (p *placement) handle(ctx context.Context, shard uint64, method uint8, payload []byte) ([]byte, error) {
	switch method {
	case methodReport:
		b, err := p.report()
		return unlessSame(b, payload), err
	case methodDirectory:
		if !p.leadsMeta() {
			return nil, errors.New("this node does not lead the meta range")
		}
		b, err := json.Marshal(p.dir.get())
		return unlessSame(b, payload), err
	case methodForward:
		return backend{n: p.node, pl: p}.serveForward(ctx, payload)
	case methodReplicaChange:
		var c replicaChange
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("decode a replica change: %w", err)
		}
		return nil, p.applyChange(ctx, shard, c)
	case methodStamps:
		return p.revs.serve(ctx, payload)
	case methodDrain:
		var d drainRequest
		if err := json.Unmarshal(payload, &d); err != nil {
			return nil, fmt.Errorf("decode a drain request: %w", err)
		}
		if !p.leadsMeta() {
			return nil, errors.New("this node does not lead the meta range")
		}
		p.mu.Lock()
		p.draining[d.Node] = true
		p.mu.Unlock()
		return json.Marshal(p.replicasOn(d.Node))
	}
	return nil, fmt.Errorf("unknown server call %d", method)
}

// replicaChange is a change asked of a range's replica.
type replicaChange struct {
	Op     string          `json:"op"` // addLearner, promote, remove, transfer, unbury
	Member raftnode.Member `json:"member"`
}

const (
	opAddLearner = "add_learner"
	opPromote    = "promote"
	opRemove     = "remove"
	opTransfer   = "transfer"
	opUnbury     = "unbury"
)

// drainRequest asks the controller to move every replica off Node.
type drainRequest struct {
	Node string `json:"node"`
}

func (p *placement) applyChange(ctx context.Context, shard uint64, c replicaChange) error {
	h := p.node.Host()
	if c.Op == opUnbury {
		return h.Unbury(shard)
	}
	g := h.Group(shard)
	if g == nil {
		return fmt.Errorf("range %d has no replica on %s", shard, p.self)
	}
	switch c.Op {
	case opAddLearner:
		return g.AddMember(ctx, c.Member, true)
	case opPromote:
		return g.PromoteMember(ctx, c.Member.Name)
	case opRemove:
		return g.RemoveMember(ctx, c.Member.Name)
	case opTransfer:
		return g.TransferLeader(ctx, c.Member.Name)
	}
	return fmt.Errorf("unknown replica change %q", c.Op)
}

func (p *placement) leadsMeta() bool { return p.node.Status().Leader == p.self }

// fetchDirectory gets the directory: made here on group 1's leader, asked of
// it elsewhere.
func (p *placement) fetchDirectory(ctx context.Context) (directory, error) {
	lead := p.node.Status().Leader
	if lead == "" {
		return directory{}, errors.New("the meta range has no leader")
	}
	if lead == p.self {
		d, _ := p.gather(ctx)
		return d, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p.mu.Lock()
	held := p.heldDir
	p.mu.Unlock()
	var ask []byte
	if held.sum != 0 {
		ask = sumOf(held.sum)
	}
	b, err := p.call(cctx, lead, 0, methodDirectory, ask)
	if err != nil {
		return directory{}, err
	}
	if isSame(b) && held.sum != 0 {
		return held.dir, nil
	}
	d, err := decodeDirectory(b)
	if err == nil {
		p.mu.Lock()
		p.heldDir = heldDirectory{sum: checksum(b), dir: d}
		p.mu.Unlock()
	}
	return d, err
}

// report returns this node's replica report, encoded: made again only if
// a group's Version changed since the last one, or one had a learner
// (whose lag moves without the leader's log), so that an idle node with
// thousands of ranges does not build it every placement round.
func (p *placement) report() ([]byte, error) {
	h := fnv.New64a()
	var buf [8]byte
	word := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	gs := p.node.Host().Groups()
	slices.SortFunc(gs, func(a, b *raftnode.Node) int { return cmp.Compare(a.Shard(), b.Shard()) })
	for _, g := range gs {
		applied, term, leader, quiet := g.Version()
		word(g.Shard())
		word(applied)
		word(term)
		word(leader)
		if quiet {
			word(1)
		} else {
			word(0)
		}
	}
	version := h.Sum64()
	p.mu.Lock()
	held := p.heldReport
	p.mu.Unlock()
	if held.encoded != nil && held.version == version && !held.learners {
		return held.encoded, nil
	}
	rs := localReport(p.node.Host(), p.self)
	b, err := json.Marshal(rs)
	if err != nil {
		return nil, err
	}
	learners := slices.ContainsFunc(rs, func(r replicaReport) bool { return len(r.Learners) > 0 })
	p.mu.Lock()
	p.heldReport = heldReport{version: version, encoded: b, learners: learners}
	p.mu.Unlock()
	return b, nil
}

// heldReport is the last report this node made (see report).
type heldReport struct {
	version  uint64
	encoded  []byte
	learners bool
}

// A node asks for a replica report or the directory with the checksum of
// the copy it holds (8 bytes, little-endian; none: it holds none), and
// the answer is sameAnswer if the copy is still what it would get, so that
// an idle cluster of thousands of ranges does not send and decode them
// every placement round. A node that predates this sends no checksum and
// gets the whole answer.
var sameAnswer = []byte(`"same"`)

var crcTable = crc64.MakeTable(crc64.ECMA)

func checksum(b []byte) uint64 { return crc64.Checksum(b, crcTable) | 1 } // never 0: 0 is "none"

func sumOf(sum uint64) []byte { return binary.LittleEndian.AppendUint64(nil, sum) }

func isSame(b []byte) bool { return bytes.Equal(b, sameAnswer) }

// unlessSame returns answer, or sameAnswer if ask is its checksum.
func unlessSame(answer, ask []byte) []byte {
	if len(ask) == 8 && binary.LittleEndian.Uint64(ask) == checksum(answer) {
		return sameAnswer
	}
	return answer
}

// heldReports is a node's last replica report as the meta range's leader
// decoded it; heldDirectory the directory a node last fetched.
type heldReports struct {
	sum     uint64
	reports []replicaReport
}

type heldDirectory struct {
	sum uint64
	dir directory
}

// run places replicas while this node leads group 1, and keeps the
// directory fresh on the others, until ctx ends.
func (p *placement) run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !p.leadsMeta() {
			p.mu.Lock()
			p.leading = false
			p.mu.Unlock()
			p.dir.refresh(ctx, p.cfg.Interval/2)
			continue
		}
		p.mu.Lock()
		if !p.leading {
			p.leading, p.since = true, time.Now()
			p.resetController()
		}
		p.mu.Unlock()
		d, members := p.gather(ctx)
		p.dir.set(d)
		p.round(ctx, d, members)
	}
}

// gather asks every node of the cluster for its replicas and merges what
// they answer.
func (p *placement) gather(ctx context.Context) (directory, []raftnode.MemberStatus) {
	members := p.node.Status().Members
	ctx, cancel := context.WithTimeout(ctx, max(p.cfg.Interval, 2*time.Second))
	defer cancel()
	var mu sync.Mutex
	reports := map[string][]replicaReport{}
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.mu.Lock()
			last, had := p.lastReports[m.Name]
			p.mu.Unlock()
			var ask []byte
			if had {
				ask = sumOf(last.sum)
			}
			b, err := p.call(ctx, m.Name, 0, methodReport, ask)
			if err != nil {
				return
			}
			rs := last.reports
			if !isSame(b) || !had {
				if rs, err = decodeReports(b); err != nil {
					p.logger.Warn("replica report", "node", m.Name, "err", err)
					return
				}
				p.mu.Lock()
				p.lastReports[m.Name] = heldReports{sum: checksum(b), reports: rs}
				p.mu.Unlock()
			}
			mu.Lock()
			reports[m.Name] = rs
			mu.Unlock()
		}()
	}
	wg.Wait()
	now := time.Now()
	p.mu.Lock()
	for node := range reports {
		p.seen[node] = now
	}
	p.mu.Unlock()
	return mergeReports(reports), members
}

// replicasOn counts the ranges other than the meta range that have a
// replica on node, as the last directory shows them.
func (p *placement) replicasOn(node string) int {
	n := 0
	for _, r := range p.dir.get().Ranges {
		if r.Shard != 1 && (r.has(node) || slices.Contains(r.Holders, node)) {
			n++
		}
	}
	return n
}

// nodeState is what the controller knows of one node in a round.
type nodeState struct {
	member   raftnode.Member
	live     bool // answered this round
	dead     bool // has not answered for --dead-node-timeout
	draining bool
	replicas int
	leaders  int
}

// usable: a node to put replicas on.
func (s *nodeState) usable() bool { return s.live && !s.draining }

// leaving: a node to take replicas off.
func (s *nodeState) leaving() bool { return s.dead || s.draining }

// round makes this round's changes.
func (p *placement) round(ctx context.Context, d directory, members []raftnode.MemberStatus) {
	now := time.Now()
	live := map[string]bool{}
	for _, n := range d.Live {
		live[n] = true
	}
	nodes := map[string]*nodeState{}
	p.mu.Lock()
	for _, m := range members {
		// A node is dead once nothing came from it for --dead-node-timeout:
		// no report and no message at all (every node sends its peers a
		// heartbeat each tick); one too busy to report in time is not.
		last := p.since
		for _, t := range []time.Time{p.seen[m.Name], p.node.Host().LastHeard(m.Name)} {
			if t.After(last) {
				last = t
			}
		}
		nodes[m.Name] = &nodeState{member: m.Member, live: live[m.Name], dead: !live[m.Name] && now.Sub(last) > p.cfg.DeadAfter,
			draining: p.draining[m.Name]}
	}
	p.mu.Unlock()
	var meta *replicaReport
	for i := range d.Ranges {
		r := &d.Ranges[i]
		if r.Shard == 1 {
			meta = r
			// Its leader counts as leading one more range: besides group
			// 1's own traffic it hands out every range's revisions and
			// runs this controller.
			if s := nodes[r.Leader]; s != nil && r.Leads {
				s.leaders++
			}
			continue
		}
		leader, _ := p.leaderOf(r)
		for _, n := range r.replicas() {
			if s := nodes[n]; s != nil {
				s.replicas++
			}
		}
		if s := nodes[leader]; s != nil && r.Leads {
			s.leaders++
		}
	}
	if meta == nil {
		return
	}
	p.placeMeta(ctx, meta, nodes)
	usable := 0
	for _, s := range nodes {
		if s.usable() {
			usable++
		}
	}
	staying := 0
	for _, s := range nodes {
		if !s.leaving() {
			staying++
		}
	}
	target := min(p.cfg.Replicas, staying)
	repairing := false
	for i := range d.Ranges {
		r := d.Ranges[i]
		if r.Shard == 1 || p.isBusy(r.Shard) || !r.Leads {
			continue
		}
		if c, on, ok := p.repair(r, nodes, target, now); ok {
			repairing = true
			p.start(ctx, r, on, c)
		}
	}
	if repairing {
		return
	}
	p.balance(ctx, d, nodes, target, usable)
}

// placeMeta keeps the meta range on every node: enough voters, and no keys
// once ranges of keys no longer need every node.
func (p *placement) placeMeta(ctx context.Context, meta *replicaReport, nodes map[string]*nodeState) {
	if p.isBusy(1) {
		return
	}
	if len(nodes) > p.cfg.Replicas && (len(meta.End) == 0 || bytes.Compare(meta.End, metaSplitKey) > 0) {
		p.setBusy(1, true)
		go func() {
			defer p.setBusy(1, false)
			ctx, cancel := context.WithTimeout(ctx, changeTimeout)
			defer cancel()
			res, err := p.node.Propose(ctx, kv.Command{Op: kv.OpAllocate})
			if err == nil {
				err = p.node.Split(ctx, metaSplitKey, uint64(res.Revision))
			}
			if err != nil {
				p.logger.Warn("give the meta range's keys to a range of their own", "err", err)
				return
			}
			p.logger.Info("the meta range gave its keys to a range of their own", "range", res.Revision)
		}()
		return
	}
	if len(meta.Voters) >= min(metaVoters, len(nodes)) {
		return
	}
	for _, l := range meta.Learners {
		if s := nodes[l]; s != nil && s.live && !s.draining && meta.Lag[l] <= learnerCaughtUp {
			if _, known := meta.Lag[l]; known {
				p.start(ctx, *meta, p.self, replicaChange{Op: opPromote, Member: s.member})
				return
			}
		}
	}
}

// repair returns the change range r needs to have target healthy voters,
// and the node to ask; ok false if it needs none.
func (p *placement) repair(r replicaReport, nodes map[string]*nodeState, target int, now time.Time) (c replicaChange, on string, ok bool) {
	leaving := func(n string) bool { s := nodes[n]; return s == nil || s.leaving() }
	for _, l := range r.Learners {
		s := nodes[l]
		lag, known := r.Lag[l]
		switch {
		case leaving(l):
			return replicaChange{Op: opRemove, Member: raftnode.Member{Name: l}}, r.Leader, true
		case ((known && lag <= learnerCaughtUp) || r.Quiet) && s.live:
			p.mu.Lock()
			delete(p.learning, r.Shard)
			p.mu.Unlock()
			return replicaChange{Op: opPromote, Member: s.member}, r.Leader, true
		default:
			p.mu.Lock()
			at, ok := p.learning[r.Shard]
			if !ok {
				p.learning[r.Shard] = now
			}
			p.mu.Unlock()
			if ok && now.Sub(at) > learnerPatience {
				p.logger.Warn("a learner did not catch up: removing it", "range", r.Shard, "node", l)
				return replicaChange{Op: opRemove, Member: raftnode.Member{Name: l}}, r.Leader, true
			}
		}
		return replicaChange{}, "", false // wait for it
	}
	healthy := 0
	for _, v := range r.Voters {
		if !leaving(v) {
			healthy++
		}
	}
	if len(r.Voters) > target {
		victim := p.victim(r, nodes)
		if victim == r.Leader {
			if to := p.successor(r, nodes); to != "" {
				return replicaChange{Op: opTransfer, Member: nodes[to].member}, r.Leader, true
			}
			return replicaChange{}, "", false
		}
		return replicaChange{Op: opRemove, Member: raftnode.Member{Name: victim}}, r.Leader, true
	}
	if healthy < target {
		if to := p.newHome(r, nodes); to != "" {
			return replicaChange{Op: opAddLearner, Member: nodes[to].member}, r.Leader, true
		}
	}
	return replicaChange{}, "", false
}

// victim picks the voter of r to remove: one on a dead or draining node,
// else the one a balance move empties, else one on the node with the most
// replicas.
func (p *placement) victim(r replicaReport, nodes map[string]*nodeState) string {
	for _, v := range r.Voters {
		if s := nodes[v]; s == nil || s.leaving() {
			return v
		}
	}
	p.mu.Lock()
	off := p.moveOff[r.Shard]
	p.mu.Unlock()
	if off != "" && slices.Contains(r.Voters, off) {
		return off
	}
	best := ""
	for _, v := range r.Voters {
		if best == "" || nodes[v].replicas > nodes[best].replicas {
			best = v
		}
	}
	return best
}

// successor picks the voter of r, other than its leader, that should lead
// it: a healthy one leading the fewest ranges.
func (p *placement) successor(r replicaReport, nodes map[string]*nodeState) string {
	best := ""
	for _, v := range r.Voters {
		s := nodes[v]
		if v == r.Leader || s == nil || !s.usable() {
			continue
		}
		if best == "" || s.leaders < nodes[best].leaders {
			best = v
		}
	}
	return best
}

// newHome picks the usable node without a replica of r that holds the
// fewest replicas.
func (p *placement) newHome(r replicaReport, nodes map[string]*nodeState) string {
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	best := ""
	for _, n := range names {
		s := nodes[n]
		if !s.usable() || r.has(n) {
			continue
		}
		if best == "" || s.replicas < nodes[best].replicas {
			best = n
		}
	}
	return best
}

// balance starts moving a replica from the node with the most to the one
// with the fewest, and leadership off nodes that lead more than their
// share.
func (p *placement) balance(ctx context.Context, d directory, nodes map[string]*nodeState, target, usable int) {
	if usable == 0 {
		return
	}
	names := make([]string, 0, len(nodes))
	for n, s := range nodes {
		if s.usable() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	p.mu.Lock()
	moving := len(p.moveOff)
	p.mu.Unlock()
	if moving < maxBalanceMoves {
		most, fewest := "", ""
		for _, n := range names {
			s := nodes[n]
			if most == "" || s.replicas > nodes[most].replicas {
				most = n
			}
			if fewest == "" || s.replicas < nodes[fewest].replicas {
				fewest = n
			}
		}
		if most != "" && nodes[most].replicas-nodes[fewest].replicas >= 2 {
			// Prefer a range that most does not lead: no transfer needed.
			var pick *replicaReport
			for i := range d.Ranges {
				r := &d.Ranges[i]
				if r.Shard == 1 || !r.Leads || p.isBusy(r.Shard) || len(r.Learners) > 0 || len(r.Voters) != target ||
					!slices.Contains(r.Voters, most) || r.has(fewest) {
					continue
				}
				if pick == nil || (pick.Leader == most && r.Leader != most) {
					pick = r
				}
			}
			if pick != nil {
				p.mu.Lock()
				p.moveOff[pick.Shard] = most
				p.mu.Unlock()
				p.start(ctx, *pick, pick.Leader, replicaChange{Op: opAddLearner, Member: nodes[fewest].member})
			}
		}
	}
	// Leaders: chains of transfers (see leaderChain), up to one a round per
	// 100 ranges and at least two: a node holding thousands of ranges, most
	// made by splits of ranges it led (a split's new range keeps the
	// leader), would otherwise take many minutes to even out.
	used := map[uint64]bool{}
	for range max(2, len(d.Ranges)/100) {
		chain := p.leaderChain(d, nodes, names, used)
		if chain == nil {
			break
		}
		nodes[d.Ranges[chain[0].rng].Leader].leaders--
		nodes[chain[len(chain)-1].to].leaders++
		for _, h := range chain {
			r := d.Ranges[h.rng]
			used[r.Shard] = true
			p.start(ctx, r, r.Leader, replicaChange{Op: opTransfer, Member: nodes[h.to].member})
		}
	}
}

// hop is one transfer of a chain: range d.Ranges[rng] to node to.
type hop struct {
	rng int
	to  string
}

// leaderChain finds transfers of leadership that take one range off the
// node leading the most (trying the next if that one can give none) and
// give one to a node leading at least two fewer: a chain in which each
// node hands a range it leads to a voter of that range, the next node of
// the chain, and every node but the first and the last leads as many as
// before. It returns nil if there is none. Each chain lowers the sum of
// the squares of the counts, so balancing ends.
//
// A chain, not only direct transfers: the ranges of a node leading too many
// often have their other replicas on nodes at the average, which can take
// one only if they hand one of theirs on. With direct transfers to a node
// below its share only, one node of six led 6 of 16 ranges through a
// bench/scaleout.sh run, the cluster's bottleneck.
func (p *placement) leaderChain(d directory, nodes map[string]*nodeState, names []string, used map[uint64]bool) []hop {
	// led[n]: the ranges n leads that may change now.
	led := map[string][]int{}
	for i := range d.Ranges {
		r := &d.Ranges[i]
		if _, handing := p.leaderOf(r); handing || r.Shard == 1 || !r.Leads || used[r.Shard] || nodes[r.Leader] == nil || p.isBusy(r.Shard) {
			continue
		}
		led[r.Leader] = append(led[r.Leader], i)
	}
	order := slices.Clone(names)
	slices.SortStableFunc(order, func(a, b string) int { return nodes[b].leaders - nodes[a].leaders })
	for _, src := range order {
		// Breadth first, so that chains are as short as they can be. via[v]:
		// v was reached from node parent, whose range rng v holds a voter of.
		type step struct {
			rng    int
			parent string
		}
		via := map[string]step{src: {rng: -1}}
		queue := []string{src}
		for len(queue) > 0 {
			u := queue[0]
			queue = queue[1:]
			for _, i := range led[u] {
				for _, v := range d.Ranges[i].Voters {
					if _, seen := via[v]; seen || nodes[v] == nil || !nodes[v].usable() {
						continue
					}
					via[v] = step{rng: i, parent: u}
					if nodes[v].leaders+2 <= nodes[src].leaders {
						var chain []hop
						for n := v; n != src; n = via[n].parent {
							chain = append(chain, hop{rng: via[n].rng, to: n})
						}
						slices.Reverse(chain)
						return chain
					}
					queue = append(queue, v)
				}
			}
		}
	}
	return nil
}

func (p *placement) isBusy(shard uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy[shard]
}

func (p *placement) setBusy(shard uint64, busy bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if busy {
		p.busy[shard] = true
	} else {
		delete(p.busy, shard)
	}
}

// start makes change c to range r, asking node on (its leader), in the
// background; the range takes no other change until it is done.
func (p *placement) start(ctx context.Context, r replicaReport, on string, c replicaChange) {
	if on == "" {
		return
	}
	if p.startHook != nil {
		p.startHook(r, on, c)
		return
	}
	p.setBusy(r.Shard, true)
	if c.Op == opTransfer {
		p.mu.Lock()
		p.handing[r.Shard] = handover{to: c.Member.Name, until: time.Now().Add(changeTimeout + 5*p.cfg.Interval)}
		p.mu.Unlock()
	}
	go func() {
		defer p.setBusy(r.Shard, false)
		ctx, cancel := context.WithTimeout(ctx, changeTimeout)
		defer cancel()
		err := p.change(ctx, r, on, c)
		p.mu.Lock()
		switch {
		case c.Op == opRemove && p.moveOff[r.Shard] == c.Member.Name:
			delete(p.moveOff, r.Shard) // the move is done
		case err != nil && c.Op == opAddLearner:
			delete(p.moveOff, r.Shard)
		case c.Op == opAddLearner:
			p.learning[r.Shard] = time.Now()
		case err != nil && c.Op == opTransfer:
			delete(p.handing, r.Shard)
		}
		p.mu.Unlock()
		if err != nil {
			p.logger.Warn("placement change failed", "range", r.Shard, "op", c.Op, "node", c.Member.Name, "err", err)
			return
		}
		p.logger.Info("placement change", "range", r.Shard, "op", c.Op, "node", c.Member.Name)
	}()
}

func (p *placement) change(ctx context.Context, r replicaReport, on string, c replicaChange) error {
	if c.Op == opAddLearner {
		// The node may have held the range before: let it be created again.
		b, _ := json.Marshal(replicaChange{Op: opUnbury})
		if _, err := p.call(ctx, c.Member.Name, r.Shard, methodReplicaChange, b); err != nil {
			return fmt.Errorf("prepare %s: %w", c.Member.Name, err)
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = p.call(ctx, on, r.Shard, methodReplicaChange, b)
	return err
}

// drain moves every replica but the meta range's off node, asking group 1's
// leader to, and returns once none is left, or an error when ctx ends
// first (the node keeps draining; asking again waits for the rest).
func (p *placement) drain(ctx context.Context, node string) error {
	known := false
	for _, m := range p.node.Status().Members {
		known = known || m.Name == node
	}
	if !known {
		return fmt.Errorf("%w: %q", raftnode.ErrUnknownMember, node)
	}
	req, _ := json.Marshal(drainRequest{Node: node})
	left := -1
	for {
		if lead := p.node.Status().Leader; lead != "" {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			b, err := p.call(cctx, lead, 0, methodDrain, req)
			cancel()
			if err == nil && json.Unmarshal(b, &left) == nil && left == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if left < 0 {
				return fmt.Errorf("draining %s: the meta range's leader did not answer: %w", node, ctx.Err())
			}
			return fmt.Errorf("draining %s: %d ranges still have a replica there (it goes on draining; ask again to finish the removal): %w", node, left, ctx.Err())
		case <-time.After(p.cfg.Interval):
		}
	}
}

// ranges lists the cluster's ranges, as a fresh directory shows them.
func (p *placement) ranges() []httpapi.Range {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := p.dir.refresh(ctx, 200*time.Millisecond); err != nil {
		p.logger.Debug("refresh the range directory", "err", err)
	}
	var out []httpapi.Range
	for _, r := range p.dir.get().Ranges {
		out = append(out, httpapi.Range{ID: r.Shard, Start: string(r.Start), End: string(r.End), Leader: r.Leader,
			Replicas: slices.Sorted(slices.Values(r.Voters)), Learners: r.Learners, Bytes: r.Bytes, Meta: r.Shard == 1})
	}
	return out
}
