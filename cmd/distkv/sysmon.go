package main

import (
	"os"
	"strings"
	"syscall"
)

// A server runs with GODEBUG=schedtrace=2147483647, for one side effect of
// that setting: the Go runtime's sysmon thread never enters its deep sleep.
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
// io_uring) keeps a
// GOMAXPROCS=1 node's P longer before another thread takes it over (a test
// program with 5 ms blocking calls 1 ms apart: another goroutine's lateness
// p99 0.30 -> 0.84 ms, max 0.5 -> 2.9 ms; a lone 20 ms call delays it up to
// 19 ms with or without the setting); and the period, the largest the runtime
// accepts, is 24.8 days, so a host up longer than that gets one line of
// scheduler statistics ("SCHED ...") on stderr at start and every 24.8 days.
// A GODEBUG that already names schedtrace is left as it is:
// GODEBUG=schedtrace=0 runs a node with the runtime's default.
//
// The runtime reads schedtrace only when it starts (and `//go:debug` does not
// accept it), so a server started without it replaces itself with itself,
// same arguments and process, with the setting added (reexecWithSysmon);
// `distkv dev` starts its nodes with it.

// sysmonSetting is the GODEBUG field a server runs with.
const sysmonSetting = "schedtrace=2147483647"

// godebugWithSysmon returns the GODEBUG value a server runs with, given the
// current one, and whether that differs from cur: cur itself when it names
// schedtrace already (the user's choice), else cur with sysmonSetting added.
func godebugWithSysmon(cur string) (string, bool) {
	for _, f := range strings.Split(cur, ",") {
		if strings.HasPrefix(strings.TrimSpace(f), "schedtrace=") {
			return cur, false
		}
	}
	if strings.TrimSpace(cur) == "" {
		return sysmonSetting, true
	}
	return cur + "," + sysmonSetting, true
}

// envWithSysmon returns env (NAME=value pairs) with GODEBUG as
// godebugWithSysmon makes it.
func envWithSysmon(env []string) []string {
	cur, at := "", -1
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			cur, at = v, i // the first one is the one the runtime reads
			break
		}
	}
	gd, changed := godebugWithSysmon(cur)
	if !changed {
		return env
	}
	out := append([]string(nil), env...)
	if at >= 0 {
		out[at] = "GODEBUG=" + gd
		return out
	}
	return append(out, "GODEBUG="+gd)
}

// reexecWithSysmon replaces this process with the same executable and
// arguments and GODEBUG with sysmonSetting added, unless GODEBUG names
// schedtrace already. It returns only if it did not: nil when nothing was
// to be done, else why the exec failed (the server then runs with the
// runtime's default).
func reexecWithSysmon() error {
	if _, changed := godebugWithSysmon(os.Getenv("GODEBUG")); !changed {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, envWithSysmon(os.Environ()))
}

// sysmonMode describes, for the start-up log, how this process's sysmon runs.
func sysmonMode(reexecErr error) string {
	gd := os.Getenv("GODEBUG")
	for _, f := range strings.Split(gd, ",") {
		if strings.TrimSpace(f) == sysmonSetting {
			return "kept out of deep sleep (GODEBUG " + sysmonSetting + ")"
		}
	}
	if reexecErr != nil {
		return "runtime default (restart with GODEBUG failed: " + reexecErr.Error() + ")"
	}
	return "runtime default (GODEBUG=" + gd + " sets schedtrace)"
}
