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

// TagsEnv names the environment variable whose value, if set, Build passes to
// go build as -tags: DISTKV_TAGS=testhooks go test ./test/chaos tests a
// build with the deliberately broken behaviours of
// internal/raftnode/testhooks.go (picked by DISTKV_TESTHOOK).
const TagsEnv = "DISTKV_TAGS"

// Build compiles ./cmd/distkv of this repository into a temporary directory
// and returns the binary's path and a function that removes it. Compiler
// output goes to stderr. The build tags in $DISTKV_TAGS, if any, are used
// and announced on stderr.
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
	args := []string{"build", "-o", path}
	if tags := os.Getenv(TagsEnv); tags != "" {
		fmt.Fprintf(os.Stderr, "distkvbin: building distkv with -tags %s\n", tags)
		args = append(args, "-tags", tags)
	}
	build := exec.Command("go", append(args, "./cmd/distkv")...)
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build distkv: %w", err)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}
