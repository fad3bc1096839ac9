//go:build linux

package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// withoutURing switches io_uring off for the rest of the test.
func withoutURing(t *testing.T) {
	rings.mu.Lock()
	saved, savedReason, idle := rings.disabled, rings.reason, rings.idle
	rings.disabled, rings.reason, rings.idle = true, errors.New("test"), nil
	rings.mu.Unlock()
	t.Cleanup(func() {
		rings.mu.Lock()
		rings.disabled, rings.reason, rings.idle = saved, savedReason, idle
		rings.mu.Unlock()
	})
}

// An aligned WriteAtSync goes through the file's O_DIRECT descriptor, through
// the ring or the blocking pwritev2, and reads back through the page cache
// (the kernel drops the cached pages it replaces); rewriting a block, as the
// WAL does with its partial last block, reads back too. An unaligned one
// falls back to WriteAt and SyncData.
func TestWriteAtSyncDirect(t *testing.T) {
	for _, mode := range []string{"ring", "blocking"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "blocking" {
				withoutURing(t)
			}
			path := filepath.Join(t.TempDir(), "data")
			f, err := Default.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Preallocate(64 << 10); err != nil {
				t.Fatal(err)
			}
			if err := f.SyncData(); err != nil {
				t.Fatal(err)
			}
			// Cache the zeros that the direct write replaces.
			if _, err := os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, 64<<10)
			buf := AlignedBuffer(8192)
			for round, fill := range []string{"first frame ", "second, longer frame "} {
				n := copy(buf, strings.Repeat(fill, 300))
				if err := f.WriteAtSync(buf, 4096); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				copy(want[4096:], buf[:n])
				d := f.(osFile).direct
				if d.refused {
					t.Skip("this file system refuses O_DIRECT: WriteAtSync fell back")
				}
				if !d.opened {
					t.Fatalf("round %d: no direct descriptor after an aligned WriteAtSync", round)
				}
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("round %d: the file does not read back as written", round)
				}
			}
			// Unaligned: odd offset, then odd length.
			if err := f.WriteAtSync([]byte("unaligned"), 100); err != nil {
				t.Fatal(err)
			}
			copy(want[100:], "unaligned")
			if err := f.WriteAtSync(buf[:100], 8192); err != nil {
				t.Fatal(err)
			}
			copy(want[8192:], buf[:100])
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the file does not read back as written after unaligned writes")
			}
		})
	}
}

// A failed direct write is reported, not swallowed or retried elsewhere.
func TestWriteAtSyncDirectError(t *testing.T) {
	f, err := Default.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := AlignedBuffer(DirectAlign)
	if err := f.WriteAtSync(buf, 0); err != nil {
		t.Fatal(err)
	}
	d := f.(osFile).direct
	if d.refused {
		t.Skip("this file system refuses O_DIRECT")
	}
	// Make the direct descriptor read-only behind the file's back.
	ro, err := unix.Open(f.Name(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(ro, d.fd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(ro)
	err = f.WriteAtSync(buf, 0)
	if !errors.Is(err, unix.EBADF) || !strings.Contains(err.Error(), "direct write") {
		t.Fatalf("direct write on a read-only descriptor = %v, want EBADF from the direct write", err)
	}
}

func TestAlignedBuffer(t *testing.T) {
	for _, n := range []int{1, 100, DirectAlign, 3 * DirectAlign} {
		b := AlignedBuffer(n)
		addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if len(b) != n || cap(b) != n || addr%DirectAlign != 0 {
			t.Fatalf("AlignedBuffer(%d): len %d cap %d address %#x", n, len(b), cap(b), addr)
		}
	}
}

// openDirect returns a file of 64 KiB whose direct descriptor is open, or
// skips where the file system refuses O_DIRECT.
func openDirect(t *testing.T, path string) osFile {
	t.Helper()
	f, err := Default.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Preallocate(64 << 10); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	if !f.DirectWrites() {
		f.Close()
		t.Skip("this file system refuses O_DIRECT")
	}
	return f.(osFile)
}

// sameFile reports whether fd is open on the file that st describes.
func sameFile(fd int, st *unix.Stat_t) bool {
	var got unix.Stat_t
	return unix.Fstat(fd, &got) == nil && got.Dev == st.Dev && got.Ino == st.Ino
}

// Closing a file while a write holds its direct descriptor leaves the
// descriptor open, for that write only, until the write gives it back.
func TestDirectDescriptorOutlivesClose(t *testing.T) {
	f := openDirect(t, filepath.Join(t.TempDir(), "data"))
	d := f.direct
	fd := d.get(f.File) // as WriteAtSync holds it during its write
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !sameFile(fd, &st) {
		t.Fatal("Close closed the direct descriptor under a write holding it")
	}
	buf := AlignedBuffer(DirectAlign)
	copy(buf, "written after Close, by the write that held the descriptor")
	if err := pwriteDSync(fd, buf, 0); err != nil {
		t.Fatalf("the write holding the descriptor: %v", err)
	}
	if got := d.get(f.File); got >= 0 {
		t.Fatalf("get after Close = %d, want -1", got)
	}
	d.put()
	if sameFile(fd, &st) {
		t.Fatal("the direct descriptor is still open after the last write gave it back")
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(buf)], buf) {
		t.Fatal("the file does not hold the write made while Close waited")
	}
}

// WriteAtSync and Close at once: each write either lands in its own file or
// fails with os.ErrClosed, and none lands in a file opened meanwhile, as one
// would through a descriptor number closed under it and reused. Run with
// -race.
func TestWriteAtSyncConcurrentClose(t *testing.T) {
	dir := t.TempDir()
	for round := range 50 {
		f := openDirect(t, filepath.Join(dir, fmt.Sprintf("data%d", round)))
		const writers = 4
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := AlignedBuffer(DirectAlign)
				for i := range buf {
					buf[i] = byte('A' + w)
				}
				for {
					err := f.WriteAtSync(buf, int64(w)*DirectAlign)
					if errors.Is(err, os.ErrClosed) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		// Files opened while the descriptor is closed take the lowest free
		// numbers: its own, if it were closed under a write.
		var others []*os.File
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.Close(); err != nil {
				errs <- err
			}
		}()
		for i := range 8 {
			o, err := os.Create(filepath.Join(dir, fmt.Sprintf("other%d-%d", round, i)))
			if err != nil {
				t.Fatal(err)
			}
			others = append(others, o)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, o := range others {
			st, err := o.Stat()
			o.Close()
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != 0 {
				t.Fatalf("round %d: a direct write landed in %s, opened after Close", round, o.Name())
			}
		}
		got, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		for w := range writers {
			b := got[w*DirectAlign : (w+1)*DirectAlign]
			if !bytes.Equal(b, make([]byte, DirectAlign)) && !bytes.Equal(b, bytes.Repeat([]byte{byte('A' + w)}, DirectAlign)) {
				t.Fatalf("round %d: block %d holds neither zeros nor writer %d's bytes", round, w, w)
			}
		}
	}
}

// SyncData of a closed file is os.ErrClosed: it holds the descriptor for
// the call, so it never syncs a closed, or reused, descriptor number.
func TestSyncDataAfterClose(t *testing.T) {
	f, err := Default.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("SyncData after Close: %v, want os.ErrClosed", err)
	}
}
