package chaos

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The sharded round: five nodes, three replicas of each range, ranges split
// by size while the clients run, and placement moving replicas (for balance,
// and off a node killed for longer than --dead-node-timeout).
var (
	chaosShardedRounds = flag.Int("chaos.sharded-rounds", 1, "rounds of TestChaosSharded (0: skip it)")
	chaosSplitBytes    = flag.String("chaos.split-bytes", "32KiB", "--range-split-bytes of every node in a sharded round")
	chaosFillerRate    = flag.Int("chaos.filler-rate", 25, "filler puts a second (1 KiB each) in a sharded round, which make the ranges split")
)

const (
	shardedNodes = 5
	// deadNodeTimeout is short so that a node killed by kill-long (held
	// longer) has its replicas made again on the other nodes in the round.
	deadNodeTimeout   = 4 * time.Second
	placementInterval = 300 * time.Millisecond
	// fillerPreload is written before the clients start, so that the key
	// space has split a few times by then.
	fillerPreload = 96
	fillerValue   = 1000
)

// shardedFlags are the server flags of every node of a sharded round. Splits
// by load are off: they split at the key that divides the requests, which
// the clients' nine keys would make a key inside a group.
func shardedFlags() []string {
	return []string{"--replicas", "3", "--range-split-bytes", *chaosSplitBytes, "--range-split-qps", "0",
		"--placement-interval", placementInterval.String(), "--dead-node-timeout", deadNodeTimeout.String()}
}

// fillerZones are the prefixes of the filler keys: before the groups, between
// them and after them, so that splits fall in filler key space. A split is
// at the key that halves a range's bytes; the groups' nine keys hold a few
// bytes each against the filler's 1 KiB values, so a split key falls inside
// a group (between g0/a and g0/b, say) only if the half falls within those
// few bytes. shardStats.check verifies at the end that it did not.
var fillerZones = []string{"a/", "g0x/", "g1x/", "g2x/", "z/"}

// sentinel is the key written once, with a one-byte value, just before
// group g's keys: "g0." sorts right before "g0/" and outside its prefix.
// Without it the group's first key present follows a filler key of 1 KiB,
// so a split near the group would often be at that key: at g0/b whenever
// g0/a is deleted, which cuts the group. With it, a split key inside a
// group needs the half of the range's bytes to fall within the few bytes of
// the sentinel and the group's keys.
func sentinel(g int) string { return fmt.Sprintf("g%d.", g) }

// TestChaosSharded runs -chaos.sharded-rounds rounds on a five-node cluster
// that splits into ranges and moves replicas while the clients and the
// nemesis run; see doc.go. A round fails, besides the checks of TestChaos,
// if no range split or no replica moved during it.
func TestChaosSharded(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos round skipped in -short mode")
	}
	if *chaosShardedRounds == 0 {
		t.Skip("-chaos.sharded-rounds=0")
	}
	base := *chaosSeed
	if base == 0 {
		base = time.Now().UnixNano()
	}
	var results []roundResult
	for r := 1; r <= *chaosShardedRounds; r++ {
		seed := base + int64(r-1)
		t.Run(fmt.Sprintf("round%d", r), func(t *testing.T) {
			t.Logf("sharded round %d of %d: seed %d (reproduce with -run TestChaosSharded -chaos.seed=%d -chaos.sharded-rounds=1)", r, *chaosShardedRounds, seed, seed)
			res := roundResult{round: r, seed: seed, duration: *chaosDuration, verdict: "not checked", shard: &shardStats{}}
			defer func() {
				res.failed = t.Failed()
				results = append(results, res)
			}()
			runRound(t, &res, nil)
		})
	}
	printSummary(t, results)
}

// shardStats is what a sharded round counts, and the machinery that counts
// it: the filler writers and a poller of GET /cluster/ranges.
type shardStats struct {
	rangesStart, rangesEnd  int
	splits                  int // "range split by size" lines in the nodes' logs
	learners, promotes      int // placement changes add_learner and promote of data ranges
	removes                 int
	leaderChanges           int // of any range, as the poller saw them
	polls                   int
	straddled               []string // groups that ended in two ranges, left out of the checks
	fillerAcked, fillerLost int
	counted                 bool // the logs and ranges at the end were counted

	c      *cluster
	filler *filler
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	leader map[uint64]string // range -> leader last seen
}

