package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestOperationsDocNamesEveryFlag keeps docs/operations.md in step with the
// commands: every flag of `distkv server`, `distkv dev` and the client
// commands must appear there as `--name`.
func TestOperationsDocNamesEveryFlag(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds := append([]*cobra.Command{newServerCommand(), newDevCommand()}, newClientCommands()...)
	var missing []string
	seen := map[string]bool{}
	var check func(c *cobra.Command)
	check = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			name := "--" + f.Name
			if f.Name == "help" || seen[c.Name()+name] {
				return
			}
			seen[c.Name()+name] = true
			if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), "`"+name+" ") {
				missing = append(missing, c.CommandPath()+" "+name)
			}
		})
		for _, sub := range c.Commands() {
			check(sub)
		}
	}
	for _, c := range cmds {
		check(c)
	}
	if len(seen) < 30 {
		t.Fatalf("only %d flags found: the commands' flag sets were not read", len(seen))
	}
	if len(missing) > 0 {
		t.Fatalf("docs/operations.md does not mention:\n  %s", strings.Join(missing, "\n  "))
	}
}
