package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// processEnv returns the environment pid runs with now (after any exec).
func processEnv(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}) {
		env = append(env, string(kv))
	}
	return env
}

// TestServerKeepsItsEnvironment: a server started plainly runs with exactly
// the environment it was started with (it used to re-execute itself with a
// GODEBUG setting added) and says in its start-up log that the runtime's
// default sysmon is used; the opt-in GODEBUG setting is honoured and named.
func TestServerKeepsItsEnvironment(t *testing.T) {
	t.Setenv("GODEBUG", "")
	os.Unsetenv("GODEBUG")
	s := startServer(t, filepath.Join(t.TempDir(), "n1"), freePort(t))
	if got, want := processEnv(t, s.cmd.Process.Pid), s.cmd.Environ(); !slices.Equal(got, want) {
		t.Fatalf("server %d runs with environment\n%q\nbut was started with\n%q", s.cmd.Process.Pid, got, want)
	}
	if log, _ := os.ReadFile(s.logPath); !bytes.Contains(log, []byte(`go_sysmon="runtime default"`)) {
		t.Fatalf("start-up log does not say the runtime's default is used:\n%s", log)
	}
	s.stop()

	t.Setenv("GODEBUG", "schedtrace=2147483647")
	s = startServer(t, filepath.Join(t.TempDir(), "n1"), freePort(t))
	env := processEnv(t, s.cmd.Process.Pid)
	if !slices.Contains(env, "GODEBUG=schedtrace=2147483647") {
		t.Fatalf("server runs with %q", env)
	}
	if log, _ := os.ReadFile(s.logPath); !bytes.Contains(log, []byte(`go_sysmon="kept out of deep sleep`)) {
		t.Fatalf("start-up log does not name the setting:\n%s", log)
	}
	if strings.Count(strings.Join(env, "\n"), "GODEBUG=") != 1 {
		t.Fatalf("GODEBUG set more than once: %q", env)
	}
}
