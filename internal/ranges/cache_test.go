package ranges

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func lookupID(c *Cache, key string) (uint64, string) {
	d, leader, ok := c.Lookup([]byte(key))
	if !ok {
		return 0, ""
	}
	return d.ID, leader
}

func TestCacheLookupAndUpdate(t *testing.T) {
	c := NewCache()
	if id, _ := lookupID(c, "a"); id != 0 {
		t.Fatalf("empty cache: Lookup hit range %d", id)
	}
	if !c.Update(desc(1, "", "", 1), "n1") {
		t.Fatal("first Update refused")
	}
	if id, leader := lookupID(c, "k"); id != 1 || leader != "n1" {
		t.Fatalf("Lookup(k) = r%d at %q", id, leader)
	}

	// The range splits; the node learns of the right half first. The old
	// whole-space entry is evicted, so keys of the left half miss (and get
	// refreshed) rather than route to a range that no longer holds them.
	if !c.Update(desc(2, "m", "", 2), "n2") {
		t.Fatal("Update with the right half refused")
	}
	if id, leader := lookupID(c, "z"); id != 2 || leader != "n2" {
		t.Fatalf("Lookup(z) = r%d at %q, want r2 at n2", id, leader)
	}
	if id, _ := lookupID(c, "a"); id != 0 {
		t.Fatalf("Lookup(a) = r%d, want a miss after the split evicted r1", id)
	}
	// A late reply carrying the pre-split descriptor is stale and dropped.
	if c.Update(desc(1, "", "", 1), "n1") {
		t.Fatal("stale pre-split descriptor accepted")
	}
	if id, _ := lookupID(c, "z"); id != 2 {
		t.Fatalf("stale Update displaced r2: Lookup(z) = r%d", id)
	}
	c.Update(desc(1, "", "m", 2), "n1")
	if id, _ := lookupID(c, "a"); id != 1 {
		t.Fatalf("Lookup(a) = r%d, want r1", id)
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d, want 2", c.Len())
	}

	// Same generation: only the leader hint changes; an empty hint keeps it.
	c.Update(desc(2, "m", "", 2), "n3")
	if _, leader := lookupID(c, "z"); leader != "n3" {
		t.Fatalf("leader after same-generation Update = %q, want n3", leader)
	}
	c.Update(desc(2, "m", "", 2), "")
	if _, leader := lookupID(c, "z"); leader != "n3" {
		t.Fatalf("leader after Update without hint = %q, want n3", leader)
	}
	if !c.SetLeader(2, "n1") {
		t.Fatal("SetLeader of a cached range reported a miss")
	}
	if _, leader := lookupID(c, "z"); leader != "n1" {
		t.Fatalf("leader after SetLeader = %q, want n1", leader)
	}
	if c.SetLeader(9, "n1") {
		t.Fatal("SetLeader of an unknown range reported a hit")
	}

	// A replica change of r2 (higher generation, same bounds) replaces it.
	moved := desc(2, "m", "", 3)
	moved.Replicas = reps("n1", "n4", "n5")
	if !c.Update(moved, "n4") {
		t.Fatal("replica change refused")
	}
	if d, leader, _ := c.Lookup([]byte("z")); !d.Equal(moved) || leader != "n4" {
		t.Fatalf("after replica change: %v at %q", d, leader)
	}

	c.Invalidate(2)
	if id, _ := lookupID(c, "z"); id != 0 {
		t.Fatalf("Lookup after Invalidate = r%d", id)
	}
	c.Invalidate(2) // forgetting twice is harmless
	if id, _ := lookupID(c, "a"); id != 1 || c.Len() != 1 {
		t.Fatalf("Invalidate(2) disturbed r1: Lookup(a) = r%d, Len %d", id, c.Len())
	}
	if c.Update(Descriptor{ID: 5}, "n1") {
		t.Fatal("invalid descriptor accepted")
	}
}

