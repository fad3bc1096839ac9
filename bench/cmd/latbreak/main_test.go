package main

import (
	"slices"
	"strings"
	"testing"
)

// A write sent to follower O (proposal id 7, entry 12) and one sent to the
// leader L (id 9, entry 13), with the third node Q; times in microseconds.
const (
	traceO = `1000000 H 0 0
1007000 P 7 0
1009000 p 7 0
1150000 m 12 3
1152000 a 12 1
1160000 w 12 0
1400000 f 12 0
1430000 T 12 0
1440000 c 12 0
1450000 A 12 7
1455000 X 7 0
1460000 Y 0 0
2600000 c 13 0
2610000 A 13 9
`
	traceL = `1060000 m 0 2
1062000 a 12 1
1063000 s 12 3
1063000 s 12 3
1100000 w 12 0
1380000 f 12 0
1390000 n 12 0
1420000 m 12 4
1425000 c 12 0
1470000 A 12 7
2000000 H 0 0
2005000 P 9 0
2006000 p 9 0
2010000 a 13 1
2011000 s 13 3
2011000 s 13 3
2300000 f 13 0
2400000 m 13 4
2410000 c 13 0
2420000 A 13 9
2425000 X 9 0
`
	traceQ = `1150000 m 12 3
1155000 a 12 1
1410000 f 12 0
1500000 c 12 0
1510000 A 12 7
2090000 m 13 3
2095000 a 13 1
2380000 f 13 0
2500000 c 13 0
2510000 A 13 9
`
)

func TestReportSplitsWritesByOriginAndRole(t *testing.T) {
	var nodes []*node
	for _, tr := range []string{traceO, traceL, traceQ} {
		n, err := parse("t", strings.NewReader(tr))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	var out strings.Builder
	if err := report(&out, nodes, 0, 5e9); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	// Columns are padded: compare with spaces collapsed, line by line.
	var lines []string
	for l := range strings.Lines(got) {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{
		"writes sent to the leader: 1, median 420 us from proposal to answer",
		"writes sent to the follower: 1, median 448 us from proposal to answer",
		"  O:H               -7 us  (1)", // follower-sent write: handler 7 us before the proposal
		"  L:a               55 us  (1)",
		"  L:s3              56 us  (1)",
		"  O:m3             143 us  (1)",
		"  O:f              393 us  (1)",
		"  L:n              383 us  (1)",
		"  O:T              423 us  (1)",
		"  O:Y              453 us  (1)",
		"  Q:A              503 us  (1)",
		"  O:T - L:n         40 us  (1)",
		"  O:c - O:f         40 us  (1)",
		"  Q2:m3             85 us  (1)", // leader-sent write: Q1 is o, Q2 is q
	} {
		if !slices.Contains(lines, strings.Join(strings.Fields(want), " ")) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Count(got, "writes sent") != 2 {
		t.Errorf("want two groups:\n%s", got)
	}
}

func TestParseRefusesMalformedLines(t *testing.T) {
	for _, in := range []string{"1 A 2\n", "x A 1 2\n", "1 AB 1 2\n", "1 A -1 2\n"} {
		if _, err := parse("t", strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// FuzzParse: any input is either refused or parsed into events that say what
// the lines said.
func FuzzParse(f *testing.F) {
	f.Add(traceL)
	f.Add("1 s 2 3\n")
	f.Add("1 A 2\n")
	f.Fuzz(func(t *testing.T, in string) {
		n, err := parse("f", strings.NewReader(in))
		if err != nil {
			return
		}
		total := 0
		for kind, evs := range n.byKind {
			for i, e := range evs {
				if e.kind != kind || (i > 0 && evs[i-1].t > e.t) {
					t.Fatalf("kind %q: events %+v", kind, evs)
				}
			}
			total += len(evs)
		}
		if lines := strings.Count(strings.TrimRight(in, "\n"), "\n") + 1; strings.TrimSpace(in) != "" && total > lines {
			t.Fatalf("%d events from %d lines", total, lines)
		}
	})
}
