package main

import (
	"os"
	"strings"
)

// GODEBUG=schedtrace=2147483647 in a server's environment is an opt-in
// speed setting (docs/operations.md), for one side effect: the Go runtime's
// sysmon thread never enters its deep sleep. distkv never sets it itself: a
// process that changed its own environment and re-executed itself surprised
// operators (children inherited it, /proc/PID/environ differed from what was
// started, a fatal panic first dumped every goroutine). `distkv dev` passes
// its environment to its nodes, so GODEBUG=schedtrace=2147483647 distkv dev
// runs them with it.
//
// Sysmon, the runtime's monitor thread, sleeps on a note (its "deep sleep")
// whenever every P is idle. The next system call any goroutine makes wakes
// it (a futex wake-up and a context switch), and a sysmon woken that way
// restarts its polling at 20 us, doubling the period only after 1 ms with
// nothing to do; a P it then finds in a system call for two of its polls it
// takes away and hands to another thread (more wake-ups). A node serving
// requests goes idle and busy thousands of times a second, so its sysmon
// never left the 20 us polling: under 64-client writes `perf` put 11% of each
// node's samples in sysmon, and per 4 s each node made 8,200-8,900 futex
// calls and 10,800-13,900 nanosleeps. With the setting sysmon cannot deep
// sleep (a scheduler trace must be printed on time), so no system call
// wakes it, its period grows to 10 ms and stays there: 19-26 futex calls
// and 394 nanosleeps per node in the same 4 s, CPU per write 69-73 -> 60-63
// us and 64-client writes 15.9-17.2k -> 18.5-19.6k/s in interleaved runs
// (docs/performance.md, "Settings that exist for speed"; the runs are in
// the message of the commit that added this file).
//
// The cost: an idle node's sysmon wakes every 10 ms instead of sleeping
// until the next timer (an idle dev node, 5 s: 494 nanosleeps and 647
// context switches, against 362 and 620 without; its Raft ticks wake it
// anyway); a goroutine that blocks over and over in system calls of
// milliseconds (none on the write path: the WAL's fdatasync goes through
// io_uring) keeps a GOMAXPROCS=1 node's P longer before another thread takes it over (a test
// program with 5 ms blocking calls 1 ms apart: another goroutine's lateness
// p99 0.30 -> 0.84 ms, max 0.5 -> 2.9 ms; a lone 20 ms call delays it up to
// 19 ms with or without the setting); and the period, the largest the runtime
// accepts, is 24.8 days, so a host up longer than that gets one line of
// scheduler statistics ("SCHED ...") on stderr at start and every 24.8 days;
// and every fatal panic first prints the state of every goroutine.

// sysmonSetting is the GODEBUG field of the setting.
const sysmonSetting = "schedtrace=2147483647"

// sysmonMode describes, for the start-up log, how this process's sysmon runs.
func sysmonMode() string {
	gd := os.Getenv("GODEBUG")
	for _, f := range strings.Split(gd, ",") {
		if strings.TrimSpace(f) == sysmonSetting {
			return "kept out of deep sleep (GODEBUG " + sysmonSetting + ")"
		}
	}
	return "runtime default"
}
