package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
)

// prepareDataDir creates a node's data directory, mode 0700, if it does not
// exist, and warns if an existing one is open to other users: it holds every
// value written, and (with encryption at rest) the wrapped data keys.
func prepareDataDir(dir string, logger *slog.Logger) error {
	st, err := os.Stat(dir)
	if errors.Is(err, iofs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	warnIfShared(logger, dir, "data directory")
	return nil
}

// warnIfShared logs a warning if path (what names it) may be read or written
// by users other than its owner.
func warnIfShared(logger *slog.Logger, path, what string) {
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		logger.Warn(what+" is open to other users: chmod "+fmt.Sprintf("%o", perm&0o700)+" it",
			"path", path, "mode", fmt.Sprintf("%04o", perm))
	}
}
