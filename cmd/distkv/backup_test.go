package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/distkv/distkv/internal/raftnode"
)

// The backup commands' flags are documented in docs/operations.md, as
// TestOperationsDocNamesEveryFlag requires of the others.
func TestOperationsDocNamesBackupFlags(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range newBackupCommands() {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if name := "`--" + f.Name; f.Name != "help" && !strings.Contains(string(doc), name+"`") && !strings.Contains(string(doc), name+" ") {
				t.Errorf("docs/operations.md does not mention %s --%s", c.Name(), f.Name)
			}
		})
	}
}

// Every member restored from one backup onto one member list derives the
// same cluster id, whatever the order of --cluster; another backup or
// another list gives another.
func TestRestoreClusterIDDerivation(t *testing.T) {
	a := []raftnode.Member{{Name: "r1", Peer: "h1:1"}, {Name: "r2", Peer: "h2:1"}}
	b := []raftnode.Member{{Name: "r2", Peer: "h2:1"}, {Name: "r1", Peer: "h1:1"}}
	n1, n2 := [16]byte{1}, [16]byte{2}
	if newClusterIDFor(n1, a) != newClusterIDFor(n1, b) {
		t.Fatal("the member order changed the id")
	}
	if newClusterIDFor(n1, a) == newClusterIDFor(n2, a) {
		t.Fatal("two backups gave one id")
	}
	if newClusterIDFor(n1, a) == newClusterIDFor(n1, a[:1]) {
		t.Fatal("two member lists gave one id")
	}
}
