package raftnode

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkv/distkv/internal/kv"
)

// waitCompacted waits until every node's store is compacted to at least rev.
func waitCompacted(t *testing.T, c *cluster, rev int64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		done := true
		for _, n := range c.nodes {
			done = done && n.KV().Compacted() >= rev
		}
		if done {
			return time.Since(start)
		}
		if time.Since(start) > within {
			for name, n := range c.nodes {
				t.Logf("%s: compacted to %d", name, n.KV().Compacted())
			}
			t.Fatalf("not every node compacted to %d within %v", rev, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHistoryCompactedByAge: an overwritten version stays readable at its
// revision on every node until the retention has passed, and is then
// compacted away everywhere by one entry of the leader's.
func TestHistoryCompactedByAge(t *testing.T) {
	const retention = 1500 * time.Millisecond
	c := newCluster(t, 3, func(cfg *Config) { cfg.HistoryRetention = retention })
	leader := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := put(ctx, c.nodes[leader], "k", "v1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := put(ctx, c.nodes[leader], "k", "v2")
	if err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	for name, n := range c.nodes {
		waitApplied(t, n, c.nodes[leader].KV().Applied())
		kvp, ok, err := n.KV().GetAt([]byte("k"), first.Revision)
		if err != nil || !ok || string(kvp.Value) != "v1" {
			t.Fatalf("%s at revision %d: %+v %v %v, want v1", name, first.Revision, kvp, ok, err)
		}
	}
	took := waitCompacted(t, c, second.Revision, 3*retention)
	if since := time.Since(written); since < retention {
		t.Fatalf("compacted %v after the overwrite, before the retention of %v", since, retention)
	}
	t.Logf("compacted everywhere %v after the overwrite", took)
	for name, n := range c.nodes {
		if _, _, err := n.KV().GetAt([]byte("k"), first.Revision); !errors.Is(err, kv.ErrCompacted) {
			t.Fatalf("%s at revision %d after compaction: %v", name, first.Revision, err)
		}
		if v, _ := n.KV().HistoryStats(); v != 0 {
			t.Fatalf("%s keeps %d versions after compaction", name, v)
		}
		if kvp, ok := n.KV().Get([]byte("k")); !ok || string(kvp.Value) != "v2" {
			t.Fatalf("%s lost the latest version: %+v %v", name, kvp, ok)
		}
	}
}

// TestHistoryCompactedBySize: with a retention of an hour, history past
// HistoryMaxBytes is compacted anyway.
func TestHistoryCompactedBySize(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.HistoryMaxBytes = 100 })
	leader := c.waitLeader(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last kv.Result
	for range 20 {
		r, err := put(ctx, c.nodes[leader], "k", "0123456789")
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	// 20 versions of 11 bytes: compacted down to 50 bytes or less, the
	// oldest first.
	waitCompacted(t, c, last.Revision-5, 5*time.Second)
	for name, n := range c.nodes {
		if v, size := n.KV().HistoryStats(); size > 100 || v == 0 {
			t.Fatalf("%s keeps %d versions, %d bytes, after compaction", name, v, size)
		}
	}
}

// TestCompactHistoryThroughTheLog: CompactHistory from a follower compacts
// every replica to the revision asked, not above the group's revision.
func TestCompactHistoryThroughTheLog(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.waitLeader(5 * time.Second)
	f := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var revs []int64
	for _, v := range []string{"a", "b", "c"} {
		r, err := put(ctx, c.nodes[f], "k", v)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Revision)
	}
	got, err := c.nodes[f].CompactHistory(ctx, revs[1])
	if err != nil || got != revs[1] {
		t.Fatalf("CompactHistory(%d) = %d, %v", revs[1], got, err)
	}
	waitCompacted(t, c, revs[1], 5*time.Second)
	for name, n := range c.nodes {
		if kvp, ok, err := n.KV().GetAt([]byte("k"), revs[1]); err != nil || !ok || string(kvp.Value) != "b" {
			t.Fatalf("%s at %d: %+v %v %v, want b", name, revs[1], kvp, ok, err)
		}
	}
	top := c.nodes[leader].KV().Revision()
	if got, err := c.nodes[leader].CompactHistory(ctx, top+1000); err != nil || got != top+1000 {
		t.Fatalf("CompactHistory beyond the revision %d: %d, %v", top, got, err)
	}
	// The next write takes a revision above the compaction.
	if r, err := put(ctx, c.nodes[f], "k", "d"); err != nil || r.Revision <= top+1000 {
		t.Fatalf("a write after a compaction beyond the revision: %+v, %v", r, err)
	}
}

// inFlightStamper is a counterStamper whose next fetch, once held, takes its
// stamps and then waits for release before it answers: a write stamped
// before a later revision was handed out, still in flight.
type inFlightStamper struct {
	counterStamper
	hold    atomic.Bool
	taken   chan uint64
	release chan struct{}
}

func (s *inFlightStamper) Stamps(ctx context.Context, n int, floor uint64) (uint64, error) {
	first, err := s.counterStamper.Stamps(ctx, n, floor)
	if err == nil && s.hold.CompareAndSwap(true, false) {
		s.taken <- first
		<-s.release
	}
	return first, err
}

// TestReadAtRevisionIsFinal: a read at revision R, made while a write
// stamped below R is in flight, finds what was there at R; the write is
// then refused (its stamp is stale) and proposed again, takes a revision
// above R, and every replica still reads the old value at R.
func TestReadAtRevisionIsFinal(t *testing.T) {
	st := &inFlightStamper{counterStamper: counterStamper{next: 1000}, taken: make(chan uint64, 1), release: make(chan struct{})}
	c := newHostCluster(t, 3, func(cfg *Config) { cfg.Stamper = st })
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead, follower := c.leaderAndFollower()
	first, err := put(ctx, lead, "k", "a")
	if err != nil {
		t.Fatal(err)
	}

	st.hold.Store(true)
	type outcome struct {
		res kv.Result
		err error
	}
	late := make(chan outcome, 1)
	go func() {
		res, err := put(ctx, lead, "k", "b")
		late <- outcome{res, err}
	}()
	stale := <-st.taken // the write's stamp, handed out before R
	r, err := st.counterStamper.Stamps(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	rev := int64(r)
	got, ok, err := follower.GetAt(ctx, []byte("k"), rev)
	if err != nil || !ok || string(got.Value) != "a" || got.Revision != first.Revision {
		t.Fatalf("GetAt(k, %d) while a write stamped %d is in flight: %+v %v %v", rev, stale, got, ok, err)
	}
	close(st.release)
	o := <-late
	if o.err != nil || o.res.Revision <= rev {
		t.Fatalf("the write stamped %d before the read at %d: %+v, %v; want applied above %d", stale, rev, o.res, o.err, rev)
	}
	for name, h := range c.hosts {
		g := h.Group(1)
		if err := g.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := g.GetAt(ctx, []byte("k"), rev); err != nil || !ok || string(v.Value) != "a" {
			t.Fatalf("%s at %d after the late write: %+v %v %v", name, rev, v, ok, err)
		}
		if v, ok, err := g.GetAt(ctx, []byte("k"), o.res.Revision); err != nil || !ok || string(v.Value) != "b" {
			t.Fatalf("%s at %d: %+v %v %v", name, o.res.Revision, v, ok, err)
		}
		if kvs, _, err := g.RangeAt(ctx, nil, nil, 0, rev); err != nil || len(kvs) != 1 || string(kvs[0].Value) != "a" {
			t.Fatalf("%s: RangeAt %d: %+v %v", name, rev, kvs, err)
		}
	}
	// Below the compaction: the error says how far back reads go.
	if _, err := lead.CompactHistory(ctx, rev+1); err != nil {
		t.Fatal(err)
	}
	_, _, err = lead.GetAt(ctx, []byte("k"), rev)
	var ce *kv.CompactedError
	if !errors.As(err, &ce) || ce.Revision != rev || ce.Compacted != rev+1 {
		t.Fatalf("GetAt below the compaction: %v", err)
	}
}

// TestLargeStateSnapshotsLessOften: a snapshot writes the whole state, so a
// group whose state (here a long history of one hot key) is large against
// the entries since its last snapshot waits until they hold half its bytes;
// small entries on a small state snapshot every SnapshotEntries as before.
func TestLargeStateSnapshotsLessOften(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SnapshotEntries = 20
	n := openNode(t, cfg)
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The newest snapshot file's index, once no snapshot is being written.
	newest := func() uint64 {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			idx, err := n.snaps.Indexes(n.cfg.Shard)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			again, _ := n.snaps.Indexes(n.cfg.Shard)
			if slices.Equal(idx, again) || time.Now().After(deadline) {
				if len(idx) == 0 {
					return 0
				}
				return idx[len(idx)-1]
			}
		}
	}
	for range 60 {
		if _, err := put(ctx, n, "small", "v"); err != nil {
			t.Fatal(err)
		}
	}
	if got := newest(); got < 40 {
		t.Fatalf("newest snapshot at %d after 60 small entries, SnapshotEntries 20", got)
	}
	// 100 versions of 20 KB: a state of about 2 MB.
	big := strings.Repeat("x", 20<<10)
	for range 100 {
		if _, err := put(ctx, n, "hot", big); err != nil {
			t.Fatal(err)
		}
	}
	before := newest()
	// 200 small entries (~ 10 KB): far from half of 2 MB; no snapshot.
	for range 200 {
		if _, err := put(ctx, n, "small", "v"); err != nil {
			t.Fatal(err)
		}
	}
	if got := newest(); got != before {
		t.Fatalf("snapshot at %d after 200 small entries on a 2 MB state (was at %d)", got, before)
	}
	// 60 more versions of 20 KB (1.2 MB of entries): now one is due.
	for range 60 {
		if _, err := put(ctx, n, "hot", big); err != nil {
			t.Fatal(err)
		}
	}
	if got := newest(); got <= before {
		t.Fatalf("no snapshot after 1.2 MB of entries on a 2 MB state (newest at %d)", got)
	}
}

// TestCurrentRevisionOfOneRange: a read of keys that one range holds all
// may read at that range's revision (every acknowledged write of it is at
// or below it, no write needed); keys beyond the range get no revision
// from it.
func TestCurrentRevisionOfOneRange(t *testing.T) {
	c := newHostCluster(t, 3, nil)
	for _, m := range c.members {
		c.open(m.Name, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left := c.leader(1)
	putKeys(t, ctx, left, 100)
	if err := left.Split(ctx, []byte("key050"), 2); err != nil {
		t.Fatal(err)
	}
	c.waitGroup(2)
	right := c.leader(2)
	last, err := put(ctx, right, "key077", "x")
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range c.hosts {
		g := h.Group(2)
		rev, ok, err := g.CurrentRevision(ctx, []byte("key060"), nil)
		if err != nil || !ok || rev != last.Revision {
			t.Fatalf("%s: CurrentRevision of keys group 2 holds: %d %v %v, want %d", name, rev, ok, err, last.Revision)
		}
		if kv, found, err := g.GetAt(ctx, []byte("key077"), rev); err != nil || !found || string(kv.Value) != "x" {
			t.Fatalf("%s: key077 at %d: %+v %v %v", name, rev, kv, found, err)
		}
		if _, ok, err := h.Group(1).CurrentRevision(ctx, []byte("key010"), []byte("key060")); ok || err != nil {
			t.Fatalf("%s: group 1 gave a revision for keys up to key060 (beyond its range): %v %v", name, ok, err)
		}
		if _, ok, _ := h.Group(1).CurrentRevision(ctx, []byte("key010"), nil); ok {
			t.Fatalf("%s: group 1 gave a revision for the unbounded rest of the key space", name)
		}
	}
}
