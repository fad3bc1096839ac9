package chaos

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The bank round: accounts in several ranges, transfers between them as
// cross-range transactions, on a sharded cluster under the nemesis; see
// doc.go and checkBank.
var chaosBankRounds = flag.Int("chaos.bank-rounds", 1, "rounds of TestChaosBank (0: skip it)")

const (
	bankAccounts = 20
	bankInitial  = 100
	bankClients  = 8
	// bankMinRanges is how many ranges the accounts must lie in, at the
	// start and at the end.
	bankMinRanges = 5
	// Each account is followed by bankPads keys of bankPadBytes while the
	// cluster is set up: 240 KB in all against 32 KiB splits puts the
	// accounts in 7 ranges or more. The pads are deleted once the accounts
	// are spread (ranges do not merge), so that scans read 20 keys.
	bankPads     = 3
	bankPadBytes = 4000
	// bankPage is the scans' page size: each scan takes several pages,
	// continued at the first page's revision.
	bankPage = 7
	// bankTimeout bounds a bank request: a committed transaction answers
	// once its locks are resolved, which may take a few seconds on a
	// loaded machine under faults.
	bankTimeout = 5 * time.Second
)

// bankKey is account a's key; bankPadKey the key of its pad p, which sorts
// after it and before the next account.
func bankKey(a int) string       { return fmt.Sprintf("acct/%02d", a) }
func bankPadKey(a, p int) string { return fmt.Sprintf("acct/%02d/pad/%d", a, p) }

// bankAccount is the account of key, if it is one's.
func bankAccount(key string) (int, bool) {
	if len(key) != len("acct/00") || !strings.HasPrefix(key, "acct/") {
		return 0, false
	}
	a, err := strconv.Atoi(key[len("acct/"):])
	if err != nil || a < 0 || a >= bankAccounts || bankKey(a) != key {
		return 0, false
	}
	return a, true
}

// TestChaosBank runs -chaos.bank-rounds rounds of the bank on a five-node
// sharded cluster like TestChaosSharded's, under the nemesis; see doc.go.
func TestChaosBank(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos round skipped in -short mode")
	}
	if *chaosBankRounds == 0 {
		t.Skip("-chaos.bank-rounds=0")
	}
	base := *chaosSeed
	if base == 0 {
		base = time.Now().UnixNano()
	}
	var results []roundResult
	for r := 1; r <= *chaosBankRounds; r++ {
		seed := base + int64(r-1)
		t.Run(fmt.Sprintf("round%d", r), func(t *testing.T) {
			t.Logf("bank round %d of %d: seed %d (reproduce with -run 'TestChaosBank$' -chaos.seed=%d -chaos.bank-rounds=1)", r, *chaosBankRounds, seed, seed)
			res := roundResult{round: r, seed: seed, duration: *chaosDuration, verdict: "not checked", shard: &shardStats{}, bank: &bankStats{}}
			defer func() {
				res.failed = t.Failed()
				results = append(results, res)
			}()
			runBankRound(t, &res)
		})
	}
	printSummary(t, results)
}

// bankStats is what a bank round counted, for the summary.
type bankStats struct {
	rangesStart, rangesEnd int // ranges holding accounts
	committed, failed      int
	unknown, unknownFound  int // outcome unknown; of them, found committed in the versions
	refused                int // connection refused: not sent
	crossRange             int // committed transfers between accounts in two ranges (as at the start)
	scans, earlierScans    int
	gets, versions         int
	problems               int
}

func (s *bankStats) String() string {
	return fmt.Sprintf("account-ranges=%d->%d transfers: committed=%d (cross-range %d) compare-failed=%d unknown=%d (found committed %d) refused=%d; scans=%d at-earlier-revision=%d reads=%d versions=%d problems=%d",
		s.rangesStart, s.rangesEnd, s.committed, s.crossRange, s.failed, s.unknown, s.unknownFound, s.refused,
		s.scans, s.earlierScans, s.gets, s.versions, s.problems)
}

