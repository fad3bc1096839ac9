package raftnode

import (
	"strings"
	"testing"
)

// TestTestHookNeedsItsBuild: a binary without the test hooks refuses to open
// a node when DISTKV_TESTHOOK asks for one (a self-check would otherwise pass
// against the real code), and the hook folds away in it.
func TestTestHookNeedsItsBuild(t *testing.T) {
	t.Setenv(TestHookEnv, "earlyack")
	_, err := Open(testConfig(t.TempDir()))
	if testHooksBuilt {
		if err != nil {
			t.Fatalf("open with a hook in a build that has them: %v", err)
		}
		t.Skip("built with -tags testhooks")
	}
	if err == nil || !strings.Contains(err.Error(), "no test hooks") {
		t.Fatalf("Open with %s set in a build without hooks: %v", TestHookEnv, err)
	}
	t.Setenv(TestHookEnv, "")
	n := openNode(t, testConfig(t.TempDir()))
	defer n.Stop()
	if n.hooked(hookEarlyAck) || n.hooked(hookLocalReads) {
		t.Fatal("a hook is on in the real build")
	}
}
