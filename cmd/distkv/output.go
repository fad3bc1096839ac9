package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/distkv/distkv/client"
)

// The -o flag of status and member list: "json" prints the server's answer
// indented, as these commands always did; "table" prints columns for a
// person. Without the flag, a terminal gets the table and anything else (a
// pipe, a file, a script) the JSON, so scripts keep reading what they read.
const (
	outputJSON  = "json"
	outputTable = "table"
)

// addOutputFlag adds -o/--output to cmd, stored in *format.
func addOutputFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVarP(format, "output", "o", "", "output format: json or table (default: table on a terminal, json otherwise)")
}

// outputFormat resolves the -o value: "" picks by whether stdout is a
// terminal.
func outputFormat(format string) (string, error) {
	switch format {
	case outputJSON, outputTable:
		return format, nil
	case "":
		if stdoutIsTerminal() {
			return outputTable, nil
		}
		return outputJSON, nil
	}
	return "", fmt.Errorf("-o %q: want json or table", format)
}

func stdoutIsTerminal() bool {
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// writeStatusTable writes st as a header line (the cluster and the answering
// node's view of it) and a table of its members.
func writeStatusTable(w io.Writer, st client.Status, now time.Time) error {
	leader := st.Leader
	if leader == "" {
		leader = "none"
	}
	cluster := st.ClusterID
	if cluster == "" {
		cluster = "-"
	}
	fmt.Fprintf(w, "cluster %s  leader %s  term %d  commit %d  applied %d  (as seen by %s)\n",
		cluster, leader, st.Term, st.CommitIndex, st.AppliedIndex, st.ID)
	if st.DiskFull {
		fmt.Fprintf(w, "%s: disk full, refusing writes\n", st.ID)
	}
	return writeMembersTable(w, st.Members, st.Leader, now)
}

// writeMembersTable writes one line per member: id, role, reachable, http,
// peer, match, lag, last contact. "-" stands for what the answering node
// does not know (match and lag are known on the leader only).
func writeMembersTable(w io.Writer, members []client.Member, leader string, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tREACHABLE\tHTTP\tPEER\tMATCH\tLAG\tLAST CONTACT")
	for _, m := range members {
		role := m.Role
		if m.ID == leader && leader != "" {
			role = "leader"
		}
		reachable := "-"
		if m.Reachable != nil {
			reachable = strconv.FormatBool(*m.Reachable)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, role, reachable, dash(m.HTTP), dash(m.Peer),
			optUint(m.MatchIndex), optUint(m.Lag), contactAgo(m.LastContact, now))
	}
	return tw.Flush()
}

// writeRangesTable writes one line per range: id, start, end (quoted; the
// end of the key space as "(end)"), leader, voters, learners, bytes; the
// meta range's id is marked with "(meta)".
func writeRangesTable(w io.Writer, ranges []client.RangeInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTART\tEND\tLEADER\tREPLICAS\tLEARNERS\tBYTES")
	for _, r := range ranges {
		end := "(end)"
		if r.End != "" {
			end = strconv.Quote(r.End)
		}
		id := strconv.FormatUint(r.ID, 10)
		if r.Meta {
			id += " (meta)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", id, strconv.Quote(r.Start), end, dash(r.Leader),
			dash(strings.Join(r.Replicas, ",")), dash(strings.Join(r.Learners, ",")), r.Bytes)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func optUint(p *uint64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatUint(*p, 10)
}

// contactAgo renders a last contact as its age, "-" if never.
func contactAgo(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Millisecond).String() + " ago"
}
