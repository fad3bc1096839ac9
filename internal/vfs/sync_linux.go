//go:build linux

package vfs

import (
	"errors"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// SyncData is fdatasync(2): it writes back the file's data and the metadata
// needed to read it back (size, block allocation), but not timestamps. When
// neither the size nor the allocation changed, the device sees only the data
// blocks, with no inode write. It goes through an io_uring where one is
// available (see uring_linux.go), else it is the blocking system call.
func (f osFile) SyncData() error {
	if r := getRing(); r != nil {
		broken, err := r.fdatasync(int(f.Fd()))
		runtime.KeepAlive(f.File) // its descriptor is in use until here
		putRing(r, broken)
		if !errors.Is(err, errNotSubmitted) {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
		// Not submitted, so nothing ran: the blocking call takes its place.
	}
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
