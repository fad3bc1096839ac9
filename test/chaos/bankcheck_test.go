package chaos

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// The bank round's checker: pure logic over what the clients, the scanner
// and the final reads of every account's versions recorded (bank_test.go
// records it). See checkBank.

// transferOutcome is what a bank client learnt of its transfer.
type transferOutcome int

const (
	transferCommitted     transferOutcome = iota // 200, succeeded
	transferCompareFailed                        // 200, not succeeded
	transferUnknown                              // no answer, or one that does not say: it may have committed
)

func (o transferOutcome) String() string {
	switch o {
	case transferCommitted:
		return "committed"
	case transferCompareFailed:
		return "compare-failed"
	}
	return "unknown"
}

// bankTransfer is one POST /txn a bank client sent: the versions of from
// and to it compared and the balances it put.
type bankTransfer struct {
	client         int
	from, to       int
	vFrom, vTo     int64
	newFrom, newTo int
	// call and ret are nanoseconds since the round's start; ret is
	// math.MaxInt64 when the outcome is unknown.
	call, ret int64
	outcome   transferOutcome
	// rev is the answer's revision: the commit's, or the one at which the
	// compare failed; 0 when the outcome is unknown.
	rev    int64
	answer string // what an unknown outcome was answered, for messages
}

func (tr *bankTransfer) String() string {
	ret := "open"
	if tr.ret != math.MaxInt64 {
		ret = fmt.Sprintf("%.3fs", seconds(tr.ret))
	}
	s := fmt.Sprintf("client %d's transfer %s v%d -> %s v%d (puts %d, %d; %.3fs..%s) %s", tr.client,
		bankKey(tr.from), tr.vFrom, bankKey(tr.to), tr.vTo, tr.newFrom, tr.newTo, seconds(tr.call), ret, tr.outcome)
	if tr.rev != 0 {
		s += fmt.Sprintf(" at revision %d", tr.rev)
	}
	return s
}

// bankRead is an account as a GET or a scan returned it.
type bankRead struct {
	acct              int
	value             string
	version, revision int64
}

// bankScan is one linearizable scan of the accounts, page by page.
type bankScan struct {
	node      string
	earlier   bool    // asked for an earlier scan's revision (?revision=)
	at        int64   // the revision of its first page
	pageRevs  []int64 // every page's revision
	call, ret int64
	reads     []bankRead
}

// bankVersion is one version of an account as GET /key/K?version=N read
// it at the end.
type bankVersion struct {
	value    string
	revision int64
}

// bankHistory is what a bank round recorded. chains[a][i] is version i+1
// of account a; every account was created (version 1) with initial.
type bankHistory struct {
	accounts, initial int
	transfers         []bankTransfer
	scans             []bankScan
	gets              []bankRead // the clients' reads of the accounts before each transfer
	chains            [][]bankVersion
}

// bankVerdict is what checkBank found: the problems (none: the history is
// strictly serializable and every scan sums to the total) and counts.
type bankVerdict struct {
	problems []string
	// unknownCommitted counts the transfers of unknown outcome that the
	// accounts' versions show committed.
	unknownCommitted int
	versions         int // account versions after the first, each one a transfer's write
	lost             int // committed transfers not in the accounts' versions
}

// bankWrite is one account version after the first: a transfer's put.
type bankWrite struct {
	acct    int
	version int64
	value   string
}

