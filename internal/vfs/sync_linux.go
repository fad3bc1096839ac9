//go:build linux

package vfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// SyncData is fdatasync(2): it writes back the file's data and the metadata
// needed to read it back (size, block allocation), but not timestamps. When
// neither the size nor the allocation changed, the device sees only the data
// blocks, with no inode write. It goes through an io_uring where one is
// available (see uring_linux.go), else it is the blocking system call.
func (f osFile) SyncData() error {
	// Through the descriptor's raw connection, which holds it for the
	// call: a Close meanwhile closes it after, and one before makes this
	// os.ErrClosed, never EBADF or another file's descriptor.
	rc, err := f.File.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = fdatasync(int(fd)) }); err != nil {
		// Control fails only on a closed file ("use of closed file", which
		// the os package's own methods report as os.ErrClosed).
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: os.ErrClosed}
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
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

// directFile is the O_DIRECT descriptor of an osFile, opened at its first
// aligned WriteAtSync.
type directFile struct {
	mu      sync.Mutex
	fd      int
	opened  bool // fd is open
	refused bool // no direct writes to this file (any more): get returns -1
	// users counts the writes holding fd: get's callers yet to call put.
	// Invariant: fd stays open while users > 0, so that its number cannot
	// name another file under a write; once refused, the last put closes it.
	users int
}

// get returns the direct descriptor of f, opening it if needed, or -1. A
// descriptor returned stays open until the caller gives it back with put.
func (d *directFile) get(f *os.File) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.refused {
		return -1
	}
	if !d.opened {
		// Through /proc, the descriptor names the very file f is, even if
		// its path was renamed or replaced since f was opened.
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || !overwritesInPlace(st.Type) {
			d.refused = true
			return -1
		}
		fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != nil {
			// EINVAL: the file system takes no O_DIRECT (tmpfs before
			// Linux 6.6, some FUSE file systems); or no /proc.
			d.refused = true
			return -1
		}
		d.fd, d.opened = fd, true
	}
	d.users++
	return d.fd
}

// put gives back a descriptor that get returned.
func (d *directFile) put() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users--
	if d.refused && d.users == 0 {
		d.closeLocked()
	}
}

// overwritesInPlace reports whether a file system of type magic (statfs(2))
// writes over a file's allocated blocks in place: then a direct write into
// space written before cannot find the disk full. Copy-on-write file systems
// (btrfs, zfs, bcachefs) allocate anew at every write, and many others are
// unknown here.
func overwritesInPlace(magic int64) bool {
	switch magic {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.TMPFS_MAGIC:
		return true
	}
	return false
}

// DirectWrites opens the direct descriptor if it is not open yet, and says
// whether there is one.
func (f osFile) DirectWrites() bool {
	if f.direct.get(f.File) < 0 {
		return false
	}
	f.direct.put()
	return true
}

// refuse stops direct writes to the file: get returns -1 from now on, and
// the descriptor is closed at once, or by the last put if writes hold it.
func (d *directFile) refuse() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refused = true
	if d.users == 0 {
		d.closeLocked()
	}
}

func (d *directFile) closeLocked() {
	if d.opened {
		unix.Close(d.fd)
		d.opened = false
	}
}

// WriteAtSync writes an aligned p with one direct write with RWF_DSYNC,
// through the io_uring where there is one, so the goroutine parks in the
// poller rather than a thread in the kernel; otherwise, or where the file
// system refuses it, WriteAt and SyncData.
func (f osFile) WriteAtSync(p []byte, off int64) error {
	if directAligned(p, off) {
		if fd := f.direct.get(f.File); fd >= 0 {
			err := pwriteDSync(fd, p, off)
			// A write the ring lost track of (errLost) may still be
			// running: it holds the file itself, not the descriptor, so
			// closing the descriptor cannot redirect it.
			f.direct.put()
			runtime.KeepAlive(p) // the kernel reads it until here
			if !errors.Is(err, unix.EINVAL) {
				if err != nil {
					return &os.PathError{Op: "direct write", Path: f.Name(), Err: err}
				}
				return nil
			}
			// EINVAL is the check before any I/O: the device wants a
			// larger alignment. Nothing was written.
			f.direct.refuse()
		}
	}
	return f.writeAtSync(p, off)
}

// Close closes the file, and its direct descriptor once no write holds it.
func (f osFile) Close() error {
	f.direct.refuse()
	return f.File.Close()
}

// pwriteDSync writes p at off on fd with RWF_DSYNC. A direct write may
// write less than asked (a multiple of the block size); the rest is written
// after it.
func pwriteDSync(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := pwriteDSyncOnce(fd, p, off)
		if err != nil {
			return err
		}
		if n <= 0 || n > len(p) || n%DirectAlign != 0 && n < len(p) {
			return fmt.Errorf("%w: %d of %d bytes", io.ErrShortWrite, n, len(p))
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// pwriteDSyncOnce is one write of pwriteDSync; it returns how many bytes
// were written.
func pwriteDSyncOnce(fd int, p []byte, off int64) (int, error) {
	if r := getRing(); r != nil {
		res, broken, err := r.run(uringOp{opcode: uringOpWrite, fd: fd, off: off, buf: p, flags: unix.RWF_DSYNC})
		putRing(r, broken)
		if !errors.Is(err, errNotSubmitted) {
			switch {
			case err != nil:
				return 0, err
			case res < 0:
				return 0, unix.Errno(-res)
			}
			return int(res), nil
		}
	}
	for {
		n, err := unix.Pwritev2(fd, [][]byte{p}, off, unix.RWF_DSYNC)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}
