package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkv/distkv/client"
)

// bankTransfer is one transfer a client ran: from and to compared at their
// versions, written with their new balances.
type bankTransfer struct {
	from, to       int
	vFrom, vTo     int64
	newFrom, newTo int
	start, end     time.Time
	// outcome: "ok" (committed at rev), "failed" (a compare failed) or
	// "unknown" (no answer: it may have committed).
	outcome string
	rev     int64
}

// TestBankAcrossRanges: 20 accounts in at least 5 ranges (16 KiB splits,
// padding between the accounts), 8 clients transferring random amounts
// with /txn (compare both versions, put both balances) for 25 s while n3
// and then n2 are killed -9 and started again. Meanwhile every scan of the
// accounts, paged across ranges at one revision, and every scan at an
// earlier revision sums to the initial total. Afterwards the total is the
// initial one, and the history is strictly serializable: each account's
// versions form a chain in which every version after the first was written
// by one transfer that compared the version before it, at one revision for
// both of its accounts; every acknowledged transfer is in the chains; the
// revisions grow along each chain and follow real time between
// acknowledged transfers.
func TestBankAcrossRanges(t *testing.T) {
	c := startCluster(t, 3, "--range-split-bytes", "16KiB")
	c.leader(10 * time.Second)
	const accounts, initial = 20, 100
	acct := func(i int) string { return fmt.Sprintf("acct/%02d", i) }
	hc := &http.Client{Timeout: 8 * time.Second}
	call := func(node, method, path, body string) (int, string, error) {
		req, err := http.NewRequest(method, c.url(node, path), strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	put := func(key, value string) {
		t.Helper()
		for attempt := 0; ; attempt++ {
			code, body, err := call(c.names[attempt%3], "PUT", "/key/"+key, `{"value":"`+value+`"}`)
			if err == nil && code == 200 {
				return
			}
			if attempt == 100 {
				t.Fatalf("PUT %s: %d %s %v", key, code, body, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	pad := strings.Repeat("p", 4000)
	for i := range accounts {
		put(acct(i), strconv.Itoa(initial))
		for p := range 6 {
			put(fmt.Sprintf("%s/pad/%d", acct(i), p), pad)
		}
	}
	// The accounts' ranges.
	var spread int
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, body, _ := call("n1", "GET", "/cluster/ranges", "")
		var rb struct {
			Ranges []struct {
				Start string `json:"start"`
				End   string `json:"end"`
			} `json:"ranges"`
		}
		json.Unmarshal([]byte(body), &rb)
		holding := map[string]bool{}
		for i := range accounts {
			for _, r := range rb.Ranges {
				if r.Start <= acct(i) && (r.End == "" || acct(i) < r.End) {
					holding[r.Start] = true
				}
			}
		}
		if spread = len(holding); spread >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the accounts lie in %d ranges, want at least 5", spread)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("20 accounts in %d ranges", spread)

	// A watcher of the accounts' prefix, from the revision every account
	// was at 100, through n1, then the others as nodes die.
	_, body, _ := call("n1", "GET", "/keys?prefix=acct/&limit=1", "")
	var first struct {
		Revision int64 `json:"revision"`
	}
	if json.Unmarshal([]byte(body), &first); first.Revision == 0 {
		t.Fatalf("a scan without a revision: %s", body)
	}
	wc, err := client.New(client.Config{Endpoints: []string{c.http["n1"], c.http["n2"], c.http["n3"]}, Timeout: 3 * time.Second, RetryFor: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var watchMu sync.Mutex
	var events []client.Event
	var watched int64 // every change up to it delivered
	watchDone := make(chan error, 1)
	go func() {
		for ev, err := range wc.Watch(watchCtx, client.Watch{Prefix: "acct/", StartRevision: first.Revision + 1}) {
			if err != nil {
				watchDone <- err
				return
			}
			watchMu.Lock()
			if ev.Type != "PROGRESS" && strings.Count(ev.Key, "/") == 1 {
				events = append(events, ev)
			}
			watched = max(watched, ev.Revision)
			watchMu.Unlock()
		}
		watchDone <- nil
	}()

	type account struct {
		Key      string `json:"key"`
		Value    string `json:"value"`
		Version  int64  `json:"version"`
		Revision int64  `json:"revision"`
	}
	// scan reads the accounts, 7 pairs a page, at rev (0: now); it returns
	// the sum, the number of accounts, and the revision read at.
	scan := func(node string, rev int64) (sum, n int, at int64, err error) {
		q := "/keys?prefix=acct/&limit=7"
		if rev > 0 {
			q += "&revision=" + strconv.FormatInt(rev, 10)
		}
		path := q
		for {
			code, body, err := call(node, "GET", path, "")
			if err != nil || code != 200 {
				return 0, 0, 0, fmt.Errorf("GET %s on %s: %d %.200s %v", path, node, code, body, err)
			}
			var p struct {
				KVs      []account `json:"kvs"`
				More     bool      `json:"more"`
				Continue string    `json:"continue"`
				Revision int64     `json:"revision"`
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				return 0, 0, 0, err
			}
			if at != 0 && p.Revision != at {
				return 0, 0, 0, fmt.Errorf("pages read at %d and %d", at, p.Revision)
			}
			at = p.Revision
			for _, kv := range p.KVs {
				if strings.Count(kv.Key, "/") == 1 {
					v, _ := strconv.Atoi(kv.Value)
					sum += v
					n++
				}
			}
			if !p.More {
				return sum, n, at, nil
			}
			path = q + "&continue=" + url.QueryEscape(p.Continue)
		}
	}

	var mu sync.Mutex
	var history []bankTransfer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for cl := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(cl), 7))
			node := cl % 3
			for {
				select {
				case <-stop:
					return
				default:
				}
				from, to := rng.IntN(accounts), rng.IntN(accounts-1)
				if to >= from {
					to++
				}
				var cur [2]account
				ok := true
				for k, i := range []int{from, to} {
					code, body, err := call(c.names[node], "GET", "/key/"+acct(i), "")
					if err != nil || code != 200 || json.Unmarshal([]byte(body), &cur[k]) != nil {
						ok = false
						break
					}
				}
				if !ok {
					node = (node + 1) % 3
					time.Sleep(10 * time.Millisecond)
					continue
				}
				bf, _ := strconv.Atoi(cur[0].Value)
				bt, _ := strconv.Atoi(cur[1].Value)
				amount := 1 + rng.IntN(10)
				tr := bankTransfer{from: from, to: to, vFrom: cur[0].Version, vTo: cur[1].Version, newFrom: bf - amount, newTo: bt + amount}
				body := fmt.Sprintf(`{"compare":[{"key":%q,"target":"version","op":"==","version":%d},{"key":%q,"target":"version","op":"==","version":%d}],`+
					`"success":[{"put":{"key":%q,"value":"%d"}},{"put":{"key":%q,"value":"%d"}}]}`,
					acct(from), tr.vFrom, acct(to), tr.vTo, acct(from), tr.newFrom, acct(to), tr.newTo)
				tr.start = time.Now()
				code, resp, err := call(c.names[node], "POST", "/txn", body)
				tr.end = time.Now()
				var res struct {
					Succeeded bool  `json:"succeeded"`
					Revision  int64 `json:"revision"`
				}
				switch {
				case err == nil && code == 200 && json.Unmarshal([]byte(resp), &res) == nil:
					tr.outcome, tr.rev = "failed", res.Revision
					if res.Succeeded {
						tr.outcome = "ok"
					}
				case err == nil && code >= 400 && code < 500 && code != 409:
					t.Errorf("POST /txn: %d %s", code, resp)
					return
				default:
					tr.outcome = "unknown"
					node = (node + 1) % 3
				}
				mu.Lock()
				history = append(history, tr)
				mu.Unlock()
			}
		})
	}
	scans, earlier := 0, 0
	wg.Go(func() {
		var last int64
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			node := c.names[i%3]
			sum, n, at, err := scan(node, 0)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if sum != accounts*initial || n != accounts {
				t.Errorf("a scan at %d on %s: %d accounts summing to %d, want %d and %d", at, node, n, sum, accounts, accounts*initial)
			}
			scans++
			if last > 0 {
				if sum, n, _, err := scan(c.names[(i+1)%3], last); err == nil {
					if sum != accounts*initial || n != accounts {
						t.Errorf("a scan at the earlier %d: %d accounts summing to %d", last, n, sum)
					}
					earlier++
				}
			}
			last = at
		}
	})
	time.Sleep(7 * time.Second)
	c.servers["n3"].kill9()
	time.Sleep(5 * time.Second)
	c.launch("n3").waitReady()
	time.Sleep(4 * time.Second)
	c.servers["n2"].kill9()
	time.Sleep(4 * time.Second)
	c.launch("n2").waitReady()
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}

	count := map[string]int{}
	for _, tr := range history {
		count[tr.outcome]++
	}
	t.Logf("%d transfers: %d committed, %d compare failed, %d unknown; %d scans at the current revision, %d at an earlier one",
		len(history), count["ok"], count["failed"], count["unknown"], scans, earlier)
	if count["ok"] < 100 || scans < 10 {
		t.Fatalf("too little done to show anything")
	}
	sum, n, final, err := scan("n1", 0)
	if err != nil || sum != accounts*initial || n != accounts {
		t.Fatalf("final scan: %d accounts summing to %d, %v", n, sum, err)
	}

	// The watcher saw every transfer once, in revision order, both of its
	// accounts at its revision: replayed on the balances at the start, its
	// events keep the total at every revision and end at the final state.
	for deadline := time.Now().Add(30 * time.Second); ; {
		watchMu.Lock()
		w := watched
		watchMu.Unlock()
		if w >= final {
			break
		}
		select {
		case err := <-watchDone:
			t.Fatalf("the watch ended at %d, before %d: %v", w, final, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch delivered up to %d, not %d, 30 s after the run", w, final)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopWatch()
	balance := map[string]int{}
	for i := range accounts {
		balance[acct(i)] = initial
	}
	watchMu.Lock()
	evs := slices.Clone(events)
	watchMu.Unlock()
	byRevision := map[int64]int{}
	for i, ev := range evs {
		if i > 0 && ev.Revision < evs[i-1].Revision {
			t.Fatalf("watch event %d at %d after one at %d", i, ev.Revision, evs[i-1].Revision)
		}
		if ev.Type != "PUT" {
			t.Fatalf("watch event %s on %s at %d", ev.Type, ev.Key, ev.Revision)
		}
		if ev.Revision > final {
			continue
		}
		v, _ := strconv.Atoi(ev.Value)
		balance[ev.Key] = v
		byRevision[ev.Revision]++
		if i+1 == len(evs) || evs[i+1].Revision != ev.Revision {
			total := 0
			for _, b := range balance {
				total += b
			}
			if total != accounts*initial || byRevision[ev.Revision] != 2 {
				t.Fatalf("at revision %d the watch shows %d account changes, the accounts summing to %d", ev.Revision, byRevision[ev.Revision], total)
			}
		}
	}
	committed := 0
	for _, tr := range history {
		if tr.outcome == "ok" {
			committed++
			if byRevision[tr.rev] != 2 {
				t.Fatalf("the watch shows %d changes at %d, where transfer %d->%d committed", byRevision[tr.rev], tr.rev, tr.from, tr.to)
			}
		}
	}
	for i := range accounts {
		code, body, err := call("n1", "GET", fmt.Sprintf("/key/%s?revision=%d", acct(i), final), "")
		var kv account
		if err != nil || code != 200 || json.Unmarshal([]byte(body), &kv) != nil || strconv.Itoa(balance[acct(i)]) != kv.Value {
			t.Fatalf("%s at %d is %s, the watch's replay %d", acct(i), final, body, balance[acct(i)])
		}
	}
	t.Logf("the watcher saw %d transfers (%d acknowledged), each at one revision, through the kills", len(byRevision), committed)

	// The chains. writer[(account, version)] is the transfer that wrote it.
	type slot struct {
		acct int
		v    int64
	}
	byRev := map[int64]*bankTransfer{}
	for i := range history {
		if tr := &history[i]; tr.outcome == "ok" {
			if byRev[tr.rev] != nil {
				t.Fatalf("two transfers committed at revision %d", tr.rev)
			}
			byRev[tr.rev] = tr
		}
	}
	wrote := map[*bankTransfer][]int64{} // the revisions its writes carry
	for a := range accounts {
		code, body, err := call("n1", "GET", "/key/"+acct(a), "")
		var latest account
		if err != nil || code != 200 || json.Unmarshal([]byte(body), &latest) != nil {
			t.Fatalf("GET %s: %d %s %v", acct(a), code, body, err)
		}
		prevRev := int64(0)
		for v := int64(1); v <= latest.Version; v++ {
			code, body, err := call("n1", "GET", fmt.Sprintf("/key/%s?version=%d", acct(a), v), "")
			var got account
			if err != nil || code != 200 || json.Unmarshal([]byte(body), &got) != nil || got.Version != v {
				t.Fatalf("GET %s version %d: %d %s %v", acct(a), v, code, body, err)
			}
			if got.Revision <= prevRev {
				t.Fatalf("%s: version %d at revision %d, not after %d", acct(a), v, got.Revision, prevRev)
			}
			prevRev = got.Revision
			if v == 1 {
				continue
			}
			// The transfer that wrote it compared v-1 and wrote this value.
			matches := func(tr *bankTransfer) bool {
				return (tr.from == a && tr.vFrom == v-1 && strconv.Itoa(tr.newFrom) == got.Value) ||
					(tr.to == a && tr.vTo == v-1 && strconv.Itoa(tr.newTo) == got.Value)
			}
			tr := byRev[got.Revision]
			if tr == nil {
				for i := range history {
					if u := &history[i]; u.outcome == "unknown" && matches(u) {
						tr = u
						break
					}
				}
			}
			if tr == nil || !matches(tr) {
				t.Fatalf("%s version %d (%s at revision %d): no transfer compared version %d and wrote it", acct(a), v, got.Value, got.Revision, v-1)
			}
			wrote[tr] = append(wrote[tr], got.Revision)
		}
	}
	for tr, revs := range wrote {
		if len(revs) != 2 || revs[0] != revs[1] || (tr.outcome == "ok" && revs[0] != tr.rev) {
			t.Fatalf("transfer %d->%d (%s at %d): its writes are at revisions %v", tr.from, tr.to, tr.outcome, tr.rev, revs)
		}
	}
	var acked []*bankTransfer
	for _, tr := range byRev {
		if _, ok := wrote[tr]; !ok {
			t.Fatalf("acknowledged transfer %d->%d at %d is not in the accounts' versions", tr.from, tr.to, tr.rev)
		}
		acked = append(acked, tr)
	}
	for _, x := range acked {
		for _, y := range acked {
			if x.end.Before(y.start) && x.rev >= y.rev {
				t.Fatalf("transfer at %d ended before one at %d started", x.rev, y.rev)
			}
		}
	}
}

// TestCoordinatorKilledMidTransaction: 16 clients run transactions through
// n1, each putting one token on a key in one range and on a key in
// another, while n1 (their coordinator) is killed -9. Transactions caught
// between their locks and their commit leave locks that nothing will
// resolve but those who meet them: reads through n2 wait for them, end
// them once their time is up, and find every transaction whole, both keys
// or neither, the acknowledged ones both, within the locks' time (2 s).
// Then n1 is started again and killed again in the middle of more
// transactions, and nothing reads their keys: the locks and commit records
// left behind (/cluster/status counts them) are ended by the ranges'
// leaders by themselves, within 15 s.
func TestCoordinatorKilledMidTransaction(t *testing.T) {
	c := startCluster(t, 3, "--range-split-bytes", "16KiB")
	c.leader(10 * time.Second)
	pad := strings.Repeat("p", 4000)
	for i := range 30 {
		if code, body := do(t, "PUT", c.url(c.names[i%3], fmt.Sprintf("/key/m/pad/%02d", i)), `{"value":"`+pad+`"}`); code != 200 {
			t.Fatalf("PUT pad: %d %s", code, body)
		}
	}
	// a/ and z/ in different ranges.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, body := do(t, "GET", c.url("n2", "/cluster/ranges"), "")
		var rb struct {
			Ranges []struct {
				Start string `json:"start"`
				End   string `json:"end"`
			} `json:"ranges"`
		}
		json.Unmarshal([]byte(body), &rb)
		split := false
		for _, r := range rb.Ranges {
			if r.Start > "a/" && r.Start <= "z/" {
				split = true
			}
		}
		if split {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a/ and z/ still in one range: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A request id makes a transaction over the two ranges apply once:
	// sent again, through another node, it answers the first outcome.
	once := `{"success":[{"put":{"key":"a/once","value":"1"}},{"put":{"key":"z/once","value":"1"}}]}`
	code1, first := do(t, "POST", c.url("n2", "/txn?client_id=c1&request_id=r1"), once)
	code2, second := do(t, "POST", c.url("n3", "/txn?client_id=c1&request_id=r1"), once)
	if code1 != 200 || code2 != 200 || first != second || !strings.Contains(first, `"succeeded":true`) {
		t.Fatalf("a transaction sent twice with one request id: %d %s, then %d %s", code1, first, code2, second)
	}
	for _, k := range []string{"a/once", "z/once"} {
		if _, body := do(t, "GET", c.url("n1", "/key/"+k), ""); !strings.Contains(body, `"version":1`) {
			t.Fatalf("%s after the transaction sent twice: %s", k, body)
		}
	}
	if _, body := do(t, "GET", c.url("n1", "/request_status?client_id=c1&request_id=r1"), ""); !strings.Contains(body, `"processed":true`) {
		t.Fatalf("request_status of the transaction: %s", body)
	}

	hc := &http.Client{Timeout: 5 * time.Second}
	var mu sync.Mutex
	acked := map[int]bool{}
	sent := 0
	var wg sync.WaitGroup
	dead := make(chan struct{})
	for cl := range 16 {
		wg.Go(func() {
			for n := 0; ; n++ {
				i := cl*100000 + n
				body := fmt.Sprintf(`{"success":[{"put":{"key":"a/%07d","value":"t%d"}},{"put":{"key":"z/%07d","value":"t%d"}}]}`, i, i, i, i)
				mu.Lock()
				sent = max(sent, n+1)
				mu.Unlock()
				resp, err := hc.Post(c.url("n1", "/txn"), "application/json", strings.NewReader(body))
				if err != nil {
					return // n1 is dead
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && strings.Contains(string(b), `"succeeded":true`) {
					mu.Lock()
					acked[i] = true
					mu.Unlock()
				}
				select {
				case <-dead:
					return
				default:
				}
			}
		})
	}
	time.Sleep(time.Duration(1500+rand.IntN(500)) * time.Millisecond)
	c.servers["n1"].kill9()
	killed := time.Now()
	close(dead)
	wg.Wait()

	get := func(key string) (string, bool, time.Duration) {
		start := time.Now()
		for attempt := 0; ; attempt++ {
			code, body, err := func() (int, string, error) {
				resp, err := hc.Get(c.url("n2", "/key/"+key))
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}()
			switch {
			case err == nil && code == 404:
				return "", false, time.Since(start)
			case err == nil && code == 200:
				var kv struct {
					Value string `json:"value"`
				}
				json.Unmarshal([]byte(body), &kv)
				return kv.Value, true, time.Since(start)
			case attempt == 50:
				t.Fatalf("GET %s: %d %s %v", key, code, body, err)
			}
			time.Sleep(100 * time.Millisecond) // ranges n1 led elect new leaders
		}
	}
	var slowest time.Duration
	whole, none, waited := 0, 0, 0
	for cl := range 16 {
		for n := range sent {
			i := cl*100000 + n
			va, okA, da := get(fmt.Sprintf("a/%07d", i))
			vz, okZ, dz := get(fmt.Sprintf("z/%07d", i))
			slowest = max(slowest, da, dz)
			if max(da, dz) > 500*time.Millisecond {
				waited++
			}
			want := fmt.Sprintf("t%d", i)
			switch {
			case okA && okZ && va == want && vz == want:
				whole++
			case !okA && !okZ:
				if acked[i] {
					t.Fatalf("transaction %d was acknowledged, but wrote nothing", i)
				}
				none++
			default:
				t.Fatalf("transaction %d is half there: a=%q (%v) z=%q (%v)", i, va, okA, vz, okZ)
			}
		}
	}
	t.Logf("n1 killed with transactions in flight: %d acknowledged, %d whole, %d absent; %d reads waited over 0.5 s, the slowest %v, %v after the kill",
		len(acked), whole, none, waited, slowest.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if len(acked) < 50 {
		t.Fatalf("only %d transactions acknowledged before the kill", len(acked))
	}
	if waited == 0 {
		t.Fatalf("no read met a lock the kill left behind: the kill caught no transaction between its locks and its end")
	}
	if slowest > 10*time.Second {
		t.Fatalf("a read waited %v for a dead coordinator's locks (their time is 2 s)", slowest)
	}

	// Again, with n1 back, and no one reading the keys after the kill: the
	// leaders of the ranges end the transactions left behind by themselves.
	c.launch("n1").waitReady()
	txnState := func(names ...string) (locks, records int) {
		for _, name := range names {
			_, body, err := func() (int, string, error) {
				resp, err := hc.Get(c.url(name, "/cluster/status"))
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}()
			var st struct {
				Locks   int `json:"txn_locks"`
				Records int `json:"txn_records"`
			}
			if err != nil || json.Unmarshal([]byte(body), &st) != nil {
				t.Fatalf("GET /cluster/status on %s: %v %s", name, err, body)
			}
			locks, records = locks+st.Locks, records+st.Records
		}
		return locks, records
	}
	stop := make(chan struct{})
	for cl := range 16 {
		wg.Go(func() {
			for n := 0; ; n++ {
				body := fmt.Sprintf(`{"success":[{"put":{"key":"b/%02d/%07d","value":"1"}},{"put":{"key":"y/%02d/%07d","value":"1"}}]}`, cl, n, cl, n)
				resp, err := hc.Post(c.url("n1", "/txn"), "application/json", strings.NewReader(body))
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	time.Sleep(time.Second)
	c.servers["n1"].kill9()
	close(stop)
	wg.Wait()
	locks, records := txnState("n2", "n3")
	if locks == 0 {
		t.Fatalf("no lock left behind by the second kill (%d records)", records)
	}
	left := time.Now()
	for locks+records > 0 {
		if time.Since(left) > 15*time.Second {
			t.Fatalf("%d locks and %d records still there %v after the kill", locks, records, time.Since(left))
		}
		time.Sleep(200 * time.Millisecond)
		locks, records = txnState("n2", "n3")
	}
	t.Logf("the second kill left locks on n2 and n3; their leaders ended them in %v", time.Since(left).Round(100*time.Millisecond))

	// wal dump shows the writes each range applied for a transaction.
	c.servers["n2"].stop()
	out, err := run(t, "wal", "dump", c.dirs["n2"])
	for _, want := range []string{`"writes": [{"operation": "SET", "key": "a/once", "value": "1"}]`, `"writes": [{"operation": "SET", "key": "z/once", "value": "1"}]`} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("wal dump does not show %s: %v\n%s", want, err, tail([]byte(out), 2000))
		}
	}
}