func TestCacheUpdateEvictsEveryOverlap(t *testing.T) {
	c := NewCache()
	for i, b := range []string{"", "c", "f", "j", "p"} {
		end := []string{"c", "f", "j", "p", ""}[i]
		c.Update(desc(uint64(i+1), b, end, 3), "")
	}
	// A descriptor spanning three cached ranges, newer than all of them
	// (possible once merges exist), replaces all three.
	if !c.Update(desc(9, "d", "k", 4), "") {
		t.Fatal("newer spanning descriptor refused")
	}
	for key, want := range map[string]uint64{"a": 1, "c": 0, "d": 9, "j": 9, "k": 0, "p": 5} {
		if id, _ := lookupID(c, key); id != want {
			t.Errorf("Lookup(%q) = r%d, want r%d (0: miss)", key, id, want)
		}
	}
	// One overlapped entry with a higher generation makes it stale.
	if c.Update(desc(10, "a", "z", 3), "") {
		t.Fatal("descriptor older than an overlapped entry accepted")
	}
	// A range whose id is cached elsewhere (its bounds moved) replaces
	// that entry too, so an id is cached once.
	if !c.Update(desc(1, "q", "r", 5), "") {
		t.Fatal("refused")
	}
	if id, _ := lookupID(c, "a"); id != 0 {
		t.Errorf("old entry of r1 still cached: Lookup(a) = r%d", id)
	}
	if id, _ := lookupID(c, "q"); id != 1 {
		t.Errorf("Lookup(q) = r%d, want r1", id)
	}
}

// TestCacheAgreesWithDirectory splits a directory at random and feeds the
// cache the descriptors in a shuffled order, stale ones included: every hit
// must agree with the directory, and once the cache has seen every current
// descriptor every key hits.
func TestCacheAgreesWithDirectory(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := mustDir(t, First(1, reps("n1", "n2", "n3")))
	var history []Descriptor
	for next := uint64(2); next < 100; {
		k := fmt.Appendf(nil, "k%03d", rng.IntN(1000))
		d, _ := dir.Lookup(k)
		l, r, err := dir.Split(d.ID, k, next)
		if err != nil {
			continue
		}
		next++
		history = append(history, l, r)
	}
	c := NewCache()
	rng.Shuffle(len(history), func(i, j int) { history[i], history[j] = history[j], history[i] })
	check := func() {
		for i := range 1000 {
			key := fmt.Appendf(nil, "k%03d", i)
			got, _, ok := c.Lookup(key)
			if !ok {
				continue
			}
			want, _ := dir.Lookup(key)
			// A cached descriptor may be older than the directory's (the
			// cache has not heard of a later split) but must hold the key
			// and never be newer.
			if !got.Contains(key) || got.Generation > want.Generation {
				t.Fatalf("Lookup(%s) = %v; directory has %v", key, got, want)
			}
		}
	}
	for _, d := range history {
		c.Update(d, "")
		check()
	}
	for _, d := range dir.All() {
		c.Update(d, "")
	}
	for i := range 1000 {
		key := fmt.Appendf(nil, "k%03d", i)
		got, _, ok := c.Lookup(key)
		want, _ := dir.Lookup(key)
		if !ok || !got.Equal(want) {
			t.Fatalf("after every current descriptor: Lookup(%s) = %v, %v; want %v", key, got, ok, want)
		}
	}
	if c.Len() != dir.Len() {
		t.Fatalf("cache holds %d ranges, directory %d", c.Len(), dir.Len())
	}
}

// TestCacheConcurrent has readers look up keys while writers split-update,
// set leaders and invalidate (run with -race). Every hit must hold its key.
func TestCacheConcurrent(t *testing.T) {
	c := NewCache()
	c.Update(First(1, reps("n1", "n2", "n3")), "n1")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var failures sync.Map
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Appendf(nil, "k%03d", (i*7+r)%1000)
				if d, _, ok := c.Lookup(key); ok && !d.Contains(key) {
					failures.Store(string(key), d.String())
				}
			}
		}()
	}
	dir := mustDir(t, First(1, reps("n1", "n2", "n3")))
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for next := uint64(2); next < 300; next++ {
			k := fmt.Appendf(nil, "k%03d", (next*389)%1000)
			d, _ := dir.Lookup(k)
			l, r, err := dir.Split(d.ID, k, next)
			if err != nil {
				continue
			}
			c.Update(r, "n2")
			c.SetLeader(r.ID, "n3")
			c.Update(l, "n1")
			if next%10 == 0 {
				c.Invalidate(l.ID)
			}
		}
	}()
	<-writerDone
	close(stop)
	wg.Wait()
	failures.Range(func(k, v any) bool {
		t.Errorf("Lookup(%s) returned %s, which does not hold it", k, v)
		return true
	})
	// Each split's halves were cached, a tenth of the left halves forgotten.
	if c.Len() < dir.Len()/2 {
		t.Fatalf("cache holds %d ranges after splits into %d", c.Len(), dir.Len())
	}
	for _, d := range dir.All() {
		if got, _, ok := c.Lookup(d.Start); ok && !got.Equal(d) {
			t.Errorf("cached %v, directory has %v", got, d)
		}
	}
}
