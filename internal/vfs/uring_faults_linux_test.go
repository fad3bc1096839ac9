//go:build linux

package vfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// These tests keep a write in flight on a ring for as long as they like: a
// write to a pipe whose buffer is full waits until the test reads from it.
// With the ring's waits failed on purpose, they check that run hands the
// buffer back only once the kernel has taken its bytes, and that a ring is
// closed or pooled only with nothing in flight.

// faultyRing returns a new ring, counted as the pool counts its own, whose
// system calls go through faults. If the test leaves it lost (in flight, in
// rings.lost), the test's cleanup waits for the completion and closes it.
func faultyRing(t *testing.T, faults *uringFaults) *uring {
	t.Helper()
	if on, why := uringStatus(); !on {
		t.Skipf("io_uring not available here: %v", why)
	}
	r, err := newURing()
	if err != nil {
		t.Skipf("io_uring not available here: %v", err)
	}
	r.faults = faults
	rings.mu.Lock()
	rings.open++
	rings.mu.Unlock()
	t.Cleanup(func() {
		rings.mu.Lock()
		defer rings.mu.Unlock()
		if i := slices.Index(rings.idle, r); i >= 0 {
			rings.idle = slices.Delete(rings.idle, i, i+1)
			rings.open--
			r.close()
			return
		}
		i := slices.Index(rings.lost, r)
		if i < 0 {
			return
		}
		if _, ok := waitCompletion(r, r.seq); !ok {
			t.Errorf("the lost ring's operation %d never completed; leaving the ring open", r.seq)
			return
		}
		rings.lost = slices.Delete(rings.lost, i, i+1)
		rings.open--
		r.close()
	})
	return r
}

// waitCompletion looks in r's completion queue, without taking anything
// from it, for the completion of submission seq, for up to 10 s.
func waitCompletion(r *uring, seq uint64) (res int32, ok bool) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for h := atomic.LoadUint32(r.cqHead); h != atomic.LoadUint32(r.cqTail); h++ {
			cqe := unsafe.Add(r.cqes, uintptr(h&*r.cqMask)*uringCQESize)
			if *(*uint64)(cqe) == seq {
				return *(*int32)(unsafe.Add(cqe, 8)), true
			}
		}
		time.Sleep(time.Millisecond)
	}
	return 0, false
}

// fullPipe returns a blocking pipe (so that the ring waits for room rather
// than failing with EAGAIN) whose buffer is full, and how many bytes fill it.
func fullPipe(t *testing.T) (rfd, wfd, filled int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	if err := unix.SetNonblock(p[1], true); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		n, err := unix.Write(p[1], chunk)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		filled += n
	}
	if err := unix.SetNonblock(p[1], false); err != nil {
		t.Fatal(err)
	}
	return p[0], p[1], filled
}