// bank runs the clients and the scanner and records what they saw.
type bank struct {
	c     *cluster
	start time.Time

	mu      sync.Mutex
	h       bankHistory
	refused int
	odd     []string // answers no correct node gives (a 4xx other than 409)
}

func (b *bank) now() int64 { return int64(time.Since(b.start)) }

func (b *bank) unexpected(format string, args ...any) {
	b.mu.Lock()
	b.odd = append(b.odd, fmt.Sprintf(format, args...))
	b.mu.Unlock()
}

// count is the transfers and scans recorded so far, for progress lines.
func (b *bank) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.h.transfers) + len(b.h.scans)
}

// outcomes counts the transfers recorded so far by outcome.
func (b *bank) outcomes() map[transferOutcome]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[transferOutcome]int{}
	for _, tr := range b.h.transfers {
		out[tr.outcome]++
	}
	return out
}

// bankDo sends method path, with a JSON body if body is not "", to nd.
func bankDo(cli *http.Client, nd *node, method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, nd.url(path), strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cli.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// bankKV is an account as GET /key and GET /keys answer it.
type bankKV struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	Version  int64  `json:"version"`
	Revision int64  `json:"revision"`
}

// setupWrite sends method path body through the nodes in turn until one
// answers a status in ok, for up to 20 s.
func (b *bank) setupWrite(cli *http.Client, method, path, body string, ok ...int) (int, []byte, error) {
	deadline := time.Now().Add(20 * time.Second)
	for try := 0; ; try++ {
		code, resp, err := bankDo(cli, b.c.nodes[try%len(b.c.nodes)], method, path, body)
		for _, c := range ok {
			if err == nil && code == c {
				return code, resp, nil
			}
		}
		if time.Now().After(deadline) {
			return code, resp, fmt.Errorf("%s %s: %d %.200s %v", method, path, code, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setup creates the accounts (with create_only, so that a retry cannot make
// a second version) and the pads after them, waits until the accounts lie in
// bankMinRanges ranges or more, deletes the pads, and returns the range of
// each account.
func (b *bank) setup(t *testing.T, s *shardStats) map[int]uint64 {
	t.Helper()
	cli := &http.Client{Timeout: bankTimeout}
	started := time.Now()
	pad := strings.Repeat("p", bankPadBytes)
	for a := range bankAccounts {
		code, resp, err := b.setupWrite(cli, http.MethodPut, "/key/"+bankKey(a)+"?create_only=true", fmt.Sprintf(`{"value":"%d"}`, bankInitial), 200, 409)
		if err != nil {
			t.Fatalf("creating %s: %v", bankKey(a), err)
		}
		if code == 409 && !strings.Contains(string(resp), `"version":1,`) {
			t.Fatalf("creating %s: an earlier try left it at another version: %s", bankKey(a), resp)
		}
		for p := range bankPads {
			if _, _, err := b.setupWrite(cli, http.MethodPut, "/key/"+bankPadKey(a, p), fmt.Sprintf(`{"value":%q}`, pad), 200); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rangeOf map[int]uint64
	for deadline := time.Now().Add(30 * time.Second); ; {
		rs, err := s.ranges()
		if err == nil {
			rangeOf = accountRanges(rs)
			if n := distinct(rangeOf); n >= bankMinRanges {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the accounts lie in %d ranges after 30 s, want at least %d (%v); the ranges:%s", distinct(rangeOf), bankMinRanges, err, s.views())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for a := range bankAccounts {
		for p := range bankPads {
			if _, _, err := b.setupWrite(cli, http.MethodDelete, "/key/"+bankPadKey(a, p), "", 200, 404); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("bank: %d accounts of %d in %d ranges (padded, then the pads deleted) in %v", bankAccounts, bankInitial, distinct(rangeOf),
		time.Since(started).Round(time.Millisecond))
	return rangeOf
}

// accountRanges maps each account to the range of rs holding it.
func accountRanges(rs []placedRange) map[int]uint64 {
	out := map[int]uint64{}
	for a := range bankAccounts {
		for _, r := range rs {
			if r.Start <= bankKey(a) && (r.End == "" || bankKey(a) < r.End) {
				out[a] = r.ID
			}
		}
	}
	return out
}

func distinct(m map[int]uint64) int {
	seen := map[uint64]bool{}
	for _, id := range m {
		seen[id] = true
	}
	return len(seen)
}

// client transfers random amounts between random accounts until stop is
// closed: it reads both accounts (linearizably, through a random node) and
// sends a transaction that compares both versions and puts both balances.
func (b *bank) client(id int, seed int64, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	cli := &http.Client{Timeout: bankTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer cli.CloseIdleConnections()
	for {
		select {
		case <-stop:
			return
		default:
		}
		from, to := rng.Intn(bankAccounts), rng.Intn(bankAccounts-1)
		if to >= from {
			to++
		}
		nd := b.c.nodes[rng.Intn(len(b.c.nodes))]
		var cur [2]bankKV
		ok := true
		for k, a := range []int{from, to} {
			code, resp, err := bankDo(cli, nd, http.MethodGet, "/key/"+bankKey(a), "")
			if err == nil && code == 200 && json.Unmarshal(resp, &cur[k]) == nil {
				continue
			}
			if err == nil && code >= 400 && code < 500 {
				b.unexpected("GET %s on %s: %d %s", bankKey(a), nd.name, code, strings.TrimSpace(string(resp)))
			}
			ok = false
			break
		}
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		bf, err1 := strconv.Atoi(cur[0].Value)
		bt, err2 := strconv.Atoi(cur[1].Value)
		if err1 != nil || err2 != nil {
			b.unexpected("%s=%q and %s=%q: not balances", bankKey(from), cur[0].Value, bankKey(to), cur[1].Value)
			continue
		}
		amount := 1 + rng.Intn(10)
		tr := bankTransfer{client: id, from: from, to: to, vFrom: cur[0].Version, vTo: cur[1].Version, newFrom: bf - amount, newTo: bt + amount}
		body := fmt.Sprintf(`{"compare":[{"key":%q,"target":"version","op":"==","version":%d},{"key":%q,"target":"version","op":"==","version":%d}],`+
			`"success":[{"put":{"key":%q,"value":"%d"}},{"put":{"key":%q,"value":"%d"}}]}`,
			bankKey(from), tr.vFrom, bankKey(to), tr.vTo, bankKey(from), tr.newFrom, bankKey(to), tr.newTo)
		tr.call = b.now()
		code, resp, err := bankDo(cli, nd, http.MethodPost, "/txn", body)
		tr.ret = b.now()
		var res struct {
			Succeeded bool  `json:"succeeded"`
			Revision  int64 `json:"revision"`
		}
		switch {
		case err != nil && errors.Is(err, syscall.ECONNREFUSED):
			b.mu.Lock()
			b.refused++
			b.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			continue
		case err != nil:
			tr.outcome, tr.answer = transferUnknown, err.Error()
		case code == 200:
			if err := json.Unmarshal(resp, &res); err != nil || res.Revision <= 0 {
				b.unexpected("POST /txn on %s: 200 %s", nd.name, resp)
				continue
			}
			tr.outcome, tr.rev = transferCommitted, res.Revision
			if !res.Succeeded {
				tr.outcome = transferCompareFailed
			}
		case code >= 400 && code < 500 && code != 409:
			b.unexpected("POST /txn %s on %s: %d %s", body, nd.name, code, strings.TrimSpace(string(resp)))
			continue
		default:
			tr.outcome, tr.answer = transferUnknown, fmt.Sprintf("%d %s", code, strings.TrimSpace(string(resp)))
		}
		if tr.outcome == transferUnknown {
			tr.ret = math.MaxInt64
		}
		b.mu.Lock()
		b.h.gets = append(b.h.gets, bankRead{from, cur[0].Value, cur[0].Version, cur[0].Revision},
			bankRead{to, cur[1].Value, cur[1].Version, cur[1].Revision})
		b.h.transfers = append(b.h.transfers, tr)
		b.mu.Unlock()
		if tr.outcome == transferUnknown {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// scanner scans the accounts through a random node until stop is closed,
// and after each scan scans again, through another node, at the revision
// of the scan before it.
func (b *bank) scanner(seed int64, stop <-chan struct{}) {
	rng := rand.New(rand.NewSource(seed))
	cli := &http.Client{Timeout: bankTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer cli.CloseIdleConnections()
	var last int64
	for {
		select {
		case <-stop:
			return
		default:
		}
		i := rng.Intn(len(b.c.nodes))
		s, err := b.scan(cli, b.c.nodes[i], 0)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		b.record(s)
		if last > 0 {
			if s, err := b.scan(cli, b.c.nodes[(i+1)%len(b.c.nodes)], last); err == nil {
				b.record(s)
			}
		}
		last = s.at
	}
}

func (b *bank) record(s bankScan) {
	b.mu.Lock()
	b.h.scans = append(b.h.scans, s)
	b.mu.Unlock()
}

// scan pages through the accounts on nd, bankPage keys a page, at rev (0:
// the current revision, which the first page answers). A failed page fails
// the scan; a 4xx is also an unexpected answer.
func (b *bank) scan(cli *http.Client, nd *node, rev int64) (bankScan, error) {
	s := bankScan{node: nd.name, earlier: rev > 0, call: b.now()}
	q := fmt.Sprintf("/keys?prefix=%s&limit=%d", url.QueryEscape("acct/"), bankPage)
	if rev > 0 {
		q += "&revision=" + strconv.FormatInt(rev, 10)
	}
	path := q
	for {
		code, body, err := bankDo(cli, nd, http.MethodGet, path, "")
		if err == nil && code != 200 {
			if code >= 400 && code < 500 {
				b.unexpected("GET %s on %s: %d %s", path, nd.name, code, strings.TrimSpace(string(body)))
			}
			err = fmt.Errorf("%d %.200s", code, body)
		}
		var p struct {
			KVs      []bankKV `json:"kvs"`
			More     bool     `json:"more"`
			Continue string   `json:"continue"`
			Revision int64    `json:"revision"`
		}
		if err == nil {
			err = json.Unmarshal(body, &p)
		}
		if err != nil {
			return s, fmt.Errorf("GET %s on %s: %w", path, nd.name, err)
		}
		if len(s.pageRevs) == 0 {
			s.at = p.Revision
		}
		s.pageRevs = append(s.pageRevs, p.Revision)
		for _, kv := range p.KVs {
			a, ok := bankAccount(kv.Key)
			if !ok {
				b.unexpected("GET %s on %s: key %q is no account (the pads were deleted)", path, nd.name, kv.Key)
				continue
			}
			s.reads = append(s.reads, bankRead{a, kv.Value, kv.Version, kv.Revision})
		}
		if !p.More {
			s.ret = b.now()
			return s, nil
		}
		if p.Continue == "" {
			b.unexpected("GET %s on %s: more, without a continuation token", path, nd.name)
			return s, errors.New("no continuation token")
		}
		path = q + "&continue=" + url.QueryEscape(p.Continue)
	}
}

// readChains reads every version of every account, through the nodes in
// turn, retrying each read for up to 20 s.
func (b *bank) readChains() ([][]bankVersion, error) {
	cli := &http.Client{Timeout: bankTimeout}
	get := func(path string) (bankKV, error) {
		var kv bankKV
		deadline := time.Now().Add(20 * time.Second)
		for try := 0; ; try++ {
			code, body, err := bankDo(cli, b.c.nodes[try%len(b.c.nodes)], http.MethodGet, path, "")
			if err == nil && code != 200 {
				err = fmt.Errorf("%d %.300s", code, body)
			}
			if err == nil {
				if err = json.Unmarshal(body, &kv); err == nil {
					return kv, nil
				}
			}
			if time.Now().After(deadline) {
				return kv, fmt.Errorf("GET %s: %w", path, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	chains := make([][]bankVersion, bankAccounts)
	errs := make([]error, bankAccounts)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Go(func() {
			for a := range work {
				latest, err := get("/key/" + bankKey(a))
				if err != nil {
					errs[a] = err
					continue
				}
				for v := int64(1); v <= latest.Version; v++ {
					kv, err := get(fmt.Sprintf("/key/%s?version=%d", bankKey(a), v))
					if err == nil && kv.Version != v {
						err = fmt.Errorf("GET %s?version=%d answered version %d", bankKey(a), v, kv.Version)
					}
					if err != nil {
						errs[a] = err
						break
					}
					chains[a] = append(chains[a], bankVersion{kv.Value, kv.Revision})
				}
			}
		})
	}
	for a := range bankAccounts {
		work <- a
	}
	close(work)
	wg.Wait()
	return chains, errors.Join(errs...)
}

// save writes the bank's history to path, for a failure's analysis.
func (b *bank) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	trs := append([]bankTransfer(nil), b.h.transfers...)
	sort.Slice(trs, func(i, j int) bool { return trs[i].call < trs[j].call })
	for i := range trs {
		fmt.Fprintf(f, "%s %s\n", &trs[i], trs[i].answer)
	}
	for _, s := range b.h.scans {
		fmt.Fprintf(f, "scan on %s earlier=%v at %d pages %v %.3fs..%.3fs:", s.node, s.earlier, s.at, s.pageRevs, seconds(s.call), seconds(s.ret))
		for _, r := range s.reads {
			fmt.Fprintf(f, " %s=v%d:%s@%d", bankKey(r.acct), r.version, r.value, r.revision)
		}
		fmt.Fprintln(f)
	}
	for a, ch := range b.h.chains {
		fmt.Fprintf(f, "%s:", bankKey(a))
		for i, v := range ch {
			fmt.Fprintf(f, " v%d=%s@%d", i+1, v.value, v.revision)
		}
		fmt.Fprintln(f)
	}
	return nil
}

// runBankRound starts a sharded cluster, sets up the accounts, runs the
// bank clients, the scanner, the filler writers and the nemesis for
// res.duration, heals the cluster and checks what was recorded, filling in
// res as it goes.
func runBankRound(t *testing.T, res *roundResult) {
	seed := res.seed
	logDir, nlog := roundLogs(t, res)
	defer nlog.Close()
	c := startCluster(t, shardedNodes, logDir, seed, shardedFlags()...)
	c.sharded = true
	if _, err := c.leader(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	res.shard.begin(t, c, seed)
	defer res.shard.end()
	st := res.bank
	b := &bank{c: c, h: bankHistory{accounts: bankAccounts, initial: bankInitial}}
	rangeOf := b.setup(t, res.shard)
	st.rangesStart = distinct(rangeOf)

	h := newHistory()
	b.start = h.start
	nem := newNemesis(c, seed, h, nlog)
	nem.progress, nem.opCount = t.Logf, b.count
	var err error
	if nem.kinds, err = roundFaults(true); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range bankClients {
		wg.Go(func() { b.client(i, seed+5000+int64(i), stop) })
	}
	wg.Go(func() { b.scanner(seed+6000, stop) })
	nemStop := make(chan struct{})
	nemErr := make(chan error, 1)
	go func() { nemErr <- nem.run(nemStop) }()
	ticker := time.NewTicker(5 * time.Second)
	end := time.After(res.duration)
wait:
	for {
		select {
		case <-ticker.C:
			o := b.outcomes()
			t.Logf("%7.1fs transfers committed=%d compare-failed=%d unknown=%d, scans+transfers=%d; faults so far: %s", time.Since(h.start).Seconds(),
				o[transferCommitted], o[transferCompareFailed], o[transferUnknown], b.count(), nem.summary())
		case <-end:
			break wait
		}
	}
	ticker.Stop()
	close(nemStop)
	nerr := <-nemErr
	close(stop)
	wg.Wait()
	res.faults = nem.countsByKind()
	if nerr != nil {
		t.Fatalf("nemesis: %v (logs in %s)", nerr, logDir)
	}
	for _, nd := range c.nodes {
		if nd.crashed() {
			t.Errorf("%s exited without being killed; see %s", nd.name, nd.logPath)
		}
	}
	if err := c.heal(); err != nil {
		t.Fatalf("final heal: %v", err)
	}
	if err := c.checkVoters(30 * time.Second); err != nil {
		t.Errorf("after the final heal: %v", err)
	}

	// The final total, on every node; these scans are checked with the
	// others, in real time too.
	cli := &http.Client{Timeout: bankTimeout}
	for _, nd := range c.nodes {
		deadline := time.Now().Add(20 * time.Second)
		for {
			s, err := b.scan(cli, nd, 0)
			if err == nil {
				b.record(s)
				sum := 0
				for _, r := range s.reads {
					n, _ := strconv.Atoi(r.value)
					sum += n
				}
				t.Logf("final scan on %s at revision %d: %d accounts summing to %d", nd.name, s.at, len(s.reads), sum)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("final scan on %s: %v", nd.name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	chains, err := b.readChains()
	if err != nil {
		t.Fatalf("reading the accounts' versions: %v", err)
	}
	b.h.chains = chains

	rs := res.shard.checkFiller(t)
	res.acked, res.lost = res.shard.fillerAcked, res.shard.fillerLost
	st.rangesEnd = distinct(accountRanges(rs))
	if st.rangesEnd < bankMinRanges {
		t.Errorf("the accounts lie in %d ranges at the end, want at least %d", st.rangesEnd, bankMinRanges)
	}
	res.shard.verdict(t)

	v := checkBank(&b.h)
	for _, tr := range b.h.transfers {
		switch tr.outcome {
		case transferCommitted:
			st.committed++
			if rangeOf[tr.from] != rangeOf[tr.to] {
				st.crossRange++
			}
		case transferCompareFailed:
			st.failed++
		default:
			st.unknown++
		}
	}
	for _, s := range b.h.scans {
		if s.earlier {
			st.earlierScans++
		} else {
			st.scans++
		}
	}
	st.unknownFound, st.refused, st.gets, st.versions, st.problems = v.unknownCommitted, b.refused, len(b.h.gets), v.versions, len(v.problems)
	res.ops = len(b.h.transfers) + len(b.h.scans)
	res.acked += st.committed
	res.lost += v.lost
	res.verdict = "Ok"
	if len(v.problems) > 0 {
		res.verdict = "Illegal"
	}
	if err := b.save(filepath.Join(logDir, "bank-history.txt")); err != nil {
		t.Errorf("saving the bank's history: %v", err)
	}
	t.Logf("round summary: seed=%d duration=%v faults: [%s] bank: %s strictly-serializable=%s", seed, res.duration, nem.summary(), st, res.verdict)
	t.Logf("sharded: %s", res.shard)
	for i, s := range b.odd {
		if i == 10 {
			t.Errorf("... and %d more unexpected answers", len(b.odd)-10)
			break
		}
		t.Errorf("unexpected answer: %s", s)
	}
	for i, p := range v.problems {
		if i == 20 {
			t.Errorf("... and %d more problems", len(v.problems)-20)
			break
		}
		t.Errorf("bank: %s", p)
	}
	if len(v.problems) > 0 {
		t.Errorf("the bank's history is not strictly serializable (seed %d); it is in %s", seed, filepath.Join(logDir, "bank-history.txt"))
	}
	if st.committed+st.unknownFound < 50 || st.scans < 5 || st.earlierScans < 5 {
		t.Errorf("bank: too little done to show anything (%s)", st)
	}
}