// begin writes the filler preload, then starts the filler writers and the
// poller; end stops them.
func (s *shardStats) begin(t *testing.T, c *cluster, seed int64) {
	t.Helper()
	s.c, s.stop, s.leader = c, make(chan struct{}), map[uint64]string{}
	c.views = s.views
	if rs, err := s.ranges(); err == nil {
		s.rangesStart = len(rs)
	} else {
		t.Fatalf("GET /cluster/ranges: %v", err)
	}
	s.filler = newFiller(c)
	started := time.Now()
	rng := rand.New(rand.NewSource(seed + 1999))
	for g := 0; g < numGroups; g++ {
		// The same value again is harmless if an earlier try was applied.
		for try := 0; !s.filler.write(rng, sentinel(g), "s", true); try++ {
			if try == 5 {
				t.Fatalf("could not write the sentinel key %s", sentinel(g))
			}
		}
	}
	var pre sync.WaitGroup
	for w := 0; w < 4; w++ {
		pre.Add(1)
		go func() {
			defer pre.Done()
			rng := rand.New(rand.NewSource(seed + 2000 + int64(w)))
			for i := 0; i < fillerPreload/4; i++ {
				s.filler.put(rng, w, true)
			}
		}()
	}
	pre.Wait()
	rs, err := s.ranges()
	if err != nil {
		t.Fatalf("GET /cluster/ranges: %v", err)
	}
	t.Logf("filler preload: %d puts of %d bytes in %v; %d ranges (%d at the start)", fillerPreload, fillerValue,
		time.Since(started).Round(time.Millisecond), len(rs), s.rangesStart)
	for w := 0; w < 2; w++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			rng := rand.New(rand.NewSource(seed + 3000 + int64(w)))
			pause := time.Duration(2 * int(time.Second) / max(1, *chaosFillerRate))
			for {
				select {
				case <-s.stop:
					return
				case <-time.After(pause):
				}
				s.filler.put(rng, 4+w, false)
			}
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			s.poll()
		}
	}()
}

