//go:build linux

package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkDurableAppend measures the ways to make a small record appended to
// a zero-filled log durable: what the WAL does (a write into the page cache,
// then fdatasync, through the ring or blocking) against one O_DIRECT write of
// the 4 KB blocks the record touches with RWF_DSYNC (through the ring or
// blocking), which leaves no dirty page to write back and, through the ring,
// no worker thread to wake before the device sees the data.
//
// Alone, on the 2-core test VM (2026-12-03, 2000 records, two runs): through
// the ring 159-162 us buffered vs 140-144 us direct back to back, 192-199 vs
// 194-224 us with 200 us idle between records. Three processes at once, as the
// three nodes of `distkv dev` sync on one disk, the direct write gains more:
//
//	go test -c -o /tmp/vfs.test ./internal/vfs
//	for i in 1 2 3; do GOMAXPROCS=1 /tmp/vfs.test -test.run '^$' \
//	    -test.bench 'DurableAppend/direct-dsync-ring/idle' -test.benchtime 2000x & done; wait
//
// gave 182-249 us per record against 232-332 us for buffered-fdatasync-ring
// (two runs each; back to back 182-205 vs 208-300 us).
func BenchmarkDurableAppend(b *testing.B) {
	for _, idle := range []bool{false, true} {
		for _, mode := range []string{"buffered-fdatasync-ring", "buffered-fdatasync-blocking", "direct-dsync-ring", "direct-dsync-blocking"} {
			name := mode
			if idle {
				name += "/idle-200us"
			}
			b.Run(name, func(b *testing.B) { benchDurableAppend(b, mode, idle) })
		}
	}
}

// benchDurableAppend appends b.N records of 400 bytes, each made durable
// before the next; with idle, the process sleeps 200 us (not timed) between
// them, as a node with one client does, so that each sync starts from idle.
func benchDurableAppend(b *testing.B, mode string, idle bool) {
	const (
		recSize = 400
		block   = 4096
	)
	path := filepath.Join(b.TempDir(), "log")
	size := int64(b.N+1)*recSize + 2*block
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, size)); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	fd := int(f.Fd())
	direct := mode == "direct-dsync-ring" || mode == "direct-dsync-blocking"
	if direct {
		dfd, err := unix.Open(path, unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EINVAL) {
			b.Skipf("O_DIRECT not supported on %s", filepath.Dir(path))
		}
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(dfd)
		fd = dfd
	}
	var r *uring
	if mode == "buffered-fdatasync-ring" || mode == "direct-dsync-ring" {
		if r = getRing(); r == nil {
			_, why := uringStatus()
			b.Skipf("io_uring not available here: %v", why)
		}
		defer putRing(r, false)
	}
	// tail holds the block the next record starts in, and the one after,
	// aligned in memory as O_DIRECT requires.
	raw := make([]byte, 3*block)
	tail := raw[block-int(uintptr(unsafe.Pointer(&raw[0]))%block):][:2*block]
	rec := make([]byte, recSize)
	for i := range rec {
		rec[i] = byte('a' + i%26)
	}
	off := 0
	b.SetBytes(recSize)
	b.ResetTimer()
	for range b.N {
		if idle {
			b.StopTimer()
			time.Sleep(200 * time.Microsecond)
			b.StartTimer()
		}
		switch {
		case !direct:
			if _, err := unix.Pwrite(fd, rec, int64(off)); err != nil {
				b.Fatal(err)
			}
			if r != nil {
				if broken, err := r.fdatasync(fd); err != nil || broken {
					b.Fatal(err)
				}
			} else if err := unix.Fdatasync(fd); err != nil {
				b.Fatal(err)
			}
		default:
			start := off &^ (block - 1)
			end := off + recSize
			copy(tail[off-start:], rec)
			buf := tail[:(end+block-1)&^(block-1)-start]
			var n int
			if r != nil {
				res, _, err := r.run(uringOp{opcode: uringOpWrite, fd: fd, off: int64(start), buf: buf, flags: unix.RWF_DSYNC})
				if err != nil || res < 0 {
					b.Fatal(err, res)
				}
				n = int(res)
			} else if n, err = unix.Pwritev2(fd, [][]byte{buf}, int64(start), unix.RWF_DSYNC); err != nil {
				b.Fatal(err)
			}
			if n != len(buf) {
				b.Fatalf("short direct write: %d of %d bytes", n, len(buf))
			}
			if full := end &^ (block - 1); full > start {
				// The record filled its first block: the next starts in
				// the second.
				copy(tail, tail[block:])
				clear(tail[block:])
			}
		}
		off += recSize
	}
	b.StopTimer()
	// Whatever the mode, the file holds the records, in order. (A buffered
	// read after direct writes sees them: the direct writes dropped any
	// cached copy of the blocks they wrote.)
	got := make([]byte, off)
	if _, err := f.ReadAt(got, 0); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < off; i += recSize {
		if string(got[i:i+recSize]) != string(rec) {
			b.Fatalf("record at %d is not what was written", i)
		}
	}
}

// BenchmarkURingNop measures what the ring itself costs an operation, with
// no device behind it: the submitting system call and the bookkeeping around
// it (a no-op completes within the call, so run does not park).
func BenchmarkURingNop(b *testing.B) {
	r := getRing()
	if r == nil {
		_, why := uringStatus()
		b.Skipf("io_uring not available here: %v", why)
	}
	defer putRing(r, false)
	for range b.N {
		if res, broken, err := r.run(uringOp{}); err != nil || broken || res != 0 {
			b.Fatal(res, broken, err)
		}
	}
}
