//go:build linux

package vfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A blocking fdatasync holds a thread in the kernel for the whole device
// flush (hundreds of microseconds). Go's scheduler notices after 20 us,
// hands the thread's P to another thread and keeps its sysmon thread waking
// every 20 us for as long as such calls keep coming. On a VM whose idle vCPUs
// halt, each of those wake-ups is a VM exit: under a steady stream of WAL
// syncs, sysmon alone took 15% of a follower's CPU samples. So SyncData
// submits the fdatasync to an io_uring instead and parks the goroutine on an
// eventfd the ring signals, in Go's network poller, like a socket read: no
// thread blocks, no P changes hands. Where io_uring is unavailable (an old
// kernel, kernel.io_uring_disabled, a seccomp profile that forbids it, as
// Docker's default does) or DISTKV_IO_URING=off, SyncData makes the blocking
// call, as before.
//
// Each ring runs one fdatasync at a time; concurrent SyncData calls (several
// files, several nodes in one process in tests) take rings from a pool.

const (
	uringOpFsync       = 3  // IORING_OP_FSYNC
	uringOpWrite       = 23 // IORING_OP_WRITE
	uringFsyncDatasync = 1  // IORING_FSYNC_DATASYNC
	uringOffSQRing     = 0
	uringOffCQRing     = 0x8000000
	uringOffSQEs       = 0x10000000
	uringRegEventfd    = 4 // IORING_REGISTER_EVENTFD
	uringSQESize       = 64
	uringCQESize       = 16
	uringEntries       = 4
	maxRings           = 16 // beyond this many concurrent syncs, block
)

// uringParams is struct io_uring_params (include/uapi/linux/io_uring.h).
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	// io_sqring_offsets: head, tail, ring_mask, ring_entries, flags,
	// dropped, array, resv1, user_addr (u64).
	sqOff [10]uint32
	// io_cqring_offsets: head, tail, ring_mask, ring_entries, overflow,
	// cqes, flags, resv1, user_addr (u64).
	cqOff [10]uint32
}

// uring is one io_uring with its eventfd, used by one SyncData at a time.
type uring struct {
	fd int
	ev *os.File // the eventfd, non-blocking: a read parks in the poller

	sqRing, cqRing, sqes []byte
	sqTail, sqMask       *uint32
	sqArray              unsafe.Pointer
	cqHead, cqTail       *uint32
	cqMask               *uint32
	cqes                 unsafe.Pointer
}

// rings is the pool of idle rings.
var rings struct {
	mu       sync.Mutex
	idle     []*uring
	open     int  // rings in existence
	disabled bool // io_uring refused, or switched off
	reason   error
}

func init() {
	if os.Getenv("DISTKV_IO_URING") == "off" {
		rings.disabled, rings.reason = true, errors.New("DISTKV_IO_URING=off")
	}
}

// getRing returns an idle ring, a new one, or nil: io_uring unavailable, or
// maxRings already busy.
func getRing() *uring {
	rings.mu.Lock()
	defer rings.mu.Unlock()
	if n := len(rings.idle); n > 0 {
		r := rings.idle[n-1]
		rings.idle = rings.idle[:n-1]
		return r
	}
	if rings.disabled || rings.open >= maxRings {
		return nil
	}
	r, err := newURing()
	if err != nil {
		// Refused: no io_uring in this kernel, switched off by sysctl,
		// forbidden by seccomp, or no memory for a ring. The blocking call
		// serves from here on rather than a setup attempt on every sync.
		rings.disabled, rings.reason = true, err
		return nil
	}
	rings.open++
	return r
}

// putRing returns r to the pool, or closes it if it is broken.
func putRing(r *uring, broken bool) {
	rings.mu.Lock()
	defer rings.mu.Unlock()
	if broken {
		rings.open--
		r.close()
		return
	}
	rings.idle = append(rings.idle, r)
}

// SyncMethod says how SyncData makes data durable, for the node's start-up
// log.
func SyncMethod() string {
	if on, why := uringStatus(); !on {
		return "fdatasync (io_uring unavailable: " + why.Error() + ")"
	}
	return "fdatasync through io_uring"
}

// uringStatus reports whether SyncData uses io_uring, and why not.
func uringStatus() (bool, error) {
	if r := getRing(); r != nil {
		putRing(r, false)
		return true, nil
	}
	rings.mu.Lock()
	defer rings.mu.Unlock()
	return false, rings.reason
}

