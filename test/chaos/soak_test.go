package chaos

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	soakDuration = flag.Duration("chaos.soak", 0, "run TestSoak for this long (0: skip it)")
	soakSample   = flag.Duration("chaos.soak-sample", 5*time.Second, "how often TestSoak samples each node's RSS and open files")
	soakCheckOps = flag.Int("chaos.soak-check-ops", 100000, "TestSoak checks linearizability only of a history of at most this many operations (porcupine's verbose check of a 30-minute history runs out of memory)")
	soakCSV      = flag.String("chaos.soak-csv", "", "TestSoakCSV judges this resources.csv of an earlier soak")
)

// soakFaults weighs the faults of a soak: those that restart a process (kill,
// kill-leader, member-replace) come a third as often as the others, so that
// processes live long enough for a leak to show in their own series.
var soakFaults = "kill,kill-leader,member-replace," + strings.Repeat("pause,isolate-leader,partition,one-way,delay,lossy,snapshot-partition,transfer,", 3)

// Growth limits of a soak, comparing the last window with the first one after
// warm-up (see soakVerdict).
const (
	maxRSSGrowth = 1.5
	maxFDGrowth  = 15
)

// TestSoak runs one long round of mixed faults (-chaos.soak, e.g. 30m) while
// sampling every node's resident memory (VmRSS in /proc/<pid>/status) and open
// file descriptors (/proc/<pid>/fd) every -chaos.soak-sample. The samples go
// to resources.csv in the round's log directory, which is kept. Besides the
// checks of every round (linearizability, acknowledged writes lost, voters),
// the soak fails if memory or descriptors grew without bound:
//
//   - the first minutes (a tenth of the run, at most 3 min) are warm-up and not
//     judged; the rest gives a first and a last window, each a third of it and
//     at most 10 min;
//   - per slot (n1..n3, every process that ran in it, since faults restart and
//     replace members), the largest RSS in the last window must be at most 1.5x
//     the largest in the first window, and the largest descriptor count at most
//     15 above the first window's (client and peer connections come and go);
//   - the same holds for every process that lived through both windows.
func TestSoak(t *testing.T) {
	if *soakDuration == 0 {
		t.Skip("soak runs only with -chaos.soak=DURATION (make soak)")
	}
	if *chaosFaults == "" {
		*chaosFaults = strings.TrimSuffix(soakFaults, ",")
		defer func() { *chaosFaults = "" }()
	}
	seed := *chaosSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("soak: seed %d, %v, sampling every %v (reproduce the schedule with -chaos.seed=%d)", seed, *soakDuration, *soakSample, seed)
	res := roundResult{round: 1, seed: seed, duration: *soakDuration, verdict: "not checked", keep: true, maxCheckOps: *soakCheckOps}
	var s *sampler
	runRound(t, &res, func(c *cluster, logDir string) func() {
		var err error
		s, err = startSampler(c, filepath.Join(logDir, "resources.csv"), *soakSample)
		if err != nil {
			t.Fatal(err)
		}
		return s.stop
	})
	res.failed = t.Failed()
	printSummary(t, []roundResult{res})
	if s == nil {
		return
	}
	report, problems := soakVerdict(s.samples(), *soakDuration)
	t.Logf("soak resources (samples in %s):\n%s", s.path, report)
	for _, p := range problems {
		t.Errorf("soak: %s", p)
	}
}

// TestSoakCSV judges the samples of an earlier soak again, for example of one
// whose process was stopped before it printed its verdict:
//
//	go test ./test/chaos -run TestSoakCSV -v -chaos.soak-csv=/tmp/distkv-chaos-.../resources.csv
func TestSoakCSV(t *testing.T) {
	if *soakCSV == "" {
		t.Skip("needs -chaos.soak-csv=PATH")
	}
	samples, err := readSamples(*soakCSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) == 0 {
		t.Fatalf("%s: no samples", *soakCSV)
	}
	report, problems := soakVerdict(samples, samples[len(samples)-1].at)
	t.Logf("soak resources (samples in %s):\n%s", *soakCSV, report)
	for _, p := range problems {
		t.Errorf("soak: %s", p)
	}
}

// readSamples parses a resources.csv written by the sampler.
func readSamples(path string) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []sample
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			continue // header
		}
		fs := strings.Split(sc.Text(), ",")
		if len(fs) != 6 {
			return nil, fmt.Errorf("%s:%d: %d fields, want 6", path, line, len(fs))
		}
		secs, err1 := strconv.ParseFloat(fs[0], 64)
		pid, err2 := strconv.Atoi(fs[3])
		rss, err3 := strconv.ParseInt(fs[4], 10, 64)
		fds, err4 := strconv.Atoi(fs[5])
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
		}
		out = append(out, sample{at: time.Duration(secs * float64(time.Second)), slot: fs[1], member: fs[2], pid: pid, rssKB: rss, fds: fds})
	}
	return out, sc.Err()
}

