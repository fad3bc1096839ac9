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
// Each ring runs one operation at a time; concurrent SyncData calls (several
// files, several nodes in one process in tests) take rings from a pool. The
// kernel may read a write's buffer and write a completion until the
// operation is done, whatever befalls the calls that wait for it: a ring is
// handed back, reused or closed, and a buffer returned to its caller, only
// once the completion (matched to its submission by user_data) is reaped.
// See run for what happens when that cannot be known.

const (
	uringOpFsync        = 3  // IORING_OP_FSYNC
	uringOpWrite        = 23 // IORING_OP_WRITE
	uringFsyncDatasync  = 1  // IORING_FSYNC_DATASYNC
	uringEnterGetEvents = 1  // IORING_ENTER_GETEVENTS
	uringOffSQRing      = 0
	uringOffCQRing      = 0x8000000
	uringOffSQEs        = 0x10000000
	uringRegEventfd     = 4 // IORING_REGISTER_EVENTFD
	uringSQESize        = 64
	uringCQESize        = 16
	uringEntries        = 4
	maxRings            = 16 // beyond this many concurrent syncs, block
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

// uring is one io_uring with its eventfd, used by one caller at a time.
type uring struct {
	fd int
	ev *os.File // the eventfd, non-blocking: a read parks in the poller

	sqRing, cqRing, sqes []byte
	sqHead, sqTail       *uint32
	sqMask               *uint32
	sqArray              unsafe.Pointer
	cqHead, cqTail       *uint32
	cqMask               *uint32
	cqes                 unsafe.Pointer

	// seq is the user_data of the last operation submitted; its completion
	// must carry the same.
	seq uint64
	// inflight: the kernel may hold an operation of this ring whose
	// completion has not been reaped, and pinned is the memory it uses.
	// Invariant: while inflight, the ring is neither unmapped, closed nor
	// handed to another caller (putRing keeps it in rings.lost for good),
	// and pinned keeps the operation's buffer from being freed.
	inflight bool
	pinned   []byte

	faults *uringFaults // tests only; nil otherwise
}

// uringFaults stands in for a ring's system calls in tests, to fail them.
// Each is given the real call, which it may make or not.
type uringFaults struct {
	enter     func(real func(toSubmit, minComplete, flags uint32) error, toSubmit, minComplete, flags uint32) error
	readEvent func(real func() error) error
}

// rings is the pool of idle rings.
var rings struct {
	mu   sync.Mutex
	idle []*uring
	// lost holds the rings that lost track of an operation (see
	// (*uring).run): kept, mapped and open, until the process exits.
	lost     []*uring
	open     int  // rings in existence, lost ones included
	disabled bool // io_uring refused, or switched off
	reason   error
}

func init() {
	if os.Getenv("DISTKV_IO_URING") == "off" {
		rings.disabled, rings.reason = true, errors.New("DISTKV_IO_URING=off")
	}
}

// getRing returns an idle ring, a new one, or nil: io_uring unavailable, or
// maxRings already busy (or lost).
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

// putRing returns r to the pool, or closes it if it is broken. A ring with
// an operation in flight is neither: it is lost, and kept.
func putRing(r *uring, broken bool) {
	rings.mu.Lock()
	defer rings.mu.Unlock()
	switch {
	case r.inflight:
		// The kernel may still read the operation's buffer and write its
		// completion: unmapping the ring or reusing it could mistake that
		// completion for another's. The ring still counts towards
		// maxRings, so at most that many are ever lost; after that every
		// sync makes the blocking call.
		rings.lost = append(rings.lost, r)
	case broken:
		rings.open--
		r.close()
	default:
		rings.idle = append(rings.idle, r)
	}
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
	r.sqHead = (*uint32)(unsafe.Pointer(&r.sqRing[p.sqOff[0]]))
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

// close unmaps and closes r. Nothing of r may be in flight (r.inflight).
func (r *uring) close() {
	for _, m := range [][]byte{r.sqRing, r.cqRing, r.sqes} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.sqRing, r.cqRing, r.sqes = nil, nil, nil
	if r.ev != nil {
		r.ev.Close()
	}
	unix.Close(r.fd)
	r.fd = -1
}

// errNotSubmitted: the ring did not take the operation, so nothing was done
// and a blocking call may take its place.
var errNotSubmitted = errors.New("io_uring: operation not submitted")

// errLost: the ring lost track of a submitted operation (no way left to wait
// for its completion, or a completion that is not its own), so whether and
// when it runs is unknown. The caller must treat it as fatal and neither
// change the operation's buffer nor write its range again.
var errLost = errors.New("io_uring: lost track of an operation in flight")

// uringOp is one operation for run: the fields of its submission entry.
type uringOp struct {
	opcode uint8
	fd     int
	off    int64
	buf    []byte // the data of a write
	flags  uint32 // fsync_flags, rw_flags
}

// fdatasync runs fdatasync(fd) through the ring and returns its result. An
// error wrapping errNotSubmitted means it did not run. broken: the ring is no
// longer in a known state and must not be used again.
func (r *uring) fdatasync(fd int) (broken bool, err error) {
	res, broken, err := r.run(uringOp{opcode: uringOpFsync, fd: fd, flags: uringFsyncDatasync})
	if err == nil && res < 0 {
		err = unix.Errno(-res)
	}
	return broken, err
}

// run submits op and waits for its completion: res is the operation's result
// (a negative errno on failure). broken: the ring must not be used again;
// putRing closes it, or keeps it for good if the operation is still in
// flight. The error is one of:
//   - nil: res is the operation's own result, from its completion.
//   - wrapping errNotSubmitted: the kernel did not take it, so it did not
//     run; a blocking call may take its place.
//   - wrapping errLost: it was submitted, and its completion could not be
//     waited for, or did not match. The ring keeps op.buf (so that it is not
//     freed while the kernel may read it) and putRing keeps the ring; the
//     caller must treat the error as fatal and not write op.buf again.
//
// run returns op.buf to the caller (with nil or errNotSubmitted) only once
// the kernel is known to be done with it.
func (r *uring) run(op uringOp) (res int32, broken bool, err error) {
	tail := atomic.LoadUint32(r.sqTail)
	idx := tail & *r.sqMask
	sqe := r.sqes[int(idx)*uringSQESize : int(idx+1)*uringSQESize]
	clear(sqe)
	sqe[0] = op.opcode
	binary.LittleEndian.PutUint32(sqe[4:], uint32(op.fd))
	binary.LittleEndian.PutUint64(sqe[8:], uint64(op.off))
	if len(op.buf) > 0 {
		binary.LittleEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(unsafe.SliceData(op.buf)))))
		binary.LittleEndian.PutUint32(sqe[24:], uint32(len(op.buf)))
	}
	binary.LittleEndian.PutUint32(sqe[28:], op.flags)
	r.seq++
	binary.LittleEndian.PutUint64(sqe[32:], r.seq)
	*(*uint32)(unsafe.Add(r.sqArray, 4*uintptr(idx))) = idx
	r.inflight, r.pinned = true, op.buf
	atomic.StoreUint32(r.sqTail, tail+1)
	for {
		err := r.enter(1, 0, 0)
		// The kernel moves the head past the entry when it takes it, even
		// if the call then reports an error: the head, not the result,
		// says whether the operation is in flight.
		if atomic.LoadUint32(r.sqHead) != tail {
			if err != nil {
				broken = true
			}
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err == nil {
			err = errors.New("no entry taken")
		}
		// The entry is still queued: withdraw it, so that nothing is in
		// flight and no later call can submit it.
		atomic.StoreUint32(r.sqTail, tail)
		r.inflight, r.pinned = false, nil
		return 0, true, fmt.Errorf("%w: io_uring_enter: %v", errNotSubmitted, err)
	}
	// The operation is in flight: from here, run returns only with its
	// completion reaped, or with errLost.
	var evErr error
	for {
		head := atomic.LoadUint32(r.cqHead)
		if head != atomic.LoadUint32(r.cqTail) {
			cqe := unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*uringCQESize)
			if ud := *(*uint64)(cqe); ud != r.seq {
				// Not this operation's completion, though it is the
				// only one submitted: the ring is not what run thinks
				// it is, and this operation may still be running.
				return 0, true, fmt.Errorf("%w: completion for submission %d, want %d", errLost, ud, r.seq)
			}
			res := *(*int32)(unsafe.Add(cqe, 8))
			atomic.StoreUint32(r.cqHead, head+1)
			r.inflight, r.pinned = false, nil
			return res, broken, nil
		}
		if evErr == nil {
			// The eventfd's count may be left from an earlier completion
			// that was found without reading it: then this read returns
			// at once and the loop looks again.
			if evErr = r.readEvent(); evErr == nil {
				continue
			}
			broken = true
		}
		// The eventfd failed, but the operation runs on: returning now
		// would hand its buffer back while the kernel may still read it,
		// and a later write of the same range could land before this one.
		// Wait in io_uring_enter instead, which blocks a thread, as the
		// system call would. Should that fail too, no way is left to know
		// when the kernel is done. Then the ring and the buffer are kept
		// for good (see putRing) and the caller gets errLost, which the
		// WAL takes as it takes a failed sync: it fails every later
		// Append and writes nothing more, so the buffer is not written
		// again and the node stops. Blocking forever instead would hang
		// the node without a word of why.
		if err := r.enter(0, 1, uringEnterGetEvents); err != nil && err != unix.EINTR {
			return 0, true, fmt.Errorf("%w: waiting for its completion: eventfd: %v; io_uring_enter: %v", errLost, evErr, err)
		}
	}
}

// enter is io_uring_enter(2) on r, without its count.
func (r *uring) enter(toSubmit, minComplete, flags uint32) error {
	if r.faults != nil && r.faults.enter != nil {
		return r.faults.enter(r.enterSyscall, toSubmit, minComplete, flags)
	}
	return r.enterSyscall(toSubmit, minComplete, flags)
}

func (r *uring) enterSyscall(toSubmit, minComplete, flags uint32) error {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// readEvent reads r's eventfd, parking in the poller until a completion
// signals it.
func (r *uring) readEvent() error {
	if r.faults != nil && r.faults.readEvent != nil {
		return r.faults.readEvent(r.readEventfd)
	}
	return r.readEventfd()
}

func (r *uring) readEventfd() error {
	var buf [8]byte
	_, err := r.ev.Read(buf[:])
	return err
}