func newURing() (r *uring, err error) {
	var p uringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r = &uring{fd: int(fd)}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	mmap := func(off int64, size int) ([]byte, error) {
		b, err := unix.Mmap(r.fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("mmap io_uring: %w", err)
		}
		return b, nil
	}
	if r.sqRing, err = mmap(uringOffSQRing, int(p.sqOff[6]+p.sqEntries*4)); err != nil {
		return nil, err
	}
	if r.cqRing, err = mmap(uringOffCQRing, int(p.cqOff[5]+p.cqEntries*uringCQESize)); err != nil {
		return nil, err
	}
	if r.sqes, err = mmap(uringOffSQEs, int(p.sqEntries)*uringSQESize); err != nil {
		return nil, err
	}
	r.sqTail = (*uint32)(unsafe.Pointer(&r.sqRing[p.sqOff[1]]))
	r.sqMask = (*uint32)(unsafe.Pointer(&r.sqRing[p.sqOff[2]]))
	r.sqArray = unsafe.Pointer(&r.sqRing[p.sqOff[6]])
	r.cqHead = (*uint32)(unsafe.Pointer(&r.cqRing[p.cqOff[0]]))
	r.cqTail = (*uint32)(unsafe.Pointer(&r.cqRing[p.cqOff[1]]))
	r.cqMask = (*uint32)(unsafe.Pointer(&r.cqRing[p.cqOff[2]]))
	r.cqes = unsafe.Pointer(&r.cqRing[p.cqOff[5]])

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	r.ev = os.NewFile(uintptr(efd), "io_uring eventfd")
	e := int32(efd)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uringRegEventfd,
		uintptr(unsafe.Pointer(&e)), 1, 0, 0); errno != 0 {
		return nil, fmt.Errorf("io_uring_register eventfd: %w", errno)
	}
	return r, nil
}

func (r *uring) close() {
	for _, m := range [][]byte{r.sqRing, r.cqRing, r.sqes} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	if r.ev != nil {
		r.ev.Close()
	}
	unix.Close(r.fd)
}

// errNotSubmitted: the ring did not take the operation, so nothing was done
// and a blocking call may take its place.
var errNotSubmitted = errors.New("io_uring: fdatasync not submitted")

// fdatasync runs fdatasync(fd) through the ring and returns its result. An
// error wrapping errNotSubmitted means it did not run. broken: the ring is no
// longer in a known state and must not be used again.
func (r *uring) fdatasync(fd int) (broken bool, err error) {
	res, broken, err := r.run(func(sqe []byte) {
		sqe[0] = uringOpFsync
		binary.LittleEndian.PutUint32(sqe[4:], uint32(fd))
		binary.LittleEndian.PutUint32(sqe[28:], uringFsyncDatasync)
	})
	if err == nil && res < 0 {
		err = unix.Errno(-res)
	}
	return broken, err
}

// run submits one operation, which fill writes into its zeroed submission
// entry, and waits for its completion: res is the operation's result (a
// negative errno on failure). An error wrapping errNotSubmitted means the
// ring did not take it, so it did not run. broken: the ring is no longer in a
// known state and must not be used again.
func (r *uring) run(fill func(sqe []byte)) (res int32, broken bool, err error) {
	tail := atomic.LoadUint32(r.sqTail)
	idx := tail & *r.sqMask
	sqe := r.sqes[int(idx)*uringSQESize : int(idx+1)*uringSQESize]
	clear(sqe)
	fill(sqe)
	*(*uint32)(unsafe.Add(r.sqArray, 4*uintptr(idx))) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 || n != 1 {
			// The entry is still queued in the ring, which is therefore no
			// longer in a known state: drop it.
			return 0, true, fmt.Errorf("%w: io_uring_enter: %v", errNotSubmitted, errno)
		}
		break
	}
	var buf [8]byte
	for {
		head := atomic.LoadUint32(r.cqHead)
		if head != atomic.LoadUint32(r.cqTail) {
			cqe := unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*uringCQESize)
			res := *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(r.cqHead, head+1)
			return res, false, nil
		}
		// The eventfd's count may be left from an earlier completion that
		// was found without reading it: then this read returns at once and
		// the loop looks again.
		if _, err := r.ev.Read(buf[:]); err != nil {
			return 0, true, fmt.Errorf("io_uring: waiting for a completion: %w", err)
		}
	}
}