// sample is one reading of one process.
type sample struct {
	at     time.Duration // since the sampler started
	slot   string
	member string
	pid    int
	rssKB  int64
	fds    int
}

// sampler reads every running node's RSS and descriptor count periodically
// and appends them to a CSV file.
type sampler struct {
	path  string
	c     *cluster
	start time.Time
	done  chan struct{}
	wg    sync.WaitGroup

	mu  sync.Mutex
	all []sample
}

func startSampler(c *cluster, path string, every time.Duration) (*sampler, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(f, "elapsed_s,slot,member,pid,rss_kb,fds")
	s := &sampler{path: path, c: c, start: time.Now(), done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer f.Close()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for _, nd := range c.nodes {
				pid := nd.pid()
				if pid == 0 {
					continue
				}
				rss, err1 := readRSS(pid)
				fds, err2 := countFDs(pid)
				if err1 != nil || err2 != nil {
					continue // exited between pid() and the reads
				}
				sm := sample{at: time.Since(s.start), slot: nd.name, member: nd.memberName(), pid: pid, rssKB: rss, fds: fds}
				fmt.Fprintf(f, "%.1f,%s,%s,%d,%d,%d\n", sm.at.Seconds(), sm.slot, sm.member, sm.pid, sm.rssKB, sm.fds)
				s.mu.Lock()
				s.all = append(s.all, sm)
				s.mu.Unlock()
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	return s, nil
}

func (s *sampler) stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.wg.Wait()
}

func (s *sampler) samples() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.all...)
}

// readRSS returns VmRSS of process pid in kB.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// countFDs returns the number of open file descriptors of process pid.
func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// soakWindows returns the warm-up and the length of the first and last
// windows of a run of d, as TestSoak documents them.
func soakWindows(d time.Duration) (warmup, window time.Duration) {
	warmup = min(d/10, 3*time.Minute)
	window = min((d-warmup)/3, 10*time.Minute)
	return warmup, window
}

// series is the samples of one slot or one process, in the two windows.
type series struct {
	name                string
	first, last, max    sample
	n                   int
	rssFirstW, rssLastW int64 // largest RSS in the first and last window
	fdFirstW, fdLastW   int
	inFirstW, inLastW   bool
	firstSeen, lastSeen time.Duration
	processes           map[int]bool
	maxFDs              int
}

func (s *series) add(sm sample, warmup, window, end time.Duration) {
	if s.n == 0 {
		s.first, s.firstSeen, s.processes = sm, sm.at, map[int]bool{}
	}
	s.n++
	s.last, s.lastSeen = sm, sm.at
	s.processes[sm.pid] = true
	if sm.rssKB > s.max.rssKB {
		s.max = sm
	}
	s.maxFDs = max(s.maxFDs, sm.fds)
	if sm.at >= warmup && sm.at < warmup+window {
		s.inFirstW = true
		s.rssFirstW = max(s.rssFirstW, sm.rssKB)
		s.fdFirstW = max(s.fdFirstW, sm.fds)
	}
	if sm.at >= end-window {
		s.inLastW = true
		s.rssLastW = max(s.rssLastW, sm.rssKB)
		s.fdLastW = max(s.fdLastW, sm.fds)
	}
}

