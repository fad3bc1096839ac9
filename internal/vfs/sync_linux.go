//go:build linux

package vfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// SyncData is fdatasync(2): it writes back the file's data and the metadata
// needed to read it back (size, block allocation), but not timestamps. When
// neither the size nor the allocation changed, the device sees only the data
// blocks, with no inode write.
func (f osFile) SyncData() error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
