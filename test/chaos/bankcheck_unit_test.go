package chaos

import (
	"math"
	"strings"
	"testing"
)

// bankSample is a small history that passes: three accounts of 10; a
// committed transfer 0->1 at revision 5, a failed compare at 6 (it compared
// account 0's first version), a scan at 6, an earlier scan at 4, and a
// transfer 1->2 of unknown outcome that committed at 8.
func bankSample() *bankHistory {
	return &bankHistory{
		accounts: 3, initial: 10,
		transfers: []bankTransfer{
			{client: 0, from: 0, to: 1, vFrom: 1, vTo: 1, newFrom: 7, newTo: 13, call: 10, ret: 20, outcome: transferCommitted, rev: 5},
			{client: 1, from: 0, to: 2, vFrom: 1, vTo: 1, newFrom: 8, newTo: 12, call: 21, ret: 25, outcome: transferCompareFailed, rev: 6},
			{client: 2, from: 1, to: 2, vFrom: 2, vTo: 1, newFrom: 9, newTo: 14, call: 30, ret: math.MaxInt64, outcome: transferUnknown},
			// Compared what the unknown one did, but got no further.
			{client: 3, from: 1, to: 0, vFrom: 2, vTo: 2, newFrom: 9, newTo: 11, call: 31, ret: math.MaxInt64, outcome: transferUnknown},
		},
		scans: []bankScan{
			{node: "n1", at: 6, pageRevs: []int64{6, 6}, call: 26, ret: 28, reads: []bankRead{
				{0, "7", 2, 5}, {1, "13", 2, 5}, {2, "10", 1, 3}}},
			{node: "n2", earlier: true, at: 4, pageRevs: []int64{4}, call: 29, ret: 29, reads: []bankRead{
				{0, "10", 1, 1}, {1, "10", 1, 2}, {2, "10", 1, 3}}},
		},
		gets: []bankRead{{1, "13", 2, 5}},
		chains: [][]bankVersion{
			{{"10", 1}, {"7", 5}},
			{{"10", 2}, {"13", 5}, {"9", 8}},
			{{"10", 3}, {"14", 8}},
		},
	}
}

// TestCheckBank: the sample passes, and each variant breaking one promise
// fails with the problem named.
func TestCheckBank(t *testing.T) {
	if v := checkBank(bankSample()); len(v.problems) != 0 || v.unknownCommitted != 1 || v.versions != 4 {
		t.Fatalf("the sample: problems %q, unknown found committed %d (want 1), versions %d (want 4)", v.problems, v.unknownCommitted, v.versions)
	}
	for _, tc := range []struct {
		name   string
		change func(h *bankHistory)
		want   string // in some problem
	}{
		{"lost update: two committed transfers compared one version", func(h *bankHistory) {
			h.transfers = append(h.transfers, bankTransfer{client: 4, from: 0, to: 2, vFrom: 1, vTo: 1, newFrom: 5, newTo: 15,
				call: 11, ret: 19, outcome: transferCommitted, rev: 4})
		}, "lost update"},
		{"a transfer's writes at two revisions", func(h *bankHistory) {
			h.chains[2][1].revision = 9
		}, "no transfer that compared the versions before them put both at one revision"},
		{"a committed transfer's writes at another revision", func(h *bankHistory) {
			h.chains[0][1].revision, h.chains[1][1].revision = 4, 4
			h.scans[0].reads[0].revision, h.scans[0].reads[1].revision, h.gets[0].revision = 4, 4, 4
		}, "acknowledged client 0's transfer"},
		{"real-time inversion between transfers", func(h *bankHistory) {
			// The unknown one answered before the first began, yet
			// committed after it.
			h.transfers[2].outcome, h.transfers[2].rev, h.transfers[2].call, h.transfers[2].ret = transferCommitted, 8, 1, 2
		}, "real time"},
		{"a scan behind a transfer that ended before it", func(h *bankHistory) {
			h.scans[0].call, h.scans[0].ret = 50, 51
			h.transfers[2].outcome, h.transfers[2].rev, h.transfers[2].ret = transferCommitted, 8, 40
		}, "real time"},
		{"a scan whose sum is off", func(h *bankHistory) {
			h.scans[0].reads[2].value = "11"
		}, "summing to 30"},
		{"an earlier scan missing an account", func(h *bankHistory) {
			h.scans[1].reads = h.scans[1].reads[:2]
		}, "2 accounts sum to 20"},
		{"a scan's pages at two revisions", func(h *bankHistory) {
			h.scans[0].pageRevs[1] = 7
		}, "pages are at revisions"},
		{"a total off at the end", func(h *bankHistory) {
			h.chains[2][1].value = "15"
		}, "last versions sum to 31"},
		{"a revision going back along a chain", func(h *bankHistory) {
			h.chains[1][2].revision = 4
		}, "not after version 2's 5"},
		{"a compare that failed though both versions held", func(h *bankHistory) {
			h.transfers[1].rev = 4
		}, "failed its compare"},
		{"a client read a value never committed", func(h *bankHistory) {
			h.gets = append(h.gets, bankRead{0, "8", 2, 6})
		}, "which is not that version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := bankSample()
			tc.change(h)
			v := checkBank(h)
			for _, p := range v.problems {
				if strings.Contains(p, tc.want) {
					t.Logf("found: %s", p)
					return
				}
			}
			t.Fatalf("want a problem containing %q, got %q", tc.want, v.problems)
		})
	}
}
