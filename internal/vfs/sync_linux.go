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
	if err := fdatasync(int(f.Fd())); err != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
	}
	runtime.KeepAlive(f.File) // its descriptor is in use until here
	return nil
}

func fdatasync(fd int) error {
	if r := getRing(); r != nil {
		broken, err := r.fdatasync(fd)
		putRing(r, broken)
		if !errors.Is(err, errNotSubmitted) {
			return err
		}
		// Not submitted, so nothing ran: the blocking call takes its place.
	}
	for {
		if err := unix.Fdatasync(fd); err != unix.EINTR {
			return err
		}
	}
}