// pipeHolds returns how many bytes wait in the pipe read from rfd.
func pipeHolds(t *testing.T, rfd int) int {
	t.Helper()
	n, err := unix.IoctlGetInt(rfd, unix.TIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// drain reads the filler from the pipe, which makes room for the write in
// flight, then returns the n bytes after it.
func drain(t *testing.T, rfd, filled, n int) []byte {
	t.Helper()
	buf := make([]byte, filled+n)
	for got := 0; got < len(buf); {
		fds := []unix.PollFd{{Fd: int32(rfd), Events: unix.POLLIN}}
		if k, err := unix.Poll(fds, 10_000); err != nil && err != unix.EINTR || k == 0 {
			t.Fatalf("pipe: %d of %d bytes after 10 s (poll: %v)", got, len(buf), err)
		}
		k, err := unix.Read(rfd, buf[got:])
		if err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		got += max(k, 0)
	}
	return buf[filled:]
}

// pattern returns n bytes that no zeroed or reused buffer holds.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// runResult is what (*uring).run returned.
type runResult struct {
	res    int32
	broken bool
	err    error
}

// signal sends on c without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// When a wait for a completion fails, run waits by another means for the
// completion and returns only then: the buffer of a write that was still in
// flight is not handed back before the kernel has taken its bytes, the
// result is the write's own, and the ring, which misbehaved, is closed only
// once nothing is in flight.
func TestURingFailedWaitKeepsWaiting(t *testing.T) {
	for _, tc := range []struct {
		name string
		// faults fails one of the ring's calls and signals waiting when run
		// waits for the completion in the way that is left.
		faults func(waiting chan struct{}) *uringFaults
	}{{
		name: "eventfd read fails",
		faults: func(waiting chan struct{}) *uringFaults {
			return &uringFaults{
				readEvent: func(func() error) error { return ErrInjected },
				enter: func(real func(uint32, uint32, uint32) error, toSubmit, minComplete, flags uint32) error {
					if flags&uringEnterGetEvents != 0 {
						signal(waiting)
					}
					return real(toSubmit, minComplete, flags)
				},
			}
		},
	}, {
		name: "io_uring_enter fails after taking the entry",
		faults: func(waiting chan struct{}) *uringFaults {
			return &uringFaults{
				enter: func(real func(uint32, uint32, uint32) error, toSubmit, minComplete, flags uint32) error {
					if err := real(toSubmit, minComplete, flags); err != nil || toSubmit == 0 {
						return err
					}
					return unix.EIO
				},
				readEvent: func(real func() error) error {
					signal(waiting)
					return real()
				},
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			waiting := make(chan struct{}, 1)
			r := faultyRing(t, tc.faults(waiting))
			rfd, wfd, filled := fullPipe(t)
			buf := pattern(4096)
			done := make(chan runResult, 1)
			go func() {
				res, broken, err := r.run(uringOp{opcode: uringOpWrite, fd: wfd, buf: buf})
				done <- runResult{res, broken, err}
			}()
			select {
			case got := <-done:
				t.Fatalf("run returned %+v while its write was in flight", got)
			case <-waiting:
			case <-time.After(10 * time.Second):
				t.Fatal("run neither returned nor waited for the completion after the failure in 10 s")
			}
			select {
			case got := <-done:
				t.Fatalf("run returned %+v while its write was in flight", got)
			default:
			}
			if got := drain(t, rfd, filled, len(buf)); !bytes.Equal(got, buf) {
				t.Fatalf("the pipe got %q, want the buffer's bytes", got[:32])
			}
			var got runResult
			select {
			case got = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("run did not return in 10 s after its write completed")
			}
			if got.err != nil || got.res != int32(len(buf)) || !got.broken {
				t.Fatalf("run = %+v, want the write's result %d, no error, and the ring broken", got, len(buf))
			}
			if r.inflight || r.pinned != nil {
				t.Fatal("the ring still counts the reaped write as in flight")
			}
			putRing(r, got.broken)
			rings.mu.Lock()
			pooled := slices.Contains(rings.idle, r) || slices.Contains(rings.lost, r)
			rings.mu.Unlock()
			if pooled || r.fd >= 0 || r.cqRing != nil {
				t.Fatalf("the broken ring, with nothing in flight, was kept (pooled %v, fd %d)", pooled, r.fd)
			}
		})
	}
}

// When io_uring_enter fails without taking the entry, the operation did not
// run and never will: run says so (errNotSubmitted, so that the blocking
// call takes its place) and withdraws the entry.
func TestURingFailedEnterBeforeSubmission(t *testing.T) {
	r := faultyRing(t, &uringFaults{
		enter: func(real func(uint32, uint32, uint32) error, toSubmit, minComplete, flags uint32) error {
			return unix.EAGAIN
		},
	})
	rfd, wfd, filled := fullPipe(t)
	_, broken, err := r.run(uringOp{opcode: uringOpWrite, fd: wfd, buf: pattern(4096)})
	if !errors.Is(err, errNotSubmitted) || !broken {
		t.Fatalf("run = %v (broken %v), want errNotSubmitted and the ring broken", err, broken)
	}
	if r.inflight || atomic.LoadUint32(r.sqTail) != atomic.LoadUint32(r.sqHead) {
		t.Fatal("the entry the kernel did not take is still queued")
	}
	// Were the entry still queued, this call would take it, and the write
	// would land in the room made for it.
	unix.Read(rfd, make([]byte, 4096))
	if err := r.enterSyscall(1, 0, 0); err != nil {
		t.Fatal(err)
	}
	if n := pipeHolds(t, rfd); n != filled-4096 {
		t.Fatalf("the pipe holds %d bytes, want %d: the write was not withdrawn", n, filled-4096)
	}
	putRing(r, broken)
	if r.fd >= 0 {
		t.Fatal("the broken ring was kept")
	}
}

// When no wait for the completion is left, or the completion found is not
// the operation's, run gives up with errLost while the write is in flight:
// the ring is then neither closed nor pooled but kept, mapped, with the
// buffer, and the kernel completes the write from the buffer later.
func TestURingLosesTrack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults *uringFaults
		// before runs before the write is submitted.
		before func(t *testing.T, r *uring)
	}{{
		name: "eventfd read and io_uring_enter fail",
		faults: &uringFaults{
			readEvent: func(func() error) error { return ErrInjected },
			enter: func(real func(uint32, uint32, uint32) error, toSubmit, minComplete, flags uint32) error {
				if flags&uringEnterGetEvents != 0 {
					return unix.EBADF
				}
				return real(toSubmit, minComplete, flags)
			},
		},
	}, {
		name:   "a completion with another user_data",
		faults: &uringFaults{},
		before: submitStrayNop,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := faultyRing(t, tc.faults)
			rfd, wfd, filled := fullPipe(t)
			if tc.before != nil {
				tc.before(t, r)
			}
			buf := pattern(4096)
			res, broken, err := r.run(uringOp{opcode: uringOpWrite, fd: wfd, buf: buf})
			if !errors.Is(err, errLost) || !broken || res != 0 {
				t.Fatalf("run = %d, %v (broken %v), want errLost and the ring broken", res, err, broken)
			}
			if pipeHolds(t, rfd) != filled {
				t.Fatal("the write completed early; this test needs it in flight")
			}
			if !r.inflight || unsafe.SliceData(r.pinned) != unsafe.SliceData(buf) {
				t.Fatal("the ring does not hold the write in flight and its buffer")
			}
			putRing(r, broken)
			rings.mu.Lock()
			lost, idle := slices.Contains(rings.lost, r), slices.Contains(rings.idle, r)
			rings.mu.Unlock()
			if !lost || idle || r.fd < 0 || r.cqRing == nil {
				t.Fatalf("putRing of a ring with a write in flight: lost %v, pooled %v, fd %d", lost, idle, r.fd)
			}
			if got := getRing(); got == r {
				t.Fatal("getRing handed out the lost ring")
			} else if got != nil {
				putRing(got, false)
			}
			// The kernel was still to write the buffer: it does so now,
			// and completes the write on the kept ring, under its own
			// user_data.
			if got := drain(t, rfd, filled, len(buf)); !bytes.Equal(got, buf) {
				t.Fatalf("the pipe got %q, want the buffer's bytes", got[:32])
			}
			if res, ok := waitCompletion(r, r.seq); !ok || res != int32(len(buf)) {
				t.Fatalf("completion of the write: %d (found %v), want %d", res, ok, len(buf))
			}
		})
	}
}