// checkBank checks h:
//   - every scan reads all accounts at one revision (every page's), they sum
//     to accounts*initial, and each shows the version the account had at
//     that revision;
//   - each account's versions start at the initial balance and their
//     revisions grow; the final balances sum to the total;
//   - the versions written at one revision are exactly the two puts of one
//     transfer that compared the versions before them: the committed
//     transfer answered with that revision, or else one of unknown outcome;
//     no two committed transfers compared the same version of an account
//     (a lost update), and every committed transfer is there;
//   - a failed compare failed at its revision: one of its versions was not
//     the account's version then; a client's read is a version in the chain;
//   - real time: a transfer or scan that began after another ended has the
//     greater revision (a scan may share a transfer's revision: it reads
//     what was written at or below its revision).
func checkBank(h *bankHistory) bankVerdict {
	var v bankVerdict
	fail := func(format string, args ...any) { v.problems = append(v.problems, fmt.Sprintf(format, args...)) }
	total := h.accounts * h.initial
	initial := strconv.Itoa(h.initial)

	// versionAt is the 1-based version account a had at revision rev (0:
	// none yet).
	versionAt := func(a int, rev int64) int64 {
		ch := h.chains[a]
		return int64(sort.Search(len(ch), func(i int) bool { return ch[i].revision > rev }))
	}

	if len(h.chains) != h.accounts {
		fail("the versions of %d accounts were read, not %d", len(h.chains), h.accounts)
		return v
	}
	events := map[int64][]bankWrite{}
	final := 0
	for a, ch := range h.chains {
		if len(ch) == 0 {
			fail("%s has no version", bankKey(a))
			continue
		}
		if ch[0].value != initial {
			fail("%s version 1 is %q, not the initial %s", bankKey(a), ch[0].value, initial)
		}
		for i := 1; i < len(ch); i++ {
			if ch[i].revision <= ch[i-1].revision {
				fail("%s version %d is at revision %d, not after version %d's %d", bankKey(a), i+1, ch[i].revision, i, ch[i-1].revision)
			}
			events[ch[i].revision] = append(events[ch[i].revision], bankWrite{a, int64(i + 1), ch[i].value})
			v.versions++
		}
		n, err := strconv.Atoi(ch[len(ch)-1].value)
		if err != nil {
			fail("%s's last version holds %q, not a balance", bankKey(a), ch[len(ch)-1].value)
		}
		final += n
	}
	if final != total {
		fail("the accounts' last versions sum to %d, not the initial total %d", final, total)
	}

	// Committed transfers by revision; the versions they compared.
	byRev := map[int64]*bankTransfer{}
	compared := map[[2]int64]*bankTransfer{}
	unknown := map[[2]int64][]*bankTransfer{} // by (from, vFrom)
	for i := range h.transfers {
		tr := &h.transfers[i]
		switch tr.outcome {
		case transferCommitted:
			if o := byRev[tr.rev]; o != nil {
				fail("two transfers committed at revision %d: %s and %s", tr.rev, o, tr)
			}
			byRev[tr.rev] = tr
			for _, k := range [][2]int64{{int64(tr.from), tr.vFrom}, {int64(tr.to), tr.vTo}} {
				if o := compared[k]; o != nil {
					fail("lost update: %s and %s both committed having compared version %d of %s", o, tr, k[1], bankKey(int(k[0])))
				}
				compared[k] = tr
			}
		case transferUnknown:
			k := [2]int64{int64(tr.from), tr.vFrom}
			unknown[k] = append(unknown[k], tr)
		}
	}
	explains := func(tr *bankTransfer, ws []bankWrite) bool {
		if len(ws) != 2 {
			return false
		}
		want := map[bankWrite]bool{
			{tr.from, tr.vFrom + 1, strconv.Itoa(tr.newFrom)}: true,
			{tr.to, tr.vTo + 1, strconv.Itoa(tr.newTo)}:       true,
		}
		return want[ws[0]] && want[ws[1]] && ws[0] != ws[1]
	}
	describe := func(ws []bankWrite) string {
		s := ""
		for i, w := range ws {
			if i > 0 {
				s += ", "
			}
			s += fmt.Sprintf("%s v%d=%s", bankKey(w.acct), w.version, w.value)
		}
		return s
	}

	// Each revision's writes are one transfer's. A transfer of unknown
	// outcome found here committed at that revision.
	type write struct {
		rev       int64
		call, ret int64
		read      bool
		what      string
	}
	var ordered []write
	revs := make([]int64, 0, len(events))
	for r := range events {
		revs = append(revs, r)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	for _, r := range revs {
		ws := events[r]
		if tr := byRev[r]; tr != nil {
			if !explains(tr, ws) {
				fail("revision %d carries %s, not the two puts of %s, which committed at it", r, describe(ws), tr)
			}
			continue
		}
		var found *bankTransfer
		for _, w := range ws {
			for _, u := range unknown[[2]int64{int64(w.acct), w.version - 1}] {
				if found == nil && explains(u, ws) {
					found = u
				}
			}
		}
		if found == nil {
			fail("revision %d carries %s: no transfer that compared the versions before them put both at one revision", r, describe(ws))
			continue
		}
		v.unknownCommitted++
		ordered = append(ordered, write{rev: r, call: found.call, ret: math.MaxInt64, what: found.String() + fmt.Sprintf(", found committed at revision %d", r)})
	}
	for _, tr := range byRev {
		if _, ok := events[tr.rev]; !ok {
			fail("acknowledged %s is not in the accounts' versions", tr)
			v.lost++
		}
		ordered = append(ordered, write{rev: tr.rev, call: tr.call, ret: tr.ret, what: tr.String()})
	}

	for i := range h.transfers {
		tr := &h.transfers[i]
		if tr.outcome != transferCompareFailed {
			continue
		}
		if versionAt(tr.from, tr.rev) == tr.vFrom && versionAt(tr.to, tr.rev) == tr.vTo {
			fail("%s failed its compare, but %s was at version %d and %s at %d then", tr, bankKey(tr.from), tr.vFrom, bankKey(tr.to), tr.vTo)
		}
		ordered = append(ordered, write{rev: tr.rev, call: tr.call, ret: tr.ret, read: true, what: tr.String()})
	}
	for _, g := range h.gets {
		ch := h.chains[g.acct]
		if g.version < 1 || g.version > int64(len(ch)) || ch[g.version-1] != (bankVersion{g.value, g.revision}) {
			fail("a client read %s v%d=%s at revision %d, which is not that version (%d versions)", bankKey(g.acct), g.version, g.value, g.revision, len(ch))
		}
	}

	for _, s := range h.scans {
		what := fmt.Sprintf("scan on %s at revision %d (%.3fs..%.3fs)", s.node, s.at, seconds(s.call), seconds(s.ret))
		if s.earlier {
			what = "earlier " + what
		}
		for _, pr := range s.pageRevs {
			if pr != s.at {
				fail("%s: its pages are at revisions %v", what, s.pageRevs)
				break
			}
		}
		sum, seen := 0, map[int]bool{}
		for _, r := range s.reads {
			n, _ := strconv.Atoi(r.value)
			sum += n
			if seen[r.acct] {
				fail("%s: %s twice", what, bankKey(r.acct))
			}
			seen[r.acct] = true
			ver := versionAt(r.acct, s.at)
			if ver == 0 || r.version != ver || r.value != h.chains[r.acct][ver-1].value {
				fail("%s: %s v%d=%s, but the account was at version %d then", what, bankKey(r.acct), r.version, r.value, ver)
			}
		}
		if len(seen) != h.accounts || sum != total {
			fail("%s: %d accounts sum to %d, want %d accounts summing to %d", what, len(seen), sum, h.accounts, total)
		}
		if !s.earlier {
			ordered = append(ordered, write{rev: s.at, call: s.call, ret: s.ret, read: true, what: what})
		}
	}

	// Real time: sweep the operations by call, with the ones that ended
	// before each call seen so far.
	byRet := append([]write(nil), ordered...)
	sort.Slice(byRet, func(i, j int) bool { return byRet[i].ret < byRet[j].ret })
	sort.Slice(ordered, func(i, j int) bool { return ordered[i].call < ordered[j].call })
	var maxW, maxR *write
	next, inversions := 0, 0
	for i := range ordered {
		b := &ordered[i]
		for next < len(byRet) && byRet[next].ret < b.call {
			a := &byRet[next]
			if a.read && (maxR == nil || a.rev > maxR.rev) {
				maxR = a
			}
			if !a.read && (maxW == nil || a.rev > maxW.rev) {
				maxW = a
			}
			next++
		}
		// A write must be above everything before it; a read at or above
		// every write before it and every read.
		for _, a := range []*write{maxW, maxR} {
			if a == nil {
				continue
			}
			if a.rev > b.rev || (a.rev == b.rev && !b.read) {
				inversions++
				if inversions <= 5 {
					fail("real time: %s ended before %s began, but its revision is not below", a.what, b.what)
				}
			}
		}
	}
	if inversions > 5 {
		fail("real time: %d inversions in all", inversions)
	}
	return v
}