// end stops the filler writers and the poller and, unless check ran (the
// round failed before it), counts what the logs and the ranges show, for
// the summary.
func (s *shardStats) end() {
	if s.stop == nil {
		return
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
	if !s.counted {
		s.counted = true
		s.countLogs()
		if rs, err := s.ranges(); err == nil {
			s.rangesEnd = len(rs)
		}
	}
}

// views lists the ranges as each running node's GET /cluster/ranges shows
// them, for a failure message.
func (s *shardStats) views() string {
	var b strings.Builder
	cli := &http.Client{Timeout: 2 * time.Second}
	for _, nd := range s.c.nodes {
		fmt.Fprintf(&b, "\n  %s: ", nd.name)
		resp, err := cli.Get(nd.url("/cluster/ranges"))
		if err != nil {
			fmt.Fprintf(&b, "%v", err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rb struct {
			Ranges []placedRange `json:"ranges"`
		}
		if err := json.Unmarshal(body, &rb); err != nil {
			fmt.Fprintf(&b, "%d %.300s", resp.StatusCode, body)
			continue
		}
		sort.Slice(rb.Ranges, func(i, j int) bool { return rb.Ranges[i].Start < rb.Ranges[j].Start })
		for _, r := range rb.Ranges {
			fmt.Fprintf(&b, "%d[%q,%q)%v/%v@%s ", r.ID, r.Start, r.End, r.Replicas, r.Learners, r.Leader)
		}
	}
	return b.String()
}

// placedRange is one range of GET /cluster/ranges.
type placedRange struct {
	ID       uint64   `json:"id"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"`
	Learners []string `json:"learners"`
}

// ranges asks the running nodes in turn for GET /cluster/ranges.
func (s *shardStats) ranges() ([]placedRange, error) {
	cli := &http.Client{Timeout: 2 * time.Second}
	var errs []error
	for _, nd := range s.c.nodes {
		if nd.pid() == 0 {
			continue
		}
		nd.mu.Lock()
		paused := nd.paused
		nd.mu.Unlock()
		if paused {
			continue
		}
		resp, err := cli.Get(nd.url("/cluster/ranges"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body struct {
			Ranges []placedRange `json:"ranges"`
		}
		if err := json.Unmarshal(b, &body); resp.StatusCode != 200 || err != nil {
			errs = append(errs, fmt.Errorf("%s: %d %.200s %v", nd.name, resp.StatusCode, b, err))
			continue
		}
		sort.Slice(body.Ranges, func(i, j int) bool { return body.Ranges[i].Start < body.Ranges[j].Start })
		return body.Ranges, nil
	}
	return nil, fmt.Errorf("no node answered: %v", errors.Join(errs...))
}

// poll counts leader changes: a range whose leader differs from the one
// seen at the last poll (neither unknown). Polls are 250 ms apart, so this
// is a lower bound.
func (s *shardStats) poll() {
	rs, err := s.ranges()
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.polls++
	for _, r := range rs {
		if r.Leader == "" {
			continue
		}
		if prev := s.leader[r.ID]; prev != "" && prev != r.Leader {
			s.leaderChanges++
		}
		s.leader[r.ID] = r.Leader
	}
}

var (
	splitLine     = regexp.MustCompile(`msg="range split by size"`)
	placementLine = regexp.MustCompile(`msg="placement change" range=(\d+) op=(\w+)`)
)

// countLogs counts splits and placement changes in every node's log.
func (s *shardStats) countLogs() {
	s.splits, s.learners, s.promotes, s.removes = 0, 0, 0, 0
	for _, nd := range s.c.nodes {
		b, err := os.ReadFile(nd.logPath)
		if err != nil {
			continue
		}
		s.splits += len(splitLine.FindAll(b, -1))
		for _, m := range placementLine.FindAllSubmatch(b, -1) {
			if string(m[1]) == "1" {
				continue // the meta range
			}
			switch string(m[2]) {
			case "add_learner":
				s.learners++
			case "promote":
				s.promotes++
			case "remove":
				s.removes++
			}
		}
	}
}

// straddling returns, for each group whose keys are not all in one range of
// rs, a description of where they are.
func straddling(rs []placedRange) map[int]string {
	rangeOf := func(key string) placedRange {
		for _, r := range rs {
			if r.Start <= key && (r.End == "" || key < r.End) {
				return r
			}
		}
		return placedRange{}
	}
	out := map[int]string{}
	for g := 0; g < numGroups; g++ {
		var where []string
		ids := map[uint64]bool{}
		for k := 0; k < groupSize; k++ {
			r := rangeOf(keyName(g, k))
			ids[r.ID] = true
			where = append(where, fmt.Sprintf("%s in range %d [%q, %q)", keyName(g, k), r.ID, r.Start, r.End))
		}
		if len(ids) > 1 {
			out[g] = strings.Join(where, ", ")
		}
	}
	return out
}

// check runs once the cluster is healed and the clients stopped: it reads
// every filler key back on every node, lists the ranges, counts what the
// nodes logged, and returns the groups that ended in two ranges (their
// operations are left out of the checks; see doc.go).
func (s *shardStats) check(t *testing.T) map[int]bool {
	t.Helper()
	rs := s.checkFiller(t)
	drop := map[int]bool{}
	for g, where := range straddling(rs) {
		drop[g] = true
		s.straddled = append(s.straddled, groupPrefix(g))
		t.Logf("group %s ended in two ranges, so its operations are left out of the checks: %s", groupPrefix(g), where)
	}
	sort.Strings(s.straddled)
	return drop
}

// checkFiller stops the filler writers and the poller, reads every filler
// key back on every node, counts what the nodes logged, and returns the
// ranges at the end (logged).
func (s *shardStats) checkFiller(t *testing.T) []placedRange {
	t.Helper()
	s.end()
	acked, lost, err := s.filler.check()
	if err != nil {
		t.Errorf("filler: %v", err)
	}
	s.fillerAcked, s.fillerLost = acked, len(lost)
	for i, l := range lost {
		if i == 10 {
			t.Errorf("... and %d more acknowledged filler puts lost", len(lost)-10)
			break
		}
		t.Errorf("acknowledged filler put lost: %s", l)
	}
	rs, err := s.ranges()
	if err != nil {
		t.Errorf("GET /cluster/ranges at the end: %v", err)
	}
	s.rangesEnd = len(rs)
	s.countLogs()
	s.counted = true
	var desc []string
	for _, r := range rs {
		desc = append(desc, fmt.Sprintf("%d[%q,%q) %v leader %s", r.ID, r.Start, r.End, r.Replicas, r.Leader))
	}
	t.Logf("ranges at the end: %s", strings.Join(desc, "; "))
	return rs
}

// verdict fails the round if it did not exercise what it is for.
func (s *shardStats) verdict(t *testing.T) {
	t.Helper()
	if s.splits == 0 {
		t.Errorf("sharded round: no range split during the round (ranges %d -> %d): it did not test what it is for", s.rangesStart, s.rangesEnd)
	}
	if s.promotes == 0 {
		t.Errorf("sharded round: no replica moved during the round (placement changes: add_learner=%d promote=%d remove=%d): it did not test what it is for",
			s.learners, s.promotes, s.removes)
	}
	if len(s.straddled) == numGroups {
		t.Errorf("sharded round: every group ended in two ranges; nothing was checked for linearizability")
	}
}

func (s *shardStats) String() string {
	straddled := "none"
	if len(s.straddled) > 0 {
		straddled = strings.Join(s.straddled, ",")
	}
	return fmt.Sprintf("ranges=%d->%d splits=%d moves=%d (add_learner=%d promote=%d remove=%d) leader-changes=%d (in %d polls) filler-lost=%d/%d groups-in-two-ranges=%s",
		s.rangesStart, s.rangesEnd, s.splits, s.promotes, s.learners, s.promotes, s.removes, s.leaderChanges, s.polls, s.fillerLost, s.fillerAcked, straddled)
}

// filler writes keys of fillerValue bytes under fillerZones, each key once,
// so that ranges grow past --range-split-bytes and split; at the end every
// acknowledged one must be on every node.
type filler struct {
	c   *cluster
	cli *http.Client

	mu    sync.Mutex
	sent  map[string]bool // key -> acknowledged (false: outcome unknown)
	count int
}

func newFiller(c *cluster) *filler {
	return &filler{c: c, sent: map[string]bool{},
		cli: &http.Client{Timeout: clientTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
}

// fillerValueOf is the value of filler key k: the key, padded.
func fillerValueOf(k string) string {
	return k + strings.Repeat(".", max(0, fillerValue-len(k)))
}

// put writes one new filler key through a random node, as writer w. With
// retry, a put that was refused for certain is tried again (the preload must
// land).
func (f *filler) put(rng *rand.Rand, w int, retry bool) {
	f.mu.Lock()
	f.count++
	key := fmt.Sprintf("%s%08x-%d-%d", fillerZones[rng.Intn(len(fillerZones))], rng.Uint32(), w, f.count)
	f.mu.Unlock()
	f.write(rng, key, fillerValueOf(key), retry)
}

// write puts key=value through a random node and says whether it was
// acknowledged; with retry it tries again, up to 20 times, while refused
// for certain. Filler keys are recorded for check.
func (f *filler) write(rng *rand.Rand, key, value string, retry bool) bool {
	for attempt := 0; ; attempt++ {
		nd := f.c.nodes[rng.Intn(len(f.c.nodes))]
		req, err := http.NewRequest(http.MethodPut, nd.url("/key/"+key), strings.NewReader(fmt.Sprintf(`{"value":%q}`, value)))
		if err != nil {
			panic(err)
		}
		resp, err := f.cli.Do(req)
		outcome := "unknown"
		if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
			outcome = "no"
		} else if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				outcome = "yes"
			case resp.StatusCode == 503 && !strings.Contains(string(b), "may still have been applied"):
				outcome = "no"
			}
		}
		if outcome != "no" {
			if value == fillerValueOf(key) {
				f.mu.Lock()
				f.sent[key] = outcome == "yes"
				f.mu.Unlock()
			}
			return outcome == "yes"
		}
		if !retry || attempt == 20 {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check scans every filler zone linearizably on every node: every
// acknowledged key must be there, with its value, and every key there must
// be one a filler put sent. It returns how many puts were acknowledged and
// the lost ones, described.
func (f *filler) check() (acked int, lost []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ok := range f.sent {
		if ok {
			acked++
		}
	}
	for _, nd := range f.c.nodes {
		found := map[string]string{}
		for _, zone := range fillerZones {
			if err := f.scan(nd, zone, found); err != nil {
				return acked, lost, fmt.Errorf("scan of %s on %s: %w", zone, nd.name, err)
			}
		}
		var missing []string
		for k, ok := range f.sent {
			if ok && found[k] != fillerValueOf(k) {
				missing = append(missing, k)
			}
		}
		sort.Strings(missing)
		for _, k := range missing {
			lost = append(lost, fmt.Sprintf("%s has no %s (or another value)", nd.name, k))
		}
		for k := range found {
			if _, ok := f.sent[k]; !ok {
				lost = append(lost, fmt.Sprintf("%s has %s, which no filler put sent", nd.name, k))
			}
		}
	}
	return acked, lost, nil
}

// scan pages through prefix on nd into found, retrying a page for up to 20 s.
func (f *filler) scan(nd *node, prefix string, found map[string]string) error {
	token := ""
	for {
		path := "/keys?limit=1000&prefix=" + url.QueryEscape(prefix)
		if token != "" {
			path += "&continue=" + url.QueryEscape(token)
		}
		var page struct {
			KVs []struct {
				Key   string `json:"key"`
				Value string `json:"value"`
			} `json:"kvs"`
			More     bool   `json:"more"`
			Continue string `json:"continue"`
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := f.cli.Get(nd.url(path))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					err = json.Unmarshal(b, &page)
				} else {
					err = fmt.Errorf("%d %.200s", resp.StatusCode, b)
				}
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, kv := range page.KVs {
			found[kv.Key] = kv.Value
		}
		if !page.More {
			return nil
		}
		if page.Continue == "" {
			return fmt.Errorf("more keys without a continuation token")
		}
		token = page.Continue
	}
}
