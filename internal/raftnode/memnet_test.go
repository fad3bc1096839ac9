package raftnode

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// memNet is an in-memory network between nodes that can drop, delay,
// duplicate and partition messages. Links are directed: cut[a][b] stops
// traffic from a to b.
type memNet struct {
	mu    sync.Mutex
	nodes map[uint64]peerHandler
	cut   map[[2]uint64]bool
	drop  float64 // probability of losing a message
	dup   float64 // probability of delivering it twice
	delay time.Duration
	// lose, if set, drops the messages it returns true for.
	lose func(m raftpb.Message) bool
	// lost holds {shard, to}: that group's messages to that node are
	// dropped (see loseShard).
	lost map[[2]uint64]bool
	rng  *rand.Rand
}

func newMemNet(seed int64) *memNet {
	return &memNet{nodes: map[uint64]peerHandler{}, cut: map[[2]uint64]bool{}, rng: rand.New(rand.NewSource(seed))}
}

func (nw *memNet) transport(id uint64) *memTransport { return &memTransport{nw: nw, id: id} }

func (nw *memNet) attach(n *Node) {
	nw.mu.Lock()
	nw.nodes[n.raftID] = n
	nw.mu.Unlock()
}

// peerHandler takes a node's peer traffic: a Node, or a Host of many.
type peerHandler interface {
	HandleRaft(shard uint64, msgs []raftpb.Message)
	HandleCall(ctx context.Context, from, shard uint64, method uint8, payload []byte) ([]byte, error)
	HandleSnapshot(from, shard uint64, r io.Reader) error
	PeerUnreachable(to uint64)
}

// attachHost routes the traffic for node id to h.
func (nw *memNet) attachHost(id uint64, h *Host) {
	nw.mu.Lock()
	nw.nodes[id] = h
	nw.mu.Unlock()
}

func (nw *memNet) detach(id uint64) {
	nw.mu.Lock()
	delete(nw.nodes, id)
	nw.mu.Unlock()
}

// isolate cuts every link to and from id.
func (nw *memNet) isolate(id uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for other := range nw.nodes {
		if other != id {
			nw.cut[[2]uint64{id, other}] = true
			nw.cut[[2]uint64{other, id}] = true
		}
	}
}

// loseShard drops the messages of group shard to node to, or stops
// dropping them.
func (nw *memNet) loseShard(shard, to uint64, lose bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.lost == nil {
		nw.lost = map[[2]uint64]bool{}
	}
	if lose {
		nw.lost[[2]uint64{shard, to}] = true
	} else {
		delete(nw.lost, [2]uint64{shard, to})
	}
}

func (nw *memNet) heal() {
	nw.mu.Lock()
	nw.cut = map[[2]uint64]bool{}
	nw.drop, nw.dup, nw.delay, nw.lose = 0, 0, 0, nil
	nw.mu.Unlock()
}

func (nw *memNet) route(from, to uint64) (peerHandler, bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	n, ok := nw.nodes[to]
	if !ok || nw.cut[[2]uint64{from, to}] {
		return nil, false
	}
	return n, true
}

type memTransport struct {
	nw *memNet
	id uint64

	mu    sync.Mutex
	names map[uint64]string // given by NamePeer
}

var _ Transport = (*memTransport)(nil)

func (t *memTransport) Send(shard uint64, msgs []raftpb.Message) {
	// One batch per destination, as the real transport delivers what a
	// connection read brings.
	batches := map[uint64][]raftpb.Message{}
	var order []uint64
	for _, m := range msgs {
		if batches[m.To] == nil {
			order = append(order, m.To)
		}
		batches[m.To] = append(batches[m.To], m)
	}
	for _, to := range order {
		t.sendBatch(shard, batches[to])
	}
}

// sendBatch delivers msgs, all to one node: the ones neither lost nor
// delayed as one batch, duplicates included.
func (t *memTransport) sendBatch(shard uint64, msgs []raftpb.Message) {
	dst, ok := t.nw.route(t.id, msgs[0].To)
	if !ok {
		if src, ok := t.nw.route(t.id, t.id); ok {
			src.PeerUnreachable(msgs[0].To)
		}
		return
	}
	t.nw.mu.Lock()
	cut := t.nw.lost[[2]uint64{shard, msgs[0].To}]
	t.nw.mu.Unlock()
	if cut {
		return
	}
	var now []raftpb.Message
	for _, m := range msgs {
		t.nw.mu.Lock()
		lost := t.nw.rng.Float64() < t.nw.drop || (t.nw.lose != nil && t.nw.lose(m))
		twice := t.nw.rng.Float64() < t.nw.dup
		delay := t.nw.delay
		t.nw.mu.Unlock()
		switch {
		case lost:
			continue
		case delay > 0:
			time.AfterFunc(delay, func() { dst.HandleRaft(shard, []raftpb.Message{m}) })
		default:
			now = append(now, m)
		}
		if twice {
			now = append(now, m)
		}
	}
	if len(now) > 0 {
		dst.HandleRaft(shard, now)
	}
}

func (t *memTransport) SendSnapshot(ctx context.Context, to, shard uint64, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dst, ok := t.nw.route(t.id, to)
	t.nw.mu.Lock()
	cut := t.nw.lost[[2]uint64{shard, to}]
	t.nw.mu.Unlock()
	if !ok || cut {
		return fmt.Errorf("peer %x unreachable", to)
	}
	return dst.HandleSnapshot(t.id, shard, r)
}

func (t *memTransport) AddPeer(id uint64, addr string) {}
func (t *memTransport) RemovePeer(id uint64)           {}

