package raftnode

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestIdleCostOfManyGroups measures what groups that serve nothing cost: it
// opens DISTKV_IDLE_GROUPS groups on each of three Hosts (in one process, on
// a memNet), waits until every group has a leader and has settled, then
// reports the CPU the process uses over DISTKV_IDLE_SECONDS (default 10) and
// the memory per group. It is a measurement, run by hand (bench/README.md):
//
//	DISTKV_IDLE_GROUPS=10000 go test -run TestIdleCostOfManyGroups -v -timeout 30m ./internal/raftnode/
func TestIdleCostOfManyGroups(t *testing.T) {
	groups, _ := strconv.Atoi(os.Getenv("DISTKV_IDLE_GROUPS"))
	if groups <= 0 {
		t.Skip("set DISTKV_IDLE_GROUPS to measure")
	}
	seconds := 10
	if s, err := strconv.Atoi(os.Getenv("DISTKV_IDLE_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutinesBefore := runtime.NumGoroutine()

	c := newHostCluster(t, 3, func(cfg *Config) { cfg.TickInterval = 100 * time.Millisecond; cfg.Quiesce = true })
	for _, m := range c.members {
		c.open(m.Name)
	}
	start := time.Now()
	for s := uint64(1); s <= uint64(groups); s++ {
		for _, m := range c.members {
			if _, err := c.hosts[m.Name].OpenGroup(c.groupConfig(s)); err != nil {
				t.Fatalf("open group %d on %s: %v", s, m.Name, err)
			}
		}
	}
	t.Logf("opened %d groups on 3 hosts in %v", groups, time.Since(start).Round(time.Millisecond))
	deadline := time.Now().Add(time.Duration(groups)*10*time.Millisecond + time.Minute)
	for s := uint64(1); s <= uint64(groups); s++ {
		for c.hosts["n1"].Group(s).Status().Leader == "" {
			if time.Now().After(deadline) {
				t.Fatalf("group %d has no leader", s)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("every group has a leader after %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(5 * time.Second) // settle: the last elections' rounds, snapshots of nothing

	quiet := 0
	for _, h := range c.hosts {
		for _, g := range h.Groups() {
			if g.Quiesced() {
				quiet++
			}
		}
	}
	t.Logf("%d of %d replicas quiesced", quiet, 3*groups)

	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	wall := time.Now()
	time.Sleep(time.Duration(seconds) * time.Second)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	elapsed := time.Since(wall)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	replicas := 3 * groups
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	stack := int64(after.StackInuse) - int64(before.StackInuse)
	t.Logf("idle: %d groups x 3 hosts: CPU %.2f%% of one core per host (%.2f%% for the process over %v)",
		groups, 100*cpu.Seconds()/elapsed.Seconds()/3, 100*cpu.Seconds()/elapsed.Seconds(), elapsed.Round(time.Millisecond))
	defer func(start time.Time) { t.Logf("closed the hosts in %v", time.Since(start).Round(time.Millisecond)) }(time.Now())
	defer c.closeAll()
	t.Logf("memory: heap %d MiB + stacks %d MiB for %d replicas: %d KiB heap + %d KiB stack per replica; %d goroutines (%d per replica)",
		heap>>20, stack>>20, replicas, heap/int64(replicas)>>10, stack/int64(replicas)>>10,
		runtime.NumGoroutine()-goroutinesBefore, (runtime.NumGoroutine()-goroutinesBefore)/replicas)
}
