// Command distkv is the distkv server, its command-line client and its tools.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := &cobra.Command{
		Use:           "distkv",
		Short:         "A strongly consistent, replicated key-value store",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCommand(), newDevCommand(), newWALCommand(), newCertsCommand())
	root.AddCommand(newClientCommands()...)
	root.AddCommand(newBackupCommands()...)
	root.AddCommand(newEncryptionCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "distkv:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