func (t *memTransport) NamePeer(id uint64, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.names == nil {
		t.names = map[uint64]string{}
	}
	t.names[id] = name
}

// namesOf returns the names NamePeer gave, by id.
func (t *memTransport) namesOf() map[uint64]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.names)
}

// cluster is an in-process cluster of nodes on a memNet.
type cluster struct {
	t       *testing.T
	nw      *memNet
	members []Member
	dirs    map[string]string
	nodes   map[string]*Node
	tweak   func(*Config)
}

func newCluster(t *testing.T, size int, tweak func(*Config)) *cluster {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("memnet seed %d", seed)
	c := &cluster{t: t, nw: newMemNet(seed), dirs: map[string]string{}, nodes: map[string]*Node{}, tweak: tweak}
	base := t.TempDir()
	for i := 1; i <= size; i++ {
		name := fmt.Sprintf("n%d", i)
		c.members = append(c.members, Member{Name: name, Peer: fmt.Sprintf("mem:%d", i), HTTP: fmt.Sprintf("127.0.0.1:%d", 8000+i)})
		c.dirs[name] = filepath.Join(base, name)
	}
	for _, m := range c.members {
		c.start(m.Name)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) config(name string) Config {
	var self Member
	for _, m := range c.members {
		if m.Name == name {
			self = m
		}
	}
	cfg := Config{
		Self:          self,
		Members:       c.members,
		DataDir:       c.dirs[name],
		TickInterval:  10 * time.Millisecond,
		ElectionTicks: 10,
		Transport:     c.nw.transport(RaftID(name)),
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

func (c *cluster) start(name string) *Node {
	c.t.Helper()
	n, err := Open(c.config(name))
	if err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	c.nw.attach(n)
	c.nodes[name] = n
	return n
}

// join adds a new member as a learner through the node via and starts it as
// a joining node (Config.Join) with an empty data directory.
func (c *cluster) join(ctx context.Context, via string, m Member) *Node {
	c.t.Helper()
	if err := c.nodes[via].AddMember(ctx, m, true); err != nil {
		c.t.Fatalf("add learner %s: %v", m.Name, err)
	}
	c.members = append(c.members, m)
	c.dirs[m.Name] = c.t.TempDir()
	prev := c.tweak
	c.tweak = func(cfg *Config) {
		if cfg.Self.Name == m.Name {
			cfg.Join = true
		}
		if prev != nil {
			prev(cfg)
		}
	}
	return c.start(m.Name)
}

func (c *cluster) stop(name string) {
	n := c.nodes[name]
	if n == nil {
		return
	}
	c.nw.detach(n.raftID)
	n.Stop()
	delete(c.nodes, name)
}

func (c *cluster) stopAll() {
	for name := range c.nodes {
		c.stop(name)
	}
}

// waitLeader waits until every running node agrees on one leader among them.
func (c *cluster) waitLeader(timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []string
	for time.Now().Before(deadline) {
		seen = seen[:0]
		leader := ""
		agree := true
		for _, n := range c.nodes {
			l := n.Status().Leader
			seen = append(seen, n.cfg.Self.Name+"->"+l)
			if l == "" || (leader != "" && l != leader) {
				agree = false
			}
			leader = l
		}
		if _, running := c.nodes[leader]; agree && running {
			return leader
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader after %v: %v", timeout, seen)
	return ""
}

// stableLeaderAttempts is how many times withStableLeader runs a scenario.
const stableLeaderAttempts = 5

// withStableLeader runs scenario with the current leader and its term until
// a run keeps that leader throughout, at most stableLeaderAttempts times, and
// fails the test if none did. scenario returns what it saw if the leader
// changed under it (see leaderMoved), "" otherwise. For scenarios that assert
// what one leader does: an election on a busy machine (a tick late enough to
// look like a lost leader) is not what they test.
func (c *cluster) withStableLeader(scenario func(leader string, term uint64) (moved string)) {
	c.t.Helper()
	var seen []string
	for attempt := 1; attempt <= stableLeaderAttempts; attempt++ {
		leader := c.waitLeader(10 * time.Second)
		moved := scenario(leader, c.nodes[leader].Status().Term)
		if moved == "" {
			return
		}
		seen = append(seen, moved)
		if attempt < stableLeaderAttempts {
			c.t.Logf("attempt %d of %d: the leader changed during the run (%s); retrying", attempt, stableLeaderAttempts, moved)
		}
	}
	c.t.Fatalf("the leader changed during each of %d runs: %s", stableLeaderAttempts, strings.Join(seen, "; "))
}

// leaderMoved returns "" if leader still leads in term as it sees it, and
// what it sees otherwise.
func (c *cluster) leaderMoved(leader string, term uint64) string {
	st := c.nodes[leader].Status()
	if st.Leader == leader && st.Term == term {
		return ""
	}
	return fmt.Sprintf("%s led in term %d, and now sees leader %q in term %d", leader, term, st.Leader, st.Term)
}

func (c *cluster) follower(leader string) string {
	for name := range c.nodes {
		if name != leader {
			return name
		}
	}
	c.t.Fatal("no follower")
	return ""
}

func (t *memTransport) Call(ctx context.Context, to, shard uint64, method uint8, payload []byte) ([]byte, error) {
	dst, ok := t.nw.route(t.id, to)
	if !ok {
		return nil, fmt.Errorf("peer %x unreachable", to)
	}
	return dst.HandleCall(ctx, t.id, shard, method, payload)
}
