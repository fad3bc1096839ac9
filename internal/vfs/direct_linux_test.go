//go:build linux

package vfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