// submitStrayNop submits a no-op on r behind run's back, under a user_data
// run never uses, and waits until its completion is in the queue.
func submitStrayNop(t *testing.T, r *uring) {
	t.Helper()
	const stray = 1 << 63
	tail := atomic.LoadUint32(r.sqTail)
	idx := tail & *r.sqMask
	sqe := r.sqes[int(idx)*uringSQESize : int(idx+1)*uringSQESize]
	clear(sqe) // opcode 0: IORING_OP_NOP
	binary.LittleEndian.PutUint64(sqe[32:], stray)
	*(*uint32)(unsafe.Add(r.sqArray, 4*uintptr(idx))) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	if err := r.enterSyscall(1, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitCompletion(r, stray); !ok {
		t.Fatal("the no-op never completed")
	}
}

// A direct write whose ring loses track of it fails WriteAtSync with an error
// (which the WAL treats as fatal), never with success, and the ring is kept.
func TestWriteAtSyncLostRing(t *testing.T) {
	f, err := Default.Create(t.TempDir() + "/data")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.DirectWrites() {
		t.Skip("this file system refuses O_DIRECT")
	}
	// The kernel may complete a small direct write while it is being
	// submitted; then run finds the completion at once, never waits, and the
	// write succeeds. Only a write still in flight after submission meets
	// the injected failures, so try a few times.
	for attempt := 1; attempt <= 20; attempt++ {
		r := faultyRing(t, &uringFaults{
			readEvent: func(func() error) error { return ErrInjected },
			enter: func(real func(uint32, uint32, uint32) error, toSubmit, minComplete, flags uint32) error {
				if flags&uringEnterGetEvents != 0 {
					return unix.EBADF
				}
				return real(toSubmit, minComplete, flags)
			},
		})
		rings.mu.Lock()
		rings.idle = append(rings.idle, r) // the next ring taken
		rings.mu.Unlock()
		err = f.WriteAtSync(AlignedBuffer(DirectAlign), 0)
		rings.mu.Lock()
		lost := slices.Contains(rings.lost, r)
		rings.mu.Unlock()
		if err == nil {
			if lost {
				t.Fatal("a ring whose write completed was kept as lost")
			}
			t.Logf("attempt %d: the write completed during submission", attempt)
			continue
		}
		if !errors.Is(err, errLost) {
			t.Fatalf("WriteAtSync on a ring that lost the write = %v, want errLost", err)
		}
		if !lost {
			t.Fatal("the ring that lost the write was not kept")
		}
		return
	}
	t.Skip("every write completed during submission; TestURingLosesTrack covers the wait with a write held in flight")
}
