// Package distkvbin builds the distkv binary once for a package of system
// tests that run it as real processes.
package distkvbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Build compiles ./cmd/distkv of this repository into a temporary directory
// and returns the binary's path and a function that removes it. Compiler
// output goes to stderr.
func Build() (path string, cleanup func(), err error) {
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		return "", nil, fmt.Errorf("cannot locate the repository")
	}
	root := filepath.Join(filepath.Dir(here), "..", "..")
	dir, err := os.MkdirTemp("", "distkv-bin")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, "distkv")
	build := exec.Command("go", "build", "-o", path, "./cmd/distkv")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build distkv: %w", err)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}
