package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A dev cluster's token is made up once per data directory and kept: two
// data directories get different tokens, a restart the same one.
func TestDevClusterToken(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	ta, err := devClusterToken(a)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := devClusterToken(b)
	if err != nil {
		t.Fatal(err)
	}
	if ta == tb || !strings.HasPrefix(ta, "dev-") {
		t.Fatalf("tokens %q and %q: want two different dev- tokens", ta, tb)
	}
	again, err := devClusterToken(a)
	if err != nil {
		t.Fatal(err)
	}
	if again != ta {
		t.Fatalf("restart: token %q, want the kept %q", again, ta)
	}
	if tokenID(ta) == tokenID(tb) {
		t.Fatalf("the two dev clusters have the same cluster id")
	}
	if err := os.WriteFile(filepath.Join(a, "cluster-token"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := devClusterToken(a); err == nil {
		t.Fatal("empty token file: want an error")
	}
}

// Nodes of a dev cluster split the machine's CPUs between them.
func TestNodeProcs(t *testing.T) {
	for _, tc := range []struct{ cpus, nodes, want int }{
		{2, 3, 1}, {1, 3, 1}, {8, 3, 2}, {8, 1, 8}, {64, 5, 12}, {4, 4, 1},
	} {
		if got := nodeProcs(tc.cpus, tc.nodes); got != tc.want {
			t.Errorf("nodeProcs(%d cpus, %d nodes) = %d, want %d", tc.cpus, tc.nodes, got, tc.want)
		}
	}
}
