package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// processGODEBUG returns the GODEBUG in the environment pid runs with now
// (after any exec).
func processGODEBUG(t *testing.T, pid int) (string, bool) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := strings.CutPrefix(string(kv), "GODEBUG="); ok {
			return v, true
		}
	}
	return "", false
}

// TestServerRunsWithSysmonSetting checks that a server started without
// GODEBUG runs (same process) with cmd/distkv/sysmon.go's setting, says so
// in its start-up log, and that a GODEBUG naming schedtrace is left alone.
func TestServerRunsWithSysmonSetting(t *testing.T) {
	t.Setenv("GODEBUG", "")
	os.Unsetenv("GODEBUG")
	s := startServer(t, filepath.Join(t.TempDir(), "n1"), freePort(t))
	gd, ok := processGODEBUG(t, s.cmd.Process.Pid)
	if !ok || gd != "schedtrace=2147483647" {
		t.Fatalf("server %d runs with GODEBUG %q (set: %v), want schedtrace=2147483647", s.cmd.Process.Pid, gd, ok)
	}
	if log, _ := os.ReadFile(s.logPath); !bytes.Contains(log, []byte(`go_sysmon="kept out of deep sleep`)) {
		t.Fatalf("start-up log does not say how sysmon runs:\n%s", log)
	}
	s.stop()

	t.Setenv("GODEBUG", "schedtrace=0")
	s = startServer(t, filepath.Join(t.TempDir(), "n1"), freePort(t))
	if gd, _ := processGODEBUG(t, s.cmd.Process.Pid); gd != "schedtrace=0" {
		t.Fatalf("with GODEBUG=schedtrace=0 the server runs with GODEBUG %q", gd)
	}
	if log, _ := os.ReadFile(s.logPath); !bytes.Contains(log, []byte(`go_sysmon="runtime default`)) {
		t.Fatalf("start-up log does not say the runtime's default is used:\n%s", log)
	}
}
