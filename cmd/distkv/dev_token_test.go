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
	if clusterID(ta) == clusterID(tb) {
		t.Fatalf("the two dev clusters have the same cluster id")
	}
	if err := os.WriteFile(filepath.Join(a, "cluster-token"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := devClusterToken(a); err == nil {
		t.Fatal("empty token file: want an error")
	}
}
