// Package lattrace records, when asked to, the moments at which writes pass
// through the steps of a node (handed to Raft, appended, written, synced,
// sent, received, committed, applied, answered), so that the latency of a
// write can be split across the nodes of a cluster on one machine: every
// process stamps its events with the same wall clock. bench/cmd/latbreak
// reads the files and prints the median time of each step.
//
// It is enabled by the environment variable DISTKV_LATENCY_TRACE=PREFIX: each
// process then writes its events to PREFIX.PID, one per line
// "unix-nanoseconds event a b", every quarter second. Off, the default, Mark
// costs one test of a variable set at start.
package lattrace

import (
	"bufio"
	"fmt"
	"os"
	"sync"
	"time"
)

// Event is what happened; a and b of Mark say to what.
type Event byte

const (
	HTTPPut      Event = 'H' // a PUT's handler starts
	HTTPAnswered Event = 'Y' // a PUT's answer is written
	Propose      Event = 'P' // a: proposal id (per node)
	Answered     Event = 'X' // Propose returns; a: proposal id
	Proposed     Event = 'p' // the loop hands the proposal to Raft; a: id
	Append       Event = 'a' // entries handed to the appender; a: last index, b: count
	Written      Event = 'w' // a WAL frame is written (not synced); a: last entry index, 0 if none
	Synced       Event = 'f' // appends are durable; a: last entry index, 0 if none
	Sent         Event = 's' // a message to a peer; a: last index it carries, b: its raftpb type
	Received     Event = 'm' // a peer's message is stepped; a: last index it carries, b: its type
	Commit       Event = 'c' // the commit index moved to a
	Applied      Event = 'A' // a: entry index, b: proposal id of its origin node
	NoticeSent   Event = 'n' // a durable notice for index a is sent
	NoticeTaken  Event = 'T' // a durable notice for index a is taken
)

type event struct {
	t    int64
	ev   Event
	a, b uint64
}

var (
	enabled bool
	mu      sync.Mutex
	events  []event
)

func init() {
	prefix := os.Getenv("DISTKV_LATENCY_TRACE")
	if prefix == "" {
		return
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", prefix, os.Getpid()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "DISTKV_LATENCY_TRACE: %v; not tracing\n", err)
		return
	}
	enabled = true
	go flushEvery(f, 250*time.Millisecond)
}

// Enabled reports whether events are recorded.
func Enabled() bool { return enabled }

// Mark records ev now.
func Mark(ev Event, a, b uint64) {
	if !enabled {
		return
	}
	t := time.Now().UnixNano()
	mu.Lock()
	events = append(events, event{t: t, ev: ev, a: a, b: b})
	mu.Unlock()
}

// flushEvery writes the events recorded to f every d. After a failed write
// it keeps discarding them, so that memory stays bounded.
func flushEvery(f *os.File, d time.Duration) {
	w := bufio.NewWriter(f)
	var out []event
	failed := false
	for {
		time.Sleep(d)
		mu.Lock()
		out, events = events, out[:0]
		mu.Unlock()
		if failed {
			continue
		}
		if err := writeEvents(w, out); err != nil {
			fmt.Fprintf(os.Stderr, "DISTKV_LATENCY_TRACE: %v; no more events are written\n", err)
			failed = true
		}
	}
}

func writeEvents(w *bufio.Writer, evs []event) error {
	for _, e := range evs {
		fmt.Fprintf(w, "%d %c %d %d\n", e.t, e.ev, e.a, e.b)
	}
	return w.Flush()
}