// check returns what is wrong with s, if anything.
func (s *series) check() []string {
	var out []string
	if float64(s.rssLastW) > maxRSSGrowth*float64(s.rssFirstW) {
		out = append(out, fmt.Sprintf("%s: RSS grew from %s (first window max) to %s (last window max), more than %.1fx",
			s.name, mb(s.rssFirstW), mb(s.rssLastW), maxRSSGrowth))
	}
	if s.fdLastW > s.fdFirstW+maxFDGrowth {
		out = append(out, fmt.Sprintf("%s: open files grew from %d (first window max) to %d (last window max), more than %d more",
			s.name, s.fdFirstW, s.fdLastW, maxFDGrowth))
	}
	return out
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

// soakVerdict reports first/last/max per slot and judges growth per slot and
// per process that lived through both windows, for a run of d.
func soakVerdict(samples []sample, d time.Duration) (string, []string) {
	if len(samples) == 0 {
		return "", []string{"no samples"}
	}
	end := samples[len(samples)-1].at
	warmup, window := soakWindows(min(d, end))
	slots := map[string]*series{}
	procs := map[int]*series{}
	for _, sm := range samples {
		if slots[sm.slot] == nil {
			slots[sm.slot] = &series{name: sm.slot}
		}
		slots[sm.slot].add(sm, warmup, window, end)
		if procs[sm.pid] == nil {
			procs[sm.pid] = &series{name: fmt.Sprintf("%s pid %d (%s)", sm.slot, sm.pid, sm.member)}
		}
		procs[sm.pid].add(sm, warmup, window, end)
	}
	var b strings.Builder
	var problems []string
	fmt.Fprintf(&b, "  %d samples over %v; warm-up %v, windows of %v: first [%v, %v), last [%v, %v]\n",
		len(samples), end.Round(time.Second), warmup, window.Round(time.Second),
		warmup, (warmup + window).Round(time.Second), (end - window).Round(time.Second), end.Round(time.Second))
	names := make([]string, 0, len(slots))
	for n := range slots {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := slots[n]
		fmt.Fprintf(&b, "  %s: %d processes; RSS first %s, last %s, max %s; first-window max %s, last-window max %s (%.2fx); fds first %d, last %d, max %d; first-window max %d, last-window max %d\n",
			n, len(s.processes), mb(s.first.rssKB), mb(s.last.rssKB), mb(s.max.rssKB), mb(s.rssFirstW), mb(s.rssLastW),
			float64(s.rssLastW)/float64(max(s.rssFirstW, 1)), s.first.fds, s.last.fds, s.maxFDs, s.fdFirstW, s.fdLastW)
		if !s.inFirstW || !s.inLastW {
			problems = append(problems, fmt.Sprintf("%s: no samples in the first or the last window; cannot judge", n))
			continue
		}
		problems = append(problems, s.check()...)
	}
	var longest *series
	judged := 0
	for _, p := range procs {
		if longest == nil || p.lastSeen-p.firstSeen > longest.lastSeen-longest.firstSeen {
			longest = p
		}
		if p.inFirstW && p.inLastW {
			judged++
			problems = append(problems, p.check()...)
		}
	}
	fmt.Fprintf(&b, "  longest-lived process: %s, %v: RSS %s -> %s (max %s), fds %d -> %d; %d processes lived through both windows\n",
		longest.name, (longest.lastSeen - longest.firstSeen).Round(time.Second), mb(longest.first.rssKB), mb(longest.last.rssKB),
		mb(longest.max.rssKB), longest.first.fds, longest.last.fds, judged)
	return b.String(), problems
}

// TestSoakVerdict checks the growth criterion on made-up samples: flat or
// restarted series pass, memory or descriptors that keep growing fail.
func TestSoakVerdict(t *testing.T) {
	const d = 30 * time.Minute
	// gen samples slot n1 every 10s; rss and fds say what process pid has
	// at time at.
	gen := func(pid func(at time.Duration) int, rss func(at time.Duration) int64, fds func(at time.Duration) int) []sample {
		var out []sample
		for at := time.Duration(0); at <= d; at += 10 * time.Second {
			out = append(out, sample{at: at, slot: "n1", member: "n1", pid: pid(at), rssKB: rss(at), fds: fds(at)})
		}
		return out
	}
	one := func(time.Duration) int { return 100 }
	flatRSS := func(time.Duration) int64 { return 40 << 10 }
	flatFDs := func(time.Duration) int { return 30 }
	for _, tc := range []struct {
		name    string
		samples []sample
		fail    string // substring of the expected problem; "" passes
	}{
		{"flat", gen(one, flatRSS, flatFDs), ""},
		{"warm-up growth then flat", gen(one, func(at time.Duration) int64 {
			return int64(min(at, 2*time.Minute)/time.Second) * 1 << 10
		}, flatFDs), ""},
		{"rss leak", gen(one, func(at time.Duration) int64 { return 40<<10 + int64(at/time.Second)*64 }, flatFDs), "RSS grew"},
		{"fd leak", gen(one, flatRSS, func(at time.Duration) int { return 30 + int(at/time.Minute) }), "open files grew"},
		{"leak hidden in one process", gen(func(at time.Duration) int {
			if at < 10*time.Minute {
				return 100
			}
			return 200
		}, func(at time.Duration) int64 {
			if at < 10*time.Minute {
				return 40 << 10
			}
			return 20<<10 + int64(at/time.Second)*32
		}, flatFDs), "RSS grew"},
		{"restarts, each small", gen(func(at time.Duration) int { return int(at / time.Minute) }, func(at time.Duration) int64 {
			return 30<<10 + int64(at%time.Minute/time.Second)*100
		}, flatFDs), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			report, problems := soakVerdict(tc.samples, d)
			got := strings.Join(problems, "; ")
			if tc.fail == "" && got != "" || tc.fail != "" && !strings.Contains(got, tc.fail) {
				t.Fatalf("problems %q, want %q\n%s", got, tc.fail, report)
			}
		})
	}
}
