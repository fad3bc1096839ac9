//go:build linux

package vfs

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// needRing returns a ring, or skips where io_uring is not available.
func needRing(t *testing.T) *uring {
	t.Helper()
	r := getRing()
	if r == nil {
		_, why := uringStatus()
		t.Skipf("io_uring not available here: %v", why)
	}
	t.Cleanup(func() { putRing(r, false) })
	return r
}

// The ring really runs fdatasync on the file it is given: a regular file
// syncs, and a pipe is refused with the very error the system call gives.
func TestURingRunsFdatasync(t *testing.T) {
	r := needRing(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := range 20 {
		if _, err := f.Write([]byte("record\n")); err != nil {
			t.Fatal(err)
		}
		if broken, err := r.fdatasync(int(f.Fd())); err != nil || broken {
			t.Fatalf("sync %d of a regular file: %v (broken %v)", i, err, broken)
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	want := unix.Fdatasync(int(pw.Fd()))
	if want == nil {
		t.Fatal("fdatasync of a pipe succeeded; this test needs it to fail")
	}
	broken, got := r.fdatasync(int(pw.Fd()))
	if !errors.Is(got, want) || broken {
		t.Fatalf("fdatasync of a pipe through the ring: %v (broken %v), want %v as from the system call", got, broken, want)
	}
	// The ring is still good after a failed operation.
	if _, err := r.fdatasync(int(f.Fd())); err != nil {
		t.Fatalf("sync after a failed one: %v", err)
	}
}

// SyncData from many goroutines at once: each takes a ring of its own.
func TestSyncDataConcurrent(t *testing.T) {
	needRing(t)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := Default.Create(filepath.Join(dir, string(rune('a'+g))))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for range 30 {
				if _, err := f.Write([]byte("x")); err != nil {
					errs <- err
					return
				}
				if err := f.SyncData(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rings.mu.Lock()
	open := rings.open
	rings.mu.Unlock()
	if open < 1 || open > maxRings {
		t.Fatalf("%d rings open, want 1..%d", open, maxRings)
	}
}

// With io_uring switched off, SyncData makes the system call, and its errors
// are reported the same way.
func TestSyncDataWithoutURing(t *testing.T) {
	withoutURing(t)
	if on, _ := uringStatus(); on {
		t.Fatal("io_uring still used while switched off")
	}
	f, err := Default.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatal(err)
	}
}
